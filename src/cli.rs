//! Command-line interface: every command and flag of the `redis-webhook-bridge` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Moves Redis pub/sub, list and stream events to signed HTTP webhooks.
#[derive(Debug, Parser)]
#[command(
    name = "redis-webhook-bridge",
    version,
    about,
    propagate_version = true
)]
pub struct Cli {
    /// TOML configuration file (also `BRIDGE_CONFIG`).
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "BRIDGE_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    /// Overrides `redis.url`.
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,

    /// Overrides `log.level` (RUST_LOG still wins).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Overrides `log.format`.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the worker: sources → queues → webhook deliveries.
    Run(RunArgs),
    /// Load, validate and print the effective config (secrets shown as ***); exit 0 or 78.
    CheckConfig,
    /// Sample webhook consumer: verifies signatures and prints one JSON line per accepted event.
    Receive(ReceiveArgs),
    /// Sign a body and print the headers a receiver would get.
    Sign(SignArgs),
    /// Verify a body against headers and one or more secrets (exit 0 valid, 1 invalid).
    Verify(VerifyArgs),
    /// Inspect and re-drive dead-lettered deliveries.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Pause deliveries on every replica (within 1 s); messages keep being received and wait.
    Pause {
        /// Why, shown by `status` and `/status`.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume deliveries on every replica.
    Resume,
    /// Migration toolkit: inventory and parity check.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Summary: paused?, live replicas, queue depths, dead-letter count.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Flags of `run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Republish every received message to `[republish] targets` (also `BRIDGE_DUAL=true`).
    #[arg(long, env = "BRIDGE_DUAL")]
    pub dual: bool,
    /// Overrides `admin.listen`.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Also write the four webhook metrics as CloudWatch Embedded Metric Format lines (stdout).
    #[arg(long, env = "BRIDGE_METRICS_EMF")]
    pub metrics_emf: bool,
    /// How often EMF lines are written.
    #[arg(long, env = "BRIDGE_METRICS_EMF_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub metrics_emf_interval: std::time::Duration,
}

/// A signature scheme, as named in the config's `signature` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// `X-Hokusai-Timestamp`, `X-Hokusai-Nonce`, `X-Hokusai-Signature: sha256=…` over `ts.nonce.body`.
    HokusaiV2,
    /// `X-Hokusai-Signature: sha256=…` over the body alone (the registry's original publisher).
    HokusaiLegacy,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` (standardwebhooks.com).
    StandardWebhooks,
}

/// Flags of `receive`.
#[derive(Debug, Args, Clone)]
pub struct ReceiveArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// A secret that may have signed requests (repeat for rotation); `env:NAME` and `file:PATH` work.
    /// Defaults to `env:WEBHOOK_SECRET`.
    #[arg(long = "secret", value_name = "SECRET")]
    pub secrets: Vec<String>,
    /// Accept only this scheme (default: detect from the headers).
    #[arg(long, value_enum)]
    pub scheme: Option<Scheme>,
    /// Maximum age (either direction) of a signed timestamp, in seconds.
    #[arg(long, default_value_t = 300)]
    pub tolerance: u64,
    /// Answer the first N requests with `--status` (default 503) for retry drills.
    #[arg(long, value_name = "N")]
    pub fail_first: Option<u64>,
    /// Status code for drilled failures; without `--fail-first`, every request gets it.
    #[arg(long, value_name = "CODE")]
    pub status: Option<u16>,
    /// Send `Retry-After: SECS` with drilled failures.
    #[arg(long, value_name = "SECS")]
    pub retry_after: Option<u64>,
    /// Wait this long before answering each request (e.g. `200ms`), to act as a slow consumer.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub delay: Option<std::time::Duration>,
    /// Exit after accepting N distinct events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Close a connection whose request headers have not arrived within this (also the idle
    /// time allowed between requests on a kept-alive connection).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: std::time::Duration,
    /// Fail a request whose body has not arrived within this after its headers.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: std::time::Duration,
    /// Serve at most N connections at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections: usize,
}

/// Flags of `sign`.
#[derive(Debug, Args, Clone)]
pub struct SignArgs {
    /// Signing secret (`env:NAME` and `file:PATH` work); repeat with `--all` to sign with each.
    #[arg(long = "secret", required = true, value_name = "SECRET")]
    pub secrets: Vec<String>,
    /// Signature scheme.
    #[arg(long, value_enum, default_value = "hokusai-v2")]
    pub scheme: Scheme,
    /// One signature per listed secret instead of only the first.
    #[arg(long)]
    pub all: bool,
    /// Body file (default: standard input). The bytes are signed exactly as read.
    #[arg(long, value_name = "PATH")]
    pub body: Option<PathBuf>,
    /// Fixed unix timestamp (default: now).
    #[arg(long)]
    pub timestamp: Option<i64>,
    /// Fixed nonce for hokusai-v2 (default: a random uuid4).
    #[arg(long)]
    pub nonce: Option<String>,
    /// Message id for standard-webhooks (default: a random uuid4).
    #[arg(long)]
    pub id: Option<String>,
}

/// Flags of `verify`.
#[derive(Debug, Args, Clone)]
pub struct VerifyArgs {
    /// A secret that may have signed the body (repeat for rotation).
    #[arg(long = "secret", required = true, value_name = "SECRET")]
    pub secrets: Vec<String>,
    /// Header as `Name: value` (repeat).
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Accept only this scheme (default: detect from the headers).
    #[arg(long, value_enum)]
    pub scheme: Option<Scheme>,
    /// Body file (default: standard input).
    #[arg(long, value_name = "PATH")]
    pub body: Option<PathBuf>,
    /// Maximum timestamp age in seconds; 0 turns the check off (for archived requests).
    #[arg(long, default_value_t = 300)]
    pub tolerance: u64,
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered deliveries, oldest first.
    List {
        /// Show at most N entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only entries of this endpoint.
        #[arg(long)]
        endpoint: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one entry in full, body included.
    Show {
        /// The entry id (from `dlq list`).
        id: String,
    },
    /// Re-drive entries through the normal delivery path; delivered entries are removed.
    Replay {
        /// Only entries of this endpoint.
        #[arg(long)]
        endpoint: Option<String>,
        /// Replay every entry (of `--endpoint`, if given).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Entry ids to replay.
        ids: Vec<String>,
    },
    /// Delete entries (all, or those of `--endpoint`).
    Purge {
        /// Only entries of this endpoint.
        #[arg(long)]
        endpoint: Option<String>,
        /// Required: confirms the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// Output format of `migrate` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

/// `migrate` subcommands.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Inventory of channels (with subscriber counts), lists and streams, and a suggested config.
    Plan {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Watch the source channels for a window and check that every message reached every
    /// matching endpoint (or is dead-lettered or still pending); exit 1 on any gap.
    Validate {
        /// How long to observe the source channels, e.g. `10m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// How long to wait after the window for deliveries to settle.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}
