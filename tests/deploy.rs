//! Checks of `deploy/`: the Kubernetes manifests, the systemd unit, the container file, the
//! Grafana dashboard and the Prometheus alert rules must name only metrics the bridge
//! exports, parse, agree with each other and with the binary, and pass `promtool`.
//!
//! `promtool` comes with Debian's `prometheus` package (`apt-get install -y prometheus`;
//! `scripts/test.sh` installs it). Without it the promtool tests fail and say how to install it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis_webhook_bridge::telemetry::metric;
use serde::Deserialize;
use serde_norway::Value;

/// `<repo>/deploy`.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every YAML document in `path`.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The one YAML document in `path`.
fn yaml_doc(path: &Path) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{} should hold one document", path.display());
    docs.remove(0)
}

/// `v[k1][k2]…`, panicking with the path when a step is missing.
fn at<'v>(v: &'v Value, keys: &[&str]) -> &'v Value {
    let mut cur = v;
    for (i, k) in keys.iter().enumerate() {
        cur = cur
            .get(*k)
            .unwrap_or_else(|| panic!("missing `{}` in {v:?}", keys[..=i].join(".")));
    }
    cur
}

fn text<'v>(v: &'v Value, keys: &[&str]) -> &'v str {
    at(v, keys)
        .as_str()
        .unwrap_or_else(|| panic!("`{}` is not a string", keys.join(".")))
}

/// The Kubernetes objects of `deploy/kubernetes/*.yaml`, by kind (one object per kind).
fn k8s_objects() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for path in files_under(&deploy_dir().join("kubernetes")) {
        if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        for doc in yaml_docs(&path) {
            let kind = text(&doc, &["kind"]).to_string();
            assert!(
                out.insert(kind.clone(), doc).is_none(),
                "two objects of kind {kind} in deploy/kubernetes"
            );
        }
    }
    out
}

fn k8s(kind: &str) -> Value {
    k8s_objects()
        .remove(kind)
        .unwrap_or_else(|| panic!("deploy/kubernetes has no {kind}"))
}

/// The Deployment's only container.
fn bridge_container(deployment: &Value) -> Value {
    let containers = at(deployment, &["spec", "template", "spec", "containers"])
        .as_sequence()
        .expect("containers is a list");
    assert_eq!(containers.len(), 1, "one container: the bridge");
    containers[0].clone()
}

/// `bridge.toml` of the ConfigMap.
fn configmap_toml() -> String {
    text(&k8s("ConfigMap"), &["data", "bridge.toml"]).to_string()
}

/// Metric-like names in `text`: `(webhook|bridge)_[a-z_]+` starting at a word boundary,
/// with a histogram's `_bucket`, `_sum` and `_count` suffix removed.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &bytes[i..];
        let prefix = [&b"webhook_"[..], &b"bridge_"[..]]
            .into_iter()
            .find(|p| rest.starts_with(p));
        let (true, Some(prefix)) = (boundary, prefix) else {
            i += 1;
            continue;
        };
        let len = prefix.len()
            + rest[prefix.len()..]
                .iter()
                .take_while(|b| b.is_ascii_lowercase() || **b == b'_')
                .count();
        if len > prefix.len() {
            // ASCII only, so this is valid UTF-8.
            let mut name = String::from_utf8_lossy(&rest[..len]).into_owned();
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(stripped) = name.strip_suffix(suffix) {
                    name = stripped.to_string();
                    break;
                }
            }
            out.insert(name);
        }
        i += len;
    }
    out
}

/// Runs a tool; `None` when it is not installed.
fn run_tool(program: &str, args: &[&str], cwd: Option<&Path>) -> Option<Output> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    match cmd.output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

const PROMTOOL_MISSING: &str = "promtool is not installed (not found on PATH), and the alert \
rules need it: install it (Debian/Ubuntu: apt-get install -y prometheus, which ships \
/usr/bin/promtool; elsewhere the promtool binary from a Prometheus release)";

