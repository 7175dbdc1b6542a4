//! The walk: refuse what the licence forbids, then rebuild the aggregate over the dataset so that
//! every group carries the count of its distinct privacy units, and drop the groups with too few.
//!
//! A query that reads the dataset is, once checked, a chain of nodes:
//!
//! ```text
//!   post-processing   Projection / Filter (HAVING) / Sort / Limit / SubqueryAlias / Aggregate
//!        ▲            (only ever sees released rows: anything is allowed here but subqueries)
//!   the aggregate     GROUP BY dimensions; count, sum, avg, … of measures  ◀── rebuilt here
//!        ▲
//!   row level         Projection / Filter / SubqueryAlias: inlined into the aggregate
//!        ▲
//!   TableScan dataset (exactly once)
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::MemTable;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, sum};
use datafusion::logical_expr::expr::AggregateFunction as AggregateCall;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Cast, Distinct, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, TryCast,
    lit, when,
};
use datafusion::logical_expr::{ExprFunctionExt, Statement};
use strongroom_types::{AggregateFunction, Policy, Role};

use crate::clamp::{Clamp, bounds_in_type};
use crate::noise::{Noise, NoiseSeed};
use crate::{Rule, Violation};

/// The table name analysts query.
pub const DATASET_TABLE: &str = "dataset";

/// The column the rewrite adds to the aggregate: each group's distinct privacy units.
const UNITS_COLUMN: &str = "__strongroom_units";

/// Scalar functions a query may apply to dimension and filter columns (bucketing, date parts,
/// string tidying). Measures and the identifier never go through a function.
const SCALAR_FUNCTIONS: &[&str] = &[
    "ceil",
    "floor",
    "round",
    "trunc",
    "coalesce",
    "nullif",
    "lower",
    "upper",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "substr",
    "left",
    "right",
    "length",
    "character_length",
    "starts_with",
    "ends_with",
    "concat",
    "date_trunc",
    "date_part",
];

/// The argument positions of an allowed function that may depend on a row; the others (a
/// length, a precision, a date part) must be constants, or a value chosen by CASE could make the
/// function fail on one row only, and the failure tell that the row exists.
fn row_arguments(function: &str) -> Option<usize> {
    match function {
        "substr" | "left" | "right" | "round" | "trunc" => Some(0),
        "date_trunc" | "date_part" => Some(1),
        _ => None,
    }
}

fn constant_options(function: &str, args: &[Expr], expr: &Expr) -> Result<(), Violation> {
    let Some(data) = row_arguments(function) else { return Ok(()) };
    match args.iter().enumerate().find(|(i, a)| *i != data && !a.column_refs().is_empty()) {
        Some((i, _)) => Err(Violation::new(
            Rule::ScalarFunction,
            format!("argument {} of `{function}` must be a constant", i + 1),
            expr,
        )),
        None => Ok(()),
    }
}

/// A query that holds the licence, rewritten to enforce it.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The plan to run: the query with the threshold (and, later, noise) built in.
    pub plan: LogicalPlan,
    /// The dataset columns the plan reads: the keys the task needs.
    pub columns: Vec<String>,
    /// The most rows the result may have, from the policy.
    pub max_output_rows: Option<u64>,
    /// What the rewrite does, in words, for the analyst.
    pub rewrites: Vec<String>,
}

impl Checked {
    /// Refuses a result with more rows than the licence allows.
    pub fn check_output_rows(&self, rows: u64) -> Result<(), Violation> {
        match self.max_output_rows {
            Some(max) if rows > max => Err(Violation::new(
                Rule::OutputRows,
                format!("the result has more than {max} rows, the most this licence releases; aggregate more coarsely"),
                format!("{rows} rows"),
            )),
            _ => Ok(()),
        }
    }
}

