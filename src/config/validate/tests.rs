//! Unit tests of validation, one or more per rule: each invalid case is refused with an
//! error naming its key, each valid edge passes. Configs are TOML read into the raw shape in
//! process (defaults as figment applies them), the registry's variables given by hand.

use super::*;
use crate::config::raw::Word;
use crate::config::{Dur, Durability, LogFormat, Scheme, SourceKind};

/// An endpoint that passes every rule.
const EP: &str = r#"
[[endpoints]]
name = "site"
url = "https://example.com/hook"
secrets = ["s3cret"]
"#;

/// Validates `toml` with the registry's variables `env`.
fn validate_env(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(toml).expect("the test TOML reads into the raw shape");
    let env = |n: &str| {
        env.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_string())
    };
    let legacy = Legacy::read(&env)?;
    validate(raw, &legacy, &env)
}

/// Validates `toml` with no variables set.
fn valid(toml: &str) -> Config {
    validate_env(toml, &[]).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

/// The key and message of the error `toml` is refused with.
fn refused(toml: &str) -> (String, String) {
    refused_env(toml, &[])
}

fn refused_env(toml: &str, env: &[(&str, &str)]) -> (String, String) {
    match validate_env(toml, env) {
        Err(ConfigError::Invalid { key, message, .. }) => (key, message),
        Err(e) => panic!("not an invalid key: {e}"),
        Ok(_) => panic!("accepted:\n{toml}"),
    }
}

/// Asserts that `toml` is refused naming `key`, with a message containing `says`.
#[track_caller]
fn assert_refused(toml: &str, key: &str, says: &str) {
    let (k, message) = refused(toml);
    assert_eq!(k, key, "{message}\n{toml}");
    assert!(message.contains(says), "{message}");
}

/// `EP` with `extra` lines added to its table.
fn endpoint_with(extra: &str) -> String {
    format!("{EP}{extra}\n")
}

/// A self-signed certificate and its key, written to `dir`.
fn cert_and_key(dir: &std::path::Path) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("ca.crt"), dir.join("ca.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

// [redis] -------------------------------------------------------------------------------

#[test]
fn the_defaults_and_one_endpoint_make_a_config() {
    let cfg = valid(EP);
    assert_eq!(cfg.redis.url.expose(), "redis://127.0.0.1:6379");
    assert_eq!(cfg.redis.key_prefix, "webhook-bridge");
    assert_eq!(cfg.delivery.durability, Durability::Redis);
    assert_eq!(cfg.log.format, LogFormat::Json);
    assert_eq!(cfg.endpoints.len(), 1);
}

#[test]
fn a_redis_url_of_another_scheme_is_refused_naming_redis_url() {
    assert_refused(
        &format!("[redis]\nurl = \"ftp://h\"\n{EP}"),
        "redis.url",
        "unsupported scheme `ftp`",
    );
}

#[test]
fn a_redis_url_that_is_not_a_url_is_refused_without_repeating_it() {
    let (key, message) = refused(&format!("[redis]\nurl = \"pass-CANARY\"\n{EP}"));
    assert_eq!(key, "redis.url");
    assert!(message.contains("not a valid URL") && !message.contains("CANARY"));
}

#[test]
fn unix_and_rediss_urls_are_accepted() {
    for url in [
        "unix:///run/redis.sock",
        "rediss://h:6380",
        "redis+unix:///s",
    ] {
        valid(&format!("[redis]\nurl = \"{url}\"\n{EP}"));
    }
}

#[test]
fn redis_tls_files_with_a_plain_redis_url_are_refused_naming_redis_url() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = cert_and_key(dir.path());
    let toml = format!("[redis]\nurl = \"redis://h\"\ntls_ca_file = \"{ca}\"\n{EP}");
    assert_refused(&toml, "redis.url", "is not rediss://");
    let cfg = valid(&toml.replace("redis://h", "rediss://h"));
    assert!(cfg.redis.tls_files_sha256.is_some());
}

#[test]
fn republish_targets_use_the_redis_tls_files_too() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = cert_and_key(dir.path());
    let cfg = valid(&format!(
        "[redis]\nurl = \"rediss://h\"\ntls_ca_file = \"{ca}\"\n\n[republish]\ntargets = [{{ kind = \"list\", key = \"l\", redis_url = \"rediss://other\" }}]\n{EP}"
    ));
    let target = cfg.republish.targets[0].redis_url.as_ref().unwrap();
    assert!(target.tls().is_some());
}

