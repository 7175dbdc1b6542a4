//! The analyst's journey: rent in one transaction, wait, fetch, verify, open.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use arrow::ipc::reader::StreamReader;
use arrow::record_batch::RecordBatch;
use strongroom_chain::{Chain, RequesterTree, Task, TaskStatus};
use strongroom_storage::Storage;
use strongroom_types::{
    DatasetId, DatasetOffer, FailureCode, INFO_RESULT, Outcome as AttestedOutcome, PoolOffer, ReleaseReceipt,
    ResultPayload, SealedBox, SignedOffer, StorageUrl, TaskId, X25519SecretKey, open,
};

use strongroom_dataplane::{ColumnEntry, Manifest};
use strongroom_policy::{Checked, Refusal, check_on_schema};
use strongroom_types::{ManifestDigest, Policy};

use crate::{ClientError, KmsClient, Result, ResultKeys};

/// The result keys of the account `chain` acts as, on its deployment, under `data_dir`.
pub fn result_keys(data_dir: &std::path::Path, chain: &Chain) -> Result<ResultKeys> {
    let account = chain.sender().ok_or_else(|| ClientError::Input("renting needs an account key".into()))?;
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
) -> Result<Rental> {
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

/// What the enclave will decide about a query, found before paying: the same checker, on the
/// dataset's schema (from its manifest, checked against the chain's digest) and its licence
/// (from its key service, checked against the chain's policy hash).
#[derive(Debug)]
pub struct Preflight {
    pub dataset: DatasetId,
    /// The name the licence gives itself.
    pub policy_name: String,
    /// The rewritten query with the columns whose keys it will ask for, or why it cannot run.
    pub verdict: std::result::Result<Checked, Refusal>,
}

/// Runs the licence checker on `sql` for `dataset` as the enclave will, with no transaction.
/// `epsilon` is what the task would reserve, in micro-epsilon.
pub async fn preflight(
    chain: &Chain,
    storage: &Storage,
    dataset: DatasetId,
    sql: &str,
    epsilon: u64,
) -> Result<Preflight> {
    let record = chain
        .dataset(dataset)
        .await?
        .ok_or_else(|| ClientError::Input(format!("dataset {dataset} is not registered")))?;
    let uri = StorageUrl::parse(&record.uri)
        .map_err(|e| ClientError::Corrupt(format!("dataset {dataset} registers a bad manifest URI: {e}")))?;
    let stored = storage.get_at_most(&uri, Manifest::MAX_STORED_BYTES as u64).await?;
    let found = ManifestDigest::of(&stored);
    if found != record.manifest_digest {
        return Err(ClientError::Corrupt(format!(
            "the manifest at {uri} has digest {found}, not {}, the one dataset {dataset} registers",
            record.manifest_digest
        )));
    }
    let manifest = Manifest::parse(&stored, dataset)
        .map_err(|e| ClientError::Corrupt(format!("the manifest dataset {dataset} registers {e}")))?;
    let policy = KmsClient::new(&record.kms_url)?.policy(record.policy_hash).await?;
    let policy = Policy::parse(&policy)
        .map_err(|e| ClientError::Corrupt(format!("dataset {dataset}'s licence policy does not parse: {e}")))?;
    let schema = ColumnEntry::arrow_schema(&manifest.columns)
        .map_err(|e| ClientError::Corrupt(format!("dataset {dataset}'s manifest has a bad column type: {e}")))?;
    let verdict = check_on_schema(schema, sql, &policy, Some(epsilon)).await;
    Ok(Preflight { dataset, policy_name: policy.name, verdict })
}

/// A result as the analyst reads it.
#[derive(Debug)]
pub enum Outcome {
    Table {
        batches: Vec<RecordBatch>,
        rows: u64,
        /// What the licence did to the query, as the enclave attests it.
        licence: Vec<String>,
    },
    /// An attested failure: its stable code, what went wrong in words, and how the contract
    /// settled it (`Refused` gave the price and epsilon back, `Failed` was paid and spent it).
    Failed { code: FailureCode, message: String, settled: AttestedOutcome },
}

/// The published result of a task, as the contract accepted it.
#[derive(Debug)]
pub struct Published {
    pub task_id: TaskId,
    pub location: StorageUrl,
    /// keccak256 of the sealed result, signed by the enclave and checked by the contract.
    pub digest: B256,
    /// What the enclave attested, and the contract settled the task by.
    pub outcome: AttestedOutcome,
    pub submit_gas: u64,
}

/// Polls the chain until the task's result is published, the task is refunded, or `timeout`.
pub async fn wait_for_result(chain: &Chain, task_id: TaskId, from_block: u64, timeout: Duration) -> Result<Published> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(event) = chain.result_submitted(task_id, from_block).await? {
            let outcome = event.outcome.ok_or_else(|| {
                ClientError::Corrupt(format!("task {task_id} was settled with an outcome this build does not know"))
            })?;
            let submit_gas = chain.receipt_gas(event.tx_hash).await?;
            return Ok(Published {
                task_id,
                location: StorageUrl::parse(&event.location)
                    .map_err(|e| ClientError::Corrupt(format!("task {task_id}'s result was published at {e}")))?,
                digest: event.digest,
                outcome,
                submit_gas,
            });
        }
        match chain.task_status(task_id).await? {
            TaskStatus::None => return Err(ClientError::Task(format!("task {task_id} does not exist"))),
            TaskStatus::Refunded => {
                return Err(ClientError::Task(format!("task {task_id} was refunded without a result")));
            }
            TaskStatus::Abandoned => {
                return Err(ClientError::Task(format!(
                    "task {task_id} was abandoned by its pool after its keys were released: the pool price and its stake were credited to the analyst"
                )));
            }
            _ => {}
        }
        if Instant::now() > deadline {
            let task = chain
                .task(task_id)
                .await?
                .ok_or_else(|| ClientError::Task(format!("task {task_id} does not exist")))?;
            return Err(ClientError::Task(format!(
                "no result for task {task_id} after {} s: is a worker serving the pool? (refundable after its deadline, {})",
                timeout.as_secs(),
                strongroom_chain::format_utc(task.params.deadline)
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How a task past its deadline without a result was settled.
#[derive(Clone, Debug)]
pub enum Overdue {
    /// Its key service showed it released the keys to the pool's enclave: the owners were paid,
    /// the epsilon spent, and the analyst credited the pool price plus the slashed stake.
    Abandoned { tx: strongroom_chain::TxOutcome, receipt: ReleaseReceipt, credited: U256 },
    /// No release was shown (the claim window is over): the analyst was credited every price.
    Refunded { tx: strongroom_chain::TxOutcome, credited: U256 },
}

/// Settles a task past its deadline without a result, by who is at fault: with its key
/// service's receipt if that service released the keys (`refundReleased`), else as never
/// released (`refund`, once the claim window is over). Anyone may call it; the money goes where
/// the contract says.
pub async fn settle_overdue(chain: &Chain, task: &Task) -> Result<Overdue> {
    let p = &task.params;
    let receipt = match chain.key_service_url_for(p.dataset, p.kmsKey).await? {
        // A key service that does not answer shows no release: the claim window was its time to.
        Some(url) => match KmsClient::new(&url)?.receipt(task.id).await {
            Ok(receipt) => receipt,
            Err(e @ ClientError::Unreachable { .. }) => {
                tracing::warn!(task = %task.id, error = %e, "no receipt from the task's key service");
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    match receipt {
        Some(receipt) => {
            let tx = chain.refund_released(task, &receipt).await?;
            Ok(Overdue::Abandoned { tx, receipt, credited: U256::from(p.poolPrice) + U256::from(p.stake) })
        }
        None => {
            let tx = chain.refund(task).await?;
            let credited = U256::from(p.datasetPrice) + U256::from(p.poolPrice) + U256::from(p.appPrice);
            Ok(Overdue::Refunded { tx, credited })
        }
    }
}

/// Fetches the sealed result, checks it against the digest the enclave signed, and opens it.
pub async fn read_result(published: &Published, secret: &X25519SecretKey, storage: &Storage) -> Result<Outcome> {
    let task_id = published.task_id;
    let location = &published.location;
    let sealed = storage.get(location).await?;
    let digest = keccak256(&sealed);
    if digest != published.digest {
        return Err(ClientError::Corrupt(format!(
            "the result at {location} has digest {digest}, but the enclave attested {} on chain: it was altered",
            published.digest
        )));
    }
    let plaintext = open(secret, INFO_RESULT, &task_id.to_be_bytes::<32>(), &SealedBox(sealed.to_vec()), "result")?;
    let payload: ResultPayload = serde_json::from_slice(&plaintext)
        .map_err(|e| ClientError::Corrupt(format!("the result payload is malformed: {e}")))?;
    // The enclave signed the outcome and the digest of the payload together; they must agree.
    if matches!(payload, ResultPayload::Table { .. }) != published.outcome.completed() {
        return Err(ClientError::Corrupt(format!(
            "task {task_id} was settled as {:?}, which its sealed result contradicts",
            published.outcome
        )));
    }
    Ok(match payload {
        ResultPayload::Table { arrow_ipc, rows, licence } => {
            let corrupt =
                |e: arrow::error::ArrowError| ClientError::Corrupt(format!("the result table is malformed: {e}"));
            let reader = StreamReader::try_new(std::io::Cursor::new(arrow_ipc.to_vec()), None).map_err(corrupt)?;
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(corrupt)?;
            Outcome::Table { batches, rows, licence }
        }
        ResultPayload::Failed { code, message } => Outcome::Failed { code, message, settled: published.outcome },
    })
}

/// The offers a rental of `dataset` would use, as the market lists them.
#[derive(Clone, Debug)]
pub struct ChosenOffers {
    pub dataset_offer: DatasetOffer,
    pub dataset_signature: Bytes,
    pub pool_offer: PoolOffer,
    pub pool_signature: Bytes,
    /// The analyst's Merkle proof of being on the dataset offer's requester list (empty if none).
    pub requester_proof: Vec<B256>,
}

impl ChosenOffers {
    /// What the rental costs: both prices.
    pub fn price(&self) -> U256 {
        self.dataset_offer.price + self.pool_offer.price
    }
}

/// Chooses the offers for `analyst` to rent `dataset` (sealed to key service `kms_key`) with, at
/// chain time `now`: the cheapest dataset offer the analyst can use now (failing that, the newest
/// one, so that the contract says why it cannot be used), and the cheapest pool offer valid now
/// that the licence allows and that serves the dataset's key service; at one price, one that
/// stakes on it before one open to any key service, which stakes nothing.
pub async fn choose_offers(
    market: &crate::MarketClient,
    dataset: DatasetId,
    kms_key: B256,
    analyst: Address,
    now: u64,
) -> Result<ChosenOffers> {
    let offers = market.dataset_offers(dataset).await?;
    let dataset_offers: Vec<_> = offers
        .iter()
        .filter_map(|o| match o {
            SignedOffer::Dataset { offer, signature, requesters, .. } => {
                Some((offer, signature, requesters.as_slice()))
            }
            _ => None,
        })
        .collect();
    let usable = |(o, _, list): &&(&DatasetOffer, &Bytes, &[Address])| {
        o.validFrom <= now
            && now <= o.validUntil
            && (o.requester.is_zero() || o.requester == analyst)
            && (o.requesterRoot.is_zero() || list.contains(&analyst))
    };
    let (dataset_offer, dataset_signature, requesters) = dataset_offers
        .iter()
        .filter(usable)
        .min_by_key(|(o, _, _)| o.price)
        .or(dataset_offers.first())
        .copied()
        .ok_or_else(|| ClientError::Input(format!("the market lists no offer for dataset {dataset}")))?;
    let pools = market.pool_offers().await?;
    let (pool_offer, pool_signature) = pools
        .iter()
        .filter_map(|o| match o {
            SignedOffer::Pool { offer, signature, .. } => Some((offer, signature)),
            _ => None,
        })
        .filter(|(o, _)| dataset_offer.pool.is_zero() || o.pool == dataset_offer.pool)
        .filter(|(o, _)| now <= o.validUntil && (o.keyService.is_zero() || o.keyService == kms_key))
        .min_by_key(|(o, _)| (o.price, o.keyService.is_zero()))
        .ok_or_else(|| {
            ClientError::Input(format!(
                "the market lists no compute pool offer, valid now, that this licence allows and that serves key service {kms_key}"
            ))
        })?;
    let requester_proof = RequesterTree::new(requesters).and_then(|t| t.proof(analyst)).unwrap_or_default();
    Ok(ChosenOffers {
        dataset_offer: dataset_offer.clone(),
        dataset_signature: dataset_signature.clone(),
        pool_offer: pool_offer.clone(),
        pool_signature: pool_signature.clone(),
        requester_proof,
    })
}

/// An analyst: the chain acting as them, the result keys they rent with, and their storage
/// credentials for reading results.
#[derive(Clone, Debug)]
pub struct Analyst {
    chain: Chain,
    keys: ResultKeys,
    storage: Storage,
}

impl Analyst {
    /// `chain` must act as the analyst; their result keys live under `data_dir`.
    pub fn new(chain: Chain, data_dir: &std::path::Path, storage: Storage) -> Result<Self> {
        let keys = result_keys(data_dir, &chain)?;
        Ok(Self { chain, keys, storage })
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The offers to rent `dataset` with, from `market`; see [`choose_offers`].
    pub async fn choose_offers(&self, market: &crate::MarketClient, dataset: DatasetId) -> Result<ChosenOffers> {
        let analyst = self.chain.sender().ok_or_else(|| ClientError::Input("renting needs an account key".into()))?;
        let registered = self
            .chain
            .dataset(dataset)
            .await?
            .ok_or_else(|| ClientError::Input(format!("dataset {dataset} is not registered")))?;
        choose_offers(market, dataset, registered.kms_key, analyst, self.chain.block_timestamp().await?).await
    }

    /// What the enclave will decide about `sql` on `dataset`; see [`preflight`].
    pub async fn check(&self, dataset: DatasetId, sql: &str, epsilon: u64) -> Result<Preflight> {
        preflight(&self.chain, &self.storage, dataset, sql, epsilon).await
    }

    /// Rents `offers` to run `sql`; the result key is on disk before the transaction is sent.
    pub async fn rent(&self, offers: &ChosenOffers, sql: &str, options: &RentOptions) -> Result<Rental> {
        let options = RentOptions { requester_proof: offers.requester_proof.clone(), ..options.clone() };
        let dataset_offer = (&offers.dataset_offer, &offers.dataset_signature);
        let pool_offer = (&offers.pool_offer, &offers.pool_signature);
        rent(&self.chain, &self.keys, dataset_offer, pool_offer, sql, &options).await
    }

    /// Waits up to `timeout` for task `task_id`'s result (published from block `from_block` on),
    /// checks it against the digest the enclave signed on chain, and opens it with its key.
    pub async fn result(&self, task_id: TaskId, from_block: u64, timeout: Duration) -> Result<Outcome> {
        let task = self
            .chain
            .task(task_id)
            .await?
            .ok_or_else(|| ClientError::Task(format!("task {task_id} does not exist")))?;
        let secret = self.keys.find(task_id, task.params.resultKey)?;
        let published = wait_for_result(&self.chain, task_id, from_block, timeout).await?;
        read_result(&published, &secret, &self.storage).await
    }
}
