//! Why a config was refused. Every message names where the bad value came
//! from (`origin`: a file path, an env var, `override`) and the full dotted
//! key, so an operator can fix it without reading code.

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{origin}: cannot read config file: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML, or its top level is not a mapping of sections.
    #[error("{origin}: YAML syntax error{}: {message}", at_line(*line, *column))]
    Syntax {
        origin: String,
        /// 1-based, when the parser knows it.
        line: Option<u64>,
        /// 1-based, when the parser knows it.
        column: Option<u64>,
        message: String,
    },
    /// A key that no section has (a typo, or a key from another version).
    #[error("{origin}: unknown key `{key}`{}", one_of(expected))]
    UnknownKey {
        origin: String,
        /// Full dotted path, e.g. `cluster.votrs`.
        key: String,
        /// The keys allowed at that level; empty when the parent has none.
        expected: Vec<String>,
    },
    /// A value of the wrong type or form (address, size, duration, enum).
    #[error("{origin}: {key}: {message}")]
    InvalidValue {
        origin: String,
        /// Full dotted path, e.g. `node.http_addr`.
        key: String,
        message: String,
    },
    /// A `SYNOD_*` environment variable that maps to no config section.
    #[error(
        "{var}: unknown config section (expected SYNOD_<SECTION>_<KEY> with a section in: {})",
        expected.join(", ")
    )]
    UnknownEnvVar { var: String, expected: Vec<String> },
    /// Values that parse but do not make sense (alone or together).
    #[error("{message}")]
    Validation {
        /// The main key at fault, e.g. `cluster.election_timeout_min`.
        key: String,
        /// The full sentence, naming every key involved.
        message: String,
    },
}

fn at_line(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

fn one_of(expected: &[String]) -> String {
    if expected.is_empty() { String::new() } else { format!(" (expected one of: {})", expected.join(", ")) }
}

impl ConfigError {
    /// The error class, stable for tests and scripts: `read`, `yaml_syntax`,
    /// `unknown_key`, `invalid_value`, `unknown_env_var`, `validation`.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Syntax { .. } => "yaml_syntax",
            ConfigError::UnknownKey { .. } => "unknown_key",
            ConfigError::InvalidValue { .. } => "invalid_value",
            ConfigError::UnknownEnvVar { .. } => "unknown_env_var",
            ConfigError::Validation { .. } => "validation",
        }
    }

    /// The status kind from the project-wide closed set.
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigError::Read { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => "not_found",
                std::io::ErrorKind::PermissionDenied => "permission_denied",
                _ => "internal",
            },
            ConfigError::Syntax { .. }
            | ConfigError::UnknownKey { .. }
            | ConfigError::InvalidValue { .. }
            | ConfigError::UnknownEnvVar { .. }
            | ConfigError::Validation { .. } => "invalid_argument",
        }
    }

    /// The full dotted key at fault, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::InvalidValue { key, .. }
            | ConfigError::Validation { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } | ConfigError::UnknownEnvVar { .. } => None,
        }
    }

    /// Where the bad input came from: a file, an env var or `override`.
    /// Validation errors have none: they judge the merged result.
    pub fn origin(&self) -> Option<&str> {
        match self {
            ConfigError::Read { origin, .. }
            | ConfigError::Syntax { origin, .. }
            | ConfigError::UnknownKey { origin, .. }
            | ConfigError::InvalidValue { origin, .. } => Some(origin),
            ConfigError::UnknownEnvVar { var, .. } => Some(var),
            ConfigError::Validation { .. } => None,
        }
    }
}

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;
