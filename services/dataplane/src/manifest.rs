//! The manifest stored beside a dataset's encrypted objects, and the one check of it that the
//! owner, the worker host and the enclave all make.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use strongroom_types::{DataVersion, DatasetId, KeyId, ManifestDigest, StorageUrl};

/// One column of the dataset and the id of the key that encrypts it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColumnEntry {
    pub name: String,
    pub data_type: String,
    pub key_id: KeyId,
}

impl ColumnEntry {
    /// The entries of `schema`'s columns, each with its own key, as a manifest lists them.
    pub fn of_schema(schema: &arrow::datatypes::Schema) -> Vec<ColumnEntry> {
        schema
            .fields()
            .iter()
            .map(|f| ColumnEntry {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                key_id: KeyId::column(f.name()),
            })
            .collect()
    }

    /// The columns as the query engine plans on them (every column nullable): the schema a
    /// query is checked against before any object is read.
    pub fn arrow_schema(columns: &[ColumnEntry]) -> Result<arrow::datatypes::SchemaRef, arrow::error::ArrowError> {
        use std::str::FromStr;
        let fields = columns
            .iter()
            .map(|c| {
                Ok(arrow::datatypes::Field::new(&c.name, arrow::datatypes::DataType::from_str(&c.data_type)?, true))
            })
            .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
        Ok(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)))
    }
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
/// The manifest's digest is registered on chain and the dataset's URI on chain is the
/// manifest's, so every byte a worker fetches is checked against the chain.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub dataset: DatasetId,
    /// Bound into every object's AAD, so an object of an older version cannot pass for one of
    /// this version.
    pub data_version: DataVersion,
    pub columns: Vec<ColumnEntry>,
    pub rows: u64,
    pub objects: Vec<ObjectEntry>,
}

/// Why a stored manifest cannot be used. Callers say whose manifest it is ("the manifest
/// registered on chain …", "the manifest at <url> …"); these read as the rest of the sentence.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("is malformed: {0}")]
    Malformed(String),
    #[error("is for dataset {dataset} in format `{format}`, not dataset {expected} in format `{}`", Manifest::FORMAT)]
    WrongDataset { dataset: DatasetId, format: String, expected: DatasetId },
    #[error("lists a bad or repeated object name `{0}`")]
    BadObjectName(String),
    #[error("lists objects whose rows do not add up to its total")]
    RowsDoNotAddUp,
    #[error("is not stored in a directory, beside which its objects would be")]
    NoDirectory,
}

impl Manifest {
    pub const FORMAT: &'static str = "strongroom/parquet-modular-encryption/v2";
    pub const FILE_NAME: &'static str = "manifest.json";
    /// The largest stored manifest a reader takes (about 100,000 objects): its owner writes it,
    /// and the worker host and the enclave hold it whole.
    pub const MAX_STORED_BYTES: usize = 16 << 20;

    /// Parses a stored manifest and [validates](Self::validate) it for `dataset`.
    pub fn parse(stored: &[u8], dataset: DatasetId) -> Result<Self, ManifestError> {
        let manifest: Self = serde_json::from_slice(stored).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        manifest.validate(dataset)?;
        Ok(manifest)
    }

    /// Checks that the manifest describes `dataset` in this build's format, that every object
    /// has a distinct plain Parquet file name (objects are fetched and scanned by name: a path
    /// would reach outside the dataset, a repeat would be skipped or shadowed without an error),
    /// and that the objects' rows add up to the total.
    pub fn validate(&self, dataset: DatasetId) -> Result<(), ManifestError> {
        if self.format != Self::FORMAT || self.dataset != dataset {
            return Err(ManifestError::WrongDataset {
                dataset: self.dataset,
                format: self.format.clone(),
                expected: dataset,
            });
        }
        let mut names = std::collections::BTreeSet::new();
        for entry in &self.objects {
            let name = entry.name.as_str();
            let plain = name.ends_with(".parquet") && !name.starts_with('.') && !name.contains(['/', '\\']);
            if !plain || !names.insert(name) {
                return Err(ManifestError::BadObjectName(entry.name.clone()));
            }
        }
        // Checked: a manifest is the owner's to write, and an overflow must not abort the reader.
        let total = self.objects.iter().try_fold(0u64, |sum, o| sum.checked_add(o.rows));
        if total != Some(self.rows) {
            return Err(ManifestError::RowsDoNotAddUp);
        }
        Ok(())
    }

