//! The durable journal at the library level, against a real `redis-server`: one script call
//! per ingest batch records each idempotency key, appends the message to the streams of the
//! endpoints it goes to and notes it in their ledgers. These tests check what the call
//! returns and what lands in Redis: entries, fields, ledger, repeats within and across
//! batches, fan-out, and a batch large enough that the ledger is written in chunks.

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use common::*;
use redis::aio::ConnectionManager;
use redis_webhook_bridge::dlq::unix_ms;
use redis_webhook_bridge::ingest::Message;
use redis_webhook_bridge::queue::redis::{
    JOURNAL_LUA, JournalEndpoint, QueueKeys, journal_cmd, parse_entries,
};

const WINDOW_MS: u64 = 60_000;

async fn manager(redis: &RedisServer) -> ConnectionManager {
    ConnectionManager::new(redis.client())
        .await
        .expect("connect to the test redis-server")
}

fn message(key: &str) -> Message {
    Message {
        idempotency_key: key.to_string(),
        event_type: "model.ready".into(),
        source: Arc::from("registry"),
        channel: "hokusai:events".into(),
        body: Bytes::from(format!(r#"{{"idempotency_key":"{key}"}}"#)),
        received_at: SystemTime::now(),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    }
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// Runs the journal script: each message with the indices of its endpoints in `eps`.
async fn journal(
    conn: &mut ConnectionManager,
    sha: &str,
    prefix: &str,
    eps: &[&QueueKeys],
    msgs: &[(&Message, Vec<usize>)],
) -> Vec<bool> {
    let endpoints: Vec<JournalEndpoint<'_>> = eps
        .iter()
        .map(|k| JournalEndpoint {
            stream: &k.stream,
            ledger: &k.ledger.queued,
        })
        .collect();
    let cmd = journal_cmd(
        sha,
        &format!("{prefix}:seen:"),
        WINDOW_MS,
        now_ms(),
        &endpoints,
        msgs,
    );
    let fresh: Vec<i64> = cmd.query_async(conn).await.expect("journal script");
    fresh.into_iter().map(|x| x == 1).collect()
}

/// The idempotency keys in `stream`, in order.
async fn stream_keys(conn: &mut ConnectionManager, stream: &str) -> Vec<String> {
    let v: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    parse_entries(v)
        .into_iter()
        .map(|(_, f)| String::from_utf8(f.expect("fields").remove("k").expect("k")).expect("utf-8"))
        .collect()
}

async fn ledger_size(conn: &mut ConnectionManager, set: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(set)
        .query_async(conn)
        .await
        .expect("ZCARD")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_journals_a_batch_once_per_key_into_each_matching_endpoint() {
    let redis = RedisServer::start();
    let mut conn = manager(&redis).await;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(JOURNAL_LUA)
        .query_async(&mut conn)
        .await
        .expect("SCRIPT LOAD");
    let (one, two) = (QueueKeys::new("jr", "one"), QueueKeys::new("jr", "two"));

    // a → both endpoints, b → two only, c → none, a again in the same batch → a repeat.
    let (a, b, c) = (message("key-a"), message("key-b"), message("key-c"));
    let fresh = journal(
        &mut conn,
        &sha,
        "jr",
        &[&one, &two],
        &[
            (&a, vec![0, 1]),
            (&b, vec![1]),
            (&c, vec![]),
            (&a, vec![0, 1]),
        ],
    )
    .await;
    assert_eq!(fresh, vec![true, true, true, false]);
    assert_eq!(stream_keys(&mut conn, &one.stream).await, vec!["key-a"]);
    assert_eq!(
        stream_keys(&mut conn, &two.stream).await,
        vec!["key-a", "key-b"]
    );
    for (set, want) in [(&one.ledger.queued, 1), (&two.ledger.queued, 2)] {
        assert_eq!(ledger_size(&mut conn, set).await, want, "{set}");
    }
    let seen: bool = redis::cmd("EXISTS")
        .arg("jr:seen:key-c")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(seen, "a message for no endpoint is still recorded as seen");

    // Every field a worker needs is in the entry.
    let v: redis::Value = redis::cmd("XRANGE")
        .arg(&two.stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (_, fields) = parse_entries(v).pop().expect("an entry");
    let fields = fields.expect("fields");
    let text = |k: &str| String::from_utf8(fields[k].clone()).unwrap();
    assert_eq!(text("e"), "model.ready");
    assert_eq!(text("s"), "registry");
    assert_eq!(text("c"), "hokusai:events");
    assert_eq!(text("b").as_bytes(), &a.body[..]);
    assert_eq!(text("t"), a.traceparent.clone().unwrap());
    assert_eq!(text("a"), "0");
    assert!(text("r").parse::<u64>().unwrap() > 0);

    // The same batch sent again (as after a lost reply) finds every key seen.
    let fresh = journal(
        &mut conn,
        &sha,
        "jr",
        &[&one, &two],
        &[(&a, vec![0, 1]), (&b, vec![1])],
    )
    .await;
    assert_eq!(fresh, vec![false, false]);
    assert_eq!(stream_keys(&mut conn, &two.stream).await.len(), 2);

    // 700 messages to one endpoint: 1,400 ledger arguments, written in chunks.
    let many: Vec<Message> = (0..700).map(|i| message(&format!("bulk-{i:03}"))).collect();
    let batch: Vec<(&Message, Vec<usize>)> = many.iter().map(|m| (m, vec![0])).collect();
    let fresh = journal(&mut conn, &sha, "jr", &[&one], &batch).await;
    assert!(fresh.iter().all(|f| *f) && fresh.len() == 700);
    assert_eq!(ledger_size(&mut conn, &one.ledger.queued).await, 701);
    let keys = stream_keys(&mut conn, &one.stream).await;
    assert_eq!(keys.len(), 701);
    assert_eq!(keys[1], "bulk-000");
    assert_eq!(keys[700], "bulk-699", "journaled in batch order");
}
