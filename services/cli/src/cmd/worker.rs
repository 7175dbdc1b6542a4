use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use strongroom_types::{PoolId, StorageUrl};
use strongroom_worker::WorkerConfig;

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Launch the enclave, register it, and serve the pool's tasks until interrupted.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pool to serve (`--key` must be its operator).
    #[arg(long, env = "STRONGROOM_POOL")]
    pub pool: PoolId,
    /// The enclave program; defaults to `strongroom-enclave` beside this binary.
    #[arg(long, env = "STRONGROOM_ENCLAVE")]
    pub enclave: Option<PathBuf>,
    /// Serve still-active tasks created from this block on (e.g. after a restart); default: new tasks only.
    #[arg(long)]
    pub from_block: Option<u64>,
    /// The socket of the platform daemon (`strongroom-platform --dir DIR --socket PATH`, run
    /// apart from the worker, as the hardware is); defaults to `<data-dir>/platform.sock`.
    #[arg(long, env = "STRONGROOM_PLATFORM_SOCKET")]
    pub platform_socket: Option<PathBuf>,
    /// A storage prefix to read datasets from (repeatable); a task of a dataset elsewhere is
    /// declined. Defaults to `<data-dir>/objects`.
    #[arg(long = "dataset-storage")]
    pub dataset_storage: Vec<StorageUrl>,
    /// Storage URL for sealed results; defaults to `<data-dir>/results`.
    #[arg(long, env = "STRONGROOM_RESULTS_URL")]
    pub results_url: Option<StorageUrl>,
    /// How many tasks are served at once.
    #[arg(long, default_value_t = 4)]
    pub concurrent_tasks: usize,
}

impl WorkerCommand {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let Self::Run(args) = self;
        let enclave_binary = args
            .enclave
            .or_else(strongroom_worker::locate_enclave_binary)
            .context("cannot find the enclave program `strongroom-enclave`: pass --enclave")?;
        let results_url = match args.results_url {
            Some(url) => url,
            None => StorageUrl::from_path(&global.data_dir.join("results"))?,
        };
        let config = WorkerConfig {
            rpc_url: global.rpc_url()?.into(),
            contract: global.contract()?,
            operator_key: global.signer()?,
            pool: args.pool,
            enclave_binary,
            dataset_storage: match args.dataset_storage.is_empty() {
                true => vec![StorageUrl::from_path(&global.data_dir.join("objects"))?],
                false => args.dataset_storage,
            },
            platform_socket: args.platform_socket.unwrap_or_else(|| global.data_dir.join("platform.sock")),
            state_dir: global.data_dir.join("worker"),
            results_url,
            storage: global.storage()?,
            poll_interval: Duration::from_millis(200),
            start_block: args.from_block,
            concurrent_tasks: args.concurrent_tasks,
        };
        let handle = strongroom_worker::spawn(config).await?;
        eprintln!("worker serving pool {} with enclave {} (SIMULATED TEE)", args.pool, handle.enclave());
        super::until_interrupted().await?;
        handle.shutdown().await;
        Ok(())
    }
}
