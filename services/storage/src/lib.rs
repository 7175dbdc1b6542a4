//! Object storage through `object_store`, one code path for every store: `file://` URLs (the
//! embedded default) and any S3-compatible store by `s3://bucket/prefix` URL.
//!
//! S3 credentials come from a storage config file whose `[[store]]` entries are scoped by URL
//! prefix (the longest matching scope wins); a URL no scope covers uses the standard `AWS_*`
//! environment variables. Each party configures its own: the owner writes its bucket, the worker reads it and
//! writes its results bucket, the analyst reads results.
//!
//! ```toml
//! [[store]]
//! scope = "s3://datasets/"
//! endpoint = "http://127.0.0.1:9000"
//! region = "us-east-1"
//! access_key_id = "owner"
//! secret_access_key = "…"
//! allow_http = true
//! ```
//!
//! Dataset objects are checked against their sha256 by whoever reads them: the enclave against
//! the chain, the owner on rotation through [`Storage::get_checked`], the analyst against the
//! result digest the enclave signed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use alloy_primitives::B256;
use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use strongroom_types::StorageUrl;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("`{0}` is not a storage URL (expected file:///path/to/dir or s3://bucket/prefix)")]
    BadUrl(String),
    #[error("storage {url}: {source}")]
    Store { url: String, source: object_store::Error },
    #[error("{url} has sha256 {actual}, expected {expected}: the stored copy is corrupt or tampered")]
    Checksum { url: String, expected: B256, actual: B256 },
    #[error("{url} is {size} bytes, more than the {limit} this reader takes: it is not what it should be")]
    TooLarge { url: String, size: u64, limit: u64 },
    #[error("storage config {path}: {reason}")]
    Config { path: String, reason: String },
}

impl StorageError {
    /// Whether the store answered that there is no such object: asking again will not help.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Store { source: object_store::Error::NotFound { .. }, .. })
    }
}

/// Settings for the S3-compatible stores under one URL prefix.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Scope {
    /// The URL prefix these settings apply to, e.g. `s3://datasets/` or `s3://datasets/team-a/`.
    pub scope: String,
    /// The store's endpoint; AWS's when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint (local and test stores).
    #[serde(default)]
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Scope")
            .field("scope", &self.scope)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "(redacted)"))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    store: Vec<S3Scope>,
}

/// Storage as one party sees it: its scoped credentials and the stores opened so far (one
/// client per bucket, so connections are reused). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Storage {
    scopes: Arc<Vec<S3Scope>>,
    opened: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
}

impl Storage {
    pub fn new(scopes: Vec<S3Scope>) -> Self {
        Self { scopes: Arc::new(scopes), opened: Arc::default() }
    }

    /// Reads a storage config file; a missing file means no scopes (`file://` and environment only).
    pub fn load(path: &Path) -> Result<Self, StorageError> {
        let config = |reason: String| StorageError::Config { path: path.display().to_string(), reason };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(config(e.to_string())),
        };
        let file: ConfigFile = toml::from_str(&text).map_err(|e| config(e.to_string()))?;
        if let Some(bad) = file.store.iter().find(|s| !s.scope.starts_with("s3://")) {
            return Err(config(format!("scope `{}` is not an s3:// URL prefix", bad.scope)));
        }
        Ok(Self::new(file.store))
    }

    /// Writes `bytes` at `url`, replacing any object there.
    pub async fn put(&self, url: &StorageUrl, bytes: Bytes) -> Result<(), StorageError> {
        let url = url.as_str();
        let (store, path) = self.locate(url)?;
        store.put(&path, PutPayload::from(bytes)).await.map_err(|source| store_error(url, source))?;
        Ok(())
    }

    /// Reads the whole object at `url`.
    pub async fn get(&self, url: &StorageUrl) -> Result<Bytes, StorageError> {
        let url = url.as_str();
        let (store, path) = self.locate(url)?;
        let result = store.get(&path).await.map_err(|source| store_error(url, source))?;
        result.bytes().await.map_err(|source| store_error(url, source))
    }

    /// Reads the whole object at `url` if it holds at most `limit` bytes: for what its writer
    /// controls and the reader keeps in memory, such as a manifest. The limit holds on the bytes
    /// received, not only on the size the store announces (an S3 endpoint's Content-Length can
    /// lie while a chunked body goes on).
    pub async fn get_at_most(&self, url: &StorageUrl, limit: u64) -> Result<Bytes, StorageError> {
        let text = url.as_str();
        let too_large = |size| StorageError::TooLarge { url: text.to_owned(), size, limit };
        let (store, path) = self.locate(text)?;
        let result = store.get(&path).await.map_err(|source| store_error(text, source))?;
        if result.meta.size > limit {
            return Err(too_large(result.meta.size));
        }
        let mut body = Vec::with_capacity(result.meta.size as usize);
        let mut chunks = result.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|source| store_error(text, source))?;
            let size = body.len() as u64 + chunk.len() as u64;
            if size > limit {
                return Err(too_large(size));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    /// Reads the object at `url` and checks its sha256.
    pub async fn get_checked(&self, url: &StorageUrl, expected: B256) -> Result<Bytes, StorageError> {
        let bytes = self.get(url).await?;
        let actual = B256::from_slice(&Sha256::digest(&bytes));
        if actual != expected {
            return Err(StorageError::Checksum { url: url.to_string(), expected, actual });
        }
        Ok(bytes)
    }

    fn locate(&self, url: &str) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path), StorageError> {
        let parsed = Url::parse(url).map_err(|_| StorageError::BadUrl(url.to_owned()))?;
        // Scopes match the URL as written; a path that parsing rewrites (`..`) could pick one
        // scope's credentials for another's objects.
        if parsed.as_str() != url {
            return Err(StorageError::BadUrl(url.to_owned()));
        }
        let path = object_store::path::Path::from_url_path(parsed.path()).map_err(|e| store_error(url, e.into()))?;
        // One store per bucket and scope (or per file system).
        let scope = self.scope_of(url);
        let root = format!(
            "{}://{} {}",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default(),
            scope.map(|s| s.scope.as_str()).unwrap_or_default()
        );
        let mut opened = self.opened.lock().expect("storage lock");
        if let Some(store) = opened.get(&root) {
            return Ok((store.clone(), path));
        }
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" => {
                let (store, _) = object_store::parse_url_opts(&parsed, s3_options(scope))
                    .map_err(|source| store_error(url, source))?;
                store.into()
            }
            "file" => object_store::parse_url(&parsed).map_err(|source| store_error(url, source))?.0.into(),
            _ => return Err(StorageError::BadUrl(url.to_owned())),
        };
        opened.insert(root, store.clone());
        Ok((store, path))
    }

    /// The longest scope that prefixes `url` on a path boundary (`s3://data` covers
    /// `s3://data/x`, not `s3://data-x/`).
    fn scope_of(&self, url: &str) -> Option<&S3Scope> {
        let covers = |scope: &str| {
            url.strip_prefix(scope).is_some_and(|rest| scope.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
        };
        self.scopes.iter().filter(|s| covers(&s.scope)).max_by_key(|s| s.scope.len())
    }
}

