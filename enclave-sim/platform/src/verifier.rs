//! Quote verification: the same checks the contract makes at `registerEnclave`, off chain.

use std::collections::HashSet;

use alloy_primitives::{Address, B256, Signature};
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

#[cfg(test)]
mod tests {
    use alloy_primitives::Address;
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;
    use strongroom_types::{RecentBlock, report_data_for};

    use super::*;

    fn quote(enclave: Address, debug: bool) -> Quote {
        Quote {
            quoteType: QUOTE_TYPE_SIMULATED,
            measurement: B256::repeat_byte(0xaa),
            signer: B256::ZERO,
            productId: 1,
            svn: 1,
            debug,
            reportData: report_data_for(enclave, RecentBlock { number: 1, hash: B256::repeat_byte(7) }),
        }
    }

    fn signed(platform: &PrivateKeySigner, quote: &Quote) -> Vec<u8> {
        platform.sign_hash_sync(&quote_digest(quote)).unwrap().as_bytes().to_vec()
    }

    fn verifier(platform: &PrivateKeySigner) -> SimulatedVerifier {
        SimulatedVerifier {
            trusted_platform_keys: [platform.address()].into(),
            trusted_measurements: [B256::repeat_byte(0xaa)].into(),
            accept_simulated: true,
        }
    }

    #[test]
    fn accepts_a_trusted_quote_and_names_every_refusal() {
        let platform = PrivateKeySigner::random();
        let enclave = Address::repeat_byte(0x11);
        let good = quote(enclave, false);
        let verified = verifier(&platform).verify(&good, &signed(&platform, &good)).unwrap();
        assert_eq!(
            verified,
            VerifiedEnclave {
                enclave,
                measurement: good.measurement,
                platform_key: platform.address(),
                simulated: true
            }
        );

        let production = SimulatedVerifier { accept_simulated: false, ..verifier(&platform) };
        assert!(matches!(production.verify(&good, &signed(&platform, &good)), Err(Error::SimulatedQuoteRefused)));

        assert!(matches!(verifier(&platform).verify(&good, &[0u8; 10]), Err(Error::InvalidPlatformSignature)));

        let rogue = PrivateKeySigner::random();
        let err = verifier(&platform).verify(&good, &signed(&rogue, &good)).unwrap_err();
        assert_eq!(err.to_string(), format!("platform key {} is not trusted", rogue.address()));

        let mut other = good.clone();
        other.measurement = B256::repeat_byte(0xbb);
        assert!(
            matches!(verifier(&platform).verify(&other, &signed(&platform, &other)), Err(Error::UntrustedMeasurement(m)) if m == other.measurement)
        );

        // A signature over one quote does not carry over to an edited one.
        let err = verifier(&platform).verify(&other, &signed(&platform, &good)).unwrap_err();
        assert!(matches!(err, Error::UntrustedPlatform(_)), "{err}");

        let debug = quote(enclave, true);
        assert!(matches!(verifier(&platform).verify(&debug, &signed(&platform, &debug)), Err(Error::DebugEnclave)));

        let empty = quote(Address::ZERO, false);
        assert!(matches!(verifier(&platform).verify(&empty, &signed(&platform, &empty)), Err(Error::BadReportData)));
    }
}
