//! Read-only SQL over the decrypted dataset, on DataFusion.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::StreamWriter;
#[cfg(test)]
use arrow::record_batch::RecordBatch;
#[cfg(test)]
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::ExecutionPlan;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use strongroom_dataplane::{ColumnEntry, DecryptionFactory, register_encrypted_table, scan_config};
#[cfg(test)]
use strongroom_policy::plan_sql;
use strongroom_policy::{DATASET_TABLE, check, check_on_schema, plan_job};
use strongroom_types::Policy;

use crate::failure::TaskFailure;

/// Memory the enclave lets one query use. A query that needs more fails rather than spills:
/// spilling would write plaintext to the host's disk.
const QUERY_MEMORY_LIMIT: usize = 1 << 30;
const _: () = assert!(QUERY_MEMORY_LIMIT == 1 << 30, "TaskFailure::OutOfMemory's message says 1 GiB");

#[cfg(test)]
fn enclave_context(memory_limit: usize) -> Result<SessionContext, DataFusionError> {
    enclave_context_with(SessionConfig::new(), memory_limit)
}

/// A DataFusion session with a memory cap and no disk manager: no spill files, ever.
fn enclave_context_with(config: SessionConfig, memory_limit: usize) -> Result<SessionContext, DataFusionError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(memory_limit, 1.0)
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .build_arc()?;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// Runs `sql` against the encrypted dataset under `policy`, decrypting while scanning: the
/// query is checked and rewritten by the licence checker, then DataFusion reads the Parquet
/// objects through the keys released for this task, and only the columns the plan needs.
/// `objects` are the manifest's objects, already checked against it.
pub(crate) async fn run_encrypted(
    objects: Vec<(String, bytes::Bytes)>,
    factory: DecryptionFactory,
    sql: &str,
    policy: &Policy,
    epsilon: u64,
    seed: &strongroom_policy::NoiseSeed,
    released: &std::collections::BTreeSet<String>,
) -> Result<(Vec<u8>, u64, Vec<String>), TaskFailure> {
    let ctx = enclave_context_with(scan_config(), QUERY_MEMORY_LIMIT)?;
    // The ciphertext never leaves enclave memory: an in-memory object store serves it.
    let store = Arc::new(InMemory::new());
    for (name, ciphertext) in objects {
        store
            .put(&ObjectPath::from(format!("{DATASET_DIR}/{name}")), PutPayload::from(ciphertext))
            .await
            .map_err(DataFusionError::from)?;
    }
    let url = url::Url::parse(STORE_URL).expect("a valid URL");
    ctx.register_object_store(&url, store);
    register_encrypted_table(&ctx, DATASET_TABLE, &format!("{STORE_URL}{DATASET_DIR}/"), factory).await?;
    let checked = check(&plan_job(&ctx, sql, policy).await?, policy, Some(epsilon), seed)?;
    // The keys were asked for the plan made at the key request; the plan run must need no other.
    if let Some(missing) = checked.columns.iter().find(|c| !released.contains(*c)) {
        return Err(TaskFailure::KeyMissing(missing.clone()));
    }
    // Optimising and planning read no data: their errors are the query's (`Query`, refunded).
    let physical = ctx.execute_logical_plan(checked.plan.clone()).await?.create_physical_plan().await?;
    // From here on the data is read: a failure is `Unreadable`, `OutOfMemory`, `Execution` or
    // `TooManyRows`.
    let (ipc, rows) = collect_ipc(&ctx, physical).await.map_err(without_values)?;
    checked.check_output_rows(rows).map_err(TaskFailure::TooManyRows)?;
    Ok((ipc, rows, checked.rewrites))
}

/// A query that failed while running. Its error goes to the analyst, who must not learn the data
/// from it: an error from a cast or a function on a column can quote a value of a group the
/// threshold would have dropped (`Cannot cast string 'x' to …`), so such errors are withheld.
/// Errors of decryption and storage carry no value and are kept; how much memory a query
/// wanted depends on the data (how many groups it holds), so that is withheld too.
///
/// Objects that do not decrypt or parse are `Unreadable`, which refunds the task: their bytes
/// are the ones the manifest lists (checked before the scan), so it is the owner who published
/// them broken, and a dataset that fails every query must not earn its price. Running out of
/// memory depends on the data (how many groups there are), so it is a failure while running.
fn without_values(error: DataFusionError) -> TaskFailure {
    match error.find_root() {
        DataFusionError::ParquetError(_) | DataFusionError::ObjectStore(_) => TaskFailure::Unreadable(error),
        DataFusionError::ResourcesExhausted(_) => TaskFailure::OutOfMemory,
        _ => TaskFailure::Execution,
    }
}

