//! The encrypted data format: Parquet with modular encryption, one key per column, a dataset
//! cut into objects of whole row groups.
//!
//! The owner's CLI writes objects with [`ObjectWriter`]; the enclave's scans decrypt them
//! through [`DecryptionFactory`]. Every object's AAD prefix binds it to the dataset id, the data
//! version and its own name ([`aad_prefix`]), so an object moved to another dataset, another
//! version or another place in the same dataset fails to decrypt. Every column gets a key of its
//! own, because the parquet crate writes an unkeyed column in plaintext.

use std::sync::Arc;

use alloy::primitives::B256;
use arrow::array::RecordBatchReader;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::common::config::EncryptionFactoryOptions;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::{EncryptionPropertiesBuilder, FileEncryptionProperties};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use strongroom_types::{DatasetId, DatasetKeys, ObjectEntry};

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

/// The AAD prefix of one object: a domain tag, the dataset id, the data version and the
/// object's name. Not stored in the file; readers rebuild it from the manifest.
pub fn aad_prefix(dataset: DatasetId, data_version: u64, object: &str) -> Vec<u8> {
    let mut aad = b"strongroom/object/v1".to_vec();
    aad.extend_from_slice(dataset.as_slice());
    aad.extend_from_slice(&data_version.to_be_bytes());
    aad.extend_from_slice(object.as_bytes());
    aad
}

/// The name of a dataset's `index`-th object.
pub fn object_name(index: usize) -> String {
    format!("part-{index:05}.parquet")
}

/// How a dataset is cut into objects and row groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Most rows per row group: the unit a scan prunes by statistics and spreads over cores.
    pub row_group_rows: usize,
    /// Most encoded bytes per row group, for wide rows.
    pub row_group_bytes: usize,
    /// Most rows per object.
    pub object_rows: usize,
    /// An object is closed once it holds about this many bytes: objects are uploaded whole,
    /// so this bounds the memory a publish needs.
    pub object_bytes: usize,
}

impl Default for Layout {
    /// Row groups of up to 1 Mi rows or 128 MiB (the sizes Parquet readers are tuned for);
    /// objects of up to four row groups or 512 MiB.
    fn default() -> Self {
        Self { row_group_rows: 1 << 20, row_group_bytes: 128 << 20, object_rows: 4 << 20, object_bytes: 512 << 20 }
    }
}

impl Layout {
    /// Objects of at most `rows` rows, in row groups of at most `rows` rows.
    pub fn with_object_rows(rows: usize) -> Self {
        let rows = rows.max(1);
        let default = Self::default();
        Self { object_rows: rows, row_group_rows: default.row_group_rows.min(rows), ..default }
    }
}

fn encryption_builder(
    schema: &SchemaRef,
    keys: &DatasetKeys,
    aad_prefix: Vec<u8>,
) -> Result<EncryptionPropertiesBuilder, DataplaneError> {
    let footer = keys.footer.as_ref().ok_or(DataplaneError::NoFooterKey)?;
    let mut builder = FileEncryptionProperties::builder(footer.expose().to_vec())
        .with_aad_prefix(aad_prefix)
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
    Ok(builder)
}

/// Parquet writer properties that encrypt every column of `schema` with its own key and the
/// footer with the footer key, under `aad_prefix`, in row groups sized by `layout`.
pub fn encryption_properties(
    schema: &SchemaRef,
    keys: &DatasetKeys,
    aad_prefix: Vec<u8>,
    layout: Layout,
) -> Result<WriterProperties, DataplaneError> {
    let encryption = encryption_builder(schema, keys, aad_prefix)?.build()?;
    Ok(WriterProperties::builder()
        .set_max_row_group_row_count(Some(layout.row_group_rows))
        .set_max_row_group_bytes(Some(layout.row_group_bytes))
        .with_file_encryption_properties(encryption)
        .build())
}

/// One finished object: its manifest entry and its ciphertext.
#[derive(Debug)]
pub struct EncryptedObject {
    pub entry: ObjectEntry,
    pub ciphertext: Bytes,
}

struct OpenObject {
    name: String,
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
}

/// Encrypts a stream of batches into objects cut by a [`Layout`]. Batches go in as they are
/// read, so an input larger than memory can be published; finished objects come out to be
/// stored.
pub struct ObjectWriter<'k> {
    schema: SchemaRef,
    keys: &'k DatasetKeys,
    dataset: DatasetId,
    data_version: u64,
    layout: Layout,
    open: Option<OpenObject>,
    finished: usize,
}

