//! `synod-bench`: benchmarks, a binary of their own so that none of this
//! ships in `synod`. The cluster benchmarks start real `synod` processes
//! (the binary beside this one, or `SYNOD_BIN`) through the test kit.

mod backup;
mod cluster;
mod dashboard;
mod embed;
mod etcd;
mod ingest;
mod nats;
mod scaling;
mod vectors;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use synod_testkit::{Credentials, LocalCluster};

#[derive(Debug, Parser)]
#[command(name = "synod-bench", version, about = "Benchmarks of Synod: a local cluster of real nodes, or in-process")]
struct Cli {
    #[command(subcommand)]
    cmd: cluster::BenchCmd,
}

/// The `synod` binary the cluster benchmarks start: `SYNOD_BIN`, else the
/// one beside this binary (cargo builds both into one target dir).
pub(crate) fn synod_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SYNOD_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let me = std::env::current_exe().context("locating synod-bench")?;
    let bin = me.with_file_name("synod");
    anyhow::ensure!(
        bin.is_file(),
        "no synod binary at {} (build it in the same profile: cargo build --release -p synod-api --bin synod, \
         or name one with SYNOD_BIN)",
        bin.display()
    );
    Ok(bin)
}

/// A cluster of real nodes under `root`, none started yet.
/// Where a benchmark keeps its nodes' data: `dir`, or a temp dir removed
/// when the guard drops.
pub(crate) fn work_dir(dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    Ok(match dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    })
}

pub(crate) fn local_cluster(root: &Path) -> anyhow::Result<LocalCluster> {
    let creds = Credentials::generate(|secret| Ok(synod_api::auth::first_admin_token(secret.as_bytes())?))?;
    LocalCluster::new(&synod_bin()?, root, creds)
}

fn main() -> ExitCode {
    synod_api::tls::install_provider();
    synod_plugins::pin_thread_count();
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter("warn").init();
    let run = || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(cluster::run(cli.cmd))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
