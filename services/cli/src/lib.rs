//! The `strongroom` command: it parses arguments and prints; the journeys behind it live in
//! `strongroom-client` and the local stack in `strongroom-devnet`.
//!
//! Subcommands live in `cmd/`, one file each, each with `Args::run`.

pub mod cmd;
pub mod units;
