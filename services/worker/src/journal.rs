//! The worker's journal: where each task it took up stands, and the first block it has not looked
//! at, in SQLite under its state directory, so that a host killed at any step takes every task up
//! again where it stood.
//!
//! ```text
//!  seen ─▶ authorized ─▶ keys_released ─▶ computed ─▶ result_stored ─▶ submitted ─▶ confirmed
//!   │          │              │               │              │
//!   └──────────┴─▶ declined   └───────────────┴──────────────┴─▶ given_up (deadline passed)
//!  (any step) ─▶ not_active (refunded or settled by another, or past its deadline when looked at)
//! ```
//!
//! Losing the last steps (a crash of the machine, not only of the process, with `synchronous =
//! NORMAL`) is safe, only slower: a task taken up from an earlier step is asked for with the same
//! task key, which the key service answers with the release it made, its rerun in the enclave
//! answers the same (key and noise are derived from the enclave's identity), and a submission is
//! sent only while the chain still has the task active. What a step keeps (the sealed result, its
//! digest and the enclave's signature) is ciphertext or public: no key is ever written here.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use alloy::primitives::{Address, B256, Bytes, U256};
use rusqlite::{Connection, OptionalExtension, params};
use strongroom_types::Outcome;

use crate::WorkerError;

/// Bumped when the layout changes; a journal of another layout is refused, not dropped (it may
/// hold results not yet submitted).
const SCHEMA_VERSION: i64 = 2;

/// Where a task stands. The order is the order of the steps; the last four end it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Found on chain for this pool; nothing done yet.
    Seen,
    /// Checked and fetched; the operator's authorization is signed and the keys are asked for.
    Authorized,
    /// The key service released the task's keys to the enclave.
    KeysReleased,
    /// The enclave ran it: its sealed result and signature are in the journal.
    Computed,
    /// The sealed result is in the results storage.
    ResultStored,
    /// The submission was mined.
    Submitted,
    /// The chain has the task settled by this worker's submission.
    Confirmed,
    /// Refused before any key moved (see the error); the analyst is refunded after the deadline.
    Declined,
    /// No longer active when looked at: refunded, settled, or past its deadline before any key moved.
    NotActive,
    /// Its keys were released and its deadline passed before it could be submitted.
    GivenUp,
}

impl Step {
    pub const ALL: [Step; 10] = [
        Step::Seen,
        Step::Authorized,
        Step::KeysReleased,
        Step::Computed,
        Step::ResultStored,
        Step::Submitted,
        Step::Confirmed,
        Step::Declined,
        Step::NotActive,
        Step::GivenUp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Seen => "seen",
            Step::Authorized => "authorized",
            Step::KeysReleased => "keys_released",
            Step::Computed => "computed",
            Step::ResultStored => "result_stored",
            Step::Submitted => "submitted",
            Step::Confirmed => "confirmed",
            Step::Declined => "declined",
            Step::NotActive => "not_active",
            Step::GivenUp => "given_up",
        }
    }

    pub fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.name() == name)
    }

    /// Whether the task is over for this worker.
    pub fn is_final(self) -> bool {
        self >= Step::Confirmed
    }
}

/// What the enclave returned for a task, kept until it is submitted: the sealed result (for the
/// analyst only), where it goes, its digest, outcome and the enclave's signature over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Computed {
    pub location: String,
    pub sealed_result: Bytes,
    pub digest: B256,
    pub outcome: Outcome,
    pub signature: Bytes,
}

/// One task's line in the journal.
#[derive(Clone, Debug)]
pub struct Entry {
    pub task_id: U256,
    /// The hash of the rental's parameters: which rental of this id the line is of.
    pub commitment: B256,
    pub deadline: u64,
    pub step: Step,
    /// Unix time (host clock) of the last change.
    pub updated_at: u64,
    /// How many attempts at a step failed.
    pub failures: u64,
    pub last_error: Option<String>,
    pub computed: Option<Computed>,
    pub tx_hash: Option<B256>,
}

/// What a journal is of: its tasks and blocks mean nothing on another chain or contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployment {
    pub chain_id: u64,
    /// The hash of the chain's block 0.
    pub genesis: B256,
    pub contract: Address,
}

/// The journal of one worker, of one deployment.
pub struct Journal {
    path: PathBuf,
    db: Mutex<Connection>,
}