#[test]
fn a_blank_key_prefix_is_refused() {
    assert_refused(
        &format!("[redis]\nkey_prefix = \"  \"\n{EP}"),
        "redis.key_prefix",
        "must not be empty",
    );
}

#[test]
fn a_resubscribe_cap_below_10ms_is_refused_and_10ms_passes() {
    assert_refused(
        &format!("[redis]\nresubscribe_max_delay = \"9ms\"\n{EP}"),
        "redis.resubscribe_max_delay",
        "at least 10ms",
    );
    valid(&format!("[redis]\nresubscribe_max_delay = \"10ms\"\n{EP}"));
}

// [[sources]] ---------------------------------------------------------------------------

#[test]
fn without_sources_the_registry_channel_is_read() {
    let cfg = valid(EP);
    assert_eq!(cfg.sources.len(), 1);
    assert_eq!(cfg.sources[0].name, "pubsub");
    assert_eq!(
        cfg.sources[0].pubsub().unwrap().channels,
        vec![DEFAULT_CHANNEL.to_string()]
    );
}

#[test]
fn sources_get_their_default_names_and_a_stream_its_default_group() {
    let cfg = valid(&format!(
        r#"
[[sources]]
channels = ["a"]
[[sources]]
kind = ""
patterns = ["p:*"]
[[sources]]
kind = "list"
key = "q"
[[sources]]
kind = "stream"
key = "s"
{EP}"#
    ));
    let names: Vec<&str> = cfg.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["pubsub", "pubsub1", "list:q", "stream:s"]);
    assert_eq!(cfg.sources[1].kind(), SourceKind::Pubsub);
    assert_eq!(
        cfg.sources[3].spec,
        SourceSpec::Stream(StreamSource {
            key: "s".into(),
            group: "webhook-bridge".into()
        })
    );
    assert_eq!(cfg.sources[2].key(), Some("q"));
}

#[test]
fn an_unknown_source_kind_is_refused_when_read_without_repeating_it() {
    let e = toml::from_str::<RawConfig>("[[sources]]\nkind = \"kafka-CANARY\"\n").unwrap_err();
    let message = e.message();
    assert!(message.contains("unknown source kind; use pubsub, list or stream"));
    assert!(!message.contains("CANARY"), "{message}");
}

#[test]
fn a_pubsub_source_without_channels_or_patterns_is_refused() {
    assert_refused(
        &format!("[[sources]]\nkind = \"pubsub\"\n{EP}"),
        "sources[0].channels",
        "at least one channel or pattern",
    );
}

#[test]
fn an_empty_channel_or_pattern_is_refused_naming_its_key() {
    assert_refused(
        &format!("[[sources]]\nchannels = [\"a\", \"\"]\n{EP}"),
        "sources[0].channels",
        "must not be empty",
    );
    assert_refused(
        &format!("[[sources]]\nchannels = [\"a\"]\npatterns = [\"\"]\n{EP}"),
        "sources[0].patterns",
        "must not be empty",
    );
}

#[test]
fn key_or_group_on_a_pubsub_source_is_refused_naming_the_key_given() {
    for key in ["key", "group"] {
        assert_refused(
            &format!("[[sources]]\nchannels = [\"a\"]\n{key} = \"x\"\n{EP}"),
            &format!("sources[0].{key}"),
            "belong to list and stream sources",
        );
    }
}

