//! `make bench-e2e`: the whole flow under load on one machine. The local stack (anvil, key
//! service, market, platform daemon, one worker host), the sample dataset, and
//! `STRONGROOM_BENCH_ANALYSTS` analysts (8) renting small SQL tasks at once until
//! `STRONGROOM_BENCH_TASKS` (200) have been rented. Latency runs from sending `rent` to holding
//! the decrypted result. Prints
//! `e2e: tasks=<n> p50_ms=<ms> p95_ms=<ms> tasks_per_s=<x> gas_per_task=<n> failed=<n>`.
//!
//! Then the key service alone, on a second stack without a worker: an enclave of the pool's
//! asks for the keys of `STRONGROOM_BENCH_RELEASES` (100) fresh tasks, 16 at a time, first with
//! those alone on chain and again once `STRONGROOM_BENCH_CHAIN_TASKS` (10,000) are. Prints
//! `kms: releases_per_s=<x> p95_ms=<ms> tasks_on_chain=<n>` for each: a release reads the chain's
//! state and the key service's index, never its logs, so the two should match.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use strongroom_client::analyst::{self, Outcome, RentOptions};

const SQL: &str = "SELECT region, COUNT(*) AS n FROM dataset GROUP BY region";

/// One task as an analyst saw it: how long it took and what it cost, or why it failed.
type Run = Result<(Duration, u64), String>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let analysts = from_env("STRONGROOM_BENCH_ANALYSTS", 8);
    let tasks = from_env("STRONGROOM_BENCH_TASKS", 200);
    let (dir, devnet) = strongroom_e2e::devnet(true).await;
    let devnet = Arc::new(devnet);
    let published = Arc::new(strongroom_e2e::publish_sample(&devnet).await);

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut running = Vec::new();
    for n in 0..analysts {
        let signer = PrivateKeySigner::random();
        set_balance(devnet.rpc_url(), signer.address(), U256::from(10u64).pow(U256::from(21))).await?;
        let chain = devnet.chain_as(signer).await?;
        let keys = analyst::result_keys(&dir.path().join(format!("analyst-{n}")), &chain)?;
        let (devnet, published, next) = (devnet.clone(), published.clone(), next.clone());
        running.push(tokio::spawn(async move {
            let mut runs: Vec<Run> = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < tasks {
                runs.push(one_task(&devnet, &chain, &keys, &published).await);
            }
            runs
        }));
    }
    let mut runs = Vec::new();
    for analyst in running {
        runs.extend(analyst.await?);
    }
    let wall = started.elapsed();

    let mut latencies: Vec<Duration> = runs.iter().filter_map(|r| r.as_ref().ok().map(|(d, _)| *d)).collect();
    latencies.sort();
    let failures: Vec<&String> = runs.iter().filter_map(|r| r.as_ref().err()).collect();
    let gas: Vec<u64> = runs.iter().filter_map(|r| r.as_ref().ok().map(|(_, g)| *g)).collect();
    for failure in failures.iter().take(3) {
        eprintln!("a task failed: {failure}");
    }
    let quantile = |q: f64| {
        latencies.get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)).map_or(0, |d| d.as_millis())
    };
    println!(
        "e2e: tasks={} p50_ms={} p95_ms={} tasks_per_s={:.1} gas_per_task={} failed={}",
        runs.len(),
        quantile(0.50),
        quantile(0.95),
        latencies.len() as f64 / wall.as_secs_f64(),
        gas.iter().sum::<u64>().checked_div(gas.len() as u64).unwrap_or(0),
        failures.len(),
    );
    match Arc::try_unwrap(devnet) {
        Ok(devnet) => devnet.shutdown().await,
        Err(_) => unreachable!("every analyst has finished"),
    }
    key_release_load(from_env("STRONGROOM_BENCH_RELEASES", 100), from_env("STRONGROOM_BENCH_CHAIN_TASKS", 10_000)).await
}

/// Releases of fresh tasks' keys with few tasks on chain, then with many.
async fn key_release_load(releases: usize, chain_tasks: usize) -> anyhow::Result<()> {
    let (_dir, devnet) = strongroom_e2e::devnet_with(|options| {
        options.with_worker = false;
        // Every task locks the pool price of the stake until it settles.
        options.pool_stake = U256::from(10u64).pow(U256::from(21));
    })
    .await;
    let mut terms = strongroom_client::owner::OfferTerms::sql(
        U256::from(1_000_000_000_000u64),
        strongroom_e2e::SAMPLE_OFFER_VALIDITY,
    );
    terms.volume = (chain_tasks + 2 * releases) as u64 * 2;
    let published = strongroom_e2e::publish_with(&devnet, terms, 1_000_000).await;
    let enclave = strongroom_e2e::registered_enclave(&devnet).await;
    let renters = 8;
    let mut chains = Vec::new();
    for _ in 0..renters {
        let signer = PrivateKeySigner::random();
        set_balance(devnet.rpc_url(), signer.address(), U256::from(10u64).pow(U256::from(22))).await?;
        chains.push(devnet.chain_as(signer).await?);
    }
    // First with only the tasks released on chain, then with the chain grown by others.
    let fresh = rent_many(&devnet, &published, &chains, releases).await?;
    release_all(&devnet, &chains[0], &enclave, &fresh, fresh.len()).await;
    let filler = rent_many(&devnet, &published, &chains, chain_tasks.saturating_sub(2 * releases)).await?;
    let fresh = rent_many(&devnet, &published, &chains, releases).await?;
    release_all(&devnet, &chains[0], &enclave, &fresh, 2 * releases + filler.len()).await;
    devnet.shutdown().await;
    Ok(())
}

