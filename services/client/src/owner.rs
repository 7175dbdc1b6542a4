//! The data owner's journey: encrypt, store, deposit keys, register, offer.
//!
//! The order matters for "nothing half-registered": objects are stored and keys deposited
//! *before* the dataset is registered, so a registered dataset always has its ciphertext and
//! its keys; a failure before registration leaves only unreferenced objects behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::options::ArrowReadOptions;
use datafusion::prelude::{CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, SessionContext};
use futures::StreamExt;
use strongroom_chain::{Chain, DatasetInfo, RequesterTree};
use strongroom_dataplane::{self as dataplane, ColumnEntry, Layout, Manifest, ObjectEntry, version_dir};
use strongroom_storage::Storage;
use strongroom_types::{
    DataVersion, DatasetId, DatasetKeys, DatasetOffer, Deposit, DepositRequest, DepositResponse, INFO_DEPOSIT,
    KeyService, KmsInfo, ManifestDigest, Policy, PostOfferRequest, StorageUrl, X25519PublicKey, key_set_aad,
    random_salt, recover_typed, seal, sign_typed,
};
use tracing::info;

use crate::error::{IoContext, fail};
use crate::{ClientError, KeyBackup, KmsClient, MarketClient, Result};

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

/// A data owner: the chain acting as them, their key backup and their storage credentials.
#[derive(Clone, Debug)]
pub struct Owner {
    chain: Chain,
    signer: PrivateKeySigner,
    backup: KeyBackup,
    storage: Storage,
}

impl Owner {
    /// `chain` must act as `signer` (see `Chain::with_signer`).
    pub fn new(chain: Chain, signer: PrivateKeySigner, backup: KeyBackup, storage: Storage) -> Result<Self> {
        if chain.sender() != Some(signer.address()) {
            fail!(Input, "the chain connection acts as {:?}, not as the owner {}", chain.sender(), signer.address());
        }
        Ok(Self { chain, signer, backup, storage })
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    pub fn backup(&self) -> &KeyBackup {
        &self.backup
    }

    /// Signs a dataset offer with these terms; the caller lists it (market) or presigns it (chain).
    pub async fn sign_offer(
        &self,
        dataset: DatasetId,
        policy_hash: B256,
        terms: &OfferTerms,
    ) -> Result<(DatasetOffer, Bytes)> {
        sign_offer(&self.chain, &self.signer, dataset, policy_hash, terms).await
    }
}

/// Signs an offer with these terms and lists it on the market at `market_url`.
async fn list_offer(
    chain: &Chain,
    owner: &PrivateKeySigner,
    dataset: DatasetId,
    policy_hash: B256,
    terms: &OfferTerms,
    market_url: &str,
) -> Result<(DatasetOffer, Bytes)> {
    let (offer, signature) = sign_offer(chain, owner, dataset, policy_hash, terms).await?;
    MarketClient::new(market_url)?
        .post_offer(&PostOfferRequest::Dataset {
            offer: offer.clone(),
            signature: signature.clone(),
            requesters: terms.requesters.clone(),
        })
        .await?;
    Ok((offer, signature))
}

async fn sign_offer(
    chain: &Chain,
    owner: &PrivateKeySigner,
    dataset: DatasetId,
    policy_hash: B256,
    terms: &OfferTerms,
) -> Result<(DatasetOffer, Bytes)> {
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
    let signature = sign_typed(owner.credential(), &offer, &chain.domain());
    Ok((offer, signature))
}

/// What to publish, where, and on what terms. [`PublishRequest::new`] names what has no
/// default; the `with_*` methods change the rest.
#[derive(Clone, Debug)]
pub struct PublishRequest {
    pub input: PathBuf,
    pub policy: PathBuf,
    /// The first licence offer, listed on the market.
    pub terms: OfferTerms,
    /// Total epsilon (micro-units) each analyst may spend on this dataset; 0 allows only tasks
    /// that reserve none.
    pub privacy_budget: u64,
    /// Storage URL under which the dataset's objects are written (`file:///…/objects`, `s3://…`).
    pub storage_url: StorageUrl,
    pub kms_url: String,
    pub market_url: String,
    /// Makes the dataset id; random unless given.
    pub salt: Option<B256>,
    /// The input's schema; inferred from the data when `None`.
    pub schema: Option<SchemaRef>,
    /// How the dataset is cut into objects and row groups.
    pub layout: Layout,
    /// Shows rows, bytes and rate while encrypting (the CLI's spinner).
    pub progress: Option<indicatif::ProgressBar>,
}

impl PublishRequest {
    /// Publishes `input` under `policy` to `storage_url`, its keys to the key service at
    /// `kms_url`, its offer to the market at `market_url`. Defaults: [`OfferTerms::sql`] at
    /// `price` for 30 days, a privacy budget of 10 epsilon per analyst, a random salt, the
    /// schema inferred, the default [`Layout`].
    pub fn new(
        input: impl Into<PathBuf>,
        policy: impl Into<PathBuf>,
        price: U256,
        storage_url: &StorageUrl,
        kms_url: &str,
        market_url: &str,
    ) -> Self {
        Self {
            input: input.into(),
            policy: policy.into(),
            terms: OfferTerms::sql(price, Duration::from_secs(30 * 86_400)),
            privacy_budget: 10_000_000,
            storage_url: storage_url.clone(),
            kms_url: kms_url.to_owned(),
            market_url: market_url.to_owned(),
            salt: None,
            schema: None,
            layout: Layout::default(),
            progress: None,
        }
    }

