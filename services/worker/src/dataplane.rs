//! The encrypted data format: Parquet with modular encryption, one key per column.
//!
//! The owner's CLI encrypts with [`encrypt`]; the enclave decrypts with [`decrypt`]. The AAD
//! prefix is the dataset id, so a file moved under another dataset's id fails to decrypt.
//! Every column gets a key of its own, because the parquet crate writes an unkeyed column in
//! plaintext.

use arrow::array::RecordBatchReader;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::config::{ColumnDecryptionProperties, ConfigFileDecryptionProperties};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::WriterProperties;
use strongroom_types::{DatasetId, DatasetKeys};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("column `{0}` has no key: refusing to write it in plaintext")]
    UnkeyedColumn(String),
    #[error("column `{0}` is nested ({1}); only flat columns are supported")]
    NestedColumn(String, DataType),
    #[error("no footer key was released")]
    NoFooterKey,
    #[error("cannot decrypt the dataset: {0} (wrong keys, a file of another dataset, or tampered ciphertext)")]
    Decrypt(String),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Parquet writer properties that encrypt every column of `schema` with its own key, the
/// footer with the footer key, and bind the file to `dataset` through the AAD prefix.
pub fn encryption_properties(
    schema: &SchemaRef,
    keys: &DatasetKeys,
    dataset: DatasetId,
) -> Result<WriterProperties, DataplaneError> {
    let footer = keys.footer.as_ref().ok_or(DataplaneError::NoFooterKey)?;
    let mut builder = FileEncryptionProperties::builder(footer.expose().to_vec())
        .with_aad_prefix(dataset.to_vec())
        .with_aad_prefix_storage(false)
        .with_footer_key_metadata(b"footer".to_vec());
    for field in schema.fields() {
        if field.data_type().is_nested() {
            return Err(DataplaneError::NestedColumn(field.name().clone(), field.data_type().clone()));
        }
        let key = keys.columns.get(field.name()).ok_or_else(|| DataplaneError::UnkeyedColumn(field.name().clone()))?;
        builder = builder.with_column_key_and_metadata(
            field.name(),
            key.expose().to_vec(),
            format!("column:{}", field.name()).into_bytes(),
        );
    }
    Ok(WriterProperties::builder().with_file_encryption_properties(builder.build()?).build())
}

/// Writes `batches` as one encrypted Parquet object.
pub fn encrypt(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    keys: &DatasetKeys,
    dataset: DatasetId,
) -> Result<Vec<u8>, DataplaneError> {
    let props = encryption_properties(schema, keys, dataset)?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(out)
}

/// The same keys as DataFusion's file decryption options, so a scan decrypts as it reads.
/// Only the columns whose keys are present can be read.
pub fn datafusion_decryption(
    keys: &DatasetKeys,
    dataset: DatasetId,
) -> Result<ConfigFileDecryptionProperties, DataplaneError> {
    let footer = keys.footer.as_ref().ok_or(DataplaneError::NoFooterKey)?;
    Ok(ConfigFileDecryptionProperties {
        footer_key_as_hex: hex::encode(footer.expose()),
        column_decryption_properties: keys
            .columns
            .iter()
            .map(|(c, k)| (c.clone(), ColumnDecryptionProperties { column_key_as_hex: hex::encode(k.expose()) }))
            .collect(),
        aad_prefix_as_hex: hex::encode(dataset),
        footer_signature_verification: true,
    })
}

/// Decrypts the columns whose keys were released, in file order; the others are not read.
///
/// The page index is never loaded: loading it touches every column, and the keys of the
/// columns a task may not read are, by design, absent.
pub fn decrypt(
    ciphertext: &[u8],
    keys: &DatasetKeys,
    dataset: DatasetId,
) -> Result<(SchemaRef, Vec<RecordBatch>), DataplaneError> {
    let footer = keys.footer.as_ref().ok_or(DataplaneError::NoFooterKey)?;
    let mut builder = FileDecryptionProperties::builder(footer.expose().to_vec()).with_aad_prefix(dataset.to_vec());
    for (column, key) in &keys.columns {
        builder = builder.with_column_key(column, key.expose().to_vec());
    }
    let options = ArrowReaderOptions::new()
        .with_page_index_policy(PageIndexPolicy::Skip)
        .with_file_decryption_properties(builder.build()?);
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(Bytes::copy_from_slice(ciphertext), options)
        .map_err(|e| DataplaneError::Decrypt(e.to_string()))?;
    let released: Vec<usize> = reader
        .parquet_schema()
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| keys.columns.contains_key(c.path().string().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::leaves(reader.parquet_schema(), released);
    let reader = reader.with_projection(mask).build().map_err(|e| DataplaneError::Decrypt(e.to_string()))?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| DataplaneError::Decrypt(e.to_string()))?;
    Ok((schema, batches))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn sample() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["ada@example.com", "alan@example.com"])),
            ],
        )
        .unwrap();
        (schema, vec![batch])
    }

    #[test]
    fn round_trip_with_every_column_keyed() {
        let (schema, batches) = sample();
        let keys = DatasetKeys::generate(["id", "email"]);
        let dataset = DatasetId::repeat_byte(7);
        let ciphertext = encrypt(&schema, &batches, &keys, dataset).unwrap();
        assert!(!ciphertext.windows(15).any(|w| w == b"ada@example.com"), "no plaintext value in the file");
        let (got_schema, got) = decrypt(&ciphertext, &keys, dataset).unwrap();
        assert_eq!(got_schema.fields().len(), 2);
        assert_eq!(got, batches);
    }

    #[test]
    fn a_column_without_a_key_is_refused_not_written_in_plaintext() {
        let (schema, batches) = sample();
        let keys = DatasetKeys::generate(["id"]);
        let err = encrypt(&schema, &batches, &keys, DatasetId::ZERO).unwrap_err();
        assert_eq!(err.to_string(), "column `email` has no key: refusing to write it in plaintext");
    }

    #[test]
    fn a_file_moved_to_another_dataset_fails_on_its_aad() {
        let (schema, batches) = sample();
        let keys = DatasetKeys::generate(["id", "email"]);
        let ciphertext = encrypt(&schema, &batches, &keys, DatasetId::repeat_byte(1)).unwrap();
        let err = decrypt(&ciphertext, &keys, DatasetId::repeat_byte(2)).unwrap_err();
        assert!(err.to_string().starts_with("cannot decrypt the dataset:"), "{err}");
    }

    #[test]
    fn withheld_columns_are_not_read() {
        let (schema, batches) = sample();
        let keys = DatasetKeys::generate(["id", "email"]);
        let dataset = DatasetId::repeat_byte(3);
        let ciphertext = encrypt(&schema, &batches, &keys, dataset).unwrap();
        let mut released = keys.clone();
        released.columns.remove("email");
        let (got_schema, got) = decrypt(&ciphertext, &released, dataset).unwrap();
        assert_eq!(got_schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["id"]);
        assert_eq!(got[0].column(0), batches[0].column(0));
    }

    #[test]
    fn the_file_is_unreadable_without_keys() {
        let (schema, batches) = sample();
        let keys = DatasetKeys::generate(["id", "email"]);
        let ciphertext = encrypt(&schema, &batches, &keys, DatasetId::ZERO).unwrap();
        let err = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(ciphertext)).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("encrypt"), "{err}");
    }
}
