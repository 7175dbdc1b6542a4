use alloy_primitives::{Address, B256};
use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    // The quote presented.
    #[error("simulated quotes are refused by this verifier (production configuration)")]
    SimulatedQuoteRefused,
    #[error("the quote's platform signature is malformed or does not recover a key")]
    InvalidPlatformSignature,
    #[error("platform key {0} is not trusted")]
    UntrustedPlatform(Address),
    #[error("enclave measurement {0} is not trusted; add it with `strongroom devnet trust-measurement` or governance")]
    UntrustedMeasurement(B256),
    #[error("debug enclaves are refused: their memory is readable by the host")]
    DebugEnclave,
    #[error("the quote's report data does not bind an enclave address")]
    BadReportData,
    // The environment.
    #[error("enclave binary {path}: {source}")]
    Binary { path: String, source: std::io::Error },
    #[error("platform key file {path}: {reason}")]
    PlatformKey { path: String, reason: String },
    #[error("platform channel: {0}")]
    Channel(String),
    #[error(
        "{binary} is not an enclave this platform launches ({known}): start strongroom-platform with --enclave for it"
    )]
    NotLaunchable { binary: String, known: String },
}