#[test]
fn a_list_or_stream_source_without_a_key_is_refused() {
    for kind in ["list", "stream"] {
        assert_refused(
            &format!("[[sources]]\nkind = \"{kind}\"\n{EP}"),
            "sources[0].key",
            "needs `key`",
        );
        assert_refused(
            &format!("[[sources]]\nkind = \"{kind}\"\nkey = \"\"\n{EP}"),
            "sources[0].key",
            "needs `key`",
        );
    }
}

#[test]
fn channels_or_patterns_on_a_list_or_stream_source_are_refused_naming_the_key_given() {
    for (kind, key) in [("list", "channels"), ("stream", "patterns")] {
        assert_refused(
            &format!("[[sources]]\nkind = \"{kind}\"\nkey = \"k\"\n{key} = [\"a\"]\n{EP}"),
            &format!("sources[0].{key}"),
            "belong to pubsub sources",
        );
    }
    // Written but empty, they say nothing.
    valid(&format!(
        "[[sources]]\nkind = \"list\"\nkey = \"k\"\nchannels = []\n{EP}"
    ));
}

#[test]
fn a_group_on_a_list_source_is_refused() {
    assert_refused(
        &format!("[[sources]]\nkind = \"list\"\nkey = \"k\"\ngroup = \"g\"\n{EP}"),
        "sources[0].group",
        "belongs to stream sources",
    );
}

#[test]
fn two_sources_of_one_name_are_refused_naming_the_second() {
    assert_refused(
        &format!(
            "[[sources]]\nkind = \"list\"\nkey = \"k\"\n[[sources]]\nkind = \"list\"\nkey = \"k\"\n{EP}"
        ),
        "sources[1].name",
        "`list:k` is used by another source",
    );
}

// [delivery], [security], [admin], [log] --------------------------------------------------

#[test]
fn an_empty_idempotency_key_field_is_refused() {
    assert_refused(
        &format!("[delivery]\nidempotency_key_fields = [\"a\", \"\"]\n{EP}"),
        "delivery.idempotency_key_fields",
        "must not be empty",
    );
}

#[test]
fn words_are_read_into_their_enums_and_others_refused_naming_the_words() {
    let cfg = valid(&format!(
        "[delivery]\ndurability = \"memory\"\n[log]\nformat = \"text\"\n{EP}"
    ));
    assert_eq!(cfg.delivery.durability, Durability::Memory);
    assert_eq!(cfg.log.format, LogFormat::Text);
    let e = toml::from_str::<RawConfig>("[delivery]\ndurability = \"disk\"\n").unwrap_err();
    assert!(e.message().contains("use \"redis\" or \"memory\""), "{e}");
    let e = toml::from_str::<RawConfig>("[log]\nformat = \"xml\"\n").unwrap_err();
    assert!(e.message().contains("use \"json\" or \"text\""), "{e}");
    assert_eq!(LogFormat::from_word("json"), Some(LogFormat::Json));
    assert_eq!(Durability::from_word("Redis"), None);
}

#[test]
fn a_zero_payload_limit_or_json_depth_is_refused() {
    for key in ["max_payload_bytes", "max_json_depth"] {
        assert_refused(
            &format!("[security]\n{key} = 0\n{EP}"),
            &format!("security.{key}"),
            "greater than 0",
        );
    }
}

#[test]
fn an_admin_listen_that_is_not_an_address_is_refused() {
    assert_refused(
        &format!("[admin]\nlisten = \"localhost\"\n{EP}"),
        "admin.listen",
        "not an address",
    );
}

#[test]
fn protect_metrics_without_a_token_is_refused_and_with_one_passes() {
    assert_refused(
        &format!("[admin]\nprotect_metrics = true\n{EP}"),
        "admin.protect_metrics",
        "needs admin.token",
    );
    valid(&format!(
        "[admin]\nprotect_metrics = true\ntoken = \"t\"\n{EP}"
    ));
}

#[test]
fn admin_server_limits_of_zero_are_refused_naming_the_limit() {
    for key in ["max_connections = 0", "header_read_timeout = \"0s\""] {
        let name = key.split(' ').next().unwrap();
        assert_refused(
            &format!("[admin]\n{key}\n{EP}"),
            &format!("admin.{name}"),
            "greater than 0",
        );
    }
}

