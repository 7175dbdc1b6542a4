//! `make bench-query`: TPC-H on plaintext Parquet versus column-encrypted Parquet, one process.
//!
//! Generates TPC-H data (tpchgen, scale factor `STRONGROOM_TPCH_SF`, default 1), writes every
//! table twice in one pass — plain, and with a key per column cut into objects exactly as
//! datasets are published — then runs the same queries through DataFusion on both, the
//! encrypted copy through the enclave's decryption factory, decrypting while scanning.
//! Prints one line per query (best of `STRONGROOM_TPCH_RUNS`, default 5, interleaved) and last
//! `query-overhead: geomean=<ratio> max=<ratio> sf=<sf>`. Then the TPC-H aggregates that a
//! licence on `lineitem` allows (Q1 and Q6 with their computed sums left out) run on the
//! encrypted copy twice, as they are and checked and rewritten by the licence checker (the
//! threshold, then differential privacy), and it prints
//! `policy-overhead: geomean=<ratio> max=<ratio> sf=<sf>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::record_batch::RecordBatchReader;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use strongroom_dataplane::{self as dataplane, DecryptionFactory, EncryptedObject, Layout, ObjectWriter};
use strongroom_types::{DataVersion, DatasetId, DatasetKeys};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator, PartSuppGenerator,
    RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow, SupplierArrow,
};

/// The TPC-H queries run, as the TPC-H specification states them (validation parameters).
const QUERIES: [(&str, &str); 7] = [
    (
        "q1",
        "select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty, sum(l_extendedprice) as sum_base_price, \
         sum(l_extendedprice * (1 - l_discount)) as sum_disc_price, \
         sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge, avg(l_quantity) as avg_qty, \
         avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc, count(*) as count_order \
         from lineitem where l_shipdate <= date '1998-12-01' - interval '90' day \
         group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus",
    ),
    (
        "q3",
        "select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate, o_shippriority \
         from customer, orders, lineitem where c_mktsegment = 'BUILDING' and c_custkey = o_custkey \
         and l_orderkey = o_orderkey and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15' \
         group by l_orderkey, o_orderdate, o_shippriority order by revenue desc, o_orderdate limit 10",
    ),
    (
        "q5",
        "select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue \
         from customer, orders, lineitem, supplier, nation, region \
         where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey \
         and c_nationkey = s_nationkey and s_nationkey = n_nationkey and n_regionkey = r_regionkey \
         and r_name = 'ASIA' and o_orderdate >= date '1994-01-01' and o_orderdate < date '1995-01-01' \
         group by n_name order by revenue desc",
    ),
    (
        "q6",
        "select sum(l_extendedprice * l_discount) as revenue from lineitem \
         where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01' \
         and l_discount between 0.05 and 0.07 and l_quantity < 24",
    ),
    (
        "q10",
        "select c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) as revenue, c_acctbal, n_name, \
         c_address, c_phone, c_comment from customer, orders, lineitem, nation \
         where c_custkey = o_custkey and l_orderkey = o_orderkey and o_orderdate >= date '1993-10-01' \
         and o_orderdate < date '1994-01-01' and l_returnflag = 'R' and c_nationkey = n_nationkey \
         group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment \
         order by revenue desc limit 20",
    ),
    (
        "q12",
        "select l_shipmode, \
         sum(case when o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH' then 1 else 0 end) as high_line_count, \
         sum(case when o_orderpriority <> '1-URGENT' and o_orderpriority <> '2-HIGH' then 1 else 0 end) as low_line_count \
         from orders, lineitem where o_orderkey = l_orderkey and l_shipmode in ('MAIL', 'SHIP') \
         and l_commitdate < l_receiptdate and l_shipdate < l_commitdate \
         and l_receiptdate >= date '1994-01-01' and l_receiptdate < date '1995-01-01' \
         group by l_shipmode order by l_shipmode",
    ),
    (
        "q14",
        "select 100.00 * sum(case when p_type like 'PROMO%' then l_extendedprice * (1 - l_discount) else 0 end) \
         / sum(l_extendedprice * (1 - l_discount)) as promo_revenue from lineitem, part \
         where l_partkey = p_partkey and l_shipdate >= date '1995-09-01' and l_shipdate < date '1995-10-01'",
    ),
];

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>>;