/// Runs promtool; a missing promtool is a failure that says how to install it.
fn promtool(args: &[&str], cwd: &Path) -> Output {
    run_tool("promtool", args, Some(cwd)).unwrap_or_else(|| panic!("{PROMTOOL_MISSING}"))
}

// ---------------------------------------------------------------------------------------
// Metric names
// ---------------------------------------------------------------------------------------

#[test]
fn every_metric_name_used_in_deploy_is_exported_by_the_bridge() {
    let exported: BTreeSet<&str> = metric::ALL.iter().copied().collect();
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files_under(&deploy_dir()) {
        let rel = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(&path)
            .display()
            .to_string();
        for name in metric_names_in(&read(&path)) {
            used.entry(name).or_default().insert(rel.clone());
        }
    }
    let unknown: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exported.contains(name.as_str()))
        .map(|(name, files)| {
            format!(
                "{name} (in {})",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "deploy/ uses metric names the bridge does not export (telemetry::metric::ALL):\n  {}\nexported: {exported:?}",
        unknown.join("\n  ")
    );
    // The scanner found the dashboard's and the rules' names, so an empty match set above
    // cannot hide a broken scan.
    assert!(
        used.len() >= 12,
        "expected the dashboard and alerts to use at least 12 metrics, found {:?}",
        used.keys().collect::<Vec<_>>()
    );
}

#[test]
fn the_metric_scanner_strips_histogram_suffixes_and_respects_word_boundaries() {
    let names = metric_names_in(
        "rate(webhook_delivery_duration_seconds_bucket[5m]) redis_webhook_bridge=debug \
         BRIDGE_ADMIN__LISTEN bridge_dlq_depth webhook_retry_count_total",
    );
    let expected: BTreeSet<String> = [
        "webhook_delivery_duration_seconds",
        "bridge_dlq_depth",
        "webhook_retry_count_total",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);
}

/// Every metric name `deploy/` uses, from its dashboard, alerts and rule files.
fn deploy_metric_names() -> BTreeSet<String> {
    files_under(&deploy_dir())
        .iter()
        .flat_map(|p| metric_names_in(&read(p)))
        .collect()
}

/// Whether `/metrics` text has a sample of `name` whose labels include every one of `labels`
/// (a histogram counts by its `_count` sample).
fn has_series(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    [name.to_string(), format!("{name}_count")]
        .iter()
        .any(|n| common::metric_in(text, n, labels).is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_deploy_uses_exists_at_zero_from_the_first_scrape_and_after_a_reload() {
    use common::{Bridge, Receiver, RedisServer, base_toml, endpoint_toml, wait_until};
    use redis_webhook_bridge::telemetry::FailureReason;

    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let base = base_toml(&redis, "t-zero-series")
        + r#"
[[sources]]
kind = "pubsub"
name = "registry"
channels = ["hokusai:model_ready_queue:pubsub"]

[[sources]]
kind = "list"
name = "registry-list"
key = "hokusai:model_ready_queue"
unwrap_envelope = true

[republish]
targets = [{ kind = "channel", key = "copy" }]
"#;
    let one = base.clone() + &endpoint_toml("a", &rx.url("/a"), "");
    let bridge = Bridge::start(&one).await;
    // The first scrape after readiness: nothing has happened yet.
    let text = bridge.metrics_text().await;

    let used = deploy_metric_names();
    assert!(used.len() >= 12, "the scan found {used:?}");
    for name in &used {
        assert!(
            has_series(&text, name, &[]),
            "{name} (used in deploy/) is absent from the first scrape:\n{text}"
        );
    }
    let per_endpoint = [
        "webhook_publish_success_total",
        "webhook_retry_count_total",
        "webhook_circuit_breaker_state",
        "webhook_delivery_duration_seconds",
        "webhook_end_to_end_latency_seconds",
        "bridge_queue_depth",
    ];
    let endpoint_series = |text: &str, ep: &str| {
        for name in per_endpoint {
            assert_eq!(
                common::metric_in(text, name, &[("endpoint", ep)]).or_else(|| {
                    common::metric_in(text, &format!("{name}_count"), &[("endpoint", ep)])
                }),
                Some(0.0),
                "{name}{{endpoint={ep}}} at zero:\n{text}"
            );
        }
        for r in FailureReason::ALL {
            assert_eq!(
                common::metric_in(
                    text,
                    "webhook_publish_failure_total",
                    &[("endpoint", ep), ("reason", r.as_str())]
                ),
                Some(0.0),
                "failure reason {} of {ep} at zero",
                r.as_str()
            );
        }
    };
    endpoint_series(&text, "a");
    for source in ["registry", "registry-list"] {
        for name in [
            "bridge_messages_received_total",
            "bridge_source_disconnects_total",
        ] {
            assert_eq!(
                common::metric_in(&text, name, &[("source", source)]),
                Some(0.0),
                "{name}{{source={source}}}:\n{text}"
            );
        }
    }
    assert_eq!(
        common::metric_in(
            &text,
            "bridge_messages_republished_total",
            &[("target", "channel:copy")]
        ),
        Some(0.0),
        "a configured republish target, also without --dual"
    );
    for result in ["success", "failure"] {
        assert_eq!(
            common::metric_in(&text, "bridge_config_reloads_total", &[("result", result)]),
            Some(0.0)
        );
    }

    // A reload that adds an endpoint brings its series at zero too.
    std::fs::write(
        bridge.config_path(),
        one + &endpoint_toml("b", &rx.url("/b"), ""),
    )
    .unwrap();
    bridge.sighup();
    wait_until(
        Duration::from_secs(30),
        "the reload adds endpoint b",
        || async {
            bridge.status_json().await["endpoints"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["name"] == "b"))
        },
    )
    .await;
    endpoint_series(&bridge.metrics_text().await, "b");
}

// ---------------------------------------------------------------------------------------
// Prometheus rules
// ---------------------------------------------------------------------------------------

#[test]
fn alert_rules_pass_promtool_check() {
    let dir = deploy_dir().join("prometheus");
    let out = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(
        out.status.success(),
        "promtool check rules deploy/prometheus/alerts.yml failed:\n{}",
        common::show(&out)
    );
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    // promtool compares annotations word for word; the unit tests are about when alerts
    // fire and with which labels, so they run against a copy without annotations.
    let src = deploy_dir().join("prometheus");
    let mut rules = yaml_doc(&src.join("alerts.yml"));
    let groups = rules
        .get_mut("groups")
        .and_then(Value::as_sequence_mut)
        .expect("alerts.yml has groups");
    for group in groups {
        let rules = group
            .get_mut("rules")
            .and_then(Value::as_sequence_mut)
            .expect("each group has rules");
        for rule in rules {
            rule.as_mapping_mut()
                .expect("a rule is a mapping")
                .remove("annotations");
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("alerts.yml"),
        serde_norway::to_string(&rules).expect("serialise the rules"),
    )
    .expect("write alerts.yml");
    std::fs::copy(
        src.join("alerts_test.yml"),
        tmp.path().join("alerts_test.yml"),
    )
    .expect("copy alerts_test.yml");
    let out = promtool(&["test", "rules", "alerts_test.yml"], tmp.path());
    assert!(
        out.status.success(),
        "promtool test rules deploy/prometheus/alerts_test.yml failed:\n{}",
        common::show(&out)
    );
}

#[test]
fn the_prometheus_rule_holds_the_same_groups_as_alerts_yml() {
    let alerts = yaml_doc(&deploy_dir().join("prometheus/alerts.yml"));
    let rule = k8s("PrometheusRule");
    assert_eq!(
        at(&rule, &["spec", "groups"]),
        at(&alerts, &["groups"]),
        "deploy/kubernetes/prometheusrule.yaml spec.groups must equal deploy/prometheus/alerts.yml groups"
    );
    let names: BTreeSet<&str> = at(&alerts, &["groups"])
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| at(g, &["rules"]).as_sequence().expect("rules").iter())
        .map(|r| text(r, &["alert"]))
        .collect();
    for wanted in [
        "WebhookBridgeDeadLetterQueueGrowing",
        "WebhookBridgeCircuitOpen",
        "WebhookBridgeFailureRatioHigh",
        "WebhookBridgeNothingReceived",
        "WebhookBridgeLegacySubscribersRemaining",
        "WebhookBridgeQueueGrowing",
        "WebhookBridgeSourceDisconnected",
    ] {
        assert!(
            names.contains(wanted),
            "alerts.yml lacks {wanted}: {names:?}"
        );
    }
}

/// GitHub's anchor of a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn alert_runbook_links_point_at_existing_doc_sections() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let alerts = yaml_doc(&deploy_dir().join("prometheus/alerts.yml"));
    let mut checked = 0;
    for group in at(&alerts, &["groups"]).as_sequence().expect("groups") {
        for rule in at(group, &["rules"]).as_sequence().expect("rules") {
            let Some(link) = rule
                .get("annotations")
                .and_then(|a| a.get("runbook"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
            let doc = read(&root.join(file));
            if !anchor.is_empty() {
                let anchors: Vec<String> = doc
                    .lines()
                    .filter_map(|l| l.strip_prefix('#'))
                    .map(|l| slug(l.trim_start_matches('#')))
                    .collect();
                assert!(
                    anchors.iter().any(|a| a == anchor),
                    "runbook {link} of {}: {file} has no heading with anchor #{anchor}; it has {anchors:?}",
                    text(rule, &["alert"])
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "expected runbook links on the alerts, found {checked}"
    );
}

// ---------------------------------------------------------------------------------------
// Grafana
// ---------------------------------------------------------------------------------------

#[test]
fn the_grafana_dashboard_parses_and_every_panel_queries_prometheus() {
    let path = deploy_dir().join("grafana/redis-webhook-bridge.json");
    let dash: serde_json::Value = serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        vars.contains(&"datasource"),
        "a datasource variable: {vars:?}"
    );
    let panels = dash["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_i64().expect("panel id")),
            "duplicate panel id"
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("panel targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("target expr");
            assert!(
                !expr.trim().is_empty(),
                "empty query in panel {}",
                p["title"]
            );
            exprs.push(expr.to_string());
        }
    }
    let all = exprs.join("\n");
    for name in [
        metric::PUBLISH_SUCCESS,
        metric::PUBLISH_FAILURE,
        metric::RETRY_COUNT,
        metric::CIRCUIT_STATE,
        metric::END_TO_END,
        metric::QUEUE_DEPTH,
        metric::DLQ_DEPTH,
        metric::MESSAGES_RECEIVED,
        metric::SOURCE_DISCONNECTS,
        metric::DUPLICATES_DROPPED,
        metric::LEGACY_SUBSCRIBERS,
    ] {
        assert!(all.contains(name), "the dashboard shows no panel of {name}");
    }
    assert!(
        all.contains("histogram_quantile(0.99") && all.contains("histogram_quantile(0.5"),
        "p50 and p99 come from the histogram buckets"
    );
}

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

#[test]
fn kubernetes_manifests_parse_and_hang_together() {
    let objects = k8s_objects();
    for kind in [
        "Deployment",
        "ConfigMap",
        "Secret",
        "Service",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(
            objects.contains_key(kind),
            "deploy/kubernetes has no {kind}"
        );
    }

    // kustomization.yaml lists files that exist, and not the placeholder Secret.
    let kdir = deploy_dir().join("kubernetes");
    let kust = yaml_doc(&kdir.join("kustomization.yaml"));
    let resources: Vec<&str> = at(&kust, &["resources"])
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("resource path"))
        .collect();
    for r in &resources {
        assert!(
            kdir.join(r).is_file(),
            "kustomization.yaml lists missing {r}"
        );
    }
    assert!(
        !resources.contains(&"secret.example.yaml"),
        "the example Secret holds placeholders and must not be applied by default"
    );

    let deployment = &objects["Deployment"];
    assert_eq!(at(deployment, &["spec", "replicas"]).as_u64(), Some(2));
    let labels = at(deployment, &["spec", "template", "metadata", "labels"]);
    assert_eq!(
        at(deployment, &["spec", "selector", "matchLabels"]),
        labels,
        "the selector matches the pod labels"
    );
    let pod = at(deployment, &["spec", "template", "spec"]);
    assert_eq!(
        at(pod, &["securityContext", "runAsNonRoot"]).as_bool(),
        Some(true)
    );
    let c = bridge_container(deployment);
    assert_eq!(
        at(&c, &["securityContext", "readOnlyRootFilesystem"]).as_bool(),
        Some(true)
    );
    assert_eq!(
        at(&c, &["securityContext", "allowPrivilegeEscalation"]).as_bool(),
        Some(false)
    );
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            at(&c, &["resources", kind, res]);
        }
    }
    assert_eq!(text(&c, &["livenessProbe", "httpGet", "path"]), "/healthz");
    assert_eq!(text(&c, &["readinessProbe", "httpGet", "path"]), "/readyz");
    let port = at(&c, &["ports"]).as_sequence().expect("ports")[0].clone();
    let port_name = text(&port, &["name"]);
    let port_number = at(&port, &["containerPort"])
        .as_u64()
        .expect("containerPort");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            text(&c, &[probe, "httpGet", "port"]),
            port_name,
            "{probe} uses the admin port"
        );
    }
    let env: BTreeMap<&str, &Value> = at(&c, &["env"])
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| (text(e, &["name"]), e))
        .collect();
    let listen = env
        .get("BRIDGE_ADMIN__LISTEN")
        .map(|e| text(e, &["value"]))
        .expect("BRIDGE_ADMIN__LISTEN is set");
    assert_eq!(listen, format!("0.0.0.0:{port_number}"));
    // Every secret comes from the Secret, by a key the example Secret has.
    let secret = &objects["Secret"];
    let secret_name = text(secret, &["metadata", "name"]);
    for (name, e) in &env {
        if let Some(r) = e.get("valueFrom").and_then(|v| v.get("secretKeyRef")) {
            assert_eq!(
                text(r, &["name"]),
                secret_name,
                "{name} reads the bridge's Secret"
            );
            let key = text(r, &["key"]);
            at(secret, &["stringData", key]);
        }
    }
    // The config volume is the ConfigMap, mounted where --config points.
    let cm_name = text(&objects["ConfigMap"], &["metadata", "name"]);
    let args: Vec<&str> = at(&c, &["args"])
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .collect();
    let config_arg = args[args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config")
        + 1];
    let mount = at(&c, &["volumeMounts"]).as_sequence().expect("mounts")[0].clone();
    assert_eq!(
        Path::new(config_arg).parent(),
        Some(Path::new(text(&mount, &["mountPath"])))
    );
    let volume = at(pod, &["volumes"]).as_sequence().expect("volumes")[0].clone();
    assert_eq!(text(&volume, &["configMap", "name"]), cm_name);
    assert!(
        config_arg.ends_with(
            at(&objects["ConfigMap"], &["data"])
                .as_mapping()
                .expect("data")
                .keys()
                .next()
                .and_then(Value::as_str)
                .expect("a data key")
        ),
        "--config names the ConfigMap's file"
    );

    // Service, PDB and ServiceMonitor select the pods and the admin port.
    let service = &objects["Service"];
    for (k, v) in at(service, &["spec", "selector"])
        .as_mapping()
        .expect("selector")
    {
        assert_eq!(
            labels.get(k.as_str().expect("label")),
            Some(v),
            "Service selector"
        );
    }
    let sport = at(service, &["spec", "ports"])
        .as_sequence()
        .expect("ports")[0]
        .clone();
    assert_eq!(text(&sport, &["name"]), port_name);
    assert_eq!(text(&sport, &["targetPort"]), port_name);
    assert_eq!(
        at(
            &objects["PodDisruptionBudget"],
            &["spec", "selector", "matchLabels"]
        ),
        labels
    );
    let sm = &objects["ServiceMonitor"];
    for (k, v) in at(sm, &["spec", "selector", "matchLabels"])
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(
            at(service, &["metadata", "labels"]).get(k.as_str().expect("label")),
            Some(v),
            "the ServiceMonitor selects the Service"
        );
    }
    let ep = at(sm, &["spec", "endpoints"])
        .as_sequence()
        .expect("endpoints")[0]
        .clone();
    assert_eq!(text(&ep, &["port"]), port_name);
    assert_eq!(text(&ep, &["path"]), "/metrics");
    assert_eq!(
        at(&ep, &["honorLabels"]).as_bool(),
        Some(true),
        "without honorLabels the operator's `endpoint` target label renames the bridge's to exported_endpoint"
    );
}

