use std::time::Duration;

use alloy::primitives::{Address, Bytes};
use anyhow::Context;
use clap::Args;
use strongroom_chain::RequesterTree;
use strongroom_types::{DatasetId, DatasetOffer, SignedOffer};

use super::GlobalArgs;
use crate::analyst::{self, RentOptions};
use crate::market_client;
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

/// The offer to use: the cheapest one this analyst can use now; failing that, the newest one,
/// so that the contract says why it cannot be used.
fn choose_offer(offers: &[SignedOffer], analyst: Address, now: u64) -> Option<(&DatasetOffer, &Bytes, &[Address])> {
    let dataset_offers: Vec<_> = offers
        .iter()
        .filter_map(|o| match o {
            SignedOffer::Dataset { offer, signature, requesters, .. } => {
                Some((offer, signature, requesters.as_slice()))
            }
            _ => None,
        })
        .collect();
    let usable = |(o, _, list): &(&DatasetOffer, &Bytes, &[Address])| {
        o.validFrom <= now
            && now <= o.validUntil
            && (o.requester.is_zero() || o.requester == analyst)
            && (o.requesterRoot.is_zero() || list.contains(&analyst))
    };
    dataset_offers.iter().filter(|o| usable(o)).min_by_key(|(o, _, _)| o.price).or(dataset_offers.first()).copied()
}

impl RentArgs {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let chain = global.chain().await?;
        let analyst = global.signer()?.address();
        let market = global.market_url()?;
        let now = chain.block_timestamp().await?;
        let offers = market_client::dataset_offers(market, self.dataset).await?;
        let (dataset_offer, signature, requesters) = choose_offer(&offers, analyst, now)
            .with_context(|| format!("the market lists no offer for dataset {}", self.dataset))?;
        let pools = market_client::pool_offers(market).await?;
        let pool_offer = pools
            .iter()
            .filter_map(|o| match o {
                SignedOffer::Pool { offer, signature, .. } => Some((offer, signature)),
                _ => None,
            })
            .filter(|(o, _)| dataset_offer.pool.is_zero() || o.pool == dataset_offer.pool)
            .min_by_key(|(o, _)| o.price)
            .context("the market lists no compute pool this licence allows")?;
        let requester_proof = RequesterTree::new(requesters).and_then(|t| t.proof(analyst)).unwrap_or_default();
        let options = RentOptions { epsilon: self.epsilon.0, max_price: self.max_price.map(|a| a.0), requester_proof };
        let keys = analyst::result_keys(&global.data_dir, &chain)?;
        let rental = analyst::rent(&chain, &keys, (dataset_offer, signature), pool_offer, &self.sql, &options).await?;
        eprintln!(
            "task {} rented for {} wei (gas {})",
            rental.task_id(),
            dataset_offer.price + pool_offer.0.price,
            rental.rent_gas
        );
        if self.no_wait {
            println!("{}", rental.task_id());
            return Ok(());
        }
        let published =
            analyst::wait_for_result(&chain, rental.task_id(), rental.block, Duration::from_secs(self.timeout)).await?;
        let outcome = analyst::read_result(&published, &rental.result_secret, &global.storage()?).await?;
        super::result::print_outcome(rental.task_id(), &outcome, global.json)
    }
}
