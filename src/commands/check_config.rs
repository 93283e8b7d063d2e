//! `check-config`: load, validate and print the effective config, secrets as `***`; with
//! `--try FILE`, what each endpoint would receive for a message.

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;

use crate::config::{Config, LoadOptions, Verdict};
use crate::ingest;

/// Prints the effective config; a [`crate::config::ConfigError`] propagates (exit 78),
/// including an endpoint on a private network that `[security]` does not allow. Endpoint
/// URLs are shown redacted unless `show_urls`.
pub async fn run(opts: &LoadOptions, show_urls: bool) -> anyhow::Result<i32> {
    let cfg = Config::load(opts)?;
    cfg.check_endpoint_networks().await?;
    if show_urls {
        print!("{}", with_full_urls(&cfg)?);
    } else {
        print!("{}", cfg.to_redacted_toml());
    }
    for warning in cfg.warnings() {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "config OK: {} endpoint(s), {} source(s)",
        cfg.endpoints.len(),
        cfg.sources.len()
    );
    Ok(crate::exit::OK)
}

/// The effective config as TOML with each endpoint's full URL (secrets still `***`).
fn with_full_urls(cfg: &Config) -> anyhow::Result<String> {
    let mut table = toml::Table::try_from(cfg)?;
    if let Some(toml::Value::Array(endpoints)) = table.get_mut("endpoints") {
        for (shown, ep) in endpoints.iter_mut().zip(&cfg.endpoints) {
            if let Some(t) = shown.as_table_mut() {
                t.insert("url".into(), ep.url.url().as_str().into());
            }
        }
    }
    Ok(toml::to_string_pretty(&table)?)
}

/// `check-config --try FILE`: loads and checks the config like [`run`], then prints for
/// each endpoint what it would do with the message in `file` (`-`: standard input), taken
/// as the bridge delivers it without a transform (for an `unwrap_envelope` source, the
/// envelope's payload) and as read on the first source's first channel or key: the
/// endpoint's `channels`, `event_types` and `filter` decide whether it is sent, and the
/// body printed after `receives` is exactly what would be sent. Exit 1 when the message
/// cannot be ingested or a filter or transform fails on it (it would be dead-lettered).
pub async fn try_message(opts: &LoadOptions, file: &Path) -> anyhow::Result<i32> {
    let cfg = Config::load(opts)?;
    cfg.check_endpoint_networks().await?;
    let body = read_message(file)?;
    let channel = first_channel(&cfg);
    let mut out = Vec::new();
    let code = match ingest::parse(
        &Bytes::from(body),
        &channel,
        false,
        &cfg.delivery.idempotency_key_fields,
        cfg.security.max_payload_bytes,
    ) {
        Ok(parsed) => verdicts(&cfg, &channel, &parsed, &mut out)?,
        Err(e) => {
            writeln!(
                out,
                "the message cannot be ingested: {e} (it would be dead-lettered)"
            )?;
            crate::exit::RUNTIME
        }
    };
    std::io::stdout()
        .write_all(&out)
        .context("writing to standard output")?;
    Ok(code)
}

/// Writes each endpoint's verdict on `parsed` to `out`; the exit code.
fn verdicts(
    cfg: &Config,
    channel: &str,
    parsed: &ingest::Parsed,
    out: &mut Vec<u8>,
) -> std::io::Result<i32> {
    writeln!(
        out,
        "message on `{channel}`: idempotency key {}, event type {}",
        parsed.idempotency_key, parsed.event_type
    )?;
    let mut code = crate::exit::OK;
    for ep in &cfg.endpoints {
        let name = &ep.name;
        if !ep.matches(channel, &parsed.event_type) {
            writeln!(
                out,
                "endpoint `{name}`: not sent: its channels or event_types do not take it"
            )?;
            continue;
        }
        match ep.verdict(&parsed.body) {
            Verdict::Receives(sent) => {
                let how = if ep.transform.is_some() {
                    " (transformed)"
                } else {
                    ""
                };
                writeln!(out, "endpoint `{name}`: receives{how}")?;
                out.extend_from_slice(&sent);
                out.push(b'\n');
            }
            Verdict::KeptOut => writeln!(out, "endpoint `{name}`: kept out by its filter")?,
            Verdict::FilterFailed(e) => {
                code = crate::exit::RUNTIME;
                writeln!(out, "endpoint `{name}`: dead-lettered: filter failed: {e}")?;
            }
            Verdict::TransformFailed(e) => {
                code = crate::exit::RUNTIME;
                writeln!(
                    out,
                    "endpoint `{name}`: dead-lettered: transform failed: {e}"
                )?;
            }
        }
    }
    Ok(code)
}

/// Where the bridge reads first: the first source's first channel (or pattern), list key
/// or stream key; what the message's event type falls back to and `channels` match.
fn first_channel(cfg: &Config) -> String {
    let first = cfg.sources.first();
    let pubsub = first
        .and_then(|s| s.pubsub())
        .and_then(|p| p.channels.first().or(p.patterns.first()));
    pubsub
        .map(String::as_str)
        .or_else(|| first.and_then(|s| s.key()))
        .unwrap_or(crate::config::DEFAULT_CHANNEL)
        .to_owned()
}

/// The bytes of `file`, or of standard input for `-`.
fn read_message(file: &Path) -> anyhow::Result<Vec<u8>> {
    if file == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("reading the message from standard input")?;
        return Ok(body);
    }
    std::fs::read(file).with_context(|| format!("reading the message {}", file.display()))
}
