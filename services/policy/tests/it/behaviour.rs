//! The behaviour table: `policies/tests/*.slt`, each case a query with the verdict it must get
//! under one of the shipped policies, on the small fixture `policies/tests/customers.csv` (no
//! chain, no encryption: the checker and the rewrite are what is under test). The format:
//!
//! ```text
//! policy aggregate-with-threshold.toml     the policy the cases below run under
//!
//! # what the case shows
//! query rows                               rows | refused | error
//! SELECT ...                               the SQL, on one or more lines
//! ----
//! east 10                                  rows: one line each, values split by a space
//! ```
//!
//! `refused` expects the violation's exact message, `error` the planning error's. Every case is
//! also run through the preflight (the same check on the schema alone, as the client runs it
//! before paying), which must decide the same. With
//! `STRONGROOM_COMPLETE=1` the run writes what each case got into the files instead (then read
//! the diff: every changed verdict is a behaviour change to review).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{CsvReadOptions, SessionContext};
use strongroom_dataplane::ColumnEntry;
use strongroom_policy::{NoiseSeed, Refusal, check, check_on_schema, plan_job};
use strongroom_types::Policy;

pub(crate) fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

#[derive(Debug)]
struct Case {
    file: String,
    line: usize,
    policy: String,
    /// The task's epsilon, in micro-units.
    epsilon: u64,
    kind: String,
    sql: String,
    expected: Vec<String>,
    /// Where the expected lines are in the file, [start, end).
    expected_lines: (usize, usize),
}

fn parse(file: &Path) -> Vec<Case> {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut cases = Vec::new();
    let mut policy = None;
    let mut epsilon = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
        } else if let Some(p) = line.strip_prefix("policy ") {
            policy = Some(p.trim().to_owned());
            i += 1;
        } else if let Some(e) = line.strip_prefix("epsilon ") {
            let e: f64 = e.trim().parse().unwrap_or_else(|_| panic!("{name}:{}: a bad epsilon", i + 1));
            epsilon = (e * 1_000_000.0).round() as u64;
            i += 1;
        } else if let Some(kind) = line.strip_prefix("query ") {
            let start = i + 1;
            assert!(matches!(kind, "rows" | "refused" | "error"), "{name}:{start}: unknown case kind `{kind}`");
            let mut sql = Vec::new();
            i += 1;
            while i < lines.len() && lines[i].trim_end() != "----" {
                sql.push(lines[i]);
                i += 1;
            }
            assert!(i < lines.len(), "{name}:{start}: the query has no `----` line");
            i += 1;
            let mut expected = Vec::new();
            let from = i;
            while i < lines.len() && !lines[i].trim().is_empty() {
                expected.push(lines[i].trim_end().to_owned());
                i += 1;
            }
            let policy = policy.clone().unwrap_or_else(|| panic!("{name}:{start}: no `policy` line before the case"));
            cases.push(Case {
                file: name.clone(),
                line: start,
                policy,
                epsilon,
                kind: kind.into(),
                sql: sql.join("\n"),
                expected,
                expected_lines: (from, i),
            });
        } else {
            panic!("{name}:{}: expected `policy`, `query` or a comment, found `{line}`", i + 1);
        }
    }
    cases
}

