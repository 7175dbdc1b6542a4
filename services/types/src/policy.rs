//! Licence policies (`policies/*.toml`, language version 2). The keccak256 of the file's bytes is
//! registered on chain; the key service releases the keys of every column that is not hidden,
//! and the enforcing enclave checks every query's plan against the rules (`strongroom-policy`).
//!
//! Parsing is strict: an unknown key or table is an error naming it, and a rule this build
//! cannot enforce is refused, never dropped: a licence that parses is a licence that holds.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::{Error, Result};

/// The policy language this build reads and enforces.
pub const POLICY_VERSION: u32 = 2;

/// A parsed licence policy.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub version: u32,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Every column's role; a column the policy does not name is hidden.
    pub columns: BTreeMap<String, ColumnRule>,
    pub aggregation: Aggregation,
    #[serde(default)]
    pub differential_privacy: Option<DifferentialPrivacy>,
    /// Owner-approved queries; when present, the only queries allowed.
    #[serde(default)]
    pub templates: Vec<Template>,
}

/// What a query may do with one column. Written `column = "dimension"`, or as a table when the
/// role takes parameters: `column = { role = "measure", bounds = [0, 500] }`.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnRule {
    /// Its key is never released.
    Hidden,
    /// The privacy unit: never output, grouped by, filtered on or joined on; only counted
    /// distinct. At most one per policy; without one, each row is its own unit.
    Identifier,
    /// May be grouped by, output as a group key, and filtered on.
    Dimension,
    /// May appear only as the argument of an allowed aggregate; values are clamped to `bounds`.
    Measure { bounds: [f64; 2] },
    /// May appear only in WHERE.
    Filter,
}

/// The role of a column, without its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Hidden,
    Identifier,
    Dimension,
    Measure,
    Filter,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Hidden => "hidden",
            Role::Identifier => "identifier",
            Role::Dimension => "dimension",
            Role::Measure => "measure",
            Role::Filter => "filter",
        })
    }
}

impl<'de> Deserialize<'de> for ColumnRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RuleTable {
            role: Role,
            bounds: Option<[f64; 2]>,
        }
        // Read as a value first, so each form gets its own precise error (untagged says nothing).
        let value = toml::Value::deserialize(deserializer)?;
        let table = match value {
            toml::Value::String(_) => {
                RuleTable { role: Role::deserialize(value).map_err(D::Error::custom)?, bounds: None }
            }
            toml::Value::Table(_) => RuleTable::deserialize(value).map_err(D::Error::custom)?,
            other => return Err(D::Error::custom(format!("a column's rule is a role or a table, not `{other}`"))),
        };
        match (table.role, table.bounds) {
            (Role::Measure, Some(bounds)) => Ok(ColumnRule::Measure { bounds }),
            (Role::Measure, None) => {
                Err(D::Error::custom("a measure needs its bounds: write `{ role = \"measure\", bounds = [lo, hi] }`"))
            }
            (role, Some(_)) => Err(D::Error::custom(format!("a {role} column takes no bounds; only a measure does"))),
            (Role::Hidden, None) => Ok(ColumnRule::Hidden),
            (Role::Identifier, None) => Ok(ColumnRule::Identifier),
            (Role::Dimension, None) => Ok(ColumnRule::Dimension),
            (Role::Filter, None) => Ok(ColumnRule::Filter),
        }
    }
}

impl ColumnRule {
    pub fn role(&self) -> Role {
        match self {
            ColumnRule::Hidden => Role::Hidden,
            ColumnRule::Identifier => Role::Identifier,
            ColumnRule::Dimension => Role::Dimension,
            ColumnRule::Measure { .. } => Role::Measure,
            ColumnRule::Filter => Role::Filter,
        }
    }
}

/// `[aggregation]`: every output row is an aggregate over enough privacy units.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    /// The aggregate functions a query may use.
    pub functions: Vec<AggregateFunction>,
    /// The least number of distinct privacy units behind every output row; smaller groups are
    /// dropped from the result.
    pub min_group_size: u64,
    /// The most rows a result may have; a larger result fails the task.
    #[serde(default)]
    pub max_output_rows: Option<u64>,
}

/// An aggregate function a policy can allow.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFunction {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
}

impl fmt::Display for AggregateFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AggregateFunction::Count => "count",
            AggregateFunction::CountDistinct => "count_distinct",
            AggregateFunction::Sum => "sum",
            AggregateFunction::Avg => "avg",
            AggregateFunction::Min => "min",
            AggregateFunction::Max => "max",
        })
    }
}

/// `[differential_privacy]`: noise on every released aggregate, paid from the on-chain budget.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DifferentialPrivacy {
    pub required: bool,
    pub delta: f64,
    /// Contribution bounds: how many groups, and rows, one privacy unit may add to.
    pub max_groups_per_unit: u32,
    pub max_rows_per_unit: u32,
}

/// `[[templates]]`: an owner-approved query with typed, bounded parameters `$1`, `$2`, ….
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    pub sql: String,
    #[serde(default)]
    pub parameters: Vec<TemplateParameter>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateParameter {
    pub name: String,
    pub min: i64,
    pub max: i64,
}

