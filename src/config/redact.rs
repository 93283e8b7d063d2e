//! How URLs that may carry credentials are shown: Redis URLs ([`redact_url`]) and endpoint
//! URLs ([`redact_endpoint_url`]). Every output of the bridge — logs, errors, `/status`,
//! `status`, `check-config`, `migrate plan`, dead-letter entries — goes through these two.

use url::Url;

/// Query keys of a Redis URL whose values [`redact_url`] shows: the ones the redis crate
/// reads that are not credentials (`db`, `protocol`, `user`).
const REDIS_QUERY_SHOWN: &[&str] = &["db", "protocol", "user"];

/// Returns a Redis URL with every credential form the redis crate accepts replaced by `***`:
/// the user-info password (`redis://user:pass@…`, `rediss://…`), a lone user-info name (some
/// providers put a token there), and the value of every query key other than `db`,
/// `protocol` and `user` (`unix:///…?pass=…`, `redis+unix:///…?pass=…`, `?password=…`, and
/// anything unknown). A fragment other than `#insecure` is masked too.
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    } else if !u.username().is_empty() {
        let _ = u.set_username("***");
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let shown = if REDIS_QUERY_SHOWN.contains(&k.as_ref()) {
                    v.into_owned()
                } else {
                    "***".to_string()
                };
                (k.into_owned(), shown)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if u.fragment().is_some_and(|f| f != "insecure") {
        u.set_fragment(Some("***"));
    }
    u.to_string()
}

/// A path segment this long or longer is shown as `***` (tokens, long ids).
const LONG_SEGMENT: usize = 16;
/// A path segment this long or longer that contains a digit is shown as `***` (ids such as
/// Slack's `T0123ABCD`, short tokens).
const DIGIT_SEGMENT: usize = 8;

/// An endpoint URL as outputs show it: scheme, host, port and path; user-info, query and
/// fragment dropped; and every path segment that may be a credential shown as `***` — one of
/// 16 or more characters, or of 8 or more that contains a digit. Webhook providers put the
/// credential in the path (`/services/T0/B0/<token>`, `/api/webhooks/<id>/<token>`) or the
/// query (`?token=…`, `?code=…`); words such as `hooks`, `v1` or `model-ready` stay readable.
/// `check-config --show-urls` is the one place that shows the full URL.
pub fn redact_endpoint_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    if let Some(segments) = url.path_segments() {
        let shown: Vec<&str> = segments
            .map(|seg| if looks_secret(seg) { "***" } else { seg })
            .collect();
        u.set_path(&shown.join("/"));
    }
    u.to_string()
}

fn looks_secret(segment: &str) -> bool {
    let len = segment.chars().count();
    len >= LONG_SEGMENT || (len >= DIGIT_SEGMENT && segment.chars().any(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "CANARY-5ecret-7f3a";

    fn redis(text: &str) -> String {
        let shown = redact_url(&Url::parse(text).unwrap());
        assert!(!shown.contains(CANARY), "{text} shown as {shown}");
        shown
    }

    #[test]
    fn a_redis_user_info_password_is_masked() {
        assert_eq!(
            redis(&format!("redis://:{CANARY}@127.0.0.1:6379/2")),
            "redis://:***@127.0.0.1:6379/2"
        );
        assert_eq!(
            redis(&format!("rediss://alice:{CANARY}@redis.example.com:6380")),
            "rediss://alice:***@redis.example.com:6380"
        );
    }

    #[test]
    fn a_lone_redis_user_info_name_is_masked() {
        assert_eq!(
            redis(&format!("redis://{CANARY}@127.0.0.1")),
            "redis://***@127.0.0.1"
        );
    }

    #[test]
    fn unix_socket_pass_and_password_query_values_are_masked() {
        assert_eq!(
            redis(&format!(
                "unix:///run/redis.sock?db=1&user=alice&pass={CANARY}"
            )),
            "unix:///run/redis.sock?db=1&user=alice&pass=***"
        );
        assert_eq!(
            redis(&format!(
                "redis+unix:///run/redis.sock?pass={CANARY}&protocol=3"
            )),
            "redis+unix:///run/redis.sock?pass=***&protocol=3"
        );
        assert_eq!(
            redis(&format!("unix:///run/redis.sock?password={CANARY}")),
            "unix:///run/redis.sock?password=***"
        );
        assert_eq!(
            redis(&format!(
                "redis://127.0.0.1/?password={CANARY}&token={CANARY}"
            )),
            "redis://127.0.0.1/?password=***&token=***"
        );
    }

    #[test]
    fn a_percent_encoded_password_is_masked_too() {
        let shown = redis("unix:///s.sock?pass=CANARY%2D5ecret%2D7f3a");
        assert!(!shown.contains("5ecret"), "{shown}");
        let shown = redis("redis://:CANARY%2D5ecret%2D7f3a@h");
        assert!(!shown.contains("5ecret"), "{shown}");
    }

    #[test]
    fn insecure_fragment_stays_visible_and_other_fragments_are_masked() {
        assert_eq!(
            redis(&format!("rediss://:{CANARY}@h:6380/#insecure")),
            "rediss://:***@h:6380/#insecure"
        );
        assert_eq!(redis(&format!("rediss://h/#{CANARY}")), "rediss://h/#***");
    }

    #[test]
    fn a_redis_url_without_credentials_is_shown_unchanged() {
        assert_eq!(redis("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redis("unix:///run/redis.sock?db=3"),
            "unix:///run/redis.sock?db=3"
        );
    }

    fn endpoint(text: &str) -> String {
        redact_endpoint_url(&Url::parse(text).unwrap())
    }

    #[test]
    fn endpoint_urls_lose_query_fragment_and_token_like_path_segments() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/CANARY5ecret7f3aXXXXXXXX",
                "https://hooks.slack.com/services/***/***/***",
            ),
            (
                "https://discord.com/api/webhooks/123456789012345678/CANARY-5ecret-7f3a",
                "https://discord.com/api/webhooks/***/***",
            ),
            (
                "https://example.com:8443/hook?token=CANARY-5ecret-7f3a&x=1#frag",
                "https://example.com:8443/hook",
            ),
            (
                "https://example.com/v1/model-ready/hook",
                "https://example.com/v1/model-ready/hook",
            ),
            ("https://example.com/abc1234", "https://example.com/abc1234"),
            ("https://example.com/abcd1234", "https://example.com/***"),
            ("https://example.com/", "https://example.com/"),
            ("http://[::1]:9000/a/b/", "http://[::1]:9000/a/b/"),
        ] {
            assert_eq!(endpoint(url), shown, "{url}");
        }
    }
}