    pub fn with_terms(self, terms: OfferTerms) -> Self {
        Self { terms, ..self }
    }

    /// Total epsilon (micro-units) each analyst may spend on the dataset.
    pub fn with_privacy_budget(self, privacy_budget: u64) -> Self {
        Self { privacy_budget, ..self }
    }

    pub fn with_salt(self, salt: B256) -> Self {
        Self { salt: Some(salt), ..self }
    }

    pub fn with_schema(self, schema: Option<SchemaRef>) -> Self {
        Self { schema, ..self }
    }

    pub fn with_layout(self, layout: Layout) -> Self {
        Self { layout, ..self }
    }

    pub fn with_progress(self, progress: indicatif::ProgressBar) -> Self {
        Self { progress: Some(progress), ..self }
    }
}

/// A schema as people type it: `id:Int64,email:Utf8,spend:Float64` (Arrow type names).
pub fn parse_schema(text: &str) -> Result<SchemaRef> {
    let fields = text
        .split(',')
        .map(|pair| {
            let (name, ty) = pair.split_once(':').ok_or_else(|| {
                ClientError::Input(format!("schema entry `{pair}` is not `name:Type` (e.g. `age:Int64`)"))
            })?;
            let ty = ty.trim().parse::<datafusion::arrow::datatypes::DataType>().map_err(|e| {
                ClientError::Input(format!(
                    "schema entry `{pair}`: `{}` is not an Arrow type ({e}); e.g. Int64, Float64, Utf8",
                    ty.trim()
                ))
            })?;
            Ok(datafusion::arrow::datatypes::Field::new(name.trim(), ty, true))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(std::sync::Arc::new(Schema::new(fields)))
}

/// A published dataset. The keys also stay with the owner, sealed in the local backup.
#[derive(Debug)]
pub struct Published {
    pub dataset: DatasetId,
    /// The manifest's URL, registered on chain with its digest.
    pub uri: StorageUrl,
    /// The manifest's digest, as registered on chain.
    pub manifest_digest: ManifestDigest,
    pub manifest: Manifest,
    pub offer: DatasetOffer,
    pub offer_signature: Bytes,
    pub keys: DatasetKeys,
    pub policy_hash: B256,
    pub register_gas: u64,
}

impl Published {
    /// The URLs of the encrypted objects, in manifest order.
    pub fn object_urls(&self) -> Vec<StorageUrl> {
        self.manifest.object_urls(&self.uri).expect("a manifest we stored lists objects beside it")
    }
}

/// Input formats, by file extension.
const FORMATS: [&str; 6] = ["csv", "json", "jsonl", "ndjson", "parquet", "arrow"];

/// The format of `path`: its extension, or for a directory the one extension all its files share.
fn input_format(path: &Path) -> Result<String> {
    let ext = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if path.is_file() {
        let ext = ext(path).unwrap_or_default();
        if !FORMATS.contains(&ext.as_str()) {
            fail!(
                Input,
                "input {} has extension `{ext}`; use .csv, .jsonl, .parquet or .arrow (Arrow IPC)",
                path.display()
            );
        }
        return Ok(ext);
    }
    if !path.is_dir() {
        fail!(Input, "input {} does not exist", path.display());
    }
    let mut found = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(path).io(|| format!("reading {}", path.display()))? {
        let file = entry.io(|| format!("reading {}", path.display()))?.path();
        if file.is_file()
            && let Some(e) = ext(&file).filter(|e| FORMATS.contains(&e.as_str()))
        {
            found.insert(e);
        }
    }
    match found.len() {
        0 => fail!(Input, "directory {} holds no .csv, .jsonl, .parquet or .arrow file", path.display()),
        1 => Ok(found.pop_first().expect("one")),
        _ => fail!(
            Input,
            "directory {} mixes formats ({}); publish one format at a time",
            path.display(),
            found.into_iter().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Reads CSV, JSON lines, Parquet or Arrow IPC (a file, or a directory of files of one format)
/// into Arrow batches, inferring the schema unless `schema` is given.
pub async fn read_input(path: &Path, schema: Option<&Schema>) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let frame = open_input(path, schema).await?;
    let schema: SchemaRef = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(|source| ClientError::Read { path: path.to_owned(), source })?;
    Ok((schema, batches))
}

/// The input as a DataFusion frame, read lazily: publishing streams it batch by batch.
async fn open_input(path: &Path, schema: Option<&Schema>) -> Result<DataFrame> {
    let format = input_format(path)?;
    let ctx = SessionContext::new();
    let name =
        path.to_str().ok_or_else(|| ClientError::Input(format!("input path {} is not UTF-8", path.display())))?;
    let dotted = format!(".{format}");
    let frame = match format.as_str() {
        "csv" => {
            let mut options = CsvReadOptions::new().file_extension(&dotted);
            if let Some(schema) = schema {
                options = options.schema(schema);
            }
            ctx.read_csv(name, options).await
        }
        "json" | "jsonl" | "ndjson" => {
            let mut options = JsonReadOptions::default().file_extension(&dotted);
            if let Some(schema) = schema {
                options = options.schema(schema);
            }
            ctx.read_json(name, options).await
        }
        "parquet" => {
            let mut options = ParquetReadOptions::default();
            if let Some(schema) = schema {
                options = options.schema(schema);
            }
            ctx.read_parquet(name, options).await
        }
        _ => {
            let mut options = ArrowReadOptions::default();
            if let Some(schema) = schema {
                options = options.schema(schema);
            }
            ctx.read_arrow(name, options).await
        }
    }
    .map_err(|source| ClientError::Read { path: path.to_owned(), source })?;
    Ok(frame)
}

/// Refuses a policy with a template its own rules refuse on this data: each is called once,
/// with every argument in the middle of its bounds, through the checker the enclave runs.
async fn check_templates(policy: &Policy, columns: &[ColumnEntry], file: &Path) -> Result<()> {
    if policy.templates.is_empty() {
        return Ok(());
    }
    let schema = ColumnEntry::arrow_schema(columns).map_err(|e| ClientError::Internal(e.to_string()))?;
    for template in &policy.templates {
        let arguments =
            template.parameters.iter().map(|p| (p.min / 2 + p.max / 2).to_string()).collect::<Vec<_>>().join(", ");
        let call = format!("EXECUTE {}({arguments})", template.name);
        if let Err(refusal) = strongroom_policy::check_on_schema(schema.clone(), &call, policy, None).await {
            fail!(Input, "policy file {}: template `{}` would be refused: {refusal}", file.display(), template.name);
        }
    }
    Ok(())
}

/// The key service at `kms_url`, checked to serve the deployment `chain` is on and to be the one
/// registered on chain for its sealing key (registered now, with its own signature, if no one
/// is): the key service whose word settles tasks abandoned after a release.
async fn key_service(kms_url: &str, chain: &Chain) -> Result<(KmsClient, KmsInfo)> {
    let kms = KmsClient::new(kms_url)?;
    let info = kms.info().await?;
    if info.chain_id != chain.chain_id() || info.contract != chain.address() {
        fail!(
            Input,
            "key service at {kms_url} serves chain {} contract {}, not this deployment",
            info.chain_id,
            info.contract
        );
    }
    let sealing_key = info.public_key.to_b256();
    let registration = KeyService { sealingKey: sealing_key };
    if recover_typed(&registration, &chain.domain(), &info.registration) != Some(info.signer) {
        fail!(
            Input,
            "key service at {kms_url} does not sign its own registration as {}: it is not a key service of this build",
            info.signer
        );
    }
    match chain.key_service_signer(sealing_key).await? {
        Some(signer) if signer == info.signer => {}
        Some(signer) => fail!(
            Input,
            "key service at {kms_url} signs as {}, but its sealing key {sealing_key} is registered on chain to {signer}: it is not the key service it claims to be (or its key was taken first); use another key service",
            info.signer
        ),
        None => {
            chain.register_key_service(sealing_key, info.registration.clone()).await?;
        }
    }
    Ok((kms, info))
}

impl Owner {
    /// Publishes a dataset end to end: encrypt and store the objects and the manifest, back the
    /// keys up, deposit them, register the dataset, list the offer.
    pub async fn publish(&self, req: &PublishRequest) -> Result<Published> {
        let (chain, signer) = (&self.chain, &self.signer);
        let policy_text =
            std::fs::read_to_string(&req.policy).io(|| format!("cannot read policy file {}", req.policy.display()))?;
        let policy = Policy::parse(&policy_text)
            .map_err(|e| ClientError::Input(format!("policy file {}: {e}", req.policy.display())))?;
        let policy_hash = keccak256(policy_text.as_bytes());
        let (kms, kms_info) = key_service(&req.kms_url, chain).await?;

        let frame = open_input(&req.input, req.schema.as_deref()).await?;
        let schema: SchemaRef = std::sync::Arc::new(frame.schema().as_arrow().clone());
        if let Some(column) = policy.columns.keys().find(|c| schema.field_with_name(c).is_err()) {
            fail!(
                Input,
                "policy file {} names column `{column}`, which {} does not have",
                req.policy.display(),
                req.input.display()
            );
        }
        let salt = req.salt.unwrap_or_else(random_salt);
        let dataset = chain.dataset_id(signer.address(), salt).await?;
        let keys = DatasetKeys::generate(schema.fields().iter().map(|f| f.name().as_str()));
        if let Err(violation) = strongroom_policy::check_measures(&policy, &schema) {
            fail!(
                Input,
                "policy file {} does not fit {}: {}",
                req.policy.display(),
                req.input.display(),
                violation.reason
            );
        }
        let columns = ColumnEntry::of_schema(&schema);
        check_templates(&policy, &columns, &req.policy).await?;

        // 1. Encrypt and store the objects as the input streams in, then the manifest.
        let dir = version_dir(&req.storage_url, dataset, DataVersion::FIRST);
        let mut uploader = ObjectUploader::new(
            &self.storage,
            schema,
            &keys,
            dataset,
            DataVersion::FIRST,
            req.layout,
            &dir,
            req.progress.clone(),
        )?;
        let unreadable = |source| ClientError::Read { path: req.input.clone(), source };
        let mut batches = frame.execute_stream().await.map_err(unreadable)?;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(unreadable)?;
            uploader.write(&batch).await?;
        }
        let (rows, objects) = uploader.finish().await?;
        let manifest = Manifest {
            format: Manifest::FORMAT.into(),
            dataset,
            data_version: DataVersion::FIRST,
            columns,
            rows,
            objects,
        };
        let (uri, manifest_digest) = store_manifest(&self.storage, &dir, &manifest).await?;
        info!(%dataset, rows, bytes = manifest.bytes(), objects = manifest.objects.len(), "encrypted dataset stored");

        // 2. Back the keys up (sealed) before they go anywhere.
        self.backup.store(dataset, manifest_digest, &keys, &policy_text)?;

        // 3. Register on chain: a key service takes keys only from a registered dataset's owner.
        let (registered, outcome) = chain
            .register_dataset(
                salt,
                uri.as_str(),
                manifest_digest,
                &req.kms_url,
                kms_info.public_key.to_b256(),
                policy_hash,
                req.privacy_budget,
            )
            .await?;
        if registered != dataset {
            fail!(
                Internal,
                "the contract registered dataset {registered}, expected {dataset}: contract and client disagree on ids"
            );
        }

        // 4. Deposit the keys, sealed to the key service and bound to this dataset id and manifest.
        //    Until an offer is signed nobody can rent the dataset, so a failure here leaves nothing
        //    rentable without its keys; the backup finishes the job.
        deposit_keys(&kms, &kms_info.public_key, chain, signer, dataset, manifest_digest, &keys, &policy_text)
            .await
            .map_err(|e| {
                ClientError::Input(format!(
                    "dataset {dataset} is registered but its keys were not deposited ({e}); nobody can rent it \
                     until they are: run `strongroom dataset redeposit {dataset} --kms-url {}`, then \
                     `strongroom dataset offer {dataset}` with the offer's terms",
                    req.kms_url
                ))
            })?;

        // 5. Offer a licence.
        let (offer, offer_signature) =
            list_offer(chain, signer, dataset, policy_hash, &req.terms, &req.market_url).await.map_err(|e| {
                ClientError::Input(format!(
                    "dataset {dataset} is registered and its keys are deposited, but its offer was not listed ({e}): \
                     run `strongroom dataset offer {dataset}` with the offer's terms"
                ))
            })?;
        info!(%dataset, "dataset registered and offered");
        Ok(Published {
            dataset,
            uri,
            manifest_digest,
            manifest,
            offer,
            offer_signature,
            keys,
            policy_hash,
            register_gas: outcome.gas_used,
        })
    }
}

/// Encrypts batches into objects and stores each one as soon as it is complete, so memory holds
/// at most one object whatever the input's size.
struct ObjectUploader<'k> {
    storage: Storage,
    /// Taken by `finish`.
    writer: Option<dataplane::ObjectWriter<'k>>,
    dir: StorageUrl,
    objects: Vec<ObjectEntry>,
    rows_read: u64,
    progress: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
}

impl<'k> ObjectUploader<'k> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        storage: &Storage,
        schema: SchemaRef,
        keys: &'k DatasetKeys,
        dataset: DatasetId,
        data_version: DataVersion,
        layout: Layout,
        dir: &StorageUrl,
        progress: Option<indicatif::ProgressBar>,
    ) -> Result<Self> {
        let writer = dataplane::ObjectWriter::new(schema, keys, dataset, data_version, layout)?;
        let started = std::time::Instant::now();
        Ok(Self {
            storage: storage.clone(),
            writer: Some(writer),
            dir: dir.clone(),
            objects: Vec::new(),
            rows_read: 0,
            progress,
            started,
        })
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows_read += batch.num_rows() as u64;
        for object in self.writer.as_mut().expect("not finished").write(batch)? {
            self.store(object).await?;
        }
        self.report();
        Ok(())
    }

    /// Stores the last object; returns the row count and every object's manifest entry.
    async fn finish(mut self) -> Result<(u64, Vec<ObjectEntry>)> {
        if let Some(object) = self.writer.take().expect("finished once").finish()? {
            self.store(object).await?;
        }
        self.report();
        Ok((self.rows_read, self.objects))
    }

    async fn store(&mut self, object: dataplane::EncryptedObject) -> Result<()> {
        self.storage.put(&self.dir.join(&object.entry.name)?, object.ciphertext).await?;
        self.objects.push(object.entry);
        Ok(())
    }

    fn report(&self) {
        if let Some(progress) = &self.progress {
            let bytes: u64 = self.objects.iter().map(|o| o.bytes).sum();
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            progress.set_message(format!(
                "encrypted {} rows ({:.0} rows/s); stored {} objects, {:.1} MB",
                self.rows_read,
                self.rows_read as f64 / secs,
                self.objects.len(),
                bytes as f64 / 1e6
            ));
        }
    }
}

/// Stores the manifest in `dir`; returns its URL and digest (what the chain records).
async fn store_manifest(
    storage: &Storage,
    dir: &StorageUrl,
    manifest: &Manifest,
) -> Result<(StorageUrl, ManifestDigest)> {
    let (bytes, digest) = manifest.to_stored();
    let uri = dir.join(Manifest::FILE_NAME)?;
    storage.put(&uri, bytes.into()).await?;
    Ok((uri, digest))
}

#[allow(clippy::too_many_arguments)]
async fn deposit_keys(
    kms: &KmsClient,
    kms_key: &X25519PublicKey,
    chain: &Chain,
    owner: &PrivateKeySigner,
    dataset: DatasetId,
    manifest_digest: ManifestDigest,
    keys: &DatasetKeys,
    policy: &str,
) -> Result<DepositResponse> {
    let sealed_keys = seal(kms_key, INFO_DEPOSIT, &key_set_aad(dataset, manifest_digest), &keys.to_json())?;
    // Good for minutes: a copy seen on its way cannot be posted again later.
    let not_after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| ClientError::Internal(format!("the clock is before 1970: {e}")))?
        .as_secs()
        + DEPOSIT_VALID_SECS;
    let deposit = Deposit {
        dataset,
        manifestDigest: manifest_digest.to_b256(),
        keysDigest: keccak256(sealed_keys.as_bytes()),
        policyHash: keccak256(policy.as_bytes()),
        notAfter: not_after,
    };
    let signature = sign_typed(owner.credential(), &deposit, &chain.domain());
    let request = DepositRequest {
        dataset,
        manifest_digest,
        sealed_keys,
        policy: policy.to_owned(),
        not_after,
        owner_signature: signature,
    };
    kms.deposit(&request).await
}