#[test]
fn a_misspelt_log_level_is_refused_naming_the_levels_not_the_value() {
    let (key, message) = refused(&format!("[log]\nlevel = \"warnn\"\n{EP}"));
    assert_eq!(key, "log.level");
    assert!(message.contains("directive 1 of 1") && !message.contains("warnn"));
}

#[test]
fn log_filters_of_levels_and_target_directives_pass() {
    for filter in [
        "info",
        "WARN",
        "info,redis_webhook_bridge=debug",
        "h2=off,hyper=warn",
        "redis_webhook_bridge[delivery{endpoint=a}]=debug",
    ] {
        check_log_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    }
}

#[test]
fn log_filters_that_are_empty_misspelt_or_malformed_are_refused() {
    assert!(matches!(
        check_log_filter(" , "),
        Err(LogFilterError::Empty)
    ));
    assert!(matches!(
        check_log_filter("info,warnn"),
        Err(LogFilterError::NotALevel { index: 2, count: 2 })
    ));
    assert!(matches!(
        check_log_filter("a=info[b"),
        Err(LogFilterError::NotALevel { .. }) | Err(LogFilterError::Syntax(_))
    ));
}

#[test]
fn the_log_filter_hint_names_every_accepted_level() {
    for level in LOG_LEVELS {
        assert!(LOG_FILTER_HINT.contains(level), "{level}");
    }
}

// [[endpoints]] -------------------------------------------------------------------------

#[test]
fn without_endpoints_the_config_is_refused_saying_how_to_add_one() {
    assert_refused("", "endpoints", "WEBHOOK_URL and WEBHOOK_SECRET");
}

