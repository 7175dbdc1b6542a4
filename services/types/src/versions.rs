//! What names a dataset version, and which counter counts what.
//!
//! A dataset has two counters that are easy to confuse: its **data version** counts the
//! encryptions of its content (a key rotation makes a new one; it is bound into every object's
//! AAD) and its **registry version** counts the on-chain updates of its record (a moved key
//! service or a new policy makes a new one without touching the data). The content of a data
//! version is named by its [`ManifestDigest`], the one value the chain, the key service and the
//! enclave compare.

use std::fmt;
use std::str::FromStr;

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The sha256 of a data version's stored manifest, which in turn lists the sha256 of every
/// object: `manifestDigest` on chain, `manifest_digest` on the wire and in the enclave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ManifestDigest(B256);

impl ManifestDigest {
    pub const fn new(digest: B256) -> Self {
        Self(digest)
    }

    /// The digest of a manifest as stored (its exact bytes).
    pub fn of(stored: &[u8]) -> Self {
        Self(B256::from(<[u8; 32]>::from(Sha256::digest(stored))))
    }

    /// The value as the contract stores it.
    pub const fn to_b256(self) -> B256 {
        self.0
    }

    pub fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl fmt::Display for ManifestDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ManifestDigest {
    type Err = <B256 as FromStr>::Err;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        B256::from_str(s).map(Self)
    }
}

/// Counts the encryptions of a dataset's content: 1 at publish, one more per key rotation. It is
/// bound into every object's AAD, so an object of one version cannot pass for another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct DataVersion(u64);

impl TryFrom<u64> for DataVersion {
    type Error = crate::Error;

    fn try_from(version: u64) -> crate::Result<Self> {
        match version {
            0 => Err(crate::Error::Malformed { what: "data version", reason: "0 (versions count from 1)".into() }),
            _ => Ok(Self(version)),
        }
    }
}

impl From<DataVersion> for u64 {
    fn from(version: DataVersion) -> Self {
        version.0
    }
}

impl DataVersion {
    /// The version a dataset is published at.
    pub const FIRST: Self = Self(1);

    pub const fn new(version: u64) -> Self {
        Self(version)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version a rotation writes; `None` past the last one (only a forged manifest gets there).
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }

    /// The storage segment of this version's objects (`v1`, `v2`, …).
    pub fn dir_name(self) -> String {
        format!("v{}", self.0)
    }
}

impl fmt::Display for DataVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Counts the on-chain updates of a dataset's record: 1 at registration, one more per
/// `updateDataset` (a rotation, a moved key service, a new policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegistryVersion(u64);

impl RegistryVersion {
    pub const fn new(version: u64) -> Self {
        Self(version)
    }
}

impl fmt::Display for RegistryVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_digest_is_the_sha256_of_the_stored_bytes_and_reads_back_from_its_text() {
        let digest = ManifestDigest::of(b"abc");
        assert_eq!(
            digest.to_string(),
            "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "the sha256 test vector"
        );
        assert_eq!(digest.to_string().parse::<ManifestDigest>().unwrap(), digest);
        assert_eq!(serde_json::to_string(&digest).unwrap(), format!("\"{digest}\""), "a plain hex string on the wire");
    }

    #[test]
    fn data_versions_count_up_from_one_and_name_their_directory() {
        assert_eq!(DataVersion::FIRST.next(), Some(DataVersion::new(2)));
        assert_eq!(DataVersion::new(u64::MAX).next(), None);
        assert_eq!(
            serde_json::from_str::<DataVersion>("0").unwrap_err().to_string(),
            "malformed data version: 0 (versions count from 1)"
        );
        assert_eq!(DataVersion::new(7).dir_name(), "v7");
        assert_eq!(serde_json::to_string(&DataVersion::FIRST).unwrap(), "1", "a plain number in the manifest");
    }
}
