//! The host side of the simulated platform: the platform key, measured launch, quote service.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use alloy_primitives::{Address, B256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use sha2::{Digest, Sha256};
use strongroom_enclave_sim_guest::{PLATFORM_FD, PlatformRequest, PlatformResponse};
use strongroom_types::{QUOTE_TYPE_SIMULATED, Quote, quote_digest};

use crate::{Error, Result};

/// Who built the enclave, which product it is and its security version, as the simulated
/// platform reports them for every binary it launches: it reads no signed enclave manifest
/// (SIGSTRUCT), so the author is the one of unsigned builds. Governance trusts this identity on
/// devnets (`setEnclaveIdentity`); a hardware platform reports the author's real key.
pub const SIMULATED_IDENTITY: EnclaveIdentity =
    EnclaveIdentity { signer: B256::new(*b"strongroom-sim/unsigned-build/v1"), product_id: 1, svn: 1 };

/// The enclave author (`Quote.signer`), product and security version a platform reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnclaveIdentity {
    pub signer: B256,
    pub product_id: u16,
    pub svn: u16,
}

/// sha256 of an enclave binary: its measurement.
pub fn measure(binary: &Path) -> Result<B256> {
    let bytes = std::fs::read(binary).map_err(|source| Error::Binary { path: binary.display().to_string(), source })?;
    Ok(B256::from_slice(&Sha256::digest(&bytes)))
}

/// The simulated hardware: holds the platform key that signs quotes and derives sealing keys.
#[derive(Clone)]
pub struct Platform {
    key: PrivateKeySigner,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform").field("address", &self.key.address()).finish_non_exhaustive()
    }
}

impl Platform {
    /// Loads the platform key from `dir/platform.key`, creating it (mode 0600) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        let path = dir.join("platform.key");
        let err = |reason: String| Error::PlatformKey { path: path.display().to_string(), reason };
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
            let key = text.trim().parse::<PrivateKeySigner>().map_err(|e| err(format!("not a secp256k1 key: {e}")))?;
            return Ok(Self { key });
        }
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| err(e.to_string()))?;
        let key = PrivateKeySigner::random();
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        let mut file = file.open(&path).map_err(|e| err(e.to_string()))?;
        file.write_all(hex::encode(key.to_bytes()).as_bytes()).map_err(|e| err(e.to_string()))?;
        Ok(Self { key })
    }

    /// The platform key's address, which governance lists as trusted.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// Signs a quote for any measurement and report data, as the platform key's holder can.
    /// Only for benchmarks and tests that need an enclave identity without an enclave process.
    #[cfg(feature = "test-utils")]
    pub fn quote_for(&self, measurement: B256, report_data: [B256; 2]) -> (Quote, alloy_primitives::Bytes) {
        let server = PlatformServer { key: self.key.clone(), measurement };
        match server.answer(PlatformRequest::Quote { report_data }) {
            PlatformResponse::Quote { quote, signature } => (quote, signature),
            other => panic!("the simulated platform failed to sign: {other:?}"),
        }
    }

    /// Signs any quote as given, as the platform key's holder can. Only for tests that play a
    /// vendor signing what it should not.
    #[cfg(feature = "test-utils")]
    pub fn sign_quote(&self, quote: &Quote) -> alloy_primitives::Bytes {
        let signature = self.key.sign_hash_sync(&quote_digest(quote)).expect("signing with a local key");
        signature.as_bytes().to_vec().into()
    }

    /// Starts `enclave` as a measured enclave with `stdin`/`stdout` as its message channel to the
    /// host and its log on this process's stderr. The platform channel (fd 3) stays private to
    /// this process, which serves it until the enclave exits; the returned child is waited on
    /// by the caller.
    pub(crate) fn launch(&self, enclave: &Launchable, stdin: Stdio, stdout: Stdio) -> Result<Child> {
        let (platform_end, enclave_end) = UnixStream::pair().map_err(|e| Error::Channel(e.to_string()))?;
        let enclave_fd = enclave_end.as_raw_fd();
        // The bytes run are the sealed copy that was measured, not the file, which its owner
        // could have replaced since.
        let mut command = Command::new(format!("/proc/self/fd/{}", enclave.image.as_raw_fd()));
        command.stdin(stdin).stdout(stdout).stderr(Stdio::inherit()).env_clear();
        install_platform_fd(&mut command, enclave_fd);
        let child =
            command.spawn().map_err(|source| Error::Binary { path: enclave.path.display().to_string(), source })?;
        drop(enclave_end);

        let server = PlatformServer { key: self.key.clone(), measurement: enclave.measurement };
        std::thread::Builder::new()
            .name("enclave-sim-platform".into())
            .spawn(move || server.serve(platform_end))
            .map_err(|e| Error::Channel(e.to_string()))?;
        Ok(child)
    }
}

/// An enclave binary the platform launches, read once when the platform starts: its path (as
/// the host names it), its measurement, and the measured bytes in a sealed memory file that
/// nobody can write to any more.
#[derive(Debug)]
pub struct Launchable {
    pub path: PathBuf,
    pub measurement: B256,
    image: OwnedFd,
}