/// `KEY=VALUE` lines of an environment file.
fn env_file(path: &Path) -> Vec<(String, String)> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: `{l}` is not KEY=VALUE", path.display()));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Runs `check-config` on `toml` with `envs`; asserts exit 0 and no secret in the output.
fn assert_check_config_passes(what: &str, toml: &str, envs: &[(String, String)], secrets: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, toml).expect("write bridge.toml");
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = common::run_cli(
        &[
            "--config",
            path.to_str().expect("utf-8 path"),
            "check-config",
        ],
        &envs,
    );
    assert!(
        out.status.success(),
        "check-config rejects {what}:\n{}",
        common::show(&out)
    );
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for s in secrets {
        assert!(
            !shown.contains(s),
            "check-config printed a secret of {what}"
        );
    }
}

#[test]
fn the_configmap_config_passes_check_config_with_the_deployments_environment() {
    let objects = k8s_objects();
    let c = bridge_container(&objects["Deployment"]);
    let secret = &objects["Secret"];
    let mut envs = Vec::new();
    let mut secrets = Vec::new();
    for e in at(&c, &["env"]).as_sequence().expect("env") {
        let name = text(e, &["name"]).to_string();
        if let Some(v) = e.get("value").and_then(Value::as_str) {
            envs.push((name, v.to_string()));
        } else {
            let key = text(e, &["valueFrom", "secretKeyRef", "key"]);
            let value = text(secret, &["stringData", key]);
            secrets.push(value);
            envs.push((name, value.to_string()));
        }
    }
    // A Redis URL's secret part is its password.
    let secrets: Vec<String> = secrets
        .iter()
        .map(|s| match url::Url::parse(s) {
            Ok(u) if u.password().is_some() => u.password().unwrap_or_default().to_string(),
            _ => s.to_string(),
        })
        .collect();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_check_config_passes(
        "deploy/kubernetes/configmap.yaml's bridge.toml",
        &configmap_toml(),
        &envs,
        &secrets,
    );
}

