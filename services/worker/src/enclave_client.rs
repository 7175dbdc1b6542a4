//! The host's end of the enclave's message channel.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout};
use std::sync::{Arc, Mutex};

use alloy::primitives::B256;
use strongroom_enclave_sim::{EnclaveProcess, Platform};

use strongroom_types::protocol::{EnclaveReply, HostRequest, read_frame, write_frame, write_raw_frame};

use crate::WorkerError;

/// One request at a time, like an ecall; blocking pipe I/O runs off the async threads.
pub(crate) struct EnclaveClient {
    channel: Arc<Mutex<(ChildStdin, ChildStdout)>>,
    measurement: B256,
    _process: EnclaveProcess,
}

impl EnclaveClient {
    pub(crate) fn launch(platform: &Platform, binary: &Path) -> Result<Self, WorkerError> {
        let mut process = platform.launch(binary)?;
        let stdin = process.stdin.take().expect("fresh process has stdin");
        let stdout = process.stdout.take().expect("fresh process has stdout");
        let stderr = process.stderr.take().expect("fresh process has stderr");
        let pid = process.id();
        // The enclave's log joins the host's, labelled; the enclave never writes secrets to it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                tracing::info!(target: "strongroom::enclave", pid, "{line}");
            }
        });
        Ok(Self { channel: Arc::new(Mutex::new((stdin, stdout))), measurement: process.measurement, _process: process })
    }

    pub(crate) fn measurement(&self) -> B256 {
        self.measurement
    }

    pub(crate) async fn call(&self, request: HostRequest) -> Result<EnclaveReply, WorkerError> {
        self.call_with(request, Vec::new()).await
    }

    /// Sends `request` followed by the raw frames it announces.
    pub(crate) async fn call_with(
        &self,
        request: HostRequest,
        attached: Vec<bytes::Bytes>,
    ) -> Result<EnclaveReply, WorkerError> {
        let channel = Arc::clone(&self.channel);
        tokio::task::spawn_blocking(move || {
            let mut guard = channel.lock().map_err(|_| WorkerError::Enclave("channel poisoned".into()))?;
            let (stdin, stdout) = &mut *guard;
            let refused = |e: std::io::Error| WorkerError::Enclave(format!("enclave exited or refused input: {e}"));
            write_frame(stdin, &request).map_err(refused)?;
            for frame in &attached {
                write_raw_frame(stdin, frame).map_err(refused)?;
            }
            read_frame(stdout)
                .map_err(|e| WorkerError::Enclave(format!("bad reply: {e}")))?
                .ok_or_else(|| WorkerError::Enclave("enclave exited".into()))
        })
        .await
        .map_err(|e| WorkerError::Enclave(format!("enclave call panicked: {e}")))?
    }
}
