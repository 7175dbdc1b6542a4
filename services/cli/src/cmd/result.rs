use std::time::Duration;

use anyhow::bail;
use arrow::util::pretty::pretty_format_batches;
use clap::{Args, Subcommand};
use strongroom_types::{Outcome as AttestedOutcome, TaskId};

use super::GlobalArgs;
use strongroom_client::analyst::{Analyst, Outcome};

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
        let analyst = Analyst::new(global.chain().await?, &global.data_dir, global.storage()?)?;
        let outcome = analyst.result(args.task, 0, Duration::from_secs(args.timeout)).await?;
        print_outcome(args.task, &outcome, global.json)
    }
}

pub(crate) fn print_outcome(task: TaskId, outcome: &Outcome, json: bool) -> anyhow::Result<()> {
    match outcome {
        Outcome::Table { batches, rows, licence } => {
            if json {
                let mut writer = arrow::json::ArrayWriter::new(Vec::new());
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
                println!("{}", String::from_utf8_lossy(&writer.into_inner()));
            } else {
                println!("{}", pretty_format_batches(batches)?);
                for line in licence {
                    eprintln!("licence: {line}");
                }
                eprintln!("task {task}: {rows} rows, verified against the enclave's signed digest");
            }
            Ok(())
        }
        Outcome::Failed { message, settled, .. } => {
            let settlement = match settled {
                AttestedOutcome::Failed => {
                    "it failed while running on the data, so it is paid and its epsilon (if any) spent: \
                     a failure can tell something of the data"
                }
                AttestedOutcome::HostFault => {
                    "the worker did not relay what the chain pins, so nobody is paid: every price is back \
                     in your balance (`strongroom withdraw` collects it) and its epsilon (if any) in your budget"
                }
                _ => {
                    "it was refused before reading the data: the dataset price is back in your balance \
                     (`strongroom withdraw` collects it) and its epsilon (if any) in your budget"
                }
            };
            bail!("task {task} failed inside the enclave (attested): {message}\n{settlement}")
        }
    }
}
