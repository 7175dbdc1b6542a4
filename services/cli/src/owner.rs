//! The data owner's journey: encrypt, store, deposit keys, register, offer.
//!
//! The order matters for "nothing half-registered": objects are stored and keys deposited
//! *before* the dataset is registered, so a registered dataset always has its ciphertext and
//! its keys; a failure before registration leaves only unreferenced objects behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};
use sha2::{Digest, Sha256};
use strongroom_chain::{Chain, RequesterTree};
use strongroom_types::{
    ColumnEntry, DatasetId, DatasetKeys, DatasetOffer, Deposit, DepositRequest, DepositResponse, INFO_DEPOSIT, KmsInfo,
    Manifest, Policy, PostOfferRequest, X25519PublicKey, random_salt, seal, sign_typed,
};
use strongroom_worker::{dataplane, storage};
use tracing::info;

use crate::backup::KeyBackup;
use crate::market_client;

/// The licence terms of a dataset offer.
#[derive(Clone, Debug)]
pub struct OfferTerms {
    pub price: U256,
    /// How many tasks the offer may be used for.
    pub volume: u64,
    /// How long the offer stays valid from now.
    pub validity: Duration,
    /// Only this analyst may rent (zero: no single-address restriction).
    pub requester: Address,
    /// Only analysts on this list may rent (empty: no list).
    pub requesters: Vec<Address>,
    pub allow_sql: bool,
    pub allow_apps: bool,
    /// With `allow_apps`: only this app (zero: any registered app).
    pub app: B256,
    /// Only this pool (zero: any).
    pub pool: B256,
    /// Only enclaves with this measurement (zero: any governance-trusted one).
    pub measurement: B256,
    /// Most epsilon (micro-units) one task may reserve.
    pub max_epsilon: u64,
}

impl OfferTerms {
    /// SQL for anyone, a thousand tasks, valid for `validity`, up to epsilon 1.0 per task.
    pub fn sql(price: U256, validity: Duration) -> Self {
        Self {
            price,
            volume: 1_000,
            validity,
            requester: Address::ZERO,
            requesters: Vec::new(),
            allow_sql: true,
            allow_apps: false,
            app: B256::ZERO,
            pool: B256::ZERO,
            measurement: B256::ZERO,
            max_epsilon: 1_000_000,
        }
    }
}

/// Signs a dataset offer with these terms; the caller lists it (market) or presigns it (chain).
pub async fn sign_offer(
    chain: &Chain,
    owner: &PrivateKeySigner,
    dataset: DatasetId,
    policy_hash: B256,
    terms: &OfferTerms,
) -> anyhow::Result<(DatasetOffer, Bytes)> {
    let now = chain.block_timestamp().await?;
    let requester_root = RequesterTree::new(&terms.requesters).map(|t| t.root()).unwrap_or_default();
    let offer = DatasetOffer {
        dataset,
        price: terms.price,
        volume: terms.volume,
        validFrom: now,
        validUntil: now + terms.validity.as_secs(),
        requester: terms.requester,
        requesterRoot: requester_root,
        allowSql: terms.allow_sql,
        allowApps: terms.allow_apps,
        app: terms.app,
        pool: terms.pool,
        measurement: terms.measurement,
        policyHash: policy_hash,
        maxEpsilon: terms.max_epsilon,
        salt: random_salt(),
    };
    let signature = sign_typed(owner, &offer, &chain.domain());
    Ok((offer, signature))
}

/// What to publish and on what terms.
#[derive(Clone, Debug)]
pub struct PublishRequest {
    pub input: PathBuf,
    pub policy: PathBuf,
    /// The first licence offer, listed on the market.
    pub terms: OfferTerms,
    /// Total epsilon (micro-units) each analyst may spend on this dataset; 0 allows only tasks
    /// that reserve none.
    pub privacy_budget: u64,
    /// Storage URL under which the dataset's objects are written (`file:///…/objects`).
    pub storage_url: String,
    pub kms_url: String,
    pub market_url: String,
    /// Makes the dataset id; random unless given.
    pub salt: Option<B256>,
    /// Where the owner's sealed key backup goes (see [`KeyBackup`]).
    pub backup_dir: PathBuf,
}

