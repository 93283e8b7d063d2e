//! Unit tests of [`super`]: entries and retry members round-trip, in both formats.

use super::*;

fn bulk(s: &[u8]) -> Value {
    Value::BulkString(s.to_vec())
}

fn tricky() -> Message {
    Message {
        // Colons, semicolons, digits and non-ASCII where the format uses them as markers.
        idempotency_key: "12:ab;3:c".into(),
        event_type: "model.ready".into(),
        source: Arc::from("registry;1:"),
        channel: "hokusai:events:é".into(),
        body: Bytes::from_static(b"{\"a\":\"1:2;3\"}\n\xff"),
        received_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    }
}

fn assert_same(job: &Job, msg: &Message) {
    assert_eq!(job.msg.idempotency_key, msg.idempotency_key);
    assert_eq!(job.msg.event_type, msg.event_type);
    assert_eq!(job.msg.source, msg.source);
    assert_eq!(job.msg.channel, msg.channel);
    assert_eq!(job.msg.body, msg.body);
    assert_eq!(job.msg.received_at, msg.received_at);
    assert_eq!(job.msg.traceparent, msg.traceparent);
}

#[test]
fn an_entry_round_trips_every_field_whatever_bytes_they_hold() {
    let msg = tricky();
    let mut meta = Vec::new();
    encode_meta(
        &mut meta,
        &msg,
        3,
        Some(503),
        Some("HTTP 503: busy: try later"),
    );
    let kv = vec![bulk(b"m"), bulk(&meta), bulk(b"b"), bulk(&msg.body)];
    let job = job_from_values("5-1".into(), kv);
    assert_same(&job, &msg);
    assert_eq!(job.attempts, 3);
    assert_eq!(job.last_status, Some(503));
    assert_eq!(job.last_error.as_deref(), Some("HTTP 503: busy: try later"));
    assert_eq!(job.queue_id.as_deref(), Some("5-1"));

    // Nothing to report yet, no traceparent: absent, not empty strings.
    let fresh = Message {
        traceparent: None,
        ..tricky()
    };
    meta.clear();
    encode_meta(&mut meta, &fresh, 0, None, None);
    let mut fields = Fields::new();
    fields.insert("m".into(), meta.clone());
    fields.insert("b".into(), fresh.body.to_vec());
    // Through the map as well (the claim path reads entries that way).
    let job = job_from_fields("5-2".into(), fields);
    assert_same(&job, &fresh);
    assert_eq!(
        (job.attempts, job.last_status, job.last_error),
        (0, None, None)
    );
}

#[test]
fn an_entry_in_the_earlier_one_field_per_item_format_reads_as_the_same_job() {
    let msg = tricky();
    let kv: Vec<Value> = [
        ("k", msg.idempotency_key.as_bytes()),
        ("e", msg.event_type.as_bytes()),
        ("s", msg.source.as_bytes()),
        ("c", msg.channel.as_bytes()),
        ("b", &msg.body[..]),
        ("r", b"1700000000123"),
        ("t", msg.traceparent.as_deref().unwrap().as_bytes()),
        ("a", b"2"),
        ("st", b"502"),
        ("er", b"HTTP 502"),
    ]
    .into_iter()
    .flat_map(|(f, v)| [bulk(f.as_bytes()), bulk(v)])
    .collect();
    let job = job_from_values("7-0".into(), kv);
    assert_same(&job, &msg);
    assert_eq!(job.attempts, 2);
    assert_eq!(job.last_status, Some(502));
    assert_eq!(job.last_error.as_deref(), Some("HTTP 502"));
}

#[test]
fn a_cut_short_meta_keeps_the_parts_before_the_cut_and_leaves_the_rest_empty() {
    let msg = tricky();
    let mut meta = Vec::new();
    encode_meta(&mut meta, &msg, 1, None, None);
    // Cut inside the channel part.
    let at = meta
        .windows(msg.channel.len())
        .position(|w| w == msg.channel.as_bytes())
        .expect("the channel is in the meta");
    let cut = at + 3;
    let job = job_from_meta("1-0".into(), &meta[..cut], msg.body.to_vec());
    assert_eq!(job.msg.idempotency_key, msg.idempotency_key);
    assert_eq!(job.msg.event_type, msg.event_type);
    assert_eq!(&*job.msg.source, &*msg.source);
    assert_eq!(job.msg.channel, "", "the cut part");
    assert_eq!(job.msg.traceparent, None);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.msg.body, msg.body);
}

#[test]
fn a_retry_member_is_the_id_the_meta_and_the_body_each_findable_by_length() {
    let mut job = Job::new(Arc::new(tricky()));
    job.queue_id = Some("1700000000123-7".into());
    job.attempts = 4;
    job.last_status = Some(500);
    let member = retry_member(&job);
    let mut p = MetaParts(&member);
    assert_eq!(p.next_bytes(), b"1700000000123-7");
    let meta = p.next_bytes().to_vec();
    assert_eq!(p.0, &job.msg.body[..], "the body is the rest, as it is");
    let back = job_from_meta("9-9".into(), &meta, p.0.to_vec());
    assert_same(&back, &job.msg);
    assert_eq!((back.attempts, back.last_status), (4, Some(500)));
}

#[test]
fn the_receipt_time_is_read_from_a_meta_or_an_earlier_format_time() {
    let msg = tricky();
    let mut meta = Vec::new();
    encode_meta(&mut meta, &msg, 2, Some(503), Some("boom"));
    let pair = Value::Array(vec![bulk(b"m"), bulk(&meta)]);
    assert_eq!(received_ms_of(&pair), Some(1_700_000_000_123));
    let old = Value::Array(vec![bulk(b"r"), bulk(b"1700000000999")]);
    assert_eq!(received_ms_of(&old), Some(1_700_000_000_999));
    assert_eq!(received_ms_of(&Value::Array(vec![])), None);
}
