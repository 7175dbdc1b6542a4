use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from decoding and opening the shared wire types.
#[derive(Debug, Error)]
pub enum Error {
    // The caller's input.
    #[error("sealed box is {0} bytes, shorter than an X25519 encapsulated key")]
    SealedBoxTooShort(usize),
    #[error("{what} must be {expected} bytes, got {got}")]
    BadLength { what: &'static str, expected: usize, got: usize },
    #[error("cannot open sealed {0}: wrong key, wrong context, or tampered ciphertext")]
    OpenFailed(&'static str),
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    // The environment.
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    // Our own bug.
    #[error("internal: HPKE seal failed: {0}")]
    SealFailed(String),
}
