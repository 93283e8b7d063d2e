//! Command-line interface: every command and flag of the `redis-webhook-bridge` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::config::Scheme;

/// Moves Redis pub/sub, list and stream events to signed HTTP webhooks.
#[derive(Debug, Parser)]
#[command(
    name = "redis-webhook-bridge",
    version,
    about,
    propagate_version = true,
    after_help = "Examples:\n  redis-webhook-bridge check-config --config bridge.toml\n  redis-webhook-bridge run --config bridge.toml\n\n`redis-webhook-bridge help COMMAND` shows a command's flags and examples."
)]
pub struct Cli {
    /// The config and log flags given before the command (`--config X run`), as earlier
    /// versions took them; each command offers the ones it uses itself.
    #[command(flatten)]
    pub before: BeforeCommandArgs,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Config and log flags accepted before the command name and not shown in help: each
/// command that uses them lists them itself ([`ConfigArgs`], [`LogArgs`]).
#[derive(Debug, Args, Clone, Default)]
pub struct BeforeCommandArgs {
    /// TOML configuration file.
    #[arg(
        long,
        short = 'c',
        env = "BRIDGE_CONFIG",
        value_name = "PATH",
        hide = true
    )]
    pub config: Option<PathBuf>,
    /// Overrides `redis.url`.
    #[arg(long, value_name = "URL", hide = true)]
    pub redis_url: Option<String>,
    /// Overrides `log.level`.
    #[arg(long, value_name = "LEVEL", hide = true)]
    pub log_level: Option<String>,
    /// Overrides `log.format`.
    #[arg(long, value_name = "json|text", hide = true)]
    pub log_format: Option<String>,
}

/// Flags of the commands that read the configuration.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// TOML configuration file (also `BRIDGE_CONFIG`).
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "BRIDGE_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    /// Overrides `redis.url`.
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
}

/// Log flags of the commands that log (`run`) or check the log settings (`check-config`).
#[derive(Debug, Args, Clone, Default)]
pub struct LogArgs {
    /// Overrides `log.level`: trace, debug, info, warn, error or off, or target=level
    /// directives joined by commas (RUST_LOG still wins).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Overrides `log.format`.
    #[arg(long, value_name = "json|text")]
    pub log_format: Option<String>,
}

/// The commands of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the worker: sources → queues → webhook deliveries.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge run --config bridge.toml\n  redis-webhook-bridge run --config bridge.toml --dual --log-level debug"
    )]
    Run(RunArgs),
    /// Load, validate and print the effective config (secrets shown as ***); exit 0 or 78.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge check-config --config bridge.toml\n  BRIDGE_CONFIG=bridge.toml redis-webhook-bridge check-config > effective.toml\n  redis-webhook-bridge check-config --config bridge.toml --show-urls\n  redis-webhook-bridge check-config --config bridge.toml --try message.json"
    )]
    CheckConfig {
        /// Config flags.
        #[command(flatten)]
        config: ConfigArgs,
        /// Log flags (checked and shown in the effective config).
        #[command(flatten)]
        log: LogArgs,
        /// Show endpoint URLs in full (query and every path segment), which may carry
        /// credentials; by default they are shown redacted.
        #[arg(long)]
        show_urls: bool,
        /// Instead of the config, show what each endpoint would receive for the message in
        /// FILE (`-`: standard input): whether it passes the endpoint's filter and the exact
        /// body after its transform, or the error. Exit 1 when a filter or transform fails.
        #[arg(long = "try", value_name = "FILE")]
        try_file: Option<std::path::PathBuf>,
    },
    /// Sample webhook consumer: verifies signatures and prints one JSON line per accepted event.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge receive --secret env:WEBHOOK_SECRET\n  redis-webhook-bridge receive --listen 127.0.0.1:8787 --secret env:WEBHOOK_SECRET --fail-first 1"
    )]
    Receive(ReceiveArgs),
    /// Sign a body and print the headers a receiver would get.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge sign --secret env:WEBHOOK_SECRET --body body.json\n  echo '{}' | redis-webhook-bridge sign --secret s3cret --scheme standard-webhooks"
    )]
    Sign(SignArgs),
    /// Verify a body against headers and one or more secrets (exit 0 valid, 1 invalid).
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge verify --secret env:WEBHOOK_SECRET --body body.json \\\n    -H 'X-Hokusai-Timestamp: 1764342000' -H 'X-Hokusai-Nonce: 5b8f…' -H 'X-Hokusai-Signature: sha256=0ca0…'"
    )]
    Verify(VerifyArgs),
    /// Inspect and re-drive dead-lettered deliveries.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge dlq list --config bridge.toml\n  redis-webhook-bridge dlq replay --config bridge.toml --endpoint site --all"
    )]
    Dlq {
        /// Config flags.
        #[command(flatten)]
        config: ConfigArgs,
        /// The `dlq` subcommand.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Pause deliveries on every replica (each sees it within 250 ms); messages keep being
    /// received and wait.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge pause --config bridge.toml --reason 'receiver maintenance'\n  redis-webhook-bridge resume --config bridge.toml"
    )]
    Pause {
        /// Config flags.
        #[command(flatten)]
        config: ConfigArgs,
        /// Why, shown by `status` and `/status`.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Resume deliveries on every replica.
    #[command(after_help = "Examples:\n  redis-webhook-bridge resume --config bridge.toml")]
    Resume {
        /// Config flags.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Migration toolkit: inventory and parity check.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge migrate plan --config bridge.toml\n  redis-webhook-bridge migrate validate --config bridge.toml --duration 10m"
    )]
    Migrate {
        /// Config flags.
        #[command(flatten)]
        config: ConfigArgs,
        /// The `migrate` subcommand.
        #[command(subcommand)]
        command: MigrateCommand,
    },
    /// Summary: paused?, live replicas, queue depths, dead-letter count.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge status --config bridge.toml\n  redis-webhook-bridge status --config bridge.toml --json"
    )]
    Status {
        /// Config flags.
        #[command(flatten)]
        config: ConfigArgs,
        /// Output flags.
        #[command(flatten)]
        output: Output,
    },
}