#[test]
fn the_systemd_environment_example_fits_the_example_config() {
    let envs = env_file(&deploy_dir().join("systemd/bridge.env.example"));
    let secret = envs
        .iter()
        .find(|(k, _)| k == "HOKUSAI_SITE_WEBHOOK_SECRET")
        .map(|(_, v)| v.clone())
        .expect("bridge.env.example sets the endpoint's secret");
    assert_check_config_passes(
        "the example config with deploy/systemd/bridge.env.example",
        &configmap_toml(),
        &envs,
        &[&secret],
    );
}

#[test]
fn stop_timeouts_leave_room_for_the_shutdown_timeout() {
    let cfg: toml::Table = toml::from_str(&configmap_toml()).expect("bridge.toml is TOML");
    let shutdown = cfg
        .get("delivery")
        .and_then(|d| d.get("shutdown_timeout"))
        .and_then(|v| v.as_str())
        .map(|s| humantime::parse_duration(s).expect("shutdown_timeout is a duration"))
        .unwrap_or(Duration::from_secs(30));
    // After the drain the bridge flushes acknowledgements and stops its background tasks
    // (a few seconds at most); 20 s of room covers that.
    let needed = shutdown + Duration::from_secs(20);

    let grace = at(
        &k8s("Deployment"),
        &["spec", "template", "spec", "terminationGracePeriodSeconds"],
    )
    .as_u64()
    .expect("terminationGracePeriodSeconds");
    assert!(
        Duration::from_secs(grace) >= needed,
        "terminationGracePeriodSeconds {grace} must be ≥ shutdown_timeout {shutdown:?} + 20 s"
    );

    let unit = read(&deploy_dir().join("systemd/redis-webhook-bridge.service"));
    let stop = unit_directives(&unit, "TimeoutStopSec");
    assert_eq!(stop.len(), 1, "one TimeoutStopSec");
    let stop = humantime::parse_duration(&stop[0]).expect("TimeoutStopSec is a duration");
    assert!(
        stop >= needed,
        "TimeoutStopSec {stop:?} must be ≥ shutdown_timeout {shutdown:?} + 20 s"
    );
}

