//! Typed settings of the `synod` binary.
//!
//! Layers, each overriding the one before:
//!
//! 1. defaults ([`Config::default`]; the root `config.yaml` documents every
//!    field and sets it to its default),
//! 2. a YAML file,
//! 3. `SYNOD_<SECTION>_<KEY>` environment variables, e.g.
//!    `SYNOD_NODE_HTTP_ADDR=0.0.0.0:7700`, `SYNOD_VECTOR_DB_MAX_DIMENSION=1536`;
//!    a section-level sub-struct is reached the same way
//!    (`SYNOD_SECURITY_TLS_CERT`), keys of free-form maps (`node.labels.zone`)
//!    are not: give those in the file or with `--set`,
//! 4. command-line flags, applied by the CLI with [`Config::set`] on a dotted
//!    key (`--set cluster.voters=5`).
//!
//! [`Config::load`] does 1–3 and validates; the CLI then calls
//! [`Config::set`] for each flag and [`Config::validate`] once at the end.
//! Values are read like YAML scalars at every layer. Unknown keys are errors
//! at every level, and every [`ConfigError`] names the dotted key and where
//! the value came from:
//!
//! ```
//! use synod_config::{Config, Dur};
//!
//! let mut config = Config::from_yaml_str("cluster:\n  voters: 5\n", "config.yaml")?;
//! config.set("cluster.heartbeat_interval", "50ms")?;
//! config.validate()?;
//! assert_eq!(config.cluster.voters, 5);
//! assert_eq!(config.cluster.heartbeat_interval, Dur::from_millis(50));
//!
//! let err = Config::from_yaml_str("cluster:\n  votrs: 5\n", "config.yaml").unwrap_err();
//! assert!(err.to_string().starts_with("config.yaml: unknown key `cluster.votrs`"));
//! # Ok::<(), synod_config::ConfigError>(())
//! ```
//!
//! Architecture invariant: this crate depends on nothing else of Synod, and
//! does no I/O beyond reading the one file it is given. Every other crate may
//! depend on it.
//!
//! Key types: [`Config`] and its sections ([`NodeConfig`], [`ClusterConfig`],
//! ...), the units [`ByteSize`] and [`Dur`], and [`ConfigError`].

mod error;
mod layers;
mod sections;
mod units;
mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use error::{ConfigError, Result};
pub use layers::{ENV_PREFIX, IGNORED_ENV_VARS};
pub use sections::{
    ClusterConfig, ClusterTlsConfig, Compression, ExternalConfig, LogFormat, Metric, NodeConfig, ObservabilityConfig,
    PluginsConfig, ProviderConfig, ProviderKind, RetentionConfig, ScalingConfig, SecurityConfig, StorageConfig,
    SubprocessPlugin, TlsConfig, VectorDbConfig,
};
pub use units::{ByteSize, Dur, ParseUnitError};

/// All settings of one `synod` process; one field per top-level section of
/// `config.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub cluster: ClusterConfig,
    pub storage: StorageConfig,
    pub security: SecurityConfig,
    pub scaling: ScalingConfig,
    pub vector_db: VectorDbConfig,
    pub plugins: PluginsConfig,
    pub external: ExternalConfig,
    pub observability: ObservabilityConfig,
}

impl Config {
    /// Defaults < `file` (if `Some`) < `env`, then validates.
    ///
    /// `env` is normally `std::env::vars()`. Variables not starting with
    /// `SYNOD_`, and those in [`IGNORED_ENV_VARS`], are skipped; any other
    /// `SYNOD_*` variable must name a config key. They are applied in name
    /// order, so the result does not depend on the environment's order.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let mut config = match file {
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { origin: origin.clone(), source })?;
                Config::parse_unvalidated(&text, &origin)?
            }
            None => Config::default(),
        };
        let defaults = layers::defaults_tree();
        let mut overrides = Vec::new();
        for (var, value) in env {
            if let Some(key) = layers::env_key(&var, &defaults)? {
                overrides.push((var, key, value));
            }
        }
        overrides.sort();
        for (var, key, value) in overrides {
            config = layers::apply_override(&config, &key, &value, &var)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates one YAML text, without env overrides. `origin`
    /// (normally the file name) starts every error message.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Config> {
        let config = Config::parse_unvalidated(text, origin)?;
        config.validate()?;
        Ok(config)
    }

    fn parse_unvalidated(text: &str, origin: &str) -> Result<Config> {
        let tree = layers::parse_yaml(text, origin)?;
        layers::to_config(tree, origin)
    }

    /// Applies one override by dotted key, e.g.
    /// `set("node.http_addr", "127.0.0.1:7800")`. The value is read like a
    /// YAML scalar (`5`, `true`, `64MiB`, `[a, b]`, `{zone: a}`; `~` unsets
    /// an optional key); text the key does not accept as typed is retried as
    /// a plain string. List entries are reached by index
    /// (`plugins.subprocess.0.timeout`), map entries by name
    /// (`node.labels.zone`). Errors name the key, with origin `override`.
    ///
    /// Does not validate, so several overrides may pass through a state
    /// that breaks a rule (raising both election timeouts, say); call
    /// [`Config::validate`] after the last. On error `self` is unchanged.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        self.set_with_origin(key, value, layers::OVERRIDE_ORIGIN)
    }

    /// [`Config::set`], naming `origin` (e.g. `--http-addr`) in errors.
    pub fn set_with_origin(&mut self, key: &str, value: &str, origin: &str) -> Result<()> {
        *self = layers::apply_override(self, key, value, origin)?;
        Ok(())
    }

    /// Checks ranges, orderings between fields (election timeouts,
    /// failure-detector delays, worker bounds) and settings that only make
    /// sense together (TLS files). Reports the first rule broken.
    pub fn validate(&self) -> Result<()> {
        validate::validate(self)
    }
}