/// Flags of `run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Config flags.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Log flags.
    #[command(flatten)]
    pub log: LogArgs,
    /// Republish every received message to `[republish] targets` (also `BRIDGE_DUAL=true`).
    #[arg(long, env = "BRIDGE_DUAL")]
    pub dual: bool,
    /// Overrides `admin.listen`.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Also write the four webhook metrics as CloudWatch Embedded Metric Format lines (stdout).
    #[arg(long, env = "BRIDGE_METRICS_EMF")]
    pub metrics_emf: bool,
    /// How often EMF lines are written.
    #[arg(long, env = "BRIDGE_METRICS_EMF_INTERVAL", default_value = "60s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub metrics_emf_interval: std::time::Duration,
}

/// Flags of `receive`.
#[derive(Debug, Args, Clone)]
pub struct ReceiveArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// A secret that may have signed requests (repeat for rotation); `env:NAME` and `file:PATH` work.
    /// Defaults to `env:WEBHOOK_SECRET`.
    #[arg(long = "secret", value_name = "SECRET")]
    pub secrets: Vec<String>,
    /// Accept only this scheme (default: detect from the headers).
    #[arg(long, value_enum)]
    pub scheme: Option<Scheme>,
    /// Maximum age (either direction) of a signed timestamp, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub tolerance: u64,
    /// Answer the first N requests with `--status` (default 503) for retry drills.
    #[arg(long, value_name = "N")]
    pub fail_first: Option<u64>,
    /// Status code for drilled failures; without `--fail-first`, every request gets it.
    #[arg(long, value_name = "CODE")]
    pub status: Option<u16>,
    /// Send `Retry-After: SECS` with drilled failures.
    #[arg(long, value_name = "SECS")]
    pub retry_after: Option<u64>,
    /// Wait this long before answering each request (e.g. `200ms`), to act as a slow consumer.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub delay: Option<std::time::Duration>,
    /// Exit after accepting N distinct events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Close a connection whose request headers have not arrived within this (also the idle
    /// time allowed between requests on a kept-alive connection).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: std::time::Duration,
    /// Fail a request whose body has not arrived within this after its headers.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: std::time::Duration,
    /// Serve at most N connections at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections: usize,
}

