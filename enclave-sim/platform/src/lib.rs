//! enclave-sim, the platform side: a simulated TEE standing in for SGX/TDX/Nitro/SEV-SNP.
//!
//! ```text
//!  worker host process        platform daemon (strongroom-platform)   enclave process
//!  ┌──────────────┐ launch   ┌──────────────────────────┐  spawn     ┌──────────────────────┐
//!  │ worker host  │────────▶│ Platform (the "CPU"):     │──────────▶│ enclave program       │
//!  │              │◀═══════ the host's connection becomes the enclave's stdin/stdout ═════▶│
//!  └──────────────┘          │ platform.key, fd 3 server │◀── fd 3 ─▶│ PlatformClient       │
//!                            └──────────────────────────┘  (private) └──────────────────────┘
//! ```
//!
//! The daemon ([`serve`], the `strongroom-platform` binary) holds the platform key in its own
//! directory; a host reaches it through [`PlatformDaemon`] and can only learn its key's address
//! or have it launch one of the enclave binaries it was started with. The daemon measured each
//! (sha256 of its bytes) when it read it, runs that sealed copy, and starts
//! it with a private socket on fd 3 that only the daemon serves: through it, and only through
//! it, the enclave obtains quotes over its own measurement and its sealing key. The worker host
//! holds the enclave's stdin/stdout only, and never the key that signs quotes. The enclave links only `strongroom-enclave-sim-guest`, which holds the
//! channel's messages and no platform secret. A [`QuoteVerifier`] checks quotes against trusted platform keys and
//! measurements; a real backend plugs in behind the same trait.
//!
//! Everything here is a simulation and says so: quotes carry `quoteType = 1` (simulated), which
//! a production deployment refuses.

mod daemon;
mod error;
mod platform;
mod verifier;

pub use daemon::{LaunchedEnclave, PlatformDaemon, PlatformInfo, serve};
pub use error::{Error, Result};
pub use platform::{EnclaveIdentity, Launchable, Platform, SIMULATED_IDENTITY, measure};
pub use verifier::{QuoteVerifier, SimulatedVerifier, VerifiedEnclave};
