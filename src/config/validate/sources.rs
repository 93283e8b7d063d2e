//! `[[sources]]`: each entry's kind-specific keys moved into the variant of its kind, any key
//! of another kind refused by its own name, and the default names given.

use std::collections::HashSet;

use crate::config::raw::RawSource;
use crate::config::{
    ConfigError, ListSource, PubSubSource, SourceConfig, SourceKind, SourceSpec, StreamSource,
};

/// The registry's pub/sub channel: the default source.
pub const DEFAULT_CHANNEL: &str = "hokusai:model_ready_queue:pubsub";

/// The consumer group of a stream source without `group`.
const DEFAULT_GROUP: &str = "webhook-bridge";

/// The sources, every default applied; without any, the registry's pub/sub channel. Names
/// must be unique (they name metrics, `/status` entries and Redis keys).
pub(super) fn validate_sources(raw: Vec<RawSource>) -> Result<Vec<SourceConfig>, ConfigError> {
    if raw.is_empty() {
        return Ok(vec![SourceConfig {
            name: "pubsub".into(),
            unwrap_envelope: false,
            spec: SourceSpec::PubSub(PubSubSource {
                channels: vec![DEFAULT_CHANNEL.into()],
                patterns: vec![],
            }),
        }]);
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let source = validate_source(i, s)?;
        if !names.insert(source.name.clone()) {
            return Err(ConfigError::invalid(
                format!("sources[{i}].name"),
                format!("`{}` is used by another source", source.name),
            ));
        }
        out.push(source);
    }
    Ok(out)
}

/// `sources[i]`.
fn validate_source(i: usize, s: RawSource) -> Result<SourceConfig, ConfigError> {
    let at = |k: &str| format!("sources[{i}].{k}");
    let spec = match s.kind {
        SourceKind::Pubsub => SourceSpec::PubSub(pubsub_source(&at, &s)?),
        SourceKind::List | SourceKind::Stream => keyed_source(&at, &s)?,
    };
    let name = s.name.unwrap_or_else(|| match &spec {
        SourceSpec::PubSub(_) if i == 0 => "pubsub".into(),
        SourceSpec::PubSub(_) => format!("pubsub{i}"),
        SourceSpec::List(l) => format!("list:{}", l.key),
        SourceSpec::Stream(st) => format!("stream:{}", st.key),
    });
    Ok(SourceConfig {
        name,
        unwrap_envelope: s.unwrap_envelope,
        spec,
    })
}

/// A pubsub source: at least one channel or pattern, none empty, no `key` or `group`.
fn pubsub_source(at: &dyn Fn(&str) -> String, s: &RawSource) -> Result<PubSubSource, ConfigError> {
    if s.channels.is_empty() && s.patterns.is_empty() {
        return Err(ConfigError::invalid(
            at("channels"),
            "a pubsub source needs at least one channel or pattern",
        ));
    }
    if let Some(k) = first_set(&[
        ("channels", s.channels.iter().any(String::is_empty)),
        ("patterns", s.patterns.iter().any(String::is_empty)),
    ]) {
        return Err(ConfigError::invalid(
            at(k),
            "channel names must not be empty",
        ));
    }
    if let Some(k) = first_set(&[("key", s.key.is_some()), ("group", s.group.is_some())]) {
        return Err(ConfigError::invalid(
            at(k),
            "`key` and `group` belong to list and stream sources; a pubsub source uses `channels`",
        ));
    }
    Ok(PubSubSource {
        channels: s.channels.clone(),
        patterns: s.patterns.clone(),
    })
}

/// A list or stream source: a non-empty `key`, no `channels` or `patterns`, and `group`
/// (default `webhook-bridge`) for a stream only.
fn keyed_source(at: &dyn Fn(&str) -> String, s: &RawSource) -> Result<SourceSpec, ConfigError> {
    let key =
        s.key.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
            ConfigError::invalid(at("key"), "a list or stream source needs `key`")
        })?;
    if let Some(k) = first_set(&[
        ("channels", !s.channels.is_empty()),
        ("patterns", !s.patterns.is_empty()),
    ]) {
        return Err(ConfigError::invalid(
            at(k),
            "`channels`/`patterns` belong to pubsub sources; a list or stream source uses `key`",
        ));
    }
    match (s.kind, &s.group) {
        (SourceKind::List, None) => Ok(SourceSpec::List(ListSource { key })),
        (SourceKind::List, Some(_)) => Err(ConfigError::invalid(
            at("group"),
            "`group` belongs to stream sources; a list source has no consumer group",
        )),
        (_, group) => Ok(SourceSpec::Stream(StreamSource {
            key,
            group: group.clone().unwrap_or_else(|| DEFAULT_GROUP.into()),
        })),
    }
}

/// The first key whose condition holds: the key an error names.
fn first_set<'k>(keys: &[(&'k str, bool)]) -> Option<&'k str> {
    keys.iter().find(|(_, set)| *set).map(|(k, _)| *k)
}