/// Flags of `sign`.
#[derive(Debug, Args, Clone)]
pub struct SignArgs {
    /// Signing secret (`env:NAME` and `file:PATH` work); repeat with `--all` to sign with each.
    #[arg(long = "secret", required = true, value_name = "SECRET")]
    pub secrets: Vec<String>,
    /// Signature scheme.
    #[arg(long, value_enum, default_value = "hokusai-v2")]
    pub scheme: Scheme,
    /// One signature per listed secret instead of only the first.
    #[arg(long)]
    pub all: bool,
    /// Body file (default: standard input). The bytes are signed exactly as read.
    #[arg(long, value_name = "PATH")]
    pub body: Option<PathBuf>,
    /// Fixed unix timestamp (default: now).
    #[arg(long, value_name = "SECS")]
    pub timestamp: Option<i64>,
    /// Fixed nonce for hokusai-v2 (default: a random uuid4).
    #[arg(long)]
    pub nonce: Option<String>,
    /// Message id for standard-webhooks (default: a random uuid4).
    #[arg(long)]
    pub id: Option<String>,
}

/// Flags of `verify`.
#[derive(Debug, Args, Clone)]
pub struct VerifyArgs {
    /// A secret that may have signed the body (repeat for rotation).
    #[arg(long = "secret", required = true, value_name = "SECRET")]
    pub secrets: Vec<String>,
    /// Header as `Name: value` (repeat).
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Accept only this scheme (default: detect from the headers).
    #[arg(long, value_enum)]
    pub scheme: Option<Scheme>,
    /// Body file (default: standard input).
    #[arg(long, value_name = "PATH")]
    pub body: Option<PathBuf>,
    /// Maximum timestamp age in seconds; 0 turns the check off (for archived requests).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub tolerance: u64,
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered deliveries, oldest first.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge dlq list --config bridge.toml\n  redis-webhook-bridge dlq list --config bridge.toml --endpoint site --limit 20 --json"
    )]
    List {
        /// Show at most N entries.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
        /// Only entries of this endpoint.
        #[arg(long, value_name = "NAME")]
        endpoint: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Show one entry in full, body included.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge dlq show --config bridge.toml 1764342000123-0"
    )]
    Show {
        /// The entry id (from `dlq list`).
        id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Re-drive entries through the normal delivery path; delivered entries are removed.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge dlq replay --config bridge.toml --endpoint site --all\n  redis-webhook-bridge dlq replay --config bridge.toml 1764342000123-0 1764342000456-0"
    )]
    Replay {
        /// Only entries of this endpoint.
        #[arg(long, value_name = "NAME")]
        endpoint: Option<String>,
        /// Replay every entry (of `--endpoint`, if given).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Entry ids to replay.
        ids: Vec<String>,
    },
    /// Delete entries (all, or those of `--endpoint`).
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge dlq purge --config bridge.toml --endpoint site --yes"
    )]
    Purge {
        /// Only entries of this endpoint.
        #[arg(long, value_name = "NAME")]
        endpoint: Option<String>,
        /// Required: confirms the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// The output flags every command with machine-readable output takes: `--format text|json`,
/// and `--json` as a short alias of `--format json`.
#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

impl Output {
    /// The chosen format.
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }

    /// Whether JSON was asked for.
    pub fn is_json(&self) -> bool {
        self.format() == Format::Json
    }
}

/// Output format of command reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

/// `migrate` subcommands.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Inventory of channels (with subscriber counts), lists and streams, and a suggested config.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge migrate plan --config bridge.toml\n  redis-webhook-bridge migrate plan --config bridge.toml --format json"
    )]
    Plan {
        #[command(flatten)]
        output: Output,
    },
    /// Watch the pub/sub and stream sources for a window and check that every message was
    /// delivered to every matching endpoint; exit 1 if any is dead-lettered, still pending
    /// or missing.
    #[command(
        after_help = "Examples:\n  redis-webhook-bridge migrate validate --config bridge.toml --duration 10m\n  redis-webhook-bridge migrate validate --config bridge.toml --duration 1h --grace 2m --format json --allow-dead-lettered"
    )]
    Validate {
        /// How long to observe the source channels, e.g. `10m`.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// How long to wait after the window for deliveries to settle.
        #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// Output flags.
        #[command(flatten)]
        output: Output,
        /// Accept dead-lettered messages (they are still counted and listed).
        #[arg(long)]
        allow_dead_lettered: bool,
    },
}
