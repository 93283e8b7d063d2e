//! `sign` command: sign a body with the bridge's own signer and print the headers a receiver
//! would get, one `Name: value` line each — handy for testing a receiver by hand (`curl -H`).

use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::io::AsyncReadExt as _;

use crate::cli::SignArgs;
use crate::config::Secret;
use crate::delivery::signing::{Signer, is_canonical_nonce};

/// Runs `sign`; exit code 0.
pub async fn run(args: SignArgs) -> anyhow::Result<i32> {
    let secrets = resolve_secrets(&args.secrets)?;
    let body = read_body(args.body.as_deref()).await?;
    let signer = Signer::new(args.scheme, &secrets, args.all)
        .context("cannot sign with the given --secret values")?;

    let timestamp = args.timestamp.unwrap_or_else(unix_now);
    let nonce = args
        .nonce
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Receivers refuse any other nonce (see `is_canonical_nonce`), so signing one would only
    // produce a request that never verifies.
    if args.scheme == crate::cli::Scheme::HokusaiV2 && !is_canonical_nonce(&nonce) {
        anyhow::bail!(
            "--nonce must be a canonical UUID (lowercase hex, hyphenated 8-4-4-4-12), \
             the only form receivers accept"
        );
    }
    let id = args.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

    let mut headers = Vec::with_capacity(3);
    signer.sign(&body, timestamp, &nonce, &id, &mut headers);

    let mut out = std::io::stdout().lock();
    for (name, value) in &headers {
        writeln!(out, "{}: {value}", display_name(name)).context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    Ok(crate::exit::OK)
}

/// Resolves every `--secret` reference in order. An error names the flag by position (from 1)
/// and the reason (a missing variable, an unreadable file), never the value.
pub(crate) fn resolve_secrets(references: &[String]) -> anyhow::Result<Vec<Secret>> {
    references
        .iter()
        .enumerate()
        .map(|(i, reference)| {
            Secret::resolve(reference).with_context(|| format!("--secret #{} is unusable", i + 1))
        })
        .collect()
}

/// The body exactly as read: from `path`, or standard input when there is none.
pub(crate) async fn read_body(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(path) => tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read the body file {}", path.display())),
        None => {
            let mut body = Vec::new();
            tokio::io::stdin()
                .read_to_end(&mut body)
                .await
                .context("cannot read the body from standard input")?;
            Ok(body)
        }
    }
}

/// The current time in unix seconds (0 if the clock is before 1970).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `x-hokusai-signature` → `X-Hokusai-Signature`, `webhook-id` → `Webhook-Id`.
fn display_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut capitalise = true;
    for c in name.chars() {
        if capitalise {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
        capitalise = c == '-';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capitalises_header_names_for_display() {
        assert_eq!(display_name("x-hokusai-signature"), "X-Hokusai-Signature");
        assert_eq!(display_name("webhook-id"), "Webhook-Id");
    }

    #[test]
    fn names_a_failing_secret_by_position_without_its_value() {
        let refs = [
            "literal-value".to_owned(),
            "env:RWB_SIGN_TEST_UNSET_VAR".to_owned(),
        ];
        let message = format!("{:#}", resolve_secrets(&refs).unwrap_err());
        assert!(message.contains("--secret #2"), "{message}");
        assert!(message.contains("RWB_SIGN_TEST_UNSET_VAR"), "{message}");
        assert!(!message.contains("literal-value"), "{message}");
    }
}
