//! The enclave program: the trusted computing base of a worker, measured by its sha256.
//!
//! ```text
//!  Attest ─▶ new secp256k1 enclave key, quote binding its address
//!  RequestKeys ─▶ new X25519 task key, plan the job on the manifest's schema,
//!                 KeyRequest for the plan's columns signed by the enclave key
//!  RunTask ─▶ open release (keys + on-chain facts) ─▶ check manifest, objects and job hash
//!          ─▶ decrypt Parquet ─▶ DataFusion (read-only SQL) ─▶ seal to analyst ─▶ sign digest
//! ```
//!
//! Started only by enclave-sim (or a real TEE launcher), it talks to its host over
//! stdin/stdout ([`strongroom_types::protocol`], one request and one reply at a time) and to
//! its platform over fd 3. It has no network, storage or chain code of its own: every byte in
//! or out passes the host as a typed message, and `make test` checks its dependency tree.
//!
//! Keys live only in this process's memory and are wiped when dropped. Nothing here logs key
//! bytes or data values: the log (stderr) carries task ids, sizes and outcomes.

mod failure;
mod query;
mod session;

use std::process::ExitCode;

use strongroom_types::protocol::{EnclaveReply, HostRequest, read_frame, read_raw_frame, write_frame};

/// Runs the request loop until the host closes stdin.
fn main() -> ExitCode {
    let mut platform = match strongroom_enclave_sim_guest::PlatformClient::from_launch_fd() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("enclave: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("enclave: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut session = session::Session::default();
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    eprintln!("enclave: started (SIMULATED TEE)");
    loop {
        let request: HostRequest = match read_frame(&mut stdin) {
            Ok(Some(r)) => r,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("enclave: bad frame from host: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The raw frames a request announces follow it.
        let attached = match &request {
            HostRequest::RunTask { objects, .. } => (0..*objects).map(|_| read_raw_frame(&mut stdin)).collect(),
            _ => Ok(Vec::new()),
        };
        let attached: Vec<bytes::Bytes> = match attached {
            Ok(frames) => frames.into_iter().map(Into::into).collect(),
            Err(e) => {
                eprintln!("enclave: bad frame from host: {e}");
                return ExitCode::FAILURE;
            }
        };
        let reply = session
            .handle(request, attached, &mut platform, &runtime)
            .unwrap_or_else(|e| EnclaveReply::Error { message: e.to_string() });
        if let Err(e) = write_frame(&mut stdout, &reply) {
            eprintln!("enclave: host channel closed: {e}");
            return ExitCode::FAILURE;
        }
    }
}
