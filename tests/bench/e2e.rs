//! `make bench-e2e`: the whole flow under load on one machine. The local stack (anvil, key
//! service, market, platform daemon, one worker host), the sample dataset, and
//! `STRONGROOM_BENCH_ANALYSTS` analysts (8) renting small SQL tasks at once until
//! `STRONGROOM_BENCH_TASKS` (200) have been rented. Latency runs from sending `rent` to holding
//! the decrypted result. Prints
//! `e2e: tasks=<n> p50_ms=<ms> p95_ms=<ms> tasks_per_s=<x> gas_per_task=<n> failed=<n>`.

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
    Ok(())
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
