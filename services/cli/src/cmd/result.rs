use std::time::Duration;

use anyhow::{Context, bail};
use arrow::util::pretty::pretty_format_batches;
use clap::{Args, Subcommand};
use strongroom_types::TaskId;

use super::GlobalArgs;
use strongroom_client::analyst::{self, Outcome};

#[derive(Debug, Subcommand)]
pub enum ResultCommand {
    /// Wait for a task's result, check its digest against the chain, decrypt and print it.
    Get(GetArgs),
}

#[derive(Debug, Args)]
pub struct GetArgs {
    pub task: TaskId,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

impl ResultCommand {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let Self::Get(args) = self;
        let chain = global.chain().await?;
        let task = chain.task(args.task).await?.with_context(|| format!("task {} does not exist", args.task))?;
        let secret = analyst::result_keys(&global.data_dir, &chain)?.find(args.task, task.params.resultKey)?;
        let published = analyst::wait_for_result(&chain, args.task, 0, Duration::from_secs(args.timeout)).await?;
        let outcome = analyst::read_result(&published, &secret, &global.storage()?).await?;
        print_outcome(args.task, &outcome, global.json)
    }
}

pub(crate) fn print_outcome(task: TaskId, outcome: &Outcome, json: bool) -> anyhow::Result<()> {
    match outcome {
        Outcome::Table { batches, rows } => {
            if json {
                let mut writer = arrow::json::ArrayWriter::new(Vec::new());
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
                println!("{}", String::from_utf8_lossy(&writer.into_inner()));
            } else {
                println!("{}", pretty_format_batches(batches)?);
                eprintln!("task {task}: {rows} rows, verified against the enclave's signed digest");
            }
            Ok(())
        }
        Outcome::Failed { message, .. } => bail!(
            "task {task} failed inside the enclave (attested): {message}\n\
             the dataset price was returned to your balance: `strongroom withdraw` collects it"
        ),
    }
}
