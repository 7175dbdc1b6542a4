//! Why a client call failed, sorted by whose move it is: the caller's input, a refusal by the
//! contract or a service, the environment, data that does not hold together, or our own bug.

use std::path::PathBuf;

use strongroom_types::ApiError;

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    // The caller's input: an argument, a file, a dataset that is not theirs.
    #[error("{0}")]
    Input(String),
    #[error("cannot read {}", path.display())]
    Read { path: PathBuf, source: datafusion::error::DataFusionError },

    // Refused by the contract or a service; each says why in words.
    #[error(transparent)]
    Chain(#[from] strongroom_chain::ChainError),
    #[error("{service} at {url} refused to {action}: {error}")]
    Refused { service: &'static str, url: String, action: &'static str, error: ApiError },

    // The environment: services down, files missing, the local backup or key store.
    #[error("{service} at {url} is unreachable: {reason}")]
    Unreachable { service: &'static str, url: String, reason: String },
    #[error(transparent)]
    Storage(#[from] strongroom_storage::StorageError),
    #[error("{what}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Backup(String),
    #[error("{0}")]
    Task(String),

    // Data that does not hold together: altered, corrupt, or not what the chain records.
    #[error("{0}")]
    Corrupt(String),
    #[error(transparent)]
    Dataplane(#[from] strongroom_dataplane::DataplaneError),
    #[error(transparent)]
    Seal(#[from] strongroom_types::Error),

    // Our own bug.
    #[error("internal: {0}")]
    Internal(String),
}

impl ClientError {
    /// Whether asking again may succeed: the service did not answer, as opposed to refusing.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// `fail!(Input, "…", args)` is `return Err(ClientError::Input(format!("…", args)))`.
macro_rules! fail {
    ($variant:ident, $($arg:tt)*) => {
        return Err($crate::ClientError::$variant(format!($($arg)*)))
    };
}
pub(crate) use fail;

/// Names what was being done when an I/O call failed.
pub(crate) trait IoContext<T> {
    fn io(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| ClientError::Io { what: what(), source })
    }
}
