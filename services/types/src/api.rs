//! JSON wire types of the key service and the market.

use alloy_primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize};

use crate::{AppOffer, DatasetOffer, KeyId, ManifestDigest, PoolOffer, SealedBox, X25519PublicKey};

/// The JSON body of every refusal by the key service or the market: a stable machine-readable
/// code and a sentence for people. The servers emit it and the clients decode it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    #[serde(rename = "error")]
    pub code: String,
    pub message: String,
}

/// `GET /v1/info` of a key service.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KmsInfo {
    /// The sealing key deposits are sealed to and releases are sealed from.
    pub public_key: X25519PublicKey,
    pub chain_id: u64,
    pub contract: Address,
    /// The Ethereum key the service signs its receipts with.
    pub signer: Address,
    /// `signer`'s EIP-712 `KeyService{sealingKey: public_key}`, which anyone may post to
    /// `registerKeyService`.
    pub registration: Bytes,
}

/// A key service's signed word that it released a task's keys to an enclave: EIP-712
/// `Released{taskId, enclave}` by its registered signer. Past the task's deadline anyone may post
/// it to `refundReleased`, which pays the owners and slashes the pool that did not deliver.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseReceipt {
    pub task_id: U256,
    pub enclave: Address,
    pub signature: Bytes,
    /// The pool operator's EIP-712 `Authorization{taskId, enclave}` the release was asked with:
    /// `refundReleased` checks it, so a key service cannot slash a pool that never asked. Empty
    /// when the operator (a contract wallet) presigned it on chain, where `refundReleased` finds it.
    pub authorization: Bytes,
}

/// `POST /v1/deposits`: keys sealed to the key service, signed by the dataset owner.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DepositRequest {
    pub dataset: B256,
    /// The data version these keys encrypt: the key service releases them to tasks rented
    /// against that manifest only.
    pub manifest_digest: ManifestDigest,
    pub sealed_keys: SealedBox,
    /// The licence policy file; its keccak256 must match the policy hash a task was rented under.
    pub policy: String,
    /// Unix time after which the key service refuses this deposit: an hour from signing at most.
    pub not_after: u64,
    /// EIP-712 `Deposit{dataset, manifestDigest, keysDigest = keccak256(sealed_keys), policyHash,
    /// notAfter}` by the dataset owner.
    pub owner_signature: Bytes,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DepositResponse {
    pub dataset: B256,
    pub manifest_digest: ManifestDigest,
    pub depositor: Address,
    pub key_ids: Vec<KeyId>,
    /// The chain has not recorded this data version and policy for the depositor yet (a rotation
    /// deposits before it updates the dataset): the key service keeps one such deposit per dataset
    /// and depositor, and the next replaces it unless the chain has recorded this one by then.
    #[serde(default)]
    pub staged: bool,
}

/// `GET /v1/policies/{hash}`: a deposited licence policy; its keccak256 is the hash asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyResponse {
    pub policy: String,
}

/// `POST /v1/releases`: the enclave's signed key request, relayed by its host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub task_id: U256,
    pub enclave: Address,
    pub task_key: X25519PublicKey,
    /// Columns the task's plan reads (possibly none); the service releases those the policy grants.
    pub columns: Vec<String>,
    /// EIP-712 `KeyRequest{taskId, taskKey, columns}` by the enclave key.
    pub enclave_signature: Bytes,
    /// EIP-712 `Authorization{taskId, enclave}` by the pool operator.
    pub authorization: Bytes,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReleaseResponse {
    /// A [`crate::KeyRelease`] sealed to the task key with [`crate::INFO_RELEASE`].
    pub sealed_release: SealedBox,
    pub receipt: ReleaseReceipt,
}

/// `POST /v1/audit`: a dataset's audit log, asked for by its owner (EIP-712 `AuditRequest`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditLogRequest {
    pub dataset: B256,
    /// The sealing key of the key service asked (as the chain records key services).
    pub key_service: B256,
    /// Unix seconds after which the signature is refused; at most an hour ahead.
    pub not_after: u64,
    /// Only this task's rows.
    pub task_id: Option<U256>,
    /// EIP-712 `AuditRequest{dataset, keyService, notAfter}` by the dataset's owner on chain.
    pub signature: Bytes,
}

/// One row of a key service's audit log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub task_id: U256,
    pub dataset: B256,
    pub enclave: Address,
    pub key_ids: Vec<KeyId>,
    pub released_at: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OfferKind {
    Dataset,
    Pool,
    App,
}

/// `POST /v1/offers`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PostOfferRequest {
    Dataset {
        offer: DatasetOffer,
        signature: Bytes,
        /// The allow-list behind `offer.requesterRoot`, so analysts can build their proofs.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        requesters: Vec<Address>,
    },
    Pool {
        offer: PoolOffer,
        signature: Bytes,
    },
    App {
        offer: AppOffer,
        signature: Bytes,
    },
}

/// An offer as the market lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignedOffer {
    Dataset {
        offer: DatasetOffer,
        signature: Bytes,
        signer: Address,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        requesters: Vec<Address>,
    },
    Pool {
        offer: PoolOffer,
        signature: Bytes,
        signer: Address,
    },
    App {
        offer: AppOffer,
        signature: Bytes,
        signer: Address,
    },
}

/// What the enclave seals to the analyst: the result table or the reason the task failed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ResultPayload {
    /// The result as an Arrow IPC stream.
    Table {
        arrow_ipc: Bytes,
        rows: u64,
        /// What the licence did to the query, in words: the threshold, the clamping, the noise
        /// and how the epsilon was split.
        #[serde(default)]
        licence: Vec<String>,
    },
    /// An attested failure: bad SQL, a manifest or object digest mismatch, a decryption error.
    Failed { code: FailureCode, message: String },
}

/// Why a task failed inside the enclave, as a stable code (the message says it in words).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The manifest the worker relayed is not the one the task was rented against.
    ManifestMismatch,
    /// The manifest registered on chain does not hold together.
    BadManifest,
    /// The worker relayed too few or too many objects, or one whose sha256 is not the manifest's,
    /// or the manifest's own objects do not decrypt or parse.
    BadObjects,
    /// The job relayed is not the one rented, or not the one the keys were requested for.
    JobMismatch,
    /// This enclave does not run this kind of job.
    UnsupportedJob,
    /// The licence policy withholds a column the query reads.
    PolicyDenied,
    /// The query breaks a rule of the licence (the message names the rule, column and fragment).
    PolicyViolation,
    /// The policy the worker relayed is not the one the task was rented under.
    PolicyMismatch,
    /// The key service did not release a key the query needs.
    KeyMissing,
    /// The query is not valid: it does not parse or names what the dataset does not have.
    Query,
    /// The query failed while running on the data: the task is paid and its epsilon spent.
    Running,
}
