//! EIP-712 messages, mirrored byte for byte by `contracts/src/Strongroom.sol`.
//!
//! Offers, authorizations and result attestations are checked by the contract; key requests
//! and deposits are checked off chain by the key service under the same domain, so a signature
//! made for one deployment or chain is worthless on another.

use alloy_primitives::{Address, B256, keccak256};
use alloy_sol_types::sol;
use alloy_sol_types::{Eip712Domain, eip712_domain};

sol! {
    /// A dataset owner's licence offer: price, volume, validity and who may use it for what.
    #[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct DatasetOffer {
        bytes32 dataset;
        uint256 price;
        uint64 volume;
        uint64 validFrom;
        uint64 validUntil;
        address requester;
        bytes32 requesterRoot;
        bool allowSql;
        bool allowApps;
        bytes32 app;
        bytes32 pool;
        bytes32 measurement;
        bytes32 policyHash;
        uint64 maxEpsilon;
        bytes32 salt;
    }

    /// A pool operator's compute offer. With `keyService` set (a key service's sealing key) it
    /// serves only datasets of that key service and stakes on its receipts; zero serves any
    /// key service and locks no stake.
    #[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct PoolOffer {
        bytes32 pool;
        uint256 price;
        uint64 volume;
        uint64 maxDuration;
        uint64 validUntil;
        bytes32 keyService;
        bytes32 salt;
    }

    /// An app developer's offer of a registered WASM app.
    #[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct AppOffer {
        bytes32 app;
        uint256 price;
        uint64 volume;
        bytes32 dataset;
        bytes32 pool;
        address requester;
        bytes32 salt;
    }

    /// The pool operator assigns a task to one of its enclaves (off chain, no transaction).
    #[derive(Debug, PartialEq, Eq)]
    struct Authorization {
        uint256 taskId;
        address enclave;
    }

    /// The enclave's key request: the fresh X25519 key the task's keys are sealed to, and the
    /// columns the task's query plan reads.
    #[derive(Debug, PartialEq, Eq)]
    struct KeyRequest {
        uint256 taskId;
        bytes32 taskKey;
        string[] columns;
    }

    /// A key service binds its sealing key to the Ethereum key that signs its receipts
    /// (`registerKeyService`).
    #[derive(Debug, PartialEq, Eq)]
    struct KeyService {
        bytes32 sealingKey;
    }

    /// A dataset owner's request for its dataset's audit log at the key service of sealing key
    /// `keyService`, good until `notAfter` (unix seconds): the log says which tasks ran when,
    /// which is the owner's alone. Naming the key service keeps one that was asked from
    /// replaying the request at another.
    #[derive(Debug, PartialEq, Eq)]
    struct AuditRequest {
        bytes32 dataset;
        bytes32 keyService;
        uint64 notAfter;
    }

    /// A key service's receipt: it released the task's keys to this enclave. Past the task's
    /// deadline it settles the task as abandoned by the pool (`refundReleased`).
    #[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct Released {
        uint256 taskId;
        address enclave;
    }

    /// The dataset owner vouches for the sealed keys deposited with a key service: the keys of
    /// the data version whose manifest digest is `manifestDigest`, granted by the licence policy
    /// whose keccak256 is `policyHash` (so nobody can re-post the deposit under another policy),
    /// good until unix time `notAfter` (so a deposit seen on its way cannot be posted again later,
    /// to replace the deposit a rotation staged).
    #[derive(Debug, PartialEq, Eq)]
    struct Deposit {
        bytes32 dataset;
        bytes32 manifestDigest;
        bytes32 keysDigest;
        bytes32 policyHash;
        uint64 notAfter;
    }
}

// The type name is `Result` on chain; it lives in its own module so it does not shadow
// `std::result::Result` here.
mod attestation_message {
    alloy_sol_types::sol! {
        /// The enclave attests the digest of the sealed result (or of the sealed failure) and
        /// where it is stored, so nobody can replay the submission with another location.
        #[derive(Debug, PartialEq, Eq)]
        struct Result {
            uint256 taskId;
            bytes32 digest;
            uint8 outcome;
            /// The key service whose sealed release the enclave opened (its sender, authenticated).
            bytes32 keyService;
            string location;
        }
    }
}
pub use attestation_message::Result as ResultAttestation;