impl<'k> ObjectWriter<'k> {
    /// Fails at once if a column of `schema` has no key or is nested.
    pub fn new(
        schema: SchemaRef,
        keys: &'k DatasetKeys,
        dataset: DatasetId,
        data_version: u64,
        layout: Layout,
    ) -> Result<Self, DataplaneError> {
        if [layout.row_group_rows, layout.row_group_bytes, layout.object_rows, layout.object_bytes].contains(&0) {
            return Err(DataplaneError::EmptyLayout(layout));
        }
        encryption_builder(&schema, keys, Vec::new())?;
        Ok(Self { schema, keys, dataset, data_version, layout, open: None, finished: 0 })
    }

    /// Adds `batch`; returns the objects it completed (usually none).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<Vec<EncryptedObject>, DataplaneError> {
        let mut done = Vec::new();
        let mut offset = 0;
        while offset < batch.num_rows() {
            let object = match &mut self.open {
                Some(object) => object,
                None => self.open.insert(self.start()?),
            };
            let room = self.layout.object_rows - object.rows as usize;
            let take = room.min(batch.num_rows() - offset);
            object.writer.write(&batch.slice(offset, take))?;
            object.rows += take as u64;
            offset += take;
            let full = object.rows as usize >= self.layout.object_rows
                || object.writer.bytes_written() + object.writer.in_progress_size() >= self.layout.object_bytes;
            if full {
                done.push(self.close()?);
            }
        }
        Ok(done)
    }

    /// Closes the last object. A dataset always has at least one object, if only to carry the
    /// schema of an empty input.
    pub fn finish(mut self) -> Result<Option<EncryptedObject>, DataplaneError> {
        if self.open.is_none() && self.finished == 0 {
            self.open = Some(self.start()?);
        }
        match self.open {
            Some(_) => self.close().map(Some),
            None => Ok(None),
        }
    }

    fn start(&self) -> Result<OpenObject, DataplaneError> {
        let name = object_name(self.finished);
        let aad = aad_prefix(self.dataset, self.data_version, &name);
        let props = encryption_properties(&self.schema, self.keys, aad, self.layout)?;
        let writer = ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(props))?;
        Ok(OpenObject { name, writer, rows: 0 })
    }

    fn close(&mut self) -> Result<EncryptedObject, DataplaneError> {
        let OpenObject { name, writer, rows } = self.open.take().expect("an open object");
        // Writes the footer and hands back the buffer.
        let ciphertext = Bytes::from(writer.into_inner()?);
        self.finished += 1;
        let sha256 = B256::from_slice(&Sha256::digest(&ciphertext));
        Ok(EncryptedObject { entry: ObjectEntry { name, rows, bytes: ciphertext.len() as u64, sha256 }, ciphertext })
    }
}

/// Decryption properties for one object from the keys at hand: only the columns whose keys are
/// present can be read.
fn decryption_properties(
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
    data_version: u64,
    /// The object names the manifest lists; any other file is refused.
    objects: Vec<String>,
}

impl DecryptionFactory {
    /// The prefix of the ids under which factories are registered in a DataFusion runtime.
    const ID: &'static str = "strongroom";