impl Policy {
    /// Parses and validates a policy; the error names the key or rule that is wrong.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: String| Error::Malformed { what: "licence policy", reason };
        // The version first, so an old file is told what changed rather than which key is unknown.
        #[derive(Deserialize)]
        struct Versioned {
            version: Option<u32>,
        }
        let versioned: Versioned = toml::from_str(text).map_err(|e| bad(located(text, &e)))?;
        match versioned.version {
            Some(POLICY_VERSION) => {}
            Some(1) => {
                return Err(bad(
                    "version 1 (a column allow-list) is not enforced by this build: write it as version 2, \
                     a role per column (see policies/README.md)"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(bad(format!(
                    "version {other} is not supported; this build reads version {POLICY_VERSION}"
                )));
            }
            None => return Err(bad(format!("`version` is missing; this build reads version {POLICY_VERSION}"))),
        }
        let policy: Self = toml::from_str(text).map_err(|e| bad(located(text, &e)))?;
        policy.validate().map_err(bad)?;
        Ok(policy)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let identifiers: Vec<&String> =
            self.columns.iter().filter(|(_, r)| r.role() == Role::Identifier).map(|(c, _)| c).collect();
        if identifiers.len() > 1 {
            return Err(format!(
                "columns `{}` and `{}` are both identifiers; a policy has one privacy unit",
                identifiers[0], identifiers[1]
            ));
        }
        for (column, rule) in &self.columns {
            if let ColumnRule::Measure { bounds: [lo, hi] } = rule
                && !(lo.is_finite() && hi.is_finite() && lo <= hi)
            {
                return Err(format!("measure `{column}` has bounds [{lo}, {hi}]; they must be finite with lo <= hi"));
            }
        }
        let aggregation = &self.aggregation;
        if aggregation.functions.is_empty() {
            return Err("[aggregation] functions is empty: allow at least one of count, count_distinct, sum, avg, \
                        min, max"
                .into());
        }
        if aggregation.min_group_size == 0 {
            return Err("[aggregation] min_group_size must be at least 1".into());
        }
        if aggregation.max_output_rows == Some(0) {
            return Err("[aggregation] max_output_rows must be at least 1".into());
        }
        if let Some(dp) = &self.differential_privacy {
            if !(dp.delta > 0.0 && dp.delta < 1.0) {
                return Err(format!("[differential_privacy] delta is {}; it must be above 0 and below 1", dp.delta));
            }
            if dp.max_groups_per_unit == 0 || dp.max_rows_per_unit == 0 {
                return Err(
                    "[differential_privacy] max_groups_per_unit and max_rows_per_unit must be at least 1".into()
                );
            }
            let unsupported = [AggregateFunction::Min, AggregateFunction::Max];
            if let Some(f) = self.aggregation.functions.iter().find(|f| unsupported.contains(f)) {
                return Err(format!(
                    "[aggregation] allows {f}, which differential privacy does not release; remove it"
                ));
            }
        }
        // Refused rather than silently dropped, until this build enforces them.
        let mut names = std::collections::BTreeSet::new();
        for template in &self.templates {
            if !names.insert(template.name.as_str()) {
                return Err(format!("two templates are named `{}`", template.name));
            }
            if let Some(p) = template.parameters.iter().find(|p| p.min > p.max) {
                return Err(format!(
                    "parameter `{}` of template `{}` has min {} above max {}",
                    p.name, template.name, p.min, p.max
                ));
            }
        }
        Ok(())
    }

    /// The role of `column`: what the policy names, else hidden.
    pub fn role(&self, column: &str) -> Role {
        self.columns.get(column).map_or(Role::Hidden, ColumnRule::role)
    }

    /// The clamping bounds of a measure column.
    pub fn bounds(&self, column: &str) -> Option<[f64; 2]> {
        match self.columns.get(column) {
            Some(ColumnRule::Measure { bounds }) => Some(*bounds),
            _ => None,
        }
    }

    /// The privacy unit's column, if the policy names one.
    pub fn identifier(&self) -> Option<&str> {
        self.columns.iter().find(|(_, r)| r.role() == Role::Identifier).map(|(c, _)| c.as_str())
    }

    /// Whether the policy lets a task have the key of `column`: every role but hidden.
    pub fn grants(&self, column: &str) -> bool {
        self.role(column) != Role::Hidden
    }

    /// The columns a task may have keys for, in name order.
    pub fn granted_columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().filter(|(_, r)| r.role() != Role::Hidden).map(|(c, _)| c.as_str())
    }

    pub fn allows(&self, function: AggregateFunction) -> bool {
        self.aggregation.functions.contains(&function)
    }
}

