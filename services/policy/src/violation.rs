//! Why a query was refused: the rule, the column and the fragment of the plan that broke it.

use std::fmt;

/// The licence rules a query can break, with stable names (they appear in attested failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// An output row that is not an aggregate.
    RowLevelOutput,
    /// A hidden column, or one the policy does not name.
    HiddenColumn,
    /// The privacy unit used otherwise than counted distinct.
    IdentifierUse,
    /// A measure used otherwise than as the argument of an aggregate.
    MeasureUse,
    /// A measure whose type is not a number, or cannot hold a value within its bounds.
    MeasureType,
    /// A filter column used outside WHERE.
    FilterUse,
    /// An aggregate function the policy does not allow.
    AggregateFunction,
    /// An aggregate whose argument is computed, or which carries FILTER, ORDER BY or DISTINCT.
    AggregateArgument,
    /// A scalar function outside the allow-list on the dataset's columns.
    ScalarFunction,
    /// A subquery expression (scalar, IN, EXISTS).
    Subquery,
    /// Another table, or a table function (`range`, `generate_series`, …).
    OtherTable,
    /// The dataset read more than once (self-joins, unions).
    DatasetReadTwice,
    /// Window functions.
    WindowFunction,
    /// Joins.
    Join,
    /// UNION, INTERSECT, EXCEPT.
    SetOperation,
    /// More output rows than `max_output_rows`.
    OutputRows,
    /// What differential privacy does not release, or a task without the epsilon it needs.
    DifferentialPrivacy,
    /// A job that is not a call of one of the licence's templates, or a call out of bounds.
    Template,
    /// A plan node or expression the checker does not understand: refused, fail closed.
    Unsupported,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::RowLevelOutput => "row_level_output",
            Rule::HiddenColumn => "hidden_column",
            Rule::IdentifierUse => "identifier_use",
            Rule::MeasureUse => "measure_use",
            Rule::MeasureType => "measure_type",
            Rule::FilterUse => "filter_use",
            Rule::AggregateFunction => "aggregate_function",
            Rule::AggregateArgument => "aggregate_argument",
            Rule::ScalarFunction => "scalar_function",
            Rule::Subquery => "subquery",
            Rule::OtherTable => "other_table",
            Rule::DatasetReadTwice => "dataset_read_twice",
            Rule::WindowFunction => "window_function",
            Rule::Join => "join",
            Rule::SetOperation => "set_operation",
            Rule::OutputRows => "output_rows",
            Rule::DifferentialPrivacy => "differential_privacy",
            Rule::Template => "template",
            Rule::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A query the licence refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refused by the licence, rule {rule}: {reason} (in `{fragment}`)")]
pub struct Violation {
    pub rule: Rule,
    /// The dataset column at fault, if one is.
    pub column: Option<String>,
    /// What is wrong and what is allowed instead.
    pub reason: String,
    /// The part of the plan that broke the rule, as DataFusion prints it.
    pub fragment: String,
}

impl Violation {
    pub(crate) fn new(rule: Rule, reason: impl Into<String>, fragment: impl fmt::Display) -> Self {
        Self { rule, column: None, reason: reason.into(), fragment: fragment.to_string() }
    }

    pub(crate) fn on(mut self, column: &str) -> Self {
        self.column = Some(column.to_owned());
        self
    }
}
