//! The `synod` binary.

use std::process::ExitCode;

use clap::Parser;
use synod_api::cli::{Cli, Command, ConfigCmd, LogFormat};

fn init_logs(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SYNOD_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},openraft=warn,h2=warn,tower=warn,hyper=warn"))
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
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
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Config(ConfigCmd::Show { config }) => {
            let cfg = synod_config::Config::load(config.as_deref(), std::env::vars())?;
            let mut shown = serde_json::to_value(&cfg)?;
            // Secrets are never printed.
            for (section, key) in [("security", "jwt_secret"), ("external", "openai_api_key")] {
                if let Some(v) = shown.get_mut(section).and_then(|s| s.get_mut(key))
                    && !v.is_null()
                {
                    *v = "<redacted>".into();
                }
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }
        Command::Model(cmd) => synod_api::cli::run_model(cmd),
        Command::Bench(cmd) => {
            init_logs(cli.log_format.unwrap_or(LogFormat::Text), "warn");
            rt.block_on(synod_api::bench::run(cmd))
        }
        admin => rt.block_on(synod_api::cli::run_admin(admin)),
    }
}

fn main() -> ExitCode {
    synod_api::tls::install_provider();
    let cli = Cli::parse();
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
