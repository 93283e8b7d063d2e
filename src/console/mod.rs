//! The operator's console: a web page served by the admin server at `/`, and the JSON API
//! under `/api/` it is built on (documented in docs/CONSOLE.md, usable from `curl`).
//!
//! What it owns: the page and its assets, embedded in the binary ([`assets`]); the overview
//! of endpoints, sources, pause, legacy subscribers and ledger parity ([`overview`]);
//! browsing, replaying and purging dead letters ([`dead_letters`], [`replays`]); pause and
//! resume ([`control`]); and who may do what ([`guard`]). It adds no behaviour of its own:
//! replays run [`crate::dlq::replay`], purges [`crate::dlq::Dlq::purge`], pauses
//! [`crate::pause`], exactly as the CLI commands do.
//!
//! Safe by default: without `[admin] token` everything is read-only; with it, every request
//! for data needs the token as a bearer header and every change also needs a JSON body and
//! a same-origin (or no) `Origin`. No cookies are used, so a cross-site page cannot act with
//! an operator's credentials.

pub mod assets;
pub mod control;
pub mod dead_letters;
pub mod guard;
pub mod overview;
pub mod replays;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::routing::{get, post};

use crate::admin::{Access, Status};
use crate::config::Config;
use crate::dlq::Dlq;

/// What the console reads and acts on.
pub struct Console {
    /// What `/status` reports on: endpoints, sources, pause flag, Redis.
    pub status: Arc<Status>,
    /// The dead-letter stream.
    pub dlq: Dlq,
    /// The config that runs (replaced on every applied reload): replays deliver with it.
    config: RwLock<Arc<Config>>,
    /// Replays started from the console, newest last.
    pub replays: replays::Replays,
}

impl Console {
    /// A console over `status` and `dlq`, with `cfg` running.
    pub fn new(status: Arc<Status>, dlq: Dlq, cfg: &Config) -> Self {
        Self {
            status,
            dlq,
            config: RwLock::new(Arc::new(cfg.clone())),
            replays: replays::Replays::default(),
        }
    }

    /// The config that runs now.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the config a reload applied.
    pub fn set_config(&self, cfg: &Config) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cfg.clone());
    }
}

/// The console's routes: the page (open: it holds no data) and the API (guarded).
pub fn router(console: Arc<Console>, access: &Access) -> Router {
    let guard = Arc::new(guard::Guard::new(access.token.clone()));
    let read = Router::new()
        .route("/api/overview", get(overview::overview))
        .route("/api/dead-letters", get(dead_letters::list))
        .route("/api/dead-letters/{id}", get(dead_letters::show))
        .route("/api/replays", get(replays::list))
        .route_layer(axum::middleware::from_fn_with_state(
            guard.clone(),
            guard::for_reading,
        ));
    let write = Router::new()
        .route("/api/dead-letters/replay", post(replays::start))
        .route("/api/dead-letters/purge", post(dead_letters::purge))
        .route("/api/pause", post(control::pause))
        .route("/api/resume", post(control::resume))
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            guard::for_changing,
        ));
    read.merge(write)
        .with_state(console)
        .merge(assets::router())
}
