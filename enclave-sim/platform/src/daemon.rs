//! The platform daemon: the simulated CPU as a process of its own, so that its key is never in
//! the worker host's memory.
//!
//! ```text
//!  worker host ──connect──▶ strongroom-platform (holds platform.key)
//!     │  {"op":"launch","binary":…}      │ one of the enclaves it read and measured at start:
//!     │                                  │ starts that copy with this very
//!     │◀─ {"op":"launched",…}            │ connection as its stdin/stdout and a private
//!     │◀════ enclave frames ════════════▶│ fd 3 it serves itself (quotes, sealing key)
//! ```
//!
//! The host can ask for two things only: the platform key's address (to check quotes against)
//! and the launch of one of the enclave binaries the daemon was started with (`--enclave`), read
//! and measured once then and run from a sealed in-memory copy. It cannot ask for a quote, so it
//! cannot make one for a trusted measurement over a key of its own, and it cannot have a program
//! of its own run as the daemon's user, where it could read the platform key.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use crate::platform::{EnclaveIdentity, Launchable, Platform};
use crate::{Error, Result};

/// What a host may ask the daemon, one JSON line on a fresh connection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum DaemonRequest {
    Info,
    Launch { binary: PathBuf },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum DaemonReply {
    Info { platform_key: Address, signer: B256, product_id: u16, svn: u16 },
    Launched { measurement: B256, pid: u32 },
    Error { message: String },
}

/// What the daemon says of its platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformInfo {
    /// The key that signs this platform's quotes, which governance trusts as simulated.
    pub platform_key: Address,
    /// The enclave identity the platform reports in every quote.
    pub identity: EnclaveIdentity,
}

/// An enclave the daemon started: its message channel (the enclave's stdin and stdout) and its
/// measurement. Closing the channel ends the enclave.
#[derive(Debug)]
pub struct LaunchedEnclave {
    pub channel: UnixStream,
    pub measurement: B256,
    pub pid: u32,
}

/// Serves hosts on `listener` until the process ends: the daemon's main loop. It launches only
/// `enclaves`, read and measured when it started: a host cannot have it run a program of its
/// own, which (running as the daemon's user, as the simulation must) could read the platform key.
pub fn serve(platform: &Platform, enclaves: Vec<Launchable>, listener: UnixListener) -> Result<()> {
    let enclaves = std::sync::Arc::new(enclaves);
    for stream in listener.incoming() {
        let stream = stream.map_err(|e| Error::Channel(format!("accepting a host: {e}")))?;
        let (platform, enclaves) = (platform.clone(), enclaves.clone());
        std::thread::spawn(move || answer(&platform, &enclaves, stream));
    }
    Ok(())
}

fn answer(platform: &Platform, enclaves: &[Launchable], stream: UnixStream) {
    let Ok(reading) = stream.try_clone() else { return };
    // A request is one short line; a host that sends more is cut off.
    let mut reader = BufReader::new(reading.take(64 * 1024));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let reply = match serde_json::from_str::<DaemonRequest>(&line) {
        Ok(DaemonRequest::Info) => {
            let identity = crate::SIMULATED_IDENTITY;
            DaemonReply::Info {
                platform_key: platform.address(),
                signer: identity.signer,
                product_id: identity.product_id,
                svn: identity.svn,
            }
        }
        Ok(DaemonRequest::Launch { binary }) => match launch_on(platform, enclaves, &binary, &stream) {
            Ok((mut child, measurement)) => {
                let pid = child.id();
                let _ = reply_to(&stream, &DaemonReply::Launched { measurement, pid });
                drop(stream);
                drop(reader);
                eprintln!("platform: enclave {pid} launched, measurement {measurement}");
                let status = child.wait();
                eprintln!("platform: enclave {pid} exited ({status:?})");
                return;
            }
            Err(e) => DaemonReply::Error { message: e.to_string() },
        },
        Err(e) => DaemonReply::Error { message: format!("bad request to the platform: {e}") },
    };
    let _ = reply_to(&stream, &reply);
}

