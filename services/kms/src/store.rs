//! The key service's state, behind [`DepositStore`]: sealed deposits and the release audit log.
//! The SQLite backend (WAL, synchronous=FULL) runs its blocking calls off the async executor; a
//! PostgreSQL backend implements the same trait.

use std::path::Path;

use alloy::primitives::{Address, B256, Bytes, U256};
use rusqlite::{Connection, OptionalExtension, params};
use strongroom_http::Blocking;
use strongroom_types::{AuditEntry, ManifestDigest, SealedBox};

/// A task of one deployment: its chain, its contract, its id there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskRef {
    pub chain_id: u64,
    pub contract: Address,
    pub id: U256,
}

/// Where a key service keeps what owners deposited and what it released.
#[async_trait::async_trait]
pub trait DepositStore: Send + Sync + 'static {
    /// Stores (or replaces) the depositor's sealed keys for one data version of a dataset, named
    /// by its manifest digest, under a policy: a state the chain has recorded the dataset in while
    /// the depositor owned it. Older versions' keys stay: tasks rented against them may still run.
    async fn put_deposit(
        &self,
        dataset: B256,
        depositor: Address,
        manifest: ManifestDigest,
        sealed: SealedBox,
        policy: String,
    ) -> crate::Result<()>;

    /// Stores keys for a data version and policy the chain has not recorded yet: a rotation
    /// deposits before it points the dataset at the new version. A depositor keeps one such
    /// deposit per dataset, so this one replaces any other of theirs whose version and policy are
    /// not among `recorded` (the states the chain has recorded for them), and what is kept for one
    /// dataset grows only with its transactions on chain.
    async fn stage_deposit(
        &self,
        dataset: B256,
        depositor: Address,
        manifest: ManifestDigest,
        sealed: SealedBox,
        policy: String,
        recorded: Vec<(ManifestDigest, B256)>,
    ) -> crate::Result<()>;

    /// The depositor's sealed keys for one data version of a dataset under the policy whose
    /// keccak256 is `policy_hash`, and that policy.
    async fn deposit(
        &self,
        dataset: B256,
        depositor: Address,
        manifest: ManifestDigest,
        policy_hash: B256,
    ) -> crate::Result<Option<(SealedBox, String)>>;

    /// A deposited policy by its keccak256 (the hash the chain records): policies are public, so
    /// workers and analysts read the licence a dataset is rented under before any key moves.
    async fn policy(&self, hash: B256) -> crate::Result<Option<String>>;

    /// Binds a task's keys to the first enclave and task key they are released to, and returns
    /// whom they are bound to: a task's keys are released once, and only a repeat of that
    /// request (a host retrying after a lost reply) is answered again. Tasks are named by their
    /// deployment (chain id and contract) too, so a store that outlives a chain refuses nothing.
    async fn claim_task(
        &self,
        task: TaskRef,
        enclave: Address,
        task_key: B256,
        authorization: Bytes,
    ) -> crate::Result<(Address, B256)>;

    /// Records a release; a release that is not on record must not leave the service.
    async fn record_release(&self, task: TaskRef, entry: AuditEntry) -> crate::Result<()>;

    /// The enclave a task's keys were released to: its claim, once a release to that enclave is
    /// on record (a claim alone may have failed before the keys were sealed).
    async fn released_to(&self, task: TaskRef) -> crate::Result<Option<(Address, Bytes)>>;

    /// The audit log, of one task or of all, oldest first.
    async fn releases(&self, dataset: B256, task: Option<U256>) -> crate::Result<Vec<AuditEntry>>;
}

/// The SQLite backend of [`DepositStore`].
#[derive(Clone)]
pub struct SqliteDepositStore(Blocking<Store>);

impl SqliteDepositStore {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        Store::open(path).map(|store| Self(Blocking::new(store)))
    }

    /// Runs a blocking SQLite call (fsync included) on the blocking pool, not the executor.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> rusqlite::Result<T> + Send + 'static,
    ) -> crate::Result<T> {
        let result = self.0.call(call).await;
        result.map_err(|e| crate::KmsError::Internal(format!("store call panicked: {e}")))?.map_err(Into::into)
    }
}

#[async_trait::async_trait]
impl DepositStore for SqliteDepositStore {
    async fn put_deposit(
        &self,
        dataset: B256,
        depositor: Address,
        manifest: ManifestDigest,
        sealed: SealedBox,
        policy: String,
    ) -> crate::Result<()> {
        self.blocking(move |s| s.put_deposit(dataset, depositor, manifest, &sealed, &policy)).await
    }

