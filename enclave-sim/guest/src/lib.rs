//! The enclave's side of the simulated TEE platform: asks for quotes and the sealing key over
//! the private channel the launcher leaves on fd 3.
//!
//! This is all of the simulator that the measured enclave links: the channel's messages and a
//! client for them. The platform key, the launcher and the quote verifier live on the host side
//! (`strongroom-enclave-sim`), which depends on this crate for the messages, never the reverse.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use alloy_primitives::{B256, Bytes};
use serde::{Deserialize, Serialize};
use strongroom_types::Quote;

/// The fd on which a launched enclave finds its private platform channel.
pub const PLATFORM_FD: i32 = 3;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The platform channel failed: it is missing (not launched by the simulator), closed, or the
/// platform refused the request.
#[derive(Debug, thiserror::Error)]
#[error("platform channel: {0}")]
pub struct Error(String);

/// What the enclave may ask its platform, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PlatformRequest {
    Quote { report_data: [B256; 2] },
    SealingKey,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PlatformResponse {
    Quote { quote: Quote, signature: Bytes },
    SealingKey { key: B256 },
    Error { message: String },
}

/// The enclave's handle on its platform.
pub struct PlatformClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl PlatformClient {
    /// Takes the platform channel the launcher left on fd 3. Call once, at enclave start.
    #[allow(unsafe_code)]
    pub fn from_launch_fd() -> Result<Self> {
        let flags = std::fs::read_link(format!("/proc/self/fd/{PLATFORM_FD}"))
            .map_err(|_| Error("no platform channel on fd 3: was this enclave started by enclave-sim?".into()))?;
        if !flags.to_string_lossy().starts_with("socket:") {
            return Err(Error("fd 3 is not the platform socket".into()));
        }
        // SAFETY: fd 3 is open (checked above), is a socket, and nothing else in this process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(PLATFORM_FD) };
        let stream = UnixStream::from(fd);
        let writer = stream.try_clone().map_err(|e| Error(e.to_string()))?;
        Ok(Self { reader: BufReader::new(stream), writer })
    }

    /// A quote over this enclave's measurement carrying `report_data`, and the platform's signature.
    pub fn quote(&mut self, report_data: [B256; 2]) -> Result<(Quote, Bytes)> {
        match self.call(&PlatformRequest::Quote { report_data })? {
            PlatformResponse::Quote { quote, signature } => Ok((quote, signature)),
            other => Err(unexpected(other)),
        }
    }

    /// A key only this binary on this platform can derive.
    pub fn sealing_key(&mut self) -> Result<B256> {
        match self.call(&PlatformRequest::SealingKey)? {
            PlatformResponse::SealingKey { key } => Ok(key),
            other => Err(unexpected(other)),
        }
    }

    fn call(&mut self, request: &PlatformRequest) -> Result<PlatformResponse> {
        let mut line = serde_json::to_vec(request).expect("request serializes");
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| Error(e.to_string()))?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer).map_err(|e| Error(e.to_string()))?;
        serde_json::from_str(&answer).map_err(|e| Error(format!("bad platform answer: {e}")))
    }
}

fn unexpected(response: PlatformResponse) -> Error {
    match response {
        PlatformResponse::Error { message } => Error(message),
        other => Error(format!("unexpected platform answer {other:?}")),
    }
}
