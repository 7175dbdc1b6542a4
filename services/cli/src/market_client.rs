//! A small client of the market's HTTP API.

use std::time::Duration;

use anyhow::{Context, bail};
use strongroom_types::{DatasetId, PostOfferRequest, SignedOffer};

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?)
}

async fn check(response: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    bail!("market refused to {what} ({status}): {}", body["message"].as_str().unwrap_or("no message"))
}

pub async fn post_offer(market: &str, request: &PostOfferRequest) -> anyhow::Result<SignedOffer> {
    let url = format!("{}/v1/offers", market.trim_end_matches('/'));
    let response = client()?
        .post(&url)
        .json(request)
        .send()
        .await
        .with_context(|| format!("market at {market} is unreachable"))?;
    Ok(check(response, "list the offer").await?.json().await?)
}

pub async fn dataset_offers(market: &str, dataset: DatasetId) -> anyhow::Result<Vec<SignedOffer>> {
    let url = format!("{}/v1/datasets/{dataset}/offers", market.trim_end_matches('/'));
    let response = client()?.get(&url).send().await.with_context(|| format!("market at {market} is unreachable"))?;
    Ok(check(response, "list dataset offers").await?.json().await?)
}

pub async fn pool_offers(market: &str) -> anyhow::Result<Vec<SignedOffer>> {
    let url = format!("{}/v1/pools/offers", market.trim_end_matches('/'));
    let response = client()?.get(&url).send().await.with_context(|| format!("market at {market} is unreachable"))?;
    Ok(check(response, "list pool offers").await?.json().await?)
}
