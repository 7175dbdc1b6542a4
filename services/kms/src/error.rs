use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use alloy::primitives::{Address, B256, U256};
use thiserror::Error;

pub type Result<T, E = KmsError> = std::result::Result<T, E>;

/// Why the key service refused a request. Every refusal names the thing at fault.
#[derive(Debug, Error)]
pub enum KmsError {
    // The caller's request.
    #[error("task {0} does not exist on chain")]
    UnknownTask(U256),
    #[error("task {task} is {status}, not active: keys are released only for paid, running tasks")]
    TaskNotActive { task: U256, status: &'static str },
    #[error("task {task} passed its deadline at unix time {deadline}")]
    DeadlinePassed { task: U256, deadline: u64 },
    #[error(
        "the pool operator {operator} did not authorize enclave {enclave} for task {task}: it signs \
         `Authorization(taskId, enclave)` with its key or, if it is a contract, presigns it on chain \
         with `presignAuthorization` and the request carries no authorization"
    )]
    NotAuthorized { task: U256, enclave: Address, operator: Address },
    #[error("the key request is not signed by enclave {0}")]
    BadEnclaveSignature(Address),
    #[error("enclave {0} is not registered on chain, has expired, or its measurement is no longer trusted")]
    EnclaveNotRegistered(Address),
    #[error("the licence pins enclave measurement {pinned}, but enclave {enclave} runs {measurement}")]
    MeasurementNotAllowed { enclave: Address, measurement: B256, pinned: B256 },
    #[error("the deposit signature does not recover to an address")]
    BadDepositSignature,
    #[error("{signer} signed the deposit but dataset {dataset} is owned by {owner}")]
    NotOwner { dataset: B256, signer: Address, owner: Address },
    #[error(
        "the audit request is good until unix time {not_after}, and it is {now}: sign one good for at most an hour from now"
    )]
    AuditRequestOutOfTime { not_after: u64, now: u64 },
    #[error(
        "the deposit is good until unix time {not_after}, and it is {now}: sign one good for at most an hour from now"
    )]
    DepositOutOfTime { not_after: u64, now: u64 },
    #[error("the audit request's signature does not recover to an address")]
    BadAuditSignature,
    #[error("the audit request is for key service {asked}, and this is key service {ours}: sign one for this one")]
    AuditRequestForAnotherKeyService { asked: B256, ours: B256 },
    #[error("{signer} asked for dataset {dataset}'s audit log, which is for its owner {owner} alone")]
    NotAuditOwner { dataset: B256, signer: Address, owner: Address },
    #[error(
        "dataset {0} is not registered on chain: register it first (its owner deposits the keys of a registered dataset only), then deposit"
    )]
    DepositForUnregisteredDataset(B256),
    #[error("task {task} was rented against key service key {registered}, not this service's {ours}")]
    WrongKeyService { task: U256, registered: B256, ours: B256 },
    #[error(
        "no keys are deposited here for dataset {dataset} with manifest {manifest}: the owner must deposit them (`strongroom dataset redeposit`)"
    )]
    NoKeysDeposited { dataset: B256, manifest: strongroom_types::ManifestDigest },
    #[error("dataset {0} is not registered on chain")]
    UnknownDataset(B256),
    #[error(
        "dataset {dataset}'s deposited policy hashes to {deposited}, but the task was rented under policy {rented}: the owner must deposit that policy"
    )]
    PolicyMismatch { dataset: B256, deposited: B256, rented: B256 },
    #[error("task {0} was rented with epsilon 0, but its licence releases results only with differential privacy")]
    EpsilonRequired(U256),
    #[error(
        "the keys of task {task} were already released to enclave {holder} under its own task key: a task's keys are released once, and only that request is answered again"
    )]
    AlreadyReleased { task: U256, holder: Address },
    #[error("no policy with keccak256 {0} was deposited here")]
    UnknownPolicy(B256),
    #[error("this key service has released no keys for task {0}: it has no receipt to give")]
    NotReleased(U256),
    #[error("column `{column}` is not in dataset {dataset}")]
    UnknownColumn { dataset: B256, column: String },
    #[error("the deposited keys cannot be opened: {0}")]
    BadDeposit(String),
    #[error("the deposited policy is refused: {0}")]
    BadPolicy(String),
    // The environment.
    #[error("chain: {0}")]
    Chain(#[from] strongroom_chain::ChainError),
    #[error("key store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    // Our own bug.
    #[error("internal: {0}")]
    Internal(String),
}

