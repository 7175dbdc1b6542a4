//! Dataset key material and the payload a key service releases to an enclave.

use std::collections::BTreeMap;

use alloy_primitives::{B256, U256};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit AES key, wiped when dropped and never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct SecretKey32(#[serde(with = "hex_key")] [u8; 32]);

impl SecretKey32 {
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self(key)
    }

    /// The raw key, for handing to the parquet crate. Never log it.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey32(..)")
    }
}

mod hex_key {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        // Wiped on drop, like the key it encodes.
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// The id of one key of a dataset, as manifests, Parquet key metadata and the audit log name
/// it: `footer`, or `column:<name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// The footer key's id.
    pub fn footer() -> Self {
        Self("footer".into())
    }

    /// The id of the key of column `name`.
    pub fn column(name: &str) -> Self {
        Self(format!("column:{name}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for KeyId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// What a task runs: an SQL query or a registered WASM app (the contract's `JobKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Sql,
    App,
}

impl TryFrom<u8> for JobKind {
    type Error = crate::Error;

    /// The contract's encoding: 0 for SQL, 1 for an app.
    fn try_from(value: u8) -> crate::Result<Self> {
        match value {
            0 => Ok(Self::Sql),
            1 => Ok(Self::App),
            other => Err(crate::Error::Malformed {
                what: "job kind",
                reason: format!("{other} is neither 0 (SQL) nor 1 (app)"),
            }),
        }
    }
}

impl From<JobKind> for u8 {
    fn from(kind: JobKind) -> u8 {
        match kind {
            JobKind::Sql => 0,
            JobKind::App => 1,
        }
    }
}

/// The keys of one dataset version: a footer key and one key per column, by column name.
///
/// Every column has a key: the parquet crate writes a column without a key in plaintext.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatasetKeys {
    pub footer: Option<SecretKey32>,
    pub columns: BTreeMap<String, SecretKey32>,
}

impl DatasetKeys {
    /// Fresh random keys for the given columns.
    pub fn generate<'a>(columns: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            footer: Some(SecretKey32::generate()),
            columns: columns.into_iter().map(|c| (c.to_owned(), SecretKey32::generate())).collect(),
        }
    }

    /// Key ids as the audit log records them: `footer` and `column:<name>`.
    pub fn key_ids(&self) -> Vec<KeyId> {
        let footer = self.footer.iter().map(|_| KeyId::footer());
        footer.chain(self.columns.keys().map(|c| KeyId::column(c))).collect()
    }

    /// The JSON form, in a buffer wiped when dropped.
    pub fn to_json(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(serde_json::to_vec(self).expect("keys serialize"))
    }
}

/// The task's facts as recorded on chain, carried inside the sealed release so the enclave
/// never takes them from the untrusted host.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskFacts {
    pub chain_id: u64,
    pub contract: alloy_primitives::Address,
    pub task_id: U256,
    pub dataset: B256,
    pub job_kind: JobKind,
    pub job_hash: B256,
    pub result_key: B256,
    pub policy_hash: B256,
    /// The data version rented: the digest of its manifest, which lists every object's sha256.
    pub manifest_digest: crate::ManifestDigest,
    pub deadline: u64,
    /// The privacy cost reserved for the task, in micro-epsilon: the noise is calibrated to it.
    pub epsilon: u64,
}

/// What a key service seals to an enclave's task key.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyRelease {
    pub facts: TaskFacts,
    /// The footer key and the keys of the requested columns the policy grants.
    pub keys: DatasetKeys,
    /// Requested columns the policy does not grant: the task must fail, naming them.
    pub withheld: Vec<String>,
}