// ---------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------

/// The values of `name=` in active (uncommented) lines of a unit file.
fn unit_directives(unit: &str, name: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_passes_systemd_analyze() {
    let path = deploy_dir().join("systemd/redis-webhook-bridge.service");
    let unit = read(&path);
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallFilter", "@system-service"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
    ] {
        assert!(
            unit_directives(&unit, key).iter().any(|v| v == value),
            "{} lacks {key}={value}",
            path.display()
        );
    }
    for key in [
        "RestrictAddressFamilies",
        "MemoryMax",
        "EnvironmentFile",
        "ExecStart",
    ] {
        assert!(
            !unit_directives(&unit, key).is_empty(),
            "{} lacks {key}=",
            path.display()
        );
    }

    // systemd-analyze checks the real thing; ExecStart must exist, so point it at the
    // binary under test.
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("redis-webhook-bridge.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/redis-webhook-bridge", common::BIN),
    )
    .expect("write unit copy");
    let copy_arg = copy.to_str().expect("utf-8 path");
    let hint =
        "systemd-analyze not found on PATH: install it (Debian/Ubuntu: apt-get install -y systemd)";
    let out = run_tool("systemd-analyze", &["verify", copy_arg], None)
        .unwrap_or_else(|| panic!("{hint}"));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify found problems in the unit:\n{}",
        common::show(&out)
    );
    let out = run_tool(
        "systemd-analyze",
        &["security", "--offline=yes", "--no-pager", copy_arg],
        None,
    )
    .unwrap_or_else(|| panic!("{hint}"));
    let report = String::from_utf8_lossy(&out.stdout);
    let level: f64 = report
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in systemd-analyze security output:\n{}",
                common::show(&out)
            )
        });
    assert!(
        level <= 2.0,
        "systemd-analyze security rates the unit {level} (≤ 2.0 expected):\n{report}"
    );
}

