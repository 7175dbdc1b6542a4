//! Object storage through `object_store`: `file://` URLs by default, any store it supports at
//! scale, one code path. Dataset objects are checked against their sha256 by whoever reads
//! them (the enclave against the chain, the analyst against the result digest).

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("`{0}` is not a storage URL (expected e.g. file:///var/lib/strongroom/objects/x)")]
    BadUrl(String),
    #[error("storage {url}: {source}")]
    Store { url: String, source: object_store::Error },
}

fn locate(url: &str) -> Result<(Box<dyn object_store::ObjectStore>, object_store::path::Path), StorageError> {
    let parsed = Url::parse(url).map_err(|_| StorageError::BadUrl(url.to_owned()))?;
    object_store::parse_url(&parsed).map_err(|source| StorageError::Store { url: url.to_owned(), source })
}

/// Writes `bytes` at `url`, replacing any object there.
pub async fn put(url: &str, bytes: Bytes) -> Result<(), StorageError> {
    let (store, path) = locate(url)?;
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(|source| StorageError::Store { url: url.to_owned(), source })?;
    Ok(())
}

/// Reads the whole object at `url`.
pub async fn get(url: &str) -> Result<Bytes, StorageError> {
    let (store, path) = locate(url)?;
    let result = store.get(&path).await.map_err(|source| StorageError::Store { url: url.to_owned(), source })?;
    result.bytes().await.map_err(|source| StorageError::Store { url: url.to_owned(), source })
}

/// A `file://` URL for a local path (made absolute).
pub fn file_url(path: &std::path::Path) -> Result<String, StorageError> {
    let absolute = std::path::absolute(path).map_err(|_| StorageError::BadUrl(path.display().to_string()))?;
    Url::from_file_path(&absolute).map(String::from).map_err(|_| StorageError::BadUrl(absolute.display().to_string()))
}
