//! The manifest stored beside a dataset's ciphertext.

use serde::{Deserialize, Serialize};

/// One column of the encrypted file and the id of the key that encrypts it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColumnEntry {
    pub name: String,
    pub data_type: String,
    pub key_id: String,
}

/// Describes an encrypted dataset object: its schema, which key encrypts which column, how many
/// rows it holds and the sha256 of its ciphertext. The manifest's own sha256 is registered on
/// chain, and the dataset's URI on chain is the manifest's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub object: String,
    pub columns: Vec<ColumnEntry>,
    pub rows: u64,
    pub ciphertext_sha256: alloy::primitives::B256,
    pub ciphertext_bytes: u64,
}

impl Manifest {
    pub const FORMAT: &'static str = "strongroom/parquet-modular-encryption/v1";
    pub const FILE_NAME: &'static str = "manifest.json";
}