/// Each table's name, schema and batch stream at scale factor `sf`.
fn tables(sf: f64) -> Vec<(&'static str, SchemaRef, Batches)> {
    fn t<I: RecordBatchReader + 'static>(name: &'static str, it: I) -> (&'static str, SchemaRef, Batches) {
        (name, it.schema(), Box::new(it))
    }
    vec![
        t("region", RegionArrow::new(RegionGenerator::new(sf, 1, 1))),
        t("nation", NationArrow::new(NationGenerator::new(sf, 1, 1))),
        t("supplier", SupplierArrow::new(SupplierGenerator::new(sf, 1, 1))),
        t("customer", CustomerArrow::new(CustomerGenerator::new(sf, 1, 1))),
        t("part", PartArrow::new(PartGenerator::new(sf, 1, 1))),
        t("partsupp", PartSuppArrow::new(PartSuppGenerator::new(sf, 1, 1))),
        t("orders", OrderArrow::new(OrderGenerator::new(sf, 1, 1))),
        t("lineitem", LineItemArrow::new(LineItemGenerator::new(sf, 1, 1))),
    ]
}

struct Written {
    keys: DatasetKeys,
    dataset: DatasetId,
}

/// Ingest totals for one kind of write.
#[derive(Default)]
struct Ingest {
    rows: u64,
    bytes: u64,
    time: Duration,
}

/// A licence on lineitem: each line its own unit (no identifier), prices measures.
const LINEITEM_POLICY: &str = r#"
version = 2
name = "lineitem"
[columns]
l_returnflag = "dimension"
l_linestatus = "dimension"
l_shipdate = "dimension"
l_discount = "filter"
l_quantity = "filter"
l_extendedprice = { role = "measure", bounds = [0, 200000] }
l_tax = { role = "measure", bounds = [0, 1] }
[aggregation]
functions = ["count", "sum", "avg"]
min_group_size = 10
"#;

const LINEITEM_DP: &str = r#"
[differential_privacy]
required = true
delta = 1e-6
max_groups_per_unit = 1
max_rows_per_unit = 1
"#;

/// Q1 and Q6 as the licence allows them: sums and averages of columns as they are.
const LICENSED_QUERIES: [(&str, &str); 2] = [
    (
        "q1-licensed",
        "select l_returnflag, l_linestatus, sum(l_extendedprice) as sum_base_price, avg(l_extendedprice) as avg_price, \
         avg(l_tax) as avg_tax, count(*) as count_order from dataset \
         where l_shipdate <= date '1998-12-01' - interval '90' day \
         group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus",
    ),
    (
        "q6-licensed",
        "select sum(l_extendedprice) as revenue from dataset \
         where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01' \
         and l_discount between 0.05 and 0.07 and l_quantity < 24",
    ),
];

