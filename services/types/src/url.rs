//! Storage locations as a type: where objects, manifests and sealed results live.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A storage location: `file:///absolute/path` or `s3://bucket/prefix`, checked when made.
///
/// Paths are written as they will be read: no `.` or `..` segments, no empty segments, no
/// backslashes, so a URL cannot be rewritten on its way to the store (where credentials are
/// scoped by prefix) and [`StorageUrl::join`] cannot climb out of the prefix it extends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StorageUrl(String);

impl StorageUrl {
    /// The schemes this build stores to.
    const SCHEMES: [&'static str; 2] = ["file:///", "s3://"];

    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Malformed {
            what: "storage URL",
            reason: format!("`{text}` {reason} (expected file:///path/to/dir or s3://bucket/prefix)"),
        };
        let rest = Self::SCHEMES
            .iter()
            .find_map(|scheme| text.strip_prefix(scheme))
            .ok_or_else(|| bad("has another scheme"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(bad("names no bucket or directory"));
        }
        if rest.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
            return Err(bad("has an empty, `.` or `..` segment"));
        }
        if rest.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
            return Err(bad("has a backslash, a space, a query or a fragment"));
        }
        // Credentials are scoped by the URL as written; user info, a port or an escaped `/` would
        // let the store see another bucket, endpoint or key than the scope matched.
        if rest.chars().any(|c| c == '@' || c == ':' || c == '%') {
            return Err(bad("has user info, a port or an escape (`@`, `:` or `%`)"));
        }
        let scheme = &text[..text.len() - rest.len() - usize::from(text.ends_with('/'))];
        Ok(Self(format!("{scheme}{rest}")))
    }

    /// The `file://` URL of a local directory or file (made absolute).
    pub fn from_path(path: &std::path::Path) -> Result<Self> {
        let absolute = std::path::absolute(path)
            .map_err(|e| Error::Malformed { what: "storage path", reason: format!("{}: {e}", path.display()) })?;
        let text = absolute.to_str().ok_or_else(|| Error::Malformed {
            what: "storage path",
            reason: format!("{} is not UTF-8", absolute.display()),
        })?;
        Self::parse(&format!("file://{text}"))
    }

    /// The location `name` below this one; `name` is one or more plain segments.
    pub fn join(&self, name: &str) -> Result<Self> {
        Self::parse(&format!("{}/{name}", self.0))
    }

    /// The location this one is in, if it is not a bucket or the file system root.
    pub fn parent(&self) -> Option<Self> {
        let (dir, _) = self.0.rsplit_once('/')?;
        Self::parse(dir).ok()
    }

    /// The last segment: a file or directory name.
    pub fn name(&self) -> &str {
        self.0.rsplit_once('/').map_or(self.0.as_str(), |(_, name)| name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this location is `prefix` or below it. Both are normalised when made, so a
    /// comparison of segments is exact: `s3://b/team` is not within `s3://b/te`.
    pub fn is_within(&self, prefix: &StorageUrl) -> bool {
        self.0 == prefix.0 || self.0.strip_prefix(&prefix.0).is_some_and(|rest| rest.starts_with('/'))
    }
}

impl std::fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for StorageUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for StorageUrl {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<StorageUrl> for String {
    fn from(url: StorageUrl) -> String {
        url.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_within_a_prefix_by_whole_segments() {
        let prefix = StorageUrl::parse("s3://datasets/team").unwrap();
        for inside in ["s3://datasets/team", "s3://datasets/team/0xab/manifest.json"] {
            assert!(StorageUrl::parse(inside).unwrap().is_within(&prefix), "{inside}");
        }
        for outside in ["s3://datasets/teammate/x", "s3://datasets", "file:///datasets/team/x", "s3://other/team"] {
            assert!(!StorageUrl::parse(outside).unwrap().is_within(&prefix), "{outside}");
        }
    }

    #[test]
    fn urls_are_checked_and_joined_without_climbing_out() {
        let base = StorageUrl::parse("s3://datasets/team/").unwrap();
        assert_eq!(base.as_str(), "s3://datasets/team");
        let manifest = base.join("0xab/v1/manifest.json").unwrap();
        assert_eq!(manifest.as_str(), "s3://datasets/team/0xab/v1/manifest.json");
        assert_eq!(manifest.name(), "manifest.json");
        assert_eq!(manifest.parent().unwrap().as_str(), "s3://datasets/team/0xab/v1");
        assert_eq!(StorageUrl::parse("s3://datasets").unwrap().parent(), None, "a bucket has no parent");
        assert_eq!(StorageUrl::parse("file:///tmp/x").unwrap().parent().unwrap().as_str(), "file:///tmp");
        for bad in [
            "ftp://host/x",
            "s3://",
            "s3://a//b",
            "s3://a/../b",
            "file:///a/./b",
            "s3://a/b c",
            "s3://a\\b",
            "s3://x@datasets/k",
            "s3://datasets:9000/k",
            "s3://data/team%2Fk",
        ] {
            assert!(StorageUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(base.join("../other").is_err(), "a join cannot climb out");
        let err = StorageUrl::parse("ftp://host/x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed storage URL: `ftp://host/x` has another scheme (expected file:///path/to/dir or s3://bucket/prefix)"
        );
        let path = StorageUrl::from_path(std::path::Path::new("/var/data")).unwrap();
        assert_eq!(path.as_str(), "file:///var/data");
    }
}
