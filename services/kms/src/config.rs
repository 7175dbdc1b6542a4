use std::path::PathBuf;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};

/// Key service configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KmsConfig {
    /// Directory holding the SQLite database and the service's X25519 key.
    pub data_dir: PathBuf,
    /// JSON-RPC endpoint of the chain the service checks tasks on.
    pub rpc_url: String,
    /// The Strongroom contract.
    pub contract: Address,
}
