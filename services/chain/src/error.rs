use alloy::primitives::{Address, B256, U256};
use thiserror::Error;

use crate::Strongroom::StrongroomErrors;

pub type Result<T, E = ChainError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum ChainError {
    // The caller's input, as judged by the contract.
    #[error("{sentence}")]
    Reverted { name: &'static str, sentence: String },
    #[error("no contract at {0}: check the contract address (was the devnet restarted?)")]
    NoContract(Address),
    // The environment.
    #[error("chain RPC at {url}: {reason}")]
    Rpc { url: String, reason: String },
    #[error("transaction {0} was mined but reverted without a reason")]
    Failed(B256),
    #[error("devnode: {0}")]
    DevNode(String),
    // Our own bug.
    #[error("internal: expected event {0} in the receipt")]
    MissingEvent(&'static str),
}

impl ChainError {
    /// The custom error's name, for tests and machine output.
    pub fn revert_name(&self) -> Option<&'static str> {
        match self {
            Self::Reverted { name, .. } => Some(name),
            _ => None,
        }
    }

    pub(crate) fn from_contract(url: &str, e: alloy::contract::Error) -> Self {
        if let Some(decoded) = e.as_decoded_interface_error::<StrongroomErrors>() {
            let (name, sentence) = describe_revert(&decoded);
            return Self::Reverted { name, sentence };
        }
        Self::Rpc { url: url.to_owned(), reason: e.to_string() }
    }
}

fn when(ts: u64) -> String {
    format!("unix time {ts}")
}

fn status_word(status: u8) -> &'static str {
    match status {
        0 => "unknown",
        1 => "active",
        2 => "completed",
        3 => "failed",
        4 => "refunded",
        _ => "in an unknown state",
    }
}

fn eth(wei: U256) -> String {
    alloy::primitives::utils::format_ether(wei) + " ETH"
}

/// Each custom error of the contract as a sentence a person can act on.
pub fn describe_revert(e: &StrongroomErrors) -> (&'static str, String) {
    use StrongroomErrors as E;
    match e {
        E::SimulatedQuoteRefused(_) => {
            ("SimulatedQuoteRefused", "this deployment refuses simulated enclave quotes; run a real TEE".into())
        }
        E::InvalidPlatformSignature(_) => {
            ("InvalidPlatformSignature", "the quote's platform signature is malformed".into())
        }
        E::UntrustedPlatform(x) => {
            ("UntrustedPlatform", format!("platform key {} is not trusted by governance", x.platformKey))
        }
        E::UntrustedMeasurement(x) => {
            ("UntrustedMeasurement", format!("enclave measurement {} is not trusted by governance", x.measurement))
        }
        E::DebugEnclave(_) => ("DebugEnclave", "debug enclaves cannot be registered".into()),
        E::BadReportData(_) => ("BadReportData", "the quote's report data binds no enclave address".into()),
        E::DatasetExists(x) => {
            ("DatasetExists", format!("dataset {} is already registered; publish with another salt", x.id))
        }
        E::PoolExists(x) => ("PoolExists", format!("pool {} is already registered", x.id)),
        E::UnknownDataset(x) => ("UnknownDataset", format!("dataset {} is not registered", x.id)),
        E::UnknownPool(x) => ("UnknownPool", format!("pool {} is not registered", x.id)),
        E::InvalidDatasetOfferSignature(_) => {
            ("InvalidDatasetOfferSignature", "the dataset offer is not signed by the dataset's owner".into())
        }
        E::InvalidPoolOfferSignature(_) => {
            ("InvalidPoolOfferSignature", "the pool offer is not signed by the pool's operator".into())
        }
        E::OfferExpired(x) => ("OfferExpired", format!("the dataset offer expired at {}", when(x.validUntil))),
        E::EmptyJob(_) => ("EmptyJob", "the job is empty: give an SQL query".into()),
        E::InsufficientPayment(x) => {
            ("InsufficientPayment", format!("the rental costs {} but {} was sent", eth(x.required), eth(x.sent)))
        }
        E::UnknownTask(x) => ("UnknownTask", format!("task {} does not exist", x.taskId)),
        E::TaskNotActive(x) => ("TaskNotActive", format!("task {} is {}, not active", x.taskId, status_word(x.status))),
        E::DeadlinePassed(x) => {
            ("DeadlinePassed", format!("task {}'s deadline passed at {}", x.taskId, when(x.deadline)))
        }
        E::DeadlineNotReached(x) => (
            "DeadlineNotReached",
            format!("task {} can be refunded only after its deadline, {}", x.taskId, when(x.deadline)),
        ),
        E::InvalidEnclaveSignature(_) => {
            ("InvalidEnclaveSignature", "the result's enclave signature is malformed".into())
        }
        E::EnclaveNotActive(x) => (
            "EnclaveNotActive",
            format!("enclave {} is not registered, has expired, or its measurement is no longer trusted", x.enclave),
        ),
        E::NotAuthorized(x) => (
            "NotAuthorized",
            format!("the pool operator did not authorize enclave {} for task {}", x.enclave, x.taskId),
        ),
        E::NothingToWithdraw(_) => ("NothingToWithdraw", "there is nothing to withdraw".into()),
        E::WithdrawFailed(_) => ("WithdrawFailed", "the withdrawal transfer was rejected by the receiver".into()),
        #[allow(unreachable_patterns)]
        other => ("Unknown", format!("the contract reverted: {other:?}")),
    }
}