    pub fn new(keys: DatasetKeys, dataset: DatasetId, data_version: u64, objects: Vec<String>) -> Self {
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

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use parquet::file::reader::SerializedFileReader;

    use super::*;

    fn sample(n: i64) -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, false),
        ]));
        let emails: Vec<String> = (0..n).map(|i| format!("person{i}@example.com")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..n)), Arc::new(StringArray::from(emails))],
        )
        .unwrap();
        (schema, batch)
    }

    fn write_all(batch: &RecordBatch, keys: &DatasetKeys, dataset: DatasetId, layout: Layout) -> Vec<EncryptedObject> {
        let mut writer = ObjectWriter::new(batch.schema(), keys, dataset, 1, layout).unwrap();
        // Fed in uneven batches, as a reader would.
        let mut objects = Vec::new();
        let mut offset = 0;
        for len in [7, 1000, usize::MAX].into_iter().cycle() {
            let len = len.min(batch.num_rows() - offset);
            objects.extend(writer.write(&batch.slice(offset, len)).unwrap());
            offset += len;
            if offset == batch.num_rows() {
                break;
            }
        }
        objects.extend(writer.finish().unwrap());
        objects
    }

    #[test]
    fn large_inputs_split_into_objects_of_whole_row_groups() {
        let (_, batch) = sample(2_500);
        let keys = DatasetKeys::generate(["id", "email"]);
        let dataset = DatasetId::repeat_byte(7);
        let layout = Layout { row_group_rows: 250, ..Layout::with_object_rows(1_000) };
        let objects = write_all(&batch, &keys, dataset, layout);
        let names: Vec<_> = objects.iter().map(|o| (o.entry.name.as_str(), o.entry.rows)).collect();
        assert_eq!(names, [("part-00000.parquet", 1_000), ("part-00001.parquet", 1_000), ("part-00002.parquet", 500)]);
        let mut read = Vec::new();
        for object in &objects {
            assert_eq!(object.entry.sha256, B256::from_slice(&Sha256::digest(&object.ciphertext)));
            assert!(!object.ciphertext.windows(19).any(|w| w == b"person1@example.com"), "no plaintext value");
            let (_, batches) = decrypt(&object.ciphertext, &keys, aad_prefix(dataset, 1, &object.entry.name)).unwrap();
            read.extend(batches);
        }
        let read = arrow::compute::concat_batches(&batch.schema(), &read).unwrap();
        assert_eq!(read, batch);
        let options = ArrowReaderOptions::new().with_file_decryption_properties(
            decryption_properties(&keys, aad_prefix(dataset, 1, "part-00000.parquet")).unwrap(),
        );
        let reader =
            ParquetRecordBatchReaderBuilder::try_new_with_options(objects[0].ciphertext.clone(), options).unwrap();
        let groups: Vec<i64> = reader.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, [250, 250, 250, 250]);
    }

    #[test]
    fn an_empty_input_still_makes_one_object_with_the_schema() {
        let (_, batch) = sample(0);
        let keys = DatasetKeys::generate(["id", "email"]);
        let writer = ObjectWriter::new(batch.schema(), &keys, DatasetId::ZERO, 1, Layout::default()).unwrap();
        let object = writer.finish().unwrap().unwrap();
        let (schema, batches) =
            decrypt(&object.ciphertext, &keys, aad_prefix(DatasetId::ZERO, 1, &object.entry.name)).unwrap();
        assert_eq!((schema.fields().len(), batches.iter().map(|b| b.num_rows()).sum::<usize>()), (2, 0));
    }

    #[test]
    fn a_column_without_a_key_is_refused_not_written_in_plaintext() {
        let (schema, _) = sample(2);
        let keys = DatasetKeys::generate(["id"]);
        let err = ObjectWriter::new(schema, &keys, DatasetId::ZERO, 1, Layout::default()).err().unwrap();
        assert_eq!(err.to_string(), "column `email` has no key: refusing to write it in plaintext");
    }

    #[test]
    fn an_object_moved_to_another_dataset_version_or_name_fails_on_its_aad() {
        let (_, batch) = sample(10);
        let keys = DatasetKeys::generate(["id", "email"]);
        let dataset = DatasetId::repeat_byte(1);
        let objects = write_all(&batch, &keys, dataset, Layout::default());
        let object = &objects[0];
        assert!(decrypt(&object.ciphertext, &keys, aad_prefix(dataset, 1, "part-00000.parquet")).is_ok());
        for wrong in [
            aad_prefix(DatasetId::repeat_byte(2), 1, "part-00000.parquet"),
            aad_prefix(dataset, 2, "part-00000.parquet"),
            aad_prefix(dataset, 1, "part-00001.parquet"),
        ] {
            let err = decrypt(&object.ciphertext, &keys, wrong).unwrap_err();
            assert!(err.to_string().starts_with("cannot decrypt the dataset:"), "{err}");
        }
    }

    #[test]
    fn withheld_columns_are_not_read() {
        let (_, batch) = sample(10);
        let keys = DatasetKeys::generate(["id", "email"]);
        let dataset = DatasetId::repeat_byte(3);
        let object = &write_all(&batch, &keys, dataset, Layout::default())[0];
        let mut released = keys.clone();
        released.columns.remove("email");
        let (schema, got) = decrypt(&object.ciphertext, &released, aad_prefix(dataset, 1, &object.entry.name)).unwrap();
        assert_eq!(schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["id"]);
        assert_eq!(got[0].column(0), batch.column(0));
    }

    #[test]
    fn no_column_is_readable_without_keys() {
        let (_, batch) = sample(10);
        let keys = DatasetKeys::generate(["id", "email"]);
        let object = &write_all(&batch, &keys, DatasetId::ZERO, Layout::default())[0];
        let err = ParquetRecordBatchReaderBuilder::try_new(object.ciphertext.clone()).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("encrypt"), "{err}");
        // Not even the footer parses as plaintext Parquet, so no column chunk is reachable.
        let err = SerializedFileReader::new(object.ciphertext.clone()).err().unwrap();
        assert!(err.to_string().to_lowercase().contains("encrypt"), "{err}");
    }
}