    async fn stage_deposit(
        &self,
        dataset: B256,
        depositor: Address,
        manifest: ManifestDigest,
        sealed: SealedBox,
        policy: String,
        recorded: Vec<(ManifestDigest, B256)>,
    ) -> crate::Result<()> {
        self.blocking(move |s| s.stage_deposit(dataset, depositor, manifest, &sealed, &policy, &recorded)).await
    }

    async fn deposit(
        &self,
        dataset: B256,
        depositor: Address,
        manifest: ManifestDigest,
        policy_hash: B256,
    ) -> crate::Result<Option<(SealedBox, String)>> {
        self.blocking(move |s| s.deposit(dataset, depositor, manifest, policy_hash)).await
    }

    async fn policy(&self, hash: B256) -> crate::Result<Option<String>> {
        self.blocking(move |s| s.policy(hash)).await
    }

    async fn claim_task(
        &self,
        task: TaskRef,
        enclave: Address,
        task_key: B256,
        authorization: Bytes,
    ) -> crate::Result<(Address, B256)> {
        self.blocking(move |s| s.claim_task(task, enclave, task_key, &authorization)).await
    }

    async fn record_release(&self, task: TaskRef, entry: AuditEntry) -> crate::Result<()> {
        self.blocking(move |s| s.record_release(task, &entry)).await
    }

    async fn releases(&self, dataset: B256, task: Option<U256>) -> crate::Result<Vec<AuditEntry>> {
        self.blocking(move |s| s.releases(dataset, task)).await
    }

