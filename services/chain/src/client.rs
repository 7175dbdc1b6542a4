//! One connection to one deployment, with an optional signer for transactions.

use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::fillers::GasFiller;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolEvent, SolStruct};
use strongroom_types::{
    AppOffer, Authorization, DatasetId, DatasetOffer, JobKind, ManifestDigest, Outcome, PoolId, PoolOffer, Quote,
    RegistryVersion, TaskId, domain,
};

use crate::Strongroom::{self, Rental, StrongroomInstance, TaskParams};
use crate::{ChainError, Result};

/// A mined transaction: what a caller reports (hash, gas).
#[derive(Clone, Copy, Debug)]
pub struct TxOutcome {
    pub hash: B256,
    pub gas_used: u64,
    pub block: u64,
}

/// A dataset as registered on chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetInfo {
    pub id: DatasetId,
    pub owner: Address,
    pub active: bool,
    pub version: RegistryVersion,
    pub privacy_budget: u64,
    /// The current data version's manifest digest.
    pub manifest_digest: ManifestDigest,
    pub kms_key: B256,
    pub policy_hash: B256,
    pub uri: String,
    pub kms_url: String,
}

/// A registered WASM app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppInfo {
    pub id: B256,
    pub owner: Address,
    /// sha256 of the WASM module.
    pub code_hash: B256,
    pub uri: String,
}

/// A pool and its stake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    pub id: PoolId,
    pub operator: Address,
    pub stake: U256,
    pub locked: U256,
    pub unbonding: U256,
    pub unbonding_at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    None,
    Active,
    Completed,
    Failed,
    Refunded,
    Refused,
    Abandoned,
    HostFault,
}

/// What governance trusts a platform key to sign (the contract's `PlatformKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformKind {
    Untrusted = 0,
    Simulated = 1,
    Hardware = 2,
}

impl From<u8> for TaskStatus {
    /// The contract's encoding (unknown values read as `None`).
    fn from(v: u8) -> Self {
        Self::from_u8(v)
    }
}

impl TaskStatus {
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Active,
            2 => Self::Completed,
            3 => Self::Failed,
            4 => Self::Refunded,
            5 => Self::Refused,
            6 => Self::Abandoned,
            7 => Self::HostFault,
            _ => Self::None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::None => "unknown",
            Self::Active => "active",
            Self::Completed => "completed (already paid out)",
            Self::Failed => "failed while running (already settled)",
            Self::Refunded => "refunded",
            Self::Refused => "refused by the enclave (already settled)",
            Self::Abandoned => "abandoned by its pool after its keys were released (already settled)",
            Self::HostFault => "not relayed what the chain pins by its worker (already settled: nobody paid)",
        }
    }
}

/// A task: its parameters as committed on chain at rent, its job spec, and its status now.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: TaskId,
    pub params: TaskParams,
    /// The SQL text (SQL jobs) or the app parameters (app jobs).
    pub spec: Bytes,
    pub status: TaskStatus,
    /// Block of the `rent` transaction.
    pub block: u64,
}

impl Task {
    /// What the task runs; `None` for a kind this build does not know.
    pub fn job_kind(&self) -> Option<JobKind> {
        JobKind::try_from(self.params.kind).ok()
    }

    /// The SQL text of an SQL job.
    pub fn sql(&self) -> Option<&str> {
        (self.job_kind() == Some(JobKind::Sql)).then(|| std::str::from_utf8(&self.spec).ok()).flatten()
    }

    /// The data version the task was rented against.
    pub fn manifest_digest(&self) -> ManifestDigest {
        ManifestDigest::new(self.params.manifestDigest)
    }
}

/// One state a dataset has been in: who owned it, and which data version under which policy it
/// offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatasetState {
    pub owner: Address,
    pub manifest_digest: ManifestDigest,
    pub policy_hash: B256,
}

/// What a dataset's registration or one of its updates set: where its data and keys were.
pub(crate) struct DatasetRecordAt {
    manifest_digest: B256,
    uri: String,
    kms_key: B256,
    kms_url: String,
}

/// A `ResultSubmitted` event.
#[derive(Clone, Debug)]
pub struct ResultEvent {
    pub task_id: TaskId,
    pub enclave: Address,
    pub digest: B256,
    pub location: String,
    /// What the enclave attested; `None` for a value this build does not know.
    pub outcome: Option<Outcome>,
    pub tx_hash: B256,
}

