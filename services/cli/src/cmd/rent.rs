use std::time::Duration;

use alloy::primitives::U256;
use anyhow::{Context, bail};
use clap::Args;
use strongroom_types::{DatasetId, SignedOffer};

use super::GlobalArgs;
use crate::units::parse_amount;
use crate::{analyst, market_client};

#[derive(Debug, Args)]
pub struct RentArgs {
    /// The dataset to rent.
    pub dataset: DatasetId,
    /// The query; the dataset is the table `dataset`.
    #[arg(long)]
    pub sql: String,
    /// Refuse to pay more than this in total (dataset + compute).
    #[arg(long)]
    pub max_price: Option<String>,
    /// Print the task id and return without waiting for the result.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

impl RentArgs {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let chain = global.chain().await?;
        let market = global.market_url()?;
        let now = chain.block_timestamp().await?;
        let offers = market_client::dataset_offers(market, self.dataset).await?;
        let dataset_offer = offers
            .iter()
            .filter_map(|o| match o {
                SignedOffer::Dataset { offer, signature, .. } if offer.validUntil >= now => Some((offer, signature)),
                _ => None,
            })
            .min_by_key(|(o, _)| o.price)
            .with_context(|| format!("the market lists no valid offer for dataset {}", self.dataset))?;
        let pools = market_client::pool_offers(market).await?;
        let pool_offer = pools
            .iter()
            .filter_map(|o| match o {
                SignedOffer::Pool { offer, signature, .. } => Some((offer, signature)),
                _ => None,
            })
            .min_by_key(|(o, _)| o.price)
            .context("the market lists no compute pool")?;
        let total = dataset_offer.0.price + pool_offer.0.price;
        if let Some(max) = &self.max_price {
            let max: U256 = parse_amount(max)?;
            if total > max {
                bail!("the cheapest rental costs {total} wei, above your maximum of {max} wei");
            }
        }
        let rental = analyst::rent(&chain, dataset_offer, pool_offer, &self.sql).await?;
        super::result::save_result_key(&global.data_dir, rental.task_id, &rental.result_secret)?;
        eprintln!("task {} rented for {total} wei (gas {})", rental.task_id, rental.rent_gas);
        if self.no_wait {
            println!("{}", rental.task_id);
            return Ok(());
        }
        let published =
            analyst::wait_for_result(&chain, rental.task_id, rental.block, Duration::from_secs(self.timeout)).await?;
        let outcome = analyst::read_result(&chain, rental.task_id, &published.location, &rental.result_secret).await?;
        super::result::print_outcome(rental.task_id, &outcome, global.json)
    }
}
