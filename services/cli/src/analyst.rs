//! The analyst's journey: rent in one transaction, wait, fetch, verify, open.

use std::time::{Duration, Instant};

use alloy::primitives::{B256, Bytes, U256, keccak256};
use anyhow::{Context, bail};
use arrow::ipc::reader::StreamReader;
use arrow::record_batch::RecordBatch;
use strongroom_chain::{Chain, TaskStatus};
use strongroom_types::{DatasetOffer, INFO_RESULT, PoolOffer, ResultPayload, SealedBox, TaskId, X25519SecretKey, open};
use strongroom_worker::storage;

/// A rental in flight: the task and the key only the analyst holds to read its result.
#[derive(Debug)]
pub struct Rental {
    pub task_id: TaskId,
    pub result_secret: X25519SecretKey,
    pub rent_gas: u64,
    pub block: u64,
}

/// Rents `dataset_offer` on `pool_offer` to run `sql`, paying exactly both prices.
pub async fn rent(
    chain: &Chain,
    dataset_offer: (&DatasetOffer, &Bytes),
    pool_offer: (&PoolOffer, &Bytes),
    sql: &str,
) -> anyhow::Result<Rental> {
    let result_secret = X25519SecretKey::generate();
    let value = dataset_offer.0.price + pool_offer.0.price;
    let (task_id, outcome) = chain
        .rent(
            dataset_offer.0,
            dataset_offer.1.clone(),
            pool_offer.0,
            pool_offer.1.clone(),
            result_secret.public_key().to_b256(),
            sql,
            value,
        )
        .await?;
    Ok(Rental { task_id, result_secret, rent_gas: outcome.gas_used, block: outcome.block })
}

/// A result as the analyst reads it.
#[derive(Debug)]
pub enum Outcome {
    Table { batches: Vec<RecordBatch>, rows: u64 },
    Failed { message: String },
}

/// The published result of a task.
#[derive(Debug)]
pub struct Published {
    pub location: String,
    pub failed: bool,
    pub submit_gas: u64,
}

/// Polls the chain until the task's result is published, the task settles otherwise, or `timeout`.
pub async fn wait_for_result(
    chain: &Chain,
    task_id: TaskId,
    from_block: u64,
    timeout: Duration,
) -> anyhow::Result<Published> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(event) = chain.result_submitted(task_id, from_block).await? {
            let submit_gas = chain.receipt_gas(event.tx_hash).await?;
            return Ok(Published { location: event.location, failed: event.failed, submit_gas });
        }
        let task = chain.task(task_id).await?;
        if task.status == TaskStatus::Refunded {
            bail!("task {task_id} was refunded without a result");
        }
        if Instant::now() > deadline {
            bail!(
                "no result for task {task_id} after {} s: is a worker serving the pool? (refundable after its deadline, unix time {})",
                timeout.as_secs(),
                task.deadline
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Fetches the sealed result, checks it against the digest on chain, and opens it.
pub async fn read_result(
    chain: &Chain,
    task_id: TaskId,
    location: &str,
    secret: &X25519SecretKey,
) -> anyhow::Result<Outcome> {
    let task = chain.task(task_id).await?;
    let sealed =
        storage::get(location).await.with_context(|| format!("fetching the sealed result of task {task_id}"))?;
    let digest = keccak256(&sealed);
    if digest != task.result_digest || task.result_digest == B256::ZERO {
        bail!(
            "the result at {location} has digest {digest}, but the enclave attested {} on chain: it was altered",
            task.result_digest
        );
    }
    let plaintext = open(secret, INFO_RESULT, &task_id.to_be_bytes::<32>(), &SealedBox(sealed.to_vec()), "result")?;
    let payload: ResultPayload = serde_json::from_slice(&plaintext).context("the result payload is malformed")?;
    Ok(match payload {
        ResultPayload::Table { arrow_ipc, rows } => {
            let reader = StreamReader::try_new(std::io::Cursor::new(arrow_ipc.to_vec()), None)?;
            let batches = reader.collect::<Result<Vec<_>, _>>()?;
            Outcome::Table { batches, rows }
        }
        ResultPayload::Failed { message } => Outcome::Failed { message },
    })
}

/// The total price of a rental, for display.
pub fn total_price(dataset_offer: &DatasetOffer, pool_offer: &PoolOffer) -> U256 {
    dataset_offer.price + pool_offer.price
}
