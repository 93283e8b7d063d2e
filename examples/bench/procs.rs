//! Child processes (killed with this process) and the `/proc` meters: RSS, CPU seconds,
//! and how much CPU other processes took meanwhile.

use std::io::Read as _;
use std::net::TcpListener as StdListener;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::{bridge::*, table::*};

/// A child process: SIGKILLed and reaped on drop (panics included), and killed by the kernel
/// if this process dies first.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) what: String,
}

impl Proc {
    pub(crate) fn spawn(mut cmd: Command, what: &str) -> anyhow::Result<Self> {
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        Ok(Self {
            child,
            what: what.to_string(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Sends `sig` and waits up to `grace` for the exit, then SIGKILLs.
    pub(crate) async fn stop(&mut self, sig: i32, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        self.signal(sig);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "bench: {} did not exit within {grace:?} of signal {sig}; killing it",
            self.what
        );
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A field of `/proc/<pid>/status` in kB (`VmHWM`, `VmRSS`).
pub(crate) fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub(crate) fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// User + system CPU seconds of `pid` (`/proc/<pid>/stat` fields 14 and 15).
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields after it start at state (3).
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / ticks)
}

/// Busy CPU seconds of the whole machine (`/proc/stat`: user, nice, system, irq, softirq and
/// steal).
pub(crate) fn machine_busy_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = text
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(busy as f64 / ticks)
}

/// Measures how much CPU processes other than the benchmark's own (this process, Redis, the
/// bridge, perf) used during a measurement: on a shared machine, a compile in the
/// background changes every number.
pub(crate) struct Meter {
    pub(crate) started: Instant,
    pub(crate) busy: f64,
    pub(crate) own: f64,
    pub(crate) me: f64,
    pub(crate) pids: Vec<u32>,
}

impl Meter {
    pub(crate) fn start(pids: &[u32]) -> Self {
        let mut pids = pids.to_vec();
        pids.push(std::process::id());
        let own = pids.iter().filter_map(|p| cpu_secs(*p)).sum();
        Self {
            started: Instant::now(),
            busy: machine_busy_secs().unwrap_or(0.0),
            own,
            me: cpu_secs(std::process::id()).unwrap_or(0.0),
            pids,
        }
    }

    /// CPU seconds this process (sink, publisher, direct loop) used since the start.
    pub(crate) fn bench_cpu(&self) -> f64 {
        cpu_secs(std::process::id()).unwrap_or(0.0) - self.me
    }

    /// CPU used elsewhere, in % of the machine's capacity over the measurement.
    pub(crate) fn other_pct(&self) -> f64 {
        let wall = self.started.elapsed().as_secs_f64();
        let own: f64 = self.pids.iter().filter_map(|p| cpu_secs(*p)).sum();
        let busy = machine_busy_secs().unwrap_or(0.0);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let other = (busy - self.busy) - (own - self.own);
        (100.0 * other / (wall * cpus)).max(0.0)
    }
}

/// The cost columns of a bridge scenario: CPU of the bridge, Redis and this process, and
/// what other processes used, from the start of the measurement.
pub(crate) struct Costs {
    pub(crate) meter: Meter,
    pub(crate) bridge: f64,
    pub(crate) redis: f64,
}

impl Costs {
    pub(crate) fn start(ctx: &Ctx, bridge: &Bridge) -> Self {
        Self {
            meter: Meter::start(&bridge.pids(ctx)),
            bridge: bridge.cpu(),
            redis: cpu_secs(ctx.redis.proc.pid()).unwrap_or(0.0),
        }
    }

    /// Ends the measurement: a row with only the cost columns set, per 1,000 of `n` messages.
    pub(crate) fn per_1k(&self, ctx: &Ctx, bridge: &Bridge, n: usize) -> Row {
        let k = n as f64 / 1000.0;
        Row {
            cpu_per_1k: Some((bridge.cpu() - self.bridge) / k),
            redis_cpu_per_1k: Some(
                (cpu_secs(ctx.redis.proc.pid()).unwrap_or(0.0) - self.redis) / k,
            ),
            bench_cpu_per_1k: Some(self.meter.bench_cpu() / k),
            other_pct: Some(self.meter.other_pct()),
            ..Row::default()
        }
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
