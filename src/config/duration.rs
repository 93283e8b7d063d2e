//! Durations in config: strings such as `"500ms"`, `"30s"`, `"1h"`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from config. Accepts humantime strings (`"2s"`, `"1h 30m"`) and, for the
/// environment's sake, bare numbers meaning seconds (`BRIDGE_DELIVERY__SHUTDOWN_TIMEOUT=30`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// A duration of `secs` seconds.
    pub const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Parses a humantime string, or a plain number of seconds (fractions allowed).
    ///
    /// ```
    /// use redis_webhook_bridge::config::Dur;
    /// assert_eq!(Dur::parse("1500ms").unwrap().0.as_millis(), 1500);
    /// assert_eq!(Dur::parse("30").unwrap().0.as_secs(), 30);
    /// assert!(Dur::parse("soon").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, DurError> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Ok(Self(Duration::from_secs_f64(secs)));
            }
            return Err(DurError::NotFinite);
        }
        humantime::parse_duration(text)
            .map(Self)
            .map_err(|_| DurError::Invalid)
    }
}

/// Why a duration is refused. The message does not repeat the text (the key's value may be
/// a misplaced secret).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurError {
    /// A number of seconds below zero, or infinite.
    #[error("not a valid duration: a negative or infinite number of seconds")]
    NotFinite,
    /// Neither a number nor a humantime string.
    #[error("not a valid duration; use e.g. \"500ms\", \"30s\", \"1h\" or a number of seconds")]
    Invalid,
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Prints the duration the way config files write it: hours at most (`24h`, not
/// humantime's `1day`), then `m`, `s`, `ms`, `us`, `ns`, space-separated (`1h 30m`,
/// `1s 500ms`), `0s` for zero. [`Dur::parse`] reads every such string back.
impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        let parts = [
            (secs / 3600, "h"),
            (secs / 60 % 60, "m"),
            (secs % 60, "s"),
            (u64::from(nanos / 1_000_000), "ms"),
            (u64::from(nanos / 1000 % 1000), "us"),
            (u64::from(nanos % 1000), "ns"),
        ];
        let mut first = true;
        for (n, unit) in parts {
            if n == 0 {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{n}{unit}")?;
            first = false;
        }
        if first {
            f.write_str("0s")?;
        }
        Ok(())
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Self {
        d.0
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"30s\" or \"1h\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                Dur::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur::secs(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map(Dur::secs)
                    .map_err(|_| E::custom("not a valid duration: a negative number of seconds"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Dur, E> {
                Dur::parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_humantime_strings_and_plain_seconds() {
        assert_eq!(Dur::parse("500ms").unwrap().0, Duration::from_millis(500));
        assert_eq!(Dur::parse("1h").unwrap().0, Duration::from_secs(3600));
        assert_eq!(Dur::parse("30").unwrap().0, Duration::from_secs(30));
        assert_eq!(Dur::parse("2.5").unwrap().0, Duration::from_millis(2500));
    }

    #[test]
    fn prints_durations_as_the_config_writes_them_and_reads_them_back() {
        for (d, text) in [
            (Duration::from_secs(24 * 3600), "24h"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::from_millis(100), "100ms"),
            (Duration::ZERO, "0s"),
            (Duration::from_secs(3 * 24 * 3600 + 1), "72h 1s"),
        ] {
            assert_eq!(Dur(d).to_string(), text);
            assert_eq!(Dur::parse(text).unwrap().0, d, "{text}");
        }
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let e = Dur::parse("soon-CANARY").unwrap_err().to_string();
        assert!(e.contains("30s") && !e.contains("CANARY"), "{e}");
        assert_eq!(Dur::parse("-3"), Err(DurError::NotFinite));
    }
}
