//! Per-endpoint queues of delivery jobs.
//!
//! A [`Job`] is one message bound for one endpoint. Ingest pushes jobs; the endpoint's
//! delivery worker takes them with [`memory::MemoryQueue::next`], and either finishes them
//! (delivered or dead-lettered) or puts them back with a due time for a retry.

pub mod memory;

use std::sync::Arc;

use crate::ingest::Message;

/// One message bound for one endpoint.
#[derive(Debug, Clone)]
pub struct Job {
    /// The message, shared by every endpoint it fans out to.
    pub msg: Arc<Message>,
    /// HTTP attempts made so far (the next one sends `X-Hokusai-Delivery-Attempt: attempts + 1`).
    pub attempts: u32,
    /// Status of the last attempt, if it got an answer.
    pub last_status: Option<u16>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
    /// The dead-letter entry this job replays; removed once the job is settled.
    pub replay_of: Option<String>,
}

impl Job {
    /// A job that has not been tried yet.
    pub fn new(msg: Arc<Message>) -> Self {
        Self {
            msg,
            attempts: 0,
            last_status: None,
            last_error: None,
            replay_of: None,
        }
    }
}
