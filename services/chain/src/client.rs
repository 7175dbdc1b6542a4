//! One connection to one deployment, with an optional signer for transactions.

use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::fillers::GasFiller;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolEvent};
use strongroom_types::{DatasetId, DatasetOffer, PoolId, PoolOffer, Quote, TaskId, domain};

use crate::Strongroom::{self, StrongroomInstance};
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
    pub checksum: B256,
    pub kms_key: B256,
    pub policy_hash: B256,
    pub uri: String,
    pub kms_url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    None,
    Active,
    Completed,
    Failed,
    Refunded,
}

impl TaskStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Active,
            2 => Self::Completed,
            3 => Self::Failed,
            4 => Self::Refunded,
            _ => Self::None,
        }
    }
}

/// A task as stored on chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: TaskId,
    pub dataset: DatasetId,
    pub pool: PoolId,
    pub analyst: Address,
    pub deadline: u64,
    pub status: TaskStatus,
    pub dataset_price: U256,
    pub pool_price: U256,
    pub job_hash: B256,
    pub result_key: B256,
    pub result_digest: B256,
}

/// A `TaskCreated` event: everything a worker needs to run the task.
#[derive(Clone, Debug)]
pub struct TaskCreated {
    pub task_id: TaskId,
    pub dataset: DatasetId,
    pub pool: PoolId,
    pub analyst: Address,
    pub deadline: u64,
    pub job_hash: B256,
    pub result_key: B256,
    pub sql: String,
    pub block: u64,
}

/// A `ResultSubmitted` event.
#[derive(Clone, Debug)]
pub struct ResultEvent {
    pub task_id: TaskId,
    pub enclave: Address,
    pub digest: B256,
    pub location: String,
    pub failed: bool,
    pub tx_hash: B256,
}

