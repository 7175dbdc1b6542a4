//! The owner's local backup of dataset keys, so that losing a key service loses nothing.
//!
//! Keys are sealed (HPKE, bound to the dataset id and the manifest of the data version they
//! encrypt) to a backup key kept in a key file (mode
//! 0600) under the owner's data directory; no key is ever written in plaintext. The backup is
//! written before the keys are deposited anywhere, and `strongroom dataset redeposit` restores
//! them to a key service (the same one, or a new one the dataset then points to). Every data
//! version keeps its own file, so a rotation never loses the keys of the objects before it.

use std::io::Write;
use std::path::{Path, PathBuf};

use alloy::primitives::B256;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use strongroom_types::{DatasetId, DatasetKeys, INFO_BACKUP, SealedBox, X25519SecretKey, key_set_aad, open, seal};

/// One dataset's backup file.
#[derive(Debug, Serialize, Deserialize)]
struct BackupFile {
    dataset: DatasetId,
    /// sha256 of the manifest of the data version these keys encrypt.
    manifest: B256,
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

    fn file_for(&self, dataset: DatasetId, manifest: B256) -> PathBuf {
        self.dir.join("keys").join(dataset.to_string()).join(format!("{manifest}.json"))
    }

    /// The backup key, created (mode 0600) on first use.
    fn secret(&self) -> anyhow::Result<X25519SecretKey> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        Ok(X25519SecretKey::load_or_create(&self.key_file())?)
    }

    /// Seals and stores the keys of the data version of `dataset` whose manifest has sha256
    /// `manifest`. Refuses to overwrite another backup of it.
    pub fn store(
        &self,
        dataset: DatasetId,
        manifest: B256,
        keys: &DatasetKeys,
        policy: &str,
    ) -> anyhow::Result<PathBuf> {
        let secret = self.secret()?;
        let sealed_keys = seal(&secret.public_key(), INFO_BACKUP, &key_set_aad(dataset, manifest), &keys.to_json())?;
        let path = self.file_for(dataset, manifest);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let body =
            serde_json::to_vec_pretty(&BackupFile { dataset, manifest, policy: policy.to_owned(), sealed_keys })?;
        write_private(&path, &body).with_context(|| format!("writing the key backup {}", path.display()))?;
        Ok(path)
    }

    /// The manifests (data versions) of `dataset` the backup holds keys for.
    pub fn versions(&self, dataset: DatasetId) -> anyhow::Result<Vec<B256>> {
        let dir = self.dir.join("keys").join(dataset.to_string());
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(manifest) = name.to_str().and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse().ok()) {
                versions.push(manifest);
            }
        }
        versions.sort();
        Ok(versions)
    }

    /// The keys and policy of one data version of `dataset`, opened from the backup.
    pub fn load(&self, dataset: DatasetId, manifest: B256) -> anyhow::Result<(DatasetKeys, String)> {
        let path = self.file_for(dataset, manifest);
        let body = std::fs::read(&path).with_context(|| {
            format!(
                "no key backup for dataset {dataset} with manifest {manifest} at {}: was it published or rotated from this data dir?",
                path.display()
            )
        })?;
        let file: BackupFile =
            serde_json::from_slice(&body).with_context(|| format!("{} is not a key backup", path.display()))?;
        if (file.dataset, file.manifest) != (dataset, manifest) {
            bail!(
                "{} holds the keys of dataset {} with manifest {}, not {dataset} with {manifest}",
                path.display(),
                file.dataset,
                file.manifest
            );
        }
        let plain = zeroize::Zeroizing::new(open(
            &self.secret()?,
            INFO_BACKUP,
            &key_set_aad(dataset, manifest),
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
        let manifest = B256::repeat_byte(9);
        let path = backup.store(dataset, manifest, &keys, "policy text").unwrap();
        let on_disk = std::fs::read_to_string(&path).unwrap();
        for key in keys.columns.values() {
            assert!(!on_disk.contains(&hex::encode(key.expose())), "no plaintext key in the backup file");
        }
        let (loaded, policy) = KeyBackup::new(dir.path()).load(dataset, manifest).unwrap();
        assert_eq!((loaded, policy.as_str()), (keys.clone(), "policy text"));
        let err = backup.store(dataset, manifest, &keys, "again").unwrap_err();
        assert!(err.to_string().starts_with("writing the key backup"), "{err}");
        // A rotated version keeps a file of its own beside the first.
        let rotated = DatasetKeys::generate(["a", "b"]);
        backup.store(dataset, B256::repeat_byte(10), &rotated, "policy text").unwrap();
        assert_eq!(backup.load(dataset, B256::repeat_byte(10)).unwrap().0, rotated);
        assert_eq!(backup.load(dataset, manifest).unwrap().0, keys);
        assert_eq!(backup.versions(dataset).unwrap(), [manifest, B256::repeat_byte(10)]);
        assert!(backup.versions(DatasetId::repeat_byte(6)).unwrap().is_empty());
        let err = backup.load(DatasetId::repeat_byte(6), manifest).unwrap_err();
        assert!(err.to_string().starts_with("no key backup for dataset"), "{err}");
    }
}
