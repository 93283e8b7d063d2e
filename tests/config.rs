//! Configuration through the real binary: invalid configs exit 78 naming the key, the
//! registry's legacy variables, and the order of the layers (file < env < flags).

mod common;

use common::*;

const VALID_ENDPOINT: &str = r#"
[[endpoints]]
name = "site"
url = "https://example.com/hook"
secrets = ["literal-secret"]
"#;

/// Runs `check-config` on `toml` (written to a file) with `envs`; returns the output.
fn check_config(toml: &str, envs: &[(&str, &str)], flags: &[&str]) -> std::process::Output {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(flags);
    args.push("check-config");
    run_cli(&args, envs)
}

/// Asserts exit 78 and that stderr names every one of `names`.
fn assert_rejected(toml: &str, envs: &[(&str, &str)], names: &[&str]) -> String {
    let out = check_config(toml, envs, &[]);
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    for name in names {
        assert!(
            stderr.contains(name),
            "the error names `{name}`: {}",
            show(&out)
        );
    }
    stderr
}

#[test]
fn a_valid_config_passes_check_config_with_exit_0() {
    let out = check_config(VALID_ENDPOINT, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn an_unknown_key_exits_78_naming_the_key() {
    let toml = format!("{VALID_ENDPOINT}\n[delivery]\nbogus = 1\n");
    assert_rejected(&toml, &[], &["delivery.bogus"]);
}

#[test]
fn an_ftp_endpoint_url_exits_78_naming_the_key_and_the_scheme() {
    let toml = VALID_ENDPOINT.replace("https://example.com/hook", "ftp://example.com/hook");
    assert_rejected(&toml, &[], &["endpoints[0].url", "ftp"]);
}

#[test]
fn an_http_endpoint_without_allow_http_exits_78_naming_the_setting() {
    let toml = VALID_ENDPOINT.replace("https://", "http://");
    assert_rejected(&toml, &[], &["endpoints[0].url", "allow_http"]);
    // …and is accepted once allowed.
    let out = check_config(
        &format!("{toml}\n[security]\nallow_http = true\n"),
        &[],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn an_endpoint_url_with_credentials_exits_78_without_showing_the_password() {
    let password = "pw-in-url-3e9c1d";
    let toml = VALID_ENDPOINT.replace(
        "https://example.com",
        &format!("https://alice:{password}@example.com"),
    );
    let stderr = assert_rejected(&toml, &[], &["endpoints[0].url", "credentials"]);
    assert!(!stderr.contains(password), "the password leaked: {stderr}");
}

#[test]
fn a_secret_from_an_unset_variable_exits_78_naming_the_variable() {
    let toml = VALID_ENDPOINT.replace("literal-secret", "env:NOPE_NOT_SET");
    assert_rejected(&toml, &[], &["NOPE_NOT_SET", "endpoints[0].secrets"]);
}

#[test]
fn a_bad_duration_exits_78_naming_the_key() {
    let toml = format!("{VALID_ENDPOINT}timeout = \"fast\"\n");
    let stderr = assert_rejected(
        &toml,
        &[],
        &["endpoints[0].timeout", "not a valid duration"],
    );
    // The value is not repeated: a misplaced secret would be printed with it.
    assert!(!stderr.contains("fast"), "{stderr}");
}

#[test]
fn a_bad_duration_in_a_bridge_variable_exits_78_naming_the_key_and_the_variable() {
    assert_rejected(
        VALID_ENDPOINT,
        &[("BRIDGE_DELIVERY__SHUTDOWN_TIMEOUT", "banana")],
        &[
            "delivery.shutdown_timeout",
            "BRIDGE_DELIVERY__SHUTDOWN_TIMEOUT",
            "not a valid duration",
        ],
    );
}

#[test]
fn a_config_without_endpoints_exits_78_saying_how_to_add_one() {
    assert_rejected(
        "[redis]\nkey_prefix = \"x\"\n",
        &[],
        &["endpoints", "WEBHOOK_URL"],
    );
}

#[test]
fn the_legacy_variables_alone_define_the_default_endpoint_and_redis_with_secrets_hidden() {
    let secret = "legacy-webhook-SECRET-71f2";
    let token = "legacy-redis-TOKEN-0b5d";
    let out = run_cli(
        &["check-config"],
        &[
            ("WEBHOOK_URL", "https://hooks.example.com/models/ready"),
            ("WEBHOOK_SECRET", secret),
            ("WEBHOOK_TIMEOUT", "7"),
            ("WEBHOOK_MAX_RETRIES", "2"),
            ("REDIS_HOST", "redis.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_AUTH_TOKEN", token),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(secret), "WEBHOOK_SECRET leaked: {all}");
    assert!(!all.contains(token), "REDIS_AUTH_TOKEN leaked: {all}");

    let cfg: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|e| panic!("check-config prints TOML ({e}): {}", show(&out)));
    let ep = &cfg["endpoints"][0];
    assert_eq!(ep["name"].as_str(), Some("default"), "{ep}");
    assert_eq!(
        ep["url"].as_str(),
        Some("https://hooks.example.com/models/ready")
    );
    assert_eq!(ep["timeout"].as_str(), Some("7s"), "{ep}");
    assert_eq!(ep["max_retries"].as_integer(), Some(2), "{ep}");
    let secrets = ep["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].as_str(), Some("***"));
    let url = cfg["redis"]["url"].as_str().unwrap();
    assert!(
        url.contains("redis.internal") && url.contains(":6380") && url.contains(":***@"),
        "redis.url = {url}"
    );
}

#[test]
fn a_bridge_variable_overrides_the_file_and_redis_url_flag_overrides_both() {
    let toml = format!(
        "[redis]\nurl = \"redis://file-host:6001\"\nkey_prefix = \"from-file\"\n{VALID_ENDPOINT}"
    );
    let envs = [
        ("BRIDGE_REDIS__KEY_PREFIX", "x"),
        ("BRIDGE_REDIS__URL", "redis://env-host:6002"),
    ];
    let redis_of = |flags: &[&str]| -> toml::Table {
        let out = check_config(&toml, &envs, flags);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let cfg: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
        cfg["redis"].as_table().unwrap().clone()
    };

    let redis = redis_of(&[]);
    assert_eq!(redis["key_prefix"].as_str(), Some("x"), "env beats file");
    assert_eq!(
        redis["url"].as_str(),
        Some("redis://env-host:6002"),
        "env beats file"
    );

    let redis = redis_of(&["--redis-url", "redis://flag-host:6003"]);
    assert_eq!(
        redis["url"].as_str(),
        Some("redis://flag-host:6003"),
        "the flag beats env and file"
    );
    assert_eq!(redis["key_prefix"].as_str(), Some("x"));
}

const LEVELS: &str = "trace, debug, info, warn, error, off";

#[test]
fn a_misspelt_log_level_flag_exits_78_naming_the_flag_and_the_accepted_levels() {
    for level in ["warnn", "verbose", "info,debugg", "my_crate=loud"] {
        let out = check_config(VALID_ENDPOINT, &[], &["--log-level", level]);
        assert_eq!(out.status.code(), Some(78), "{level}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--log-level"), "{level}: {}", show(&out));
        assert!(stderr.contains(LEVELS), "{level}: {}", show(&out));
    }
    // `run` loads the config the same way and refuses to start.
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, VALID_ENDPOINT).unwrap();
    let out = run_cli(
        &[
            "--config",
            path.to_str().unwrap(),
            "--log-level",
            "warnn",
            "run",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-level"));
}

#[test]
fn levels_and_target_directives_are_accepted_as_log_filters() {
    for level in [
        "WARN",
        "info,redis_webhook_bridge=debug",
        "off",
        "h2=error,info",
    ] {
        let out = check_config(
            VALID_ENDPOINT,
            &[("RUST_LOG", level)],
            &["--log-level", level],
        );
        assert_eq!(out.status.code(), Some(0), "{level}: {}", show(&out));
    }
}

#[test]
fn a_misspelt_log_level_key_or_rust_log_exits_78_naming_it_and_the_accepted_levels() {
    let toml = format!("{VALID_ENDPOINT}\n[log]\nlevel = \"verbose\"\n");
    assert_rejected(&toml, &[], &["log.level", LEVELS]);
    assert_rejected(
        VALID_ENDPOINT,
        &[("BRIDGE_LOG__LEVEL", "warnn")],
        &["log.level", LEVELS],
    );
    assert_rejected(
        VALID_ENDPOINT,
        &[("RUST_LOG", "warnn")],
        &["RUST_LOG", LEVELS],
    );
}

#[test]
fn an_unknown_log_format_exits_78_naming_the_flag_or_key_and_the_formats() {
    let out = check_config(VALID_ENDPOINT, &[], &["--log-format", "xml"]);
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--log-format") && stderr.contains("json"),
        "{}",
        show(&out)
    );
    let toml = format!("{VALID_ENDPOINT}\n[log]\nformat = \"xml\"\n");
    assert_rejected(&toml, &[], &["log.format", "json", "text"]);
}

#[test]
fn an_http_endpoint_error_says_which_file_it_is_in() {
    let toml = VALID_ENDPOINT.replace("https://", "http://");
    assert_rejected(
        &toml,
        &[],
        &[
            "endpoints[0].url",
            "(in file ",
            "config.toml, line 4, column 7)",
        ],
    );
}

#[test]
fn no_config_at_all_exits_78_pointing_at_the_config_flag_and_variable() {
    let out = run_cli(&["check-config"], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--config") && stderr.contains("BRIDGE_CONFIG"),
        "{}",
        show(&out)
    );
}

#[test]
fn receive_without_a_secret_exits_78_naming_the_flag_and_the_variable() {
    let out = run_cli(&["receive", "--listen", "127.0.0.1:0"], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--secret") && stderr.contains("WEBHOOK_SECRET"),
        "{}",
        show(&out)
    );
}

#[test]
fn the_default_admin_port_is_not_prometheus_own_9090() {
    let out = check_config(VALID_ENDPOINT, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let cfg: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg["admin"]["listen"].as_str(), Some("127.0.0.1:9132"));
}

#[test]
fn a_loopback_or_private_endpoint_without_allow_private_networks_exits_78_naming_both_settings() {
    for url in [
        "https://127.0.0.1:8443/hook",
        "https://10.1.2.3/hook",
        "https://[::1]/hook",
        "https://localhost/hook",
    ] {
        let toml = VALID_ENDPOINT.replace("https://example.com/hook", url);
        assert_rejected(
            &toml,
            &[],
            &["endpoints[0].url", "security.allow_private_networks"],
        );
        let allowed = format!("{toml}\n[security]\nallow_private_networks = true\n");
        let out = check_config(&allowed, &[], &[]);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", show(&out));
    }
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The environment variable names the code reads: `env::var("…")`, `env::var_os("…")`, clap
/// `env = "…"` attributes, figment prefixes (`Env::prefixed("BRIDGE_")`), the legacy
/// variables' readers in the config module and the OpenTelemetry names.
fn env_vars_read_by_the_code() -> std::collections::BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut names = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut openers = vec![
            "env::var(\"",
            "env::var_os(\"",
            "env = \"",
            "Env::prefixed(\"",
            "\"OTEL_",
        ];
        if file.ends_with("src/config/legacy.rs") || file.ends_with("src/config/load.rs") {
            openers.extend(["env(\"", "nonempty(\"", "dur(\"", "num(\"", "get(\""]);
        }
        for opener in openers {
            for (at, _) in text.match_indices(opener) {
                let start = at + opener.len() - usize::from(opener == "\"OTEL_") * 5;
                let name: String = text[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if name.len() > 1 && text[start + name.len()..].starts_with('"') {
                    names.insert(name);
                }
            }
        }
    }
    names
}

#[test]
fn every_environment_variable_the_code_reads_is_in_env_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let names = env_vars_read_by_the_code();
    for must in [
        "BRIDGE_CONFIG",
        "BRIDGE_METRICS_EMF_INTERVAL",
        "REDIS_URL",
        "BRIDGE_",
    ] {
        assert!(names.contains(must), "the scan finds {must}: {names:?}");
    }
    for name in &names {
        // A prefix stands for its structured names: at least one must be shown.
        let documented = example.lines().any(|l| {
            let l = l.trim_start_matches('#');
            if name.ends_with('_') {
                l.starts_with(name.as_str()) && l.contains("__")
            } else {
                l.starts_with(&format!("{name}="))
            }
        });
        assert!(
            documented,
            "{name} is read by the code but has no line in .env.example"
        );
    }
    // The BRIDGE_* names that are flags, not config keys, are listed in the README too.
    for name in names
        .iter()
        .filter(|n| n.starts_with("BRIDGE_") && !n.ends_with('_'))
    {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README does not list {name}"
        );
    }
}
