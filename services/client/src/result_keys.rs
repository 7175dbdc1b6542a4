//! The analyst's result keys: the X25519 secrets that open each rental's sealed result.
//!
//! A result key is written to disk, durably, *before* the rental's transaction is sent: once the
//! analyst has paid, nothing may stand between them and their result. Keys are filed by the
//! deployment and account that rent with them, and named by their public key, which the chain
//! records with the task; `result get <task>` reads the task from the chain and finds its key
//! by that. Restarted devnets, several chains and several accounts share one data directory
//! without ever confusing whose key is whose.
//!
//! ```text
//!  <data-dir>/results/<chain-id>-<contract>/<account>/<public key>.key   (mode 0600)
//! ```

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256};

use crate::error::{IoContext, fail};
use crate::{ClientError, Result};
use strongroom_types::{TaskId, X25519PublicKey, X25519SecretKey};

/// One account's result keys on one deployment.
#[derive(Clone, Debug)]
pub struct ResultKeys {
    root: PathBuf,
    dir: PathBuf,
}

impl ResultKeys {
    pub fn new(data_dir: &Path, chain_id: u64, contract: Address, account: Address) -> Self {
        let root = data_dir.join("results");
        let dir = root.join(format!("{chain_id}-{contract}")).join(account.to_string());
        Self { root, dir }
    }

    /// A fresh result key, on disk (0600, in directories only the analyst can list, synced up
    /// to the data directory) before this returns.
    pub fn create(&self) -> Result<X25519SecretKey> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .io(|| format!("creating {}", self.dir.display()))?;
        let secret = X25519SecretKey::generate();
        let path = self.path(&secret.public_key());
        secret.write_new(&path)?;
        // A file's name lives in its directory, and a new directory's in its parent: sync each,
        // or a crash could lose the entry and with it the only key to a paid result.
        for dir in self.dir.ancestors().take_while(|d| d.starts_with(&self.root)) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).io(|| format!("syncing {}", dir.display()))?;
        }
        if let Some(data_dir) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(data_dir)
                .and_then(|d| d.sync_all())
                .io(|| format!("syncing {}", data_dir.display()))?;
        }
        Ok(secret)
    }

    /// The key of task `task`, whose result key on chain is `public`.
    pub fn find(&self, task: TaskId, public: B256) -> Result<X25519SecretKey> {
        let path = self.path(&X25519PublicKey(public.0));
        if path.exists() {
            let secret = X25519SecretKey::read_file(&path)?;
            if secret.public_key().to_b256() != public {
                fail!(
                    Corrupt,
                    "the result key in {} is not the one its name says: the file was altered",
                    path.display()
                );
            }
            return Ok(secret);
        }
        // Data directories from before keys were filed by public key kept `task-<id>.key`; such
        // a file is used only if it really is this task's key.
        let legacy = self.root.join(format!("task-{task}.key"));
        if let Ok(secret) = X25519SecretKey::read_file(&legacy)
            && secret.public_key().to_b256() == public
        {
            return Ok(secret);
        }
        Err(ClientError::Input(format!(
            "no result key for task {task} (result key {public} on chain) in {}: was it rented from another data dir or account?",
            self.dir.display()
        )))
    }

    fn path(&self, public: &X25519PublicKey) -> PathBuf {
        self.dir.join(format!("{public}.key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_filed_by_deployment_account_and_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let keys = ResultKeys::new(dir.path(), 31337, Address::repeat_byte(9), a);
        let first = keys.create().unwrap();
        let second = keys.create().unwrap();
        let public = |k: &X25519SecretKey| k.public_key().to_b256();
        assert_eq!(public(&keys.find(TaskId::from(1), public(&first)).unwrap()), public(&first));
        assert_eq!(public(&keys.find(TaskId::from(1), public(&second)).unwrap()), public(&second));

        // Another account or deployment in the same data dir has keys of its own.
        let other = ResultKeys::new(dir.path(), 31337, Address::repeat_byte(9), b);
        let err = other.find(TaskId::from(1), public(&first)).unwrap_err();
        assert!(err.to_string().ends_with("was it rented from another data dir or account?"), "{err}");

        // A legacy `task-<id>.key` is taken only if it is the task's key.
        first.write_new(&dir.path().join("results/task-7.key")).unwrap();
        assert!(other.find(TaskId::from(7), public(&first)).is_ok());
        assert!(other.find(TaskId::from(7), public(&second)).is_err(), "a legacy file of another task");
    }
}
