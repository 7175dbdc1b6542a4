//! The contract's events, followed into a local SQLite file with a durable cursor, so that a
//! service answering requests never scans the chain's logs from block 0: a task by id, the
//! states a dataset has been in. The index follows the chain to `confirmations` blocks below its
//! head, checks at every step that the block it stopped at is still on the chain, and rolls back
//! what a reorganisation took away. The file is a cache of the chain: deleting it costs one
//! rebuild from the deployment block.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use alloy::primitives::{Address, B256, U256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;
use rusqlite::{Connection, OptionalExtension, params};
use strongroom_types::{DatasetId, ManifestDigest, PoolId};
use tracing::{info, warn};

use crate::Strongroom::{DatasetRegistered, DatasetTransferred, DatasetUpdated, TaskCreated};
use crate::client::{
    DatasetRecordAt, checked_task, dataset_records_from_logs, dataset_states_from_logs, key_service_url_for,
    task_from_event, uri_for,
};
use crate::{Chain, ChainError, DatasetState, Result, Task};

/// How the index follows its chain.
#[derive(Clone, Debug)]
pub struct IndexOptions {
    /// The SQLite file; created if missing.
    pub path: PathBuf,
    /// How many blocks below the head the index stops: what it answers has that many blocks on
    /// top. 0 follows the head (a local chain).
    pub confirmations: u64,
}

/// The events the index keeps: only the contract emits them, and only what it answers from. The
/// contract's other events (some cheap for anyone to emit) are not fetched.
const INDEXED_EVENTS: [B256; 4] = [
    TaskCreated::SIGNATURE_HASH,
    DatasetRegistered::SIGNATURE_HASH,
    DatasetUpdated::SIGNATURE_HASH,
    DatasetTransferred::SIGNATURE_HASH,
];

/// How many blocks one log query spans while the index catches up.
const BLOCKS_PER_QUERY: u64 = 5_000;

/// How many recent block hashes are kept to find where a reorganisation forked.
const KEPT_HASHES: u64 = 256;

