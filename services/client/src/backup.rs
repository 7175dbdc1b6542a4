//! The owner's local backup of dataset keys, so that losing a key service loses nothing.
//!
//! Keys are sealed (HPKE, bound to the dataset id and the manifest of the data version they
//! encrypt) to a backup key that is either kept in a key file (mode 0600) under the owner's data
//! directory, or derived from a passphrase with Argon2id (64 MiB, 3 passes) and a salt kept beside
//! the backups, so the directory alone opens nothing. No key is ever written in plaintext. The backup is
//! written before the keys are deposited anywhere, and `strongroom dataset redeposit` restores
//! them to a key service (the same one, or a new one the dataset then points to). Every data
//! version keeps its own file, so a rotation never loses the keys of the objects before it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strongroom_types::{
    DatasetId, DatasetKeys, INFO_BACKUP, ManifestDigest, SealedBox, X25519SecretKey, key_set_aad, open, seal,
};

use crate::error::{IoContext, fail};
use crate::{ClientError, Result};

/// One dataset's backup file.
#[derive(Debug, Serialize, Deserialize)]
struct BackupFile {
    dataset: DatasetId,
    /// The data version these keys encrypt. (Backups written before the rename say `manifest`.)
    #[serde(alias = "manifest")]
    manifest_digest: ManifestDigest,
    /// The licence policy text deposited with the keys.
    policy: String,
    sealed_keys: SealedBox,
}

/// What protects a backup directory's key.
#[derive(Clone)]
enum Protection {
    /// The X25519 key itself, in `backup.key` (mode 0600).
    KeyFile,
    /// Argon2id of this passphrase and the salt in `backup.salt`.
    Passphrase(zeroize::Zeroizing<String>),
}

/// An owner's key backup directory.
#[derive(Clone)]
pub struct KeyBackup {
    dir: PathBuf,
    protection: Protection,
}

impl std::fmt::Debug for KeyBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protection = match self.protection {
            Protection::KeyFile => "key file",
            Protection::Passphrase(_) => "passphrase",
        };
        f.debug_struct("KeyBackup").field("dir", &self.dir).field("protection", &protection).finish()
    }
}

