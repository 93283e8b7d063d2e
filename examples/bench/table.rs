//! The result rows and the printed table.

#[derive(Default, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) msgs: u64,
    pub(crate) seconds: f64,
    pub(crate) rate: f64,
    /// Compare `rate` with the ceiling.
    pub(crate) vs_ceiling: bool,
    pub(crate) latency_ms: Option<(f64, f64, f64)>,
    pub(crate) rss_mb: Option<f64>,
    pub(crate) cpu_per_1k: Option<f64>,
    pub(crate) redis_cpu_per_1k: Option<f64>,
    /// CPU of this process (sink and publisher; direct loop and sink for the ceiling).
    pub(crate) bench_cpu_per_1k: Option<f64>,
    /// CPU used by other processes during the measurement, % of the machine.
    pub(crate) other_pct: Option<f64>,
    /// Redis commands: name, calls per 1,000 messages, µs per call.
    pub(crate) redis_calls: Vec<(String, f64, f64)>,
    pub(crate) note: String,
}

pub(crate) fn print_table(rows: &[Row], ceiling: f64) {
    let opt = |v: Option<f64>, prec: usize| match v {
        Some(x) if x.is_finite() => format!("{x:.prec$}"),
        _ => "-".into(),
    };
    let header = format!(
        "{:<24} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>6}",
        "scenario",
        "msgs",
        "seconds",
        "msg/s",
        "x ceil",
        "p50 ms",
        "p99 ms",
        "max ms",
        "RSS MB",
        "CPU/1k",
        "redis/1k",
        "bench/1k",
        "other%"
    );
    println!();
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for r in rows {
        let (p50, p99, max) = match r.latency_ms {
            Some((a, b, c)) => (Some(a), Some(b), Some(c)),
            None => (None, None, None),
        };
        let ratio = (r.vs_ceiling && ceiling > 0.0).then(|| r.rate / ceiling);
        println!(
            "{:<24} {:>7} {:>7.2} {:>7.0} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>6}{}",
            r.scenario,
            r.msgs,
            r.seconds,
            r.rate,
            opt(ratio, 2),
            opt(p50, 2),
            opt(p99, 2),
            opt(max, 1),
            opt(r.rss_mb, 1),
            opt(r.cpu_per_1k, 3),
            opt(r.redis_cpu_per_1k, 3),
            opt(r.bench_cpu_per_1k, 3),
            opt(r.other_pct, 0),
            if r.note.is_empty() {
                String::new()
            } else {
                format!("  {}", r.note)
            }
        );
    }
    println!(
        "\nCPU/1k, redis/1k, bench/1k: CPU seconds (user + system) per 1,000 messages of the bridge, \
         of redis-server and of this process (sink + publisher; direct loop + sink for the ceiling). \
         other%: CPU used by other processes on the machine during the measurement."
    );
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}
