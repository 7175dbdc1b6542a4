//! The licence checker: a query's logical plan, checked against a licence policy and rewritten
//! so that it holds. The enclave runs it before it asks for a key and again before it scans; the
//! client's preflight runs the very same code on the published schema, so what the analyst is
//! told before paying is what the enclave will decide.
//!
//! ```text
//!   SQL ──DataFusion──▶ analysed plan ──check──▶ Violation (rule, column, fragment)
//!                                          └────▶ Checked { rewritten plan, columns to unlock }
//! ```
//!
//! The check walks the plan, not the SQL text, so aliases, CTEs, subqueries, casts and
//! functions cannot hide a column: every expression below the aggregate is rewritten in terms
//! of the dataset's own columns before its roles are checked. It takes the plan before the
//! optimizer runs (names resolved, wildcards expanded): the optimizer's rewrites keep the
//! meaning but not the shape, and the rewritten plan goes through the optimizer afterwards.
//! Anything the checker does not recognise is refused.

mod check;
mod clamp;
mod noise;
mod violation;

pub use check::{Checked, DATASET_TABLE, Refusal, check, check_measures, check_on_schema, plan_job, plan_sql};
pub use noise::NoiseSeed;
pub use violation::{Rule, Violation};
