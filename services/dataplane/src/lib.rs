//! The encrypted data format: Parquet with modular encryption, one key per column, a dataset
//! cut into objects of whole row groups, described by a manifest.
//!
//! ```text
//!  owner:   batches ──ObjectWriter──▶ objects (+ ObjectEntry) ──▶ Manifest ──sha256──▶ chain
//!  enclave: Manifest::parse ─▶ objects checked by sha256 ─▶ DecryptionFactory ─▶ DataFusion scan
//! ```
//!
//! The owner's CLI writes objects with [`ObjectWriter`]; the enclave's scans decrypt them
//! through [`DecryptionFactory`]. Every object's AAD prefix binds it to the dataset id, the data
//! version and its own name ([`aad_prefix`]), so an object moved to another dataset, another
//! version or another place in the same dataset fails to decrypt. Every column gets a key of its
//! own, because the parquet crate writes an unkeyed column in plaintext. The enclave links this
//! crate: it reads and writes bytes in memory and has no storage or network code.

mod aad;
mod error;
mod manifest;
mod reader;
mod writer;

pub use aad::{aad_prefix, object_name};
pub use error::DataplaneError;
pub use manifest::{ColumnEntry, Manifest, ManifestError, ObjectEntry, version_dir};
pub use reader::{DecryptionFactory, decrypt, register_encrypted_table, scan_config};
pub use writer::{EncryptedObject, Layout, ObjectWriter, encryption_properties};

#[cfg(test)]
mod tests;