fn main() -> anyhow::Result<()> {
    let sf: f64 = std::env::var("STRONGROOM_TPCH_SF").ok().map(|s| s.parse()).transpose()?.unwrap_or(1.0);
    let runs: usize = std::env::var("STRONGROOM_TPCH_RUNS").ok().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let (plain_dir, enc_dir) = (dir.path().join("plain"), dir.path().join("encrypted"));
    std::fs::create_dir_all(&plain_dir)?;
    std::fs::create_dir_all(&enc_dir)?;

    eprintln!("bench-query: generating TPC-H sf={sf} and writing it plain and encrypted…");
    let (mut plain, mut encrypted) = (Ingest::default(), Ingest::default());
    let mut written = HashMap::new();
    // Both copies are cut the way datasets are published: the same row groups and objects.
    let layout = Layout::default();
    for (name, schema, batches) in tables(sf) {
        let keys = DatasetKeys::generate(schema.fields().iter().map(|f| f.name().as_str()));
        let dataset = DatasetId::from(alloy::primitives::keccak256(name.as_bytes()));
        let (plain_table, enc_table) = (plain_dir.join(name), enc_dir.join(name));
        std::fs::create_dir_all(&plain_table)?;
        std::fs::create_dir_all(&enc_table)?;
        let mut plain_writer = PlainObjects::new(&plain_table, schema.clone(), layout);
        let mut enc_writer = ObjectWriter::new(schema.clone(), &keys, dataset, DataVersion::FIRST, layout)?;
        let mut store = |object: EncryptedObject| -> anyhow::Result<()> {
            encrypted.bytes += object.entry.bytes;
            Ok(std::fs::write(enc_table.join(&object.entry.name), &object.ciphertext)?)
        };
        for batch in batches {
            let batch = batch?;
            let started = Instant::now();
            plain_writer.write(&batch)?;
            plain.time += started.elapsed();
            let started = Instant::now();
            for object in enc_writer.write(&batch)? {
                store(object)?;
            }
            encrypted.time += started.elapsed();
            plain.rows += batch.num_rows() as u64;
            encrypted.rows += batch.num_rows() as u64;
        }
        let started = Instant::now();
        plain.bytes += plain_writer.finish()?;
        plain.time += started.elapsed();
        let started = Instant::now();
        if let Some(object) = enc_writer.finish()? {
            store(object)?;
        }
        encrypted.time += started.elapsed();
        written.insert(name, Written { keys, dataset });
    }
    for (label, ingest) in [("plain", &plain), ("encrypted", &encrypted)] {
        let secs = ingest.time.as_secs_f64();
        println!(
            "ingest-{label}: rows={} bytes={} seconds={secs:.2} rows_per_s={:.0} mb_per_s={:.1}",
            ingest.rows,
            ingest.bytes,
            ingest.rows as f64 / secs,
            ingest.bytes as f64 / secs / 1e6
        );
    }

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let plain_ctx = context(&plain_dir, None).await?;
        let enc_ctx = context(&enc_dir, Some(&written)).await?;
        let mut ratios = Vec::new();
        for (name, sql) in QUERIES {
            let (mut best_plain, mut best_enc) = (Duration::MAX, Duration::MAX);
            let mut rows = (0, 0);
            for _ in 0..runs {
                let (t, n) = time(&plain_ctx, sql).await?;
                best_plain = best_plain.min(t);
                rows.0 = n;
                let (t, n) = time(&enc_ctx, sql).await?;
                best_enc = best_enc.min(t);
                rows.1 = n;
            }
            anyhow::ensure!(rows.0 == rows.1, "{name}: plaintext gave {} rows, encrypted {}", rows.0, rows.1);
            let ratio = best_enc.as_secs_f64() / best_plain.as_secs_f64();
            ratios.push(ratio);
            println!(
                "{name}: plain_ms={:.1} encrypted_ms={:.1} ratio={ratio:.3} rows={}",
                best_plain.as_secs_f64() * 1e3,
                best_enc.as_secs_f64() * 1e3,
                rows.0
            );
        }
        let geomean = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        let max = ratios.iter().cloned().fold(f64::MIN, f64::max);
        println!("query-overhead: geomean={geomean:.3} max={max:.3} sf={sf}");

        // The licensed queries read lineitem as the table `dataset`, encrypted.
        let lineitem = &written["lineitem"];
        register_encrypted(&enc_ctx, &enc_dir, "lineitem", lineitem, strongroom_policy::DATASET_TABLE).await?;
        let mut ratios = Vec::new();
        for (label, policy) in
            [("threshold", LINEITEM_POLICY.to_owned()), ("dp", format!("{LINEITEM_POLICY}{LINEITEM_DP}"))]
        {
            let policy = strongroom_types::Policy::parse(&policy)?;
            for (name, sql) in LICENSED_QUERIES {
                let (mut best_open, mut best_checked) = (Duration::MAX, Duration::MAX);
                let mut rows = (0, 0);
                for _ in 0..runs {
                    let (t, n) = time(&enc_ctx, sql).await?;
                    best_open = best_open.min(t);
                    rows.0 = n;
                    let (t, n) = time_checked(&enc_ctx, sql, &policy).await?;
                    best_checked = best_checked.min(t);
                    rows.1 = n;
                }
                anyhow::ensure!(rows.0 == rows.1, "{name} {label}: unchecked gave {} rows, checked {}", rows.0, rows.1);
                let ratio = best_checked.as_secs_f64() / best_open.as_secs_f64();
                ratios.push(ratio);
                println!(
                    "{name}-{label}: encrypted_ms={:.1} checked_ms={:.1} ratio={ratio:.3} rows={}",
                    best_open.as_secs_f64() * 1e3,
                    best_checked.as_secs_f64() * 1e3,
                    rows.0
                );
            }
        }
        let geomean = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        let max = ratios.iter().cloned().fold(f64::MIN, f64::max);
        println!("policy-overhead: geomean={geomean:.3} max={max:.3} sf={sf}");
        anyhow::Ok(())
    })
}

