//! The narrow, typed message interface between the untrusted host and the enclave program.
//!
//! Like an SGX ecall table or a Nitro vsock protocol: one request, one reply, over the enclave
//! process's stdin/stdout, each frame a 4-byte big-endian length then JSON. The enclave has no
//! other way in or out (its platform channel aside), and no network code.

use std::io::{Read, Write};

use alloy::primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use strongroom_types::{ColumnEntry, Quote, SealedBox, X25519PublicKey};

/// Frames larger than this are refused rather than allocated.
pub const MAX_FRAME: usize = 1 << 30;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HostRequest {
    /// Bind the enclave to one deployment (its EIP-712 domain) and ask for its quote.
    Attest { chain_id: u64, contract: Address },
    /// Make a fresh X25519 key for this task, plan the job against the dataset's schema to find
    /// the columns it reads, and sign a key request for those. The schema comes from the
    /// dataset's manifest; a false one only makes the task fail.
    RequestKeys { task_id: U256, spec: Bytes, schema: Vec<ColumnEntry> },
    /// Run the task: open the released keys, check the ciphertext and the job, compute, seal.
    /// `spec` is the job as the host read it from the chain (SQL text or app parameters); the
    /// enclave checks it against the job hash in the sealed release.
    /// `location` is where the host will store the sealed result; the enclave signs it.
    /// `manifest` is the dataset's manifest as stored, and `objects` its objects in manifest
    /// order; the enclave checks the manifest against the chain and each object against it.
    RunTask {
        task_id: U256,
        sealed_release: SealedBox,
        manifest: Bytes,
        objects: Vec<Bytes>,
        spec: Bytes,
        location: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum EnclaveReply {
    Attested { enclave: Address, quote: Quote, platform_signature: Bytes },
    KeyRequest { task_id: U256, task_key: X25519PublicKey, columns: Vec<String>, signature: Bytes },
    TaskResult { task_id: U256, sealed_result: Bytes, digest: B256, failed: bool, signature: Bytes },
    Error { message: String },
}

pub fn write_frame<W: Write, T: Serialize>(w: &mut W, message: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    w.write_all(&(body.len() as u32).to_be_bytes())?;
    w.write_all(&body)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
