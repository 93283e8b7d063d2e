//! Secrets never leave the process: a whole run with retries, a dead letter and debug
//! logging, then every surface an operator sees is searched for the secret values.

mod common;

use common::*;

const ENDPOINT_SECRET: &str = "hook-SECRET-9d2b7e44c1";
const LITERAL_SECRET: &str = "literal-SECRET-5a83f0d2";
const REDIS_PASSWORD: &str = "rds-PASS-5f0e8a1c77";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_never_shows_a_secret_in_logs_status_metrics_or_check_config() {
    let mut redis = RedisServer::start_with_password(REDIS_PASSWORD);
    assert!(redis.url().contains(REDIS_PASSWORD));
    let rx = Receiver::start().await;
    // One retried delivery, one dead letter, the rest delivered.
    rx.script(vec![Reply::status(503), Reply::status(400)]);
    let config = base_toml(&redis, "t-secrets").replace("level = \"info\"", "level = \"debug\"")
        + &endpoint_toml(
            "from-env",
            &rx.url("/env"),
            "secrets = [\"env:HOOK_SECRET_FOR_TEST\"]",
        )
        + &endpoint_toml(
            "literal",
            &rx.url("/literal"),
            &format!("secrets = [\"{LITERAL_SECRET}\"]\nchannels = [\"nothing-matches\"]"),
        );
    let envs = [("HOOK_SECRET_FOR_TEST", ENDPOINT_SECRET)];
    let bridge = Bridge::start_with_env(&config, &envs).await;

    for n in 1..=3 {
        redis
            .publish(DEFAULT_CHANNEL, message("model.ready", n))
            .await;
    }
    redis.publish(DEFAULT_CHANNEL, "not json").await;
    wait_until(PATIENCE, "2 delivered and 1 dead-lettered", || async {
        let ep = bridge.endpoint_status("from-env").await;
        ep["delivered"] == 2 && ep["dead_lettered"] == 1
    })
    .await;
    assert_eq!(
        bridge.dlq_entries(&envs).len(),
        2,
        "the 400 and the non-JSON message"
    );

    let mut surfaces = vec![
        ("/status", bridge.status_json().await.to_string()),
        ("/metrics", bridge.metrics_text().await),
    ];
    let out = bridge.cli(&["check-config"], &envs);
    assert!(out.status.success(), "{}", show(&out));
    surfaces.push(("check-config", show(&out)));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(":***@127.0.0.1"),
        "check-config shows the redis URL redacted: {}",
        show(&out)
    );
    surfaces.push(("dlq list", show(&bridge.cli(&["dlq", "list"], &envs))));

    // Losing Redis makes the bridge log the Redis URL: it must come out redacted.
    redis.kill();
    wait_until(
        PATIENCE,
        "the bridge logs that it cannot reach Redis",
        || async { bridge.full_logs().contains(":***@127.0.0.1") },
    )
    .await;
    redis.restart();
    bridge.wait_ready().await;

    bridge.sigterm();
    let status = bridge.wait_exit(PATIENCE).await;
    assert!(status.success(), "{status}\n{}", bridge.logs());
    let logs = bridge.full_logs();
    // The run did log its failures; the search below is not over an empty file.
    for expected in [
        "attempt failed; will retry",
        "delivery dead-lettered",
        "DEBUG",
    ] {
        assert!(logs.contains(expected), "the log has `{expected}`");
    }
    surfaces.push(("the bridge's stdout and stderr", logs));

    for (name, text) in &surfaces {
        for secret in [ENDPOINT_SECRET, LITERAL_SECRET, REDIS_PASSWORD] {
            if let Some(at) = text.find(secret) {
                let from = at.saturating_sub(300);
                let to = (at + 300).min(text.len());
                panic!(
                    "{name} contains the secret `{secret}`:\n…{}…",
                    String::from_utf8_lossy(&text.as_bytes()[from..to])
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Config errors, Redis URLs and endpoint URLs never show a credential
// ---------------------------------------------------------------------------------------

/// Planted in every secret-bearing place of a broken config; no output may contain it.
const CANARY: &str = "CANARY-5ecret-7f3a";

/// A config that loads, with the canary in the Redis password, a literal secret and a
/// credential header.
fn canary_config() -> String {
    format!(
        r#"[redis]
url = "redis://:{CANARY}@127.0.0.1:6379"

[[endpoints]]
name = "site"
url = "https://example.com/hook"
secrets = ["{CANARY}"]
headers = {{ Authorization = "Bearer {CANARY}" }}
"#
    )
}

/// Panics if `text` (the output of `what`) contains the canary, showing where.
fn assert_no_canary(what: &str, text: &str) {
    if let Some(at) = text.find(CANARY) {
        let from = at.saturating_sub(300);
        let to = (at + 300).min(text.len());
        panic!(
            "{what} shows the canary:\n…{}…",
            String::from_utf8_lossy(&text.as_bytes()[from..to])
        );
    }
}

/// `check-config` with `toml` as the file and `envs`; returns the output.
fn check_config_with(toml: &str, envs: &[(&str, &str)], extra: &[&str]) -> std::process::Output {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap(), "check-config"];
    args.extend_from_slice(extra);
    run_cli(&args, envs)
}

/// What a case is, the file, the environment, and what the error must name.
type BrokenConfig = (
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    Vec<&'static str>,
);

#[test]
fn config_errors_name_key_and_place_but_never_a_value() {
    let good = canary_config();
    // (what, the file, the environment, what the error must name)
    let cases: Vec<BrokenConfig> = vec![
        (
            "a syntax error on the line of the redis password",
            good.replace(
                &format!("{CANARY}@127.0.0.1:6379\""),
                &format!("{CANARY}@127.0.0.1:6379"),
            ),
            vec![],
            vec!["TOML syntax error", "line", "column", "config.toml"],
        ),
        (
            "a syntax error on the line of a header",
            good.replace(&format!("{CANARY}\" }}"), &format!("{CANARY} }}")),
            vec![],
            vec!["TOML syntax error", "line", "column"],
        ),
        (
            "a syntax error on the line of a secret",
            good.replace(&format!("[\"{CANARY}\"]"), &format!("[\"{CANARY}\"")),
            vec![],
            vec!["TOML syntax error", "line"],
        ),
        (
            "a secret given as a string instead of a list",
            good.replace(&format!("[\"{CANARY}\"]"), &format!("\"{CANARY}\"")),
            vec![],
            vec!["endpoints[0].secrets", "line 7, column 11", "found string"],
        ),
        (
            "headers given as a string",
            good.replace(
                &format!("{{ Authorization = \"Bearer {CANARY}\" }}"),
                &format!("\"Bearer {CANARY}\""),
            ),
            vec![],
            vec!["endpoints[0].headers", "line 8", "found string"],
        ),
        (
            "a header value of the wrong type",
            good.replace(
                &format!("\"Bearer {CANARY}\""),
                &format!("[\"Bearer {CANARY}\"]"),
            ),
            vec![],
            vec![
                "endpoints[0].headers.Authorization",
                "line 8",
                "found array",
            ],
        ),
        (
            "the redis URL as a number next to a secret",
            good.replace("[redis]\n", "[redis]\nkey_prefix = 5\n"),
            vec![],
            vec!["redis.key_prefix", "line 2", "found integer"],
        ),
        (
            "an unknown key holding a secret",
            good.replace("[redis]\n", &format!("[redis]\npasword = \"{CANARY}\"\n")),
            vec![],
            vec!["redis.pasword", "unknown key", "line 2, column 1"],
        ),
        (
            "a duration that is a secret",
            good.replace(
                "[[endpoints]]\n",
                &format!("[[endpoints]]\ntimeout = \"{CANARY}\"\n"),
            ),
            vec![],
            vec!["endpoints[0].timeout", "not a valid duration", "line 5"],
        ),
        (
            "a signature scheme that is a secret",
            good.replace(
                "[[endpoints]]\n",
                &format!("[[endpoints]]\nsignature = \"{CANARY}\"\n"),
            ),
            vec![],
            vec!["endpoints[0].signature", "unknown value"],
        ),
        (
            "an invalid redis URL with a password",
            good.replace("@127.0.0.1:6379", "@[::1"),
            vec![],
            vec!["redis.url", "not a valid URL"],
        ),
        (
            "an endpoint URL with a token in the query and bad credentials",
            good.replace(
                "https://example.com/hook",
                &format!("https://u:{CANARY}@example.com/hook/{CANARY}?token={CANARY}"),
            ),
            vec![],
            vec!["endpoints[0].url", "credentials"],
        ),
        (
            "a delivery setting of the wrong type from BRIDGE_*",
            good.clone(),
            vec![("BRIDGE_SECURITY__ALLOW_HTTP", CANARY)],
            vec![
                "security.allow_http",
                "BRIDGE_SECURITY__ALLOW_HTTP",
                "found string",
            ],
        ),
        (
            "a duration from BRIDGE_*",
            good.clone(),
            vec![("BRIDGE_DELIVERY__DEDUPE_WINDOW", CANARY)],
            vec!["delivery.dedupe_window", "BRIDGE_DELIVERY__DEDUPE_WINDOW"],
        ),
        (
            "an unknown BRIDGE_* variable",
            good.clone(),
            vec![("BRIDGE_REDIS__PASSWORD", CANARY)],
            vec!["redis.password", "BRIDGE_REDIS__PASSWORD", "unknown key"],
        ),
        (
            "an invalid redis URL from BRIDGE_*",
            good.clone(),
            vec![("BRIDGE_REDIS__URL", "http://:CANARY-5ecret-7f3a@h")],
            vec!["redis.url", "scheme"],
        ),
        (
            "legacy variables with bad values",
            good.replace(&format!("url = \"redis://:{CANARY}@127.0.0.1:6379\"\n"), ""),
            vec![
                ("REDIS_HOST", "127.0.0.1"),
                ("REDIS_PORT", CANARY),
                ("REDIS_AUTH_TOKEN", CANARY),
                ("WEBHOOK_SECRET", CANARY),
            ],
            vec!["REDIS_PORT", "not a port number"],
        ),
        (
            "a legacy number that is a secret",
            good.clone(),
            vec![("WEBHOOK_MAX_RETRIES", CANARY), ("WEBHOOK_SECRET", CANARY)],
            vec!["WEBHOOK_MAX_RETRIES", "not a whole number"],
        ),
        (
            "a legacy duration that is a secret",
            good.clone(),
            vec![("WEBHOOK_TIMEOUT", CANARY)],
            vec!["WEBHOOK_TIMEOUT", "not a valid duration"],
        ),
        (
            "a legacy boolean that is a secret",
            good.clone(),
            vec![("ENABLE_REDIS_FALLBACK", CANARY)],
            vec!["ENABLE_REDIS_FALLBACK", "not a boolean"],
        ),
        (
            "an invalid REDIS_URL",
            good.replace(&format!("url = \"redis://:{CANARY}@127.0.0.1:6379\"\n"), ""),
            vec![("REDIS_URL", "ftp://:CANARY-5ecret-7f3a@h")],
            vec!["redis.url", "scheme"],
        ),
    ];
    for (what, toml, envs, names) in &cases {
        let out = check_config_with(toml, envs, &[]);
        assert_eq!(out.status.code(), Some(78), "{what}: {}", show(&out));
        let shown = show(&out);
        assert_no_canary(what, &shown);
        for name in names {
            assert!(
                shown.contains(name),
                "{what}: the error names `{name}`:\n{shown}"
            );
        }
        // `run` loads the config the same way and refuses to start with the same error.
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml).unwrap();
        let out = run_cli(&["--config", path.to_str().unwrap(), "run"], envs);
        assert_eq!(out.status.code(), Some(78), "run, {what}: {}", show(&out));
        assert_no_canary(&format!("run, {what}"), &show(&out));
        assert!(show(&out).contains(names[0]), "run, {what}: {}", show(&out));
    }
}

#[test]
fn a_tls_key_file_that_is_not_a_key_is_named_without_its_contents() {
    let dir = tempfile::TempDir::new().unwrap();
    let key_file = dir.path().join("client.key");
    std::fs::write(
        &key_file,
        format!("-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    // A real certificate, so the key is what fails.
    let cert = rcgen::generate_simple_self_signed(vec!["client.test".into()]).unwrap();
    let cert_file = dir.path().join("client.crt");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    let toml = canary_config().replace("redis://", "rediss://").replace(
        "[[endpoints]]",
        &format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\n\n[[endpoints]]",
            cert_file.display().to_string(),
            key_file.display().to_string()
        ),
    );
    let out = check_config_with(&toml, &[], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let shown = show(&out);
    assert!(shown.contains("redis.tls_key_file"), "{shown}");
    assert_no_canary("a broken TLS key file", &shown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reload_logs_the_error_without_any_value_of_the_file() {
    let redis = RedisServer::start_with_password(CANARY);
    let rx = Receiver::start().await;
    let good = base_toml(&redis, "t-reload-canary")
        + &endpoint_toml(
            "site",
            &rx.url("/hook"),
            &format!(
                "secrets = [\"{CANARY}\"]\nheaders = {{ Authorization = \"Bearer {CANARY}\" }}"
            ),
        );
    let bridge = Bridge::start(&good).await;
    // (the broken file, what its rejection names)
    let broken = [
        (
            good.replace(&format!("{CANARY}\" }}"), &format!("{CANARY} }}")),
            "TOML syntax error",
        ),
        (
            good.replace(&format!("[\"{CANARY}\"]"), &format!("\"{CANARY}\"")),
            "endpoints[0].secrets",
        ),
        (
            good.replace("[redis]\n", &format!("[redis]\npasword = \"{CANARY}\"\n")),
            "redis.pasword",
        ),
    ];
    for (text, named) in &broken {
        // Written beside and renamed over, so the watcher never reads half a file.
        let next = format!("{}.next", bridge.config_path());
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, bridge.config_path()).unwrap();
        wait_until(
            PATIENCE,
            &format!("the reload naming `{named}` is rejected"),
            || async {
                bridge
                    .full_logs()
                    .lines()
                    .any(|l| l.contains("config reload rejected") && l.contains(named))
            },
        )
        .await;
    }
    let logs = bridge.full_logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("config reload rejected") && l.contains("ERROR")),
        "the rejection is an ERROR line:\n{logs}"
    );
    bridge.sigterm();
    bridge.wait_exit(PATIENCE).await;
    assert_no_canary("the bridge's output", &bridge.full_logs());
}

#[test]
fn every_form_of_redis_credential_is_masked_by_check_config() {
    for url in [
        format!("redis://:{CANARY}@127.0.0.1:6379"),
        format!("rediss://alice:{CANARY}@127.0.0.1:6380"),
        format!("unix:///run/redis.sock?pass={CANARY}"),
        format!("redis+unix:///run/redis.sock?user=alice&pass={CANARY}"),
        format!("unix:///run/redis.sock?password={CANARY}"),
        format!("redis://127.0.0.1:6379/0?password={CANARY}"),
    ] {
        let toml = canary_config().replace(&format!("redis://:{CANARY}@127.0.0.1:6379"), &url);
        let out = check_config_with(&toml, &[], &[]);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", show(&out));
        assert!(show(&out).contains("***"), "{}", show(&out));
        assert_no_canary(&format!("check-config of {url}"), &show(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_status_json_and_migrate_plan_mask_the_redis_password() {
    let redis = RedisServer::start_with_password(CANARY);
    let url = format!("{}/0?password={CANARY}", redis.url());
    let toml = canary_config().replace(&format!("redis://:{CANARY}@127.0.0.1:6379"), &url);
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["migrate", "plan"],
        &["migrate", "plan", "--format", "json"],
    ] {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, &toml).unwrap();
        let mut full = vec!["--config", path.to_str().unwrap()];
        full.extend_from_slice(args);
        let out = run_cli(&full, &[]);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        let shown = show(&out);
        assert!(
            shown.contains(":***@127.0.0.1") && shown.contains("password=***"),
            "{shown}"
        );
        assert_no_canary(&format!("{args:?}"), &shown);
    }
}

#[test]
fn rediss_insecure_is_flagged_by_check_config() {
    let toml = canary_config().replace(
        &format!("redis://:{CANARY}@127.0.0.1:6379"),
        &format!("rediss://:{CANARY}@127.0.0.1:6380/#insecure"),
    );
    let out = check_config_with(&toml, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: redis.url") && stderr.contains("#insecure"),
        "{}",
        show(&out)
    );
    assert_no_canary("check-config", &show(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_insecure_logs_a_warning_at_start() {
    let toml = common_tables(
        &format!(
            "url = \"rediss://:{CANARY}@127.0.0.1:{}/#insecure\"",
            free_port()
        ),
        "info",
    ) + &endpoint_toml("site", "http://127.0.0.1:9/hook", "");
    let bridge = Bridge::spawn(&toml, &[]);
    wait_until(PATIENCE, "the bridge warns about #insecure", || async {
        bridge
            .full_logs()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("#insecure"))
    })
    .await;
    bridge.kill();
    assert_no_canary("the bridge's output", &bridge.full_logs());
}

/// Token-like parts of an endpoint URL: a path segment and a query value.
const URL_TOKEN: &str = "CANARY5ecret7f3aTOKEN";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_url_credentials_stay_out_of_status_logs_dlq_and_check_config() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(400));
    let refused = format!(
        "http://127.0.0.1:{}/services/{URL_TOKEN}?token={URL_TOKEN}",
        free_port()
    );
    let config = base_toml(&redis, "t-endpoint-url")
        + &endpoint_toml(
            "answers",
            &rx.url(&format!("/hooks/{URL_TOKEN}?code={URL_TOKEN}")),
            "max_retries = 0",
        )
        + &endpoint_toml("refuses", &refused, "max_retries = 0");
    let bridge = Bridge::start(&config).await;
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    wait_until(
        PATIENCE,
        "both endpoints dead-letter the message",
        || async {
            bridge.endpoint_status("answers").await["dead_lettered"] == 1
                && bridge.endpoint_status("refuses").await["dead_lettered"] == 1
        },
    )
    .await;
    assert_eq!(rx.requests().len(), 1, "the request went to the full URL");
    assert!(rx.requests()[0].path.contains(URL_TOKEN));

    let status = bridge.status_json().await.to_string();
    assert!(
        status.contains("/hooks/***"),
        "/status shows the redacted URL: {status}"
    );
    let dlq = show(&bridge.cli(&["dlq", "list", "--json"], &[]));
    let check = bridge.cli(&["check-config"], &[]);
    assert!(check.status.success(), "{}", show(&check));
    assert!(show(&check).contains("/services/***"), "{}", show(&check));
    let logs = bridge.full_logs();
    assert!(logs.contains("delivery dead-lettered"), "{logs}");
    for (what, text) in [
        ("/status", status),
        ("dlq list --json", dlq),
        ("check-config", show(&check)),
        ("the bridge's logs", logs),
    ] {
        assert!(
            !text.contains(URL_TOKEN),
            "{what} shows the URL's token:\n{text}"
        );
    }

    // The operator can ask for the full URLs.
    let full = bridge.cli(&["check-config", "--show-urls"], &[]);
    assert!(full.status.success(), "{}", show(&full));
    assert!(
        String::from_utf8_lossy(&full.stdout).contains(&format!("?token={URL_TOKEN}")),
        "{}",
        show(&full)
    );
}