/// The longest one call to the chain's node may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(20);

/// A handle on the Strongroom contract of one chain.
#[derive(Clone, Debug)]
pub struct Chain {
    url: String,
    provider: DynProvider,
    contract: StrongroomInstance<DynProvider>,
    chain_id: u64,
    sender: Option<Address>,
    /// Held while one of the signer's transactions is filled and broadcast (shared by clones):
    /// each reads its nonce from the node's pending count, which counts only those broadcast.
    /// Not held while waiting for receipts, so transactions of one signer are mined together.
    broadcasting: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Chain {
    /// Connects to the deployment at `contract`; `signer` is needed only to send transactions.
    pub async fn connect(url: &str, contract: Address, signer: Option<PrivateKeySigner>) -> Result<Self> {
        let chain = Self::provider(url, signer).await?;
        let code = chain.1.get_code_at(contract).await.map_err(|e| rpc(url, e))?;
        if code.is_empty() {
            return Err(ChainError::NoContract(contract));
        }
        Ok(Self::assemble(url, chain, contract))
    }

    /// Deploys a new Strongroom contract, owned (governed) by `signer`.
    pub async fn deploy(url: &str, signer: PrivateKeySigner, accept_simulated_quotes: bool) -> Result<Self> {
        let chain = Self::provider(url, Some(signer)).await?;
        let instance = Strongroom::deploy(chain.1.clone(), accept_simulated_quotes)
            .await
            .map_err(|e| ChainError::from_contract(url, e))?;
        Ok(Self::assemble(url, chain, *instance.address()))
    }

    async fn provider(url: &str, signer: Option<PrivateKeySigner>) -> Result<(u64, DynProvider, Option<Address>)> {
        let parsed: alloy::transports::http::reqwest::Url =
            url.parse().map_err(|e| ChainError::Rpc { url: url.to_owned(), reason: format!("not a URL: {e}") })?;
        let sender = signer.as_ref().map(|s| s.address());
        // Every call to the node ends within RPC_TIMEOUT: a node that hangs fails the call, which
        // the caller retries, instead of stalling it for good.
        let http = alloy::transports::http::reqwest::Client::builder()
            .timeout(RPC_TIMEOUT)
            .build()
            .map_err(|e| ChainError::Rpc { url: url.to_owned(), reason: format!("cannot set up HTTP: {e}") })?;
        let rpc_client = || alloy::rpc::client::RpcClient::new_http_with_client(http.clone(), parsed.clone());
        let provider = match signer {
            // The nonce is read from the chain for every transaction: a cached nonce would be
            // consumed by a call that reverts during estimation and stall the next one.
            Some(signer) => ProviderBuilder::new()
                .disable_recommended_fillers()
                .filler(GasFiller::default())
                .with_simple_nonce_management()
                .fetch_chain_id()
                .wallet(EthereumWallet::from(signer))
                .connect_client(rpc_client())
                .erased(),
            None => ProviderBuilder::new().connect_client(rpc_client()).erased(),
        };
        let chain_id = provider.get_chain_id().await.map_err(|e| rpc(url, e))?;
        Ok((chain_id, provider, sender))
    }

    fn assemble(
        url: &str,
        (chain_id, provider, sender): (u64, DynProvider, Option<Address>),
        contract: Address,
    ) -> Self {
        let contract = Strongroom::new(contract, provider.clone());
        Self { url: url.to_owned(), provider, contract, chain_id, sender, broadcasting: Default::default() }
    }

    /// The same deployment, acting as another account.
    pub async fn with_signer(&self, signer: PrivateKeySigner) -> Result<Self> {
        Self::connect(&self.url, self.address(), Some(signer)).await
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn address(&self) -> Address {
        *self.contract.address()
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The EIP-712 domain all Strongroom signatures on this deployment use.
    pub fn domain(&self) -> Eip712Domain {
        domain(self.chain_id, self.address())
    }

    /// The account transactions are sent from.
    pub fn sender(&self) -> Option<Address> {
        self.sender
    }

    pub fn contract(&self) -> &StrongroomInstance<DynProvider> {
        &self.contract
    }

    // ---- governance ----

    pub async fn set_platform_key(&self, key: Address, kind: PlatformKind) -> Result<TxOutcome> {
        self.send(self.contract.setPlatformKey(key, kind as u8)).await.map(|(o, _)| o)
    }

    /// The enclave author, product and least security version a quote must report.
    pub async fn set_enclave_identity(&self, signer: B256, product_id: u16, min_svn: u16) -> Result<TxOutcome> {
        self.send(self.contract.setEnclaveIdentity(signer, product_id, min_svn)).await.map(|(o, _)| o)
    }

    /// Lifetime of enclave registrations made from now on, in seconds.
    pub async fn enclave_ttl(&self) -> Result<u64> {
        self.contract.enclaveTtl().call().await.map_err(|e| self.err(e))
    }

    /// Lifetime of future enclave registrations, in seconds.
    pub async fn set_enclave_ttl(&self, ttl: u64) -> Result<TxOutcome> {
        self.send(self.contract.setEnclaveTtl(ttl)).await.map(|(o, _)| o)
    }

    pub async fn set_measurement(&self, measurement: B256, trusted: bool) -> Result<TxOutcome> {
        self.send(self.contract.setMeasurement(measurement, trusted)).await.map(|(o, _)| o)
    }

    // ---- enclaves ----

    pub async fn register_enclave(&self, quote: &Quote, platform_signature: Bytes) -> Result<TxOutcome> {
        self.send(self.contract.registerEnclave(quote.into(), platform_signature)).await.map(|(o, _)| o)
    }

    pub async fn is_enclave_active(&self, enclave: Address) -> Result<bool> {
        self.contract.isEnclaveActive(enclave).call().await.map_err(|e| self.err(e))
    }

    pub async fn enclave(&self, enclave: Address) -> Result<(B256, u64)> {
        let e = self.contract.enclaves(enclave).call().await.map_err(|e| self.err(e))?;
        Ok((e.measurement, e.expiresAt))
    }

    // ---- datasets ----

    #[allow(clippy::too_many_arguments)]
    pub async fn register_dataset(
        &self,
        salt: B256,
        uri: &str,
        manifest_digest: ManifestDigest,
        kms_url: &str,
        kms_key: B256,
        policy_hash: B256,
        privacy_budget: u64,
    ) -> Result<(DatasetId, TxOutcome)> {
        let call = self.contract.registerDataset(
            salt,
            uri.to_owned(),
            manifest_digest.to_b256(),
            kms_url.to_owned(),
            kms_key,
            policy_hash,
            privacy_budget,
        );
        let (outcome, receipt) = self.send(call).await?;
        let event: Strongroom::DatasetRegistered = find_event(&receipt, "DatasetRegistered")?;
        Ok((event.id, outcome))
    }

    /// Registers a new version of a dataset (new objects, keys or policy).
    pub async fn update_dataset(
        &self,
        id: DatasetId,
        uri: &str,
        manifest_digest: ManifestDigest,
        kms_url: &str,
        kms_key: B256,
        policy_hash: B256,
    ) -> Result<TxOutcome> {
        let (uri, kms_url, digest) = (uri.to_owned(), kms_url.to_owned(), manifest_digest.to_b256());
        let call = self.contract.updateDataset(id, uri, digest, kms_url, kms_key, policy_hash);
        self.send(call).await.map(|(o, _)| o)
    }

    pub async fn transfer_dataset(&self, id: DatasetId, new_owner: Address) -> Result<TxOutcome> {
        self.send(self.contract.transferDataset(id, new_owner)).await.map(|(o, _)| o)
    }

    pub async fn set_dataset_active(&self, id: DatasetId, active: bool) -> Result<TxOutcome> {
        self.send(self.contract.setDatasetActive(id, active)).await.map(|(o, _)| o)
    }

    pub async fn set_privacy_budget(&self, id: DatasetId, budget: u64) -> Result<TxOutcome> {
        self.send(self.contract.setPrivacyBudget(id, budget)).await.map(|(o, _)| o)
    }

    /// The id `registerDataset(salt, …)` from `owner` would get.
    pub async fn dataset_id(&self, owner: Address, salt: B256) -> Result<DatasetId> {
        self.contract.datasetId(owner, salt).call().await.map_err(|e| self.err(e))
    }

    /// The dataset, or `None` if no dataset has that id.
    pub async fn dataset(&self, id: DatasetId) -> Result<Option<DatasetInfo>> {
        let d = self.contract.getDataset(id).call().await.map_err(|e| self.err(e))?;
        if d.owner.is_zero() {
            return Ok(None);
        }
        Ok(Some(DatasetInfo {
            id,
            owner: d.owner,
            active: d.active,
            version: RegistryVersion::new(d.version),
            privacy_budget: d.privacyBudget,
            manifest_digest: ManifestDigest::new(d.manifestDigest),
            kms_key: d.kmsKey,
            policy_hash: d.policyHash,
            uri: d.uri,
            kms_url: d.kmsUrl,
        }))
    }

    /// Epsilon an analyst has spent on a dataset and holds reserved by running tasks.
    pub async fn privacy_spend(&self, dataset: DatasetId, analyst: Address) -> Result<(u64, u64)> {
        let s = self.contract.privacySpend(dataset, analyst).call().await.map_err(|e| self.err(e))?;
        Ok((s.spent, s.reserved))
    }

    // ---- apps ----

    pub async fn register_app(&self, salt: B256, code_hash: B256, uri: &str) -> Result<(B256, TxOutcome)> {
        let (outcome, receipt) = self.send(self.contract.registerApp(salt, code_hash, uri.to_owned())).await?;
        let event: Strongroom::AppRegistered = find_event(&receipt, "AppRegistered")?;
        Ok((event.id, outcome))
    }

    /// The app, or `None` if no app has that id.
    pub async fn app(&self, id: B256) -> Result<Option<AppInfo>> {
        let a = self.contract.getApp(id).call().await.map_err(|e| self.err(e))?;
        if a.owner.is_zero() {
            return Ok(None);
        }
        Ok(Some(AppInfo { id, owner: a.owner, code_hash: a.codeHash, uri: a.uri }))
    }

    // ---- pools ----

    pub async fn register_pool(&self, salt: B256) -> Result<(PoolId, TxOutcome)> {
        let (outcome, receipt) = self.send(self.contract.registerPool(salt)).await?;
        let event: Strongroom::PoolRegistered = find_event(&receipt, "PoolRegistered")?;
        Ok((event.id, outcome))
    }

    /// Adds `amount` to the pool's stake; each task locks a share of it until it settles.
    pub async fn deposit_stake(&self, pool: PoolId, amount: U256) -> Result<TxOutcome> {
        self.send(self.contract.depositStake(pool).value(amount)).await.map(|(o, _)| o)
    }

    pub async fn request_unstake(&self, pool: PoolId, amount: u128) -> Result<TxOutcome> {
        self.send(self.contract.requestUnstake(pool, amount)).await.map(|(o, _)| o)
    }

    pub async fn withdraw_unbonded(&self, pool: PoolId) -> Result<TxOutcome> {
        self.send(self.contract.withdrawUnbonded(pool)).await.map(|(o, _)| o)
    }

    pub async fn pool(&self, id: PoolId) -> Result<Option<PoolInfo>> {
        let p = self.contract.getPool(id).call().await.map_err(|e| self.err(e))?;
        if p.operator.is_zero() {
            return Ok(None);
        }
        Ok(Some(PoolInfo {
            id,
            operator: p.operator,
            stake: U256::from(p.stake),
            locked: U256::from(p.locked),
            unbonding: U256::from(p.unbonding),
            unbonding_at: p.unbondingAt,
        }))
    }

    /// The pool's operator, zero if the pool does not exist.
    pub async fn pool_operator(&self, pool: PoolId) -> Result<Address> {
        self.contract.poolOperator(pool).call().await.map_err(|e| self.err(e))
    }

    /// Authorizes `enclave` for the task on chain, as its pool operator (the sender), for good:
    /// what a contract operator does instead of signing `Authorization`.
    pub async fn presign_authorization(&self, task: &Task, enclave: Address) -> Result<TxOutcome> {
        self.send(self.contract.presignAuthorization(task.params.clone(), task.id, enclave)).await.map(|(o, _)| o)
    }

    /// Who authorized `enclave` for the task on chain (`presignAuthorization`), zero if nobody:
    /// how a contract-wallet pool, which cannot sign, assigns a task.
    pub async fn authorization_presigner(&self, task: U256, enclave: Address) -> Result<Address> {
        let digest = Authorization { taskId: task, enclave }.eip712_signing_hash(&self.domain());
        self.contract.presigner(digest).call().await.map_err(|e| self.err(e))
    }

    // ---- offers ----

    pub async fn presign_dataset_offer(&self, offer: &DatasetOffer) -> Result<TxOutcome> {
        self.send(self.contract.presignDatasetOffer(offer.into())).await.map(|(o, _)| o)
    }

    pub async fn cancel_dataset_offer(&self, offer: &DatasetOffer) -> Result<TxOutcome> {
        self.send(self.contract.cancelDatasetOffer(offer.into())).await.map(|(o, _)| o)
    }

    pub async fn cancel_pool_offer(&self, offer: &PoolOffer) -> Result<TxOutcome> {
        self.send(self.contract.cancelPoolOffer(offer.into())).await.map(|(o, _)| o)
    }

    /// How many tasks an offer has been used for (`u64::MAX` once cancelled).
    pub async fn offer_used(&self, offer_hash: B256) -> Result<u64> {
        self.contract.offerUsed(offer_hash).call().await.map_err(|e| self.err(e))
    }

    // ---- tasks ----

    /// Rents a dataset plus compute for an SQL job in one payable transaction.
    pub async fn rent(
        &self,
        dataset_offer: &DatasetOffer,
        dataset_sig: Bytes,
        pool_offer: &PoolOffer,
        pool_sig: Bytes,
        rental: &Rental,
        value: U256,
    ) -> Result<(Task, TxOutcome)> {
        let call = self
            .contract
            .rent(dataset_offer.into(), dataset_sig, pool_offer.into(), pool_sig, rental.clone())
            .value(value);
        self.send_rental(call).await
    }

    /// Rents a dataset, compute and an app in one payable transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn rent_app(
        &self,
        dataset_offer: &DatasetOffer,
        dataset_sig: Bytes,
        pool_offer: &PoolOffer,
        pool_sig: Bytes,
        app_offer: &AppOffer,
        app_sig: Bytes,
        rental: &Rental,
        value: U256,
    ) -> Result<(Task, TxOutcome)> {
        let call = self
            .contract
            .rentApp(
                dataset_offer.into(),
                dataset_sig,
                pool_offer.into(),
                pool_sig,
                app_offer.into(),
                app_sig,
                rental.clone(),
            )
            .value(value);
        self.send_rental(call).await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn submit_result(
        &self,
        task: &Task,
        digest: B256,
        location: &str,
        authorization: Bytes,
        enclave_signature: Bytes,
        outcome: Outcome,
    ) -> Result<TxOutcome> {
        let call = self.contract.submitResult(
            task.params.clone(),
            task.id,
            digest,
            location.to_owned(),
            authorization,
            enclave_signature,
            outcome.as_u8(),
        );
        self.send(call).await.map(|(o, _)| o)
    }

    /// Refunds a task whose keys were never shown released, once the claim window after its
    /// deadline is over: the analyst gets every price back, nobody is slashed.
    pub async fn refund(&self, task: &Task) -> Result<TxOutcome> {
        self.send(self.contract.refund(task.params.clone(), task.id)).await.map(|(o, _)| o)
    }

    /// Settles a task past its deadline with its key service's receipt that the keys were
    /// released: the owners are paid, the analyst gets the pool price back and the pool's stake.
    pub async fn refund_released(&self, task: &Task, receipt: &strongroom_types::ReleaseReceipt) -> Result<TxOutcome> {
        let call = self.contract.refundReleased(
            task.params.clone(),
            task.id,
            receipt.enclave,
            receipt.authorization.clone(),
            receipt.signature.clone(),
        );
        self.send(call).await.map(|(o, _)| o)
    }

    /// Binds a key service's sealing key to its receipt signer, with the signer's signature.
    pub async fn register_key_service(&self, sealing_key: B256, registration: Bytes) -> Result<TxOutcome> {
        self.send(self.contract.registerKeyService(sealing_key, registration)).await.map(|(o, _)| o)
    }

    /// Seconds after a task's deadline during which only a key service's receipt can settle it.
    pub async fn release_claim_window(&self) -> Result<u64> {
        self.contract.RELEASE_CLAIM_WINDOW().call().await.map_err(|e| self.err(e))
    }

    /// The signer registered for a key service's sealing key, if any.
    pub async fn key_service_signer(&self, sealing_key: B256) -> Result<Option<Address>> {
        let signer = self.contract.keyServiceSigner(sealing_key).call().await.map_err(|e| self.err(e))?;
        Ok((!signer.is_zero()).then_some(signer))
    }

    pub async fn withdraw(&self) -> Result<TxOutcome> {
        self.send(self.contract.withdraw()).await.map(|(o, _)| o)
    }

    pub async fn task_status(&self, id: TaskId) -> Result<TaskStatus> {
        let status = self.contract.taskStatus(id).call().await.map_err(|e| self.err(e))?;
        Ok(TaskStatus::from_u8(status))
    }

    /// The task with its parameters (from its `TaskCreated` event, checked against the
    /// commitment stored on chain) and its current status; `None` if it does not exist. Scans the
    /// chain's logs: a service answering requests asks a [`crate::ChainIndex`] instead.
    pub async fn task(&self, id: TaskId) -> Result<Option<Task>> {
        let commitment = self.task_commitment(id).await?;
        if commitment.is_zero() {
            return Ok(None);
        }
        let logs =
            self.contract.TaskCreated_filter().topic1(id).from_block(0).query().await.map_err(|e| self.err(e))?;
        let Some((event, log)) = logs.into_iter().next() else {
            return Err(ChainError::MissingEvent("TaskCreated"));
        };
        checked_task(task_from_event(event, log.block_number.unwrap_or_default()), commitment).map(Some)
    }

    /// The task's commitment as stored: the hash of its parameters, its status in the last byte;
    /// zero if it does not exist.
    pub async fn task_commitment(&self, id: TaskId) -> Result<B256> {
        self.contract.taskCommitment(id).call().await.map_err(|e| self.err(e))
    }

    /// The contract's logs of the events `events` in blocks `from..=to`, in the chain's order.
    pub async fn contract_logs(&self, from: u64, to: u64, events: &[B256]) -> Result<Vec<alloy::rpc::types::Log>> {
        let filter = alloy::rpc::types::Filter::new()
            .address(self.address())
            .event_signature(events.to_vec())
            .from_block(from)
            .to_block(to);
        self.provider.get_logs(&filter).await.map_err(|e| rpc(&self.url, e))
    }

    /// The hash of block `number` as the chain has it now; `None` past the head.
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>> {
        let block = self.provider.get_block_by_number(number.into()).await.map_err(|e| rpc(&self.url, e))?;
        Ok(block.map(|b| b.header.hash))
    }

    /// The block the contract was deployed in: the first whose state holds its code, found by
    /// bisection (a few dozen reads on any chain).
    pub async fn deployment_block(&self) -> Result<u64> {
        let has_code = |block: u64| async move {
            let code = self.provider.get_code_at(self.address()).number(block).await.map_err(|e| rpc(&self.url, e))?;
            Ok::<_, ChainError>(!code.is_empty())
        };
        let (mut low, mut high) = (0, self.block_number().await?);
        while low < high {
            let mid = low + (high - low) / 2;
            match has_code(mid).await? {
                true => high = mid,
                false => low = mid + 1,
            }
        }
        Ok(low)
    }

    /// Withdrawable balance held by the contract for `account`.
    pub async fn balance_of(&self, account: Address) -> Result<U256> {
        self.contract.balances(account).call().await.map_err(|e| self.err(e))
    }

    // ---- blocks and events ----

    pub async fn block_number(&self) -> Result<u64> {
        self.provider.get_block_number().await.map_err(|e| rpc(&self.url, e))
    }

    /// The latest block by number and hash, which a quote binds to show it is fresh.
    pub async fn recent_block(&self) -> Result<strongroom_types::RecentBlock> {
        let header = self.latest_header().await?;
        Ok(strongroom_types::RecentBlock { number: header.number, hash: header.hash })
    }

    /// The timestamp of the latest block: the contract's notion of "now".
    pub async fn block_timestamp(&self) -> Result<u64> {
        Ok(self.latest_header().await?.timestamp)
    }

    async fn latest_header(&self) -> Result<alloy::rpc::types::Header> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| rpc(&self.url, e))?
            .ok_or_else(|| ChainError::Rpc { url: self.url.clone(), reason: "no latest block".into() })?;
        Ok(block.header)
    }

    /// The URL the dataset gave, in its registration or its latest update naming it, for the key
    /// service of key `kms_key`: where a task rented against that key service gets its keys.
    pub async fn key_service_url_for(&self, dataset: DatasetId, kms_key: B256) -> Result<Option<String>> {
        Ok(key_service_url_for(&self.dataset_history(dataset).await?, kms_key))
    }

    async fn dataset_history(&self, dataset: DatasetId) -> Result<Vec<DatasetRecordAt>> {
        let filter = alloy::rpc::types::Filter::new()
            .address(self.address())
            .event_signature(vec![
                Strongroom::DatasetRegistered::SIGNATURE_HASH,
                Strongroom::DatasetUpdated::SIGNATURE_HASH,
            ])
            .topic1(dataset)
            .from_block(0);
        let logs = self.provider.get_logs(&filter).await.map_err(|e| rpc(&self.url, e))?;
        dataset_records_from_logs(dataset, logs, &self.url)
    }

    /// The `ResultSubmitted` event of `task_id`, once the worker has published it.
    pub async fn result_submitted(&self, task_id: TaskId, from: u64) -> Result<Option<ResultEvent>> {
        let logs = self
            .contract
            .ResultSubmitted_filter()
            .topic1(task_id)
            .from_block(from)
            .query()
            .await
            .map_err(|e| self.err(e))?;
        Ok(logs.into_iter().next().map(|(e, log)| ResultEvent {
            task_id,
            enclave: e.enclave,
            digest: e.digest,
            location: e.location,
            outcome: Outcome::from_u8(e.outcome),
            tx_hash: log.transaction_hash.unwrap_or_default(),
        }))
    }

    /// Gas used by a mined transaction.
    pub async fn receipt_gas(&self, tx: B256) -> Result<u64> {
        let receipt = self.provider.get_transaction_receipt(tx).await.map_err(|e| rpc(&self.url, e))?;
        receipt
            .map(|r| r.gas_used)
            .ok_or_else(|| ChainError::Rpc { url: self.url.clone(), reason: format!("no receipt for {tx}") })
    }

    /// Sends a `rent`/`rentApp` call and reads the new task from its `TaskCreated` event.
    async fn send_rental<C: alloy::sol_types::SolCall>(
        &self,
        call: alloy::contract::SolCallBuilder<&DynProvider, C>,
    ) -> Result<(Task, TxOutcome)> {
        let (outcome, receipt) = self.send(call).await?;
        let event: Strongroom::TaskCreated = find_event(&receipt, "TaskCreated")?;
        Ok((task_from_event(event, outcome.block), outcome))
    }

    async fn send<C: alloy::sol_types::SolCall>(
        &self,
        call: alloy::contract::SolCallBuilder<&DynProvider, C>,
    ) -> Result<(TxOutcome, TransactionReceipt)> {
        let pending = {
            let _one_at_a_time = self.broadcasting.lock().await;
            call.send().await.map_err(|e| self.err(e))?
        };
        let receipt = pending
            .with_timeout(Some(Duration::from_secs(60)))
            .get_receipt()
            .await
            .map_err(|e| ChainError::Rpc { url: self.url.clone(), reason: e.to_string() })?;
        if !receipt.status() {
            return Err(ChainError::Failed(receipt.transaction_hash));
        }
        let outcome = TxOutcome {
            hash: receipt.transaction_hash,
            gas_used: receipt.gas_used,
            block: receipt.block_number.unwrap_or_default(),
        };
        Ok((outcome, receipt))
    }

    fn err(&self, e: alloy::contract::Error) -> ChainError {
        ChainError::from_contract(&self.url, e)
    }
}

fn rpc(url: &str, e: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc { url: url.to_owned(), reason: e.to_string() }
}

/// `keccak256(abi.encode(params))`, the word the contract stores (status in its low byte).
pub fn commitment_hash(params: &TaskParams) -> B256 {
    alloy::primitives::keccak256(alloy::sol_types::SolValue::abi_encode(params))
}

/// Every record the dataset's registration and update logs set (any order; other logs are
/// skipped), newest first.
pub(crate) fn dataset_records_from_logs(
    dataset: DatasetId,
    logs: Vec<alloy::rpc::types::Log>,
    url: &str,
) -> Result<Vec<DatasetRecordAt>> {
    use Strongroom::{DatasetRegistered, DatasetUpdated};
    let mut records = Vec::with_capacity(logs.len());
    for log in logs {
        let (Some(block), Some(index)) = (log.block_number, log.log_index) else { continue };
        if log.topics().get(1) != Some(&dataset) {
            continue;
        }
        let decode_error =
            |e: alloy::sol_types::Error| rpc(url, format!("a dataset event of {dataset} does not decode: {e}"));
        let record = match log.topic0() {
            Some(&DatasetRegistered::SIGNATURE_HASH) => {
                let e = log.log_decode::<DatasetRegistered>().map_err(decode_error)?.inner.data;
                DatasetRecordAt { manifest_digest: e.manifestDigest, uri: e.uri, kms_key: e.kmsKey, kms_url: e.kmsUrl }
            }
            Some(&DatasetUpdated::SIGNATURE_HASH) => {
                let e = log.log_decode::<DatasetUpdated>().map_err(decode_error)?.inner.data;
                DatasetRecordAt { manifest_digest: e.manifestDigest, uri: e.uri, kms_key: e.kmsKey, kms_url: e.kmsUrl }
            }
            _ => continue,
        };
        records.push(((block, index), record));
    }
    records.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    Ok(records.into_iter().map(|(_, r)| r).collect())
}

/// The URI of the newest record naming `manifest`.
pub(crate) fn uri_for(history: &[DatasetRecordAt], manifest: ManifestDigest) -> Option<String> {
    history.iter().find(|r| r.manifest_digest == manifest.to_b256()).map(|r| r.uri.clone())
}

/// The key-service URL of the newest record naming key `kms_key`.
pub(crate) fn key_service_url_for(history: &[DatasetRecordAt], kms_key: B256) -> Option<String> {
    history.iter().find(|r| r.kms_key == kms_key).map(|r| r.kms_url.clone())
}

/// The states a dataset has been in, from its registration, update and transfer logs (any
/// order; other logs are skipped).
pub(crate) fn dataset_states_from_logs(
    dataset: DatasetId,
    logs: Vec<alloy::rpc::types::Log>,
    url: &str,
) -> Result<Vec<DatasetState>> {
    use Strongroom::{DatasetRegistered, DatasetTransferred, DatasetUpdated};
    enum Change {
        Registered(Address, B256, B256),
        Updated(B256, B256),
        Transferred(Address),
    }
    let mut changes = Vec::with_capacity(logs.len());
    for log in logs {
        // A log without its place in a block is pending: not a state the dataset was in.
        let (Some(block), Some(index)) = (log.block_number, log.log_index) else { continue };
        if log.topics().get(1) != Some(&dataset) {
            continue;
        }
        let change = match log.topic0() {
            Some(&DatasetRegistered::SIGNATURE_HASH) => log
                .log_decode::<DatasetRegistered>()
                .map(|l| Change::Registered(l.inner.owner, l.inner.manifestDigest, l.inner.policyHash)),
            Some(&DatasetUpdated::SIGNATURE_HASH) => {
                log.log_decode::<DatasetUpdated>().map(|l| Change::Updated(l.inner.manifestDigest, l.inner.policyHash))
            }
            Some(&DatasetTransferred::SIGNATURE_HASH) => {
                log.log_decode::<DatasetTransferred>().map(|l| Change::Transferred(l.inner.to))
            }
            _ => continue,
        }
        .map_err(|e| rpc(url, format!("a dataset event of {dataset} does not decode: {e}")))?;
        changes.push(((block, index), change));
    }
    changes.sort_by_key(|(at, _)| *at);
    let mut states: Vec<DatasetState> = Vec::with_capacity(changes.len());
    for (_, change) in changes {
        let state = match (change, states.last()) {
            (Change::Registered(owner, manifest, policy_hash), _) => {
                DatasetState { owner, manifest_digest: ManifestDigest::new(manifest), policy_hash }
            }
            (Change::Updated(manifest, policy_hash), Some(last)) => {
                DatasetState { manifest_digest: ManifestDigest::new(manifest), policy_hash, ..*last }
            }
            (Change::Transferred(owner), Some(last)) => DatasetState { owner, ..*last },
            (_, None) => return Err(ChainError::MissingEvent("DatasetRegistered")),
        };
        states.push(state);
    }
    Ok(states)
}

/// A task read from its event, checked against the commitment the chain stores for it.
pub(crate) fn checked_task(mut task: Task, commitment: B256) -> Result<Task> {
    if commitment_hash(&task.params)[..31] != commitment[..31] {
        return Err(ChainError::CommitmentMismatch(task.id));
    }
    task.status = TaskStatus::from_u8(commitment[31]);
    Ok(task)
}

pub(crate) fn task_from_event(event: Strongroom::TaskCreated, block: u64) -> Task {
    Task { id: event.taskId, params: event.params, spec: event.spec, status: TaskStatus::Active, block }
}

fn find_event<E: SolEvent>(receipt: &TransactionReceipt, name: &'static str) -> Result<E> {
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| log.log_decode::<E>().ok())
        .map(|l| l.inner.data)
        .ok_or(ChainError::MissingEvent(name))
}
