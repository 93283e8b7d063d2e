//! The config `migrate plan` suggests: the registry's pub/sub channel (never its list, which
//! the bridge would take items from: that is a commented alternative with MIGRATION.md's
//! warning), the streams, the endpoints and the `[security]` settings they need, so that it
//! passes `check-config` as printed (with `WEBHOOK_SECRET` set).

use super::plan::{ChannelInfo, ListInfo, StreamInfo};
use crate::config::Config;

/// The suggested config for what the inventory found, as TOML text.
pub fn suggest(
    cfg: &Config,
    channels: &[ChannelInfo],
    lists: &[ListInfo],
    streams: &[StreamInfo],
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n\n",
        cfg.redis.url.redacted(),
        cfg.redis.key_prefix
    ));
    let registry_lists: Vec<&ListInfo> = lists
        .iter()
        .filter(|l| l.looks_like_envelope || l.key.starts_with("hokusai:"))
        .collect();
    let mut chans: Vec<&str> = channels
        .iter()
        .filter(|c| c.configured || c.channel.starts_with("hokusai:"))
        .map(|c| c.channel.as_str())
        .collect();
    // The registry publishes each event to its list and to its channel: read the channel.
    if chans.is_empty() && !registry_lists.is_empty() {
        chans.push(crate::config::DEFAULT_CHANNEL);
    }
    if !chans.is_empty() {
        out.push_str("[[sources]]\nkind = \"pubsub\"\n");
        out.push_str(&format!("channels = {:?}\n\n", chans));
    }
    for l in registry_lists {
        out.push_str(&list_alternative(l));
    }
    for s in streams.iter().filter(|s| s.key.starts_with("hokusai:")) {
        out.push_str(&format!(
            "[[sources]]\nkind = \"stream\"\nkey = {:?}\ngroup = \"webhook-bridge\"\n\n",
            s.key
        ));
    }
    security(cfg, &mut out);
    endpoints(cfg, &mut out);
    out
}

/// A commented list source for a registry list, with why it must not run beside the channel.
fn list_alternative(l: &ListInfo) -> String {
    format!(
        "# Alternative, never together with the channel above: the list {key:?}\n\
         # ({len} item(s) now{env}). A list source CONSUMES the list: each item goes to the\n\
         # bridge or to a legacy worker, not both. Move the list's workers to a republished\n\
         # copy (run --dual with a list target) first, and do not read both the channel and\n\
         # the list for the same endpoints: each event would be delivered twice under two\n\
         # idempotency keys. See MIGRATION.md, \"Can the bridge read the registry's list\n\
         # instead of the channel?\".\n\
         # [[sources]]\n# kind = \"list\"\n# key = {key:?}\n# unwrap_envelope = {unwrap}\n\n",
        key = l.key,
        len = l.length,
        env = if l.looks_like_envelope {
            ", registry envelopes"
        } else {
            ""
        },
        unwrap = l.looks_like_envelope
    )
}

/// The `[security]` settings the endpoints below passed with: without them their http:// or
/// private-network URLs would not.
fn security(cfg: &Config, out: &mut String) {
    if cfg.security.allow_http || cfg.security.allow_private_networks {
        out.push_str("[security]\n");
        if cfg.security.allow_http {
            out.push_str("allow_http = true\n");
        }
        if cfg.security.allow_private_networks {
            out.push_str("allow_private_networks = true\n");
        }
        out.push('\n');
    }
}

/// The configured endpoints, each signing with the secret in `WEBHOOK_SECRET`.
fn endpoints(cfg: &Config, out: &mut String) {
    if !cfg.endpoints.is_empty() {
        out.push_str("# Each endpoint signs with the secret in WEBHOOK_SECRET; set it, or edit.\n");
    }
    for e in &cfg.endpoints {
        if e.url.redacted() != e.url.url().as_str() {
            out.push_str(
                "# the URL is shown redacted: fill in the full one (check-config --show-urls)\n",
            );
        }
        out.push_str(&format!(
            "[[endpoints]]\nname = {:?}\nurl = {:?}\nsecrets = [\"env:WEBHOOK_SECRET\"]\nsignature = \"{}\"\n\n",
            e.name,
            e.url.redacted(),
            crate::delivery::signing::scheme_name(e.signature)
        ));
    }
}