impl Journal {
    /// Opens (or creates) `path` for the deployment: the chain (its id and first block's hash, so
    /// that a devnet started afresh is another chain) and the contract. A journal of another
    /// deployment is started afresh if none of its tasks is unfinished, and refused with what to
    /// do otherwise (its results may still be owed on that chain).
    pub fn open(path: &Path, deployment: &Deployment) -> Result<Self, WorkerError> {
        let journal = Self { path: path.to_owned(), db: Mutex::new(open_db(path).map_err(|e| state(path, e))?) };
        let recorded: Option<(i64, Vec<u8>, Vec<u8>)> = journal
            .db()
            .query_row("SELECT chain_id, genesis, contract FROM deployment", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(|e| state(path, e))?;
        let Deployment { chain_id, genesis, contract } = *deployment;
        match recorded {
            Some((id, g, c)) if id as u64 == chain_id && g[..] == genesis[..] && c[..] == contract[..] => {
                return Ok(journal);
            }
            Some((id, _, c)) => {
                let unfinished = journal.unfinished()?.len();
                if unfinished > 0 {
                    return Err(WorkerError::State(
                        path.display().to_string(),
                        format!(
                            "is the journal of another deployment (chain {id}, contract {}), with {unfinished} task(s) \
                             unfinished there: serve them with that deployment, or give this one's worker another \
                             state directory",
                            Address::from_slice(&c)
                        ),
                    ));
                }
                tracing::warn!(path = %path.display(), "the journal is of another deployment, with nothing unfinished; starting it afresh");
            }
            None => {}
        }
        {
            let db = journal.db();
            db.execute_batch("DELETE FROM deployment; DELETE FROM cursor; DELETE FROM tasks;")
                .and_then(|_| {
                    db.execute(
                        "INSERT INTO deployment (chain_id, genesis, contract) VALUES (?1, ?2, ?3)",
                        params![chain_id as i64, genesis.as_slice(), contract.as_slice()],
                    )
                })
                .map_err(|e| state(path, e))?;
        }
        Ok(journal)
    }

    /// Opens an existing journal to read it, for `strongroom worker status` beside a running worker.
    pub fn open_read_only(path: &Path) -> Result<Self, WorkerError> {
        if !path.is_file() {
            return Err(WorkerError::State(
                path.display().to_string(),
                "does not exist: no worker has run with this state directory (pass the worker's --data-dir)".into(),
            ));
        }
        let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| state(path, e))?;
        Ok(Self { path: path.to_owned(), db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves SQLite consistent; the journal goes on.
        self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fail(&self, e: rusqlite::Error) -> WorkerError {
        state(&self.path, e)
    }

    /// The first block whose tasks are not in the journal yet, if one was kept.
    pub fn cursor(&self) -> Result<Option<u64>, WorkerError> {
        self.db()
            .query_row("SELECT next_block FROM cursor", [], |r| r.get::<_, i64>(0))
            .optional()
            .map(|n| n.map(|n| n as u64))
            .map_err(|e| self.fail(e))
    }

    /// Records `tasks` (id, deadline, the hash of the rental's parameters) as seen, and moves the
    /// cursor to `next_block` if given, in one transaction; returns the tasks new to the journal.
    /// A task already there is left as it stands, unless its line is of another rental of the same
    /// id (one a reorganisation replaced): that line starts again from `seen`, its result
    /// (sealed to another analyst, signed for the other rental) dropped.
    pub fn see(&self, tasks: &[(U256, u64, B256)], next_block: Option<u64>) -> Result<Vec<U256>, WorkerError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.fail(e))?;
        let mut new = Vec::new();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO tasks (task_id, commitment, deadline, step, updated_at, failures)
                     VALUES (?1, ?2, ?3, 'seen', ?4, 0)
                     ON CONFLICT (task_id) DO UPDATE SET
                         commitment = excluded.commitment, deadline = excluded.deadline, step = 'seen',
                         updated_at = excluded.updated_at, failures = 0, last_error = NULL, location = NULL,
                         sealed_result = NULL, digest = NULL, outcome = NULL, signature = NULL, tx_hash = NULL
                     WHERE tasks.commitment != excluded.commitment",
                )
                .map_err(|e| self.fail(e))?;
            for (task_id, deadline, commitment) in tasks {
                let params = params![task_key(*task_id), commitment.as_slice(), *deadline as i64, now()];
                if insert.execute(params).map_err(|e| self.fail(e))? > 0 {
                    new.push(*task_id);
                }
            }
        }
        if let Some(next_block) = next_block {
            tx.execute("DELETE FROM cursor", []).map_err(|e| self.fail(e))?;
            tx.execute("INSERT INTO cursor (next_block) VALUES (?1)", params![next_block as i64])
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(new)
    }