/// Keeps a [`ChainIndex`] following its chain; dropping it stops that.
pub struct Follower(tokio::task::JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The contract's events as of a confirmed block, kept in SQLite.
pub struct ChainIndex {
    chain: Chain,
    confirmations: u64,
    db: Mutex<Connection>,
    /// One catch-up at a time: two would fetch the same blocks.
    sync: tokio::sync::Mutex<()>,
    /// How many catch-ups have finished.
    catch_ups: std::sync::atomic::AtomicU64,
}

impl ChainIndex {
    /// Opens (or creates) the index of `chain`'s contract at `options.path`. A file that indexes
    /// another chain or contract is emptied and rebuilt.
    pub async fn open(chain: Chain, options: &IndexOptions) -> Result<Self> {
        let db = open_db(&options.path).map_err(|e| store_error(&options.path, e))?;
        let deployment = (chain.chain_id(), chain.address());
        let indexed: Option<(i64, Vec<u8>)> = db
            .query_row("SELECT chain_id, contract FROM deployment", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| store_error(&options.path, e))?;
        let same = indexed.as_ref().is_some_and(|(id, c)| *id as u64 == deployment.0 && c[..] == deployment.1[..]);
        if !same {
            if indexed.is_some() {
                warn!(path = %options.path.display(), "the chain index is of another deployment; rebuilding it");
            }
            let from = chain.deployment_block().await?;
            reset(&db, deployment, from).map_err(|e| store_error(&options.path, e))?;
        }
        Ok(Self {
            chain,
            confirmations: options.confirmations,
            db: Mutex::new(db),
            sync: Default::default(),
            catch_ups: Default::default(),
        })
    }

    /// The last block indexed.
    pub fn cursor(&self) -> u64 {
        self.db().query_row("SELECT number FROM cursor", [], |r| r.get::<_, i64>(0)).unwrap_or(0) as u64
    }

    /// Follows the chain up to `confirmations` below its head; returns the block indexed through.
    pub async fn catch_up(&self) -> Result<u64> {
        let asked = self.catch_ups.load(std::sync::atomic::Ordering::Acquire);
        let _one_at_a_time = self.sync.lock().await;
        // One that finished while this caller waited has read a head at least as new: callers
        // who miss together cost one catch-up, not one each.
        if self.catch_ups.load(std::sync::atomic::Ordering::Acquire) != asked {
            return Ok(self.cursor());
        }
        let caught_up = self.follow_to_target().await;
        self.catch_ups.fetch_add(1, std::sync::atomic::Ordering::Release);
        caught_up
    }

    async fn follow_to_target(&self) -> Result<u64> {
        self.roll_back_reorganised().await?;
        let target = self.chain.block_number().await?.saturating_sub(self.confirmations);
        let mut cursor = self.cursor();
        let mut span = BLOCKS_PER_QUERY;
        while cursor < target {
            let to = target.min(cursor + span);
            // The step's last block, the same before and after its logs are read: the logs are
            // of the chain that block is on, not of a fork the node switched away from meanwhile.
            let hash = self.block_hash(to).await?;
            // A range holding more logs than the node answers for (a flood of cheap events) is
            // read in halves, down to one block, instead of stopping the index there for good.
            let logs = match self.chain.contract_logs(cursor + 1, to, &INDEXED_EVENTS).await {
                Ok(logs) => logs,
                Err(e) if span == 1 => return Err(e),
                Err(e) => {
                    warn!(error = %e, from = cursor + 1, to, "a log query failed; reading a smaller range");
                    span = (span / 2).max(1);
                    continue;
                }
            };
            if self.block_hash(to).await? != hash {
                return Err(self.rpc(format!("block {to} changed while its logs were read; trying again")));
            }
            self.store(&logs, to, hash)?;
            cursor = to;
        }
        Ok(cursor)
    }

    /// Keeps the index following the chain every `interval` until the returned guard is dropped.
    pub fn follow(self: std::sync::Arc<Self>, interval: std::time::Duration) -> Follower {
        Follower(tokio::spawn(async move {
            loop {
                if let Err(e) = self.catch_up().await {
                    warn!(error = %e, "the chain index cannot follow the chain; retrying");
                }
                tokio::time::sleep(interval).await;
            }
        }))
    }

    /// The task with its parameters from its indexed `TaskCreated` event, checked against the
    /// commitment the chain stores now; `None` if the chain has no such task, or has it in a block
    /// not yet confirmed.
    pub async fn task(&self, id: U256) -> Result<Option<Task>> {
        let commitment = self.chain.task_commitment(id).await?;
        if commitment.is_zero() {
            return Ok(None);
        }
        // Indexed already, and as the chain has it: no call to the chain beyond the commitment.
        if let Some(task) = self.indexed_task(id, commitment)? {
            return Ok(Some(task));
        }
        // Not yet indexed, or indexed from a block a reorganisation has replaced since.
        self.catch_up().await?;
        match self.indexed_task(id, commitment)? {
            Some(task) => Ok(Some(task)),
            None if self.has_task_log(id)? => Err(ChainError::CommitmentMismatch(id)),
            None => Ok(None),
        }
    }

    /// The URI the dataset had while its manifest digest was `manifest` (the newest record
    /// naming it), up to the confirmed block.
    pub async fn dataset_uri_for(&self, dataset: DatasetId, manifest: ManifestDigest) -> Result<Option<String>> {
        Ok(uri_for(&self.dataset_records(dataset).await?, manifest))
    }

    /// The key-service URL the dataset gave with key `kms_key` (the newest record naming it).
    pub async fn key_service_url_for(&self, dataset: DatasetId, kms_key: B256) -> Result<Option<String>> {
        Ok(key_service_url_for(&self.dataset_records(dataset).await?, kms_key))
    }

    async fn dataset_records(&self, dataset: DatasetId) -> Result<Vec<DatasetRecordAt>> {
        self.catch_up().await?;
        let logs = self.logs_where(dataset, &[DatasetRegistered::SIGNATURE_HASH, DatasetUpdated::SIGNATURE_HASH])?;
        dataset_records_from_logs(dataset, logs, self.chain.url())
    }

    /// The indexed `TaskCreated` of task `id` that matches its commitment, newest first (an
    /// older one may be of a block a reorganisation replaced, not yet rolled back).
    fn indexed_task(&self, id: U256, commitment: B256) -> Result<Option<Task>> {
        for log in self.logs_where(B256::from(id), &[TaskCreated::SIGNATURE_HASH])?.into_iter().rev() {
            let event = log.log_decode::<TaskCreated>().map_err(|e| self.rpc(format!("task {id}'s event: {e}")))?;
            if let Ok(task) =
                checked_task(task_from_event(event.inner.data, log.block_number.unwrap_or_default()), commitment)
            {
                return Ok(Some(task));
            }
        }
        Ok(None)
    }

    /// The tasks rented from `pool` in blocks `from_block` up to the block indexed through (which
    /// it returns too), oldest first, as their `TaskCreated` events have them; whether each is
    /// still active is the chain's to say now.
    pub async fn tasks_of_pool(&self, pool: PoolId, from_block: u64) -> Result<(Vec<Task>, u64)> {
        let through = self.catch_up().await?;
        let logs = self.select_logs("topic3 = ?2 AND block >= ?3", pool, from_block, &[TaskCreated::SIGNATURE_HASH])?;
        let mut tasks = Vec::with_capacity(logs.len());
        for log in logs {
            let block = log.block_number.unwrap_or_default();
            let event = log.log_decode::<TaskCreated>().map_err(|e| self.rpc(format!("a task's event: {e}")))?;
            tasks.push(task_from_event(event.inner.data, block));
        }
        Ok((tasks, through))
    }

    fn has_task_log(&self, id: U256) -> Result<bool> {
        Ok(!self.logs_where(B256::from(id), &[TaskCreated::SIGNATURE_HASH])?.is_empty())
    }

    /// Every (owner, data version, policy) the dataset has been in up to the confirmed block,
    /// oldest first.
    pub async fn dataset_states(&self, dataset: DatasetId) -> Result<Vec<DatasetState>> {
        self.catch_up().await?;
        let kinds =
            [DatasetRegistered::SIGNATURE_HASH, DatasetUpdated::SIGNATURE_HASH, DatasetTransferred::SIGNATURE_HASH];
        let logs = self.logs_where(dataset, &kinds)?;
        dataset_states_from_logs(dataset, logs, self.chain.url())
    }

    /// The indexed logs whose first indexed topic is `topic1` and whose event is one of `kinds`.
    fn logs_where(&self, topic1: B256, kinds: &[B256]) -> Result<Vec<Log>> {
        self.select_logs("topic1 = ?2 AND block >= ?3", topic1, 0, kinds)
    }

    /// The logs of `kinds` with `where_` (over ?2 = `topic` and ?3 = `from_block`) true.
    fn select_logs(&self, where_: &str, topic: B256, from_block: u64, kinds: &[B256]) -> Result<Vec<Log>> {
        let db = self.db();
        let mut logs = Vec::new();
        for kind in kinds {
            let mut query = db
                .prepare_cached(&format!(
                    "SELECT block, log_index, block_hash, topics, data FROM logs
                     WHERE topic0 = ?1 AND {where_} ORDER BY block, log_index"
                ))
                .map_err(|e| self.store_err(e))?;
            let rows = query
                .query_map(params![kind.as_slice(), topic.as_slice(), from_block as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                })
                .map_err(|e| self.store_err(e))?;
            for row in rows {
                let (block, index, hash, topics, data) = row.map_err(|e| self.store_err(e))?;
                let topics = topics.chunks_exact(32).map(B256::from_slice).collect();
                let inner = alloy::primitives::Log::new_unchecked(self.chain.address(), topics, data.into());
                logs.push(Log {
                    inner,
                    block_hash: Some(B256::from_slice(&hash)),
                    block_number: Some(block as u64),
                    log_index: Some(index as u64),
                    ..Default::default()
                });
            }
        }
        logs.sort_by_key(|l| (l.block_number, l.log_index));
        Ok(logs)
    }

    /// Finds the newest kept block the chain still has, and drops everything indexed after it.
    async fn roll_back_reorganised(&self) -> Result<()> {
        let kept: Vec<(u64, B256)> = {
            let db = self.db();
            let mut query =
                db.prepare("SELECT number, hash FROM blocks ORDER BY number DESC").map_err(|e| self.store_err(e))?;
            query
                .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, B256::from_slice(&r.get::<_, Vec<u8>>(1)?))))
                .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
                .map_err(|e| self.store_err(e))?
        };
        let Some(&(newest, _)) = kept.first() else { return Ok(()) };
        for (number, hash) in &kept {
            if self.chain.block_hash(*number).await? == Some(*hash) {
                if *number < newest {
                    warn!(from = number + 1, to = newest, "the chain reorganised; the index rolls back");
                    self.truncate_after(*number, *hash)?;
                }
                return Ok(());
            }
        }
        // None of the kept blocks is on the chain any more (they may be few: a long step keeps
        // only its last). Fetching again is always safe: go back far enough for any reorganisation
        // a chain makes in practice.
        let oldest = kept.last().map_or(newest, |(number, _)| *number);
        let back_to = oldest.saturating_sub(KEPT_HASHES).max(self.deployment_block()?.saturating_sub(1));
        warn!(
            from = back_to + 1,
            to = newest,
            "the chain reorganised past every block the index kept; it fetches again"
        );
        self.truncate_after(back_to, B256::ZERO)
    }

    /// The block the contract was deployed in, where the index starts.
    fn deployment_block(&self) -> Result<u64> {
        self.db()
            .query_row("SELECT block FROM deployment", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.store_err(e))
    }

    fn truncate_after(&self, number: u64, hash: B256) -> Result<()> {
        let db = self.db();
        let tx = db.unchecked_transaction().map_err(|e| self.store_err(e))?;
        let n = number as i64;
        tx.execute("DELETE FROM logs WHERE block > ?1", params![n]).map_err(|e| self.store_err(e))?;
        tx.execute("DELETE FROM blocks WHERE number > ?1", params![n]).map_err(|e| self.store_err(e))?;
        tx.execute("UPDATE cursor SET number = ?1, hash = ?2", params![n, hash.as_slice()])
            .map_err(|e| self.store_err(e))?;
        tx.commit().map_err(|e| self.store_err(e))
    }

    /// Stores the logs of blocks up to `to` and moves the cursor there, in one transaction.
    fn store(&self, logs: &[Log], to: u64, hash: B256) -> Result<()> {
        let db = self.db();
        let tx = db.unchecked_transaction().map_err(|e| self.store_err(e))?;
        for log in logs {
            let (Some(block), Some(index), Some(block_hash)) = (log.block_number, log.log_index, log.block_hash) else {
                // A node that answers without a log's place would have the cursor skip it.
                return Err(self.rpc(format!("a log up to block {to} came without its block or index")));
            };
            let topics = log.topics();
            let topic = |i: usize| topics.get(i).map(|t| t.as_slice().to_vec());
            tx.execute(
                "INSERT OR REPLACE INTO logs (block, log_index, block_hash, topic0, topic1, topic3, topics, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    block as i64,
                    index as i64,
                    block_hash.as_slice(),
                    topic(0),
                    topic(1),
                    topic(3),
                    topics.concat(),
                    log.data().data.to_vec()
                ],
            )
            .map_err(|e| self.store_err(e))?;
            tx.execute(
                "INSERT OR REPLACE INTO blocks (number, hash) VALUES (?1, ?2)",
                params![block as i64, block_hash.as_slice()],
            )
            .map_err(|e| self.store_err(e))?;
        }
        tx.execute("INSERT OR REPLACE INTO blocks (number, hash) VALUES (?1, ?2)", params![to as i64, hash.as_slice()])
            .map_err(|e| self.store_err(e))?;
        tx.execute("DELETE FROM blocks WHERE number < ?1", params![to.saturating_sub(KEPT_HASHES) as i64])
            .map_err(|e| self.store_err(e))?;
        tx.execute("UPDATE cursor SET number = ?1, hash = ?2", params![to as i64, hash.as_slice()])
            .map_err(|e| self.store_err(e))?;
        tx.commit().map_err(|e| self.store_err(e))?;
        if !logs.is_empty() {
            info!(through = to, logs = logs.len(), "chain index advanced");
        }
        Ok(())
    }

    async fn block_hash(&self, number: u64) -> Result<B256> {
        self.chain.block_hash(number).await?.ok_or_else(|| self.rpc(format!("block {number} is not on the chain")))
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn store_err(&self, e: rusqlite::Error) -> ChainError {
        ChainError::Index(e.to_string())
    }

    fn rpc(&self, reason: String) -> ChainError {
        ChainError::Rpc { url: self.chain.url().to_owned(), reason }
    }
}