/// Where the enclave's in-memory store serves the dataset's objects.
const STORE_URL: &str = "memory://enclave/";
const DATASET_DIR: &str = "dataset";

/// Runs `sql` over batches already in memory, unchecked, under `memory_limit` (the cap's test).
#[cfg(test)]
async fn run_with_limit(
    dataset: (SchemaRef, Vec<RecordBatch>),
    sql: &str,
    memory_limit: usize,
) -> Result<(Vec<u8>, u64), DataFusionError> {
    let (schema, batches) = dataset;
    let ctx = enclave_context(memory_limit)?;
    ctx.register_table(DATASET_TABLE, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    let physical = ctx.execute_logical_plan(plan_sql(&ctx, sql).await?).await?.create_physical_plan().await?;
    collect_ipc(&ctx, physical).await
}

/// Runs a planned query, returning the result as an Arrow IPC stream and its row count.
async fn collect_ipc(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> Result<(Vec<u8>, u64), DataFusionError> {
    let result_schema: SchemaRef = plan.schema();
    let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &result_schema)?;
    for batch in &batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok((out, rows))
}

/// The dataset columns `sql` reads once checked against `policy`, planned on `schema` (no data
/// needed): the keys a task asks for.
pub(crate) async fn columns_read(
    schema: &[ColumnEntry],
    sql: &str,
    policy: &Policy,
) -> Result<Vec<String>, TaskFailure> {
    let schema = ColumnEntry::arrow_schema(schema).map_err(DataFusionError::from)?;
    Ok(check_on_schema(schema, sql, policy, None).await?.columns)
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn numbers(n: i64) -> (SchemaRef, Vec<RecordBatch>) {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap();
        (schema, vec![batch])
    }

    #[tokio::test]
    async fn a_query_over_its_memory_cap_fails_instead_of_spilling() {
        let err =
            run_with_limit(numbers(200_000), "SELECT n FROM dataset ORDER BY n DESC", 64 * 1024).await.unwrap_err();
        assert!(err.to_string().contains("Resources exhausted"), "{err}");
        let (_, rows) =
            run_with_limit(numbers(1_000), "SELECT n FROM dataset ORDER BY n DESC", 64 << 20).await.unwrap();
        assert_eq!(rows, 1_000);
    }

    #[test]
    fn an_error_while_running_is_withheld_unless_it_cannot_carry_a_value() {
        // The checker makes casts and divisions total; whatever else fails on a value is withheld.
        let cast = DataFusionError::ArrowError(
            Box::new(arrow::error::ArrowError::CastError("Cannot cast string 'Alice' to value of Int32 type".into())),
            None,
        );
        assert_eq!(
            without_values(cast).to_string(),
            "the query failed while running; its error is withheld because it could quote the data (a cast or function that fails on a column's value)"
        );
        let memory = DataFusionError::ResourcesExhausted("Failed to allocate 1 MB".into());
        assert_eq!(
            without_values(memory).to_string(),
            "the query needed more memory than the 1 GiB the enclave gives a query (how much is withheld: it depends on the data); group more coarsely or filter first"
        );
    }

    #[tokio::test]
    async fn the_checked_plan_names_the_columns_it_reads() {
        let schema = ["a", "b", "c", "id"].map(|name| ColumnEntry {
            name: name.into(),
            data_type: "Int64".into(),
            key_id: strongroom_types::KeyId::column(name),
        });
        let policy = Policy::parse(
            "version = 2\nname = \"t\"\n[columns]\na = \"dimension\"\nc = { role = \"measure\", bounds = [0, 9] }\n\
             id = \"identifier\"\n[aggregation]\nfunctions = [\"sum\"]\nmin_group_size = 2\n",
        )
        .unwrap();
        let read = |sql: &'static str| {
            let (schema, policy) = (schema.clone(), policy.clone());
            async move { columns_read(&schema, sql, &policy).await.map_err(|e| e.to_string()) }
        };
        // The identifier is read too: the rewrite counts each group's distinct units.
        assert_eq!(read("SELECT a, SUM(c) FROM dataset WHERE a > 1 GROUP BY a").await.unwrap(), ["a", "c", "id"]);
        assert_eq!(read("SELECT 1").await.unwrap(), Vec::<String>::new());
        assert!(read("SELECT * FROM dataset").await.unwrap_err().contains("rule row_level_output"));
        assert!(read("SELECT b, SUM(c) FROM dataset GROUP BY b").await.unwrap_err().contains("rule hidden_column"));
        assert!(read("SELECT nope FROM dataset").await.unwrap_err().contains("No field named nope"));
    }
}