impl KeyBackup {
    /// A backup protected by a key file in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), protection: Protection::KeyFile }
    }

    /// A backup protected by `passphrase`.
    pub fn with_passphrase(dir: &Path, passphrase: zeroize::Zeroizing<String>) -> Self {
        Self { dir: dir.to_owned(), protection: Protection::Passphrase(passphrase) }
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("backup.key")
    }

    fn salt_file(&self) -> PathBuf {
        self.dir.join("backup.salt")
    }

    fn file_for(&self, dataset: DatasetId, manifest: ManifestDigest) -> PathBuf {
        self.dir.join("keys").join(dataset.to_string()).join(format!("{manifest}.json"))
    }

    /// The backup key: from the key file (created, mode 0600, on first use), or derived from the
    /// passphrase. A directory keeps to the protection it was created with.
    fn secret(&self) -> Result<X25519SecretKey> {
        std::fs::create_dir_all(&self.dir).io(|| format!("creating {}", self.dir.display()))?;
        let (key_file, salt_file) = (self.key_file(), self.salt_file());
        match &self.protection {
            Protection::KeyFile => {
                if salt_file.exists() && !key_file.exists() {
                    fail!(
                        Backup,
                        "the key backup in {} is protected by a passphrase: set STRONGROOM_BACKUP_PASSPHRASE",
                        self.dir.display()
                    );
                }
                Ok(X25519SecretKey::load_or_create(&key_file)?)
            }
            Protection::Passphrase(passphrase) => {
                if key_file.exists() {
                    fail!(
                        Backup,
                        "the key backup in {} is protected by the key file {}, not a passphrase: unset STRONGROOM_BACKUP_PASSPHRASE",
                        self.dir.display(),
                        key_file.display()
                    );
                }
                if passphrase.len() < 12 {
                    fail!(Backup, "the backup passphrase has {} characters; use at least 12", passphrase.len());
                }
                let salt = match std::fs::read(&salt_file) {
                    Ok(salt) => salt,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let mut salt = [0u8; 16];
                        rand::fill(&mut salt);
                        write_private(&salt_file, &salt).io(|| format!("writing {}", salt_file.display()))?;
                        salt.to_vec()
                    }
                    Err(e) => return Err(e).io(|| format!("reading {}", salt_file.display())),
                };
                let params = argon2::Params::new(64 * 1024, 3, 1, Some(32)).expect("valid Argon2 parameters");
                let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
                let mut derived = zeroize::Zeroizing::new([0u8; 32]);
                argon
                    .hash_password_into(passphrase.as_bytes(), &salt, derived.as_mut())
                    .map_err(|e| ClientError::Internal(format!("deriving the backup key: {e}")))?;
                Ok(X25519SecretKey::from_bytes(derived.as_ref())?)
            }
        }
    }

    /// Seals and stores the keys of the data version of `dataset` whose manifest digest is
    /// `manifest`. Refuses to overwrite another backup of it.
    pub fn store(
        &self,
        dataset: DatasetId,
        manifest: ManifestDigest,
        keys: &DatasetKeys,
        policy: &str,
    ) -> Result<PathBuf> {
        let secret = self.secret()?;
        let sealed_keys = seal(&secret.public_key(), INFO_BACKUP, &key_set_aad(dataset, manifest), &keys.to_json())?;
        let path = self.file_for(dataset, manifest);
        let parent = path.parent().expect("has a parent");
        std::fs::create_dir_all(parent).io(|| format!("creating {}", parent.display()))?;
        let body = serde_json::to_vec_pretty(&BackupFile {
            dataset,
            manifest_digest: manifest,
            policy: policy.to_owned(),
            sealed_keys,
        })
        .map_err(|e| ClientError::Internal(e.to_string()))?;
        write_private(&path, &body).io(|| format!("writing the key backup {}", path.display()))?;
        Ok(path)
    }

    /// The manifests (data versions) of `dataset` the backup holds keys for.
    pub fn versions(&self, dataset: DatasetId) -> Result<Vec<ManifestDigest>> {
        let dir = self.dir.join("keys").join(dataset.to_string());
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).io(|| format!("reading {}", dir.display())),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let name = entry.io(|| format!("reading {}", dir.display()))?.file_name();
            if let Some(manifest) = name.to_str().and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse().ok()) {
                versions.push(manifest);
            }
        }
        versions.sort();
        Ok(versions)
    }

    /// The keys and policy of one data version of `dataset`, opened from the backup.
    pub fn load(&self, dataset: DatasetId, manifest: ManifestDigest) -> Result<(DatasetKeys, String)> {
        let path = self.file_for(dataset, manifest);
        let body = std::fs::read(&path).io(|| {
            format!(
                "no key backup for dataset {dataset} with manifest {manifest} at {}: was it published or rotated from this data dir?",
                path.display()
            )
        })?;
        let file: BackupFile = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Backup(format!("{} is not a key backup: {e}", path.display())))?;
        if (file.dataset, file.manifest_digest) != (dataset, manifest) {
            fail!(
                Backup,
                "{} holds the keys of dataset {} with manifest {}, not {dataset} with {manifest}",
                path.display(),
                file.dataset,
                file.manifest_digest
            );
        }
        let plain =
            open(&self.secret()?, INFO_BACKUP, &key_set_aad(dataset, manifest), &file.sealed_keys, "key backup")
                .map_err(|e| match self.protection {
                    Protection::Passphrase(_) => {
                        ClientError::Backup(format!("{}: wrong passphrase? ({e})", path.display()))
                    }
                    Protection::KeyFile => ClientError::Backup(format!("{}: {e}", path.display())),
                })?;
        let plain = zeroize::Zeroizing::new(plain);
        let keys = serde_json::from_slice(&plain)
            .map_err(|_| ClientError::Backup(format!("{} does not hold a key set", path.display())))?;
        Ok((keys, file.policy))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;

    #[test]
    fn a_passphrase_protects_the_backup_and_a_wrong_one_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let passphrase = |p: &str| zeroize::Zeroizing::new(p.to_owned());
        let backup = KeyBackup::with_passphrase(dir.path(), passphrase("correct horse battery"));
        let keys = DatasetKeys::generate(["a"]);
        let (dataset, manifest) = (DatasetId::repeat_byte(5), ManifestDigest::new(B256::repeat_byte(9)));
        backup.store(dataset, manifest, &keys, "policy").unwrap();
        assert!(!dir.path().join("backup.key").exists(), "no key file: the passphrase is the key");
        let reopened = KeyBackup::with_passphrase(dir.path(), passphrase("correct horse battery"));
        assert_eq!(reopened.load(dataset, manifest).unwrap().0, keys);

        let wrong = KeyBackup::with_passphrase(dir.path(), passphrase("incorrect horse battery"));
        let err = wrong.load(dataset, manifest).unwrap_err();
        assert!(err.to_string().contains("wrong passphrase?"), "{err}");
        let err = KeyBackup::new(dir.path()).load(dataset, manifest).unwrap_err();
        assert!(err.to_string().ends_with("is protected by a passphrase: set STRONGROOM_BACKUP_PASSPHRASE"), "{err}");
        let short = KeyBackup::with_passphrase(dir.path(), passphrase("short"));
        assert_eq!(
            short.load(dataset, manifest).unwrap_err().to_string(),
            "the backup passphrase has 5 characters; use at least 12"
        );

        let keyed = tempfile::tempdir().unwrap();
        KeyBackup::new(keyed.path()).store(dataset, manifest, &keys, "policy").unwrap();
        let err = KeyBackup::with_passphrase(keyed.path(), passphrase("correct horse battery"))
            .load(dataset, manifest)
            .unwrap_err();
        assert!(err.to_string().contains("not a passphrase: unset STRONGROOM_BACKUP_PASSPHRASE"), "{err}");
    }

    #[test]
    fn a_backup_written_before_the_manifest_digest_rename_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let backup = KeyBackup::new(dir.path());
        let keys = DatasetKeys::generate(["a"]);
        let (dataset, manifest) = (DatasetId::repeat_byte(5), ManifestDigest::new(B256::repeat_byte(9)));
        let path = backup.store(dataset, manifest, &keys, "policy").unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("\"manifest_digest\""), "{written}");
        std::fs::write(&path, written.replace("\"manifest_digest\"", "\"manifest\"")).unwrap();
        assert_eq!(backup.load(dataset, manifest).unwrap(), (keys, "policy".to_owned()));
    }

    #[test]
    fn backup_round_trip_without_plaintext_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let backup = KeyBackup::new(dir.path());
        let keys = DatasetKeys::generate(["a", "b"]);
        let dataset = DatasetId::repeat_byte(5);
        let manifest = ManifestDigest::new(B256::repeat_byte(9));
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
        backup.store(dataset, ManifestDigest::new(B256::repeat_byte(10)), &rotated, "policy text").unwrap();
        assert_eq!(backup.load(dataset, ManifestDigest::new(B256::repeat_byte(10))).unwrap().0, rotated);
        assert_eq!(backup.load(dataset, manifest).unwrap().0, keys);
        assert_eq!(backup.versions(dataset).unwrap(), [manifest, ManifestDigest::new(B256::repeat_byte(10))]);
        assert!(backup.versions(DatasetId::repeat_byte(6)).unwrap().is_empty());
        let err = backup.load(DatasetId::repeat_byte(6), manifest).unwrap_err();
        assert!(err.to_string().starts_with("no key backup for dataset"), "{err}");
    }
}
