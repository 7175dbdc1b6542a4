//! Licence policy files (`policies/*.toml`). The keccak256 of the file's bytes is registered on
//! chain; the key service grants column keys from the `[columns]` rules.

use serde::Deserialize;

use crate::{Error, Result};

/// A parsed licence policy.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Policy {
    pub version: u32,
    pub name: String,
    pub columns: ColumnRules,
}

/// Which columns a task may read: listed in `allow` and not in `deny`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ColumnRules {
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Self> {
        let policy: Self =
            toml::from_str(text).map_err(|e| Error::Malformed { what: "licence policy", reason: e.to_string() })?;
        if policy.version != 1 {
            return Err(Error::Malformed {
                what: "licence policy",
                reason: format!("version {} is not supported; this build reads version 1", policy.version),
            });
        }
        Ok(policy)
    }

    /// Whether the policy lets a task read `column`.
    pub fn grants(&self, column: &str) -> bool {
        self.columns.allow.iter().any(|c| c == column) && !self.columns.deny.iter().any(|c| c == column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policy_grants_all_but_the_email() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/aggregate-only.toml"))
            .unwrap();
        let policy = Policy::parse(&text).unwrap();
        assert!(policy.grants("region") && policy.grants("monthly_spend"));
        assert!(!policy.grants("email"));
        assert!(!policy.grants("not_listed"));
        let err = Policy::parse("version = 2\nname = \"x\"\n[columns]\nallow = []\n").unwrap_err();
        assert_eq!(err.to_string(), "malformed licence policy: version 2 is not supported; this build reads version 1");
    }
}
