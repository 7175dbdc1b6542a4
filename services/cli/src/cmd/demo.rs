use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::util::pretty::pretty_format_batches;
use clap::Args;

use super::GlobalArgs;
use strongroom_client::analyst::{self, Outcome, RentOptions};
use strongroom_client::owner::{OfferTerms, PublishRequest};
use strongroom_devnet::{Devnet, DevnetOptions, analyst_key};

/// The sample dataset and policy of the repository, carried inside the binary: the demo runs
/// wherever the binary is, not only beside the checkout it was built in.
const SAMPLE_CSV: &str = include_str!("../../../../datasets/customers.csv");
const SAMPLE_POLICY: &str = include_str!("../../../../policies/aggregate-with-threshold.toml");
pub const DEMO_SQL: &str = "SELECT region, COUNT(*) AS customers, ROUND(AVG(monthly_spend), 2) AS avg_monthly_spend \
                            FROM dataset GROUP BY region ORDER BY region";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Dataset to publish (default: the sample customers.csv the binary carries).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Licence policy (default: the sample aggregate-with-threshold.toml the binary carries).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The analyst's query.
    #[arg(long, default_value = DEMO_SQL)]
    pub sql: String,
    /// The enclave program; defaults to `strongroom-enclave` beside this binary.
    #[arg(long, env = "STRONGROOM_ENCLAVE")]
    pub enclave: Option<PathBuf>,
}

impl DemoArgs {
    pub async fn run(self, _global: &GlobalArgs) -> anyhow::Result<()> {
        let enclave = self.enclave.clone().or_else(strongroom_worker::locate_enclave_binary).context(
            "cannot find the enclave program `strongroom-enclave`: run `cargo build --bins` or pass --enclave",
        )?;
        let dir = tempfile::tempdir().context("creating a scratch directory")?;
        eprintln!(
            "demo: starting anvil, contract, key service, market and worker (SIMULATED TEE) in {}",
            dir.path().display()
        );
        let input = match &self.input {
            Some(path) => path.clone(),
            None => write_sample(dir.path(), "customers.csv", SAMPLE_CSV)?,
        };
        let policy = match &self.policy {
            Some(path) => path.clone(),
            None => write_sample(dir.path(), "aggregate-with-threshold.toml", SAMPLE_POLICY)?,
        };
        let devnet = Devnet::start(DevnetOptions::new(dir.path(), enclave)).await?;
        let result = play(&devnet, &input, &policy, &self.sql).await;
        devnet.shutdown().await;
        let line = result?;
        println!("{line}");
        Ok(())
    }
}

fn write_sample(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing the sample {}", path.display()))?;
    Ok(path)
}

/// Owner publishes, analyst rents and reads; returns the closing `demo: ok …` line.
async fn play(devnet: &Devnet, input: &Path, policy: &Path, sql: &str) -> anyhow::Result<String> {
    let price = alloy::primitives::U256::from(10_000_000_000_000_000u64);
    let request =
        PublishRequest::new(input, policy, price, &devnet.objects_url, &devnet.kms.url(), &devnet.market.url())
            .with_terms(OfferTerms::sql(price, Duration::from_secs(86_400)));
    let published = devnet.owner().await?.publish(&request).await.context("owner: publishing")?;
    eprintln!(
        "owner: published dataset {} ({} rows, {} columns, each under its own key)",
        published.dataset,
        published.manifest.rows,
        published.manifest.columns.len()
    );

    let analyst_chain = devnet.chain_as(analyst_key()).await?;
    eprintln!("analyst: renting with SQL: {sql}");
    let started = Instant::now();
    let keys = analyst::result_keys(&devnet.options.data_dir.join("analyst"), &analyst_chain)?;
    let rental = analyst::rent(
        &analyst_chain,
        &keys,
        (&published.offer, &published.offer_signature),
        (&devnet.pool_offer, &devnet.pool_offer_signature),
        sql,
        &RentOptions { epsilon: 100_000, ..Default::default() },
    )
    .await?;
    let result =
        analyst::wait_for_result(&analyst_chain, rental.task_id(), rental.block, Duration::from_secs(60)).await?;
    let outcome = analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await?;
    let latency = started.elapsed();
    match outcome {
        Outcome::Table { batches, rows, .. } => {
            println!("{}", pretty_format_batches(&batches)?);
            Ok(format!(
                "demo: ok task={} rows={rows} latency_ms={} gas={}",
                rental.task_id(),
                latency.as_millis(),
                rental.rent_gas + result.submit_gas
            ))
        }
        Outcome::Failed { message, .. } => bail!("the task failed inside the enclave: {message}"),
    }
}
