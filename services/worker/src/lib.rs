//! The worker: an untrusted host loop around a trusted enclave program.
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
//! (`strongroom-enclave`, [`enclave`]) is the trusted computing base; [`protocol`] is the
//! whole of its interface with the host. [`dataplane`] is the encrypted data format shared by
//! the owner's CLI and the enclave, [`storage`] the object store both sides use.

pub mod dataplane;
pub mod enclave;
mod host;
pub mod protocol;
pub mod storage;

pub use host::{WorkerConfig, WorkerError, WorkerHandle, locate_enclave_binary, spawn};