fn store_error(path: &Path, e: rusqlite::Error) -> ChainError {
    ChainError::Index(format!("{}: {e}", path.display()))
}

/// The layout of the index file.
const SCHEMA_VERSION: i64 = 2;

fn open_db(path: &Path) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let db = Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    // A cache of the chain: a crash loses at most the last step, which is fetched again.
    db.pragma_update(None, "synchronous", "NORMAL")?;
    // A file of another layout is dropped and rebuilt: it holds nothing the chain does not.
    let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != SCHEMA_VERSION {
        db.execute_batch(
            "DROP TABLE IF EXISTS deployment; DROP TABLE IF EXISTS cursor; DROP TABLE IF EXISTS blocks;
             DROP TABLE IF EXISTS logs;",
        )?;
        db.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS deployment (
             chain_id INTEGER NOT NULL, contract BLOB NOT NULL, block INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS cursor (number INTEGER NOT NULL, hash BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS logs (
             block      INTEGER NOT NULL,
             log_index  INTEGER NOT NULL,
             block_hash BLOB NOT NULL,
             topic0     BLOB,
             topic1     BLOB,
             topic3     BLOB,
             topics     BLOB NOT NULL,
             data       BLOB NOT NULL,
             PRIMARY KEY (block, log_index)
         );
         CREATE INDEX IF NOT EXISTS logs_by_topic ON logs (topic0, topic1);
         CREATE INDEX IF NOT EXISTS logs_by_third_topic ON logs (topic0, topic3, block);",
    )?;
    Ok(db)
}

/// Empties the index and points it at `deployment`, to be followed from block `from`.
fn reset(db: &Connection, deployment: (u64, Address), from: u64) -> rusqlite::Result<()> {
    let tx = db.unchecked_transaction()?;
    tx.execute_batch("DELETE FROM deployment; DELETE FROM cursor; DELETE FROM blocks; DELETE FROM logs;")?;
    tx.execute(
        "INSERT INTO deployment (chain_id, contract, block) VALUES (?1, ?2, ?3)",
        params![deployment.0 as i64, deployment.1.as_slice(), from as i64],
    )?;
    // The cursor is the last block indexed: the one before the deployment's, whose hash is not
    // kept (nothing of the contract's is in it to roll back).
    tx.execute(
        "INSERT INTO cursor (number, hash) VALUES (?1, ?2)",
        params![from.saturating_sub(1) as i64, B256::ZERO.as_slice()],
    )?;
    tx.commit()
}