/// A handle on the Strongroom contract of one chain.
#[derive(Clone, Debug)]
pub struct Chain {
    url: String,
    provider: DynProvider,
    contract: StrongroomInstance<DynProvider>,
    chain_id: u64,
    sender: Option<Address>,
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
        let parsed =
            url.parse().map_err(|e| ChainError::Rpc { url: url.to_owned(), reason: format!("not a URL: {e}") })?;
        let sender = signer.as_ref().map(|s| s.address());
        let provider = match signer {
            // The nonce is read from the chain for every transaction: a cached nonce would be
            // consumed by a call that reverts during estimation and stall the next one.
            Some(signer) => ProviderBuilder::new()
                .disable_recommended_fillers()
                .filler(GasFiller::default())
                .with_simple_nonce_management()
                .fetch_chain_id()
                .wallet(EthereumWallet::from(signer))
                .connect_http(parsed)
                .erased(),
            None => ProviderBuilder::new().connect_http(parsed).erased(),
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
        Self { url: url.to_owned(), provider, contract, chain_id, sender }
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

    pub async fn set_platform_key(&self, key: Address, trusted: bool) -> Result<TxOutcome> {
        self.send(self.contract.setPlatformKey(key, trusted)).await.map(|(o, _)| o)
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

    // ---- datasets and pools ----

    pub async fn register_dataset(
        &self,
        salt: B256,
        uri: &str,
        checksum: B256,
        kms_url: &str,
        kms_key: B256,
        policy_hash: B256,
    ) -> Result<(DatasetId, TxOutcome)> {
        let call =
            self.contract.registerDataset(salt, uri.to_owned(), checksum, kms_url.to_owned(), kms_key, policy_hash);
        let (outcome, receipt) = self.send(call).await?;
        let event: Strongroom::DatasetRegistered = find_event(&receipt, "DatasetRegistered")?;
        Ok((event.id, outcome))
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
            checksum: d.checksum,
            kms_key: d.kmsKey,
            policy_hash: d.policyHash,
            uri: d.uri,
            kms_url: d.kmsUrl,
        }))
    }

    pub async fn register_pool(&self, salt: B256) -> Result<(PoolId, TxOutcome)> {
        let (outcome, receipt) = self.send(self.contract.registerPool(salt)).await?;
        let event: Strongroom::PoolRegistered = find_event(&receipt, "PoolRegistered")?;
        Ok((event.id, outcome))
    }

    /// The pool's operator, zero if the pool does not exist.
    pub async fn pool_operator(&self, pool: PoolId) -> Result<Address> {
        self.contract.poolOperator(pool).call().await.map_err(|e| self.err(e))
    }

    // ---- tasks ----

    /// Rents a dataset plus compute in one payable transaction; returns the new task's id.
    #[allow(clippy::too_many_arguments)]
    pub async fn rent(
        &self,
        dataset_offer: &DatasetOffer,
        dataset_sig: Bytes,
        pool_offer: &PoolOffer,
        pool_sig: Bytes,
        result_key: B256,
        sql: &str,
        value: U256,
    ) -> Result<(TaskId, TxOutcome)> {
        let call = self
            .contract
            .rent(dataset_offer.into(), dataset_sig, pool_offer.into(), pool_sig, result_key, sql.to_owned())
            .value(value);
        let (outcome, receipt) = self.send(call).await?;
        let event: Strongroom::TaskCreated = find_event(&receipt, "TaskCreated")?;
        Ok((event.taskId, outcome))
    }

    pub async fn submit_result(
        &self,
        task_id: TaskId,
        digest: B256,
        location: &str,
        authorization: Bytes,
        enclave_signature: Bytes,
        failed: bool,
    ) -> Result<TxOutcome> {
        let call =
            self.contract.submitResult(task_id, digest, location.to_owned(), authorization, enclave_signature, failed);
        self.send(call).await.map(|(o, _)| o)
    }

    pub async fn refund(&self, task_id: TaskId) -> Result<TxOutcome> {
        self.send(self.contract.refund(task_id)).await.map(|(o, _)| o)
    }

    pub async fn withdraw(&self) -> Result<TxOutcome> {
        self.send(self.contract.withdraw()).await.map(|(o, _)| o)
    }

    pub async fn task(&self, id: TaskId) -> Result<TaskInfo> {
        let t = self.contract.getTask(id).call().await.map_err(|e| self.err(e))?;
        Ok(TaskInfo {
            id,
            dataset: t.dataset,
            pool: t.pool,
            analyst: t.analyst,
            deadline: t.deadline,
            status: TaskStatus::from_u8(t.status),
            dataset_price: U256::from(t.datasetPrice),
            pool_price: U256::from(t.poolPrice),
            job_hash: t.jobHash,
            result_key: t.resultKey,
            result_digest: t.resultDigest,
        })
    }

    /// Withdrawable balance held by the contract for `account`.
    pub async fn balance_of(&self, account: Address) -> Result<U256> {
        self.contract.balances(account).call().await.map_err(|e| self.err(e))
    }

    // ---- blocks and events ----

    pub async fn block_number(&self) -> Result<u64> {
        self.provider.get_block_number().await.map_err(|e| rpc(&self.url, e))
    }

    /// The timestamp of the latest block: the contract's notion of "now".
    pub async fn block_timestamp(&self) -> Result<u64> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| rpc(&self.url, e))?
            .ok_or_else(|| ChainError::Rpc { url: self.url.clone(), reason: "no latest block".into() })?;
        Ok(block.header.timestamp)
    }

    /// Tasks created for `pool` in blocks `from..=to`.
    pub async fn tasks_created(&self, pool: PoolId, from: u64, to: u64) -> Result<Vec<TaskCreated>> {
        let logs = self
            .contract
            .TaskCreated_filter()
            .topic3(pool)
            .from_block(from)
            .to_block(to)
            .query()
            .await
            .map_err(|e| self.err(e))?;
        Ok(logs
            .into_iter()
            .map(|(e, log)| TaskCreated {
                task_id: e.taskId,
                dataset: e.dataset,
                pool: e.pool,
                analyst: e.analyst,
                deadline: e.deadline,
                job_hash: e.jobHash,
                result_key: e.resultKey,
                sql: e.sql,
                block: log.block_number.unwrap_or_default(),
            })
            .collect())
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
            failed: e.failed,
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

    /// Moves the devnet clock forward (anvil only): for refund paths in tests and demos.
    pub async fn dev_increase_time(&self, seconds: u64) -> Result<()> {
        let _: serde_json::Value =
            self.provider.raw_request("evm_increaseTime".into(), (seconds,)).await.map_err(|e| rpc(&self.url, e))?;
        let _: serde_json::Value =
            self.provider.raw_request("evm_mine".into(), ()).await.map_err(|e| rpc(&self.url, e))?;
        Ok(())
    }

    async fn send<C: alloy::sol_types::SolCall>(
        &self,
        call: alloy::contract::SolCallBuilder<&DynProvider, C>,
    ) -> Result<(TxOutcome, TransactionReceipt)> {
        let pending = call.send().await.map_err(|e| self.err(e))?;
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

fn find_event<E: SolEvent>(receipt: &TransactionReceipt, name: &'static str) -> Result<E> {
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| log.log_decode::<E>().ok())
        .map(|l| l.inner.data)
        .ok_or(ChainError::MissingEvent(name))
}
