//! `[[sources]]`: what the bridge reads.

use serde::Serialize;

/// What a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// SUBSCRIBE / PSUBSCRIBE.
    Pubsub,
    /// A list queue (LPUSH by the publisher).
    List,
    /// A stream read through a consumer group.
    Stream,
}

impl SourceKind {
    /// The config spelling: `pubsub`, `list` or `stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Pubsub => "pubsub",
            SourceKind::List => "list",
            SourceKind::Stream => "stream",
        }
    }
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct SourceConfig {
    /// pubsub, list or stream.
    pub kind: SourceKind,
    /// A name for metrics and `/status` (default: `pubsub`, `list:<key>`, `stream:<key>`).
    pub name: String,
    /// Channels to SUBSCRIBE (pubsub).
    pub channels: Vec<String>,
    /// Patterns to PSUBSCRIBE (pubsub).
    pub patterns: Vec<String>,
    /// The list or stream key.
    pub key: Option<String>,
    /// The stream consumer group.
    pub group: Option<String>,
    /// Forward `envelope.payload`; key it like a pub/sub message, by `envelope.message_id`
    /// only when the payload has no key fields.
    pub unwrap_envelope: bool,
}
