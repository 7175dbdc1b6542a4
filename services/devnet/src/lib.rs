//! A whole Strongroom on one machine, in one process: anvil, the contract (governed by dev
//! account 0), the simulated platform trusted on chain, the key service and the market on
//! loopback ports the OS picks, a pool with a listed offer, and optionally a worker.
//!
//! The local node, anvil's public development keys and time travel live here, out of the
//! chain crate's production API. `strongroom demo`, `strongroom devnet` and the end-to-end
//! tests start a [`Devnet`]; nothing else should.

mod node;
mod platform;

pub use node::{DEV_KEYS, DevNode, increase_time, mine_blocks};
pub use platform::PlatformProcess;

/// Has the child started by `command` killed when the thread starting it ends: the devnet's,
/// which lives as long as the devnet does (a runtime's worker or its `block_on` thread, never a
/// blocking-pool thread). A devnet killed with SIGKILL, which it cannot catch, so leaves no
/// anvil or platform daemon behind.
#[allow(unsafe_code)]
fn dies_with_devnet(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let devnet = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec, and calls only prctl and getppid, which
    // are async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Died before the prctl took: no signal would come.
            if libc::getppid() != devnet {
                return Err(std::io::Error::other("the devnet exited while starting its child"));
            }
            Ok(())
        });
    }
}

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{B256, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use strongroom_chain::Chain;
use strongroom_chain::PlatformKind;
use strongroom_client::owner::Owner;
use strongroom_client::{KeyBackup, MarketClient};
use strongroom_enclave_sim::measure;
use strongroom_kms::{KmsConfig, KmsHandle};
use strongroom_market::{MarketConfig, MarketHandle};
use strongroom_storage::Storage;
use strongroom_types::{PoolId, PoolOffer, PostOfferRequest, StorageUrl, random_salt, sign_typed};
use strongroom_worker::{WorkerConfig, WorkerHandle};
use tracing::info;

/// Why the local stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("local node: {0}")]
    Node(String),
    #[error("{what}")]
    Io { what: String, source: std::io::Error },
    #[error("the enclave binary is needed to trust its measurement: build it with `cargo build --bins` ({0})")]
    EnclaveBinary(strongroom_enclave_sim::Error),
    #[error(transparent)]
    Platform(#[from] strongroom_enclave_sim::Error),
    #[error(transparent)]
    Chain(#[from] strongroom_chain::ChainError),
    #[error("key service: {0}")]
    Kms(#[from] strongroom_kms::KmsError),
    #[error("market: {0}")]
    Market(#[from] strongroom_market::MarketError),
    #[error("worker: {0}")]
    Worker(#[from] strongroom_worker::WorkerError),
    #[error(transparent)]
    Client(#[from] strongroom_client::ClientError),
    #[error(transparent)]
    Storage(#[from] strongroom_storage::StorageError),
    #[error(transparent)]
    Url(#[from] strongroom_types::Error),
}

pub type Result<T, E = DevnetError> = std::result::Result<T, E>;

/// Roles played by anvil's development accounts.
pub fn governance_key() -> PrivateKeySigner {
    DEV_KEYS[0].parse().expect("valid dev key")
}
pub fn owner_key() -> PrivateKeySigner {
    DEV_KEYS[1].parse().expect("valid dev key")
}
pub fn operator_key() -> PrivateKeySigner {
    DEV_KEYS[2].parse().expect("valid dev key")
}
pub fn analyst_key() -> PrivateKeySigner {
    DEV_KEYS[3].parse().expect("valid dev key")
}

#[derive(Clone, Debug)]
pub struct DevnetOptions {
    pub data_dir: PathBuf,
    pub anvil: PathBuf,
    pub enclave_binary: PathBuf,
    /// Start a worker serving the pool.
    pub with_worker: bool,
    pub pool_price: U256,
    /// Stake the operator deposits; each task locks a share of it until it settles.
    pub pool_stake: U256,
    /// The pool's maximum task duration: the deadline after which a task is refundable.
    pub max_task_duration: Duration,
    /// Where dataset objects and sealed results go; `<data-dir>/objects` and `<data-dir>/results`
    /// when `None`.
    pub objects_url: Option<StorageUrl>,
    pub results_url: Option<StorageUrl>,
    /// Storage credentials, shared by every party of the devnet.
    pub storage: Storage,
    /// A file the chain's state is dumped to every second and started from (see
    /// [`DevNode::spawn_with_state`]); `None`: the chain lives in memory only.
    pub chain_state: Option<PathBuf>,
}

impl DevnetOptions {
    pub fn new(data_dir: &Path, enclave_binary: PathBuf) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            anvil: DevNode::default_binary(),
            enclave_binary,
            with_worker: true,
            pool_price: U256::from(1_000_000_000_000_000u64),
            pool_stake: U256::from(1_000_000_000_000_000_000u64),
            max_task_duration: Duration::from_secs(600),
            objects_url: None,
            results_url: None,
            storage: Storage::default(),
            chain_state: None,
        }
    }
}

/// The running stack. [`Devnet::shutdown`] stops it in reverse order.
pub struct Devnet {
    pub node: DevNode,
    pub governance: Chain,
    pub kms: KmsHandle,
    pub market: MarketHandle,
    pub worker: Option<WorkerHandle>,
    /// The platform daemon: the devnet knows its key's address and socket, never its key.
    pub platform: PlatformProcess,
    pub measurement: B256,
    pub pool: PoolId,
    /// The pool's offer staking on the devnet's key service.
    pub pool_offer: PoolOffer,
    pub pool_offer_signature: Bytes,
    /// The pool's offer for datasets of any other key service, at the same price: it stakes nothing.
    pub open_pool_offer: PoolOffer,
    pub open_pool_offer_signature: Bytes,
    /// Storage URL for dataset objects.
    pub objects_url: StorageUrl,
    /// Storage URL for sealed results.
    pub results_url: StorageUrl,
    pub options: DevnetOptions,
}

impl Devnet {
    pub async fn start(options: DevnetOptions) -> Result<Self> {
        std::fs::create_dir_all(&options.data_dir)
            .map_err(|source| DevnetError::Io { what: format!("creating {}", options.data_dir.display()), source })?;
        let node = DevNode::spawn_with_state(&options.anvil, options.chain_state.as_deref())?;
        let governance = Chain::deploy(node.url(), governance_key(), true).await?;
        info!(contract = %governance.address(), rpc = node.url(), "contract deployed (simulated quotes accepted: devnet)");

        let measurement = measure(&options.enclave_binary).map_err(DevnetError::EnclaveBinary)?;
        let platform = PlatformProcess::spawn(
            &PlatformProcess::locate(&options.enclave_binary),
            &options.data_dir,
            &options.enclave_binary,
        )?;
        governance.set_platform_key(platform.key(), PlatformKind::Simulated).await?;
        let identity = platform.info().identity;
        governance.set_enclave_identity(identity.signer, identity.product_id, identity.svn).await?;
        governance.set_measurement(measurement, true).await?;

        let kms = strongroom_kms::spawn(
            KmsConfig {
                data_dir: options.data_dir.join("kms"),
                rpc_url: node.url().into(),
                contract: governance.address(),
                confirmations: 0,
                halt_after_binding: false,
            },
            loopback()?,
        )
        .await?;
        let market = strongroom_market::spawn(
            MarketConfig {
                data_dir: options.data_dir.join("market"),
                rpc_url: node.url().into(),
                contract: governance.address(),
            },
            loopback()?,
        )
        .await?;

        // The key service's registration, signed by it, posted by anyone: here governance.
        let kms_key = kms.info().public_key.to_b256();
        governance.register_key_service(kms_key, kms.info().registration.clone()).await?;

        let operator = governance.with_signer(operator_key()).await?;
        let (pool, _) = operator.register_pool(random_salt()).await?;
        operator.deposit_stake(pool, options.pool_stake).await?;
        // The pool stakes on the devnet's key service, whose receipts it trusts.
        let pool_offer = PoolOffer {
            pool,
            price: options.pool_price,
            volume: 1_000_000,
            maxDuration: options.max_task_duration.as_secs(),
            validUntil: u64::MAX,
            keyService: kms_key,
            salt: random_salt(),
        };
        let pool_offer_signature = sign_typed(operator_key().credential(), &pool_offer, &governance.domain());
        let open_pool_offer = PoolOffer { keyService: B256::ZERO, salt: random_salt(), ..pool_offer.clone() };
        let open_pool_offer_signature = sign_typed(operator_key().credential(), &open_pool_offer, &governance.domain());
        let market_client = MarketClient::new(&market.url())?;
        for (offer, signature) in [(&pool_offer, &pool_offer_signature), (&open_pool_offer, &open_pool_offer_signature)]
        {
            market_client
                .post_offer(&PostOfferRequest::Pool { offer: offer.clone(), signature: signature.clone() })
                .await?;
        }

        let objects_url = match &options.objects_url {
            Some(url) => url.clone(),
            None => StorageUrl::from_path(&options.data_dir.join("objects"))?,
        };
        let results_url = match &options.results_url {
            Some(url) => url.clone(),
            None => StorageUrl::from_path(&options.data_dir.join("results"))?,
        };
        let mut devnet = Self {
            node,
            governance,
            kms,
            market,
            worker: None,
            platform,
            measurement,
            pool,
            pool_offer,
            pool_offer_signature,
            open_pool_offer,
            open_pool_offer_signature,
            objects_url,
            results_url,
            options,
        };
        if devnet.options.with_worker {
            devnet.worker = Some(devnet.start_worker().await?);
        }
        Ok(devnet)
    }

    /// The pool's offer for datasets sealed to key service `kms_key`: the staking one for the
    /// devnet's key service, the open one for any other.
    pub fn pool_offer_for(&self, kms_key: B256) -> (&PoolOffer, &Bytes) {
        if kms_key == self.pool_offer.keyService {
            (&self.pool_offer, &self.pool_offer_signature)
        } else {
            (&self.open_pool_offer, &self.open_pool_offer_signature)
        }
    }

    /// Starts a worker for the devnet's pool (its enclave registers itself on chain).
    pub async fn start_worker(&self) -> Result<WorkerHandle> {
        self.start_worker_from(None).await
    }

    /// Starts a worker that looks for tasks from `start_block` on (see [`WorkerConfig::start_block`]).
    pub async fn start_worker_from(&self, start_block: Option<u64>) -> Result<WorkerHandle> {
        let config = WorkerConfig {
            rpc_url: self.node.url().into(),
            contract: self.governance.address(),
            operator_key: operator_key(),
            pool: self.pool,
            enclave_binary: self.options.enclave_binary.clone(),
            platform_socket: self.platform.socket().to_owned(),
            dataset_storage: vec![self.objects_url.clone()],
            state_dir: self.options.data_dir.join("worker"),
            results_url: self.results_url.clone(),
            storage: self.options.storage.clone(),
            poll_interval: Duration::from_millis(50),
            start_block,
            concurrent_tasks: 4,
            halt_at: None,
        };
        Ok(strongroom_worker::spawn(config).await?)
    }

    /// The deployment as `signer` sees it.
    pub async fn chain_as(&self, signer: PrivateKeySigner) -> Result<Chain> {
        Ok(self.governance.with_signer(signer).await?)
    }

    /// The devnet's data owner (dev account 1), its key backup under `<data-dir>/owner`.
    pub async fn owner(&self) -> Result<Owner> {
        let chain = self.chain_as(owner_key()).await?;
        let backup = KeyBackup::new(&self.options.data_dir.join("owner"));
        Ok(Owner::new(chain, owner_key(), backup, self.options.storage.clone())?)
    }

    /// Moves the chain's clock forward by `seconds` and mines a block.
    pub async fn increase_time(&self, seconds: u64) -> Result<()> {
        increase_time(&self.governance, seconds).await
    }

    pub fn rpc_url(&self) -> &str {
        self.node.url()
    }

    pub async fn shutdown(self) {
        if let Some(worker) = self.worker {
            worker.shutdown().await;
        }
        self.market.shutdown().await;
        self.kms.shutdown().await;
        drop(self.node);
    }
}

fn loopback() -> Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
        .map_err(|source| DevnetError::Io { what: "binding a loopback port".into(), source })
}
