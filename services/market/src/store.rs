//! The market's order book, behind [`OfferStore`]. The SQLite backend (WAL, synchronous=FULL)
//! runs its blocking calls off the async executor; a PostgreSQL backend implements the same trait.

use std::path::Path;

use alloy::primitives::{B256, keccak256};
use rusqlite::{Connection, params};
use strongroom_http::Blocking;
use strongroom_types::{OfferKind, SignedOffer};

/// Where a market keeps the signed offers it lists.
#[async_trait::async_trait]
pub trait OfferStore: Send + Sync + 'static {
    /// Stores an offer once; posting the same signed offer again is a no-op.
    async fn put(&self, kind: OfferKind, subject: B256, offer: SignedOffer) -> crate::Result<()>;
    /// Offers of `kind`, for one subject (dataset, pool or app id) or all, newest first.
    async fn list(&self, kind: OfferKind, subject: Option<B256>) -> crate::Result<Vec<SignedOffer>>;
}

/// The SQLite backend of [`OfferStore`].
#[derive(Clone)]
pub struct SqliteOfferStore(Blocking<Store>);

impl SqliteOfferStore {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        Store::open(path).map(|store| Self(Blocking::new(store)))
    }

    /// Runs a blocking SQLite call (fsync included) on the blocking pool, not the executor.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> rusqlite::Result<T> + Send + 'static,
    ) -> crate::Result<T> {
        let result = self.0.call(call).await;
        result.map_err(|e| crate::MarketError::Internal(format!("store call panicked: {e}")))?.map_err(Into::into)
    }
}

#[async_trait::async_trait]
impl OfferStore for SqliteOfferStore {
    async fn put(&self, kind: OfferKind, subject: B256, offer: SignedOffer) -> crate::Result<()> {
        self.blocking(move |s| s.put(kind, subject, &offer)).await
    }

    async fn list(&self, kind: OfferKind, subject: Option<B256>) -> crate::Result<Vec<SignedOffer>> {
        self.blocking(move |s| s.list(kind, subject)).await
    }
}

pub(crate) struct Store {
    conn: Connection,
}

impl Store {
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS offers (
                 id         BLOB PRIMARY KEY,
                 kind       TEXT NOT NULL,
                 subject    BLOB NOT NULL,
                 body       TEXT NOT NULL,
                 created_at INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS offers_subject ON offers (kind, subject);",
        )?;
        Ok(Self { conn })
    }

    /// Stores an offer once; posting the same signed offer again is a no-op.
    pub(crate) fn put(&self, kind: OfferKind, subject: B256, offer: &SignedOffer) -> rusqlite::Result<()> {
        let body = serde_json::to_string(offer).expect("offers serialize");
        let id = keccak256(body.as_bytes());
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.conn.execute(
            "INSERT OR IGNORE INTO offers (id, kind, subject, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id.as_slice(), kind_name(kind), subject.as_slice(), body, created],
        )?;
        Ok(())
    }

    /// Offers of `kind`, for one subject (dataset or pool id) or all, newest first.
    pub(crate) fn list(&self, kind: OfferKind, subject: Option<B256>) -> rusqlite::Result<Vec<SignedOffer>> {
        let mut stmt = self.conn.prepare(
            "SELECT body FROM offers WHERE kind = ?1 AND (?2 IS NULL OR subject = ?2) ORDER BY created_at DESC, rowid DESC",
        )?;
        let subject = subject.map(|s| s.to_vec());
        let rows = stmt.query_map(params![kind_name(kind), subject], |row| row.get::<_, String>(0))?;
        let mut out = Vec::new();
        for body in rows {
            if let Ok(offer) = serde_json::from_str(&body?) {
                out.push(offer);
            }
        }
        Ok(out)
    }
}

fn kind_name(kind: OfferKind) -> &'static str {
    match kind {
        OfferKind::Dataset => "dataset",
        OfferKind::Pool => "pool",
        OfferKind::App => "app",
    }
}