    async fn released_to(&self, task: TaskRef) -> crate::Result<Option<(Address, Bytes)>> {
        Ok(self.blocking(move |s| s.released_to(task)).await?.map(|(enclave, auth)| (enclave, auth.into())))
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
            "CREATE TABLE IF NOT EXISTS deposits (
                 dataset    BLOB NOT NULL,
                 depositor  BLOB NOT NULL,
                 manifest   BLOB NOT NULL,
                 sealed     BLOB NOT NULL,
                 policy_hash BLOB NOT NULL,
                 policy     TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 PRIMARY KEY (dataset, depositor, manifest, policy_hash)
             );
             CREATE TABLE IF NOT EXISTS releases (
                 id          INTEGER PRIMARY KEY AUTOINCREMENT,
                 task_id     BLOB NOT NULL,
                 dataset     BLOB NOT NULL,
                 enclave     BLOB NOT NULL,
                 key_ids     TEXT NOT NULL,
                 released_at INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS releases_task ON releases (task_id);
             CREATE TABLE IF NOT EXISTS released_tasks (
                 chain_id INTEGER NOT NULL,
                 contract BLOB NOT NULL,
                 task_id  BLOB NOT NULL,
                 enclave  BLOB NOT NULL,
                 task_key BLOB NOT NULL,
                 authorization BLOB NOT NULL DEFAULT x'',
                 released INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (chain_id, contract, task_id)
             );
             -- Deposits once came before registration and were counted here; now only a
             -- dataset's registered owner deposits.
             DROP TABLE IF EXISTS pending_datasets;
             CREATE TABLE IF NOT EXISTS policies (
                 hash   BLOB PRIMARY KEY,
                 policy TEXT NOT NULL
             );",
        )?;
        // Deposits were once kept per dataset, then per data version without their policy's hash
        // (so a deposit's signature did not cover its policy); such a file cannot be read.
        let has = |column: &str| -> rusqlite::Result<bool> {
            conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('deposits') WHERE name = ?1",
                params![column],
                |row| row.get(0),
            )
        };
        let before = match (has("manifest")?, has("policy_hash")?) {
            (false, _) => Some("per-version deposits"),
            (true, false) => Some("deposits signed with their policy"),
            (true, true) => None,
        };
        if let Some(before) = before {
            let message = format!(
                "{} keeps deposits from before {before}: move it aside and have owners run `strongroom dataset redeposit`",
                path.display()
            );
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(message),
            ));
        }
        // Claims from before receipts carried the pool's authorization: kept (they still bind
        // their tasks), but with no authorization and not marked released they give no receipt.
        let claims_have = |column: &str| -> rusqlite::Result<bool> {
            conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('released_tasks') WHERE name = ?1",
                params![column],
                |row| row.get(0),
            )
        };
        // Both columns in one transaction, each added only if missing: a crash halfway cannot
        // leave a store that never migrates.
        let mut missing = String::new();
        if !claims_have("authorization")? {
            missing.push_str("ALTER TABLE released_tasks ADD COLUMN authorization BLOB NOT NULL DEFAULT x'';");
        }
        if !claims_have("released")? {
            missing.push_str("ALTER TABLE released_tasks ADD COLUMN released INTEGER NOT NULL DEFAULT 0;");
        }
        if !missing.is_empty() {
            conn.execute_batch(&format!("BEGIN; {missing} COMMIT;"))?;
        }
        Ok(Self { conn })
    }

    /// Stores (or replaces) the depositor's sealed keys for one data version of a dataset, named
    /// by its manifest digest. Older versions' keys stay: tasks rented against them may still run.
    pub(crate) fn put_deposit(
        &self,
        dataset: B256,
        depositor: Address,
        manifest: ManifestDigest,
        sealed: &SealedBox,
        policy: &str,
    ) -> rusqlite::Result<()> {
        let policy_hash = alloy::primitives::keccak256(policy.as_bytes());
        self.conn.execute(
            "INSERT INTO deposits (dataset, depositor, manifest, policy_hash, sealed, policy, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (dataset, depositor, manifest, policy_hash) DO UPDATE
             SET sealed = excluded.sealed, created_at = excluded.created_at",
            params![
                dataset.as_slice(),
                depositor.as_slice(),
                manifest.as_slice(),
                policy_hash.as_slice(),
                sealed.as_bytes(),
                policy,
                now()
            ],
        )?;
        self.conn.execute(
            "INSERT OR IGNORE INTO policies (hash, policy) VALUES (?1, ?2)",
            params![policy_hash.as_slice(), policy],
        )?;
        Ok(())
    }

    /// Replaces the depositor's deposits for `dataset` that the chain has not recorded (at most
    /// one) with this one, and drops a policy nothing refers to any more, in one transaction.
    pub(crate) fn stage_deposit(
        &self,
        dataset: B256,
        depositor: Address,
        manifest: ManifestDigest,
        sealed: &SealedBox,
        policy: &str,
        recorded: &[(ManifestDigest, B256)],
    ) -> rusqlite::Result<()> {
        let staging = (manifest, alloy::primitives::keccak256(policy.as_bytes()));
        let tx = self.conn.unchecked_transaction()?;
        let kept: Vec<(Vec<u8>, Vec<u8>)> = tx
            .prepare("SELECT manifest, policy_hash FROM deposits WHERE dataset = ?1 AND depositor = ?2")?
            .query_map(params![dataset.as_slice(), depositor.as_slice()], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (kept_manifest, kept_policy) in kept {
            let state = (ManifestDigest::new(B256::from_slice(&kept_manifest)), B256::from_slice(&kept_policy));
            if state == staging || recorded.contains(&state) {
                continue;
            }
            tx.execute(
                "DELETE FROM deposits WHERE dataset = ?1 AND depositor = ?2 AND manifest = ?3 AND policy_hash = ?4",
                params![dataset.as_slice(), depositor.as_slice(), kept_manifest, kept_policy],
            )?;
            tx.execute(
                "DELETE FROM policies WHERE hash = ?1 AND NOT EXISTS (SELECT 1 FROM deposits WHERE policy_hash = ?1)",
                params![kept_policy],
            )?;
        }
        self.put_deposit(dataset, depositor, manifest, sealed, policy)?;
        tx.commit()
    }

    /// How many deposits `depositor` keeps for `dataset` (for tests).
    #[cfg(test)]
    fn count_deposits(&self, dataset: B256, depositor: Address) -> rusqlite::Result<u64> {
        self.conn.query_row(
            "SELECT COUNT(*) FROM deposits WHERE dataset = ?1 AND depositor = ?2",
            params![dataset.as_slice(), depositor.as_slice()],
            |row| row.get(0),
        )
    }

    pub(crate) fn policy(&self, hash: B256) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row("SELECT policy FROM policies WHERE hash = ?1", params![hash.as_slice()], |row| row.get(0))
            .optional()
    }

    /// The depositor's sealed keys for one data version of a dataset under one policy, and the policy.
    pub(crate) fn deposit(
        &self,
        dataset: B256,
        depositor: Address,
        manifest: ManifestDigest,
        policy_hash: B256,
    ) -> rusqlite::Result<Option<(SealedBox, String)>> {
        self.conn
            .query_row(
                "SELECT sealed, policy FROM deposits
                 WHERE dataset = ?1 AND depositor = ?2 AND manifest = ?3 AND policy_hash = ?4",
                params![dataset.as_slice(), depositor.as_slice(), manifest.as_slice(), policy_hash.as_slice()],
                |row| Ok((SealedBox(row.get::<_, Vec<u8>>(0)?), row.get::<_, String>(1)?)),
            )
            .optional()
    }

    pub(crate) fn claim_task(
        &self,
        task: TaskRef,
        enclave: Address,
        task_key: B256,
        authorization: &[u8],
    ) -> rusqlite::Result<(Address, B256)> {
        let (chain_id, contract, id) = (task.chain_id as i64, task.contract, task.id.to_be_bytes::<32>());
        // One statement takes the claim or leaves the first one: two racing requests cannot both win.
        self.conn.execute(
            "INSERT INTO released_tasks (chain_id, contract, task_id, enclave, task_key, authorization)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (chain_id, contract, task_id) DO NOTHING",
            params![
                chain_id,
                contract.as_slice(),
                id.as_slice(),
                enclave.as_slice(),
                task_key.as_slice(),
                authorization
            ],
        )?;
        self.conn.query_row(
            "SELECT enclave, task_key FROM released_tasks WHERE chain_id = ?1 AND contract = ?2 AND task_id = ?3",
            params![chain_id, contract.as_slice(), id.as_slice()],
            |row| {
                let (enclave, key): (Vec<u8>, Vec<u8>) = (row.get(0)?, row.get(1)?);
                Ok((Address::from_slice(&enclave), B256::from_slice(&key)))
            },
        )
    }

    /// To whom a task's keys were released, and the pool's authorization they were asked with:
    /// only a claim whose release was sealed and audited counts.
    pub(crate) fn released_to(&self, task: TaskRef) -> rusqlite::Result<Option<(Address, Vec<u8>)>> {
        let (chain_id, contract, id) = (task.chain_id as i64, task.contract, task.id.to_be_bytes::<32>());
        self.conn
            .query_row(
                "SELECT enclave, authorization FROM released_tasks
                 WHERE chain_id = ?1 AND contract = ?2 AND task_id = ?3 AND released = 1",
                params![chain_id, contract.as_slice(), id.as_slice()],
                |row| Ok((Address::from_slice(&row.get::<_, Vec<u8>>(0)?), row.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
    }

    /// Audits a release and marks its task's claim released, both or neither.
    pub(crate) fn record_release(&self, task: TaskRef, entry: &AuditEntry) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO releases (task_id, dataset, enclave, key_ids, released_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                entry.task_id.to_be_bytes::<32>().as_slice(),
                entry.dataset.as_slice(),
                entry.enclave.as_slice(),
                serde_json::to_string(&entry.key_ids).expect("strings serialize"),
                entry.released_at as i64,
            ],
        )?;
        tx.execute(
            "UPDATE released_tasks SET released = 1 WHERE chain_id = ?1 AND contract = ?2 AND task_id = ?3",
            params![task.chain_id as i64, task.contract.as_slice(), task.id.to_be_bytes::<32>().as_slice()],
        )?;
        tx.commit()
    }

    pub(crate) fn releases(&self, dataset: B256, task: Option<U256>) -> rusqlite::Result<Vec<AuditEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT task_id, dataset, enclave, key_ids, released_at FROM releases
             WHERE dataset = ?2 AND (?1 IS NULL OR task_id = ?1) ORDER BY id",
        )?;
        let task = task.map(|t| t.to_be_bytes::<32>().to_vec());
        let rows = stmt.query_map(params![task, dataset.as_slice()], |row| {
            let task_id: Vec<u8> = row.get(0)?;
            let dataset: Vec<u8> = row.get(1)?;
            let enclave: Vec<u8> = row.get(2)?;
            let key_ids: String = row.get(3)?;
            let released_at: i64 = row.get(4)?;
            Ok(AuditEntry {
                task_id: U256::from_be_slice(&task_id),
                dataset: B256::from_slice(&dataset),
                enclave: Address::from_slice(&enclave),
                key_ids: serde_json::from_str(&key_ids).unwrap_or_default(),
                released_at: released_at as u64,
            })
        })?;
        rows.collect()
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_bound_to_its_first_enclave_and_task_key_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.sqlite");
        let at = |id: u64| TaskRef { chain_id: 1, contract: Address::repeat_byte(0xcc), id: U256::from(id) };
        let (task, enclave, key) = (at(7), Address::repeat_byte(1), B256::repeat_byte(2));
        let store = Store::open(&path).unwrap();
        assert_eq!(store.claim_task(task, enclave, key, b"auth").unwrap(), (enclave, key));
        assert_eq!(store.claim_task(task, enclave, key, b"auth").unwrap(), (enclave, key), "a repeat keeps the claim");
        assert_eq!(store.claim_task(task, enclave, B256::repeat_byte(3), b"auth").unwrap(), (enclave, key));
        assert_eq!(store.claim_task(task, Address::repeat_byte(4), key, b"auth").unwrap(), (enclave, key));
        assert_eq!(
            store.claim_task(at(8), Address::repeat_byte(4), key, b"auth").unwrap(),
            (Address::repeat_byte(4), key)
        );
        // The same id on another deployment is another task.
        let elsewhere = TaskRef { chain_id: 2, ..task };
        assert_eq!(
            store.claim_task(elsewhere, Address::repeat_byte(5), key, b"auth").unwrap(),
            (Address::repeat_byte(5), key)
        );
        // It survives a restart of the service.
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.claim_task(task, Address::repeat_byte(9), B256::repeat_byte(9), b"auth").unwrap(),
            (enclave, key)
        );
    }

    /// A receipt is given only for a release on record, of this deployment, to the claiming enclave.
    #[test]
    fn a_task_counts_as_released_only_once_its_release_to_the_claimant_is_on_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kms.sqlite")).unwrap();
        let task = TaskRef { chain_id: 1, contract: Address::repeat_byte(0xcc), id: U256::from(7) };
        let (enclave, key) = (Address::repeat_byte(1), B256::repeat_byte(2));
        let entry = |enclave| AuditEntry {
            task_id: task.id,
            dataset: B256::repeat_byte(3),
            enclave,
            key_ids: vec![],
            released_at: 1,
        };
        store.claim_task(task, enclave, key, b"auth").unwrap();
        assert_eq!(store.released_to(task).unwrap(), None, "claimed, not yet released");
        // Task 7 of another deployment released: not this task.
        let elsewhere = TaskRef { chain_id: 2, ..task };
        store.claim_task(elsewhere, Address::repeat_byte(9), key, b"other").unwrap();
        store.record_release(elsewhere, &entry(Address::repeat_byte(9))).unwrap();
        assert_eq!(store.released_to(task).unwrap(), None);
        assert_eq!(store.released_to(elsewhere).unwrap(), Some((Address::repeat_byte(9), b"other".to_vec())));
        store.record_release(task, &entry(enclave)).unwrap();
        assert_eq!(store.released_to(task).unwrap(), Some((enclave, b"auth".to_vec())));
    }

    #[test]
    fn deposits_are_kept_per_dataset_owner_version_and_policy_and_a_repeat_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kms.sqlite")).unwrap();
        let (owner, next_owner) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let (dataset, other) = (B256::repeat_byte(0xa), B256::repeat_byte(0xb));
        let (v1, v2) = (ManifestDigest::new(B256::repeat_byte(1)), ManifestDigest::new(B256::repeat_byte(2)));
        let (sealed, resealed) = (SealedBox(vec![1, 2, 3]), SealedBox(vec![4, 5, 6]));
        store.put_deposit(dataset, owner, v1, &sealed, "p").unwrap();
        store.put_deposit(dataset, owner, v1, &resealed, "p").unwrap(); // a redeposit
        store.put_deposit(dataset, owner, v1, &sealed, "q").unwrap(); // another licence
        store.put_deposit(dataset, owner, v2, &sealed, "p").unwrap(); // a rotation
        store.put_deposit(dataset, next_owner, v2, &sealed, "p").unwrap();
        store.put_deposit(other, owner, v1, &sealed, "p").unwrap();
        assert_eq!(store.count_deposits(dataset, owner).unwrap(), 3);
        assert_eq!(store.count_deposits(dataset, next_owner).unwrap(), 1);
        let (p, q) = (alloy::primitives::keccak256(b"p"), alloy::primitives::keccak256(b"q"));
        assert_eq!(store.deposit(dataset, owner, v1, p).unwrap(), Some((resealed, "p".to_owned())));
        assert_eq!(store.deposit(dataset, next_owner, v1, p).unwrap(), None);
        assert_eq!(store.deposit(dataset, owner, v2, q).unwrap(), None);
    }

    #[test]
    fn a_depositor_keeps_one_deposit_the_chain_has_not_recorded_per_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kms.sqlite")).unwrap();
        let (owner, other_owner) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let dataset = B256::repeat_byte(0xa);
        let version = |n: u8| ManifestDigest::new(B256::repeat_byte(n));
        let hash = |policy: &str| alloy::primitives::keccak256(policy.as_bytes());
        let sealed = SealedBox(vec![1, 2, 3]);
        store.put_deposit(dataset, owner, version(1), &sealed, "p").unwrap();
        store.put_deposit(dataset, other_owner, version(9), &sealed, "s").unwrap();
        // A rotation deposits version 2 before the chain records it; a retry replaces it.
        store.stage_deposit(dataset, owner, version(2), &sealed, "p", &[(version(1), hash("p"))]).unwrap();
        store.stage_deposit(dataset, owner, version(2), &sealed, "p", &[(version(1), hash("p"))]).unwrap();
        assert_eq!(store.count_deposits(dataset, owner).unwrap(), 2);
        // Version 2 was recorded; version 3 is staged beside it.
        let recorded = [(version(1), hash("p")), (version(2), hash("p"))];
        store.stage_deposit(dataset, owner, version(3), &sealed, "p", &recorded).unwrap();
        assert_eq!(store.count_deposits(dataset, owner).unwrap(), 3);
        // Versions staged one after another and never recorded take one row, and a policy only
        // they named is dropped with them.
        for n in 4..20 {
            store.stage_deposit(dataset, owner, version(n), &sealed, &format!("r{n}"), &recorded).unwrap();
        }
        assert_eq!(store.count_deposits(dataset, owner).unwrap(), 3);
        assert_eq!(store.deposit(dataset, owner, version(3), hash("p")).unwrap(), None);
        assert_eq!(store.deposit(dataset, owner, version(19), hash("r19")).unwrap(), Some((sealed, "r19".into())));
        assert_eq!(store.policy(hash("r4")).unwrap(), None);
        assert_eq!(store.policy(hash("r19")).unwrap(), Some("r19".into()));
        assert_eq!(store.policy(hash("p")).unwrap(), Some("p".into()));
        // Another depositor's deposits are not touched.
        assert_eq!(store.count_deposits(dataset, other_owner).unwrap(), 1);
    }

    #[test]
    fn a_store_from_before_per_version_deposits_is_refused_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE deposits (dataset BLOB, depositor BLOB, sealed BLOB, policy TEXT, created_at INTEGER)",
            )
            .unwrap();
        let err = Store::open(&path).err().unwrap();
        assert!(
            err.to_string().ends_with(
                "from before per-version deposits: move it aside and have owners run `strongroom dataset redeposit`"
            ),
            "{err}"
        );
        let unsigned_policies = dir.path().join("unsigned.sqlite");
        Connection::open(&unsigned_policies)
            .unwrap()
            .execute_batch(
                "CREATE TABLE deposits (dataset BLOB, depositor BLOB, manifest BLOB, sealed BLOB, policy TEXT)",
            )
            .unwrap();
        let err = Store::open(&unsigned_policies).err().unwrap();
        assert!(err.to_string().contains("from before deposits signed with their policy: move it aside"), "{err}");

        let fresh = dir.path().join("fresh.sqlite");
        let store = Store::open(&fresh).unwrap();
        let (dataset, owner) = (B256::repeat_byte(1), Address::repeat_byte(2));
        let (v1, v2) = (ManifestDigest::new(B256::repeat_byte(3)), ManifestDigest::new(B256::repeat_byte(4)));
        let hash = |policy: &str| alloy::primitives::keccak256(policy.as_bytes());
        store.put_deposit(dataset, owner, v1, &SealedBox(vec![1]), "p1").unwrap();
        store.put_deposit(dataset, owner, v2, &SealedBox(vec![2]), "p1").unwrap();
        let first = store.deposit(dataset, owner, v1, hash("p1")).unwrap().unwrap();
        assert_eq!((first.0.as_bytes(), first.1.as_str()), (&[1u8][..], "p1"), "each version keeps its keys");
        assert!(
            store.deposit(dataset, owner, ManifestDigest::new(B256::repeat_byte(5)), hash("p1")).unwrap().is_none()
        );
        // A deposit under another policy stands beside the first: re-posting an old deposit with
        // its old policy cannot take the keys away from tasks rented under the new one.
        store.put_deposit(dataset, owner, v1, &SealedBox(vec![9]), "p2").unwrap();
        assert_eq!(store.deposit(dataset, owner, v1, hash("p1")).unwrap().unwrap().0.as_bytes(), &[1u8][..]);
        assert_eq!(store.deposit(dataset, owner, v1, hash("p2")).unwrap().unwrap().0.as_bytes(), &[9u8][..]);
    }
}
