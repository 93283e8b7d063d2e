//! How a job is stored in Redis, both ways: a stream entry (the `m` and `b` fields, or the
//! earlier one field per item), a retry-set member, and the jobs of a queue read.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use redis::Value;

use crate::message::{Job, Message};
use crate::redis::reply::{Fields, as_bytes, as_string, fields_of, raw_read_reply};

/// How a job is stored. A stream entry has two fields: `m`, everything but the body packed by
/// [`encode_meta`], and `b`, the body as it is; reading it back decodes five RESP values
/// instead of one per item. A retry-set member is `<n>:<entry id><n>:<meta><body>` (`<n>`: the
/// length in bytes of what follows the colon).
///
/// Earlier versions stored one field per item (`k`, `e`, `s`, `c`, `b`, `r`, `t`, `a`, `st`,
/// `er`) and a JSON object of those in the retry set. Both are still read, so what an older
/// replica journaled or scheduled before an upgrade is delivered by a newer one.
pub(super) mod field {
    pub const META: &str = "m";
    pub const BODY: &str = "b";
    // The earlier format's fields.
    pub const KEY: &str = "k";
    pub const EVENT: &str = "e";
    pub const SOURCE: &str = "s";
    pub const CHANNEL: &str = "c";
    pub const RECEIVED: &str = "r";
    pub const TRACE: &str = "t";
    pub const ATTEMPTS: &str = "a";
    pub const STATUS: &str = "st";
    pub const ERROR: &str = "er";
}

/// The format tag `m` starts with. A later format may only append parts, so that a reader of
/// this one still finds its parts where it expects them.
const META_TAG: &[u8] = b"1;";

/// Appends `<len>:<part>`.
fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    use std::io::Write as _;
    let _ = write!(out, "{}:", part.len()); // writing to a Vec cannot fail
    out.extend_from_slice(part);
}

/// Appends a number as a part.
fn push_num_part(out: &mut Vec<u8>, n: u64) {
    push_part(out, n.to_string().as_bytes());
}

/// Appends a job's metadata (the `m` field): the format tag, then as parts the idempotency
/// key, event type, source, channel, receipt time (ms), traceparent, attempts made, last
/// status and last error (empty when absent).
pub fn encode_meta(
    out: &mut Vec<u8>,
    msg: &Message,
    attempts: u32,
    last_status: Option<u16>,
    last_error: Option<&str>,
) {
    out.extend_from_slice(META_TAG);
    push_part(out, msg.idempotency_key.as_bytes());
    push_part(out, msg.event_type.as_bytes());
    push_part(out, msg.source.as_bytes());
    push_part(out, msg.channel.as_bytes());
    push_num_part(out, crate::util::time::unix_ms(msg.received_at));
    push_part(out, msg.traceparent.as_deref().unwrap_or("").as_bytes());
    push_num_part(out, attempts.into());
    match last_status {
        Some(s) => push_num_part(out, s.into()),
        None => push_part(out, b""),
    }
    push_part(out, last_error.unwrap_or("").as_bytes());
}

/// Reads the parts [`encode_meta`] wrote, in order; a missing or malformed part reads as
/// empty.
struct MetaParts<'a>(&'a [u8]);

impl<'a> MetaParts<'a> {
    fn new(meta: &'a [u8]) -> Self {
        // Skip the format tag (`<digits>;`).
        let body = match meta.iter().position(|&b| b == b';') {
            Some(i) if meta[..i].iter().all(u8::is_ascii_digit) => &meta[i + 1..],
            _ => meta,
        };
        Self(body)
    }

    fn next_bytes(&mut self) -> &'a [u8] {
        let Some(colon) = self.0.iter().position(|&b| b == b':') else {
            self.0 = &[];
            return &[];
        };
        let len = std::str::from_utf8(&self.0[..colon])
            .ok()
            .and_then(|n| n.parse::<usize>().ok());
        let start = colon + 1;
        match len.and_then(|n| Some((n, self.0.get(start..start.checked_add(n)?)?))) {
            Some((n, part)) => {
                self.0 = &self.0[start + n..];
                part
            }
            None => {
                self.0 = &[];
                &[]
            }
        }
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.next_bytes()).into_owned()
    }
}

/// The job an entry in the two-field format holds; the body buffer becomes the job's body.
fn job_from_meta(id: String, meta: &[u8], body: Vec<u8>) -> Job {
    let mut p = MetaParts::new(meta);
    job_from_items(id, || p.text(), body)
}

