//! The AAD rules: what binds an object to its place.

use strongroom_types::{DataVersion, DatasetId};

/// The AAD prefix of one object: a domain tag, the dataset id, the data version and the
/// object's name. Not stored in the file; readers rebuild it from the manifest.
pub fn aad_prefix(dataset: DatasetId, data_version: DataVersion, object: &str) -> Vec<u8> {
    let mut aad = b"strongroom/object/v1".to_vec();
    aad.extend_from_slice(dataset.as_slice());
    aad.extend_from_slice(&data_version.get().to_be_bytes());
    aad.extend_from_slice(object.as_bytes());
    aad
}

/// The name of a dataset's `index`-th object.
pub fn object_name(index: usize) -> String {
    format!("part-{index:05}.parquet")
}
