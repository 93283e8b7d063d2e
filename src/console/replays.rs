//! Replays started from the console: `POST /api/dead-letters/replay` starts one in the
//! background with [`crate::dlq::replay::replay`] — the code behind `dlq replay` — and answers
//! at once with its id (a replay waits for retries and may take minutes); `GET
//! /api/replays` and the overview report each one's progress. The last [`KEEP`] are kept.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::Console;
use super::guard::refuse;
use crate::dlq::replay::{Progress, ReplayRequest, Selection};

/// Replays remembered for the overview.
const KEEP: usize = 20;

/// The replays this process started from the console.
#[derive(Default)]
pub struct Replays {
    next_id: AtomicU64,
    recent: Mutex<VecDeque<Arc<Mutex<ReplayView>>>>,
}

/// Where one replay stands.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayView {
    /// Its id (counts up from 1 in this process).
    pub id: u64,
    /// What was asked: `3 entries`, or `all of <endpoint>`.
    pub what: String,
    /// When it started (unix ms).
    pub started_at_ms: u64,
    /// Entries selected.
    pub selected: usize,
    /// Deliveries queued.
    pub queued: u64,
    /// Delivered (their entries are removed).
    pub delivered: u64,
    /// Dead-lettered again.
    pub failed: u64,
    /// Entries left in place, each with why.
    pub skipped: Vec<Skipped>,
    /// Every delivery is settled.
    pub finished: bool,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
}

/// An entry a replay left in place.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The entry id.
    pub id: String,
    /// Why.
    pub reason: String,
}

impl Replays {
    /// The remembered replays, newest first.
    pub fn views(&self) -> Vec<ReplayView> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .rev()
            .map(|v| v.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    fn add(&self, what: String) -> Arc<Mutex<ReplayView>> {
        let view = Arc::new(Mutex::new(ReplayView {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            what,
            started_at_ms: crate::util::time::unix_ms(std::time::SystemTime::now()),
            selected: 0,
            queued: 0,
            delivered: 0,
            failed: 0,
            skipped: Vec::new(),
            finished: false,
            error: None,
        }));
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= KEEP {
            recent.pop_front();
        }
        recent.push_back(view.clone());
        view
    }
}

/// The body of a replay request: entries by id, or (with `all`) every entry, of `endpoint`
/// if given — what `dlq replay [--endpoint E] (--all | IDS…)` takes.
#[derive(Debug, Deserialize)]
pub struct StartRequest {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
    endpoint: Option<String>,
}

/// `POST /api/dead-letters/replay`: 202 with the replay's id; progress in `/api/replays`.
pub async fn start(State(c): State<Arc<Console>>, Json(r): Json<StartRequest>) -> Response {
    let (selection, what) = match (r.all, r.ids.is_empty()) {
        (true, true) => (
            Selection::All,
            match &r.endpoint {
                Some(e) => format!("all of {e}"),
                None => "all".to_string(),
            },
        ),
        (false, false) => {
            let what = format!(
                "{} entr{}",
                r.ids.len(),
                if r.ids.len() == 1 { "y" } else { "ies" }
            );
            (Selection::Ids(r.ids), what)
        }
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "send either \"ids\": [...] or \"all\": true (with an optional \"endpoint\")",
            );
        }
    };
    let cfg = c.config();
    if let Some(e) = &r.endpoint
        && cfg.endpoint(e).is_none()
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("{e}: no such endpoint in the config"),
        );
    }
    let request = ReplayRequest {
        selection,
        endpoint: r.endpoint,
    };
    let view = c.replays.add(what);
    let id = view.lock().unwrap_or_else(|p| p.into_inner()).id;
    tracing::info!(replay = id, "dead-letter replay started from the console");
    let dlq = c.dlq.clone();
    tokio::spawn(async move {
        let done = crate::dlq::replay::replay(&cfg, &dlq, &request, |p| note(&view, p)).await;
        let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
        match done {
            Ok(report) => {
                v.selected = report.selected;
                v.queued = report.queued;
                v.delivered = report.delivered;
                v.failed = report.failed;
            }
            Err(e) => v.error = Some(e.to_string()),
        }
        v.finished = true;
        tracing::info!(
            replay = v.id,
            delivered = v.delivered,
            failed = v.failed,
            skipped = v.skipped.len(),
            "dead-letter replay from the console finished"
        );
    });
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "replay": id })),
    )
        .into_response()
}

/// Notes what the replay reports.
fn note(view: &Mutex<ReplayView>, p: Progress<'_>) {
    let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
    match p {
        Progress::Skipped { id, reason } => v.skipped.push(Skipped {
            id: id.to_string(),
            reason: reason.to_string(),
        }),
        Progress::Queued { deliveries } => v.queued = deliveries,
        Progress::Settled { delivered, failed } => {
            v.delivered = delivered;
            v.failed = failed;
        }
        Progress::Finished => {}
    }
}

/// `GET /api/replays`: the remembered replays, newest first.
pub async fn list(State(c): State<Arc<Console>>) -> Response {
    Json(c.replays.views()).into_response()
}
