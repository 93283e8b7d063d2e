//! `[[sources]]`: what the bridge reads. A source is one of three kinds, and each kind
//! carries only the settings it uses ([`SourceSpec`]), so a list source has no channels to
//! forget and a stream source always has its consumer group.

use serde::Serialize;

/// What a source reads: the `kind` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// SUBSCRIBE / PSUBSCRIBE (the default when `kind` is not given).
    #[default]
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
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// A name for metrics and `/status` (default: `pubsub`, `list:<key>`, `stream:<key>`).
    pub name: String,
    /// Forward `envelope.payload`; key it like a pub/sub message, by `envelope.message_id`
    /// only when the payload has no key fields.
    pub unwrap_envelope: bool,
    /// What it reads, with the settings of its kind.
    pub spec: SourceSpec,
}

/// What a source reads, one variant per `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `kind = "pubsub"`.
    PubSub(PubSubSource),
    /// `kind = "list"`.
    List(ListSource),
    /// `kind = "stream"`.
    Stream(StreamSource),
}

/// A pub/sub source: at least one channel or pattern, none of them empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubSource {
    /// Channels to SUBSCRIBE.
    pub channels: Vec<String>,
    /// Patterns to PSUBSCRIBE.
    pub patterns: Vec<String>,
}

impl PubSubSource {
    /// Whether a message published to `channel` reaches this source: one of its channels, or
    /// a match of one of its patterns (Redis glob semantics are close enough to wildmatch's
    /// `*`/`?` for what this is used for: loop detection and reports).
    pub fn matches(&self, channel: &str) -> bool {
        self.channels.iter().any(|c| c == channel)
            || self
                .patterns
                .iter()
                .any(|p| wildmatch::WildMatch::new(p).matches(channel))
    }
}

/// A list source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSource {
    /// The list the publisher LPUSHes to.
    pub key: String,
}

/// A stream source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSource {
    /// The stream the publisher XADDs to.
    pub key: String,
    /// The consumer group (default `webhook-bridge`).
    pub group: String,
}

impl SourceConfig {
    /// pubsub, list or stream.
    pub fn kind(&self) -> SourceKind {
        match self.spec {
            SourceSpec::PubSub(_) => SourceKind::Pubsub,
            SourceSpec::List(_) => SourceKind::List,
            SourceSpec::Stream(_) => SourceKind::Stream,
        }
    }

    /// The channels and patterns of a pub/sub source.
    pub fn pubsub(&self) -> Option<&PubSubSource> {
        match &self.spec {
            SourceSpec::PubSub(p) => Some(p),
            SourceSpec::List(_) | SourceSpec::Stream(_) => None,
        }
    }

    /// The key of a list or stream source.
    pub fn key(&self) -> Option<&str> {
        match &self.spec {
            SourceSpec::PubSub(_) => None,
            SourceSpec::List(l) => Some(&l.key),
            SourceSpec::Stream(s) => Some(&s.key),
        }
    }
}

/// `check-config` shows every source with the same keys, in the order the file may write
/// them (`channels = []` on a list source included), so its output loads again as printed.
impl Serialize for SourceConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            kind: SourceKind,
            name: &'a str,
            channels: &'a [String],
            patterns: &'a [String],
            key: Option<&'a str>,
            group: Option<&'a str>,
            unwrap_envelope: bool,
        }
        let (channels, patterns): (&[String], &[String]) = match &self.spec {
            SourceSpec::PubSub(p) => (&p.channels, &p.patterns),
            SourceSpec::List(_) | SourceSpec::Stream(_) => (&[], &[]),
        };
        let group = match &self.spec {
            SourceSpec::Stream(st) => Some(st.group.as_str()),
            SourceSpec::PubSub(_) | SourceSpec::List(_) => None,
        };
        Shown {
            kind: self.kind(),
            name: &self.name,
            channels,
            patterns,
            key: self.key(),
            group,
            unwrap_envelope: self.unwrap_envelope,
        }
        .serialize(s)
    }
}
