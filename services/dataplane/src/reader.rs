//! Reading: decryption while scanning, with the keys released for one task only.

use std::sync::Arc;

use arrow::array::RecordBatchReader;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::common::config::EncryptionFactoryOptions;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::file::metadata::PageIndexPolicy;
use strongroom_types::{DataVersion, DatasetId, DatasetKeys};

use crate::{DataplaneError, aad_prefix};

/// Decryption properties for one object from the keys at hand: only the columns whose keys are
/// present can be read.
pub(crate) fn decryption_properties(
    keys: &DatasetKeys,
    aad_prefix: Vec<u8>,
) -> Result<Arc<FileDecryptionProperties>, DataplaneError> {
    let footer = keys.footer.as_ref().ok_or(DataplaneError::NoFooterKey)?;
    let mut builder = FileDecryptionProperties::builder(footer.expose().to_vec()).with_aad_prefix(aad_prefix);
    for (column, key) in &keys.columns {
        builder = builder.with_column_key(column, key.expose().to_vec());
    }
    Ok(builder.build()?)
}

/// Hands DataFusion the decryption properties of each object it scans, built from the keys
/// released for one task and the object's own AAD prefix. Registered per query session, so a
/// task's keys serve that task only; keys stay raw bytes in memory, never hex strings in the
/// session's configuration.
#[derive(Debug)]
pub struct DecryptionFactory {
    keys: DatasetKeys,
    dataset: DatasetId,
    data_version: DataVersion,
    /// The object names the manifest lists; any other file is refused.
    objects: Vec<String>,
}

impl DecryptionFactory {
    /// The prefix of the ids under which factories are registered in a DataFusion runtime.
    const ID: &'static str = "strongroom";

    pub fn new(keys: DatasetKeys, dataset: DatasetId, data_version: DataVersion, objects: Vec<String>) -> Self {
        Self { keys, dataset, data_version, objects }
    }
}

#[async_trait::async_trait]
impl EncryptionFactory for DecryptionFactory {
    async fn get_file_encryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        _schema: &SchemaRef,
        file_path: &object_store::path::Path,
    ) -> datafusion::error::Result<Option<Arc<FileEncryptionProperties>>> {
        Err(datafusion::error::DataFusionError::Plan(format!("refusing to write {file_path}: queries are read-only")))
    }

    async fn get_file_decryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        file_path: &object_store::path::Path,
    ) -> datafusion::error::Result<Option<Arc<FileDecryptionProperties>>> {
        let name = file_path.filename().unwrap_or_default();
        if !self.objects.iter().any(|o| o == name) {
            return Err(datafusion::error::DataFusionError::Plan(
                DataplaneError::UnlistedObject(name.to_owned()).to_string(),
            ));
        }
        let props = decryption_properties(&self.keys, aad_prefix(self.dataset, self.data_version, name))
            .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
        Ok(Some(props))
    }
}

/// The session settings every scan of encrypted objects runs with. The page index is never
/// loaded: loading it touches every column, and the keys of the columns a task may not read are,
/// by design, absent.
pub fn scan_config() -> datafusion::prelude::SessionConfig {
    datafusion::prelude::SessionConfig::new().set_bool("datafusion.execution.parquet.enable_page_index", false)
}

/// Registers `table` over the Parquet objects under `url`, read through `factory`. Each table
/// gets a factory of its own, so tables of different datasets can be joined.
pub async fn register_encrypted_table(
    ctx: &datafusion::prelude::SessionContext,
    table: &str,
    url: &str,
    factory: DecryptionFactory,
) -> datafusion::error::Result<()> {
    let id = format!("{}:{table}", DecryptionFactory::ID);
    ctx.runtime_env().register_parquet_encryption_factory(&id, Arc::new(factory));
    // The listing table copies the session's table options when registered: point them at the
    // factory for this registration only.
    ctx.state_ref().write().table_options_mut().parquet.crypto.factory_id = Some(id);
    let registered = ctx.register_parquet(table, url, datafusion::prelude::ParquetReadOptions::default()).await;
    ctx.state_ref().write().table_options_mut().parquet.crypto.factory_id = None;
    registered
}

/// Decrypts the columns of one object whose keys are present, in file order; the others are
/// not read. For the owner (re-encryption on rotation) and tests; enclave scans go through
/// DataFusion and [`DecryptionFactory`].
///
/// The page index is never loaded: loading it touches every column, and the keys of the
/// columns a task may not read are, by design, absent.
pub fn decrypt(
    ciphertext: &Bytes,
    keys: &DatasetKeys,
    aad_prefix: Vec<u8>,
) -> Result<(SchemaRef, Vec<RecordBatch>), DataplaneError> {
    let options = ArrowReaderOptions::new()
        .with_page_index_policy(PageIndexPolicy::Skip)
        .with_file_decryption_properties(decryption_properties(keys, aad_prefix)?);
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(ciphertext.clone(), options)
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