#[test]
fn webhook_url_and_secret_make_the_default_endpoint_signed_like_the_registry() {
    let cfg = validate_env(
        "",
        &[
            ("WEBHOOK_URL", "https://example.com/h"),
            ("WEBHOOK_SECRET", "s"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.endpoints[0].name, "default");
    assert_eq!(cfg.endpoints[0].signature, Scheme::HokusaiLegacy);
}

#[test]
fn webhook_url_without_its_secret_is_refused_naming_webhook_secret() {
    let (key, _) = refused_env("", &[("WEBHOOK_URL", "https://example.com/h")]);
    assert_eq!(key, "WEBHOOK_SECRET");
}

#[test]
fn webhook_variables_default_what_the_endpoint_leaves_out_and_the_file_wins() {
    let env = [
        ("WEBHOOK_TIMEOUT", "3s"),
        ("WEBHOOK_MAX_RETRIES", "2"),
        ("WEBHOOK_RETRY_DELAY", "1s"),
        ("WEBHOOK_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "7"),
        ("WEBHOOK_CIRCUIT_BREAKER_RECOVERY_TIME", "9s"),
    ];
    let ep = &validate_env(EP, &env).unwrap().endpoints[0];
    assert_eq!((ep.timeout, ep.max_retries), (Dur::secs(3), 2));
    assert_eq!(ep.retry_delay, Dur::secs(1));
    assert_eq!(ep.circuit_breaker.failure_threshold, 7);
    assert_eq!(ep.circuit_breaker.recovery_time, Dur::secs(9));
    let ep = &validate_env(&endpoint_with("timeout = \"4s\""), &env)
        .unwrap()
        .endpoints[0];
    assert_eq!(ep.timeout, Dur::secs(4));
}

#[test]
fn the_built_in_endpoint_defaults_apply() {
    let ep = &valid(EP).endpoints[0];
    assert_eq!(ep.signature, Scheme::HokusaiV2);
    assert_eq!(ep.channels, ["*"]);
    assert_eq!((ep.timeout, ep.max_retries), (Dur::secs(30), 5));
    assert_eq!(
        (ep.retry_delay, ep.max_retry_delay),
        (Dur::secs(2), Dur::secs(3600))
    );
    assert_eq!(
        (ep.concurrency, ep.circuit_breaker.failure_threshold),
        (64, 5)
    );
}

#[test]
fn an_endpoint_name_outside_letters_digits_and_dash_underscore_dot_is_refused() {
    for name in ["a b", "", "a/b"] {
        assert_refused(
            &EP.replace("\"site\"", &format!("\"{name}\"")),
            "endpoints[0].name",
            "is not a valid name",
        );
    }
    valid(&EP.replace("\"site\"", "\"a.b-c_D9\""));
}

#[test]
fn two_endpoints_of_one_name_are_refused_naming_the_second() {
    assert_refused(
        &format!("{EP}{EP}"),
        "endpoints[1].name",
        "`site` is used by another endpoint",
    );
}

#[test]
fn endpoint_urls_outside_the_policy_are_refused_naming_the_url_key() {
    for (url, says) in [
        ("ftp://example.com/", "scheme `ftp` is not supported"),
        ("http://example.com/", "http:// is refused"),
        ("https://u:p@example.com/", "credentials in the URL"),
        ("https://user@example.com/", "credentials in the URL"),
        ("not a url", "not a valid URL"),
        ("unix:/run/x", "scheme `unix` is not supported"),
    ] {
        assert_refused(
            &EP.replace("https://example.com/hook", url),
            "endpoints[0].url",
            says,
        );
    }
}

#[test]
fn an_http_endpoint_passes_with_allow_http() {
    valid(&format!(
        "[security]\nallow_http = true\n{}",
        EP.replace("https://", "http://")
    ));
}

#[test]
fn the_url_policy_shows_the_url_redacted() {
    let security = valid(EP).security;
    let e = validate_endpoint_url("https://u:CANARY@example.com/hook?token=CANARY", &security)
        .unwrap_err();
    assert_eq!(
        e,
        EndpointUrlError::Credentials("https://example.com/hook".into())
    );
    assert!(matches!(
        validate_endpoint_url("https://", &security),
        Err(EndpointUrlError::NotAUrl(_))
    ));
}

#[test]
fn an_endpoint_without_secrets_is_refused() {
    assert_refused(
        &EP.replace("secrets = [\"s3cret\"]\n", ""),
        "endpoints[0].secrets",
        "at least one signing secret",
    );
}

#[test]
fn a_whsec_secret_that_does_not_decode_is_refused_for_standard_webhooks_only() {
    let toml = EP.replace("\"s3cret\"", "\"whsec_!!!\"");
    assert_refused(
        &format!("{toml}signature = \"standard-webhooks\"\n"),
        "endpoints[0].secrets",
        "secret #1 starts with `whsec_`",
    );
    valid(&toml);
}

#[test]
fn a_zero_timeout_is_refused() {
    assert_refused(
        &endpoint_with("timeout = \"0s\""),
        "endpoints[0].timeout",
        "greater than 0",
    );
}

#[test]
fn a_max_retry_delay_shorter_than_the_retry_delay_is_refused_and_equal_passes() {
    assert_refused(
        &endpoint_with("retry_delay = \"10s\"\nmax_retry_delay = \"5s\""),
        "endpoints[0].max_retry_delay",
        "5s is shorter than retry_delay 10s",
    );
    valid(&endpoint_with(
        "retry_delay = \"5s\"\nmax_retry_delay = \"5s\"",
    ));
}

#[test]
fn a_concurrency_of_zero_is_refused_unless_ordered_which_makes_it_one() {
    assert_refused(
        &endpoint_with("concurrency = 0"),
        "endpoints[0].concurrency",
        "at least 1",
    );
    let cfg = valid(&endpoint_with("concurrency = 0\nordered = true"));
    assert_eq!(cfg.endpoints[0].concurrency, 1);
}

#[test]
fn a_circuit_breaker_threshold_of_zero_is_refused() {
    assert_refused(
        &endpoint_with("circuit_breaker = { failure_threshold = 0 }"),
        "endpoints[0].circuit_breaker.failure_threshold",
        "at least 1",
    );
}

#[test]
fn invalid_or_reserved_headers_are_refused_naming_the_header_not_its_value() {
    for (headers, says) in [
        (
            "{ \"bad name\" = \"v\" }",
            "`bad name` is not a valid header name",
        ),
        (
            "{ X-A = \"a\\nCANARY\" }",
            "the value of `X-A` is not a valid header value",
        ),
        (
            "{ content-TYPE = \"text/plain\" }",
            "`content-TYPE` is set by the bridge",
        ),
        ("{ Webhook-Signature = \"x\" }", "is set by the bridge"),
    ] {
        let (key, message) = refused(&endpoint_with(&format!("headers = {headers}")));
        assert_eq!(key, "endpoints[0].headers");
        assert!(
            message.contains(says) && !message.contains("CANARY"),
            "{message}"
        );
    }
    valid(&endpoint_with("headers = { Authorization = \"Bearer x\" }"));
}

#[test]
fn tls_files_on_an_http_endpoint_are_refused_and_empty_paths_mean_no_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = cert_and_key(dir.path());
    let http = format!(
        "[security]\nallow_http = true\n{}tls = {{ ca_file = \"{ca}\" }}\n",
        EP.replace("https://", "http://")
    );
    assert_refused(&http, "endpoints[0].tls", "only apply to https://");
    let cfg = valid(&endpoint_with(&format!("tls = {{ ca_file = \"{ca}\" }}")));
    assert!(cfg.endpoints[0].tls.is_some());
    let cfg = valid(&endpoint_with("tls = { ca_file = \"\" }"));
    assert!(cfg.endpoints[0].tls.is_none());
}

#[test]
fn a_missing_tls_file_is_refused_naming_its_key() {
    assert_refused(
        &endpoint_with("tls = { ca_file = \"/nonexistent/ca.pem\" }"),
        "endpoints[0].tls.ca_file",
        "cannot read",
    );
}

#[test]
fn an_empty_channel_list_is_refused() {
    assert_refused(
        &endpoint_with("channels = []"),
        "endpoints[0].channels",
        "matches nothing",
    );
}

// [republish], [fallback] ---------------------------------------------------------------

fn with_target(target: &str) -> String {
    format!("[republish]\ntargets = [{target}]\n{EP}")
}

#[test]
fn a_target_without_a_kind_or_key_is_refused_naming_it() {
    assert_refused(
        &with_target("{ key = \"x\" }"),
        "republish.targets[0].kind",
        "unknown target kind",
    );
    assert_refused(
        &with_target("{ kind = \"list\", key = \"\" }"),
        "republish.targets[0].key",
        "must not be empty",
    );
}

#[test]
fn a_target_redis_url_of_another_scheme_is_refused() {
    assert_refused(
        &with_target("{ kind = \"list\", key = \"x\", redis_url = \"http://h\" }"),
        "republish.targets[0].redis_url",
        "unsupported scheme `http`",
    );
}

#[test]
fn a_target_that_a_source_reads_on_the_same_redis_is_refused_as_a_loop() {
    for (sources, target) in [
        (
            "",
            format!("{{ kind = \"channel\", key = \"{DEFAULT_CHANNEL}\" }}"),
        ),
        (
            "[[sources]]\npatterns = [\"ev:*\"]\n",
            "{ kind = \"channel\", key = \"ev:1\" }".to_string(),
        ),
        (
            "[[sources]]\nkind = \"list\"\nkey = \"q\"\n",
            "{ kind = \"list\", key = \"q\", redis_url = \"redis://127.0.0.1:6379\" }".to_string(),
        ),
        (
            "[[sources]]\nkind = \"stream\"\nkey = \"s\"\n",
            "{ kind = \"stream\", key = \"s\" }".to_string(),
        ),
    ] {
        assert_refused(
            &format!("{sources}{}", with_target(&target)),
            "republish.targets[0].key",
            "would loop",
        );
    }
}

#[test]
fn a_target_of_another_kind_or_on_another_redis_is_no_loop() {
    valid(&with_target(&format!(
        "{{ kind = \"channel\", key = \"{DEFAULT_CHANNEL}\", redis_url = \"redis://other:6379\" }}"
    )));
    valid(&with_target(&format!(
        "{{ kind = \"list\", key = \"{DEFAULT_CHANNEL}\" }}"
    )));
}

#[test]
fn the_fallback_defaults_to_the_registry_list_and_an_empty_key_is_refused() {
    let cfg = valid(EP);
    assert_eq!(cfg.fallback.target.kind, TargetKind::List);
    assert!(!cfg.fallback.enabled);
    assert_refused(
        &format!("[fallback]\nkey = \"\"\n{EP}"),
        "fallback.key",
        "must not be empty",
    );
}

// Networks ------------------------------------------------------------------------------

#[tokio::test]
async fn a_loopback_endpoint_is_refused_unless_private_networks_are_allowed() {
    let toml = format!(
        "[security]\nallow_http = true\n{}",
        EP.replace("https://example.com", "http://127.0.0.1:9")
    );
    let e = valid(&toml).check_endpoint_networks().await.unwrap_err();
    assert!(
        e.to_string().contains("endpoints[0].url")
            && e.to_string().contains("allow_private_networks"),
        "{e}"
    );
    let allowed = toml.replace(
        "[security]\n",
        "[security]\nallow_private_networks = true\n",
    );
    valid(&allowed).check_endpoint_networks().await.unwrap();
}

#[tokio::test]
async fn a_public_address_passes_the_network_check() {
    let toml = EP.replace("example.com", "93.184.215.14");
    valid(&toml).check_endpoint_networks().await.unwrap();
}

// filter, transform, transform_file ------------------------------------------------------

#[test]
fn a_filter_and_a_transform_are_compiled_at_load_and_run_over_a_message() {
    let cfg = valid(&endpoint_with(
        "filter = '.current_value > .baseline_value'\ntransform = '{id: .model_id}'",
    ));
    let ep = &cfg.endpoints[0];
    let better = br#"{"model_id":"m-1","current_value":0.9,"baseline_value":0.8}"#;
    let worse = br#"{"model_id":"m-2","current_value":0.7,"baseline_value":0.8}"#;
    assert!(ep.accepts(better).unwrap());
    assert!(!ep.accepts(worse).unwrap());
    let t = ep.transform.as_ref().expect("a transform");
    assert_eq!(t.apply(better).unwrap(), br#"{"id":"m-1"}"#);
    assert!(valid(EP).endpoints[0].accepts(worse).unwrap());
}

#[test]
fn an_invalid_filter_is_refused_naming_the_endpoint_and_the_column() {
    assert_refused(
        &endpoint_with("filter = '.token_symbol | lenght'"),
        "endpoints[0].filter",
        "endpoint `site`: the filter does not compile: undefined filter `lenght` at column 17",
    );
}

#[test]
fn an_invalid_transform_is_refused_naming_the_line_and_column() {
    let (key, message) = refused(&endpoint_with("transform = '''\n{\n  id: .model_id)\n}'''"));
    assert_eq!(key, "endpoints[0].transform");
    assert!(
        message.starts_with(
            "endpoint `site`: the transform does not compile: syntax error at line 2, column"
        ),
        "{message}"
    );
}

#[test]
fn a_transform_file_is_read_compiled_and_refused_at_its_place_when_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jq");
    std::fs::write(&good, "# the id only\n{id: .model_id}\n").unwrap();
    let cfg = valid(&endpoint_with(&format!(
        "transform_file = '{}'",
        good.display()
    )));
    let ep = &cfg.endpoints[0];
    assert_eq!(ep.transform_file.as_deref(), Some(good.as_path()));
    let t = ep.transform.as_ref().expect("the file's transform");
    assert_eq!(t.apply(br#"{"model_id":"m"}"#).unwrap(), br#"{"id":"m"}"#);

    let bad = dir.path().join("bad.jq");
    std::fs::write(&bad, "# comment\n{id: .model_id,\n  name: }\n").unwrap();
    let (key, message) = refused(&endpoint_with(&format!(
        "transform_file = '{}'",
        bad.display()
    )));
    assert_eq!(key, "endpoints[0].transform_file");
    let expected = format!(
        "endpoint `site`: the transform in {} does not compile: syntax error at line 3",
        bad.display()
    );
    assert!(message.starts_with(&expected), "{message}");
    assert_refused(
        &endpoint_with("transform_file = '/nonexistent/t.jq'"),
        "endpoints[0].transform_file",
        "cannot read /nonexistent/t.jq",
    );
}

#[test]
fn a_transform_and_a_transform_file_together_are_refused() {
    assert_refused(
        &endpoint_with("transform = '.'\ntransform_file = 't.jq'"),
        "endpoints[0].transform_file",
        "set `transform` or `transform_file`, not both",
    );
}

#[test]
fn an_empty_filter_or_transform_is_refused_rather_than_read_as_identity() {
    assert_refused(
        &endpoint_with("filter = '  '"),
        "endpoints[0].filter",
        "is empty",
    );
    assert_refused(
        &endpoint_with("transform = '# nothing yet'"),
        "endpoints[0].transform",
        "is empty",
    );
}

#[test]
fn a_transform_output_may_be_as_large_as_the_payload_limit_and_no_larger() {
    let toml = format!(
        "[security]\nmax_payload_bytes = 64\n{}",
        endpoint_with("transform = '[range(40)]'")
    );
    let cfg = valid(&toml);
    let t = cfg.endpoints[0].transform.as_ref().unwrap();
    assert_eq!(
        t.apply(b"{}").unwrap_err(),
        crate::expr::ExprError::OutputTooLarge(64)
    );
    let cfg = valid(&endpoint_with("transform = '[range(40)]'"));
    assert!(
        cfg.endpoints[0]
            .transform
            .as_ref()
            .unwrap()
            .apply(b"{}")
            .is_ok()
    );
}

#[test]
fn the_endpoint_debug_and_effective_config_show_the_expressions_as_written() {
    let cfg = valid(&endpoint_with(
        "filter = '.status == \"ready\"'\ntransform = '{id: .model_id}'",
    ));
    let debug = format!("{:?}", cfg.endpoints[0]);
    assert!(
        debug.contains(r#"filter: Some(".status == \"ready\"")"#),
        "{debug}"
    );
    assert!(
        debug.contains(r#"transform: Some("{id: .model_id}")"#),
        "{debug}"
    );
    assert!(!debug.contains("program"), "{debug}");
    let shown = cfg.to_redacted_toml();
    assert!(
        shown.contains(r#"filter = '.status == "ready"'"#),
        "{shown}"
    );
    assert!(shown.contains("transform = \"{id: .model_id}\""), "{shown}");
}

#[test]
fn a_changed_filter_or_transform_makes_the_endpoint_a_different_one_on_reload() {
    let base = valid(&endpoint_with("filter = '.a'\ntransform = '.b'"));
    let same = valid(&endpoint_with("filter = '.a'\ntransform = '.b'"));
    let filter = valid(&endpoint_with("filter = '.c'\ntransform = '.b'"));
    let transform = valid(&endpoint_with("filter = '.a'\ntransform = '.c'"));
    let none = valid(EP);
    assert!(base.endpoints[0].same_as(&same.endpoints[0]));
    for other in [&filter, &transform, &none] {
        assert!(!base.endpoints[0].same_as(&other.endpoints[0]));
    }
}

#[test]
fn a_relative_transform_file_is_read_beside_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("transforms")).unwrap();
    std::fs::write(dir.path().join("transforms/id.jq"), "{id: .model_id}").unwrap();
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, endpoint_with("transform_file = 'transforms/id.jq'")).unwrap();
    let opts = crate::config::LoadOptions {
        file: Some(file),
        ..Default::default()
    };
    let cfg = Config::load_with_env(&opts, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.endpoints[0].transform_file.as_deref(),
        Some(dir.path().join("transforms/id.jq").as_path())
    );
}
