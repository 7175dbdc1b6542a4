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
    /// How many blocks a task's rent must have on top before its keys are released, and a
    /// dataset's change before a deposit counts it: 0 on a local chain, more where the chain can
    /// reorganise (the index of the chain's events follows that far below the head).
    #[serde(default)]
    pub confirmations: u64,
    /// A fault drill (`STRONGROOM_KMS_HALT_AFTER_BINDING=1`): a release request, once it has bound
    /// its task to the enclave and task key and before the release is recorded and answered,
    /// waits for the service to be killed, as a key service that crashed there would.
    #[serde(skip)]
    pub halt_after_binding: bool,
}