/// A scope's settings alone, or without a scope the `AWS_*` environment: credentials from one
/// source are never mixed with another's.
fn s3_options(scope: Option<&S3Scope>) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = match scope {
        Some(_) => Vec::new(),
        None => {
            std::env::vars().filter(|(k, _)| k.starts_with("AWS_")).map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()
        }
    };
    if let Some(scope) = scope {
        let settings = [
            ("aws_endpoint", scope.endpoint.clone()),
            ("aws_region", scope.region.clone()),
            ("aws_access_key_id", scope.access_key_id.clone()),
            ("aws_secret_access_key", scope.secret_access_key.clone()),
            ("aws_allow_http", Some(scope.allow_http.to_string())),
        ];
        for (key, value) in settings {
            if let Some(value) = value {
                options.retain(|(k, _)| k != key);
                options.push((key.to_owned(), value));
            }
        }
    }
    // s3://bucket/key means the bucket in the path, which every S3-compatible store serves.
    options.push(("aws_virtual_hosted_style_request".into(), "false".into()));
    options
}

fn store_error(url: &str, source: object_store::Error) -> StorageError {
    StorageError::Store { url: url.to_owned(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_urls_round_trip_and_checksums_are_verified() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::default();
        let url = StorageUrl::from_path(dir.path()).unwrap().join("a/b.bin").unwrap();
        storage.put(&url, Bytes::from_static(b"ciphertext")).await.unwrap();
        assert_eq!(storage.get(&url).await.unwrap(), Bytes::from_static(b"ciphertext"));
        let sha = B256::from_slice(&Sha256::digest(b"ciphertext"));
        assert!(storage.get_checked(&url, sha).await.is_ok());
        let err = storage.get_checked(&url, B256::ZERO).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{url} has sha256 {sha}, expected {}: the stored copy is corrupt or tampered", B256::ZERO)
        );
        assert_eq!(storage.get_at_most(&url, 10).await.unwrap(), Bytes::from_static(b"ciphertext"));
        let err = storage.get_at_most(&url, 9).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{url} is 10 bytes, more than the 9 this reader takes: it is not what it should be")
        );
    }

    #[test]
    fn config_scopes_load_and_the_longest_prefix_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("storage.toml");
        assert!(Storage::load(&path).unwrap().scopes.is_empty(), "a missing file is no scopes");
        std::fs::write(
            &path,
            "[[store]]\nscope = \"s3://data/\"\nendpoint = \"http://a\"\naccess_key_id = \"wide\"\n\
             [[store]]\nscope = \"s3://data/team/\"\naccess_key_id = \"narrow\"\nsecret_access_key = \"s3cret\"\n",
        )
        .unwrap();
        let storage = Storage::load(&path).unwrap();
        let get = |url: &str, key: &str| {
            s3_options(storage.scope_of(url)).into_iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
        };
        assert_eq!(get("s3://data/team/x", "aws_access_key_id").as_deref(), Some("narrow"));
        assert_eq!(get("s3://data/other/x", "aws_access_key_id").as_deref(), Some("wide"));
        assert_eq!(get("s3://data-x/y", "aws_endpoint"), None, "scopes end at a path boundary");
        let err = StorageUrl::parse("s3://data/team/../x").unwrap_err();
        assert!(err.to_string().contains("has an empty, `.` or `..` segment"), "{err}");
        assert!(!format!("{storage:?}").contains("s3cret"), "secrets are not printed");
        std::fs::write(&path, "[[store]]\nscope = \"https://x/\"\n").unwrap();
        let err = Storage::load(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("storage config {}: scope `https://x/` is not an s3:// URL prefix", path.display())
        );
    }
}