/// How long a signed deposit is good for.
const DEPOSIT_VALID_SECS: u64 = 600;

/// The dataset as registered, checked to belong to `owner`.
async fn owned_dataset(chain: &Chain, owner: &PrivateKeySigner, dataset: DatasetId) -> Result<DatasetInfo> {
    let registered = chain
        .dataset(dataset)
        .await?
        .ok_or_else(|| ClientError::Input(format!("dataset {dataset} is not registered")))?;
    if registered.owner != owner.address() {
        fail!(Input, "dataset {dataset} is owned by {}, not by {}", registered.owner, owner.address());
    }
    Ok(registered)
}

impl Owner {
    /// Offers a registered dataset of this owner's under new terms, for its registered policy, on
    /// the market at `market_url`: after a publish whose offer was never listed, or when an
    /// earlier offer ran out of time or volume. Earlier offers stay valid until they end.
    pub async fn offer(&self, dataset: DatasetId, terms: &OfferTerms, market_url: &str) -> Result<DatasetOffer> {
        let registered = owned_dataset(&self.chain, &self.signer, dataset).await?;
        let (offer, _) =
            list_offer(&self.chain, &self.signer, dataset, registered.policy_hash, terms, market_url).await?;
        info!(%dataset, price = %offer.price, "dataset offered");
        Ok(offer)
    }