    /// Moves the task to `step`. A step is never undone: an older one is ignored, and so is any
    /// once the task is over.
    pub fn advance(&self, task_id: U256, step: Step) -> Result<(), WorkerError> {
        self.update(task_id, step, "", params![])
    }

    /// Keeps what the enclave returned, and moves the task to [`Step::Computed`].
    pub fn computed(&self, task_id: U256, computed: &Computed) -> Result<(), WorkerError> {
        self.update(
            task_id,
            Step::Computed,
            ", location = ?4, sealed_result = ?5, digest = ?6, outcome = ?7, signature = ?8",
            params![
                computed.location,
                computed.sealed_result.as_ref(),
                computed.digest.as_slice(),
                computed.outcome.as_u8(),
                computed.signature.as_ref()
            ],
        )
    }

    /// Keeps the submission's transaction, and moves the task to [`Step::Submitted`].
    pub fn submitted(&self, task_id: U256, tx_hash: B256) -> Result<(), WorkerError> {
        self.update(task_id, Step::Submitted, ", tx_hash = ?4", params![tx_hash.as_slice()])
    }

    /// Ends the task at `step` (one of the final ones), saying why. The sealed result, now in the
    /// results storage or of no use, is dropped from the journal.
    pub fn finish(&self, task_id: U256, step: Step, why: Option<&str>) -> Result<(), WorkerError> {
        debug_assert!(step.is_final());
        self.update(task_id, step, ", sealed_result = NULL, last_error = coalesce(?4, last_error)", params![why])
    }