/// A published dataset. The keys also stay with the owner, sealed in the local backup.
#[derive(Debug)]
pub struct Published {
    pub dataset: DatasetId,
    pub uri: String,
    pub manifest: Manifest,
    pub offer: DatasetOffer,
    pub offer_signature: Bytes,
    pub keys: DatasetKeys,
    pub policy_hash: B256,
    pub register_gas: u64,
}

/// Reads CSV, JSON lines or Parquet (by extension) into Arrow batches.
pub async fn read_input(path: &Path) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    if !path.is_file() {
        bail!("input {} does not exist or is not a file", path.display());
    }
    let ctx = SessionContext::new();
    let name = path.to_str().context("input path is not UTF-8")?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let frame = match ext.as_str() {
        "csv" => ctx.read_csv(name, CsvReadOptions::new()).await,
        "json" | "jsonl" | "ndjson" => {
            ctx.read_json(name, JsonReadOptions::default().file_extension(&format!(".{ext}"))).await
        }
        "parquet" => ctx.read_parquet(name, ParquetReadOptions::default()).await,
        _ => bail!("input {} has extension `{ext}`; use .csv, .jsonl or .parquet", path.display()),
    }
    .with_context(|| format!("cannot read {}", path.display()))?;
    let schema: SchemaRef = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.with_context(|| format!("cannot read {}", path.display()))?;
    Ok((schema, batches))
}

pub async fn kms_info(kms_url: &str) -> anyhow::Result<KmsInfo> {
    let url = format!("{}/v1/info", kms_url.trim_end_matches('/'));
    let response = reqwest::Client::new().get(&url).timeout(Duration::from_secs(30)).send().await;
    let response = response.with_context(|| format!("key service at {kms_url} is unreachable"))?;
    Ok(response.error_for_status()?.json().await?)
}

/// Publishes a dataset end to end. `chain` must act as `owner`.
pub async fn publish(chain: &Chain, owner: &PrivateKeySigner, req: &PublishRequest) -> anyhow::Result<Published> {
    let policy_text = std::fs::read_to_string(&req.policy)
        .with_context(|| format!("cannot read policy file {}", req.policy.display()))?;
    let policy = Policy::parse(&policy_text).with_context(|| format!("policy file {}", req.policy.display()))?;
    let policy_hash = keccak256(policy_text.as_bytes());
    let kms = kms_info(&req.kms_url).await?;
    if kms.chain_id != chain.chain_id() || kms.contract != chain.address() {
        bail!(
            "key service at {} serves chain {} contract {}, not this deployment",
            req.kms_url,
            kms.chain_id,
            kms.contract
        );
    }

    let (schema, batches) = read_input(&req.input).await?;
    if let Some(column) = policy.columns.allow.iter().find(|c| schema.field_with_name(c).is_err()) {
        bail!(
            "policy file {} allows column `{column}`, which {} does not have",
            req.policy.display(),
            req.input.display()
        );
    }
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let salt = req.salt.unwrap_or_else(random_salt);
    let dataset = chain.dataset_id(owner.address(), salt).await?;
    let keys = DatasetKeys::generate(schema.fields().iter().map(|f| f.name().as_str()));
    let ciphertext = dataplane::encrypt(&schema, &batches, &keys, dataset)?;
    drop(batches);
    let checksum = B256::from_slice(&Sha256::digest(&ciphertext));
    let manifest = Manifest {
        format: Manifest::FORMAT.into(),
        object: "data.parquet".into(),
        columns: schema
            .fields()
            .iter()
            .map(|f| ColumnEntry {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                key_id: format!("column:{}", f.name()),
            })
            .collect(),
        rows,
        ciphertext_sha256: checksum,
        ciphertext_bytes: ciphertext.len() as u64,
    };

    // 1. Store the objects.
    let base = format!("{}/{dataset}", req.storage_url.trim_end_matches('/'));
    let uri = format!("{base}/{}", manifest.object);
    storage::put(&uri, ciphertext.into()).await?;
    storage::put(&format!("{base}/{}", Manifest::FILE_NAME), serde_json::to_vec_pretty(&manifest)?.into()).await?;
    info!(%dataset, rows, bytes = manifest.ciphertext_bytes, "encrypted dataset stored");

    // 2. Back the keys up (sealed) before they go anywhere, then deposit them, sealed to the
    //    key service and bound to this dataset id.
    KeyBackup::new(&req.backup_dir).store(dataset, &keys, &policy_text)?;
    deposit_keys(&req.kms_url, &kms.public_key, chain, owner, dataset, &keys, &policy_text).await?;

    // 3. Register on chain.
    let (registered, outcome) = chain
        .register_dataset(salt, &uri, checksum, &req.kms_url, kms.public_key.to_b256(), policy_hash, req.privacy_budget)
        .await
        .context("registering the dataset on chain")?;
    if registered != dataset {
        bail!("the contract registered dataset {registered}, expected {dataset}: contract and client disagree on ids");
    }

    // 4. Offer a licence.
    let (offer, offer_signature) = sign_offer(chain, owner, dataset, policy_hash, &req.terms).await?;
    market_client::post_offer(
        &req.market_url,
        &PostOfferRequest::Dataset {
            offer: offer.clone(),
            signature: offer_signature.clone(),
            requesters: req.terms.requesters.clone(),
        },
    )
    .await?;
    info!(%dataset, "dataset registered and offered");
    Ok(Published { dataset, uri, manifest, offer, offer_signature, keys, policy_hash, register_gas: outcome.gas_used })
}

