//! The `synod` binary.

use std::process::ExitCode;

use clap::Parser;
use synod_api::cli::{Cli, Command, ConfigCmd, LogFormat, ModelCmd};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs to stderr at `level` (or as `SYNOD_LOG` says), and audit events
/// always: they have their own layer, which no level or filter silences.
fn init_logs(format: LogFormat, level: &str) {
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, fmt};
    let audit = synod_api::service::authn::AUDIT_TARGET;
    let filter = EnvFilter::try_from_env("SYNOD_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},openraft=warn,h2=warn,tower=warn,hyper=warn")));
    let not_audit = filter_fn(move |m| m.target() != audit);
    let only_audit = filter_fn(move |m| m.target() == audit);
    let (main, audits): (Box<dyn Layer<_> + Send + Sync>, Box<dyn Layer<_> + Send + Sync>) = match format {
        LogFormat::Json => (
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stderr)
                .with_filter(filter.and(not_audit))
                .boxed(),
            fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).with_filter(only_audit).boxed(),
        ),
        LogFormat::Text => (
            fmt::layer().with_writer(std::io::stderr).with_filter(filter.and(not_audit)).boxed(),
            fmt::layer().with_writer(std::io::stderr).with_filter(only_audit).boxed(),
        ),
    };
    tracing_subscriber::registry().with(main).with(audits).init();
}

fn try_main(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => {
            let cfg = synod_api::cli::serve_config(&args)?;
            let format = cli.log_format.unwrap_or(match cfg.observability.log_format {
                synod_config::LogFormat::Json => LogFormat::Json,
                synod_config::LogFormat::Text => LogFormat::Text,
            });
            init_logs(format, &cfg.observability.log_level);
            rt.block_on(synod_api::server::serve(cfg))
        }
        Command::Config(ConfigCmd::Check { file }) => {
            synod_config::Config::load(Some(&file), std::env::vars())?;
            synod_api::cli::out(&format!("{}: ok", file.display()));
            Ok(())
        }
        Command::Config(ConfigCmd::Show { config }) => {
            let cfg = synod_config::Config::load(config.as_deref(), std::env::vars())?;
            let mut shown = serde_json::to_value(&cfg)?;
            // Secrets are never printed.
            for (section, key) in [("security", "jwt_secret")] {
                if let Some(v) = shown.get_mut(section).and_then(|s| s.get_mut(key))
                    && !v.is_null()
                {
                    *v = "<redacted>".into();
                }
            }
            synod_api::cli::print(&shown);
            Ok(())
        }
        Command::Restore { file, data_dir } => synod_api::cli::restore(&file, &data_dir),
        Command::Model(cmd) if !matches!(cmd, ModelCmd::Status { .. }) => synod_api::cli::run_model(cmd),
        admin => rt.block_on(synod_api::cli::run_admin(admin)),
    }
}

fn main() -> ExitCode {
    synod_api::tls::install_provider();
    let cli = Cli::parse();
    synod_api::cli::set_output(cli.output);
    if matches!(cli.command, Command::Serve(_)) {
        synod_plugins::pin_thread_count();
    }
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
