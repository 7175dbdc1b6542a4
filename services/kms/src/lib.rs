//! The key service: custody of dataset keys and their attested, per-task release.
//!
//! ```text
//!  owner ── POST /v1/deposits (keys HPKE-sealed to this service, signed by the owner) ──▶ SQLite
//!  host  ── POST /v1/releases (enclave-signed KeyRequest + operator Authorization) ──▶
//!           chain: task active, paid, before deadline · operator authorized the enclave ·
//!                  enclave registered with a trusted measurement · dataset uses this service
//!        ◀── KeyRelease{keys, on-chain task facts} HPKE-sealed to the enclave's task key
//!           + one audit row per release (POST /v1/audit, signed by the dataset owner)
//!           + a signed receipt of the release (also GET /v1/receipts/{task}), which settles a
//!             task the pool abandons after getting its keys (`refundReleased`)
//! ```
//!
//! Keys are stored only as the owner sealed them; they are opened in memory for a release and
//! wiped afterwards. Nothing logs key bytes.

mod config;
mod decision;
mod error;
mod service;
mod signer;
mod store;

pub use config::KmsConfig;
pub use decision::{Authorized, ChainView, DepositView, Grant, authorize, grant};
pub use error::{KmsError, Result};
pub use service::{KmsHandle, spawn};
pub use store::{DepositStore, SqliteDepositStore, TaskRef};
