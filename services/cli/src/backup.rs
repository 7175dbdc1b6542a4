//! The owner's local backup of dataset keys, so that losing a key service loses nothing.
//!
//! Keys are sealed (HPKE, bound to the dataset id) to a backup key kept in a key file (mode
//! 0600) under the owner's data directory; no key is ever written in plaintext. The backup is
//! written before the keys are deposited anywhere, and `strongroom dataset redeposit` restores
//! them to a key service (the same one, or a new one the dataset then points to).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use strongroom_types::{DatasetId, DatasetKeys, INFO_BACKUP, SealedBox, X25519SecretKey, open, seal};

/// One dataset's backup file.
#[derive(Debug, Serialize, Deserialize)]
struct BackupFile {
    dataset: DatasetId,
    /// The licence policy text deposited with the keys.
    policy: String,
    sealed_keys: SealedBox,
}

/// An owner's key backup directory.
#[derive(Clone, Debug)]
pub struct KeyBackup {
    dir: PathBuf,
}

impl KeyBackup {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("backup.key")
    }

    fn file_for(&self, dataset: DatasetId) -> PathBuf {
        self.dir.join("keys").join(format!("{dataset}.json"))
    }

    /// The backup key, created (mode 0600) on first use.
    fn secret(&self) -> anyhow::Result<X25519SecretKey> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        Ok(X25519SecretKey::load_or_create(&self.key_file())?)
    }

    /// Seals and stores the keys of `dataset`. Refuses to overwrite another backup of it.
    pub fn store(&self, dataset: DatasetId, keys: &DatasetKeys, policy: &str) -> anyhow::Result<PathBuf> {
        let secret = self.secret()?;
        let sealed_keys = seal(&secret.public_key(), INFO_BACKUP, dataset.as_slice(), &keys.to_json())?;
        let path = self.file_for(dataset);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let body = serde_json::to_vec_pretty(&BackupFile { dataset, policy: policy.to_owned(), sealed_keys })?;
        write_private(&path, &body).with_context(|| format!("writing the key backup {}", path.display()))?;
        Ok(path)
    }

    /// The keys and policy of `dataset`, opened from the backup.
    pub fn load(&self, dataset: DatasetId) -> anyhow::Result<(DatasetKeys, String)> {
        let path = self.file_for(dataset);
        let body = std::fs::read(&path).with_context(|| {
            format!("no key backup for dataset {dataset} at {}: was it published from this data dir?", path.display())
        })?;
        let file: BackupFile =
            serde_json::from_slice(&body).with_context(|| format!("{} is not a key backup", path.display()))?;
        if file.dataset != dataset {
            bail!("{} holds the keys of dataset {}, not {dataset}", path.display(), file.dataset);
        }
        let plain = zeroize::Zeroizing::new(open(
            &self.secret()?,
            INFO_BACKUP,
            dataset.as_slice(),
            &file.sealed_keys,
            "key backup",
        )?);
        let keys = serde_json::from_slice(&plain).context("the key backup does not hold a key set")?;
        Ok((keys, file.policy))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_round_trip_without_plaintext_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let backup = KeyBackup::new(dir.path());
        let keys = DatasetKeys::generate(["a", "b"]);
        let dataset = DatasetId::repeat_byte(5);
        let path = backup.store(dataset, &keys, "policy text").unwrap();
        let on_disk = std::fs::read_to_string(&path).unwrap();
        for key in keys.columns.values() {
            assert!(!on_disk.contains(&hex::encode(key.expose())), "no plaintext key in the backup file");
        }
        let (loaded, policy) = KeyBackup::new(dir.path()).load(dataset).unwrap();
        assert_eq!((loaded, policy.as_str()), (keys.clone(), "policy text"));
        let err = backup.store(dataset, &keys, "again").unwrap_err();
        assert!(err.to_string().starts_with("writing the key backup"), "{err}");
        let err = backup.load(DatasetId::repeat_byte(6)).unwrap_err();
        assert!(err.to_string().starts_with("no key backup for dataset"), "{err}");
    }
}
