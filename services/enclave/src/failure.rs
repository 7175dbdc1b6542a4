//! Why a task failed inside the enclave: what the analyst reads in the sealed failure, with a
//! stable [`FailureCode`] their tools can branch on, and the [`Outcome`] the contract settles
//! by. The message names the thing at fault.

use alloy_primitives::B256;
use strongroom_dataplane::ManifestError;
use strongroom_types::{FailureCode, ManifestDigest, Outcome};

#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskFailure {
    #[error(
        "dataset manifest digest {found} is not {rented}, the one the task was rented against: the dataset was updated since, or the worker's copy is corrupt or tampered"
    )]
    ManifestMismatch { found: ManifestDigest, rented: ManifestDigest },
    #[error("the manifest registered on chain {0}")]
    BadManifest(#[from] ManifestError),
    #[error("the worker relayed {relayed} objects; the manifest registered on chain lists {listed}")]
    ObjectCount { relayed: usize, listed: usize },
    #[error(
        "dataset object {name} has sha256 {found}, not {listed} as in the manifest registered on chain: the worker's copy is corrupt or tampered"
    )]
    ObjectChecksum { name: String, found: B256, listed: B256 },
    #[error("the job relayed by the worker does not match the job hash on chain")]
    JobMismatch,
    #[error("the job relayed to run is not the one whose columns were planned for the key request")]
    NotPlanned,
    #[error("this enclave runs SQL jobs only; WASM apps are not supported yet")]
    UnsupportedJob,
    #[error("the licence policy does not allow reading column {}", quoted(.0))]
    PolicyDenied(Vec<String>),
    #[error("{0}")]
    PolicyViolation(#[from] strongroom_policy::Violation),
    #[error(
        "the licence policy relayed by the worker hashes to {relayed}, not {rented}, the policy the task was rented under"
    )]
    PolicyMismatch { relayed: B256, rented: B256 },
    #[error("the licence policy the task was rented under does not parse: {0}")]
    BadPolicy(String),
    #[error("the key service did not release the key of column `{0}` that the query reads")]
    KeyMissing(String),
    #[error("the SQL text is not UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error(
        "the dataset's objects do not decrypt or parse, though they are the ones the manifest registered on chain lists: {0}"
    )]
    Unreadable(datafusion::error::DataFusionError),
    #[error(
        "the query needed more memory than the 1 GiB the enclave gives a query (how much is withheld: it depends on the data); group more coarsely or filter first"
    )]
    OutOfMemory,
    #[error(
        "the query failed while running; its error is withheld because it could quote the data (a cast or function that fails on a column's value)"
    )]
    Execution,
    #[error("{0}")]
    TooManyRows(strongroom_policy::Violation),
}

impl TaskFailure {
    pub(crate) fn code(&self) -> FailureCode {
        match self {
            Self::ManifestMismatch { .. } => FailureCode::ManifestMismatch,
            Self::BadManifest(_) => FailureCode::BadManifest,
            Self::ObjectCount { .. } | Self::ObjectChecksum { .. } | Self::Unreadable(_) => FailureCode::BadObjects,
            Self::JobMismatch | Self::NotPlanned => FailureCode::JobMismatch,
            Self::UnsupportedJob => FailureCode::UnsupportedJob,
            Self::PolicyDenied(_) => FailureCode::PolicyDenied,
            Self::PolicyViolation(_) => FailureCode::PolicyViolation,
            Self::PolicyMismatch { .. } | Self::BadPolicy(_) => FailureCode::PolicyMismatch,
            Self::KeyMissing(_) => FailureCode::KeyMissing,
            Self::NotUtf8 | Self::Query(_) => FailureCode::Query,
            Self::OutOfMemory | Self::Execution => FailureCode::Running,
            Self::TooManyRows(_) => FailureCode::PolicyViolation,
        }
    }

    /// How the contract settles the task. Every check before the query runs depends only on
    /// what the chain pins (job, manifest, policy, keys) and the dataset's schema, so failing
    /// one tells nothing of the data: `Refused`, and the epsilon goes back. Once the query has
    /// read the data, whether it fails can depend on the values (an overflow, memory, the number
    /// of groups), so the failure is `Failed` and spends the epsilon: otherwise failing queries
    /// would be free probes of the data. Each variant is placed here by hand, so a new one
    /// cannot fall into `Refused` unseen.
    ///
    /// What the host relays and the chain pins (the manifest by its digest, the objects by the
    /// manifest's hashes, the job by its hash, the policy by its hash) is either exactly that or
    /// the host's (or its storage's) doing: `HostFault`, which pays nobody, so that no pool earns
    /// by breaking a task and no owner by breaking its storage.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Self::ManifestMismatch { .. }
            | Self::ObjectCount { .. }
            | Self::ObjectChecksum { .. }
            | Self::JobMismatch
            | Self::NotPlanned
            | Self::PolicyMismatch { .. } => Outcome::HostFault,
            Self::BadManifest(_)
            | Self::UnsupportedJob
            | Self::PolicyDenied(_)
            | Self::PolicyViolation(_)
            | Self::BadPolicy(_)
            | Self::KeyMissing(_)
            | Self::NotUtf8
            | Self::Query(_)
            // Owner-made: the bytes were checked against the manifest (see `without_values`).
            | Self::Unreadable(_) => Outcome::Refused,
            Self::OutOfMemory | Self::Execution | Self::TooManyRows(_) => Outcome::Failed,
        }
    }
}

impl From<strongroom_policy::Refusal> for TaskFailure {
    fn from(refusal: strongroom_policy::Refusal) -> Self {
        match refusal {
            strongroom_policy::Refusal::Query(error) => Self::Query(error),
            strongroom_policy::Refusal::Licence(violation) => Self::PolicyViolation(violation),
        }
    }
}

fn quoted(columns: &[String]) -> String {
    columns.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
}