    /// Deposits a dataset's keys again from the owner's backup, to `kms_url`: the current data
    /// version's, then every earlier one's the backup holds. If that is another key service than the
    /// one registered, the dataset is updated on chain to point at it (a new
    /// version with the same objects and policy). Returns the dataset as registered afterwards.
    pub async fn redeposit(&self, dataset: DatasetId, kms_url: &str) -> Result<DatasetInfo> {
        let (chain, signer, backup) = (&self.chain, &self.signer, &self.backup);
        let registered = owned_dataset(chain, signer, dataset).await?;
        let (keys, policy_text) = backup.load(dataset, registered.manifest_digest)?;
        if keccak256(policy_text.as_bytes()) != registered.policy_hash {
            fail!(Backup, "the backed-up policy of dataset {dataset} is not the one registered on chain");
        }
        let (kms, kms_info) = key_service(kms_url, chain).await?;
        deposit_keys(
            &kms,
            &kms_info.public_key,
            chain,
            signer,
            dataset,
            registered.manifest_digest,
            &keys,
            &policy_text,
        )
        .await?;
        // Earlier data versions too: tasks rented before a rotation are served with their keys.
        for manifest in backup.versions(dataset)?.into_iter().filter(|m| *m != registered.manifest_digest) {
            let (keys, policy_text) = backup.load(dataset, manifest)?;
            deposit_keys(&kms, &kms_info.public_key, chain, signer, dataset, manifest, &keys, &policy_text).await?;
        }
        if registered.kms_url != kms_url || registered.kms_key != kms_info.public_key.to_b256() {
            chain
                .update_dataset(
                    dataset,
                    &registered.uri,
                    registered.manifest_digest,
                    kms_url,
                    kms_info.public_key.to_b256(),
                    registered.policy_hash,
                )
                .await?;
        }
        chain.dataset(dataset).await?.ok_or_else(|| ClientError::Internal(format!("dataset {dataset} vanished")))
    }
}

