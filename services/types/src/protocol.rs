//! The narrow, typed message interface between the untrusted host and the enclave program.
//!
//! Like an SGX ecall table or a Nitro vsock protocol: one request, one reply, over the enclave
//! process's stdin/stdout, each frame a 4-byte big-endian length then JSON. Bulk data (the
//! dataset's objects) follows its request as raw frames, a 4-byte length then the bytes, so
//! gigabytes of ciphertext are neither hex-encoded nor parsed as JSON. The enclave has no other
//! way in or out (its platform channel aside), and no network code.

use std::io::{Read, Write};

use alloy_primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Outcome, Quote, RecentBlock, SealedBox, X25519PublicKey};

/// Frames larger than this are refused rather than allocated.
pub const MAX_FRAME: usize = 1 << 30;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HostRequest {
    /// Bind the enclave to one deployment (its EIP-712 domain) and ask for a quote made after
    /// `block`. With `sealed_identity` (what an earlier run returned), the enclave takes back the
    /// identity key sealed under its platform's sealing key, so a restart keeps its registration;
    /// without it, or if it does not open, the enclave makes a new one.
    Attest { chain_id: u64, contract: Address, block: RecentBlock, sealed_identity: Option<Bytes> },
    /// Make a fresh X25519 key for this task, plan the job against the schema of the dataset's
    /// `manifest` (as stored) to find the columns it reads, and sign a key request for those.
    /// `policy` is the licence the task was rented under (the key service serves it by the
    /// policy hash on chain): the job is checked against it and the keys asked for are the
    /// columns the checked plan reads. The enclave keeps the manifest and the policy for the
    /// task and checks both against the chain once the release arrives: a false one only makes
    /// the task fail.
    RequestKeys { task_id: U256, spec: Bytes, manifest: Bytes, policy: String },
    /// Run the task: open the released keys, check the manifest, the ciphertext and the job,
    /// compute, seal. `spec` is the job as the host read it from the chain (SQL text or app
    /// parameters); the enclave checks it against the job hash in the sealed release.
    /// `location` is where the host will store the sealed result; the enclave signs it.
    /// The manifest's objects follow this frame as `objects` raw frames, in manifest order; the
    /// enclave checks each against the manifest.
    /// `key_service` is the key the task's release must be sealed by: the chain's, as the host
    /// read it; the enclave signs it with the result, and the contract settles only with the
    /// task's own, so a release the host sealed itself cannot settle the task.
    RunTask {
        task_id: U256,
        sealed_release: SealedBox,
        key_service: X25519PublicKey,
        objects: u32,
        spec: Bytes,
        location: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum EnclaveReply {
    /// `sealed_identity` opens only in this binary on this platform, for this deployment; the
    /// host keeps it for the next start.
    Attested {
        enclave: Address,
        quote: Quote,
        platform_signature: Bytes,
        sealed_identity: Bytes,
    },
    KeyRequest {
        task_id: U256,
        task_key: X25519PublicKey,
        columns: Vec<String>,
        signature: Bytes,
    },
    TaskResult {
        task_id: U256,
        sealed_result: Bytes,
        digest: B256,
        outcome: Outcome,
        signature: Bytes,
    },
    Error {
        message: String,
    },
}

pub fn write_frame<W: Write, T: Serialize>(w: &mut W, message: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    w.write_all(&(body.len() as u32).to_be_bytes())?;
    w.write_all(&body)?;
    w.flush()
}

/// Writes one raw frame: bulk bytes that follow a request.
pub fn write_raw_frame<W: Write>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.len() > MAX_FRAME {
        return Err(too_large(bytes.len()));
    }
    w.write_all(&(bytes.len() as u32).to_be_bytes())?;
    w.write_all(bytes)?;
    w.flush()
}

/// Reads one raw frame; the end of the stream here is an error (the request promised it).
pub fn read_raw_frame<R: Read>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(too_large(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

fn too_large(len: usize) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("frame of {len} bytes exceeds {MAX_FRAME}"))
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
        return Err(too_large(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_and_the_raw_frames_it_announces_round_trip() {
        let request = HostRequest::RunTask {
            task_id: U256::from(7),
            sealed_release: SealedBox(vec![1, 2, 3]),
            key_service: X25519PublicKey([9; 32]),
            objects: 2,
            spec: Bytes::from_static(b"SELECT 1"),
            location: "file:///r".into(),
        };
        let mut wire = Vec::new();
        write_frame(&mut wire, &request).unwrap();
        write_raw_frame(&mut wire, b"object one").unwrap();
        write_raw_frame(&mut wire, &[]).unwrap();
        let mut r = wire.as_slice();
        let got: HostRequest = read_frame(&mut r).unwrap().unwrap();
        assert!(matches!(got, HostRequest::RunTask { objects: 2, .. }));
        assert_eq!(read_raw_frame(&mut r).unwrap(), b"object one");
        assert_eq!(read_raw_frame(&mut r).unwrap(), b"");
        assert!(read_frame::<_, HostRequest>(&mut r).unwrap().is_none(), "clean end");
        let err = read_raw_frame(&mut r).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "a promised frame that never comes");
        let mut r: &[u8] = &(MAX_FRAME as u32 + 1).to_be_bytes();
        assert_eq!(
            read_raw_frame(&mut r).unwrap_err().to_string(),
            format!("frame of {} bytes exceeds {MAX_FRAME}", MAX_FRAME + 1)
        );
    }
}
