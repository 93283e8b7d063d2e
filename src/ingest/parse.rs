//! Parsing one received body: the size limit, JSON checks (UTF-8 throughout, nesting depth),
//! the registry's envelope, the idempotency key (as the registry's publisher computes it)
//! and the event type, each only as header-safe text. [`parse_received`] applies them in the
//! order ingest does; `dlq replay` applies the same function to an entry that ingest refused.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::Config;
use crate::message::Message;

/// The rules ingest applies to every message.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// `delivery.idempotency_key_fields`.
    pub key_fields: Vec<String>,
    /// `security.max_payload_bytes`.
    pub max_payload_bytes: usize,
    /// `security.max_json_depth`.
    pub max_json_depth: usize,
}

impl IngestSettings {
    /// The rules of `cfg`.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            key_fields: cfg.delivery.idempotency_key_fields.clone(),
            max_payload_bytes: cfg.security.max_payload_bytes,
            max_json_depth: cfg.security.max_json_depth,
        }
    }
}

/// Why a message could not be ingested. Each becomes a dead-letter entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    /// Over `security.max_payload_bytes`.
    #[error("payload too large: {size} bytes > security.max_payload_bytes {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid JSON.
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    /// `unwrap_envelope` is on but the message is not an envelope.
    #[error("not a registry envelope: {0}")]
    NotEnvelope(&'static str),
    /// Bytes that are not UTF-8 (JSON text is UTF-8 throughout, strings included).
    #[error("payload is not valid JSON: invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first byte that is not valid UTF-8.
        offset: usize,
    },
    /// Arrays and objects nested deeper than `security.max_json_depth`.
    #[error(
        "payload nests arrays/objects deeper than security.max_json_depth {max} (at byte {offset})"
    )]
    TooDeep {
        /// The limit.
        max: usize,
        /// Offset of the bracket that went over it.
        offset: usize,
    },
}

/// Checks what [`parse`] does not: that the whole body is UTF-8 and that arrays and objects
/// nest at most `max_depth` deep. Run it before [`parse`] on every message from outside.
///
/// Why by hand: serde_json checks neither in what it skips — a value held as a `RawValue`
/// or read as `IgnoredAny` may carry invalid UTF-8 inside a string and any nesting depth,
/// and its fixed recursion limit (128) applies only to values it builds. One pass over the
/// bytes, no allocation: `std::str::from_utf8` for the encoding, then a bracket count that
/// skips string contents (a multi-byte UTF-8 sequence never contains an ASCII byte, so `"`,
/// `\`, `[` and `{` are found reliably). JSON syntax itself is left to serde_json in
/// [`parse`].
pub fn validate(body: &[u8], max_depth: usize) -> Result<(), IngestError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(IngestError::InvalidUtf8 {
            offset: e.valid_up_to(),
        });
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (offset, &b) in body.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(IngestError::TooDeep {
                        max: max_depth,
                        offset,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The parts of a message ingest needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Idempotency key.
    pub idempotency_key: String,
    /// Event type.
    pub event_type: String,
    /// The body to POST.
    pub body: Bytes,
    /// `traceparent` field of the payload.
    pub traceparent: Option<String>,
}

/// A JSON object's top-level fields in order, values left unparsed. Keys borrow from the
/// input unless they contain escapes; a repeated key resolves to its last value, as in a map.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// A key that borrows from the input when it can.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    out.push((k.0, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A top-level JSON object's fields, values left unparsed (no allocation per value).
fn object_fields(bytes: &[u8]) -> Result<Option<Fields<'_>>, IngestError> {
    match serde_json::from_slice::<Fields<'_>>(bytes) {
        Ok(map) => Ok(Some(map)),
        Err(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Ok(None), // valid JSON, just not an object
            Err(e) => Err(IngestError::NotJson(e.to_string())),
        },
    }
}

/// A field as header text (event type, trace context, explicit key): strings unquoted,
/// numbers and booleans as written; `null` counts as absent. Key fields are rendered by
/// [`crate::key_render`] instead.
fn field_text(v: &RawValue) -> Option<String> {
    let raw = v.get();
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).ok()
    } else if raw == "null" || raw.starts_with('{') || raw.starts_with('[') {
        None
    } else {
        Some(raw.to_string())
    }
}

