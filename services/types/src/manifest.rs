//! The manifest stored beside a dataset's encrypted objects.

use alloy::primitives::B256;
use serde::{Deserialize, Serialize};

use crate::DatasetId;

/// One column of the dataset and the id of the key that encrypts it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColumnEntry {
    pub name: String,
    pub data_type: String,
    pub key_id: String,
}

/// One encrypted Parquet object of the dataset.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectEntry {
    /// The object's name, relative to the manifest; bound into its AAD.
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: B256,
}

/// Describes one data version of an encrypted dataset: its schema, which key encrypts which
/// column, and every object with its row count and the sha256 of its ciphertext.
///
/// The manifest's own sha256 is registered on chain and the dataset's URI on chain is the
/// manifest's, so every byte a worker fetches is checked against the chain.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub dataset: DatasetId,
    /// Counts re-encryptions (key rotations) from 1. Bound into every object's AAD, so an
    /// object of an older version cannot pass for one of this version.
    pub data_version: u64,
    pub columns: Vec<ColumnEntry>,
    pub rows: u64,
    pub objects: Vec<ObjectEntry>,
}

impl Manifest {
    pub const FORMAT: &'static str = "strongroom/parquet-modular-encryption/v2";
    pub const FILE_NAME: &'static str = "manifest.json";

    /// Total ciphertext bytes over all objects.
    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.bytes).sum()
    }

    /// The URLs of the objects, which sit beside the manifest stored at `manifest_url`.
    pub fn object_urls(&self, manifest_url: &str) -> Vec<String> {
        let dir = manifest_dir(manifest_url).unwrap_or(manifest_url);
        self.objects.iter().map(|o| format!("{dir}/{}", o.name)).collect()
    }

    /// The manifest as stored, and its sha256 (what the chain records).
    pub fn to_stored(&self) -> (Vec<u8>, B256) {
        let bytes = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        let sha256 = B256::from_slice(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        (bytes, sha256)
    }
}

/// Where the objects of one data version live: `<storage>/<dataset>/v<version>/`, the manifest
/// and the objects side by side, so a rotation never overwrites what running tasks may read.
pub fn version_dir(storage_url: &str, dataset: DatasetId, data_version: u64) -> String {
    format!("{}/{dataset}/v{data_version}", storage_url.trim_end_matches('/'))
}

/// The directory of a manifest URL, against which its object names resolve.
pub fn manifest_dir(manifest_url: &str) -> Option<&str> {
    manifest_url.rsplit_once('/').map(|(dir, _)| dir)
}
