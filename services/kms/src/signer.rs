//! The key service's Ethereum identity: the key its receipts are signed with, bound on chain to
//! its sealing key by `registerKeyService`. Kept beside the sealing key, in a file only the
//! service's user can read.

use std::io::Write;
use std::path::Path;

use alloy::signers::local::PrivateKeySigner;

use crate::{KmsError, Result};

/// The signer in `path`, generated and written there (hex, mode 0600) on first start.
pub(crate) fn load_or_create(path: &Path) -> Result<PrivateKeySigner> {
    let err = |reason: String| KmsError::KeyFile { path: path.display().to_string(), reason };
    if path.exists() {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
        let bytes = zeroize::Zeroizing::new(hex::decode(text.trim()).map_err(|_| err("not hex".into()))?);
        return PrivateKeySigner::from_slice(&bytes).map_err(|_| err("not a secp256k1 secret key".into()));
    }
    let signer = PrivateKeySigner::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| err(e.to_string()))?;
    let hex = zeroize::Zeroizing::new(hex::encode(signer.to_bytes()));
    file.write_all(hex.as_bytes()).map_err(|e| err(e.to_string()))?;
    file.sync_all().map_err(|e| err(e.to_string()))?;
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signer_survives_a_restart_and_its_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms-signer.key");
        let first = load_or_create(&path).unwrap();
        let again = load_or_create(&path).unwrap();
        assert_eq!(first.address(), again.address());
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_signer_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms-signer.key");
        std::fs::write(&path, "zz").unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("kms-signer.key") && err.contains("not hex"), "{err}");
    }
}
