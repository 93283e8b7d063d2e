//! The bridge under test: its TOML, and the release binary run as a child process.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use redis::aio::MultiplexedConnection;

use crate::*;
use crate::{harness::*, options::*, procs::*};

pub(crate) struct Ctx {
    pub(crate) opts: Opts,
    pub(crate) dir: PathBuf,
    pub(crate) redis: RedisServer,
    pub(crate) admin_conn: MultiplexedConnection,
    pub(crate) sink: Arc<Sink>,
    pub(crate) sink_port: u16,
    pub(crate) http: reqwest::Client,
}

pub(crate) fn config_toml(
    ctx: &Ctx,
    prefix: &str,
    durability: &str,
    urls: &[String],
    admin_port: u16,
) -> String {
    let mut t = String::new();
    let _ = write!(
        t,
        r#"[redis]
url = "{redis}"
key_prefix = "{prefix}"

[delivery]
durability = "{durability}"
shutdown_timeout = "5s"

[security]
allow_http = true
allow_private_networks = true

[admin]
listen = "127.0.0.1:{admin_port}"

[log]
format = "text"
level = "warn"
"#,
        redis = ctx.redis.url
    );
    for (i, url) in urls.iter().enumerate() {
        let _ = write!(
            t,
            r#"
[[endpoints]]
name = "ep{i}"
url = "{url}"
secrets = ["{SECRET}"]
signature = "hokusai-v2"
concurrency = {CONCURRENCY}
timeout = "10s"
{extra}"#,
            extra = transform_key(prefix)
        );
    }
    t
}

/// The `transform` of the transform scenario's endpoint: the shipped `model_registered`
/// transform, with the message's `seq` first (the sink counts bodies by it).
fn transform_key(prefix: &str) -> String {
    if !prefix.ends_with("transform-1") {
        return String::new();
    }
    let shipped = include_str!("../transforms/model_registered.jq");
    // The file is its definitions, then one object expression starting at a line "{".
    let (defs, body) = shipped.split_at(shipped.find("\n{\n").map_or(0, |i| i + 1));
    format!("transform = '''\n{defs}{{seq: .seq}} + (\n{body})'''\n")
}

pub(crate) fn sink_urls(ctx: &Ctx, endpoints: usize) -> Vec<String> {
    (0..endpoints)
        .map(|i| format!("http://127.0.0.1:{}/ep{i}", ctx.sink_port))
        .collect()
}

pub(crate) struct Bridge {
    pub(crate) proc: Proc,
    pub(crate) log: PathBuf,
    pub(crate) perf: Option<Proc>,
}

impl Bridge {
    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The processes whose CPU time is the benchmark's own.
    pub(crate) fn pids(&self, ctx: &Ctx) -> Vec<u32> {
        let mut p = vec![self.pid(), ctx.redis.proc.pid()];
        p.extend(self.perf.as_ref().map(Proc::pid));
        p
    }

    pub(crate) fn hwm_mb(&self) -> f64 {
        status_kb(self.pid(), "VmHWM").map(mb).unwrap_or(f64::NAN)
    }

    pub(crate) fn rss_mb(&self) -> f64 {
        status_kb(self.pid(), "VmRSS").map(mb).unwrap_or(f64::NAN)
    }

    pub(crate) fn cpu(&self) -> f64 {
        cpu_secs(self.pid()).unwrap_or(f64::NAN)
    }

    /// SIGTERM (the bridge finishes in-flight work, then exits 0).
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.perf.take() {
            p.stop(libc::SIGINT, Duration::from_secs(60)).await;
        }
        let status = self.proc.stop(libc::SIGTERM, Duration::from_secs(20)).await;
        match status {
            Some(s) if s.success() => Ok(()),
            other => bail!(
                "the bridge exited with {other:?}; its log ends with:\n{}",
                tail(&self.log, 30)
            ),
        }
    }
}

pub(crate) async fn start_bridge(
    ctx: &Ctx,
    scenario: &str,
    durability: &str,
    urls: &[String],
) -> anyhow::Result<Bridge> {
    let dir = ctx.dir.join(scenario);
    std::fs::create_dir_all(&dir)?;
    let admin_port = free_port()?;
    let prefix = format!("bench-{scenario}");
    let cfg_path = dir.join("bridge.toml");
    std::fs::write(
        &cfg_path,
        config_toml(ctx, &prefix, durability, urls, admin_port),
    )?;
    let log = dir.join("bridge.log");
    let mut cmd = Command::new(&ctx.opts.bin);
    cmd.arg("--config")
        .arg(&cfg_path)
        .arg("run")
        // A clean environment: no .env, RUST_LOG, WEBHOOK_*, REDIS_* or BRIDGE_* leaks in.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("bridge.stdout"))?)
        .stderr(std::fs::File::create(&log)?);
    let mut proc = Proc::spawn(cmd, "the bridge")?;
    let ready = format!("http://127.0.0.1:{admin_port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = ctx.http.get(&ready).send().await
            && r.status().is_success()
        {
            break;
        }
        if !proc.alive() {
            bail!(
                "the bridge exited during start-up; its log ends with:\n{}",
                tail(&log, 30)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the bridge was not ready within 30 s ({ready}); its log ends with:\n{}",
                tail(&log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let perf = match &ctx.opts.perf {
        Some(pdir) if scenario != "backlog" && scenario != "latency" => {
            std::fs::create_dir_all(pdir)?;
            let mut cmd = Command::new("perf");
            cmd.args(["record", "-e", "cpu-clock", "-F", "499", "--call-graph"])
                .arg("dwarf,32768")
                .arg("-p")
                .arg(proc.pid().to_string())
                .arg("-o")
                .arg(pdir.join(format!("{scenario}.data")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(pdir.join(format!("{scenario}.log")))?);
            let p = Proc::spawn(cmd, "perf record")?;
            // Let perf attach before the load starts.
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some(p)
        }
        _ => None,
    };
    Ok(Bridge { proc, log, perf })
}