/// A dataset after [`Owner::rotate`].
#[derive(Debug)]
pub struct Rotated {
    pub dataset: DatasetInfo,
    pub manifest: Manifest,
}

impl Owner {
    /// Rotates a dataset's keys: decrypts every object with the current keys (from the owner's
    /// backup), re-encrypts it under fresh keys as the next data version, stores it beside the old
    /// version, backs up and deposits the new keys, and points the dataset on chain at the new
    /// manifest. Tasks rented from then on get the new keys. The old version's objects and keys are
    /// left in place for tasks rented before; delete them once those are settled.
    pub async fn rotate(
        &self,
        dataset: DatasetId,
        layout: Layout,
        progress: Option<indicatif::ProgressBar>,
    ) -> Result<Rotated> {
        let (chain, signer, backup, storage) = (&self.chain, &self.signer, &self.backup, &self.storage);
        let registered = owned_dataset(chain, signer, dataset).await?;
        let registered_uri = StorageUrl::parse(&registered.uri)
            .map_err(|e| ClientError::Corrupt(format!("dataset {dataset} is registered at {e}")))?;
        let manifest_bytes = storage.get_checked(&registered_uri, registered.manifest_digest.to_b256()).await?;
        let old = Manifest::parse(&manifest_bytes, dataset)
            .map_err(|e| ClientError::Corrupt(format!("the manifest at {} {e}", registered.uri)))?;
        let (old_keys, policy_text) = backup.load(dataset, registered.manifest_digest)?;
        if keccak256(policy_text.as_bytes()) != registered.policy_hash {
            fail!(Backup, "the backed-up policy of dataset {dataset} is not the one registered on chain");
        }
        let (kms, kms_info) = key_service(&registered.kms_url, chain).await?;
        if kms_info.public_key.to_b256() != registered.kms_key {
            fail!(
                Input,
                "the key service at {} now has key {}, not {} as registered: run `strongroom dataset redeposit` first",
                registered.kms_url,
                kms_info.public_key.to_b256(),
                registered.kms_key
            );
        }

        // The next version goes beside the current one, under <storage>/<dataset>/. Each attempt
        // writes a directory of its own, so a retried or concurrent rotation never overwrites objects
        // that a registration (perhaps still pending) points at.
        let version = old.data_version.next().ok_or_else(|| {
            ClientError::Corrupt(format!("the manifest at {} has the last data version", registered.uri))
        })?;
        let dataset_dir = registered_uri
            .parent()
            .filter(|current| current.name().split('-').next() == Some(&old.data_version.dir_name()))
            .and_then(|current| current.parent())
            .filter(|parent| parent.name() == dataset.to_string())
            .ok_or_else(|| {
                ClientError::Corrupt(format!(
                    "the dataset URI {} is not <storage>/{dataset}/v{}/manifest.json",
                    registered.uri, old.data_version
                ))
            })?;
        let dir = dataset_dir.join(&format!("{}-{}", version.dir_name(), &hex::encode(random_salt())[..8]))?;
        let keys = DatasetKeys::generate(old.columns.iter().map(|c| c.name.as_str()));
        let mut schema = None;
        let mut uploader = None;
        let object_urls = old
            .object_urls(&registered_uri)
            .map_err(|e| ClientError::Corrupt(format!("the manifest at {} {e}", registered.uri)))?;
        for (entry, url) in old.objects.iter().zip(object_urls) {
            let ciphertext = storage.get_checked(&url, entry.sha256).await?;
            let (object_schema, batches) = dataplane::decrypt(
                &ciphertext,
                &old_keys,
                dataplane::aad_prefix(dataset, old.data_version, &entry.name),
            )
            .map_err(|e| ClientError::Corrupt(format!("decrypting {url} with the backed-up keys: {e}")))?;
            // Every column the manifest lists, and every row, must come through the re-encryption.
            let columns: Vec<&str> = object_schema.fields().iter().map(|f| f.name().as_str()).collect();
            let listed: Vec<&str> = old.columns.iter().map(|c| c.name.as_str()).collect();
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if columns != listed || rows as u64 != entry.rows {
                fail!(
                    Corrupt,
                    "object {url} holds columns {columns:?} and {rows} rows; the manifest lists {listed:?} and {} rows",
                    entry.rows
                );
            }
            let uploader = match &mut uploader {
                Some(uploader) => uploader,
                None => uploader.insert(ObjectUploader::new(
                    storage,
                    schema.insert(object_schema).clone(),
                    &keys,
                    dataset,
                    version,
                    layout,
                    &dir,
                    progress.clone(),
                )?),
            };
            for batch in &batches {
                uploader.write(batch).await?;
            }
        }
        let uploader = uploader
            .ok_or_else(|| ClientError::Corrupt(format!("the manifest of dataset {dataset} lists no object")))?;
        let (rows, objects) = uploader.finish().await?;
        if rows != old.rows {
            fail!(
                Corrupt,
                "re-encrypted {rows} rows, but the manifest of version {} lists {}",
                old.data_version,
                old.rows
            );
        }
        let manifest = Manifest { data_version: version, rows, objects, ..old };
        let (uri, manifest_digest) = store_manifest(storage, &dir, &manifest).await?;
        backup.store(dataset, manifest_digest, &keys, &policy_text)?;
        // Deposited before the chain points at the new version, so no task rented against it
        // finds no keys; the key service keeps it as the one deposit not yet recorded.
        deposit_keys(&kms, &kms_info.public_key, chain, signer, dataset, manifest_digest, &keys, &policy_text).await?;
        chain
            .update_dataset(
                dataset,
                uri.as_str(),
                manifest_digest,
                &registered.kms_url,
                registered.kms_key,
                registered.policy_hash,
            )
            .await?;
        // And again once recorded, so it is kept for good: a later deposit not yet recorded (a
        // retried rotation, another version) would otherwise replace it.
        let deposited =
            deposit_keys(&kms, &kms_info.public_key, chain, signer, dataset, manifest_digest, &keys, &policy_text)
                .await?;
        if deposited.staged {
            fail!(
                Corrupt,
                "the key service at {} does not see dataset {dataset} at version {manifest_digest} yet: run `strongroom dataset redeposit {dataset} --kms-url {}`",
                registered.kms_url,
                registered.kms_url
            );
        }
        info!(%dataset, %version, objects = manifest.objects.len(), "keys rotated");
        let dataset = chain
            .dataset(dataset)
            .await?
            .ok_or_else(|| ClientError::Internal(format!("dataset {dataset} vanished")))?;
        Ok(Rotated { dataset, manifest })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};

