// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

// File-level types of the Strongroom protocol v2 (/work/notes/protocol-v2.md). The Rust side
// binds them by name from the ABI of `out/Strongroom.sol/Strongroom.json`, so names, field
// order and field types are part of the interface and must not change.

/// Lifecycle of a task. `None` is the zero value, i.e. "no such task".
enum TaskStatus {
    None,
    Active,
    Completed,
    Failed,
    Refunded,
    Refused,
    Abandoned,
    HostFault
}

/// What an enclave attests of a task it was given, signed in its `Result`.
enum Outcome {
    /// The job ran; its result is sealed to the analyst. The prices are paid, the epsilon spent.
    Completed,
    /// The job was refused before any of the data was read: by the licence, or because the job,
    /// manifest, policy or keys were not the ones rented. Nothing was learnt of the data, so the
    /// dataset and app prices go back and the epsilon is released.
    Refused,
    /// The job failed while running on the data. It is settled as `Completed` is: whether a
    /// query fails can depend on the data, so a failure tells something of it, and one that cost
    /// less than a result would be a cheap probe (under differential privacy, a free one).
    Failed,
    /// The enclave was not relayed what the chain pins: the manifest, an object, the job or the
    /// policy was not the one rented (a corrupt or tampered copy, or one missing). The enclave
    /// read no data. The worker may have caused it, or its storage may have: the pool is not
    /// paid, nobody is slashed, and the analyst gets every price and the epsilon back.
    HostFault
}

enum JobKind {
    Sql,
    App
}

// `Quote.quoteType` of quotes produced by the enclave simulator. Only test
// deployments accept them; they prove nothing about real hardware.
uint8 constant QUOTE_TYPE_SIMULATED = 1;

/// What governance trusts a platform key to sign. A simulator's key vouches only for simulated
/// quotes, and only where a deployment accepts them; a hardware vendor's only for hardware ones.
enum PlatformKind {
    Untrusted,
    Simulated,
    Hardware
}

/// An attestation quote, shaped like a hardware report. The platform (hardware
/// vendor) key signs `keccak256(abi.encode(quote))` with raw secp256k1 ECDSA, type included.
/// `reportData[0]` carries the enclave's signing address in its first 20 bytes and, in its last
/// 8, the number of a recent block whose hash is `reportData[1]`: a quote is fresh for
/// `QUOTE_MAX_AGE_BLOCKS` blocks after it, so an old quote cannot renew a registration.
struct Quote {
    uint8 quoteType;
    bytes32 measurement;
    bytes32 signer;
    uint16 productId;
    uint16 svn;
    bool debug;
    bytes32[2] reportData;
}

/// A dataset owner's licence, signed off chain (EIP-712) or presigned on chain.
struct DatasetOffer {
    bytes32 dataset;
    uint256 price; // per task
    uint64 volume; // number of tasks this offer may be used for
    uint64 validFrom; // unix seconds, inclusive
    uint64 validUntil; // unix seconds, inclusive
    address requester; // zero = no single-address restriction
    bytes32 requesterRoot; // zero = no Merkle restriction (OpenZeppelin standard tree, sorted pairs)
    bool allowSql;
    bool allowApps;
    bytes32 app; // with allowApps: zero = any registered app, else only this app id
    bytes32 pool; // zero = any pool, else only this pool
    bytes32 measurement; // zero = any governance-trusted measurement, else only this one
    bytes32 policyHash; // must equal the dataset's current policyHash
    uint64 maxEpsilon; // most epsilon one task may reserve
    bytes32 salt;
}

/// A pool operator's compute offer. The pool's stake backs a task only under a key service the
/// operator named: a key service's receipt that it released a task's keys is what slashes the
/// stake when no result follows (see `Strongroom.refundReleased`), so a pool stakes only on the
/// word of key services it trusts. An offer open to any key service locks no stake.
struct PoolOffer {
    bytes32 pool;
    uint256 price;
    uint64 volume;
    uint64 maxDuration;
    uint64 validUntil; // unix seconds, inclusive
    bytes32 keyService; // zero = any key service, no stake; else only datasets sealed to this key
    bytes32 salt;
}

/// An app owner's offer; dataset/pool/requester zero = any.
struct AppOffer {
    bytes32 app;
    uint256 price;
    uint64 volume;
    bytes32 dataset;
    bytes32 pool;
    address requester;
    bytes32 salt;
}

/// What the analyst asks for, besides the offers.
struct Rental {
    bytes32 resultKey; // analyst's X25519 public key
    uint64 epsilon; // privacy cost reserved by this task
    uint256 maxPrice; // the analyst refuses to pay more than this in total
    bytes32[] requesterProof; // Merkle proof when the dataset offer has a requesterRoot
    bytes spec; // SQL text (SQL job) or app parameters (app job)
}

/// Everything about a task. Only keccak256(abi.encode(TaskParams)) is stored (with the status
/// in its low byte); the full struct is emitted in TaskCreated and passed back as calldata.
struct TaskParams {
    bytes32 dataset;
    uint64 registryVersion;
    bytes32 pool;
    bytes32 app; // zero for SQL jobs
    JobKind kind;
    address analyst;
    address datasetOwner; // payees fixed at rent
    address poolOperator;
    address appOwner; // zero for SQL jobs
    uint64 deadline;
    uint64 epsilon;
    uint128 datasetPrice;
    uint128 poolPrice;
    uint128 appPrice;
    uint128 stake; // pool stake locked by this task
    bytes32 jobHash; // keccak256(rental.spec)
    bytes32 resultKey;
    bytes32 policyHash;
    bytes32 manifestDigest; // sha256 of the dataset version's stored manifest at rent
    bytes32 measurement; // zero or the pinned enclave measurement
    bytes32 kmsKey; // the key service the task's keys come from, as the dataset named it at rent
}

/// View of a dataset (storage is packed differently, see DatasetRegistry).
struct Dataset {
    address owner;
    bool active;
    uint64 version;
    uint64 privacyBudget;
    bytes32 manifestDigest;
    bytes32 kmsKey;
    bytes32 policyHash;
    string uri;
    string kmsUrl;
}

struct App {
    address owner;
    bytes32 codeHash;
    string uri;
}

/// View of a pool (storage is packed differently, see PoolRegistry). `stake` includes
/// `locked`; `unbonding` is no longer part of `stake`.
struct Pool {
    address operator;
    uint128 stake;
    uint128 locked;
    uint128 unbonding;
    uint64 unbondingAt;
}