/// A job from its stored items, taken in [`encode_meta`]'s order (key, event type, source,
/// channel, receipt ms, traceparent, attempts, last status, last error), and its body.
fn job_from_items(id: String, mut item: impl FnMut() -> String, body: Vec<u8>) -> Job {
    let idempotency_key = item();
    let event_type = item();
    let source = Arc::from(item().as_str());
    let channel = item();
    let received_ms: u64 = item().parse().unwrap_or(0);
    let trace = item();
    let attempts = item().parse().unwrap_or(0);
    let status = item();
    let error = item();
    let msg = Message {
        idempotency_key,
        event_type,
        source,
        channel,
        body: Bytes::from(body),
        received_at: UNIX_EPOCH + Duration::from_millis(received_ms),
        traceparent: (!trace.is_empty()).then_some(trace),
    };
    Job {
        msg: Arc::new(msg),
        attempts,
        last_status: status.parse().ok(),
        last_error: (!error.is_empty()).then_some(error),
        replay_of: None,
        queue_id: Some(id),
    }
}

/// A retry-set member for `job`: `<n>:<entry id><n>:<meta><body>`. The entry id keeps the
/// member unique even if the same job is scheduled twice.
pub fn retry_member(job: &Job) -> Vec<u8> {
    let mut meta = Vec::with_capacity(256);
    encode_meta(
        &mut meta,
        &job.msg,
        job.attempts,
        job.last_status,
        job.last_error.as_deref(),
    );
    let id = job.queue_id.as_deref().unwrap_or("");
    let mut member = Vec::with_capacity(meta.len() + job.msg.body.len() + id.len() + 16);
    push_part(&mut member, id.as_bytes());
    push_part(&mut member, &meta);
    member.extend_from_slice(&job.msg.body);
    member
}

/// One entry of a queue read.
#[derive(Debug)]
pub enum Read {
    /// The job it holds, in either format (see the `field` module).
    Job(Job),
    /// The entry was deleted while pending (e.g. a duplicate settled elsewhere): its id, to
    /// acknowledge.
    Deleted(String),
}

/// The entries of a queue read (XREADGROUP).
pub fn parse_jobs(v: Value) -> Vec<Read> {
    raw_read_reply(v)
        .into_iter()
        .map(|(id, kv)| match kv {
            Some(kv) => Read::Job(job_from_values(id, kv)),
            None => Read::Deleted(id),
        })
        .collect()
}

/// The job an entry's field/value list holds: straight from `[m, meta, b, body]` as this
/// version writes it, through a map otherwise.
fn job_from_values(id: String, kv: Vec<Value>) -> Job {
    match <[Value; 4]>::try_from(kv) {
        Ok(
            [
                Value::BulkString(f1),
                Value::BulkString(meta),
                Value::BulkString(f2),
                Value::BulkString(body),
            ],
        ) if f1 == field::META.as_bytes() && f2 == field::BODY.as_bytes() => {
            job_from_meta(id, &meta, body)
        }
        Ok(four) => job_from_fields(id, fields_of(four.into())),
        Err(kv) => job_from_fields(id, fields_of(kv)),
    }
}

/// The job an entry holds, in either format; takes the fields' buffers instead of copying
/// them (the body becomes the job's `Bytes` as it is).
pub(super) fn job_from_fields(id: String, mut f: Fields) -> Job {
    let body = f.remove(field::BODY).unwrap_or_default();
    if let Some(meta) = f.remove(field::META) {
        return job_from_meta(id, &meta, body);
    }
    let mut items = [
        field::KEY,
        field::EVENT,
        field::SOURCE,
        field::CHANNEL,
        field::RECEIVED,
        field::TRACE,
        field::ATTEMPTS,
        field::STATUS,
        field::ERROR,
    ]
    .into_iter();
    let item = || match items.next().and_then(|k| f.remove(k)) {
        Some(b) => String::from_utf8(b)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        None => String::new(),
    };
    job_from_items(id, item, body)
}

/// The receipt time (ms) in a `["m", <meta>]` or `["r", <ms>]` pair.
pub(super) fn received_ms_of(v: &Value) -> Option<u64> {
    let Value::Array(pair) = v else { return None };
    let kind = as_string(pair.first()?)?;
    let value = as_bytes(pair.get(1)?)?;
    match kind.as_str() {
        "m" => {
            let mut p = MetaParts::new(&value);
            for _ in 0..4 {
                p.next_bytes();
            }
            std::str::from_utf8(p.next_bytes()).ok()?.parse().ok()
        }
        "r" => std::str::from_utf8(&value).ok()?.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