/// Plans read-only `sql` (no DDL, DML or statements) into the plan [`check`] takes.
pub async fn plan_sql(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan, DataFusionError> {
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    Ok(ctx.sql_with_options(sql, options).await?.into_unoptimized_plan())
}

/// Plans a task's job under `policy`: its SQL, or, when the licence has templates, the call
/// `EXECUTE name(arg, …)` of one of them with each argument a whole number within its
/// parameter's bounds (the only jobs such a licence allows). The plan is then checked like any
/// other: an owner-approved query still gets the threshold and the noise.
pub async fn plan_job(ctx: &SessionContext, job: &str, policy: &Policy) -> Result<LogicalPlan, Refusal> {
    if policy.templates.is_empty() {
        return Ok(plan_sql(ctx, job).await?);
    }
    let names = policy.templates.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
    let only = || format!("this licence allows only its templates, called as EXECUTE name(arguments): {names}");
    let plan = ctx.state().create_logical_plan(job).await?;
    let LogicalPlan::Statement(Statement::Execute(call)) = &plan else {
        return Err(Violation::new(Rule::Template, only(), first_line(job)).into());
    };
    let Some(template) = policy.templates.iter().find(|t| t.name == call.name) else {
        return Err(Violation::new(Rule::Template, only(), &call.name).into());
    };
    if call.parameters.len() != template.parameters.len() {
        return Err(Violation::new(
            Rule::Template,
            format!(
                "template `{}` takes {} arguments ({}), not {}",
                template.name,
                template.parameters.len(),
                template.parameters.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
                call.parameters.len()
            ),
            first_line(job),
        )
        .into());
    }
    let mut values = Vec::with_capacity(call.parameters.len());
    for (argument, parameter) in call.parameters.iter().zip(&template.parameters) {
        let value = match argument {
            Expr::Literal(ScalarValue::Int64(Some(v)), _) => Some(v.to_owned()),
            Expr::Negative(inner) => match inner.as_ref() {
                Expr::Literal(ScalarValue::Int64(Some(v)), _) => v.to_owned().checked_neg(),
                _ => None,
            },
            _ => None,
        };
        match value {
            Some(v) if (parameter.min..=parameter.max).contains(&v) => values.push(ScalarValue::Int64(Some(v))),
            _ => {
                return Err(Violation::new(
                    Rule::Template,
                    format!(
                        "`{}` of template `{}` must be a whole number from {} to {}",
                        parameter.name, template.name, parameter.min, parameter.max
                    ),
                    argument,
                )
                .into());
            }
        }
    }
    Ok(plan_sql(ctx, &template.sql).await?.with_param_values(values)?)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// Why a query cannot run: it does not plan (a typo, another table, a write), or it breaks the
/// licence.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the query does not plan: {0}")]
    Query(#[from] DataFusionError),
    #[error(transparent)]
    Licence(#[from] Violation),
}

/// Plans `sql` on an empty table of `schema` and checks it: the decision the enclave makes
/// before any key is released, made anywhere the schema and the policy are known.
pub async fn check_on_schema(
    schema: SchemaRef,
    sql: &str,
    policy: &Policy,
    epsilon: Option<u64>,
) -> Result<Checked, Refusal> {
    let ctx = SessionContext::new();
    ctx.register_table(DATASET_TABLE, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
    // Planning only: nothing runs, so no noise is drawn from the seed.
    let checked = check(&plan_job(&ctx, sql, policy).await?, policy, epsilon, &NoiseSeed::random())?;
    // The enclave optimises and plans the checked plan before it reads anything; an error there
    // is the query's, and is found here too, before anyone pays.
    ctx.state().create_physical_plan(&checked.plan).await?;
    Ok(checked)
}

/// Refuses a policy whose measures the dataset cannot hold: a measure that is not a number, or
/// whose bounds hold no value of its column's type. The owner's CLI runs it at publish; the
/// checker refuses the same on every query that sums such a measure.
pub fn check_measures(policy: &Policy, schema: &datafusion::arrow::datatypes::Schema) -> Result<(), Violation> {
    for name in policy.columns.keys() {
        let (Some([lo, hi]), Ok(field)) = (policy.bounds(name), schema.field_with_name(name)) else { continue };
        bounds_in_type(lo, hi, field.data_type()).map_err(|reason| {
            Violation::new(Rule::MeasureType, format!("measure `{name}`: {reason}"), name).on(name)
        })?;
    }
    Ok(())
}

/// Checks `plan` (from [`plan_sql`], over the table [`DATASET_TABLE`]) against `policy`.
/// `epsilon` is the task's, in the contract's micro-units (`None` while only planning which keys
/// to ask for: the columns do not depend on it). The noise the plan adds under differential
/// privacy is drawn from `seed`: the same seed draws the same noise for the same groups.
pub fn check(
    plan: &LogicalPlan,
    policy: &Policy,
    epsilon: Option<u64>,
    seed: &NoiseSeed,
) -> Result<Checked, Violation> {
    let scans = refuse_forbidden_nodes(plan)?;
    let mut checker = Checker { policy, epsilon, seed: seed.clone(), columns: BTreeSet::new(), rewrites: Vec::new() };
    let mut plan = match scans {
        0 => plan.clone(),
        // A row-level refusal names the query's output, not the scan it reached.
        _ => checker.rewrite(plan).map_err(|violation| match violation.rule {
            Rule::RowLevelOutput => Violation { fragment: output_names(plan.schema()), ..violation },
            _ => violation,
        })?,
    };
    let max_output_rows = policy.aggregation.max_output_rows;
    if let Some(max) = max_output_rows {
        // One row more than allowed is enough to know the result is too large.
        plan = LogicalPlanBuilder::from(plan)
            .limit(0, Some(max as usize + 1))
            .map_err(internal)?
            .build()
            .map_err(internal)?;
        checker.rewrites.push(format!("a result of more than {max} rows fails the task, which is still charged"));
    }
    Ok(Checked { plan, columns: checker.columns.into_iter().collect(), max_output_rows, rewrites: checker.rewrites })
}

/// The nodes and expressions refused wherever they are, including inside subqueries; returns
/// how many times the dataset is scanned (at most once).
fn refuse_forbidden_nodes(plan: &LogicalPlan) -> Result<usize, Violation> {
    let mut scans = 0;
    let mut refused = None;
    plan.apply_with_subqueries(|node| {
        let verdict = match node {
            LogicalPlan::TableScan(scan) if scan.table_name.table() == DATASET_TABLE => {
                scans += 1;
                match scans {
                    1 => Ok(()),
                    _ => Err(Violation::new(
                        Rule::DatasetReadTwice,
                        "the dataset may be read once per query: self-joins, unions and subqueries that read it \
                         again are refused",
                        &scan.table_name,
                    )),
                }
            }
            LogicalPlan::TableScan(scan) => Err(Violation::new(
                Rule::OtherTable,
                format!("only the table `{DATASET_TABLE}` may be read; table functions and other tables are refused"),
                &scan.table_name,
            )),
            LogicalPlan::Window(window) => Err(Violation::new(
                Rule::WindowFunction,
                "window functions are refused: they compute over single rows",
                list(&window.window_expr),
            )),
            LogicalPlan::Join(join) => {
                Err(Violation::new(Rule::Join, "joins are refused", format!("{} JOIN", join.join_type)))
            }
            LogicalPlan::Union(_) => {
                Err(Violation::new(Rule::SetOperation, "UNION, INTERSECT and EXCEPT are refused", node.display()))
            }
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Distinct(Distinct::All(_))
            | LogicalPlan::EmptyRelation(_)
            | LogicalPlan::Values(_)
            | LogicalPlan::Subquery(_) => Ok(()),
            other => Err(unsupported_node(other)),
        };
        // Subqueries are refused as expressions, wherever they appear.
        let verdict = verdict.and_then(|()| {
            node.expressions().iter().try_for_each(|e| match find_subquery(e) {
                Some(found) => Err(Violation::new(
                    Rule::Subquery,
                    "subqueries are refused: write the query as one aggregate over the dataset",
                    found,
                )),
                None => Ok(()),
            })
        });
        match verdict {
            Ok(()) => Ok(TreeNodeRecursion::Continue),
            Err(violation) => {
                refused = Some(violation);
                Ok(TreeNodeRecursion::Stop)
            }
        }
    })
    .map_err(internal)?;
    match refused {
        Some(violation) => Err(violation),
        None => Ok(scans),
    }
}

fn find_subquery(expr: &Expr) -> Option<String> {
    let mut found = None;
    let _ = expr.apply(|e| {
        if matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::InSubquery(_)
                | Expr::Exists(_)
                | Expr::SetComparison(_)
                | Expr::OuterReferenceColumn(..)
        ) {
            found = Some(e.to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn unsupported_node(node: &LogicalPlan) -> Violation {
    let name = node.display().to_string();
    let name = name.split(':').next().unwrap_or("this").to_owned();
    Violation::new(
        Rule::Unsupported,
        format!("`{name}` is not something this licence checker understands, so it is refused"),
        node.display(),
    )
}

struct Checker<'p> {
    policy: &'p Policy,
    /// The task's epsilon in micro-units; `None` while planning the key request.
    epsilon: Option<u64>,
    /// What the task's noise is drawn from.
    seed: NoiseSeed,
    /// Dataset columns the rewritten plan reads.
    columns: BTreeSet<String>,
    rewrites: Vec<String>,
}

/// Where an expression stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A row-level filter, on the dataset's columns.
    Where,
    /// A group key, on the dataset's columns.
    GroupBy,
    /// Above the aggregate, on the released groups' columns.
    Post,
}

impl Checker<'_> {
    /// Rewrites the post-processing chain down to the aggregate, which it rebuilds.
    fn rewrite(&mut self, plan: &LogicalPlan) -> Result<LogicalPlan, Violation> {
        match plan {
            LogicalPlan::Aggregate(aggregate) if !aggregates_below(&aggregate.input) => self.rebuild(aggregate),
            LogicalPlan::Distinct(Distinct::All(input)) if !aggregates_below(input) => {
                // SELECT DISTINCT is a GROUP BY of its columns.
                let groups = input.schema().columns().into_iter().map(Expr::Column).collect::<Vec<_>>();
                let grouped = LogicalPlanBuilder::from(input.as_ref().clone())
                    .aggregate(groups, Vec::<Expr>::new())
                    .and_then(|b| b.build())
                    .map_err(internal)?;
                let LogicalPlan::Aggregate(aggregate) = &grouped else { unreachable!("built an aggregate") };
                self.rebuild(aggregate)
            }
            LogicalPlan::TableScan(_) => Err(self.row_level()),
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Distinct(Distinct::All(_)) => {
                let inputs =
                    plan.inputs().into_iter().map(|input| self.rewrite(input)).collect::<Result<Vec<_>, _>>()?;
                // Post-processing sees released groups only, but the optimizer pushes a HAVING
                // conjunct on group keys below the aggregate, where it meets every row: its
                // expressions too must be allowed and unable to fail on a value.
                let named = matches!(plan, LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_));
                let mut exprs = Vec::new();
                for expr in plan.expressions() {
                    self.check_scalar(&expr, Place::Post)?;
                    let name = expr.schema_name().to_string();
                    let safe = total(expr)?;
                    exprs.push(if named { safe.alias_if_changed(name).map_err(internal)? } else { safe });
                }
                plan.with_new_exprs(exprs, inputs).map_err(internal)
            }
            other => Err(unsupported_node(other)),
        }
    }

    /// The refusal of a query that outputs rows, listing what the analyst may use instead.
    fn row_level(&self) -> Violation {
        let policy = self.policy;
        let of =
            |role| policy.columns.keys().filter(|c| policy.role(c) == role).cloned().collect::<Vec<_>>().join(", ");
        let functions = policy.aggregation.functions.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ");
        let mut reason = format!(
            "every output row must be an aggregate over at least {} {}; group by the dimensions ({}) and aggregate \
             the measures ({}) with {functions}",
            policy.aggregation.min_group_size,
            self.unit_name(),
            of(Role::Dimension),
            of(Role::Measure),
        );
        let filters = of(Role::Filter);
        if !filters.is_empty() {
            reason.push_str(&format!("; filter on {filters} in WHERE"));
        }
        Violation::new(Rule::RowLevelOutput, reason, "")
    }

    fn unit_name(&self) -> String {
        match self.policy.identifier() {
            Some(identifier) => format!("distinct {identifier}"),
            None => "rows".into(),
        }
    }

    /// Checks the lowest aggregate and everything under it, and rebuilds it straight on the
    /// dataset: the filters conjoined, every expression in terms of the dataset's columns, the
    /// measures clamped, the distinct units counted, the small groups dropped. The result has
    /// the aggregate's own schema, so the nodes above it are unchanged.
    fn rebuild(&mut self, aggregate: &Aggregate) -> Result<LogicalPlan, Violation> {
        let (row_level, predicates, scan) = inline_row_level(&aggregate.input)?;
        for predicate in &predicates {
            self.check_scalar(predicate, Place::Where)?;
        }
        let predicates = predicates.into_iter().map(total).collect::<Result<Vec<_>, _>>()?;
        let mut groups = Vec::with_capacity(aggregate.group_expr.len());
        for group in &aggregate.group_expr {
            if matches!(group, Expr::GroupingSet(_)) {
                return Err(Violation::new(Rule::Unsupported, "GROUPING SETS, ROLLUP and CUBE are refused", group));
            }
            let group = substitute(group, &row_level)?;
            self.check_scalar(&group, Place::GroupBy)?;
            groups.push(total(group)?);
        }
        let mut calls = Vec::with_capacity(aggregate.aggr_expr.len());
        for call in &aggregate.aggr_expr {
            let call = substitute(call, &row_level)?;
            calls.push(self.check_aggregate(&call, scan.schema())?);
        }
        if let Some(private) = self.privacy()? {
            return self.rebuild_private(aggregate, scan, predicates, groups, calls, private);
        }
        let mut aggregates: Vec<Expr> = calls.into_iter().map(|c| c.expr).collect();
        let units = match self.policy.identifier() {
            Some(identifier) => {
                self.columns.insert(identifier.to_owned());
                count_distinct(Expr::Column(Column::new(Some(DATASET_TABLE), identifier)))
            }
            None => count(lit(1_i64)),
        };
        aggregates.push(units.alias(UNITS_COLUMN));
        let min_group_size = self.policy.aggregation.min_group_size;
        self.rewrites.push(format!("groups of fewer than {min_group_size} {} are dropped", self.unit_name()));

        let mut builder = LogicalPlanBuilder::from(scan);
        if let Some(predicate) = conjunction(predicates) {
            builder = builder.filter(predicate).map_err(internal)?;
        }
        let built = builder
            .aggregate(groups, aggregates)
            .and_then(|b| b.filter(Expr::Column(Column::from_name(UNITS_COLUMN)).gt_eq(lit(min_group_size as i64))))
            .map_err(internal)?;
        // The aggregate's own names and qualifiers, in its order (groups, then aggregates).
        let rebuilt = built.schema().columns();
        let restore = aggregate
            .schema
            .iter()
            .zip(rebuilt)
            .map(|((qualifier, field), column)| Expr::Column(column).alias_qualified(qualifier.cloned(), field.name()))
            .collect::<Vec<_>>();
        built.project(restore).and_then(|b| b.build()).map_err(internal)
    }

    /// Whether this task's aggregates get noise, and with what: the policy asks for it and the
    /// task has (or, while only planning, will have) an epsilon.
    fn privacy(&self) -> Result<Option<Private>, Violation> {
        let Some(dp) = &self.policy.differential_privacy else { return Ok(None) };
        let epsilon = match self.epsilon {
            // Planning the key request: the columns do not depend on the epsilon.
            None => 1_000_000,
            Some(0) if dp.required => {
                return Err(Violation::new(
                    Rule::DifferentialPrivacy,
                    "this licence releases aggregates only with differential privacy: rent with an epsilon above 0",
                    "epsilon 0",
                ));
            }
            Some(0) => return Ok(None),
            Some(epsilon) => epsilon,
        };
        let (groups, rows) = match self.policy.identifier() {
            Some(_) => (u128::from(dp.max_groups_per_unit), u128::from(dp.max_rows_per_unit)),
            None => (1, 1),
        };
        Ok(Some(Private { epsilon: u128::from(epsilon), delta: dp.delta, groups, rows }))
    }

    /// The aggregate under differential privacy. Each privacy unit's contribution is bounded
    /// first (its rows per group and its groups), every released value gets discrete Laplace
    /// noise calibrated to its share of the task's epsilon, and the threshold is applied to the
    /// noisy count of units:
    ///
    /// ```text
    ///   dataset ─WHERE─▶ per (group, unit): rows ≤ R, sums clamped ─▶ ≤ G groups per unit
    ///          ─▶ per group: units, counts, sums ─▶ + noise ─▶ noisy units ≥ τ ─▶ avg = sum / count
    /// ```
    fn rebuild_private(
        &mut self,
        aggregate: &Aggregate,
        scan: LogicalPlan,
        predicates: Vec<Expr>,
        groups: Vec<Expr>,
        calls: Vec<Call>,
        private: Private,
    ) -> Result<LogicalPlan, Violation> {
        let identifier = self.policy.identifier().map(|id| Column::new(Some(DATASET_TABLE), id));
        let mut predicates = predicates;
        if let Some(identifier) = &identifier {
            self.columns.insert(identifier.name.clone());
            // Rows without a unit would all merge into one, whose contribution is unbounded.
            predicates.push(Expr::Column(identifier.clone()).is_not_null());
        }
        // What each call releases, and the noisy values it needs.
        let mut measurements = 1; // the units, for the threshold
        for call in &calls {
            measurements += match (call.function, &call.column) {
                (AggregateFunction::Count | AggregateFunction::Sum, _) => 1,
                (AggregateFunction::Avg, _) => 2,
                (AggregateFunction::CountDistinct, Some(c)) if Some(c) == identifier.as_ref() => 0,
                (function, _) => {
                    return Err(Violation::new(
                        Rule::DifferentialPrivacy,
                        format!(
                            "`{function}` is not released under differential privacy; count, sum, avg and \
                             COUNT(DISTINCT identifier) are"
                        ),
                        &call.shown,
                    ));
                }
            };
        }
        let Private { epsilon, delta, groups: max_groups, rows: max_rows } = private;
        let share = |sensitivity_cells: u128| (sensitivity_cells * 1_000_000 * measurements, epsilon);
        // Partial values per (group, unit): `p{i}` (a count or a sum) and `p{i}c` (avg's count).
        let partial = |i: usize| format!("__strongroom_p{i}");
        let partial_count = |i: usize| format!("__strongroom_p{i}c");

        // Floats are summed as they are, and decimals too (exactly) when no sum of 2^48 clamped
        // values can wrap around the i128 DataFusion sums them in, as it does silently: a wrapped
        // sum would move by far more than the sensitivity. Integers and wider decimals are summed
        // as floats, which cannot wrap.
        let policy = self.policy;
        let summed = |call: &Call, argument: Expr| -> Result<Expr, Violation> {
            let data_type = argument.get_type(scan.schema()).map_err(internal)?;
            let native = match &data_type {
                DataType::Float64 => true,
                DataType::Decimal128(..) => {
                    let column = &call.column.as_ref().expect("a sum has a measure").name;
                    let [lo, hi] = policy.bounds(column).expect("a measure has bounds");
                    matches!(
                        bounds_in_type(lo, hi, &data_type),
                        Ok((ScalarValue::Decimal128(Some(lo), ..), ScalarValue::Decimal128(Some(hi), ..)))
                            if lo.unsigned_abs().max(hi.unsigned_abs()) < (i128::MAX as u128) >> 48
                    )
                }
                _ => false,
            };
            Ok(if native { sum(argument) } else { sum(to_f64(argument)) })
        };
        let mut partials = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            let argument = || match &call.expr {
                Expr::AggregateFunction(AggregateCall { params, .. }) => params.args[0].clone(),
                _ => lit(1_i64),
            };
            match call.function {
                AggregateFunction::Count => partials.push(call.expr.clone().alias(partial(i))),
                AggregateFunction::Sum => partials.push(summed(call, argument())?.alias(partial(i))),
                AggregateFunction::Avg => {
                    partials.push(summed(call, argument())?.alias(partial(i)));
                    partials.push(count(argument()).alias(partial_count(i)));
                }
                _ => {}
            }
        }
        let mut builder = LogicalPlanBuilder::from(scan);
        if let Some(predicate) = conjunction(predicates) {
            builder = builder.filter(predicate).map_err(internal)?;
        }
        let group_count = groups.len();
        let (level, units) = match &identifier {
            Some(identifier) => {
                // One row per (group, unit), its contribution bounded.
                let mut keys = groups.clone();
                keys.push(Expr::Column(identifier.clone()));
                let per_unit = builder.aggregate(keys, partials.clone()).map_err(internal)?;
                let columns = per_unit.schema().columns();
                let mut bounded: Vec<Expr> = columns[..=group_count].iter().cloned().map(Expr::Column).collect();
                for (i, call) in calls.iter().enumerate() {
                    let rows = lit(max_rows as i64);
                    let cap = |name: String| {
                        let c = Expr::Column(Column::from_name(name.clone()));
                        when(c.clone().gt(rows.clone()), rows.clone()).otherwise(c).map(|e| e.alias(name))
                    };
                    let hold = |name: String| {
                        let [lo, hi] =
                            self.policy.bounds(&call.column.as_ref().expect("a measure").name).expect("bounds");
                        let (lo, hi) = (lit(lo * max_rows as f64), lit(hi * max_rows as f64));
                        let c = to_f64(Expr::Column(Column::from_name(name.clone())));
                        when(c.clone().lt(lo.clone()), lo)
                            .when(c.clone().gt(hi.clone()), hi)
                            .otherwise(c)
                            .map(|e| e.alias(name))
                    };
                    match call.function {
                        AggregateFunction::Count => bounded.push(cap(partial(i)).map_err(internal)?),
                        AggregateFunction::Sum => bounded.push(hold(partial(i)).map_err(internal)?),
                        AggregateFunction::Avg => {
                            bounded.push(hold(partial(i)).map_err(internal)?);
                            bounded.push(cap(partial_count(i)).map_err(internal)?);
                        }
                        _ => {}
                    }
                }
                let mut per_unit = per_unit.project(bounded).map_err(internal)?;
                // At most G groups per unit: the first G by the group keys, a choice that
                // depends on the unit's own rows only.
                let key_columns: Vec<Column> = per_unit.schema().columns()[..group_count].to_vec();
                if group_count > 0 {
                    let order =
                        key_columns.iter().map(|c| Expr::Column(c.clone()).sort(true, true)).collect::<Vec<_>>();
                    let rank = datafusion::functions_window::expr_fn::row_number()
                        .partition_by(vec![Expr::Column(identifier.clone())])
                        .order_by(order)
                        .build()
                        .map_err(internal)?
                        .alias("__strongroom_rank");
                    per_unit = per_unit
                        .window(vec![rank])
                        .and_then(|b| {
                            b.filter(Expr::Column(Column::from_name("__strongroom_rank")).lt_eq(lit(max_groups as i64)))
                        })
                        .map_err(internal)?;
                }
                let mut totals = vec![count(lit(1_i64)).alias(UNITS_COLUMN)];
                for (i, call) in calls.iter().enumerate() {
                    match call.function {
                        AggregateFunction::Count | AggregateFunction::Sum => {
                            totals.push(sum(Expr::Column(Column::from_name(partial(i)))).alias(partial(i)))
                        }
                        AggregateFunction::Avg => {
                            totals.push(sum(Expr::Column(Column::from_name(partial(i)))).alias(partial(i)));
                            totals.push(sum(Expr::Column(Column::from_name(partial_count(i)))).alias(partial_count(i)));
                        }
                        _ => {}
                    }
                }
                let keys = key_columns.into_iter().map(Expr::Column).collect::<Vec<_>>();
                (per_unit.aggregate(keys, totals).map_err(internal)?, max_groups)
            }
            None => {
                let mut totals = vec![count(lit(1_i64)).alias(UNITS_COLUMN)];
                totals.extend(partials);
                (builder.aggregate(groups, totals).map_err(internal)?, 1)
            }
        };
        // Noise on every released value, each with its share of epsilon.
        let columns = level.schema().columns();
        // Each draw is the group's, keyed by its group columns (see `noise`): a rerun repeats it.
        let group_key: Vec<Expr> = columns[..group_count].iter().cloned().map(Expr::Column).collect();
        let mut noised = group_key.clone();
        let seed = &self.seed;
        let (t, s) = share(units);
        let units_noise = Noise::count(t, s, seed, UNITS_COLUMN);
        noised.push(
            Noise::call(units_noise, Expr::Column(Column::from_name(UNITS_COLUMN)), group_key.clone())
                .alias(UNITS_COLUMN),
        );
        let mut scales = vec![format!("the units {}", scale_text(t as f64 / s as f64))];
        for (i, call) in calls.iter().enumerate() {
            let count_noise = |name: String| {
                let (t, s) = share(units * max_rows);
                let value = Expr::Column(Column::from_name(name.clone()));
                let expr = Noise::call(Noise::count(t, s, seed, &name), value, group_key.clone()).alias(name);
                (expr, scale_text(t as f64 / s as f64))
            };
            let sum_noise = |name: String| {
                let column = &call.column.as_ref().expect("a sum has a measure").name;
                let [lo, hi] = self.policy.bounds(column).expect("a measure has bounds");
                let sensitivity = (units * max_rows) as f64 * lo.abs().max(hi.abs());
                // Sums are rounded to a grid of 1/1024 of their sensitivity; the rounding adds
                // one step to it, hence 1025 steps.
                let grid = if sensitivity > 0.0 { sensitivity / 1024.0 } else { 1.0 };
                let (t, s) = share(1025);
                let value = to_f64(Expr::Column(Column::from_name(name.clone())));
                let expr = Noise::call(Noise::sum(t, s, grid, seed, &name), value, group_key.clone()).alias(name);
                (expr, scale_text(t as f64 / s as f64 * grid))
            };
            match call.function {
                AggregateFunction::Count => {
                    let (e, text) = count_noise(partial(i));
                    noised.push(e);
                    scales.push(format!("{} {text}", call.shown));
                }
                AggregateFunction::Sum => {
                    let (e, text) = sum_noise(partial(i));
                    noised.push(e);
                    scales.push(format!("{} {text}", call.shown));
                }
                AggregateFunction::Avg => {
                    let (e, sum_text) = sum_noise(partial(i));
                    noised.push(e);
                    let (e, count_text) = count_noise(partial_count(i));
                    noised.push(e);
                    scales.push(format!("{} as a sum {sum_text} over a count {count_text}", call.shown));
                }
                _ => {}
            }
        }
        let (units_t, units_s) = share(units);
        let scale_units = units_t as f64 / units_s as f64;
        let tau =
            (1.0 + scale_units * (units as f64 / delta).ln()).ceil().max(self.policy.aggregation.min_group_size as f64);
        let min_group_size = self.policy.aggregation.min_group_size;
        let built = level
            .project(noised)
            .and_then(|b| b.filter(Expr::Column(Column::from_name(UNITS_COLUMN)).gt_eq(lit(tau as i64))))
            .map_err(internal)?;
        self.rewrites.push(format!(
            "epsilon {} is split over {measurements} noisy values, {} each (discrete Laplace): {}",
            micro_text(epsilon as f64),
            micro_text(epsilon as f64 / measurements as f64),
            scales.join("; ")
        ));
        self.rewrites.push(format!(
            "groups whose noisy count of {} is below {tau} (at least {min_group_size}, raised for delta {delta}) are dropped",
            self.unit_name()
        ));
        if identifier.is_some() {
            self.rewrites.push(format!(
                "each {} adds at most {max_rows} row(s) to a group, in at most {max_groups} group(s)",
                self.policy.identifier().unwrap_or("unit")
            ));
        }
        // Back to the aggregate's own schema: groups, then each call's released value.
        let mut restore: Vec<Expr> = Vec::new();
        let fields: Vec<_> = aggregate.schema.iter().collect();
        for (i, (qualifier, field)) in fields.iter().enumerate().take(group_count) {
            restore.push(Expr::Column(columns[i].clone()).alias_qualified(qualifier.cloned(), field.name()));
        }
        for (i, call) in calls.iter().enumerate() {
            let (qualifier, field) = fields[group_count + i];
            let value = match call.function {
                AggregateFunction::CountDistinct => Expr::Column(Column::from_name(UNITS_COLUMN)),
                AggregateFunction::Count | AggregateFunction::Sum => Expr::Column(Column::from_name(partial(i))),
                _ => {
                    let n = to_f64(Expr::Column(Column::from_name(partial_count(i))));
                    when(n.clone().gt(lit(0.0)), Expr::Column(Column::from_name(partial(i))) / n)
                        .end()
                        .map_err(internal)?
                }
            };
            // A noisy value goes back to the aggregate's type; to an integer, rounded, not cut.
            let value = match call.function == AggregateFunction::Sum && field.data_type().is_integer() {
                true => datafusion::functions::math::expr_fn::round(vec![value]),
                false => value,
            };
            let value = Expr::TryCast(TryCast::new(Box::new(value), field.data_type().clone()));
            restore.push(value.alias_qualified(qualifier.cloned(), field.name()));
        }
        built.project(restore).and_then(|b| b.build()).map_err(internal)
    }

    /// Checks a WHERE predicate or a GROUP BY key, written in terms of the dataset's columns.
    fn check_scalar(&mut self, expr: &Expr, place: Place) -> Result<(), Violation> {
        let mut refused = None;
        let _ = expr.apply(|e| {
            let verdict = match e {
                Expr::Column(_) if place == Place::Post => Ok(()),
                Expr::AggregateFunction(_) if place == Place::Post => Ok(()),
                Expr::Column(column) => self.check_column(&column.name, place, expr),
                Expr::ScalarFunction(f) if SCALAR_FUNCTIONS.contains(&f.name()) => {
                    constant_options(f.name(), &f.args, e)
                }
                // A pattern that depends on a row could fail to compile on some rows only.
                Expr::Like(like) | Expr::SimilarTo(like) if !like.pattern.column_refs().is_empty() => {
                    Err(Violation::new(Rule::ScalarFunction, "a LIKE or SIMILAR TO pattern must be a constant", e))
                }
                Expr::ScalarFunction(f) => Err(Violation::new(
                    Rule::ScalarFunction,
                    format!(
                        "`{}` is not among the functions allowed on the dataset's columns ({})",
                        f.name(),
                        SCALAR_FUNCTIONS.join(", ")
                    ),
                    e,
                )),
                Expr::Literal(..)
                | Expr::BinaryExpr(_)
                | Expr::Not(_)
                | Expr::IsNull(_)
                | Expr::IsNotNull(_)
                | Expr::IsTrue(_)
                | Expr::IsFalse(_)
                | Expr::IsUnknown(_)
                | Expr::IsNotTrue(_)
                | Expr::IsNotFalse(_)
                | Expr::IsNotUnknown(_)
                | Expr::Negative(_)
                | Expr::Between(_)
                | Expr::Case(_)
                | Expr::Cast(_)
                | Expr::TryCast(_)
                | Expr::InList(_)
                | Expr::Like(_)
                | Expr::SimilarTo(_)
                | Expr::Alias(_) => Ok(()),
                Expr::AggregateFunction(_) => {
                    Err(Violation::new(Rule::Unsupported, "an aggregate cannot stand here", e))
                }
                other => Err(Violation::new(
                    Rule::Unsupported,
                    format!(
                        "`{}` is not an expression this licence checker understands, so it is refused",
                        other.variant_name()
                    ),
                    other,
                )),
            };
            match verdict {
                Ok(()) => Ok(TreeNodeRecursion::Continue),
                Err(violation) => {
                    refused = Some(violation);
                    Ok(TreeNodeRecursion::Stop)
                }
            }
        });
        match refused {
            Some(violation) => Err(violation),
            None => Ok(()),
        }
    }

    /// A column met in WHERE or GROUP BY.
    fn check_column(&mut self, column: &str, place: Place, fragment: &Expr) -> Result<(), Violation> {
        let refusal = |rule, reason: String| Err(Violation::new(rule, reason, fragment).on(column));
        match (self.policy.role(column), place) {
            (Role::Hidden, _) => refusal(Rule::HiddenColumn, self.hidden(column)),
            (Role::Identifier, _) => refusal(Rule::IdentifierUse, self.identifier(column)),
            (Role::Measure, _) => refusal(Rule::MeasureUse, self.measure(column)),
            (_, Place::Post) => Ok(()),
            (Role::Filter, Place::GroupBy) => refusal(
                Rule::FilterUse,
                format!("`{column}` is a filter column: it may appear only in WHERE, not be grouped by or output"),
            ),
            (Role::Dimension, _) | (Role::Filter, Place::Where) => {
                self.columns.insert(column.to_owned());
                Ok(())
            }
        }
    }

    fn hidden(&self, column: &str) -> String {
        format!("column `{column}` is hidden: its key is never released and no query may read it")
    }

    fn identifier(&self, column: &str) -> String {
        format!(
            "`{column}` is the privacy unit: it may only be counted, as COUNT(DISTINCT {column}); it may not be \
             output, grouped by, filtered on or computed with"
        )
    }

    fn measure(&self, column: &str) -> String {
        let functions = self.policy.aggregation.functions.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ");
        format!("`{column}` is a measure: it may appear only as the argument of an allowed aggregate ({functions})")
    }

    /// Checks one aggregate call and returns it as it will run: measures clamped to their bounds.
    fn check_aggregate(&mut self, call: &Expr, scan: &DFSchema) -> Result<Call, Violation> {
        let Expr::AggregateFunction(AggregateCall { func, params }) = call.clone().unalias_nested().data else {
            return Err(Violation::new(Rule::Unsupported, "this aggregate expression is not understood", call));
        };
        if params.filter.is_some() || !params.order_by.is_empty() || params.null_treatment.is_some() {
            return Err(Violation::new(
                Rule::AggregateArgument,
                "FILTER, ORDER BY and null treatment inside an aggregate are refused",
                call,
            ));
        }
        let function = match (func.name(), params.distinct) {
            ("count", false) => Some(AggregateFunction::Count),
            ("count", true) => Some(AggregateFunction::CountDistinct),
            ("sum", false) => Some(AggregateFunction::Sum),
            ("avg", false) => Some(AggregateFunction::Avg),
            ("min", false) => Some(AggregateFunction::Min),
            ("max", false) => Some(AggregateFunction::Max),
            _ => None,
        };
        let allowed = self.policy.aggregation.functions.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ");
        let Some(function) = function.filter(|f| self.policy.allows(*f)) else {
            let name = if params.distinct { format!("{} DISTINCT", func.name()) } else { func.name().to_owned() };
            return Err(Violation::new(
                Rule::AggregateFunction,
                format!("`{name}` is not an aggregate this licence allows; it allows {allowed}"),
                call,
            ));
        };
        // COUNT(*) is count of a literal; anything else takes exactly one column.
        if function == AggregateFunction::Count && matches!(params.args.as_slice(), [Expr::Literal(..)]) {
            return Ok(Call { function, column: None, expr: call.clone(), shown: call.to_string() });
        }
        let [argument] = params.args.as_slice() else {
            return Err(Violation::new(Rule::AggregateArgument, "an aggregate takes exactly one column", call));
        };
        // Roles first, so a column hidden inside a computation is named as such.
        for column in argument.column_refs() {
            match self.policy.role(&column.name) {
                Role::Hidden => {
                    return Err(Violation::new(Rule::HiddenColumn, self.hidden(&column.name), call).on(&column.name));
                }
                Role::Identifier if function != AggregateFunction::CountDistinct => {
                    return Err(
                        Violation::new(Rule::IdentifierUse, self.identifier(&column.name), call).on(&column.name)
                    );
                }
                Role::Filter => {
                    return Err(Violation::new(
                        Rule::FilterUse,
                        format!("`{}` is a filter column: it may appear only in WHERE", column.name),
                        call,
                    )
                    .on(&column.name));
                }
                _ => {}
            }
        }
        let Some(column) = bare_column(argument) else {
            return Err(Violation::new(
                Rule::AggregateArgument,
                "an aggregate's argument must be a column as it is: computing on it first, with CASE, casts, \
                 arithmetic or functions, could single out rows (cast the aggregate's result instead)",
                call,
            ));
        };
        let role = self.policy.role(&column.name);
        match function {
            AggregateFunction::Count | AggregateFunction::CountDistinct => {
                self.columns.insert(column.name.clone());
                Ok(Call { function, column: Some(column.clone()), expr: call.clone(), shown: call.to_string() })
            }
            _ if role != Role::Measure => Err(Violation::new(
                Rule::AggregateArgument,
                format!(
                    "`{}` is a {role}: only measures may be summed, averaged or taken the min or max of",
                    column.name
                ),
                call,
            )
            .on(&column.name)),
            _ => {
                let [lo, hi] = self.policy.bounds(&column.name).expect("a measure has bounds");
                self.columns.insert(column.name.clone());
                let clamped = clamp(column, lo, hi, scan)?;
                self.rewrites.push(format!("{} is clamped to [{lo}, {hi}] in {call}", column.name));
                let params = datafusion::logical_expr::expr::AggregateFunctionParams { args: vec![clamped], ..params };
                let expr = Expr::AggregateFunction(AggregateCall { func, params });
                Ok(Call { function, column: Some(column.clone()), expr, shown: call.to_string() })
            }
        }
    }
}

/// One checked aggregate call: what it computes, on which column, and the call as it will run.
struct Call {
    function: AggregateFunction,
    column: Option<Column>,
    expr: Expr,
    /// The call as the query wrote it (its columns traced to the dataset's).
    shown: String,
}

/// The differential privacy a task runs under.
#[derive(Clone, Copy)]
struct Private {
    /// The task's epsilon, in the contract's micro-units.
    epsilon: u128,
    delta: f64,
    /// Contribution bounds: groups per unit, rows per unit and group.
    groups: u128,
    rows: u128,
}

fn to_f64(expr: Expr) -> Expr {
    Expr::Cast(Cast::new(Box::new(expr), DataType::Float64))
}

fn scale_text(scale: f64) -> String {
    format!("scale {scale:.4}")
}

/// An epsilon in micro-units, as a decimal.
fn micro_text(micro: f64) -> String {
    format!("{:.6}", micro / 1_000_000.0)
}

/// The column, if the expression is nothing more. Not even a cast: `TRY_CAST(x AS TINYINT)`
/// is NULL for the values that do not fit, a condition on the value in disguise.
fn bare_column(expr: &Expr) -> Option<&Column> {
    match expr {
        Expr::Column(column) => Some(column),
        _ => None,
    }
}

/// `expr` that cannot fail on a row's value: a cast becomes a TRY_CAST (NULL instead of an
/// error) and a division or remainder by zero gives NULL. An error below the threshold would be
/// visible to the analyst as a failed task: one bit about rows the threshold hides.
fn total(expr: Expr) -> Result<Expr, Violation> {
    expr.transform(|e| match e {
        Expr::Cast(Cast { expr, field }) => Ok(Transformed::yes(Expr::TryCast(TryCast::new_from_field(expr, field)))),
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Divide | Operator::Modulo), right }) => {
            let divisor = when(right.as_ref().clone().eq(lit(0_i64)), lit(ScalarValue::Null)).otherwise(*right)?;
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(left, op, Box::new(divisor)))))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .map_err(internal)
}

