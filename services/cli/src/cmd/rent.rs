use std::time::Duration;

use anyhow::bail;
use clap::Args;
use strongroom_client::MarketClient;
use strongroom_client::analyst::{Analyst, ChosenOffers, Preflight, RentOptions};
use strongroom_types::DatasetId;

use super::GlobalArgs;
use crate::units::{Amount, Epsilon};

#[derive(Debug, Args)]
pub struct RentArgs {
    /// The dataset to rent.
    pub dataset: DatasetId,
    /// The query; the dataset is the table `dataset`.
    #[arg(long)]
    pub sql: String,
    /// Privacy cost this task reserves from your budget on the dataset, e.g. 0.1.
    #[arg(long, default_value = "0")]
    pub epsilon: Epsilon,
    /// Refuse to pay more than this in total (dataset + compute); checked by the contract.
    #[arg(long)]
    pub max_price: Option<Amount>,
    /// Print the task id and return without waiting for the result.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Check the query against the dataset's licence as the enclave will, print the verdict,
    /// the keys it unlocks and what it would cost, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rent without checking the query first (the enclave still checks it, after payment).
    #[arg(long, conflicts_with = "dry_run")]
    pub no_preflight: bool,
}

impl RentArgs {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let analyst = Analyst::new(global.chain().await?, &global.data_dir, global.storage()?)?;
        let offers = analyst.choose_offers(&MarketClient::new(global.market_url()?)?, self.dataset).await?;
        if self.dry_run {
            let preflight = analyst.check(self.dataset, &self.sql, self.epsilon.0).await?;
            print_preflight(&preflight, &offers, self.epsilon, global.json)?;
            if let Err(refusal) = &preflight.verdict {
                bail!("the enclave would refuse this query: {refusal}");
            }
            return Ok(());
        }
        // A query the enclave would refuse is not paid for.
        if !self.no_preflight
            && let Err(refusal) = analyst.check(self.dataset, &self.sql, self.epsilon.0).await?.verdict
        {
            bail!(
                "not rented, nothing paid: {refusal}\n\
                 `strongroom rent --dry-run` checks a query against the licence without renting"
            );
        }
        let options =
            RentOptions { epsilon: self.epsilon.0, max_price: self.max_price.map(|a| a.0), ..Default::default() };
        let rental = analyst.rent(&offers, &self.sql, &options).await?;
        eprintln!("task {} rented for {} wei (gas {})", rental.task_id(), offers.price(), rental.rent_gas);
        if self.no_wait {
            println!("{}", rental.task_id());
            return Ok(());
        }
        let outcome = analyst.result(rental.task_id(), rental.block, Duration::from_secs(self.timeout)).await?;
        super::result::print_outcome(rental.task_id(), &outcome, global.json)
    }
}

/// The preflight's verdict, the keys it unlocks and the cost, to stdout (as JSON with `--json`).
fn print_preflight(preflight: &Preflight, offers: &ChosenOffers, epsilon: Epsilon, json: bool) -> anyhow::Result<()> {
    let (allowed, reason, rewrites, columns) = match &preflight.verdict {
        Ok(checked) => (true, None, checked.rewrites.clone(), checked.columns.clone()),
        Err(refusal) => (false, Some(refusal.to_string()), Vec::new(), Vec::new()),
    };
    let epsilon_text = format!("{}.{:06}", epsilon.0 / 1_000_000, epsilon.0 % 1_000_000);
    if json {
        let value = serde_json::json!({
            "dataset": preflight.dataset,
            "policy": preflight.policy_name,
            "allowed": allowed,
            "refusal": reason,
            "rewrites": rewrites,
            "columns": columns,
            "price_wei": offers.price().to_string(),
            "epsilon": epsilon_text,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("dry run: nothing sent, nothing paid");
    println!("dataset   {} under the licence `{}`", preflight.dataset, preflight.policy_name);
    match reason {
        Some(reason) => println!("verdict   refused\n  {reason}"),
        None => {
            println!("verdict   allowed, as the enclave will run it:");
            for rewrite in &rewrites {
                println!("  - {rewrite}");
            }
            let keys = if columns.is_empty() { "none".to_owned() } else { columns.join(", ") };
            println!("keys      {keys} (and the footer's)");
        }
    }
    println!(
        "price     {} wei (dataset {} + compute {})",
        offers.price(),
        offers.dataset_offer.price,
        offers.pool_offer.price
    );
    println!("epsilon   {epsilon_text} reserved from your budget on the dataset");
    Ok(())
}

#[derive(Debug, Args)]
pub struct BudgetArgs {
    /// The dataset.
    pub dataset: DatasetId,
    /// The analyst to look at; defaults to the acting account.
    #[arg(long)]
    pub analyst: Option<alloy::primitives::Address>,
}

impl BudgetArgs {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let chain = global.chain().await?;
        let analyst = match self.analyst {
            Some(a) => a,
            None => global.signer()?.address(),
        };
        let dataset = chain
            .dataset(self.dataset)
            .await?
            .ok_or_else(|| anyhow::anyhow!("dataset {} is not registered", self.dataset))?;
        let (spent, reserved) = chain.privacy_spend(self.dataset, analyst).await?;
        let left = dataset.privacy_budget.saturating_sub(spent.saturating_add(reserved));
        let text = |micro: u64| format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
        if global.json {
            let value = serde_json::json!({
                "dataset": self.dataset, "analyst": analyst, "budget": text(dataset.privacy_budget),
                "spent": text(spent), "reserved": text(reserved), "left": text(left),
            });
            println!("{value}");
        } else {
            println!(
                "{analyst} on dataset {}: epsilon {} spent, {} reserved by running tasks, {} left of {}",
                self.dataset,
                text(spent),
                text(reserved),
                text(left),
                text(dataset.privacy_budget)
            );
        }
        Ok(())
    }
}
