//! The library a program uses to work with Strongroom; the `strongroom` CLI is a thin layer on it.
//!
//! ```text
//!  Owner:   input ─encrypt─▶ storage ─▶ backup ─▶ KmsClient::deposit ─▶ chain.register ─▶ MarketClient
//!  Analyst: ResultKeys::create ─▶ chain.rent ─▶ wait for ResultSubmitted ─▶ storage ─▶ open, verify
//! ```
//!
//! - [`owner`]: encrypt a dataset, store it, deposit its keys, register it, list an offer; rotate
//!   its keys; move them to another key service from the owner's [`KeyBackup`].
//! - [`analyst`]: rent data plus compute in one transaction, then fetch, verify and open the
//!   result with a key saved in [`ResultKeys`] before paying.
//! - [`KmsClient`], [`MarketClient`]: the services' HTTP APIs, typed; refusals decode to the
//!   servers' own [`strongroom_types::ApiError`].
//!
//! Errors are one [`ClientError`], sorted by who is at fault.

pub mod analyst;
mod api;
mod backup;
mod error;
pub mod owner;
mod result_keys;

pub use api::{KmsClient, MarketClient, http_client};
pub use backup::KeyBackup;
pub use error::{ClientError, Result};
pub use result_keys::ResultKeys;
