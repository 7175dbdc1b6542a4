//! Accounts on this machine: encrypted keystores (the standard Ethereum JSON keystore, scrypt
//! and AES-128-CTR, which `cast wallet` reads and writes) under `<data-dir>/keystore/<name>`.
//! Private keys are never command-line values: `import` reads the key from standard input.

use std::io::BufRead;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create a new account in an encrypted keystore (password: STRONGROOM_KEYSTORE_PASSWORD or --password-file).
    New(NameArgs),
    /// Encrypt an existing private key, read as hex from standard input, into a keystore.
    Import(NameArgs),
    /// List the keystores in this data dir.
    List,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The account's name, used with `--account <name>`.
    pub name: String,
}

impl AccountCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        match self {
            Self::New(args) => {
                let path = new_keystore_path(&global.data_dir, &args.name)?;
                let password = checked_password(global, &path)?;
                let (signer, _) = PrivateKeySigner::new_keystore(
                    path.parent().expect("a keystore dir"),
                    &mut rand08::thread_rng(),
                    password.as_bytes(),
                    Some(&args.name),
                )
                .with_context(|| format!("writing the keystore {}", path.display()))?;
                restrict(&path)?;
                println!("account {} ({}) created in {}", args.name, signer.address(), path.display());
            }
            Self::Import(args) => {
                let path = new_keystore_path(&global.data_dir, &args.name)?;
                let password = checked_password(global, &path)?;
                let mut line = zeroize::Zeroizing::new(String::new());
                std::io::stdin().lock().read_line(&mut line).context("reading the private key from standard input")?;
                let signer: PrivateKeySigner = line
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("standard input does not hold a secp256k1 private key in hex"))?;
                let key = zeroize::Zeroizing::new(signer.to_bytes().0);
                PrivateKeySigner::encrypt_keystore(
                    path.parent().expect("a keystore dir"),
                    &mut rand08::thread_rng(),
                    key.as_slice(),
                    password.as_bytes(),
                    Some(&args.name),
                )
                .with_context(|| format!("writing the keystore {}", path.display()))?;
                restrict(&path)?;
                println!("account {} ({}) imported into {}", args.name, signer.address(), path.display());
            }
            Self::List => {
                let dir = keystore_dir(&global.data_dir);
                let mut names: Vec<String> = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
                };
                names.sort();
                if names.is_empty() {
                    eprintln!("no keystores in {}: create one with `strongroom account new <name>`", dir.display());
                }
                for name in names {
                    println!("{name}");
                }
            }
        }
        Ok(())
    }
}

fn keystore_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keystore")
}

/// The keystore file of account `name`.
pub(super) fn keystore_path(data_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !plain || name.starts_with('.') {
        bail!("account name `{name}` must be letters, digits, `-`, `_` or `.`, not starting with `.`");
    }
    Ok(keystore_dir(data_dir).join(name))
}

fn new_keystore_path(data_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = keystore_path(data_dir, name)?;
    if path.exists() {
        bail!("account `{name}` already exists at {}; choose another name", path.display());
    }
    let dir = path.parent().expect("a keystore dir");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(path)
}

/// The password a new keystore is encrypted with: at least 12 characters.
fn checked_password(global: &GlobalArgs, path: &Path) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let password = global.keystore_password(path)?;
    if password.chars().count() < 12 {
        bail!("the keystore password has {} characters; use at least 12", password.chars().count());
    }
    Ok(password)
}

fn restrict(path: &Path) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))
}

/// Opens a keystore with the password the user gave.
pub(super) fn open_keystore(path: &Path, global: &GlobalArgs) -> anyhow::Result<PrivateKeySigner> {
    if !path.is_file() {
        bail!("no keystore at {}: create one with `strongroom account new <name>`", path.display());
    }
    let password = global.keystore_password(path)?;
    PrivateKeySigner::decrypt_keystore(path, password.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot open the keystore {}: wrong password? ({e})", path.display()))
}

/// Refuses a secret's file that others than its owner may read.
pub(super) fn check_private(path: &Path, what: &str) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{what} {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!("{what} {} is readable by others (mode {mode:o}): `chmod 600` it", path.display());
    }
    Ok(())
}

/// Reads a private key in hex from a file only its owner may read.
pub(super) fn read_key_file(path: &Path) -> anyhow::Result<PrivateKeySigner> {
    check_private(path, "key file")?;
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("key file {}", path.display()))?);
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("key file {} does not hold a secp256k1 private key in hex", path.display()))
}
