//! The attestation quote of the simulated TEE platform, shaped like a hardware report.
//!
//! The platform (the "hardware vendor") signs `keccak256(abi.encode(quote))` with its secp256k1
//! key; the contract recovers that key and checks it against its governed list. The report data
//! binds the enclave's signing address (first 20 bytes).

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

/// Report data binding an enclave's signing address.
pub fn report_data_for(enclave: Address) -> [B256; 2] {
    let mut first = [0u8; 32];
    first[..20].copy_from_slice(enclave.as_slice());
    [B256::from(first), B256::ZERO]
}

/// The enclave address a quote vouches for.
pub fn enclave_address(quote: &Quote) -> Address {
    Address::from_slice(&quote.reportData[0][..20])
}
