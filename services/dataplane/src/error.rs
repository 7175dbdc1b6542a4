//! What can go wrong writing or reading the encrypted format.

use arrow::datatypes::DataType;

use crate::Layout;

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("column `{0}` has no key: refusing to write it in plaintext")]
    UnkeyedColumn(String),
    #[error("column `{0}` is nested ({1}); only flat columns are supported")]
    NestedColumn(String, DataType),
    #[error("no footer key was released")]
    NoFooterKey,
    #[error(
        "cannot decrypt the dataset: {0} (wrong keys, an object of another dataset or version, or tampered ciphertext)"
    )]
    Decrypt(String),
    #[error("object `{0}` is not listed in the dataset's manifest")]
    UnlistedObject(String),
    #[error("a layout needs at least one row and one byte per row group and per object: {0:?}")]
    EmptyLayout(Layout),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}
