use alloy::primitives::{Address, B256, U256};
use thiserror::Error;

use crate::Strongroom::StrongroomErrors;

pub type Result<T, E = ChainError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum ChainError {
    // The caller's input, as judged by the contract: the decoded custom error, and it in words.
    #[error("{sentence}")]
    Reverted { error: Box<StrongroomErrors>, sentence: String },
    #[error("no contract at {0}: check the contract address (was the devnet restarted?)")]
    NoContract(Address),
    // The environment.
    #[error("chain RPC at {url}: {reason}")]
    Rpc { url: String, reason: String },
    #[error("transaction {0} was mined but reverted without a reason")]
    Failed(B256),
    #[error(
        "task {0}'s TaskCreated event does not match the commitment stored on chain: the RPC node is lying or broken"
    )]
    CommitmentMismatch(U256),
    // The local index of the chain's events.
    #[error("the chain index {0}")]
    Index(String),
    // Our own bug.
    #[error("internal: expected event {0} in the receipt")]
    MissingEvent(&'static str),
}

impl ChainError {
    /// The contract's custom error, decoded with its arguments, if the call reverted with one.
    pub fn revert(&self) -> Option<&StrongroomErrors> {
        match self {
            Self::Reverted { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The custom error's name, for machine output.
    pub fn revert_name(&self) -> Option<&'static str> {
        self.revert().map(|e| describe_revert(e).0)
    }

    pub(crate) fn from_contract(url: &str, e: alloy::contract::Error) -> Self {
        if let Some(decoded) = e.as_decoded_interface_error::<StrongroomErrors>() {
            let (_, sentence) = describe_revert(&decoded);
            return Self::Reverted { error: Box::new(decoded), sentence };
        }
        Self::Rpc { url: url.to_owned(), reason: e.to_string() }
    }
}

fn when(ts: u64) -> String {
    crate::format_utc(ts)
}

fn eth(wei: U256) -> String {
    alloy::primitives::utils::format_ether(wei) + " ETH"
}

fn epsilon(micro: u64) -> String {
    format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

fn status_word(status: u8) -> &'static str {
    crate::TaskStatus::from_u8(status).describe()
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
        E::SimulatedPlatformRefused(x) => (
            "SimulatedPlatformRefused",
            format!("this deployment refuses simulated quotes, so it cannot trust simulator platform key {}", x.key),
        ),
        E::PlatformKindMismatch(x) => (
            "PlatformKindMismatch",
            match x.quoteType {
                strongroom_types::QUOTE_TYPE_SIMULATED => format!(
                    "platform key {} is trusted for hardware quotes only, not for this simulated one",
                    x.platformKey
                ),
                _ => format!(
                    "platform key {} is trusted for simulated quotes only, not for this hardware one",
                    x.platformKey
                ),
            },
        ),
        E::StaleQuote(x) => (
            "StaleQuote",
            format!(
                "the quote names block {} and the chain is at block {}: a quote is good for 256 blocks after the block it names (and only a past block's hash counts); ask the enclave for a fresh one",
                x.quotedBlock, x.currentBlock
            ),
        ),
        E::UntrustedEnclaveIdentity(x) => (
            "UntrustedEnclaveIdentity",
            format!(
                "the enclave reports author {}, product {} and security version {}, which are not the author and \
                 product governance trusts or are below its least version (see `enclaveIdentity`): upgrade the enclave \
                 or ask governance",
                x.signer, x.productId, x.svn
            ),
        ),
        E::DatasetExists(x) => {
            ("DatasetExists", format!("dataset {} is already registered; publish with another salt", x.id))
        }
        E::UnknownDataset(x) => ("UnknownDataset", format!("dataset {} is not registered", x.id)),
        E::DatasetInactive(x) => {
            ("DatasetInactive", format!("dataset {} is deactivated by its owner and cannot be rented", x.id))
        }
        E::NotDatasetOwner(x) => ("NotDatasetOwner", format!("{} does not own dataset {}", x.caller, x.id)),
        E::BudgetDecrease(x) => (
            "BudgetDecrease",
            format!(
                "the privacy budget can only be raised: it is {}, not lowered to {}",
                epsilon(x.current),
                epsilon(x.requested)
            ),
        ),
        E::AppExists(x) => ("AppExists", format!("app {} is already registered", x.id)),
        E::UnknownApp(x) => ("UnknownApp", format!("app {} is not registered", x.id)),
        E::NotAppOwner(x) => ("NotAppOwner", format!("{} does not own app {}", x.caller, x.id)),
        E::PoolExists(x) => ("PoolExists", format!("pool {} is already registered", x.id)),
        E::UnknownPool(x) => ("UnknownPool", format!("pool {} is not registered", x.id)),
        E::NotPoolOperator(x) => ("NotPoolOperator", format!("{} does not operate pool {}", x.caller, x.id)),
        E::InsufficientStake(x) => (
            "InsufficientStake",
            format!(
                "pool {} has {} of free stake, but the task must lock {}",
                x.pool,
                eth(x.available),
                eth(x.required)
            ),
        ),
        E::UnbondingNotOver(x) => {
            ("UnbondingNotOver", format!("pool {}'s stake unbonds at {}", x.pool, when(x.unbondingAt)))
        }
        E::NothingUnbonding(x) => ("NothingUnbonding", format!("pool {} has no stake unbonding", x.pool)),
        E::InvalidSignature(x) => ("InvalidSignature", format!("offer {} is not signed by {}", x.offerHash, x.signer)),
        E::OfferNotYetValid(x) => ("OfferNotYetValid", format!("the offer is valid only from {}", when(x.validFrom))),
        E::OfferExpired(x) => ("OfferExpired", format!("offer expired at {}", when(x.validUntil))),
        E::OfferVolumeExhausted(x) => (
            "OfferVolumeExhausted",
            format!("offer {} is used up: all {} tasks of its volume are taken", x.offerHash, x.volume),
        ),
        E::OfferAlreadyCancelled(x) => ("OfferAlreadyCancelled", format!("offer {} is already cancelled", x.offerHash)),
        E::RequesterNotAllowed(x) => ("RequesterNotAllowed", format!("the offer does not allow {} to rent", x.analyst)),
        E::SqlNotAllowed(_) => ("SqlNotAllowed", "the licence does not allow SQL jobs on this dataset".into()),
        E::AppNotAllowed(x) => ("AppNotAllowed", format!("the licence does not allow app {}", x.app)),
        E::PoolNotAllowed(x) => ("PoolNotAllowed", format!("the offer does not allow pool {}", x.pool)),
        E::DatasetNotAllowed(x) => ("DatasetNotAllowed", format!("the app offer does not allow dataset {}", x.dataset)),
        E::PolicyMismatch(x) => (
            "PolicyMismatch",
            format!("the offer was signed for policy {} but the dataset's policy is now {}", x.offered, x.current),
        ),
        E::EpsilonAboveOfferMax(x) => (
            "EpsilonAboveOfferMax",
            format!(
                "the task asks for epsilon {} but the offer allows at most {}",
                epsilon(x.epsilon),
                epsilon(x.maxEpsilon)
            ),
        ),
        E::PrivacyBudgetExhausted(x) => (
            "PrivacyBudgetExhausted",
            format!(
                "privacy budget exhausted: {} may spend epsilon {} more on dataset {}, not {}",
                x.analyst,
                epsilon(x.remaining),
                x.dataset,
                epsilon(x.requested)
            ),
        ),
        E::PriceAboveMaximum(x) => (
            "PriceAboveMaximum",
            format!("the rental costs {}, above your maximum of {}", eth(x.price), eth(x.maxPrice)),
        ),
        E::InsufficientPayment(x) => {
            ("InsufficientPayment", format!("the rental costs {} but {} was sent", eth(x.required), eth(x.sent)))
        }
        E::PriceTooLarge(x) => ("PriceTooLarge", format!("price {} wei does not fit in 128 bits", x.price)),
        E::UnknownTask(x) => ("UnknownTask", format!("task {} does not exist", x.taskId)),
        E::TaskMismatch(x) => {
            ("TaskMismatch", format!("the parameters given for task {} are not the ones committed at rent", x.taskId))
        }
        E::TaskNotActive(x) => ("TaskNotActive", format!("task {} is {}, not active", x.taskId, status_word(x.status))),
        E::DeadlinePassed(x) => {
            ("DeadlinePassed", format!("task {}'s deadline passed at {}", x.taskId, when(x.deadline)))
        }
        E::DeadlineNotReached(x) => (
            "DeadlineNotReached",
            format!("task {} can be refunded only after its deadline, {}", x.taskId, when(x.deadline)),
        ),
        E::ClaimWindowOpen(x) => (
            "ClaimWindowOpen",
            format!(
                "task {} can be refunded without a key service's receipt only after {}: until then its key service may still show it released the keys",
                x.taskId,
                when(x.until)
            ),
        ),
        E::InvalidReleaseReceipt(x) => (
            "InvalidReleaseReceipt",
            format!(
                "the receipt is not the task's key service's word that it released task {}'s keys to enclave {}",
                x.taskId, x.enclave
            ),
        ),
        E::KeyServiceNotAllowed(x) => (
            "KeyServiceNotAllowed",
            format!(
                "the pool offer serves only datasets of key service {}, and this dataset's is {}",
                x.required, x.keyService
            ),
        ),
        E::KeyServiceExists(x) => (
            "KeyServiceExists",
            format!("key service key {} is already registered, to signer {}", x.sealingKey, x.signer),
        ),
        E::InvalidKeyServiceSignature(x) => (
            "InvalidKeyServiceSignature",
            format!("the registration of key service key {} is not validly signed", x.sealingKey),
        ),
        E::InvalidEnclaveSignature(_) => {
            ("InvalidEnclaveSignature", "the result's enclave signature is malformed".into())
        }
        E::EnclaveNotActive(x) => (
            "EnclaveNotActive",
            format!("enclave {} is not registered, has expired, or its measurement is no longer trusted", x.enclave),
        ),
        E::MeasurementNotAllowed(x) => (
            "MeasurementNotAllowed",
            format!("the licence pins another enclave measurement than {}'s {}", x.enclave, x.measurement),
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
