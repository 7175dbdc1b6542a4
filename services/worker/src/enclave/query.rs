//! Read-only SQL over the decrypted dataset, on DataFusion.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::logical_expr::LogicalPlan;
use strongroom_types::ColumnEntry;

/// The table name analysts query.
pub(crate) const TABLE: &str = "dataset";

/// Runs `sql` against the dataset and returns the result as an Arrow IPC stream and its row count.
/// DDL, DML and statements (SET, transactions…) are refused, so a query can only read.
pub(crate) async fn run(dataset: (SchemaRef, Vec<RecordBatch>), sql: &str) -> Result<(Vec<u8>, u64), DataFusionError> {
    let (schema, batches) = dataset;
    let ctx = SessionContext::new();
    ctx.register_table(TABLE, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let frame = ctx.sql_with_options(sql, options).await?;
    let result_schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
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

/// The dataset columns `sql` reads, from its optimized plan against `schema` (no data needed).
pub(crate) async fn columns_read(schema: &[ColumnEntry], sql: &str) -> Result<Vec<String>, DataFusionError> {
    let fields = schema
        .iter()
        .map(|c| Ok(Field::new(&c.name, DataType::from_str(&c.data_type)?, true)))
        .collect::<Result<Vec<_>, DataFusionError>>()?;
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let ctx = SessionContext::new();
    ctx.register_table(TABLE, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let plan = ctx.sql_with_options(sql, options).await?.into_optimized_plan()?;
    let mut columns = BTreeSet::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let source = scan.source.schema();
            match &scan.projection {
                Some(indices) => columns.extend(indices.iter().map(|i| source.field(*i).name().clone())),
                None => columns.extend(source.fields().iter().map(|f| f.name().clone())),
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(columns.into_iter().collect())
}