/// A `redis-webhook-bridge run` started here (the common helper does not expose the pid,
/// and this test signals it); killed when dropped.
struct RawBridge(Child);

impl Drop for RawBridge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_systemd_unit_sends_sighup_only_if_the_bridge_survives_it() {
    let redis = common::RedisServer::start();
    let receiver = common::Receiver::start().await;
    let toml = format!(
        "{}{}",
        common::base_toml(&redis, "deploy-sighup"),
        common::endpoint_toml("r", &receiver.url("/hook"), "")
    );
    let admin = toml
        .lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("base_toml sets admin.listen")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &toml).expect("write config");
    let log = std::fs::File::create(dir.path().join("bridge.log")).expect("log file");
    let child = Command::new(common::BIN)
        .args(["--config", config.to_str().expect("utf-8"), "run"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the bridge");
    let mut bridge = RawBridge(child);
    let http = common::http();
    let ready = format!("http://{admin}/readyz");
    common::wait_until(common::PATIENCE, "the bridge is ready", || {
        let (http, ready) = (http.clone(), ready.clone());
        async move {
            http.get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;

    let pid = bridge.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("run kill(1)");
    assert!(sent.success(), "kill -HUP {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut exited = None;
    while Instant::now() < deadline && exited.is_none() {
        exited = bridge.0.try_wait().expect("try_wait");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let survives = exited.is_none();

    let unit = read(&deploy_dir().join("systemd/redis-webhook-bridge.service"));
    let reload = unit_directives(&unit, "ExecReload");
    let log = read(&dir.path().join("bridge.log"));
    if survives {
        assert!(
            reload.iter().any(|r| r.contains("-HUP")),
            "the bridge now survives SIGHUP (hot reload?): enable `ExecReload=/bin/kill -HUP $MAINPID` \
             in deploy/systemd/redis-webhook-bridge.service and update docs/OPERATIONS.md"
        );
    } else {
        assert!(
            reload.is_empty(),
            "SIGHUP ends the bridge ({exited:?}), and Restart=on-failure does not restart it after \
             SIGHUP: the unit must not have an active ExecReload that sends it; log:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Container
// ---------------------------------------------------------------------------------------

#[test]
fn the_containerfile_is_multi_stage_and_runs_the_binary_as_a_non_root_user() {
    let file = read(&deploy_dir().join("container/Containerfile"));
    let lines: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert!(froms.len() >= 2, "a builder stage and a runtime stage");
    let runtime = &lines[*froms.last().expect("a FROM")..];
    let directive = |name: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .collect()
    };
    let user = directive("USER ");
    assert_eq!(user.len(), 1, "the runtime stage sets USER once");
    let uid = user[0].split(':').next().expect("uid");
    assert!(
        uid != "0" && uid != "root",
        "USER {} must not be root",
        user[0]
    );
    let copies = directive("COPY ");
    assert_eq!(
        copies.len(),
        1,
        "the runtime stage copies only the binary: {copies:?}"
    );
    assert!(
        copies[0].starts_with("--from="),
        "copied from the builder stage"
    );
    let dest = copies[0]
        .split_whitespace()
        .last()
        .expect("COPY destination");
    let entry = directive("ENTRYPOINT ");
    assert_eq!(entry.len(), 1);
    assert!(
        entry[0].contains(dest),
        "ENTRYPOINT runs the copied binary {dest}"
    );

    let c = bridge_container(&k8s("Deployment"));
    let port = at(&c, &["ports"]).as_sequence().expect("ports")[0]["containerPort"]
        .as_u64()
        .expect("containerPort");
    assert_eq!(
        directive("EXPOSE "),
        vec![port.to_string().as_str()],
        "EXPOSE the admin port"
    );
    assert!(
        directive("ENV ")
            .iter()
            .any(|e| *e == format!("BRIDGE_ADMIN__LISTEN=0.0.0.0:{port}")),
        "the admin server listens on all interfaces inside the container"
    );
    let ignore = read(&deploy_dir().join("container/Containerfile.dockerignore"));
    for needed in ["!Cargo.toml", "!Cargo.lock", "!src/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == needed),
            "the build context keeps {needed}"
        );
    }
}