impl Launchable {
    /// Reads `path` once and keeps what it read: what is launched later is what was measured.
    #[allow(unsafe_code)]
    pub fn load(path: &Path) -> Result<Self> {
        let err = |source: std::io::Error| Error::Binary { path: path.display().to_string(), source };
        let path = std::fs::canonicalize(path).map_err(err)?;
        let bytes = std::fs::read(&path).map_err(err)?;
        let measurement = B256::from_slice(&Sha256::digest(&bytes));
        // SAFETY: memfd_create and fcntl are called with valid arguments; the returned fds are
        // checked and owned from here on.
        let image = unsafe {
            let fd = libc::memfd_create(c"strongroom-enclave".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
            if fd < 0 {
                return Err(err(std::io::Error::last_os_error()));
            }
            OwnedFd::from_raw_fd(fd)
        };
        let mut file = std::fs::File::from(image);
        file.write_all(&bytes).map_err(err)?;
        let image = OwnedFd::from(file);
        let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: as above. The copy is moved above the low fds, so that it cannot collide with
        // the platform channel the child finds on fd 3; close-on-exec, so no enclave inherits it
        // (an ELF image is opened before those fds close).
        let image = unsafe {
            if libc::fcntl(image.as_raw_fd(), libc::F_ADD_SEALS, seals) < 0 {
                return Err(err(std::io::Error::last_os_error()));
            }
            let high = libc::fcntl(image.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100);
            if high < 0 {
                return Err(err(std::io::Error::last_os_error()));
            }
            OwnedFd::from_raw_fd(high)
        };
        Ok(Self { path, measurement, image })
    }
}

/// Makes `fd` appear as [`PLATFORM_FD`] in the child, without close-on-exec.
#[allow(unsafe_code)]
fn install_platform_fd(command: &mut Command, fd: i32) {
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe dup2/fcntl on fds this process owns.
    unsafe {
        command.pre_exec(move || {
            if fd == PLATFORM_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, PLATFORM_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

struct PlatformServer {
    key: PrivateKeySigner,
    measurement: B256,
}

impl PlatformServer {
    fn serve(self, stream: UnixStream) {
        let Ok(mut writer) = stream.try_clone() else { return };
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            let response = match serde_json::from_str::<PlatformRequest>(&line) {
                Ok(request) => self.answer(request),
                Err(e) => PlatformResponse::Error { message: format!("bad platform request: {e}") },
            };
            let mut out = serde_json::to_vec(&response).expect("response serializes");
            out.push(b'\n');
            if writer.write_all(&out).is_err() {
                return;
            }
        }
    }

    fn answer(&self, request: PlatformRequest) -> PlatformResponse {
        match request {
            PlatformRequest::Quote { report_data } => {
                let quote = Quote {
                    quoteType: QUOTE_TYPE_SIMULATED,
                    measurement: self.measurement,
                    signer: SIMULATED_IDENTITY.signer,
                    productId: SIMULATED_IDENTITY.product_id,
                    svn: SIMULATED_IDENTITY.svn,
                    debug: false,
                    reportData: report_data,
                };
                match self.key.sign_hash_sync(&quote_digest(&quote)) {
                    Ok(sig) => PlatformResponse::Quote { quote, signature: sig.as_bytes().to_vec().into() },
                    Err(e) => PlatformResponse::Error { message: format!("signing quote: {e}") },
                }
            }
            PlatformRequest::SealingKey => {
                // Bound to this platform and this measurement: another binary gets another key.
                let mut h = Sha256::new();
                h.update(b"strongroom-sim/sealing-key/v1");
                h.update(self.key.to_bytes());
                h.update(self.measurement);
                PlatformResponse::SealingKey { key: B256::from_slice(&h.finalize()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_key_is_created_once_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = Platform::load_or_create(dir.path()).unwrap();
        let again = Platform::load_or_create(dir.path()).unwrap();
        assert_eq!(first.address(), again.address());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("platform.key")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "the platform key is private to its owner");
    }

    #[test]
    fn a_missing_binary_is_named_and_a_launchable_one_is_what_was_measured() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-enclave");
        let err = Launchable::load(&missing).unwrap_err();
        assert!(err.to_string().starts_with(&format!("enclave binary {}", missing.display())), "{err}");

        let binary = dir.path().join("enclave");
        std::fs::write(&binary, b"first build").unwrap();
        let loaded = Launchable::load(&binary).unwrap();
        assert_eq!(loaded.measurement, measure(&binary).unwrap());
        // Replacing the file later changes nothing of what is launched.
        std::fs::write(&binary, b"the host's build").unwrap();
        let mut kept = Vec::new();
        std::io::Read::read_to_end(
            &mut std::fs::File::open(format!("/proc/self/fd/{}", loaded.image.as_raw_fd())).unwrap(),
            &mut kept,
        )
        .unwrap();
        assert_eq!(kept, b"first build");
        // And the sealed copy cannot be written through.
        let mut opened = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", loaded.image.as_raw_fd()))
            .unwrap();
        let err = opened.write_all(b"patched").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "the measured copy is sealed against writes: {err}");
    }

    #[test]
    fn sealing_keys_are_bound_to_the_measurement() {
        let platform = PrivateKeySigner::random();
        let a = PlatformServer { key: platform.clone(), measurement: B256::repeat_byte(1) };
        let b = PlatformServer { key: platform, measurement: B256::repeat_byte(2) };
        let key = |s: &PlatformServer| match s.answer(PlatformRequest::SealingKey) {
            PlatformResponse::SealingKey { key } => key,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(key(&a), key(&a));
        assert_ne!(key(&a), key(&b));
    }
}
