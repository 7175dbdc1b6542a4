//! Writing: a stream of batches encrypted into objects of whole row groups, one key per column.

use alloy_primitives::B256;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::encryption::encrypt::{EncryptionPropertiesBuilder, FileEncryptionProperties};
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use strongroom_types::{DataVersion, DatasetId, DatasetKeys, KeyId};

use crate::{DataplaneError, ObjectEntry, aad_prefix, object_name};

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
        .with_footer_key_metadata(KeyId::footer().as_str().as_bytes().to_vec());
    for field in schema.fields() {
        if field.data_type().is_nested() {
            return Err(DataplaneError::NestedColumn(field.name().clone(), field.data_type().clone()));
        }
        let key = keys.columns.get(field.name()).ok_or_else(|| DataplaneError::UnkeyedColumn(field.name().clone()))?;
        builder = builder.with_column_key_and_metadata(
            field.name(),
            key.expose().to_vec(),
            KeyId::column(field.name()).as_str().as_bytes().to_vec(),
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
    data_version: DataVersion,
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
        data_version: DataVersion,
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
