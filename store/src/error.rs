//! Storage errors: I/O or corruption. Business rejections are not errors
//! here; they are [`crate::pb::Rejection`] values in a command result.

use std::path::PathBuf;

/// What failed in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB failed.
    #[error("rocksdb: {context}: {source}")]
    Rocks {
        context: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    /// A file outside RocksDB (a snapshot) failed.
    #[error("{context} {path}: {source}", path = path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes do not decode: the data dir is damaged or was written by
    /// an incompatible build.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

impl Error {
    pub(crate) fn rocks(context: &'static str) -> impl FnOnce(rocksdb::Error) -> Error {
        move |source| Error::Rocks { context, source }
    }

    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { context, path, source }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl ToString) -> Error {
        Error::Corrupt { what, detail: detail.to_string() }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::other(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
