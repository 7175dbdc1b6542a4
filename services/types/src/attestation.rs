//! The attestation quote of the simulated TEE platform, shaped like a hardware report.
//!
//! The platform (the "hardware vendor") signs `keccak256(abi.encode(quote))` with its secp256k1
//! key, the quote's type included; the contract recovers that key and checks it against its
//! governed list, where each key is trusted for one kind of quote. The report data binds the
//! enclave's signing address and a recent block (see [`report_data_for`]).

use alloy_primitives::{Address, B256, keccak256};
use alloy_sol_types::SolValue;
use alloy_sol_types::sol;

/// `quoteType` of quotes made by `enclave-sim`; production deployments refuse it.
pub const QUOTE_TYPE_SIMULATED: u8 = 1;

sol! {
    #[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct Quote {
        uint8 quoteType;
        bytes32 measurement;
        bytes32 signer;
        uint16 productId;
        uint16 svn;
        bool debug;
        bytes32[2] reportData;
    }
}

/// What the platform key signs.
pub fn quote_digest(quote: &Quote) -> B256 {
    keccak256(quote.abi_encode())
}

/// A recent block as the chain names it, which a quote binds to show it was made after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecentBlock {
    pub number: u64,
    pub hash: B256,
}

/// Report data binding an enclave's signing address and a recent block: the address in the
/// first 20 bytes, the block's number in the last 8 of the first word, its hash in the second.
/// The contract refuses a quote whose block it no longer knows (`QUOTE_MAX_AGE_BLOCKS`).
pub fn report_data_for(enclave: Address, block: RecentBlock) -> [B256; 2] {
    let mut first = [0u8; 32];
    first[..20].copy_from_slice(enclave.as_slice());
    first[24..].copy_from_slice(&block.number.to_be_bytes());
    [B256::from(first), block.hash]
}

/// The block a quote says it was made after.
pub fn quoted_block(quote: &Quote) -> RecentBlock {
    let number = u64::from_be_bytes(quote.reportData[0][24..].try_into().expect("8 bytes"));
    RecentBlock { number, hash: quote.reportData[1] }
}

/// The enclave address a quote vouches for.
pub fn enclave_address(quote: &Quote) -> Address {
    Address::from_slice(&quote.reportData[0][..20])
}