impl KmsError {
    /// A stable machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownTask(_) => "unknown_task",
            Self::TaskNotActive { .. } => "task_not_active",
            Self::DeadlinePassed { .. } => "deadline_passed",
            Self::NotAuthorized { .. } => "not_authorized",
            Self::BadEnclaveSignature(_) => "bad_enclave_signature",
            Self::EnclaveNotRegistered(_) => "enclave_not_registered",
            Self::MeasurementNotAllowed { .. } => "measurement_not_allowed",
            Self::BadDepositSignature => "bad_deposit_signature",
            Self::NotOwner { .. } => "not_owner",
            Self::AuditRequestOutOfTime { .. } => "audit_request_out_of_time",
            Self::DepositOutOfTime { .. } => "deposit_out_of_time",
            Self::BadAuditSignature => "bad_audit_signature",
            Self::AuditRequestForAnotherKeyService { .. } => "audit_request_for_another_key_service",
            Self::NotAuditOwner { .. } => "not_dataset_owner",
            Self::DepositForUnregisteredDataset(_) => "dataset_not_registered",
            Self::WrongKeyService { .. } => "wrong_key_service",
            Self::NoKeysDeposited { .. } => "no_keys_deposited",
            Self::UnknownDataset(_) => "unknown_dataset",
            Self::UnknownPolicy(_) => "unknown_policy",
            Self::NotReleased(_) => "not_released",
            Self::EpsilonRequired(_) => "epsilon_required",
            Self::AlreadyReleased { .. } => "already_released",
            Self::PolicyMismatch { .. } => "policy_mismatch",
            Self::UnknownColumn { .. } => "unknown_column",
            Self::BadDeposit(_) => "bad_deposit",
            Self::BadPolicy(_) => "bad_policy",
            Self::Chain(_) => "chain_unavailable",
            Self::Store(_) | Self::KeyFile { .. } | Self::Io(_) => "storage_error",
            Self::Internal(_) => "internal",
        }
    }
}

impl ResponseError for KmsError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnknownTask(_)
            | Self::NoKeysDeposited { .. }
            | Self::UnknownDataset(_)
            | Self::UnknownPolicy(_)
            | Self::NotReleased(_) => StatusCode::NOT_FOUND,
            Self::TaskNotActive { .. }
            | Self::DeadlinePassed { .. }
            | Self::WrongKeyService { .. }
            | Self::PolicyMismatch { .. }
            | Self::EpsilonRequired(_)
            | Self::AlreadyReleased { .. } => StatusCode::CONFLICT,
            Self::NotAuthorized { .. }
            | Self::BadEnclaveSignature(_)
            | Self::EnclaveNotRegistered(_)
            | Self::MeasurementNotAllowed { .. }
            | Self::NotOwner { .. }
            | Self::NotAuditOwner { .. } => StatusCode::FORBIDDEN,
            Self::AuditRequestOutOfTime { .. }
            | Self::DepositOutOfTime { .. }
            | Self::BadAuditSignature
            | Self::AuditRequestForAnotherKeyService { .. } => StatusCode::BAD_REQUEST,
            Self::DepositForUnregisteredDataset(_) => StatusCode::CONFLICT,
            Self::BadDepositSignature | Self::UnknownColumn { .. } | Self::BadDeposit(_) | Self::BadPolicy(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Chain(_) => StatusCode::BAD_GATEWAY,
            Self::Store(_) | Self::KeyFile { .. } | Self::Io(_) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = strongroom_types::ApiError { code: self.code().to_owned(), message: self.to_string() };
        HttpResponse::build(self.status_code()).json(body)
    }
}