/// Starts `binary` with the host's connection as its stdin and stdout: after the `launched`
/// line, every byte on it is the enclave's.
fn launch_on(
    platform: &Platform,
    enclaves: &[Launchable],
    binary: &Path,
    stream: &UnixStream,
) -> Result<(std::process::Child, B256)> {
    let named = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_owned());
    let Some(enclave) = enclaves.iter().find(|e| e.path == named) else {
        let known: Vec<String> = enclaves.iter().map(|e| e.path.display().to_string()).collect();
        return Err(Error::NotLaunchable { binary: binary.display().to_string(), known: known.join(", ") });
    };
    let channel = |s: &UnixStream| -> Result<Stdio> {
        let fd: OwnedFd = s.try_clone().map_err(|e| Error::Channel(e.to_string()))?.into();
        Ok(Stdio::from(fd))
    };
    let child = platform.launch(enclave, channel(stream)?, channel(stream)?)?;
    Ok((child, enclave.measurement))
}

fn reply_to(mut stream: &UnixStream, reply: &DaemonReply) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(reply).expect("replies serialize");
    out.push(b'\n');
    stream.write_all(&out)
}

/// The host's handle on a platform daemon, by its socket.
#[derive(Clone, Debug)]
pub struct PlatformDaemon {
    socket: PathBuf,
}

impl PlatformDaemon {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into() }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn info(&self) -> Result<PlatformInfo> {
        let (reply, _) = self.ask(&DaemonRequest::Info)?;
        match reply {
            DaemonReply::Info { platform_key, signer, product_id, svn } => {
                Ok(PlatformInfo { platform_key, identity: EnclaveIdentity { signer, product_id, svn } })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Has the daemon measure and start `binary`; the channel is the enclave's stdin/stdout.
    pub fn launch(&self, binary: &Path) -> Result<LaunchedEnclave> {
        // The daemon may run elsewhere in the file system's view; it opens the path it is given.
        let binary = std::fs::canonicalize(binary)
            .map_err(|source| Error::Binary { path: binary.display().to_string(), source })?;
        let (reply, channel) = self.ask(&DaemonRequest::Launch { binary })?;
        match reply {
            DaemonReply::Launched { measurement, pid } => Ok(LaunchedEnclave { channel, measurement, pid }),
            other => Err(unexpected(other)),
        }
    }

    fn ask(&self, request: &DaemonRequest) -> Result<(DaemonReply, UnixStream)> {
        let unreachable = |e: std::io::Error| {
            Error::Channel(format!(
                "the platform daemon at {} does not answer ({e}): start it with `strongroom-platform --dir DIR --socket {} --enclave BINARY`",
                self.socket.display(),
                self.socket.display()
            ))
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(unreachable)?;
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        stream.write_all(&line).map_err(unreachable)?;
        // Read the reply line byte by byte: what follows it on a launch is the enclave's.
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte).map_err(unreachable)? {
                0 => break,
                _ if byte[0] == b'\n' => break,
                _ => answer.push(byte[0]),
            }
            if answer.len() > 64 * 1024 {
                return Err(Error::Channel("the platform daemon's reply is too long".into()));
            }
        }
        let reply = serde_json::from_slice(&answer)
            .map_err(|e| Error::Channel(format!("bad reply from the platform daemon: {e}")))?;
        Ok((reply, stream))
    }
}

fn unexpected(reply: DaemonReply) -> Error {
    match reply {
        DaemonReply::Error { message } => Error::Channel(message),
        other => Error::Channel(format!("unexpected reply from the platform daemon: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_tells_its_key_and_launches_only_the_enclaves_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::load_or_create(&dir.path().join("platform")).unwrap();
        let socket = dir.path().join("platform.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let served = platform.clone();
        let enclave = dir.path().join("enclave");
        std::fs::write(&enclave, b"not even a program").unwrap();
        let enclaves = vec![Launchable::load(&enclave).unwrap()];
        std::thread::spawn(move || serve(&served, enclaves, listener));

        let daemon = PlatformDaemon::new(&socket);
        let info = daemon.info().unwrap();
        assert_eq!(info.platform_key, platform.address());
        assert_eq!(info.identity, crate::SIMULATED_IDENTITY);

        // A program of the host's own is not launched: it could read the platform key.
        let own = dir.path().join("the-hosts-program");
        std::fs::write(&own, b"#!/bin/sh\ncat platform/platform.key\n").unwrap();
        let err = daemon.launch(&own).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "platform channel: {} is not an enclave this platform launches ({}): start strongroom-platform with --enclave for it",
                std::fs::canonicalize(&own).unwrap().display(),
                std::fs::canonicalize(&enclave).unwrap().display()
            )
        );

        // No daemon behind a socket: the error says how to start one.
        let err = PlatformDaemon::new(dir.path().join("nobody.sock")).info().unwrap_err();
        assert!(err.to_string().contains("does not answer"), "{err}");
    }
}
