//! The durable journal against a real `redis-server`. At the library level: one script call
//! per ingest batch records each idempotency key, appends the message to the streams of the
//! endpoints it goes to and notes it in their ledgers; the tests check what the call returns
//! and what a queue read gets back: every field, the ledger, repeats within and across
//! batches, fan-out, and a batch large enough that the ledger is written in chunks. With the
//! built binary: entries and retries written in the earlier one-field-per-item format (what
//! a replica of an older version leaves behind) are delivered after an upgrade.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common::*;
use redis::aio::ConnectionManager;
use redis_webhook_bridge::message::{Job, Message};
use redis_webhook_bridge::queue::redis::QueueKeys;
use redis_webhook_bridge::queue::redis::codec::{Read, parse_jobs};
use redis_webhook_bridge::queue::redis::journal::{
    JOURNAL_LUA, Journal, JournalEndpoint, journal_cmd,
};
use redis_webhook_bridge::util::time::unix_ms;
use tokio_util::sync::CancellationToken;

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

/// Every job in `stream`, in order, read the way a worker reads them (a consumer group read
/// from the start; each call uses a group of its own).
async fn stream_jobs(conn: &mut ConnectionManager, stream: &str) -> Vec<Job> {
    let group = format!("test-{}", uuid::Uuid::new_v4());
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(&group)
        .arg("0")
        .query_async(conn)
        .await
        .expect("XGROUP CREATE");
    let v: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&group)
        .arg("reader")
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(conn)
        .await
        .expect("XREADGROUP");
    parse_jobs(v)
        .into_iter()
        .map(|entry| match entry {
            Read::Job(job) => job,
            Read::Deleted(id) => panic!("entry {id} has no fields"),
        })
        .collect()
}

/// The idempotency keys in `stream`, in order.
async fn stream_keys(conn: &mut ConnectionManager, stream: &str) -> Vec<String> {
    stream_jobs(conn, stream)
        .await
        .into_iter()
        .map(|j| j.msg.idempotency_key.clone())
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

    // Every field a worker needs comes back from the entry.
    let job = stream_jobs(&mut conn, &two.stream)
        .await
        .into_iter()
        .next()
        .expect("an entry");
    assert_eq!(job.msg.idempotency_key, "key-a");
    assert_eq!(job.msg.event_type, "model.ready");
    assert_eq!(&*job.msg.source, "registry");
    assert_eq!(job.msg.channel, "hokusai:events");
    assert_eq!(job.msg.body, a.body);
    assert_eq!(job.msg.traceparent, a.traceparent);
    assert_eq!(unix_ms(job.msg.received_at), unix_ms(a.received_at));
    assert_eq!((job.attempts, job.last_status), (0, None));
    assert!(job.queue_id.is_some());

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_redis_does_not_take_through_shutdown_is_given_up_after_a_short_grace() {
    let mut redis = RedisServer::start();
    let shutdown = CancellationToken::new();
    // A connection that fails at once while the server is away, so that the test measures
    // the journal's own waits.
    let conn = ConnectionManager::new_with_config(
        redis.client(),
        redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1))),
    )
    .await
    .expect("connect to the test redis-server");
    let journal = Journal::new(
        conn,
        "jg:seen:".into(),
        Duration::from_millis(WINDOW_MS),
        shutdown.clone(),
    );
    let keys = QueueKeys::new("jg", "one");
    let one = [JournalEndpoint {
        stream: &keys.stream,
        ledger: &keys.ledger.queued,
    }];
    let (a, b, c) = (message("key-a"), message("key-b"), message("key-c"));
    let fresh = journal
        .write(&one, &[(&a, vec![0])])
        .await
        .expect("journaled");
    assert_eq!(fresh, vec![true]);

    redis.kill();
    shutdown.cancel();
    let started = Instant::now();
    let given_up = journal.write(&one, &[(&b, vec![0])]).await;
    let took = started.elapsed();
    assert!(given_up.is_err(), "nothing can be journaled: {given_up:?}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(10),
        "tried on for the grace after shutdown, then gave up: {took:?}"
    );
    // The grace counts once: the next batch gives up at its first failure.
    let started = Instant::now();
    assert!(journal.write(&one, &[(&c, vec![0])]).await.is_err());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
}