/// Parses a received body: size limit, JSON, envelope, key and event type.
pub fn parse(
    body: &Bytes,
    channel: &str,
    unwrap_envelope: bool,
    key_fields: &[String],
    max_payload_bytes: usize,
) -> Result<Parsed, IngestError> {
    if body.len() > max_payload_bytes {
        return Err(IngestError::TooLarge {
            size: body.len(),
            max: max_payload_bytes,
        });
    }
    let top = object_fields(body)?;
    let (payload_bytes, envelope_id, envelope_type) = if unwrap_envelope {
        let env = top
            .as_ref()
            .ok_or(IngestError::NotEnvelope("not a JSON object"))?;
        let payload = env
            .get("payload")
            .ok_or(IngestError::NotEnvelope("no `payload` field"))?;
        let id = env
            .get("message_id")
            .and_then(field_text)
            .ok_or(IngestError::NotEnvelope("no `message_id` field"))?;
        let mtype = env.get("message_type").and_then(field_text);
        (body.slice_ref(payload.get().as_bytes()), Some(id), mtype)
    } else {
        (body.clone(), None, None)
    };
    let fields = if unwrap_envelope {
        object_fields(&payload_bytes)?
    } else {
        top
    };
    let get = |k: &str| fields.as_ref().and_then(|f| f.get(k)).and_then(field_text);

    // Key precedence: the payload's `idempotency_key`, then the key fields (rendered as the
    // registry's Python renders them, see `key_render`), then the envelope's `message_id`,
    // then a hash. The fields come before `message_id` because the registry's pub/sub message
    // carries no envelope: only a key computed from the payload is the same on both paths.
    // A key that cannot travel as a header value (empty, too long, control or non-ASCII
    // characters) is passed over for the next rule, so every delivery carries one.
    let idempotency_key = get("idempotency_key")
        .filter(|k| is_header_token(k))
        .or_else(|| {
            key_from_fields(key_fields, &|k: &str| {
                fields
                    .as_ref()
                    .and_then(|f| f.get(k))
                    .and_then(crate::key_render::python_text)
            })
        })
        .or_else(|| envelope_id.filter(|k| is_header_token(k)))
        .unwrap_or_else(|| fallback_key(channel, &payload_bytes));
    let event_type = get("event_type")
        .filter(|t| is_header_text(t))
        .or_else(|| get("message_type").filter(|t| is_header_text(t)))
        .or(envelope_type.filter(|t| is_header_text(t)))
        .unwrap_or_else(|| header_safe(channel));
    Ok(Parsed {
        idempotency_key,
        event_type,
        traceparent: get("traceparent"),
        body: payload_bytes,
    })
}

/// Every check ingest applies to a received body, in its order: the size limit first (a body
/// over it is reported as too large without being read), then [`validate`], then [`parse`].
pub fn parse_received(
    body: &Bytes,
    channel: &str,
    unwrap_envelope: bool,
    settings: &IngestSettings,
) -> Result<Parsed, IngestError> {
    if body.len() <= settings.max_payload_bytes {
        validate(body, settings.max_json_depth)?;
    }
    parse(
        body,
        channel,
        unwrap_envelope,
        &settings.key_fields,
        settings.max_payload_bytes,
    )
}

impl Parsed {
    /// The message this parse makes of a body read from `channel` of `source` at
    /// `received_at`.
    pub fn into_message(
        self,
        source: Arc<str>,
        channel: String,
        received_at: SystemTime,
    ) -> Message {
        Message {
            idempotency_key: self.idempotency_key,
            event_type: self.event_type,
            source,
            channel,
            body: self.body,
            received_at,
            traceparent: self.traceparent,
        }
    }
}

/// Longest idempotency key or event type taken from a payload.
const MAX_HEADER_TEXT: usize = 256;

/// Non-empty visible ASCII without spaces, at most 256 bytes: usable as an idempotency key.
fn is_header_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_HEADER_TEXT && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Non-empty printable ASCII (spaces allowed), at most 256 bytes: usable as an event type.
fn is_header_text(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_HEADER_TEXT && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// `s` with every character a header value cannot carry replaced by `_`.
fn header_safe(s: &str) -> String {
    let t: String = s
        .chars()
        .take(MAX_HEADER_TEXT)
        .map(|c| if (' '..='~').contains(&c) { c } else { '_' })
        .collect();
    if t.is_empty() { "_".into() } else { t }
}

/// `uuid5(NAMESPACE_DNS, "<f1>:<f2>:…")` when every configured field is present (`get`
/// gives a field's text, see [`crate::key_render`]): the registry's Python publisher computes
/// the same key, so receivers de-duplicate across paths.
pub fn key_from_fields(fields: &[String], get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if fields.is_empty() {
        return None;
    }
    let mut parts = Vec::with_capacity(fields.len());
    for f in fields {
        parts.push(get(f)?);
    }
    Some(Uuid::new_v5(&Uuid::NAMESPACE_DNS, parts.join(":").as_bytes()).to_string())
}

/// `uuid5(NAMESPACE_DNS, hex(SHA-256(channel + "\n" + body)))`: stable for the same bytes on
/// the same channel, whichever replica reads them.
pub fn fallback_key(channel: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(channel.as_bytes());
    h.update(b"\n");
    h.update(body);
    let digest = hex::encode(h.finalize());
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, digest.as_bytes()).to_string()
}

#[cfg(test)]
mod tests;