    /// Counts a failed attempt at the task's current step.
    pub fn failed_attempt(&self, task_id: U256, error: &str) -> Result<(), WorkerError> {
        self.db()
            .execute(
                "UPDATE tasks SET failures = failures + 1, last_error = ?2, updated_at = ?3 WHERE task_id = ?1",
                params![task_key(task_id), error, now()],
            )
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// `UPDATE tasks SET step = ?2, updated_at = ?3 <extra> WHERE task_id = ?1`, for a step not
    /// behind the one recorded; `extra` takes parameters from ?4 on.
    fn update(&self, task_id: U256, step: Step, extra: &str, more: &[&dyn rusqlite::ToSql]) -> Result<(), WorkerError> {
        let db = self.db();
        let current: Option<String> = db
            .query_row("SELECT step FROM tasks WHERE task_id = ?1", params![task_key(task_id)], |r| r.get(0))
            .optional()
            .map_err(|e| self.fail(e))?;
        let current = current.as_deref().and_then(Step::parse);
        if current.is_some_and(|current| current.is_final() || current > step) {
            return Ok(());
        }
        let key = task_key(task_id);
        let (name, at) = (step.name(), now());
        let mut all: Vec<&dyn rusqlite::ToSql> = vec![&key, &name, &at];
        all.extend_from_slice(more);
        db.execute(&format!("UPDATE tasks SET step = ?2, updated_at = ?3 {extra} WHERE task_id = ?1"), all.as_slice())
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// The task's line, if the journal has it.
    pub fn entry(&self, task_id: U256) -> Result<Option<Entry>, WorkerError> {
        let db = self.db();
        let mut query = db.prepare_cached(&format!("{SELECT_ENTRY} WHERE task_id = ?1")).map_err(|e| self.fail(e))?;
        query.query_row(params![task_key(task_id)], read_entry).optional().map_err(|e| self.fail(e))
    }

    /// Every task not over yet, oldest deadline first: what a restarted worker takes up again.
    pub fn unfinished(&self) -> Result<Vec<Entry>, WorkerError> {
        self.select(
            "WHERE step NOT IN ('confirmed', 'declined', 'not_active', 'given_up') ORDER BY deadline, task_id",
            params![],
        )
    }

    /// How many tasks stand at each step.
    pub fn counts(&self) -> Result<Vec<(Step, u64)>, WorkerError> {
        let db = self.db();
        let mut query = db.prepare("SELECT step, COUNT(*) FROM tasks GROUP BY step").map_err(|e| self.fail(e))?;
        let rows = query
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.fail(e))?;
        let mut counts: Vec<(Step, u64)> = Step::ALL.iter().map(|step| (*step, 0)).collect();
        for row in rows {
            let (name, n) = row.map_err(|e| self.fail(e))?;
            if let Some(slot) = counts.iter_mut().find(|(step, _)| step.name() == name) {
                slot.1 = n;
            }
        }
        Ok(counts)
    }

    /// The `limit` tasks changed last, newest first.
    pub fn recent(&self, limit: u64) -> Result<Vec<Entry>, WorkerError> {
        self.select("ORDER BY updated_at DESC, rowid DESC LIMIT ?1", params![limit as i64])
    }

    fn select(&self, clause: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Entry>, WorkerError> {
        let db = self.db();
        let mut query = db.prepare(&format!("{SELECT_ENTRY} {clause}")).map_err(|e| self.fail(e))?;
        let rows = query.query_map(args, read_entry).map_err(|e| self.fail(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.fail(e))
    }
}

const SELECT_ENTRY: &str = "SELECT task_id, deadline, step, updated_at, failures, last_error, location, sealed_result, \
                            digest, outcome, signature, tx_hash, commitment FROM tasks";

fn read_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let bad = |column: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, what.to_owned().into())
    };
    let task_id: Vec<u8> = row.get(0)?;
    let task_id = U256::try_from_be_slice(&task_id).ok_or_else(|| bad(0, "a task id of 32 bytes"))?;
    let step: String = row.get(2)?;
    let step = Step::parse(&step).ok_or_else(|| bad(2, "a known step"))?;
    let location: Option<String> = row.get(6)?;
    let sealed: Option<Vec<u8>> = row.get(7)?;
    let digest: Option<Vec<u8>> = row.get(8)?;
    let outcome: Option<u8> = row.get(9)?;
    let signature: Option<Vec<u8>> = row.get(10)?;
    let computed = match (location, sealed, digest, outcome, signature) {
        (Some(location), Some(sealed), Some(digest), Some(outcome), Some(signature)) if digest.len() == 32 => {
            Some(Computed {
                location,
                sealed_result: sealed.into(),
                digest: B256::from_slice(&digest),
                outcome: Outcome::from_u8(outcome).ok_or_else(|| bad(9, "a known outcome"))?,
                signature: signature.into(),
            })
        }
        _ => None,
    };
    let tx_hash: Option<Vec<u8>> = row.get(11)?;
    let commitment: Vec<u8> = row.get(12)?;
    if commitment.len() != 32 {
        return Err(bad(12, "a commitment of 32 bytes"));
    }
    Ok(Entry {
        commitment: B256::from_slice(&commitment),
        task_id,
        deadline: row.get::<_, i64>(1)? as u64,
        step,
        updated_at: row.get::<_, i64>(3)? as u64,
        failures: row.get::<_, i64>(4)? as u64,
        last_error: row.get(5)?,
        computed,
        tx_hash: tx_hash.filter(|h| h.len() == 32).map(|h| B256::from_slice(&h)),
    })
}

