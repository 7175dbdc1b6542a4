//! enclave-sim, the platform side: a simulated TEE standing in for SGX/TDX/Nitro/SEV-SNP.
//!
//! ```text
//!  host process                          enclave process (its own binary)
//!  ┌──────────────────────┐  stdin/stdout ┌─────────────────────────────┐
//!  │ worker host          │◀────────────▶│ enclave program              │
//!  ├──────────────────────┤               │                              │
//!  │ Platform (the "CPU") │◀── fd 3 ────▶│ PlatformClient (guest crate) │
//!  └──────────────────────┘   (private)   └─────────────────────────────┘
//! ```
//!
//! [`Platform::launch`] measures the enclave binary (sha256 of its bytes) and starts it with a
//! private socket on fd 3 that only the platform serves: through it, and only through it, the
//! enclave obtains quotes over its own measurement and its sealing key. The worker host holds
//! stdin/stdout only. The enclave links only `strongroom-enclave-sim-guest`, which holds the
//! channel's messages and no platform secret. A [`QuoteVerifier`] checks quotes against trusted platform keys and
//! measurements; a real backend plugs in behind the same trait.
//!
//! Everything here is a simulation and says so: quotes carry `quoteType = 1` (simulated), which
//! a production deployment refuses.

mod error;
mod platform;
mod verifier;

pub use error::{Error, Result};
pub use platform::{EnclaveProcess, Platform, measure};
pub use verifier::{QuoteVerifier, SimulatedVerifier, VerifiedEnclave};
