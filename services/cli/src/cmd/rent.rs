use std::time::Duration;

use clap::Args;
use strongroom_client::MarketClient;
use strongroom_client::analyst::{Analyst, RentOptions};
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
}

impl RentArgs {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let analyst = Analyst::new(global.chain().await?, &global.data_dir, global.storage()?)?;
        let offers = analyst.choose_offers(&MarketClient::new(global.market_url()?)?, self.dataset).await?;
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
