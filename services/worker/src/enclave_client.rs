//! The host's end of the enclave's message channel.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use alloy::primitives::B256;
use strongroom_enclave_sim::PlatformDaemon;

use strongroom_types::protocol::{EnclaveReply, HostRequest, read_frame, write_frame, write_raw_frame};

use crate::WorkerError;

/// One request at a time, like an ecall; blocking socket I/O runs off the async threads.
pub(crate) struct EnclaveClient {
    channel: Arc<Mutex<UnixStream>>,
    measurement: B256,
}

impl EnclaveClient {
    /// Has the platform daemon measure and start `binary`; the enclave's log goes to the
    /// daemon's. Dropping the client closes the channel, which ends the enclave.
    pub(crate) fn launch(platform: &PlatformDaemon, binary: &Path) -> Result<Self, WorkerError> {
        let launched = platform.launch(binary)?;
        tracing::info!(pid = launched.pid, "enclave process started by the platform daemon");
        Ok(Self { channel: Arc::new(Mutex::new(launched.channel)), measurement: launched.measurement })
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
            let mut stream = channel.lock().map_err(|_| WorkerError::Enclave("channel poisoned".into()))?;
            let stream = &mut *stream;
            let refused = |e: std::io::Error| WorkerError::Enclave(format!("enclave exited or refused input: {e}"));
            write_frame(stream, &request).map_err(refused)?;
            for frame in &attached {
                write_raw_frame(stream, frame).map_err(refused)?;
            }
            read_frame(stream)
                .map_err(|e| WorkerError::Enclave(format!("bad reply: {e}")))?
                .ok_or_else(|| WorkerError::Enclave("enclave exited".into()))
        })
        .await
        .map_err(|e| WorkerError::Enclave(format!("enclave call panicked: {e}")))?
    }
}
