//! Domain types shared by every Strongroom component.
//!
//! ```text
//!  owner ──DatasetOffer──▶ market ──▶ analyst ──rent──▶ chain ──TaskCreated──▶ worker host
//!                                                                       │
//!  key service ◀──KeyRequest (signed by the enclave) + Authorization ───┘
//!      └──sealed KeyRelease (keys + on-chain task facts)──▶ enclave ──ResultAttestation──▶ chain
//! ```
//!
//! Everything that crosses a trust boundary is defined here once: the EIP-712 messages the
//! contract and the services verify, the simulated attestation quote, the HPKE envelopes, the
//! wire types of the key service and the market, and the [`protocol`] between a worker host and
//! its enclave. The enclave links this crate, so it holds no network, storage or chain code.

mod api;
mod attestation;
mod error;
mod keys;
mod messages;
mod policy;
pub mod protocol;
mod seal;
mod url;
mod versions;

pub use api::{
    ApiError, AuditEntry, AuditLogRequest, DepositRequest, DepositResponse, FailureCode, KmsInfo, OfferKind,
    PolicyResponse, PostOfferRequest, ReleaseReceipt, ReleaseRequest, ReleaseResponse, ResultPayload, SignedOffer,
};
pub use attestation::{
    QUOTE_TYPE_SIMULATED, Quote, RecentBlock, enclave_address, quote_digest, quoted_block, report_data_for,
};
pub use error::{Error, Result};
pub use keys::{DatasetKeys, JobKind, KeyId, KeyRelease, SecretKey32, TaskFacts};
pub use messages::{
    AppOffer, AuditRequest, Authorization, DatasetOffer, Deposit, KeyRequest, KeyService, Outcome, PoolOffer, Released,
    ResultAttestation, address_of, canonical_signature, domain, job_hash, random_salt, recover_typed, sign_hash,
    sign_typed,
};
pub use policy::{
    AggregateFunction, Aggregation, ColumnRule, DifferentialPrivacy, POLICY_VERSION, Policy, Role, Template,
    TemplateParameter,
};
pub use seal::{
    INFO_BACKUP, INFO_DEPOSIT, INFO_RELEASE, INFO_RESULT, SealedBox, X25519PublicKey, X25519SecretKey, key_set_aad,
    open, open_from, seal, seal_from,
};
pub use url::StorageUrl;
pub use versions::{DataVersion, ManifestDigest, RegistryVersion};

/// Dataset ids are `keccak256(abi.encode(owner, salt))`, computed by the contract.
pub type DatasetId = alloy_primitives::B256;
/// Pool ids are `keccak256(abi.encode(operator, salt))`, computed by the contract.
pub type PoolId = alloy_primitives::B256;
/// Task ids are sequential, starting at 1.
pub type TaskId = alloy_primitives::U256;