/// Writes plaintext Parquet cut like [`ObjectWriter`] cuts published datasets.
struct PlainObjects {
    dir: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    object_rows: usize,
    open: Option<(ArrowWriter<std::fs::File>, usize)>,
    objects: usize,
    bytes: u64,
}

impl PlainObjects {
    fn new(dir: &Path, schema: SchemaRef, layout: Layout) -> Self {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(layout.row_group_rows))
            .set_max_row_group_bytes(Some(layout.row_group_bytes))
            .build();
        Self { dir: dir.to_owned(), schema, props, object_rows: layout.object_rows, open: None, objects: 0, bytes: 0 }
    }

    fn write(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let (writer, rows) = match &mut self.open {
                Some(open) => open,
                None => {
                    let file = std::fs::File::create(self.dir.join(dataplane::object_name(self.objects)))?;
                    self.open.insert((ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))?, 0))
                }
            };
            let take = (self.object_rows - *rows).min(batch.num_rows() - offset);
            writer.write(&batch.slice(offset, take))?;
            *rows += take;
            offset += take;
            if *rows == self.object_rows {
                self.close()?;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> anyhow::Result<()> {
        if let Some((writer, _)) = self.open.take() {
            writer.close()?;
            let path = self.dir.join(dataplane::object_name(self.objects));
            self.bytes += std::fs::metadata(path)?.len();
            self.objects += 1;
        }
        Ok(())
    }

    /// Closes the last object; returns the bytes written.
    fn finish(mut self) -> anyhow::Result<u64> {
        self.close()?;
        Ok(self.bytes)
    }
}

/// A session over the tables in `dir`. With `keys`, each table is read through its decryption
/// factory, configured as in the enclave (page index off).
async fn context(dir: &Path, keys: Option<&HashMap<&str, Written>>) -> anyhow::Result<SessionContext> {
    let ctx = match keys {
        Some(_) => SessionContext::new_with_config(dataplane::scan_config()),
        None => SessionContext::new(),
    };
    for (name, _, _) in tables(0.0) {
        let url = format!("{}/", dir.join(name).to_str().expect("UTF-8 temp path"));
        match keys.and_then(|k| k.get(name)) {
            Some(w) => register_encrypted(&ctx, dir, name, w, name).await?,
            None => ctx.register_parquet(name, &url, ParquetReadOptions::default()).await?,
        }
    }
    Ok(ctx)
}

/// Plans `sql`, checks and rewrites it under `policy` (epsilon 1), and runs it, as the enclave does.
/// Registers the encrypted objects of table `name` under `dir` as `as_table`, read through their
/// decryption factory.
async fn register_encrypted(
    ctx: &SessionContext,
    dir: &Path,
    name: &str,
    written: &Written,
    as_table: &str,
) -> anyhow::Result<()> {
    let objects = std::fs::read_dir(dir.join(name))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let factory = DecryptionFactory::new(written.keys.clone(), written.dataset, DataVersion::FIRST, objects);
    let url = format!("{}/", dir.join(name).to_str().expect("UTF-8 temp path"));
    Ok(dataplane::register_encrypted_table(ctx, as_table, &url, factory).await?)
}

async fn time_checked(
    ctx: &SessionContext,
    sql: &str,
    policy: &strongroom_types::Policy,
) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let plan = strongroom_policy::plan_job(ctx, sql, policy).await?;
    let checked = strongroom_policy::check(&plan, policy, Some(1_000_000), &strongroom_policy::NoiseSeed::random())?;
    let batches = ctx.execute_logical_plan(checked.plan).await?.collect().await?;
    Ok((started.elapsed(), batches.iter().map(|b| b.num_rows()).sum()))
}

async fn time(ctx: &SessionContext, sql: &str) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok((started.elapsed(), batches.iter().map(|b| b.num_rows()).sum()))
}
