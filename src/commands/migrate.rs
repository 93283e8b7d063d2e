//! `migrate plan` and `migrate validate`: the operator's inventory and parity check for moving
//! the registry's consumers from Redis to webhooks. The work is [`crate::migrate`]'s; this
//! prints it.
//!
//! `validate` passes only when every message it observed on the pub/sub and stream sources
//! was delivered to every endpoint that matches it; dead-lettered (unless
//! `--allow-dead-lettered`), still pending and missing messages fail it, each one named.

use std::time::Duration;

use crate::cli::Format;
use crate::config::{Config, Dur};
use crate::migrate::plan::Plan;
use crate::migrate::validate::{Parity, Progress, Report, ValidateOptions};

/// `migrate plan`.
pub async fn plan(cfg: &Config, format: Format) -> anyhow::Result<i32> {
    let plan = crate::migrate::plan(cfg).await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Format::Text => print_plan(&plan),
    }
    Ok(crate::exit::OK)
}

/// `migrate plan` as text.
fn print_plan(plan: &Plan) {
    println!("Redis {}\n", plan.redis);
    println!("Pub/sub channels (subscribers now; * = read by the current config):");
    for c in &plan.channels {
        println!(
            "  {} {:<50} {} subscriber(s)",
            if c.configured { "*" } else { " " },
            c.channel,
            c.subscribers
        );
    }
    if plan.pattern_subscriptions > 0 {
        println!(
            "  ({} pattern subscription(s) not counted per channel)",
            plan.pattern_subscriptions
        );
    }
    println!("\nLists:");
    for l in &plan.lists {
        println!(
            "  {:<52} {} item(s){}",
            l.key,
            l.length,
            if l.looks_like_envelope {
                ", registry envelopes"
            } else {
                ""
            }
        );
    }
    println!("\nStreams:");
    for s in &plan.streams {
        println!(
            "  {:<52} {} entr(ies), groups: {}",
            s.key,
            s.length,
            if s.groups.is_empty() {
                "-".into()
            } else {
                s.groups.join(", ")
            }
        );
    }
    println!("\nSuggested config:\n\n{}", plan.suggested_config);
}

/// `migrate validate --duration D [--allow-dead-lettered]`: exit code 0 when the check
/// passes, 1 when it fails.
pub async fn validate(
    cfg: &Config,
    duration: Duration,
    grace: Duration,
    format: Format,
    allow_dead_lettered: bool,
) -> anyhow::Result<i32> {
    let opts = ValidateOptions {
        duration,
        grace,
        allow_dead_lettered,
    };
    let report = crate::migrate::validate(cfg, opts, print_progress).await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_text(&report),
    }
    Ok(if report.ok {
        crate::exit::OK
    } else {
        crate::exit::RUNTIME
    })
}

/// What the check says while it runs, on stderr.
fn print_progress(progress: Progress<'_>) {
    match progress {
        Progress::NotChecked(why) => eprintln!("not checked: {why}"),
        Progress::Observing { watched, duration } => {
            eprintln!("observing {} for {} …", watched.join(", "), Dur(duration))
        }
        Progress::Observed { messages, grace } => eprintln!(
            "observed {messages} message(s); waiting up to {} for deliveries to settle …",
            Dur(grace)
        ),
    }
}

/// Most not-delivered messages listed per endpoint in the text report (JSON lists all).
const LIST_LIMIT: usize = 50;

fn print_text(report: &Report) {
    println!(
        "parity report: {} message(s) observed in {:.1}s ({} not ingestible: dead-lettered at ingest, see `dlq list`)",
        report.observed, report.window_secs, report.not_ingestible
    );
    println!(
        "{:<24} {:>8} {:>9} {:>13} {:>8} {:>8}",
        "endpoint", "expected", "delivered", "dead-lettered", "pending", "MISSING"
    );
    for p in &report.endpoints {
        println!(
            "{:<24} {:>8} {:>9} {:>13} {:>8} {:>8}",
            p.endpoint, p.expected, p.delivered, p.dead_lettered, p.pending, p.missing
        );
    }
    for p in &report.endpoints {
        for m in p.not_delivered.iter().take(LIST_LIMIT) {
            println!(
                "{} for {}: idempotency key {} (channel {}, event {})",
                m.state.label(),
                p.endpoint,
                m.idempotency_key,
                m.channel,
                m.event_type
            );
        }
        if p.not_delivered.len() > LIST_LIMIT {
            println!(
                "… and {} more not delivered to {} (--format json lists all)",
                p.not_delivered.len() - LIST_LIMIT,
                p.endpoint
            );
        }
    }
    for u in &report.unchecked_sources {
        println!("NOT CHECKED: {u}");
    }
    let sum = |f: fn(&Parity) -> usize| report.endpoints.iter().map(f).sum::<usize>();
    let (dead, pending, missing) = (
        sum(|p| p.dead_lettered) + report.not_ingestible,
        sum(|p| p.pending),
        sum(|p| p.missing),
    );
    if report.ok {
        let accepted = if dead > 0 {
            format!(" ({dead} dead-lettered, accepted by --allow-dead-lettered)")
        } else {
            String::new()
        };
        println!("PASS: every observed message was delivered to every matching endpoint{accepted}");
    } else {
        let mut why = Vec::new();
        if missing > 0 {
            why.push(format!(
                "{missing} never reached the bridge's queues (no replica was subscribed, or they were lost)"
            ));
        }
        if pending > 0 {
            why.push(format!(
                "{pending} still pending after the grace period (retrying, circuit open or paused)"
            ));
        }
        if dead > 0 && !report.allow_dead_lettered {
            why.push(format!(
                "{dead} dead-lettered (fix and `dlq replay`, or accept them with --allow-dead-lettered)"
            ));
        }
        println!(
            "FAIL: not every observed message was delivered: {}",
            why.join("; ")
        );
    }
}
