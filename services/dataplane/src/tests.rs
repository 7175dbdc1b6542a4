use std::sync::Arc;

use alloy_primitives::B256;
use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::SerializedFileReader;
use sha2::{Digest, Sha256};
use strongroom_types::{DataVersion, DatasetId, DatasetKeys};

use crate::reader::decryption_properties;
use crate::*;

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
    let mut writer = ObjectWriter::new(batch.schema(), keys, dataset, DataVersion::FIRST, layout).unwrap();
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
        let (_, batches) =
            decrypt(&object.ciphertext, &keys, aad_prefix(dataset, DataVersion::FIRST, &object.entry.name)).unwrap();
        read.extend(batches);
    }
    let read = arrow::compute::concat_batches(&batch.schema(), &read).unwrap();
    assert_eq!(read, batch);
    let options = ArrowReaderOptions::new().with_file_decryption_properties(
        decryption_properties(&keys, aad_prefix(dataset, DataVersion::FIRST, "part-00000.parquet")).unwrap(),
    );
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(objects[0].ciphertext.clone(), options).unwrap();
    let groups: Vec<i64> = reader.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
    assert_eq!(groups, [250, 250, 250, 250]);
}

#[test]
fn an_empty_input_still_makes_one_object_with_the_schema() {
    let (_, batch) = sample(0);
    let keys = DatasetKeys::generate(["id", "email"]);
    let writer =
        ObjectWriter::new(batch.schema(), &keys, DatasetId::ZERO, DataVersion::FIRST, Layout::default()).unwrap();
    let object = writer.finish().unwrap().unwrap();
    let (schema, batches) =
        decrypt(&object.ciphertext, &keys, aad_prefix(DatasetId::ZERO, DataVersion::FIRST, &object.entry.name))
            .unwrap();
    assert_eq!((schema.fields().len(), batches.iter().map(|b| b.num_rows()).sum::<usize>()), (2, 0));
}

#[test]
fn a_column_without_a_key_is_refused_not_written_in_plaintext() {
    let (schema, _) = sample(2);
    let keys = DatasetKeys::generate(["id"]);
    let err = ObjectWriter::new(schema, &keys, DatasetId::ZERO, DataVersion::FIRST, Layout::default()).err().unwrap();
    assert_eq!(err.to_string(), "column `email` has no key: refusing to write it in plaintext");
}

#[test]
fn an_object_moved_to_another_dataset_version_or_name_fails_on_its_aad() {
    let (_, batch) = sample(10);
    let keys = DatasetKeys::generate(["id", "email"]);
    let dataset = DatasetId::repeat_byte(1);
    let objects = write_all(&batch, &keys, dataset, Layout::default());
    let object = &objects[0];
    assert!(decrypt(&object.ciphertext, &keys, aad_prefix(dataset, DataVersion::FIRST, "part-00000.parquet")).is_ok());
    for wrong in [
        aad_prefix(DatasetId::repeat_byte(2), DataVersion::FIRST, "part-00000.parquet"),
        aad_prefix(dataset, DataVersion::new(2), "part-00000.parquet"),
        aad_prefix(dataset, DataVersion::FIRST, "part-00001.parquet"),
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
    let (schema, got) =
        decrypt(&object.ciphertext, &released, aad_prefix(dataset, DataVersion::FIRST, &object.entry.name)).unwrap();
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
