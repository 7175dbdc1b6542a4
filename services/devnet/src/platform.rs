//! The platform daemon of the devnet: `strongroom-platform`, a process of its own, as the CPU
//! of a real worker machine is. The devnet learns its key's address (to trust it on chain) and
//! its socket (for the worker), never its key.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use alloy::primitives::Address;
use strongroom_enclave_sim::{PlatformDaemon, PlatformInfo};

use crate::{DevnetError, Result};

/// The running daemon; dropping it stops it (and with it any enclave it still serves).
#[derive(Debug)]
pub struct PlatformProcess {
    child: Child,
    daemon: PlatformDaemon,
    info: PlatformInfo,
}

impl PlatformProcess {
    /// Starts `binary --dir <data_dir>/platform --socket <data_dir>/platform.sock --enclave
    /// <enclave>` and waits until it listens.
    pub fn spawn(binary: &Path, data_dir: &Path, enclave: &Path) -> Result<Self> {
        let socket = data_dir.join("platform.sock");
        let io = |what: String| move |source| DevnetError::Io { what, source };
        let mut command = Command::new(binary);
        crate::dies_with_devnet(&mut command);
        let mut child = command
            .arg("--dir")
            .arg(data_dir.join("platform"))
            .arg("--socket")
            .arg(&socket)
            .arg("--enclave")
            .arg(enclave)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("starting the platform daemon {} (build it with `make build`)", binary.display())))?;
        // The daemon's log and that of every enclave it runs join the devnet's, labelled; the
        // enclave never writes secrets to it (the end-to-end suite checks).
        let stderr = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                tracing::info!(target: "strongroom::platform", "{line}");
            }
        });
        let mut ready = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        BufReader::new(stdout).read_line(&mut ready).map_err(io("reading the platform daemon's first line".into()))?;
        if !ready.starts_with("platform key ") {
            let _ = child.kill();
            let status = child.wait().ok();
            return Err(DevnetError::Node(format!(
                "the platform daemon {} did not start ({status:?})",
                binary.display()
            )));
        }
        let daemon = PlatformDaemon::new(&socket);
        let info = daemon.info()?;
        Ok(Self { child, daemon, info })
    }

    /// Where `strongroom-platform` is: `STRONGROOM_PLATFORM`, else beside the enclave binary.
    pub fn locate(enclave_binary: &Path) -> PathBuf {
        match std::env::var_os("STRONGROOM_PLATFORM") {
            Some(path) => PathBuf::from(path),
            None => enclave_binary.with_file_name("strongroom-platform"),
        }
    }

    pub fn socket(&self) -> &Path {
        self.daemon.socket()
    }

    pub fn key(&self) -> Address {
        self.info.platform_key
    }

    pub fn info(&self) -> PlatformInfo {
        self.info
    }
}

impl Drop for PlatformProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
