//! End-to-end: a real anvil, the real contract, the key service and the market on loopback
//! ports, the enclave as its own measured process.

mod attacks;
mod cli;
mod digests;
mod failures;
mod faults;
mod flow;
mod index;
mod privacy;
mod recovery;
mod release;
mod result_keys;
mod reverts;
mod s3;
mod settlement;
mod versions;
