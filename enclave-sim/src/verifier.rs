//! Quote verification: the same checks the contract makes at `registerEnclave`, off chain.

use std::collections::HashSet;

use alloy::primitives::{Address, B256, Signature};
use strongroom_types::{QUOTE_TYPE_SIMULATED, Quote, enclave_address, quote_digest};

use crate::{Error, Result};

/// What a verified quote vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEnclave {
    pub enclave: Address,
    pub measurement: B256,
    pub platform_key: Address,
    pub simulated: bool,
}

/// Checks a quote and its platform signature. SGX/TDX DCAP, Nitro or SEV-SNP verifiers
/// implement this same trait.
pub trait QuoteVerifier {
    fn verify(&self, quote: &Quote, platform_signature: &[u8]) -> Result<VerifiedEnclave>;
}

/// Verifies quotes of the simulated platform against governed lists.
#[derive(Clone, Debug, Default)]
pub struct SimulatedVerifier {
    pub trusted_platform_keys: HashSet<Address>,
    pub trusted_measurements: HashSet<B256>,
    /// False in production: simulated quotes prove nothing about real hardware.
    pub accept_simulated: bool,
}

impl QuoteVerifier for SimulatedVerifier {
    fn verify(&self, quote: &Quote, platform_signature: &[u8]) -> Result<VerifiedEnclave> {
        let simulated = quote.quoteType == QUOTE_TYPE_SIMULATED;
        if simulated && !self.accept_simulated {
            return Err(Error::SimulatedQuoteRefused);
        }
        let platform_key = Signature::from_raw(platform_signature)
            .ok()
            .and_then(|sig| sig.recover_address_from_prehash(&quote_digest(quote)).ok())
            .ok_or(Error::InvalidPlatformSignature)?;
        if !self.trusted_platform_keys.contains(&platform_key) {
            return Err(Error::UntrustedPlatform(platform_key));
        }
        if !self.trusted_measurements.contains(&quote.measurement) {
            return Err(Error::UntrustedMeasurement(quote.measurement));
        }
        if quote.debug {
            return Err(Error::DebugEnclave);
        }
        let enclave = enclave_address(quote);
        if enclave.is_zero() {
            return Err(Error::BadReportData);
        }
        Ok(VerifiedEnclave { enclave, measurement: quote.measurement, platform_key, simulated })
    }
}