    use super::*;

    fn sample() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("region", DataType::Utf8, true),
            Field::new("spend", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["north", "south", "north"])),
                Arc::new(Float64Array::from(vec![9.5, 19.25, 49.0])),
            ],
        )
        .unwrap();
        (schema, batch)
    }

    fn write(dir: &Path, name: &str, schema: &SchemaRef, batch: &RecordBatch) -> PathBuf {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).unwrap();
        match name.rsplit('.').next().unwrap() {
            "csv" => {
                let mut w = arrow::csv::Writer::new(file);
                w.write(batch).unwrap();
            }
            "jsonl" => {
                let mut w = arrow::json::LineDelimitedWriter::new(file);
                w.write(batch).unwrap();
                w.finish().unwrap();
            }
            "parquet" => {
                let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
                w.write(batch).unwrap();
                w.close().unwrap();
            }
            "arrow" => {
                let mut w = arrow::ipc::writer::FileWriter::try_new(file, schema).unwrap();
                w.write(batch).unwrap();
                w.finish().unwrap();
            }
            other => panic!("no writer for {other}"),
        }
        path
    }

    #[tokio::test]
    async fn every_format_round_trips_from_a_file_and_a_directory() {
        let (schema, batch) = sample();
        for name in ["data.csv", "data.jsonl", "data.parquet", "data.arrow"] {
            let dir = tempfile::tempdir().unwrap();
            let path = write(dir.path(), name, &schema, &batch);
            let (got_schema, got) = read_input(&path, Some(&schema)).await.unwrap();
            assert_eq!(got_schema.fields().len(), 3, "{name}");
            let rows = arrow::compute::concat_batches(&got_schema, &got).unwrap();
            assert_eq!(rows.num_rows(), 3, "{name}");
            assert_eq!(rows.column(1).as_ref(), batch.column(1).as_ref(), "{name}");

            // A second file beside it: the directory reads as one dataset.
            write(dir.path(), &name.replace("data", "more"), &schema, &batch);
            let (_, got) = read_input(dir.path(), Some(&schema)).await.unwrap();
            assert_eq!(got.iter().map(|b| b.num_rows()).sum::<usize>(), 6, "{name} directory");
        }
    }

    #[test]
    fn schemas_parse_and_name_their_errors() {
        let schema = parse_schema("id:Int64, region:Utf8").unwrap();
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        assert_eq!(
            parse_schema("id").unwrap_err().to_string(),
            "schema entry `id` is not `name:Type` (e.g. `age:Int64`)"
        );
        assert!(
            parse_schema("id:Integer")
                .unwrap_err()
                .to_string()
                .starts_with("schema entry `id:Integer`: `Integer` is not an Arrow type")
        );
    }

    #[tokio::test]
    async fn unusable_inputs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_input(&dir.path().join("missing.csv"), None).await.unwrap_err();
        assert_eq!(err.to_string(), format!("input {} does not exist", dir.path().join("missing.csv").display()));
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let err = read_input(&dir.path().join("notes.txt"), None).await.unwrap_err();
        assert!(
            err.to_string().ends_with("has extension `txt`; use .csv, .jsonl, .parquet or .arrow (Arrow IPC)"),
            "{err}"
        );
        let err = read_input(dir.path(), None).await.unwrap_err();
        assert!(err.to_string().ends_with("holds no .csv, .jsonl, .parquet or .arrow file"), "{err}");
        let (schema, batch) = sample();
        write(dir.path(), "a.csv", &schema, &batch);
        write(dir.path(), "b.parquet", &schema, &batch);
        let err = read_input(dir.path(), None).await.unwrap_err();
        assert!(err.to_string().ends_with("mixes formats (csv, parquet); publish one format at a time"), "{err}");
    }
}
