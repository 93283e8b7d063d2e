//! `verify` command: check a body against `--header` values and one or more secrets, the way
//! a receiver would. Prints `valid (…)` and exits 0, or `invalid: <reason>` and exits 1.

use anyhow::Context as _;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::sign::{read_body, resolve_secrets, unix_now};
use crate::cli::VerifyArgs;
use crate::delivery::signing::{scheme_name, verify};

/// Runs `verify`; exit code 0 valid, 1 invalid, 2 for a malformed `--header`.
pub async fn run(args: VerifyArgs) -> anyhow::Result<i32> {
    let headers = match parse_headers(&args.headers) {
        Ok(headers) => headers,
        Err(e) => {
            eprintln!("verify: {e}");
            return Ok(crate::exit::USAGE);
        }
    };
    let secrets = resolve_secrets(&args.secrets)?;
    let body = read_body(args.body.as_deref())
        .await
        .context("verify needs the body exactly as received")?;

    match verify(
        args.scheme,
        &headers,
        &body,
        &secrets,
        unix_now(),
        args.tolerance,
    ) {
        Ok(verified) => {
            println!(
                "valid (scheme {}, secret #{})",
                scheme_name(verified.scheme),
                verified.secret_index + 1
            );
            Ok(crate::exit::OK)
        }
        Err(reason) => {
            eprintln!("invalid: {reason}");
            Ok(crate::exit::RUNTIME)
        }
    }
}

/// Why a `--header` flag is refused; names the flag by position (from 1) and repeats it as
/// given (the caller's own input, shown so that the bad one can be found).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum HeaderFlagError {
    /// No `:` between name and value.
    #[error("--header #{position} ({flag:?}) is not `Name: value`")]
    NotNameValue {
        /// The flag's position.
        position: usize,
        /// The flag as given.
        flag: String,
    },
    /// The part before `:` is not a header name.
    #[error("--header #{position} ({flag:?}) has an invalid header name")]
    Name {
        /// The flag's position.
        position: usize,
        /// The flag as given.
        flag: String,
    },
    /// The part after `:` is not a header value.
    #[error("--header #{position} ({flag:?}) has an invalid header value")]
    Value {
        /// The flag's position.
        position: usize,
        /// The flag as given.
        flag: String,
    },
}

/// Parses `--header "Name: value"` flags into a map, keeping repeats (so a duplicated header
/// is reported as such).
fn parse_headers(flags: &[String]) -> Result<HeaderMap, HeaderFlagError> {
    let mut headers = HeaderMap::with_capacity(flags.len());
    for (i, flag) in flags.iter().enumerate() {
        let position = i + 1;
        let Some((name, value)) = flag.split_once(':') else {
            return Err(HeaderFlagError::NotNameValue {
                position,
                flag: flag.clone(),
            });
        };
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| HeaderFlagError::Name {
                position,
                flag: flag.clone(),
            })?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| HeaderFlagError::Value {
            position,
            flag: flag.clone(),
        })?;
        headers.append(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_case_insensitively_and_keeps_repeats() {
        let flags = [
            "X-Hokusai-Signature: sha256=ab".to_owned(),
            "x-hokusai-signature:sha256=cd".to_owned(),
            "Webhook-Id:  msg_1 ".to_owned(),
        ];
        let headers = parse_headers(&flags).unwrap();
        assert_eq!(headers.get_all("x-hokusai-signature").iter().count(), 2);
        assert_eq!(headers["webhook-id"], "msg_1");
    }

    #[test]
    fn names_a_malformed_header_flag_by_position() {
        let flags = ["A: b".to_owned(), "no colon here".to_owned()];
        let message = parse_headers(&flags).unwrap_err().to_string();
        assert!(message.contains("--header #2"), "{message}");
        let e = parse_headers(&["bad name: x".to_owned()]).unwrap_err();
        assert_eq!(
            e,
            HeaderFlagError::Name {
                position: 1,
                flag: "bad name: x".into()
            }
        );
        assert!(e.to_string().contains("--header #1"), "{e}");
    }
}
