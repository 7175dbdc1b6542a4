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

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::functions_aggregate::expr_fn::{count, count_distinct};
use datafusion::logical_expr::expr::AggregateFunction as AggregateCall;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Cast, Distinct, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, TryCast,
    lit, when,
};
use strongroom_types::{AggregateFunction, Policy, Role};

use crate::{Rule, Violation};

/// The table name analysts query.
pub const DATASET_TABLE: &str = "dataset";

/// The column the rewrite adds to the aggregate: each group's distinct privacy units.
pub const UNITS_COLUMN: &str = "__strongroom_units";

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
pub async fn check_on_schema(schema: SchemaRef, sql: &str, policy: &Policy) -> Result<Checked, Refusal> {
    let ctx = SessionContext::new();
    ctx.register_table(DATASET_TABLE, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
    Ok(check(&plan_sql(&ctx, sql).await?, policy)?)
}

/// Checks `plan` (from [`plan_sql`], over the table [`DATASET_TABLE`]) against `policy`.
pub fn check(plan: &LogicalPlan, policy: &Policy) -> Result<Checked, Violation> {
    let scans = refuse_forbidden_nodes(plan)?;
    let mut checker = Checker { policy, columns: BTreeSet::new(), rewrites: Vec::new() };
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
        checker.rewrites.push(format!("a result of more than {max} rows fails the task"));
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
        let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len() + 1);
        for call in &aggregate.aggr_expr {
            let call = substitute(call, &row_level)?;
            aggregates.push(self.check_aggregate(&call, scan.schema())?);
        }
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

    /// Checks a WHERE predicate or a GROUP BY key, written in terms of the dataset's columns.
    fn check_scalar(&mut self, expr: &Expr, place: Place) -> Result<(), Violation> {
        let mut refused = None;
        let _ = expr.apply(|e| {
            let verdict = match e {
                Expr::Column(_) if place == Place::Post => Ok(()),
                Expr::AggregateFunction(_) if place == Place::Post => Ok(()),
                Expr::Column(column) => self.check_column(&column.name, place, expr),
                Expr::ScalarFunction(f) if SCALAR_FUNCTIONS.contains(&f.name()) => Ok(()),
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
    fn check_aggregate(&mut self, call: &Expr, scan: &DFSchema) -> Result<Expr, Violation> {
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
            return Ok(call.clone());
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
                Ok(call.clone())
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
                let clamped = clamp(argument, column, lo, hi, scan)?;
                self.rewrites.push(format!("{} is clamped to [{lo}, {hi}] in {call}", column.name));
                let params = datafusion::logical_expr::expr::AggregateFunctionParams { args: vec![clamped], ..params };
                Ok(Expr::AggregateFunction(AggregateCall { func, params }))
            }
        }
    }
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

/// `argument` with its column replaced by the column held to `[lo, hi]`, in the column's type.
fn clamp(argument: &Expr, column: &Column, lo: f64, hi: f64, scan: &DFSchema) -> Result<Expr, Violation> {
    let data_type = Expr::Column(column.clone()).get_type(scan).map_err(internal)?;
    let bound = |v: f64| Expr::Cast(Cast::new(Box::new(lit(ScalarValue::Float64(Some(v)))), data_type.clone()));
    let value = Expr::Column(column.clone());
    let held = when(value.clone().lt(bound(lo)), bound(lo))
        .when(value.clone().gt(bound(hi)), bound(hi))
        .otherwise(value)
        .map_err(internal)?;
    argument
        .clone()
        .transform(|e| match e {
            Expr::Column(c) if &c == column => Ok(Transformed::yes(held.clone())),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
        .map_err(internal)
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
