use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use strongroom_types::{PoolId, StorageUrl};
use strongroom_worker::WorkerConfig;
use strongroom_worker::journal::{Journal, Step};

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Launch the enclave, register it, and serve the pool's tasks until interrupted.
    Run(RunArgs),
    /// Show the worker's journal: its tasks by step, and the latest with their last error.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// How many of the latest tasks to list.
    #[arg(long, default_value_t = 20)]
    pub last: u64,
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
    /// How many tasks are served at once (at most 64).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=strongroom_worker::MAX_CONCURRENT_TASKS as u64))]
    pub concurrent_tasks: u64,
}

impl WorkerCommand {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let args = match self {
            Self::Run(args) => args,
            Self::Status(args) => return status(global, &args),
        };
        // A fault drill: stop serving a task at this step and wait to be killed.
        let halt_at = match std::env::var("STRONGROOM_WORKER_HALT_AT") {
            Ok(name) => Some(Step::parse(&name).with_context(|| {
                let steps: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
                format!("STRONGROOM_WORKER_HALT_AT={name} names no step: one of {}", steps.join(", "))
            })?),
            Err(_) => None,
        };
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
            concurrent_tasks: args.concurrent_tasks as usize,
            halt_at,
        };
        let handle = strongroom_worker::spawn(config).await?;
        eprintln!("worker serving pool {} with enclave {} (SIMULATED TEE)", args.pool, handle.enclave());
        super::until_interrupted().await?;
        handle.shutdown().await;
        Ok(())
    }
}

/// `strongroom worker status`: the journal of the worker of `--data-dir`, read beside it.
fn status(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<()> {
    let journal = Journal::open_read_only(&global.data_dir.join("worker").join("journal.sqlite"))?;
    let counts = journal.counts()?;
    let line: Vec<String> = counts.iter().map(|(step, n)| format!("{}={n}", step.name())).collect();
    println!("tasks: {}", line.join(" "));
    match journal.cursor()? {
        Some(block) => println!("next block: {block}"),
        None => println!("next block: none yet"),
    }
    let recent = journal.recent(args.last)?;
    if !recent.is_empty() {
        println!("{:<13}  {:>10}  {:>8}  {:<10}  last error", "step", "deadline", "failures", "task");
    }
    for entry in recent {
        println!(
            "{:<13}  {:>10}  {:>8}  {:<10}  {}",
            entry.step.name(),
            entry.deadline,
            entry.failures,
            entry.task_id,
            entry.last_error.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
