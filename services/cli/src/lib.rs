//! The `strongroom` command and the user journeys behind it.
//!
//! - [`owner`]: encrypt a dataset, store it, deposit its keys, register it, list an offer.
//! - [`analyst`]: rent data plus compute in one transaction, then fetch, verify and open the result.
//! - [`devnet`]: a whole local stack in one process (anvil, contract, key service, market,
//!   worker), used by `strongroom demo`, `strongroom devnet` and the end-to-end tests.
//!
//! Subcommands live in `cmd/`, one file each; they parse arguments and call these modules.

pub mod analyst;
pub mod backup;
pub mod cmd;
pub mod devnet;
pub mod market_client;
pub mod owner;
pub mod result_keys;
pub mod units;