    /// Total ciphertext bytes over all objects, as listed (saturating: the owner writes the
    /// sizes, and a reader that sums them must not abort on an overflow).
    pub fn bytes(&self) -> u64 {
        self.objects.iter().fold(0u64, |sum, o| sum.saturating_add(o.bytes))
    }

    /// The URLs of the objects, which sit beside the manifest stored at `manifest_url`.
    pub fn object_urls(&self, manifest_url: &StorageUrl) -> Result<Vec<StorageUrl>, ManifestError> {
        let dir = manifest_url.parent().ok_or(ManifestError::NoDirectory)?;
        let url = |o: &ObjectEntry| dir.join(&o.name).map_err(|_| ManifestError::BadObjectName(o.name.clone()));
        self.objects.iter().map(url).collect()
    }

    /// The manifest as stored, and its digest (what the chain records).
    pub fn to_stored(&self) -> (Vec<u8>, ManifestDigest) {
        let bytes = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        let digest = ManifestDigest::of(&bytes);
        (bytes, digest)
    }
}

/// Where the objects of one data version live: `<storage>/<dataset>/v<version>/`, the manifest
/// and the objects side by side, so a rotation never overwrites what running tasks may read.
pub fn version_dir(storage_url: &StorageUrl, dataset: DatasetId, data_version: DataVersion) -> StorageUrl {
    let dir = format!("{dataset}/{}", data_version.dir_name());
    storage_url.join(&dir).expect("a dataset id and a version are plain segments")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let object = |name: &str, rows| ObjectEntry { name: name.into(), rows, bytes: 1, sha256: B256::ZERO };
        Manifest {
            format: Manifest::FORMAT.into(),
            dataset: DatasetId::repeat_byte(1),
            data_version: DataVersion::FIRST,
            columns: Vec::new(),
            rows: 3,
            objects: vec![object("part-00000.parquet", 1), object("part-00001.parquet", 2)],
        }
    }

    #[test]
    fn every_refusal_names_what_is_wrong() {
        let dataset = DatasetId::repeat_byte(1);
        let (stored, _) = manifest().to_stored();
        assert_eq!(Manifest::parse(&stored, dataset).unwrap(), manifest());
        let err = Manifest::parse(&stored, DatasetId::repeat_byte(2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "is for dataset {dataset} in format `{}`, not dataset {} in format `{}`",
                Manifest::FORMAT,
                DatasetId::repeat_byte(2),
                Manifest::FORMAT
            )
        );
        assert!(matches!(Manifest::parse(b"{", dataset), Err(ManifestError::Malformed(_))));
        for bad in ["../x.parquet", "a/b.parquet", ".hidden.parquet", "part.csv", "part-00000.parquet"] {
            let mut m = manifest();
            m.objects[1].name = bad.into();
            assert_eq!(m.validate(dataset), Err(ManifestError::BadObjectName(bad.into())), "{bad}");
        }
        let mut m = manifest();
        m.rows = 4;
        assert_eq!(m.validate(dataset).unwrap_err().to_string(), "lists objects whose rows do not add up to its total");
        let mut m = manifest();
        m.objects[0].rows = u64::MAX;
        assert_eq!(
            m.validate(dataset),
            Err(ManifestError::RowsDoNotAddUp),
            "an overflowing sum is refused, not a panic"
        );
    }
}