async fn deposit_keys(
    kms_url: &str,
    kms_key: &X25519PublicKey,
    chain: &Chain,
    owner: &PrivateKeySigner,
    dataset: DatasetId,
    keys: &DatasetKeys,
    policy: &str,
) -> anyhow::Result<DepositResponse> {
    let sealed_keys = seal(kms_key, INFO_DEPOSIT, dataset.as_slice(), &keys.to_json())?;
    let signature =
        sign_typed(owner, &Deposit { dataset, keysDigest: keccak256(sealed_keys.as_bytes()) }, &chain.domain());
    let request = DepositRequest { dataset, sealed_keys, policy: policy.to_owned(), owner_signature: signature };
    let url = format!("{}/v1/deposits", kms_url.trim_end_matches('/'));
    let response = reqwest::Client::new().post(&url).timeout(Duration::from_secs(30)).json(&request).send().await;
    let response = response.with_context(|| format!("key service at {kms_url} is unreachable"))?;
    if !response.status().is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        bail!("key service refused the deposit: {}", body["message"].as_str().unwrap_or("no message"));
    }
    Ok(response.json().await?)
}

/// Deposits a dataset's keys again from the owner's backup, to `kms_url`. If that is another key
/// service than the one registered, the dataset is updated on chain to point at it (a new
/// version with the same objects and policy). Returns the dataset as registered afterwards.
pub async fn redeposit(
    chain: &Chain,
    owner: &PrivateKeySigner,
    backup: &KeyBackup,
    dataset: DatasetId,
    kms_url: &str,
) -> anyhow::Result<strongroom_chain::DatasetInfo> {
    let registered = chain.dataset(dataset).await?.with_context(|| format!("dataset {dataset} is not registered"))?;
    if registered.owner != owner.address() {
        bail!("dataset {dataset} is owned by {}, not by {}", registered.owner, owner.address());
    }
    let (keys, policy_text) = backup.load(dataset)?;
    if keccak256(policy_text.as_bytes()) != registered.policy_hash {
        bail!("the backed-up policy of dataset {dataset} is not the one registered on chain");
    }
    let kms = kms_info(kms_url).await?;
    deposit_keys(kms_url, &kms.public_key, chain, owner, dataset, &keys, &policy_text).await?;
    if registered.kms_url != kms_url || registered.kms_key != kms.public_key.to_b256() {
        chain
            .update_dataset(
                dataset,
                &registered.uri,
                registered.checksum,
                kms_url,
                kms.public_key.to_b256(),
                registered.policy_hash,
            )
            .await
            .context("pointing the dataset at the new key service")?;
    }
    chain.dataset(dataset).await?.with_context(|| format!("dataset {dataset} vanished"))
}
