//! The market: an order book of signed licence (dataset) and compute (pool) offers.
//!
//! ```text
//!  owner/operator ── POST /v1/offers (EIP-712 offer + signature) ──▶ check signer == on-chain
//!                                                                    owner/operator ──▶ SQLite
//!  analyst ── GET /v1/datasets/{id}/offers, GET /v1/pools/offers ──▶ offers to pass to `rent`
//! ```
//!
//! The market holds no funds and no keys; the contract re-checks every offer at rent.

mod error;
mod service;
mod store;

pub use error::{MarketError, Result};
pub use service::{MarketConfig, MarketHandle, spawn};
pub use store::{OfferStore, SqliteOfferStore};
