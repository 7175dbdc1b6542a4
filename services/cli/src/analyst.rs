//! The analyst's journey: rent in one transaction, wait, fetch, verify, open.

use std::time::{Duration, Instant};

use alloy::primitives::{B256, Bytes, U256, keccak256};
use anyhow::{Context, bail};
use arrow::ipc::reader::StreamReader;
use arrow::record_batch::RecordBatch;
use strongroom_chain::{Chain, Task, TaskStatus};
use strongroom_storage::Storage;
use strongroom_types::{DatasetOffer, INFO_RESULT, PoolOffer, ResultPayload, SealedBox, TaskId, X25519SecretKey, open};

pub use crate::result_keys::ResultKeys;

/// The result keys of the account `chain` acts as, on its deployment, under `data_dir`.
pub fn result_keys(data_dir: &std::path::Path, chain: &Chain) -> anyhow::Result<ResultKeys> {
    let account = chain.sender().context("renting needs an account key")?;
    Ok(ResultKeys::new(data_dir, chain.chain_id(), chain.address(), account))
}

/// A rental in flight: the task and the key only the analyst holds to read its result.
#[derive(Debug)]
pub struct Rental {
    pub task: Task,
    pub result_secret: X25519SecretKey,
    pub rent_gas: u64,
    pub block: u64,
}

impl Rental {
    pub fn task_id(&self) -> TaskId {
        self.task.id
    }
}

/// The analyst's side of a rental, besides the offers.
#[derive(Clone, Debug, Default)]
pub struct RentOptions {
    /// Privacy cost to reserve, in micro-epsilon.
    pub epsilon: u64,
    /// Refuse (on chain) to pay more than this in total; `None`: exactly the offers' prices.
    pub max_price: Option<U256>,
    /// Merkle proof that the analyst is on the offer's requester list.
    pub requester_proof: Vec<B256>,
}

/// Rents `dataset_offer` on `pool_offer` to run `sql`, paying exactly the offers' prices.
///
/// The result key is saved in `keys` before the transaction is sent, so a rental that is paid
/// can always be read, whatever happens to this process afterwards.
pub async fn rent(
    chain: &Chain,
    keys: &ResultKeys,
    dataset_offer: (&DatasetOffer, &Bytes),
    pool_offer: (&PoolOffer, &Bytes),
    sql: &str,
    options: &RentOptions,
) -> anyhow::Result<Rental> {
    let result_secret = keys.create()?;
    let value = dataset_offer.0.price + pool_offer.0.price;
    let rental = strongroom_chain::Rental {
        resultKey: result_secret.public_key().to_b256(),
        epsilon: options.epsilon,
        maxPrice: options.max_price.unwrap_or(value),
        requesterProof: options.requester_proof.clone(),
        spec: Bytes::copy_from_slice(sql.as_bytes()),
    };
    let (task, outcome) = chain
        .rent(dataset_offer.0, dataset_offer.1.clone(), pool_offer.0, pool_offer.1.clone(), &rental, value)
        .await?;
    Ok(Rental { task, result_secret, rent_gas: outcome.gas_used, block: outcome.block })
}

/// A result as the analyst reads it.
#[derive(Debug)]
pub enum Outcome {
    Table { batches: Vec<RecordBatch>, rows: u64 },
    Failed { message: String },
}

/// The published result of a task, as the contract accepted it.
#[derive(Debug)]
pub struct Published {
    pub task_id: TaskId,
    pub location: String,
    /// keccak256 of the sealed result, signed by the enclave and checked by the contract.
    pub digest: B256,
    pub failed: bool,
    pub submit_gas: u64,
}

/// Polls the chain until the task's result is published, the task is refunded, or `timeout`.
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
            return Ok(Published {
                task_id,
                location: event.location,
                digest: event.digest,
                failed: event.failed,
                submit_gas,
            });
        }
        match chain.task_status(task_id).await? {
            TaskStatus::None => bail!("task {task_id} does not exist"),
            TaskStatus::Refunded => bail!("task {task_id} was refunded without a result"),
            _ => {}
        }
        if Instant::now() > deadline {
            let task = chain.task(task_id).await?.with_context(|| format!("task {task_id} does not exist"))?;
            bail!(
                "no result for task {task_id} after {} s: is a worker serving the pool? (refundable after its deadline, {})",
                timeout.as_secs(),
                strongroom_chain::format_utc(task.params.deadline)
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Fetches the sealed result, checks it against the digest the enclave signed, and opens it.
pub async fn read_result(
    published: &Published,
    secret: &X25519SecretKey,
    storage: &Storage,
) -> anyhow::Result<Outcome> {
    let task_id = published.task_id;
    let location = &published.location;
    let sealed =
        storage.get(location).await.with_context(|| format!("fetching the sealed result of task {task_id}"))?;
    let digest = keccak256(&sealed);
    if digest != published.digest {
        bail!(
            "the result at {location} has digest {digest}, but the enclave attested {} on chain: it was altered",
            published.digest
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
