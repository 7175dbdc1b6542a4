use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::util::pretty::pretty_format_batches;
use clap::Args;

use super::GlobalArgs;
use crate::analyst::{self, Outcome, RentOptions};
use crate::devnet::{Devnet, DevnetOptions, analyst_key, owner_key};
use crate::owner::{self, OfferTerms, PublishRequest};
use crate::units::parse_amount;

/// The sample dataset and policy shipped in the repository.
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/customers.csv");
const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/aggregate-only.toml");
pub const DEMO_SQL: &str = "SELECT region, COUNT(*) AS customers, ROUND(AVG(monthly_spend), 2) AS avg_monthly_spend \
                            FROM dataset GROUP BY region ORDER BY region";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Dataset to publish (defaults to the sample in datasets/).
    #[arg(long, default_value = SAMPLE)]
    pub input: PathBuf,
    /// Licence policy (defaults to policies/aggregate-only.toml).
    #[arg(long, default_value = POLICY)]
    pub policy: PathBuf,
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
        let devnet = Devnet::start(DevnetOptions::new(dir.path(), enclave)).await?;
        let result = play(&devnet, &self).await;
        devnet.shutdown().await;
        let line = result?;
        println!("{line}");
        Ok(())
    }
}

/// Owner publishes, analyst rents and reads; returns the closing `demo: ok …` line.
async fn play(devnet: &Devnet, args: &DemoArgs) -> anyhow::Result<String> {
    let owner_chain = devnet.chain_as(owner_key()).await?;
    let request = PublishRequest {
        input: args.input.clone(),
        policy: args.policy.clone(),
        terms: OfferTerms::sql(parse_amount("0.01ether")?, Duration::from_secs(86_400)),
        privacy_budget: 10_000_000,
        storage_url: devnet.objects_url.clone(),
        storage: devnet.options.storage.clone(),
        kms_url: devnet.kms.url(),
        market_url: devnet.market.url(),
        salt: None,
        backup: crate::backup::KeyBackup::new(&devnet.options.data_dir.join("owner")),
        schema: None,
        layout: Default::default(),
        progress: None,
    };
    let published = owner::publish(&owner_chain, &owner_key(), &request).await.context("owner: publishing")?;
    eprintln!(
        "owner: published dataset {} ({} rows, {} columns, each under its own key)",
        published.dataset,
        published.manifest.rows,
        published.manifest.columns.len()
    );

    let analyst_chain = devnet.chain_as(analyst_key()).await?;
    eprintln!("analyst: renting with SQL: {}", args.sql);
    let started = Instant::now();
    let keys = analyst::result_keys(&devnet.options.data_dir.join("analyst"), &analyst_chain)?;
    let rental = analyst::rent(
        &analyst_chain,
        &keys,
        (&published.offer, &published.offer_signature),
        (&devnet.pool_offer, &devnet.pool_offer_signature),
        &args.sql,
        &RentOptions { epsilon: 100_000, ..Default::default() },
    )
    .await?;
    let result =
        analyst::wait_for_result(&analyst_chain, rental.task_id(), rental.block, Duration::from_secs(60)).await?;
    let outcome = analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await?;
    let latency = started.elapsed();
    match outcome {
        Outcome::Table { batches, rows } => {
            println!("{}", pretty_format_batches(&batches)?);
            Ok(format!(
                "demo: ok task={} rows={rows} latency_ms={} gas={}",
                rental.task_id(),
                latency.as_millis(),
                rental.rent_gas + result.submit_gas
            ))
        }
        Outcome::Failed { message } => bail!("the task failed inside the enclave: {message}"),
    }
}