/// Rents `count` tasks, spread over the renters' accounts (each sends one transaction at a time).
async fn rent_many(
    devnet: &strongroom_devnet::Devnet,
    published: &strongroom_client::owner::Published,
    chains: &[strongroom_chain::Chain],
    count: usize,
) -> anyhow::Result<Vec<U256>> {
    let next = AtomicUsize::new(0);
    let pool_offer = devnet.pool_offer_for(published_kms_key(devnet));
    let value = published.offer.price + pool_offer.0.price;
    let rental = strongroom_chain::Rental {
        resultKey: alloy::primitives::B256::repeat_byte(1),
        epsilon: 0,
        maxPrice: value,
        requesterProof: Vec::new(),
        spec: SQL.as_bytes().to_vec().into(),
    };
    let per_renter = futures::future::try_join_all(chains.iter().map(|chain| {
        let (next, rental) = (&next, &rental);
        async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let (task, _) = chain
                    .rent(
                        &published.offer,
                        published.offer_signature.clone(),
                        pool_offer.0,
                        pool_offer.1.clone(),
                        rental,
                        value,
                    )
                    .await?;
                ids.push(task.id);
            }
            Ok::<_, anyhow::Error>(ids)
        }
    }))
    .await?;
    Ok(per_renter.into_iter().flatten().collect())
}

/// Asks for the keys of every task in `tasks`, 16 at a time, and prints the `kms:` line.
async fn release_all(
    devnet: &strongroom_devnet::Devnet,
    chain: &strongroom_chain::Chain,
    enclave: &PrivateKeySigner,
    tasks: &[U256],
    on_chain: usize,
) {
    use futures::StreamExt;
    let operator = strongroom_devnet::operator_key();
    let started = Instant::now();
    let mut runs: Vec<(Duration, bool)> = futures::stream::iter(tasks)
        .map(|task| {
            let operator = &operator;
            async move {
                let task_key = strongroom_types::X25519SecretKey::generate().public_key();
                let asked = Instant::now();
                let (status, _) =
                    strongroom_e2e::request_release(devnet, chain, *task, enclave, operator, task_key).await;
                (asked.elapsed(), status == 200)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let wall = started.elapsed();
    let failed = runs.iter().filter(|(_, ok)| !ok).count();
    runs.sort();
    let p95 = runs.get((runs.len() * 95).div_ceil(100).saturating_sub(1)).map_or(0, |(d, _)| d.as_millis());
    println!(
        "kms: releases_per_s={:.0} p95_ms={p95} tasks_on_chain={on_chain} failed={failed}",
        runs.len() as f64 / wall.as_secs_f64()
    );
}

/// Rents one task, waits for its result and decrypts it.
async fn one_task(
    devnet: &strongroom_devnet::Devnet,
    chain: &strongroom_chain::Chain,
    keys: &strongroom_client::ResultKeys,
    published: &strongroom_client::owner::Published,
) -> Run {
    let started = Instant::now();
    let offer = (&published.offer, &published.offer_signature);
    let rental = analyst::rent(
        chain,
        keys,
        offer,
        devnet.pool_offer_for(published_kms_key(devnet)),
        SQL,
        &RentOptions::default(),
    )
    .await
    .map_err(|e| format!("rent: {e}"))?;
    let result = analyst::wait_for_result(chain, rental.task_id(), rental.task.block, Duration::from_secs(120))
        .await
        .map_err(|e| format!("task {}: {e}", rental.task_id()))?;
    match analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await {
        Ok(Outcome::Table { rows, .. }) if rows > 0 => Ok((started.elapsed(), rental.rent_gas + result.submit_gas)),
        Ok(Outcome::Table { .. }) => Err(format!("task {}: an empty result", rental.task_id())),
        Ok(Outcome::Failed { message, .. }) => Err(format!("task {}: {message}", rental.task_id())),
        Err(e) => Err(format!("task {}: reading the result: {e}", rental.task_id())),
    }
}

/// The key service the sample dataset names: the devnet's own.
fn published_kms_key(devnet: &strongroom_devnet::Devnet) -> alloy::primitives::B256 {
    devnet.kms.info().public_key.to_b256()
}

fn from_env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Funds an analyst account on anvil.
async fn set_balance(rpc_url: &str, account: Address, wei: U256) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance", "params": [account, format!("{wei:#x}")]
    });
    let reply: serde_json::Value = reqwest::Client::new().post(rpc_url).json(&body).send().await?.json().await?;
    anyhow::ensure!(reply.get("error").is_none(), "anvil_setBalance: {reply}");
    Ok(())
}