/// A TOML error as one line: where it is, then what is wrong.
fn located(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line} `{source}`: {message}")
        }
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/aggregate-with-threshold.toml");

    #[test]
    fn the_shipped_threshold_policy_gives_every_column_a_role() {
        let policy = Policy::parse(&std::fs::read_to_string(SHIPPED).unwrap()).unwrap();
        assert_eq!(policy.role("customer_id"), Role::Identifier);
        assert_eq!(policy.identifier(), Some("customer_id"));
        assert_eq!(policy.role("email"), Role::Hidden);
        assert_eq!(policy.role("not_listed"), Role::Hidden);
        assert_eq!(policy.role("region"), Role::Dimension);
        assert_eq!(policy.role("monthly_spend"), Role::Measure);
        assert!(policy.bounds("monthly_spend").is_some());
        assert!(policy.grants("customer_id") && !policy.grants("email"));
        assert_eq!(policy.aggregation.min_group_size, 10);
        assert!(policy.allows(AggregateFunction::Sum) && !policy.allows(AggregateFunction::Max));
    }

    fn error(text: &str) -> String {
        Policy::parse(text).unwrap_err().to_string()
    }

    const BASE: &str = "version = 2\nname = \"p\"\n[columns]\nid = \"identifier\"\n\
                        [aggregation]\nfunctions = [\"count\"]\nmin_group_size = 5\n";

    #[test]
    fn unknown_keys_tables_and_roles_are_errors_naming_them() {
        assert!(Policy::parse(BASE).is_ok());
        assert_eq!(
            error(&format!("{BASE}min_groups = 3\n")),
            "malformed licence policy: line 8 `min_groups = 3`: unknown field `min_groups`, expected one of `functions`, `min_group_size`, `max_output_rows`"
        );
        assert_eq!(
            error(&format!("{BASE}[outputs]\nrows = 1\n")),
            "malformed licence policy: line 8 `[outputs]`: unknown field `outputs`, expected one of `version`, `name`, `description`, `columns`, `aggregation`, `differential_privacy`, `templates`"
        );
        assert_eq!(
            error(&BASE.replace("\"identifier\"", "\"secret\"")),
            "malformed licence policy: line 4 `id = \"secret\"`: unknown variant `secret`, expected one of `hidden`, `identifier`, `dimension`, `measure`, `filter`"
        );
        assert_eq!(
            error(&BASE.replace("\"count\"", "\"median\"")),
            "malformed licence policy: line 6 `functions = [\"median\"]`: unknown variant `median`, expected one of `count`, `count_distinct`, `sum`, `avg`, `min`, `max`"
        );
        assert_eq!(
            error(&BASE.replace("\"identifier\"", "{ role = \"measure\" }")),
            "malformed licence policy: line 4 `id = { role = \"measure\" }`: a measure needs its bounds: write `{ role = \"measure\", bounds = [lo, hi] }`"
        );
        assert_eq!(
            error(&BASE.replace("\"identifier\"", "\"measure\"")),
            "malformed licence policy: line 4 `id = \"measure\"`: a measure needs its bounds: write `{ role = \"measure\", bounds = [lo, hi] }`"
        );
        assert_eq!(
            error(&BASE.replace("\"identifier\"", "{ role = \"dimension\", bounds = [1, 2] }")),
            "malformed licence policy: line 4 `id = { role = \"dimension\", bounds = [1, 2] }`: a dimension column takes no bounds; only a measure does"
        );
    }

    #[test]
    fn rules_that_cannot_hold_or_are_not_enforced_yet_are_refused() {
        assert_eq!(
            error("version = 1\nname = \"x\"\n[columns]\nallow = []\n"),
            "malformed licence policy: version 1 (a column allow-list) is not enforced by this build: write it as version 2, a role per column (see policies/README.md)"
        );
        assert_eq!(
            error(&BASE.replace("version = 2", "version = 3")),
            "malformed licence policy: version 3 is not supported; this build reads version 2"
        );
        assert_eq!(
            error(&BASE.replace("id = \"identifier\"", "id = \"identifier\"\nid2 = \"identifier\"")),
            "malformed licence policy: columns `id` and `id2` are both identifiers; a policy has one privacy unit"
        );
        assert_eq!(
            error(&BASE.replace("id = \"identifier\"", "x = { role = \"measure\", bounds = [5.0, 1.0] }")),
            "malformed licence policy: measure `x` has bounds [5, 1]; they must be finite with lo <= hi"
        );
        assert_eq!(
            error(&BASE.replace("min_group_size = 5", "min_group_size = 0")),
            "malformed licence policy: [aggregation] min_group_size must be at least 1"
        );
        let dp =
            "[differential_privacy]\nrequired = true\ndelta = 1e-6\nmax_groups_per_unit = 1\nmax_rows_per_unit = 1\n";
        assert!(Policy::parse(&format!("{BASE}{dp}")).is_ok());
        assert_eq!(
            error(&format!("{BASE}{}", dp.replace("1e-6", "0.0"))),
            "malformed licence policy: [differential_privacy] delta is 0; it must be above 0 and below 1"
        );
        assert_eq!(
            error(&format!("{}{dp}", BASE.replace("[\"count\"]", "[\"count\", \"max\"]"))),
            "malformed licence policy: [aggregation] allows max, which differential privacy does not release; remove it"
        );
    }
}
