//! `dlq list | show | replay | purge`: inspect and re-drive dead-lettered deliveries.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::DlqCommand;
use crate::config::Config;
use crate::dlq::Dlq;
use crate::dlq::replay::{Progress, ReplayError, ReplayReport, ReplayRequest, Selection};
use crate::redis::redis_manager;
use crate::util::time::rfc3339;

/// Runs a `dlq` subcommand.
pub async fn run(cfg: Config, cmd: DlqCommand) -> anyhow::Result<i32> {
    let conn = redis_manager(&cfg.redis.url)?;
    let dlq = Dlq::new(conn, &cfg);
    // The stream and server that error lines name.
    let place = format!("{} on {}", dlq.key(), cfg.redis.url.redacted());
    match cmd {
        DlqCommand::List {
            limit,
            endpoint,
            output,
        } => list(&dlq, &place, limit, endpoint.as_deref(), output.is_json()).await,
        DlqCommand::Show { id, output } => show(&dlq, &place, &id, output.is_json()).await,
        DlqCommand::Purge { endpoint, yes } => purge(&dlq, endpoint.as_deref(), yes).await,
        DlqCommand::Replay { endpoint, all, ids } => replay(&cfg, &dlq, endpoint, all, ids).await,
    }
}

/// `dlq list`: one JSON line or one table row per entry, printed as read, page by page, so
/// that memory does not grow with the stream.
async fn list(
    dlq: &Dlq,
    place: &str,
    limit: usize,
    endpoint: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    if json {
        let mut failed = None;
        dlq.for_each(limit, endpoint, |e| match serde_json::to_string(&e) {
            Ok(line) => println!("{line}"),
            Err(err) => {
                failed.get_or_insert(err);
            }
        })
        .await
        .with_context(|| format!("reading {place}"))?;
        if let Some(err) = failed {
            return Err(err.into());
        }
        return Ok(crate::exit::OK);
    }
    println!(
        "{:<17} {:<16} {:<8} {:<36} {:>4} {:>6}  {:<24}  error",
        "id", "endpoint", "stage", "idempotency_key", "att", "status", "failed_at"
    );
    let shown = dlq
        .for_each(limit, endpoint, |e| {
            println!(
                "{:<17} {:<16} {:<8} {:<36} {:>4} {:>6}  {:<24}  {}",
                e.id,
                if e.endpoint.is_empty() {
                    "-"
                } else {
                    &e.endpoint
                },
                e.stage.as_str(),
                e.idempotency_key,
                e.attempts,
                e.last_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                rfc3339(e.failed_at_ms),
                e.error.chars().take(120).collect::<String>()
            );
        })
        .await
        .with_context(|| format!("reading {place}"))?;
    eprintln!("{shown} entr{} shown", if shown == 1 { "y" } else { "ies" });
    Ok(crate::exit::OK)
}

/// `dlq show`: one entry, as JSON or as `field: value` lines with the body last.
async fn show(dlq: &Dlq, place: &str, id: &str, json: bool) -> anyhow::Result<i32> {
    // The error's own text already carries its Redis cause; as a context chain it would
    // print that cause once per layer.
    let e = dlq
        .get(id)
        .await
        .map_err(|e| anyhow::anyhow!("reading {place}: {e}"))?;
    let mut v = serde_json::to_value(&e)?;
    v["received_at"] = rfc3339(e.received_at_ms).into();
    v["failed_at"] = rfc3339(e.failed_at_ms).into();
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&e.body) {
        v["body"] = body;
    }
    if json {
        println!("{}", serde_json::to_string(&v)?);
        return Ok(crate::exit::OK);
    }
    // Text: one `field: value` line each, the body last and pretty-printed.
    let body = v.as_object_mut().and_then(|o| o.remove("body"));
    if let Some(fields) = v.as_object() {
        for (k, val) in fields {
            match val {
                serde_json::Value::String(s) => println!("{k}: {s}"),
                serde_json::Value::Null => println!("{k}: -"),
                other => println!("{k}: {other}"),
            }
        }
    }
    if let Some(body) = body {
        println!("body:\n{}", serde_json::to_string_pretty(&body)?);
    }
    Ok(crate::exit::OK)
}

/// `dlq purge`: deletes every entry (of `endpoint`), only with `--yes`.
async fn purge(dlq: &Dlq, endpoint: Option<&str>, yes: bool) -> anyhow::Result<i32> {
    if !yes {
        eprintln!("dlq purge deletes entries for good; add --yes to confirm");
        return Ok(crate::exit::USAGE);
    }
    let n = dlq
        .purge(&crate::dlq::browse::Filter::endpoint(endpoint))
        .await?;
    println!("purged {n} entr{}", if n == 1 { "y" } else { "ies" });
    Ok(crate::exit::OK)
}

/// Re-drives entries through the same workers `run` uses (signing, retries, circuit
/// breaker); see [`crate::dlq::replay`]. Prints each entry left in place, a progress bar for
/// 20 deliveries or more, and the summary; fails if any delivery failed again or any entry
/// was skipped.
async fn replay(
    cfg: &Config,
    dlq: &Dlq,
    endpoint: Option<String>,
    all: bool,
    ids: Vec<String>,
) -> anyhow::Result<i32> {
    if !all && ids.is_empty() {
        eprintln!("dlq replay needs entry ids or --all");
        return Ok(crate::exit::USAGE);
    }
    let request = ReplayRequest {
        selection: if all {
            Selection::All
        } else {
            Selection::Ids(ids)
        },
        endpoint,
    };
    let mut bar = ProgressBar::hidden();
    let report = crate::dlq::replay::replay(cfg, dlq, &request, |p| match p {
        Progress::Skipped { id, reason } => eprintln!("{id}: {reason}"),
        Progress::Queued { deliveries } if deliveries >= 20 => bar = progress_bar(deliveries),
        Progress::Queued { .. } => {}
        Progress::Settled { delivered, failed } => {
            bar.set_position(delivered + failed);
            bar.set_message(format!("{delivered} delivered, {failed} failed again"));
        }
        Progress::Finished => bar.finish_and_clear(),
    })
    .await;
    let report = match report {
        Err(ReplayError::UnknownEndpoint(name)) => {
            anyhow::bail!("--endpoint {name}: no such endpoint in the config")
        }
        other => other?,
    };
    if report.selected == 0 {
        println!("nothing to replay");
        return Ok(crate::exit::OK);
    }
    print_summary(&report);
    Ok(if report.failed > 0 || report.skipped > 0 {
        crate::exit::RUNTIME
    } else {
        crate::exit::OK
    })
}

fn progress_bar(deliveries: u64) -> ProgressBar {
    let b = ProgressBar::new(deliveries);
    b.set_style(
        ProgressStyle::with_template("replay {bar:40} {pos}/{len} settled, {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

fn print_summary(r: &ReplayReport) {
    println!(
        "replayed {} deliver{} in {:.1}s: {} delivered, {} dead-lettered again, {} skipped",
        r.queued,
        if r.queued == 1 { "y" } else { "ies" },
        r.elapsed.as_secs_f64(),
        r.delivered,
        r.failed,
        r.skipped
    );
}
