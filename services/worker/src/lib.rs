//! The worker host: the untrusted loop around a trusted enclave program.
//!
//! ```text
//!  chain ──TaskCreated(pool)──▶ host ──Authorization (operator signs)──┐
//!                                 │  RequestKeys ─▶ enclave ─▶ KeyRequest│
//!                                 ├──────── POST /v1/releases ─────────▶ key service
//!                                 │◀──────── sealed KeyRelease ──────────┘
//!                                 │  storage ──ciphertext──▶ RunTask ─▶ enclave ─▶ sealed result
//!                                 └─▶ storage (sealed result) ─▶ chain.submitResult
//! ```
//!
//! The host only ever holds ciphertext and sealed blobs. The enclave program
//! (`strongroom-enclave`, its own crate) is the trusted computing base; the host launches it
//! through the simulated platform and speaks [`strongroom_types::protocol`] with it, nothing else.

mod enclave_client;
mod host;
pub mod journal;

pub use host::{MAX_CONCURRENT_TASKS, WorkerConfig, WorkerError, WorkerHandle, locate_enclave_binary, spawn};