/// The fixture as the table `dataset`, in memory.
pub(crate) async fn fixture() -> SessionContext {
    let schema = Schema::new(vec![
        Field::new("customer_id", DataType::Int64, true),
        Field::new("email", DataType::Utf8, true),
        Field::new("age", DataType::Int64, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("plan", DataType::Utf8, true),
        Field::new("monthly_spend", DataType::Float64, true),
    ]);
    let ctx = SessionContext::new();
    let csv = policies_dir().join("tests/customers.csv");
    let frame = ctx.read_csv(csv.to_str().unwrap(), CsvReadOptions::new().schema(&schema)).await.unwrap();
    let batches = frame.collect().await.unwrap();
    let table = datafusion::datasource::MemTable::try_new(Arc::new(schema), vec![batches]).unwrap();
    ctx.register_table(strongroom_policy::DATASET_TABLE, Arc::new(table)).unwrap();
    ctx
}

/// What the case got: rows as lines, or the refusal or error message.
async fn verdict(ctx: &SessionContext, policy: &Policy, epsilon: u64, sql: &str) -> (String, Vec<String>) {
    let plan = plan_job(ctx, sql, policy).await;
    // The preflight decides on the schema as the manifest records it, with no data: it must
    // decide exactly as the check on the table itself.
    let preflight = check_on_schema(manifest_schema(ctx).await, sql, policy, Some(epsilon)).await;
    let plan = match plan {
        Ok(plan) => plan,
        Err(Refusal::Query(e)) => {
            let Err(Refusal::Query(p)) = preflight else { panic!("the preflight plans `{sql}`, the table does not") };
            assert_eq!(p.to_string(), e.to_string(), "the preflight's error for `{sql}`");
            return ("error".into(), lines_of(&e.to_string()));
        }
        Err(Refusal::Licence(violation)) => {
            let Err(Refusal::Licence(p)) = preflight else { panic!("the preflight does not refuse `{sql}`") };
            assert_eq!(p, violation, "the preflight's refusal of `{sql}`");
            return ("refused".into(), lines_of(&violation.to_string()));
        }
    };
    let checked = match check(&plan, policy, Some(epsilon), &NoiseSeed::random()) {
        Ok(checked) => checked,
        Err(violation) => {
            let Err(Refusal::Licence(p)) = preflight else { panic!("the preflight does not refuse `{sql}`") };
            assert_eq!(p, violation, "the preflight's refusal of `{sql}`");
            return ("refused".into(), lines_of(&violation.to_string()));
        }
    };
    let Ok(preflight) = preflight else { panic!("the preflight refuses `{sql}`, the check allows it") };
    assert_eq!((&preflight.columns, &preflight.rewrites), (&checked.columns, &checked.rewrites), "`{sql}`");
    let batches = ctx.execute_logical_plan(checked.plan.clone()).await.unwrap().collect().await.unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if let Err(violation) = checked.check_output_rows(rows as u64) {
        return ("refused".into(), lines_of(&violation.to_string()));
    }
    let options = FormatOptions::default().with_null("NULL");
    let mut lines = Vec::new();
    for batch in &batches {
        let formatters: Vec<_> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap()).collect();
        for row in 0..batch.num_rows() {
            lines.push(formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join(" "));
        }
    }
    ("rows".into(), lines)
}

/// The fixture's schema as a manifest lists it (names and type names) and the preflight reads it.
async fn manifest_schema(ctx: &SessionContext) -> datafusion::arrow::datatypes::SchemaRef {
    let table = ctx.table(strongroom_policy::DATASET_TABLE).await.unwrap();
    ColumnEntry::arrow_schema(&ColumnEntry::of_schema(table.schema().as_arrow())).unwrap()
}

fn lines_of(message: &str) -> Vec<String> {
    message.lines().map(String::from).collect()
}

#[tokio::test]
async fn the_behaviour_table_holds() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(policies_dir().join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    let ctx = fixture().await;
    let complete = std::env::var_os("STRONGROOM_COMPLETE").is_some();
    let mut failures = Vec::new();
    let mut count = 0;
    for file in &files {
        let mut lines: Vec<String> = std::fs::read_to_string(file).unwrap().lines().map(String::from).collect();
        for case in parse(file).into_iter().rev() {
            count += 1;
            let text = std::fs::read_to_string(policies_dir().join(&case.policy)).unwrap();
            let policy = Policy::parse(&text).unwrap_or_else(|e| panic!("{}: policy {}: {e}", case.file, case.policy));
            let (kind, got) = verdict(&ctx, &policy, case.epsilon, &case.sql).await;
            if kind != case.kind || got != case.expected {
                failures.push(format!(
                    "{}:{} under {}\n  {}\nexpected {}:\n  {}\ngot {kind}:\n  {}",
                    case.file,
                    case.line,
                    case.policy,
                    case.sql.replace('\n', "\n  "),
                    case.kind,
                    case.expected.join("\n  "),
                    got.join("\n  ")
                ));
            }
            let (from, to) = case.expected_lines;
            lines.splice(from..to, got);
            lines[case.line - 1] = format!("query {kind}");
        }
        if complete {
            std::fs::write(file, lines.join("\n") + "\n").unwrap();
        }
    }
    if complete {
        return;
    }
    assert!(count >= 40, "the behaviour table has {count} cases; it should have at least 40");
    assert!(failures.is_empty(), "{} of {count} behaviour cases failed:\n\n{}", failures.len(), failures.join("\n\n"));
    println!("behaviour table: {count} cases hold ({} files in policies/tests)", files.len());
}