/// `column` held to the policy's `[lo, hi]`, in the column's type (see [`bounds_in_type`]). A
/// measure whose type cannot hold them is refused, before any data is read.
fn clamp(column: &Column, lo: f64, hi: f64, scan: &DFSchema) -> Result<Expr, Violation> {
    let data_type = Expr::Column(column.clone()).get_type(scan).map_err(internal)?;
    let (low, high) = bounds_in_type(lo, hi, &data_type).map_err(|reason| {
        Violation::new(Rule::MeasureType, format!("measure `{}`: {reason}", column.name), column).on(&column.name)
    })?;
    Ok(Clamp::call(Expr::Column(column.clone()), low, high))
}

/// Whether an aggregation (GROUP BY or DISTINCT) happens at or below `plan`.
fn aggregates_below(plan: &LogicalPlan) -> bool {
    plan.exists(|node| Ok(matches!(node, LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_)))).unwrap_or(true)
}

/// What each column of a row-level plan is, in terms of the dataset's columns.
type RowLevel = HashMap<Column, Expr>;

/// Walks the row-level part down to the scan: every output column as an expression over the
/// dataset's columns, every filter's predicate likewise, and the scan itself.
fn inline_row_level(plan: &LogicalPlan) -> Result<(RowLevel, Vec<Expr>, LogicalPlan), Violation> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            if !scan.filters.is_empty() || scan.fetch.is_some() {
                return Err(unsupported_node(plan));
            }
            let columns = scan.projected_schema.columns().into_iter().map(|c| (c.clone(), Expr::Column(c))).collect();
            Ok((columns, Vec::new(), plan.clone()))
        }
        LogicalPlan::Projection(projection) => {
            let (below, predicates, scan) = inline_row_level(&projection.input)?;
            let mut columns = RowLevel::new();
            for (expr, column) in projection.expr.iter().zip(projection.schema.columns()) {
                columns.insert(column, substitute(expr, &below)?);
            }
            Ok((columns, predicates, scan))
        }
        LogicalPlan::Filter(filter) => {
            let (below, mut predicates, scan) = inline_row_level(&filter.input)?;
            predicates.push(substitute(&filter.predicate, &below)?);
            Ok((below, predicates, scan))
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let (below, predicates, scan) = inline_row_level(&alias.input)?;
            let mut columns = RowLevel::new();
            for (outer, inner) in alias.schema.columns().into_iter().zip(alias.input.schema().columns()) {
                let expr = below.get(&inner).cloned().ok_or_else(|| unresolved(&inner))?;
                columns.insert(outer, expr);
            }
            Ok((columns, predicates, scan))
        }
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => Err(Violation::new(
            Rule::Unsupported,
            "ORDER BY and LIMIT are refused before the aggregate: they would pick single rows",
            plan.display(),
        )),
        other => Err(unsupported_node(other)),
    }
}

/// `expr` with every column replaced by what it is in terms of the dataset's columns.
fn substitute(expr: &Expr, row_level: &RowLevel) -> Result<Expr, Violation> {
    let mut missing = None;
    let substituted = expr
        .clone()
        .transform(|e| match e {
            Expr::Column(column) => match row_level.get(&column) {
                Some(inlined) => Ok(Transformed::yes(inlined.clone().unalias_nested().data)),
                None => {
                    missing = Some(column.clone());
                    Ok(Transformed::no(Expr::Column(column)))
                }
            },
            other => Ok(Transformed::no(other)),
        })
        .map_err(internal)?
        .data;
    match missing {
        Some(column) => Err(unresolved(&column)),
        None => Ok(substituted),
    }
}

fn unresolved(column: &Column) -> Violation {
    Violation::new(Rule::Unsupported, "a column the checker cannot trace to the dataset is refused", column)
}

/// A DataFusion error while rebuilding a checked plan: refused, as anything not understood is.
fn internal(error: DataFusionError) -> Violation {
    Violation::new(Rule::Unsupported, format!("the checker could not rebuild the plan: {error}"), "")
}

fn list(exprs: &[Expr]) -> String {
    exprs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
}

fn output_names(schema: &DFSchema) -> String {
    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
}