/// `XADD stream * field value …`.
async fn xadd(conn: &mut ConnectionManager, stream: &str, fields: &[(&str, &str)]) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (f, v) in fields {
        cmd.arg(*f).arg(*v);
    }
    let _: String = cmd.query_async(conn).await.expect("XADD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_and_retries_left_in_the_earlier_format_are_delivered_after_an_upgrade() {
    let prefix = "jr-upgrade";
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let mut conn = manager(&redis).await;
    let (stream, retry) = (format!("{prefix}:q:site"), format!("{prefix}:retry:site"));
    let received = (now_ms() - 5_000).to_string();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");

    // An entry an older replica journaled (one field per item) and nobody read yet.
    let entry_body = r#"{"idempotency_key":"old-entry","n":1}"#;
    xadd(
        &mut conn,
        &stream,
        &[
            ("k", "old-entry"),
            ("e", "model.ready"),
            ("s", "registry"),
            ("c", "hokusai:events"),
            ("b", entry_body),
            ("r", &received),
            ("t", ""),
            ("a", "0"),
        ],
    )
    .await;
    // A retry an older replica scheduled (a JSON member) after two failed attempts, due now.
    let retry_body = r#"{"idempotency_key":"old-retry","n":2}"#;
    let member = serde_json::json!({
        "k": "old-retry", "e": "model.retired", "s": "registry", "c": "hokusai:events",
        "b": retry_body, "r": received, "t": traceparent, "a": "2", "st": "503",
        "er": "HTTP 503", "id": "1-1",
    })
    .to_string();
    let _: i64 = redis::cmd("ZADD")
        .arg(&retry)
        .arg(now_ms())
        .arg(&member)
        .query_async(&mut conn)
        .await
        .expect("ZADD");

    let bridge =
        Bridge::start(&(base_toml(&redis, prefix) + &endpoint_toml("site", &rx.url("/hook"), "")))
            .await;
    let reqs = rx
        .wait_for_count(2, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(reqs.len(), 2, "each delivered once\n{}", bridge.logs());
    let by_key = |k: &str| {
        reqs.iter()
            .find(|r| r.idempotency_key() == k)
            .unwrap_or_else(|| panic!("{k} was delivered\n{}", bridge.logs()))
    };
    let entry = by_key("old-entry");
    assert_eq!(std::str::from_utf8(&entry.body).unwrap(), entry_body);
    assert_eq!(entry.header("x-hokusai-event"), "model.ready");
    assert_eq!(entry.attempt(), 1);
    let retried = by_key("old-retry");
    assert_eq!(std::str::from_utf8(&retried.body).unwrap(), retry_body);
    assert_eq!(retried.header("x-hokusai-event"), "model.retired");
    assert_eq!(retried.attempt(), 3, "the two earlier attempts count");
    assert!(
        retried.header("traceparent").contains(trace_id),
        "the trace continues: {}",
        retried.header("traceparent")
    );

    // Both settled: acknowledged and deleted, nothing left waiting, nothing dead-lettered.
    wait_until(PATIENCE, "the queue and the retry set are empty", || {
        let mut c = conn.clone();
        let (stream, retry) = (stream.clone(), retry.clone());
        async move {
            let (len, waiting): (u64, u64) = redis::pipe()
                .cmd("XLEN")
                .arg(&stream)
                .cmd("ZCARD")
                .arg(&retry)
                .query_async(&mut c)
                .await
                .expect("XLEN, ZCARD");
            len == 0 && waiting == 0
        }
    })
    .await;
    assert!(bridge.dlq_entries(&[]).is_empty(), "{}", bridge.logs());
}
