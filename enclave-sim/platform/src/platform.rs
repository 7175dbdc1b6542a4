//! The host side of the simulated platform: the platform key, measured launch, quote service.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
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

    /// Starts `binary` as a measured enclave with `stdin`/`stdout` as its message channel to the
    /// host and its log on this process's stderr. The platform channel (fd 3) stays private to
    /// this process, which serves it until the enclave exits; the returned child is waited on
    /// by the caller.
    pub(crate) fn launch(&self, binary: &Path, stdin: Stdio, stdout: Stdio) -> Result<(Child, B256)> {
        // Measure the bytes we are about to run. A real CPU measures pages as it loads them; here
        // the window between hashing and exec is accepted as a simulation limit.
        let measurement = measure(binary)?;
        let (platform_end, enclave_end) = UnixStream::pair().map_err(|e| Error::Channel(e.to_string()))?;
        let enclave_fd = enclave_end.as_raw_fd();
        let mut command = Command::new(binary);
        command.stdin(stdin).stdout(stdout).stderr(Stdio::inherit()).env_clear();
        install_platform_fd(&mut command, enclave_fd);
        let child = command.spawn().map_err(|source| Error::Binary { path: binary.display().to_string(), source })?;
        drop(enclave_end);

        let server = PlatformServer { key: self.key.clone(), measurement };
        std::thread::Builder::new()
            .name("enclave-sim-platform".into())
            .spawn(move || server.serve(platform_end))
            .map_err(|e| Error::Channel(e.to_string()))?;
        Ok((child, measurement))
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
    fn launching_a_missing_binary_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::load_or_create(dir.path()).unwrap();
        let err = platform.launch(&dir.path().join("no-such-enclave"), Stdio::null(), Stdio::null()).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("enclave binary {}", dir.path().join("no-such-enclave").display())),
            "{err}"
        );
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
