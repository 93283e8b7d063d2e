//! `receive` command: a sample webhook consumer that does what a careful receiver should.
//!
//! Per request, in order: answer drilled failures (`--fail-first`, `--status`) for retry
//! drills; verify the signature and timestamp (401); reject a replayed request (409); drop a
//! repeat of an idempotency key (200 `duplicate`, not printed); otherwise print one JSON line
//! to stdout and answer 200 `accepted`.
//!
//! Replay versus retry: the bridge signs every attempt afresh. Under hokusai-v2 each attempt
//! has a new nonce, so a nonce seen twice is a replay. Under standard-webhooks `webhook-id` is
//! the idempotency key and stays the same across retries, so a replay is the same
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`) seen twice. hokusai-legacy signs
//! no timestamp or nonce and has no replay protection.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::sync::Notify;

use super::sign::resolve_secrets;
use crate::cli::{ReceiveArgs, Scheme};
use crate::delivery::signing::scheme_name;

mod handle;
mod state;

use handle::handle;
use state::{Drill, Receiver, ReceiverState};

/// Largest body accepted (1 MiB); larger ones get 413.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Runs `receive` until `--count` events were accepted or SIGINT/SIGTERM; exit code 0.
pub async fn run(args: ReceiveArgs) -> anyhow::Result<i32> {
    let references = if args.secrets.is_empty() {
        if std::env::var_os("WEBHOOK_SECRET").is_none() {
            // A configuration error (exit 78), like a missing secret in the config file.
            return Err(crate::config::ConfigError::Flag {
                flag: "--secret",
                message: "receive needs a secret to verify with: pass --secret SECRET (a literal, \
                 env:NAME or file:PATH; repeat during rotation) or set WEBHOOK_SECRET"
                    .into(),
            }
            .into());
        }
        vec!["env:WEBHOOK_SECRET".to_owned()]
    } else {
        args.secrets.clone()
    };
    let secrets = resolve_secrets(&references)?;
    let drill = Drill::from_args(&args)?;
    let limits = crate::http_server::ServerLimits {
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        max_connections: args.max_connections,
    };
    if let Err((key, why)) = limits.check() {
        anyhow::bail!("--{} {why}", key.replace('_', "-"));
    }

    let receiver = Arc::new(Receiver {
        secrets,
        scheme: args.scheme,
        tolerance: args.tolerance,
        drill,
        delay: args.delay,
        count: args.count,
        requests: AtomicU64::new(0),
        done: Notify::new(),
        state: Mutex::new(ReceiverState::default()),
    });

    // Install signal handlers before announcing the address, so a signal sent as soon as
    // the line is read already leads to a clean exit.
    let signals = Signals::install()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("receive cannot listen on {}", args.listen))?;
    let addr: SocketAddr = listener
        .local_addr()
        .context("receive cannot read its listening address")?;
    let schemes = match args.scheme {
        Some(scheme) => scheme_name(scheme).to_owned(),
        None => [
            Scheme::HokusaiV2,
            Scheme::HokusaiLegacy,
            Scheme::StandardWebhooks,
        ]
        .map(scheme_name)
        .join(", "),
    };
    eprintln!("receive: listening on http://{addr} (schemes: {schemes})");

    let app = Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::clone(&receiver));
    let stop = Arc::clone(&receiver);
    crate::http_server::serve(
        listener,
        app,
        limits,
        async move { signals.wait(&stop).await },
    )
    .await;
    Ok(crate::exit::OK)
}

/// SIGINT and SIGTERM, registered up front.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> anyhow::Result<Self> {
        Ok(Self {})
    }

    /// Resolves on SIGINT, SIGTERM or once `--count` events were accepted.
    async fn wait(self, receiver: &Receiver) {
        #[cfg(unix)]
        let (mut interrupt, mut terminate) = (self.interrupt, self.terminate);
        #[cfg(unix)]
        let signalled = async {
            tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            }
        };
        #[cfg(not(unix))]
        let signalled = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            "Ctrl-C"
        };
        tokio::select! {
            name = signalled => eprintln!("receive: {name}, shutting down"),
            () = receiver.done.notified() => {
                let accepted = receiver.state().accepted;
                eprintln!("receive: accepted {accepted} events (--count), shutting down");
            }
        }
    }
}
