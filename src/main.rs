//! `redis-webhook-bridge`: parses the command line, loads config, starts telemetry and hands
//! over to the library. Exit codes: 0 ok, 1 runtime failure, 2 usage, 78 configuration.

use std::process::ExitCode;

use clap::Parser;
use redis_webhook_bridge::cli::{
    BeforeCommandArgs, Cli, Command, ConfigArgs, LogArgs, MigrateCommand, RunArgs,
};
use redis_webhook_bridge::config::{Config, ConfigError, LoadOptions, LogConfig, LogFormat};
use redis_webhook_bridge::{app, commands, exit, shutdown, telemetry};

/// jemalloc: glibc malloc/free were about a fifth of the bridge's CPU under load; jemalloc
/// cut CPU per message by 20–30 % with the same RSS (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // `.env` first: clap reads BRIDGE_CONFIG and BRIDGE_DUAL from the environment.
    let dotenv = dotenvy::from_path(".env");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE as u8 } else { 0 });
        }
    };
    if let Err(e) = &dotenv
        && !e.not_found()
    {
        eprintln!("error: .env in the working directory cannot be read: {e}");
        return ExitCode::from(exit::CONFIG as u8);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::RUNTIME as u8);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code as u8)
}

async fn dispatch(cli: Cli) -> i32 {
    match execute(cli).await {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                eprintln!("configuration error: {ce}");
                exit::CONFIG
            } else {
                eprintln!("error: {e:#}");
                exit::RUNTIME
            }
        }
    }
}

/// Runs the command; its exit code, or the error that ends it.
async fn execute(cli: Cli) -> anyhow::Result<i32> {
    let before = cli.before;
    let opts = |config: &ConfigArgs, log: Option<&LogArgs>| load_options(&before, config, log);
    match cli.command {
        Command::Run(args) => {
            let mut opts = opts(&args.config, Some(&args.log));
            opts.admin_listen = args.admin_listen;
            run(args, opts).await
        }
        Command::CheckConfig {
            config,
            log,
            show_urls,
            try_file,
        } => match try_file {
            Some(file) => {
                commands::check_config::try_message(&opts(&config, Some(&log)), &file).await
            }
            None => commands::check_config::run(&opts(&config, Some(&log)), show_urls).await,
        },
        Command::Dlq { config, command } => {
            with_config(&opts(&config, None), |cfg| commands::dlq::run(cfg, command)).await
        }
        Command::Pause { config, reason } => {
            with_config(&opts(&config, None), |cfg| async move {
                commands::control::pause(&cfg, reason).await
            })
            .await
        }
        Command::Resume { config } => {
            with_config(&opts(&config, None), |cfg| async move {
                commands::control::resume(&cfg).await
            })
            .await
        }
        Command::Status { config, output } => {
            with_config(&opts(&config, None), |cfg| async move {
                commands::control::status(&cfg, output.is_json()).await
            })
            .await
        }
        Command::Migrate { config, command } => {
            with_config(&opts(&config, None), |cfg| migrate(cfg, command)).await
        }
        Command::Receive(args) => {
            quiet_logging();
            commands::receive::run(args).await
        }
        Command::Sign(args) => commands::sign::run(args).await,
        Command::Verify(args) => commands::verify::run(args).await,
    }
}

/// How to load the config: a flag after the command wins over the same flag before it.
fn load_options(
    before: &BeforeCommandArgs,
    config: &ConfigArgs,
    log: Option<&LogArgs>,
) -> LoadOptions {
    LoadOptions {
        file: config.config.clone().or_else(|| before.config.clone()),
        redis_url: config
            .redis_url
            .clone()
            .or_else(|| before.redis_url.clone()),
        log_level: log
            .and_then(|l| l.log_level.clone())
            .or_else(|| before.log_level.clone()),
        log_format: log
            .and_then(|l| l.log_format.clone())
            .or_else(|| before.log_format.clone()),
        admin_listen: None,
    }
}

/// `migrate plan` and `migrate validate`.
async fn migrate(cfg: Config, command: MigrateCommand) -> anyhow::Result<i32> {
    match command {
        MigrateCommand::Plan { output } => commands::migrate::plan(&cfg, output.format()).await,
        MigrateCommand::Validate {
            duration,
            grace,
            output,
            allow_dead_lettered,
        } => {
            commands::migrate::validate(&cfg, duration, grace, output.format(), allow_dead_lettered)
                .await
        }
    }
}

/// `run`: loads and checks the config, starts logging and metrics, and runs the bridge
/// until SIGTERM/SIGINT.
async fn run(args: RunArgs, load: LoadOptions) -> anyhow::Result<i32> {
    let cfg = Config::load(&load)?;
    cfg.check_endpoint_networks().await?;
    telemetry::init_logging(&cfg.log);
    let metrics = telemetry::init_metrics()?;
    let shutdown = shutdown::Shutdown::new();
    shutdown.on_signals();
    let opts = app::RunOptions {
        dual: args.dual,
        metrics_emf: args.metrics_emf,
        metrics_emf_interval: args.metrics_emf_interval,
        load,
    };
    let result = app::run(cfg, opts, metrics, shutdown).await;
    telemetry::otel::shutdown();
    result?;
    Ok(exit::OK)
}

/// Loads the config and runs a command with it, logging warnings only.
async fn with_config<F, Fut>(opts: &LoadOptions, f: F) -> anyhow::Result<i32>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i32>>,
{
    quiet_logging();
    let cfg = Config::load(opts)?;
    f(cfg).await
}

/// Commands other than `run` log warnings and errors only, as text on stderr.
fn quiet_logging() {
    telemetry::init_logging(&LogConfig {
        format: LogFormat::Text,
        level: "warn".into(),
    });
}