/// What an enclave attests of a task it was given: `Outcome` on chain, which settles the task
/// by it. The numbers are the contract's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The job ran and its result is sealed to the analyst: the prices are paid, the epsilon spent.
    Completed = 0,
    /// The job was refused before any of the data was read: the dataset and app prices go back
    /// and the epsilon is released, since nothing was learnt.
    Refused = 1,
    /// The job failed while running on the data: settled as `Completed` (prices paid, epsilon
    /// spent), since whether a query fails can depend on the data, and a failure that cost less
    /// than a result would be a cheap probe of it.
    Failed = 2,
    /// The worker did not relay what the chain pins (the manifest, an object, the job or the
    /// policy was another, or missing): no data was read. The worker or the storage caused it,
    /// so neither earns: the pool is not paid, nobody is slashed, the analyst gets every price
    /// and the epsilon back.
    HostFault = 3,
}

impl Outcome {
    /// The contract's encoding.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The contract's encoding read back; `None` for a value the contract does not define.
    pub fn from_u8(value: u8) -> Option<Self> {
        [Self::Completed, Self::Refused, Self::Failed, Self::HostFault].into_iter().find(|o| o.as_u8() == value)
    }

    /// Whether a result table was released (the others seal a failure report).
    pub fn completed(self) -> bool {
        self == Self::Completed
    }
}

/// The signing domain of one Strongroom deployment.
pub fn domain(chain_id: u64, contract: Address) -> Eip712Domain {
    eip712_domain! {
        name: "Strongroom",
        version: "2",
        chain_id: chain_id,
        verifying_contract: contract,
    }
}

/// The job hash recorded on chain for an SQL task: `keccak256(bytes(sql))`.
pub fn job_hash(sql: &str) -> B256 {
    keccak256(sql.as_bytes())
}

/// Signs an EIP-712 message; the 65-byte `r || s || v` form the contract and services accept.
/// A `PrivateKeySigner` signs with its `credential()`.
pub fn sign_typed<T: alloy_sol_types::SolStruct>(
    key: &k256::ecdsa::SigningKey,
    message: &T,
    domain: &Eip712Domain,
) -> alloy_primitives::Bytes {
    sign_hash(key, &message.eip712_signing_hash(domain))
}

/// Signs a 32-byte hash (recoverable ECDSA over secp256k1, as Ethereum verifies it).
pub fn sign_hash(key: &k256::ecdsa::SigningKey, hash: &B256) -> alloy_primitives::Bytes {
    let (signature, recovery) = key.sign_prehash_recoverable(hash.as_slice()).expect("a 32-byte prehash signs");
    let signature = alloy_primitives::Signature::from_signature_and_parity(signature, recovery.is_y_odd());
    signature.as_bytes().to_vec().into()
}

/// The Ethereum address of a secp256k1 key.
pub fn address_of(key: &k256::ecdsa::SigningKey) -> Address {
    Address::from_private_key(key)
}

/// Recovers the signer of an EIP-712 message, or `None` if the signature is malformed.
pub fn recover_typed<T: alloy_sol_types::SolStruct>(
    message: &T,
    domain: &Eip712Domain,
    signature: &[u8],
) -> Option<Address> {
    let sig = alloy_primitives::Signature::from_raw(signature).ok()?;
    sig.recover_address_from_prehash(&message.eip712_signing_hash(domain)).ok()
}

/// The same signature in the one form the contract accepts (low s, v of 27 or 28), or `None`
/// if it is malformed. Recovery here accepts high-s and other v encodings that OpenZeppelin's
/// `ECDSA` refuses, so a signature kept to be posted on chain later is kept in this form: an
/// operator cannot hand over one that verifies here and fails there.
pub fn canonical_signature(signature: &[u8]) -> Option<alloy_primitives::Bytes> {
    let sig = alloy_primitives::Signature::from_raw(signature).ok()?.normalized_s();
    Some(sig.as_bytes().to_vec().into())
}

/// A fresh random 32-byte salt (dataset ids, pool ids, offer salts).
pub fn random_salt() -> B256 {
    B256::from(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_high_s_signature_is_kept_in_the_form_the_contract_accepts() {
        use alloy_primitives::U256;
        let key = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let hash = B256::repeat_byte(3);
        let low = alloy_primitives::Signature::from_raw(&sign_hash(&key, &hash)).unwrap();
        // The same signature with s' = n - s and the other parity: valid, but refused on chain.
        let n = U256::from_str_radix("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", 16).unwrap();
        let high = alloy_primitives::Signature::new(low.r(), n - low.s(), !low.v());
        assert_eq!(high.recover_address_from_prehash(&hash).unwrap(), address_of(&key));
        let canonical = canonical_signature(&high.as_bytes()).unwrap();
        assert_eq!(canonical.as_ref(), sign_hash(&key, &hash).as_ref());
        assert_eq!(canonical_signature(&[0u8; 10]), None);
    }
}
