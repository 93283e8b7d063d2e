//! The oldest supported Redis: `run` checks the server's version at start and refuses an
//! older one with an error that names both versions.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_checks_the_real_servers_version_and_runs() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let bridge = Bridge::start(
        &(base_toml(&redis, "t-version") + &endpoint_toml("site", &rx.url("/hook"), "")),
    )
    .await;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut redis.conn().await)
        .await
        .expect("INFO server");
    let version =
        redis_webhook_bridge::redis::version::parse_version(&info).expect("redis_version");
    assert!(
        version >= redis_webhook_bridge::redis::version::MIN_REDIS_VERSION,
        "the test machine's redis-server {version} is older than the supported minimum"
    );
    wait_until(
        SECS(30),
        "the bridge logs the version it checked",
        || async {
            bridge
                .full_logs()
                .contains("Redis server version supported")
        },
    )
    .await;
    assert!(
        bridge
            .full_logs()
            .contains(&format!("\"redis_version\":\"{version}\"")),
        "the log names the server's version {version}:\n{}",
        bridge.logs()
    );
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    rx.wait_for_count(1, SECS(30)).await;
}

/// Answers RESP commands like a Redis 6.0 would: `INFO` with `redis_version:6.0.9`, `GET` with
/// nil, anything else `+OK`. No Redis older than 6.2 is installed on test machines, and only
/// the `INFO` answer matters here, so this small stand-in plays the old server.
fn serve_as_redis_6_0(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        std::thread::spawn(move || {
            let mut out = stream.try_clone().expect("clone the socket");
            let mut reader = BufReader::new(stream);
            loop {
                // `*<n>` then n bulk strings `$<len>` + data.
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let Some(n) = line
                    .trim()
                    .strip_prefix('*')
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    return;
                };
                let mut args = Vec::new();
                for _ in 0..n {
                    let mut len = String::new();
                    if reader.read_line(&mut len).unwrap_or(0) == 0 {
                        return;
                    }
                    let len: usize = len.trim().trim_start_matches('$').parse().unwrap_or(0);
                    let mut data = vec![0u8; len + 2];
                    if reader.read_exact(&mut data).is_err() {
                        return;
                    }
                    data.truncate(len);
                    args.push(String::from_utf8_lossy(&data).to_uppercase());
                }
                let reply = match args.first().map(String::as_str) {
                    Some("INFO") => {
                        let info = "# Server\r\nredis_version:6.0.9\r\nredis_mode:standalone\r\n";
                        format!("${}\r\n{info}\r\n", info.len())
                    }
                    Some("GET") => "$-1\r\n".to_string(),
                    _ => "+OK\r\n".to_string(),
                };
                if out.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_redis_older_than_6_2_naming_both_versions() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the old server");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || serve_as_redis_6_0(listener));
    let config = common_tables(
        &format!("url = \"redis://127.0.0.1:{port}\"\nkey_prefix = \"t-old\""),
        "info",
    ) + &endpoint_toml("site", "http://127.0.0.1:9/hook", "");
    let bridge = Bridge::spawn(&config, &[]);
    let status = bridge.wait_exit(SECS(60)).await;
    assert_eq!(status.code(), Some(1), "{}", bridge.logs());
    let logs = bridge.full_logs();
    assert!(
        logs.contains("version 6.0.9") && logs.contains("6.2.0"),
        "the error names the server's version and the minimum:\n{}",
        bridge.logs()
    );
    assert!(
        !logs.contains("bridge running"),
        "nothing started on the old server:\n{}",
        bridge.logs()
    );
}