fn task_key(task_id: U256) -> [u8; 32] {
    task_id.to_be_bytes()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn state(path: &Path, e: rusqlite::Error) -> WorkerError {
    WorkerError::State(path.display().to_string(), e.to_string())
}

fn open_db(path: &Path) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let db = Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    // A kill loses nothing; a machine crash at most the last steps, which are safe to take again.
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let fresh: i64 = db.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
    if fresh == 0 {
        db.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    } else if version != SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the journal's layout is version {version}, this worker's is {SCHEMA_VERSION}: run the worker release that wrote it until its tasks are over"
        )));
    }
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS deployment (
             chain_id INTEGER NOT NULL, genesis BLOB NOT NULL, contract BLOB NOT NULL
         );
         CREATE TABLE IF NOT EXISTS cursor (next_block INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS tasks (
             task_id       BLOB PRIMARY KEY,
             commitment    BLOB NOT NULL,
             deadline      INTEGER NOT NULL,
             step          TEXT NOT NULL,
             updated_at    INTEGER NOT NULL,
             failures      INTEGER NOT NULL,
             last_error    TEXT,
             location      TEXT,
             sealed_result BLOB,
             digest        BLOB,
             outcome       INTEGER,
             signature     BLOB,
             tx_hash       BLOB
         );
         CREATE INDEX IF NOT EXISTS tasks_by_step ON tasks (step, deadline);",
    )?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn computed() -> Computed {
        Computed {
            location: "file:///r/task-1.sealed".into(),
            sealed_result: Bytes::from_static(b"sealed"),
            digest: B256::repeat_byte(4),
            outcome: Outcome::Completed,
            signature: Bytes::from_static(b"sig"),
        }
    }

    #[test]
    fn a_task_moves_forward_only_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        let deployment =
            Deployment { chain_id: 31337, genesis: B256::repeat_byte(2), contract: Address::repeat_byte(1) };
        let journal = Journal::open(&path, &deployment).unwrap();
        assert_eq!(journal.cursor().unwrap(), None);
        let (one, two) = (U256::from(1), U256::from(2));
        let (rental, other_rental) = (B256::repeat_byte(5), B256::repeat_byte(6));
        assert_eq!(journal.see(&[(one, 100, rental), (two, 50, rental)], Some(8)).unwrap(), [one, two]);
        assert_eq!(journal.see(&[(one, 100, rental)], Some(9)).unwrap(), Vec::<U256>::new(), "seen once");
        journal.advance(one, Step::KeysReleased).unwrap();
        journal.computed(one, &computed()).unwrap();
        journal.advance(one, Step::Authorized).unwrap();
        journal.failed_attempt(one, "storage down").unwrap();
        drop(journal);

        let journal = Journal::open(&path, &deployment).unwrap();
        assert_eq!(journal.cursor().unwrap(), Some(9));
        let entry = journal.entry(one).unwrap().unwrap();
        assert_eq!(entry.step, Step::Computed, "an older step does not undo a later one");
        assert_eq!((entry.failures, entry.last_error.as_deref()), (1, Some("storage down")));
        assert_eq!(entry.computed, Some(computed()));
        let unfinished: Vec<U256> = journal.unfinished().unwrap().iter().map(|e| e.task_id).collect();
        assert_eq!(unfinished, [two, one], "earliest deadline first");

        // Another rental took the id (a reorganisation replaced the first): its line starts over.
        let three = U256::from(3);
        journal.see(&[(three, 70, rental)], None).unwrap();
        journal.computed(three, &computed()).unwrap();
        assert_eq!(journal.see(&[(three, 80, other_rental)], None).unwrap(), [three]);
        let entry = journal.entry(three).unwrap().unwrap();
        assert_eq!(
            (entry.step, entry.commitment, entry.deadline, entry.computed),
            (Step::Seen, other_rental, 80, None)
        );
        journal.finish(three, Step::NotActive, None).unwrap();
        assert_eq!(journal.cursor().unwrap(), Some(9), "moved only when asked");

        // Another chain (a devnet started afresh: same id and contract, another first block) is
        // refused while a task is unfinished here.
        let afresh = Deployment { genesis: B256::repeat_byte(3), ..deployment };
        let err = Journal::open(&path, &afresh).err().unwrap().to_string();
        assert!(
            err.ends_with(&format!(
                "is the journal of another deployment (chain 31337, contract {}), with 2 task(s) unfinished there: \
                 serve them with that deployment, or give this one's worker another state directory",
                deployment.contract
            )),
            "{err}"
        );

        journal.submitted(one, B256::repeat_byte(9)).unwrap();
        journal.finish(one, Step::Confirmed, None).unwrap();
        journal.finish(one, Step::GivenUp, Some("late")).unwrap();
        journal.finish(two, Step::Declined, Some("the task's deadline is too close")).unwrap();
        assert!(journal.unfinished().unwrap().is_empty());
        let entry = journal.entry(one).unwrap().unwrap();
        assert_eq!(
            (entry.step, entry.tx_hash),
            (Step::Confirmed, Some(B256::repeat_byte(9))),
            "an ended task stays ended"
        );
        assert_eq!(entry.computed, None, "the sealed result is dropped once stored and submitted");
        assert_eq!(entry.last_error.as_deref(), Some("storage down"), "a finish without a reason keeps the last error");
        let counts = journal.counts().unwrap();
        assert!(counts.contains(&(Step::Confirmed, 1)) && counts.contains(&(Step::Declined, 1)), "{counts:?}");
        assert_eq!(journal.recent(1).unwrap().len(), 1);
        drop(journal);

        // With nothing unfinished, the other chain's journal starts afresh.
        let journal = Journal::open(&path, &afresh).unwrap();
        assert_eq!((journal.cursor().unwrap(), journal.recent(10).unwrap().len()), (None, 0));
    }
}
