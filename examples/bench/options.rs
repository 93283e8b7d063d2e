//! The command line and the `BENCH_*` environment: what to run and how big.

use std::path::PathBuf;

use anyhow::{anyhow, bail};

pub(crate) const SCENARIOS: [&str; 7] = [
    "durable-1",
    "transform-1",
    "durable-4",
    "memory-1",
    "memory-4",
    "latency",
    "backlog",
];

pub(crate) struct Opts {
    pub(crate) n: usize,
    pub(crate) backlog: usize,
    pub(crate) latency_rate: u64,
    pub(crate) latency_secs: u64,
    /// Seconds to wait, before each measurement, for a quiet second on the machine.
    pub(crate) quiet_wait: u64,
    /// Runs per measurement; the best clean one is kept.
    pub(crate) repeat: u32,
    /// Milliseconds the sink waits before answering (0: answer at once).
    pub(crate) sink_delay_ms: u64,
    pub(crate) only: Option<Vec<String>>,
    pub(crate) strict: bool,
    pub(crate) perf: Option<PathBuf>,
    pub(crate) bin: PathBuf,
}

impl Opts {
    pub(crate) fn parse() -> anyhow::Result<Self> {
        let env_num = |name: &str, default: u64| -> anyhow::Result<u64> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .replace('_', "")
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow!("{name}={v:?} is not a positive whole number")),
                Err(_) => Ok(default),
            }
        };
        let mut o = Opts {
            n: env_num("BENCH_N", 20_000)? as usize,
            backlog: env_num("BENCH_BACKLOG", 200_000)? as usize,
            latency_rate: env_num("BENCH_LATENCY_RATE", 1_000)?,
            latency_secs: env_num("BENCH_LATENCY_SECS", 10)?,
            repeat: env_num("BENCH_REPEAT", 3)? as u32,
            sink_delay_ms: match std::env::var("BENCH_SINK_DELAY_MS").as_deref() {
                Ok("0") => 0,
                _ => env_num("BENCH_SINK_DELAY_MS", 0)?,
            },
            quiet_wait: match std::env::var("BENCH_QUIET_WAIT").as_deref() {
                Ok("0") => 0,
                _ => env_num("BENCH_QUIET_WAIT", 0)?,
            },
            only: None,
            strict: false,
            perf: None,
            bin: default_bin(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "-h" | "--help" => {
                    println!("{}", usage());
                    std::process::exit(0);
                }
                "--strict" => o.strict = true,
                "--only" => {
                    let list = args.next().ok_or_else(|| anyhow!("--only needs a list"))?;
                    let list: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
                    if let Some(bad) = list
                        .iter()
                        .find(|s| *s != "ceiling" && !SCENARIOS.contains(&s.as_str()))
                    {
                        bail!(
                            "--only: unknown scenario {bad:?}; known: ceiling, {}",
                            SCENARIOS.join(", ")
                        );
                    }
                    o.only = Some(list);
                }
                "--perf" => {
                    o.perf = Some(
                        args.next()
                            .ok_or_else(|| anyhow!("--perf needs a directory"))?
                            .into(),
                    )
                }
                "--bin" => {
                    o.bin = args
                        .next()
                        .ok_or_else(|| anyhow!("--bin needs a path"))?
                        .into()
                }
                other => bail!("unknown argument {other:?}\n\n{}", usage()),
            }
        }
        if !o.bin.is_file() {
            bail!(
                "the bridge binary {} does not exist; build it first: cargo build --release --bins (scripts/bench.sh does)",
                o.bin.display()
            );
        }
        Ok(o)
    }

    pub(crate) fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == scenario))
    }
}

pub(crate) fn usage() -> String {
    format!(
        "usage: bench [--only SCENARIO,…] [--strict] [--perf DIR] [--bin PATH]\n\
         \n\
         scenarios: {} (the ceiling always runs; `--only ceiling` runs just it)\n\
         --strict     exit 1 when a target is missed\n\
         --perf DIR   perf record (cpu-clock, DWARF call graphs) the bridge during each\n\
         \x20            throughput scenario into DIR/<scenario>.data\n\
         --bin PATH   the bridge binary (default: target/release/redis-webhook-bridge)\n\
         \n\
         environment: BENCH_N (20000) messages per throughput scenario, BENCH_BACKLOG\n\
         (200000) messages of the backlog case, BENCH_LATENCY_RATE (1000) msg/s and\n\
         BENCH_LATENCY_SECS (10) of the latency case, BENCH_QUIET_WAIT (0) seconds to wait\n\
         before each measurement for a second in which other processes use < 10% CPU,\n\
         BENCH_REPEAT (3) runs of each measurement (the backlog case excepted), keeping the\n\
         best clean run, BENCH_SINK_DELAY_MS (0) how long the sink waits before answering\n\
         (an endpoint's own latency; 0 measures the bridge's CPU cost)",
        SCENARIOS.join(", ")
    )
}

/// `target/release/redis-webhook-bridge` next to this example's own binary
/// (`target/release/examples/bench`).
pub(crate) fn default_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("redis-webhook-bridge")))
        .unwrap_or_else(|| PathBuf::from("target/release/redis-webhook-bridge"))
}
