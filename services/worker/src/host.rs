//! The host loop: watch the pool's tasks, relay keys, feed the enclave, publish results.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use futures::{StreamExt, TryStreamExt};
use sha2::Digest;
use strongroom_chain::{Chain, ChainIndex, IndexOptions, Task, TaskStatus, commitment_hash};
use strongroom_client::KmsClient;
use strongroom_dataplane::Manifest;
use strongroom_enclave_sim::{PlatformDaemon, QuoteVerifier, SimulatedVerifier};
use strongroom_storage as storage;
use strongroom_types::protocol::{EnclaveReply, HostRequest};
use strongroom_types::{
    Authorization, Outcome, PoolId, Quote, ReleaseRequest, StorageUrl, X25519PublicKey, sign_typed,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::enclave_client::EnclaveClient;
use crate::journal::{Computed, Deployment, Journal, Step};

/// Worker configuration. The operator key signs authorizations and pays for transactions.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub rpc_url: String,
    pub contract: Address,
    pub operator_key: PrivateKeySigner,
    pub pool: PoolId,
    /// The enclave program to launch (its sha256 must be a trusted measurement).
    pub enclave_binary: PathBuf,
    /// The socket of the platform daemon (`strongroom-platform`), which launches the enclave
    /// and alone holds the key that signs its quotes.
    pub platform_socket: PathBuf,
    /// Where the host keeps the enclave's identity, sealed by the enclave under its platform's
    /// sealing key (unreadable here): a restart takes it back and keeps the registration.
    pub state_dir: PathBuf,
    /// The storage prefixes the worker reads datasets from; a task of a dataset elsewhere (say
    /// `file:///etc`) is declined before anything is read.
    pub dataset_storage: Vec<StorageUrl>,
    /// Storage URL under which sealed results are written (`file:///…/results`, `s3://…`).
    pub results_url: StorageUrl,
    /// The operator's storage credentials: read datasets, write results.
    pub storage: storage::Storage,
    pub poll_interval: Duration,
    /// First block to look for tasks in: after a restart, the tasks created while the worker
    /// was down are served if still active. `None`: from the chain head at start.
    pub start_block: Option<u64>,
    /// How many tasks are served at once (at most [`MAX_CONCURRENT_TASKS`]).
    pub concurrent_tasks: usize,
    /// A fault drill: the step at which the worker stops serving a task and waits to be killed
    /// (`STRONGROOM_WORKER_HALT_AT`); `None` in service.
    pub halt_at: Option<Step>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("enclave: {0}")]
    Enclave(String),
    #[error("attestation: {0}")]
    Attestation(#[from] strongroom_enclave_sim::Error),
    #[error(transparent)]
    KeyService(#[from] strongroom_client::ClientError),
    #[error("dataset {0} of the task is not registered")]
    UnknownDataset(alloy::primitives::B256),
    #[error("dataset {0} never had a version with manifest {1}")]
    UnknownDataVersion(alloy::primitives::B256, strongroom_types::ManifestDigest),
    #[error("dataset {0} never named a key service of key {1}, the one the task was rented against")]
    UnknownKeyService(alloy::primitives::B256, alloy::primitives::B256),
    #[error("the dataset manifest at {0} {1}")]
    BadManifest(String, String),
    #[error("chain: {0}")]
    Chain(#[from] strongroom_chain::ChainError),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Url(#[from] strongroom_types::Error),
    #[error(
        "the task's deadline (unix time {deadline}) is too close to serve it (now {now}): its keys are not asked for"
    )]
    TooLate { deadline: u64, now: u64 },
    #[error("dataset manifest {0} is not under a storage prefix this worker reads datasets from: the task is declined")]
    StorageNotAllowed(StorageUrl),
    #[error("the storage does not serve what the task was rented against ({0}): its keys are not asked for")]
    NotAsRented(String),
    #[error(
        "enclave {enclave} stays registered until unix time {until}, not past the task's deadline {deadline}: its keys are not asked for (the worker renews a registration as it nears its end; the chain's enclave TTL must outlast the pool's task duration)"
    )]
    RegistrationEnds { enclave: Address, until: u64, deadline: u64 },
    #[error(
        "the enclave's registration, which ends at unix time {until}, is not renewed: under the chain's enclave TTL of {ttl} s a renewal would end it no later, or last under {min_ttl} s (governance must raise the TTL)"
    )]
    RenewalUseless { ttl: u64, until: u64, min_ttl: u64 },
    #[error("worker state {0}: {1}")]
    State(String, String),
    #[error("task {task} is {why}: its keys are not asked for")]
    NotServable { task: U256, why: String },
}

impl WorkerError {
    /// Whether trying again may succeed: the chain, the storage or the key service did not
    /// answer, or the key service's view of the chain has not reached the task yet.
    fn may_pass(&self) -> bool {
        match self {
            WorkerError::Chain(strongroom_chain::ChainError::Rpc { .. }) => true,
            // A missing object is not coming back: a dataset whose owner deleted one would hold
            // a serving slot until the deadline.
            WorkerError::Storage(e @ storage::StorageError::Store { .. }) => !e.is_not_found(),
            WorkerError::KeyService(strongroom_client::ClientError::Refused { error, .. }) => {
                error.code == "unknown_task"
            }
            WorkerError::KeyService(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new, never half.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, path)
}

/// A running worker. Dropping the handle does not stop it; call [`WorkerHandle::shutdown`].
pub struct WorkerHandle {
    enclave: Address,
    measurement: alloy::primitives::B256,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// The enclave's signing address, as registered on chain.
    pub fn enclave(&self) -> Address {
        self.enclave
    }

    pub fn measurement(&self) -> alloy::primitives::B256 {
        self.measurement
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Finds `strongroom-enclave`: `STRONGROOM_ENCLAVE`, else beside the running binary (or its
/// parent, for test binaries under `target/*/deps`).
pub fn locate_enclave_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STRONGROOM_ENCLAVE") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir, dir.parent().unwrap_or(dir)].into_iter().map(|d| d.join("strongroom-enclave")).find(|p| p.is_file())
}

/// Launches and registers the enclave, then serves the pool's tasks until shut down.
pub async fn spawn(config: WorkerConfig) -> Result<WorkerHandle, WorkerError> {
    let chain = Chain::connect(&config.rpc_url, config.contract, Some(config.operator_key.clone())).await?;
    let platform = PlatformDaemon::new(&config.platform_socket);
    let platform_key = platform.info()?.platform_key;
    let client = EnclaveClient::launch(&platform, &config.enclave_binary)?;
    let measurement = client.measurement();
    info!(%measurement, binary = %config.enclave_binary.display(), "enclave launched (SIMULATED TEE)");

    let sealed_path = config.state_dir.join("enclave-identity.sealed");
    let sealed_identity = match std::fs::read(&sealed_path) {
        Ok(bytes) => Some(bytes.into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(WorkerError::State(sealed_path.display().to_string(), e.to_string())),
    };
    let Attestation { enclave, quote, platform_signature, sealed_identity } =
        attest(&client, &chain, sealed_identity).await?;
    // Kept for the next start: the identity it seals is the one registered below.
    write_atomically(&sealed_path, &sealed_identity)
        .map_err(|e| WorkerError::State(sealed_path.display().to_string(), e.to_string()))?;
    // An identity that came back from its seal keeps a registration that is still good; a new
    // one, or one whose registration lapsed or nears its end, registers with the fresh quote.
    let ttl = chain.enclave_ttl().await?;
    let renew_within = renewal_margin(ttl);
    let (registered, expires_at) = chain.enclave(enclave).await?;
    let now = chain.block_timestamp().await?;
    // Kept, too, when registering now would end it sooner (the TTL was cut since).
    let lasts = registered == measurement
        && (expires_at > now.saturating_add(renew_within) || expires_at >= now.saturating_add(ttl));
    let registered_until = if lasts && chain.is_enclave_active(enclave).await? {
        info!(%enclave, until = expires_at, "enclave identity unsealed; its registration still holds");
        expires_at
    } else {
        let until = register(&chain, platform_key, measurement, &quote, platform_signature).await?;
        info!(%enclave, until, "enclave registered on chain");
        until
    };

    let genesis = chain
        .block_hash(0)
        .await?
        .ok_or_else(|| WorkerError::State("chain".into(), "has no block 0: is the RPC URL a chain's?".into()))?;
    let journal_path = config.state_dir.join("journal.sqlite");
    let journal =
        Journal::open(&journal_path, &Deployment { chain_id: chain.chain_id(), genesis, contract: chain.address() })?;
    let (stop, stopped) = watch::channel(false);
    // One HTTP client for every key release: connections are reused across tasks.
    let http = strongroom_client::http_client()?;
    let registration =
        Registration { platform_key, measurement, until: registered_until, renew_within, next_attempt: 0 };
    let index = ChainIndex::open(
        chain.clone(),
        &IndexOptions { path: config.state_dir.join("chain-index.sqlite"), confirmations: 0 },
    )
    .await?;
    let worker = Worker { chain, index, client, http, config, enclave, journal };
    let task = tokio::spawn(Arc::new(worker).run(registration, stopped));
    Ok(WorkerHandle { enclave, measurement, stop, task })
}

/// What the tasks served at once share.
struct Worker {
    chain: Chain,
    /// The chain's events, followed locally: where an earlier data version or key service was,
    /// and the task a journal line is of, without a log scan per task.
    index: ChainIndex,
    client: EnclaveClient,
    http: reqwest::Client,
    config: WorkerConfig,
    enclave: Address,
    /// Where each task stands, and the first block not looked at yet, kept across restarts.
    journal: Journal,
}

/// How long a failing step of a task is tried again, and what is worth trying again.
#[derive(Clone, Copy)]
enum Patience {
    /// Before any key is asked for: what may pass, until [`MIN_TIME_TO_SERVE`] before the deadline.
    BeforeKeys,
    /// Once the keys may have been released: what may pass, until the deadline, as the pool's
    /// stake is then at stake.
    AfterKeys,
    /// Storing and submitting a computed result: all but a refusal by the contract (sending again
    /// would not change it), until the deadline.
    Result,
}

impl Patience {
    fn waits_out(self, error: &WorkerError) -> bool {
        use strongroom_chain::ChainError::{Failed, Reverted};
        match self {
            Patience::BeforeKeys | Patience::AfterKeys => error.may_pass(),
            Patience::Result => !matches!(error, WorkerError::Chain(Reverted { .. } | Failed(_))),
        }
    }
}

/// What a task needs from the storage and the chain before its keys are asked for: all checked.
struct Prepared {
    kms: KmsClient,
    key_service: X25519PublicKey,
    manifest: bytes::Bytes,
    objects: Vec<bytes::Bytes>,
    location: StorageUrl,
}

/// What the worker needs to keep its enclave registered while it runs.
struct Registration {
    platform_key: Address,
    measurement: B256,
    /// When the registration on chain ends, as last registered.
    until: u64,
    /// How long before `until` it is renewed, from the chain's TTL when last read.
    renew_within: u64,
    /// Chain time before which no renewal is tried again, after one that failed or was useless:
    /// a quarter of the renewal margin later, [`RENEWAL_RETRY`] at most.
    next_attempt: u64,
}

/// An enclave's answer to an attestation: its address, a quote over it naming a recent block,
/// the platform's signature of the quote, and its identity sealed for its next start.
struct Attestation {
    enclave: Address,
    quote: Quote,
    platform_signature: Bytes,
    sealed_identity: Bytes,
}

/// Asks the enclave for a quote naming a recent block, its identity taken back from
/// `sealed_identity` on a first call.
async fn attest(
    client: &EnclaveClient,
    chain: &Chain,
    sealed_identity: Option<Bytes>,
) -> Result<Attestation, WorkerError> {
    let block = chain.recent_block().await?;
    let reply = client
        .call(HostRequest::Attest { chain_id: chain.chain_id(), contract: chain.address(), block, sealed_identity })
        .await?;
    let EnclaveReply::Attested { enclave, quote, platform_signature, sealed_identity } = reply else {
        return Err(unexpected(reply));
    };
    Ok(Attestation { enclave, quote, platform_signature, sealed_identity })
}

/// Registers the quote on chain, checked first the way the contract will check it so that a
/// misconfiguration reads as a sentence; returns when the registration ends.
async fn register(
    chain: &Chain,
    platform_key: Address,
    measurement: B256,
    quote: &Quote,
    platform_signature: Bytes,
) -> Result<u64, WorkerError> {
    let verifier = SimulatedVerifier {
        trusted_platform_keys: [platform_key].into(),
        trusted_measurements: [measurement].into(),
        accept_simulated: true,
    };
    verifier.verify(quote, &platform_signature)?;
    chain.register_enclave(quote, platform_signature).await?;
    Ok(chain.enclave(strongroom_types::enclave_address(quote)).await?.1)
}

/// How long before its end a registration is renewed: a day, or half the registration's lifetime
/// when that is shorter (so a short TTL is renewed halfway, not at every poll).
fn renewal_margin(ttl: u64) -> u64 {
    KEEP_REGISTRATION_FOR.min(ttl / 2)
}

impl Worker {
    /// Renews the enclave's registration with a fresh quote once it ends within the renewal
    /// margin: a worker that runs for weeks keeps serving tasks without a restart. A renewal
    /// that failed, or that would not extend the registration, is tried again only a while
    /// later, so a chain that refuses costs no gas at every block.
    async fn renew_if_due(&self, registration: &mut Registration) -> Result<(), WorkerError> {
        let now = self.chain.block_timestamp().await?;
        let due = |r: &Registration| now >= r.next_attempt && now.saturating_add(r.renew_within) >= r.until;
        if !due(registration) {
            return Ok(());
        }
        // As the chain has it now: renewed meanwhile (by a replayed quote), or not at all (a
        // renewal the chain reorganised away).
        registration.until = self.chain.enclave(self.enclave).await?.1;
        let ttl = self.chain.enclave_ttl().await?;
        registration.renew_within = renewal_margin(ttl);
        if !due(registration) {
            return Ok(());
        }
        let renewed = self.renew(registration, now, ttl).await;
        registration.next_attempt = match &renewed {
            Ok(()) => 0,
            Err(_) => now.saturating_add((registration.renew_within / 4).clamp(1, RENEWAL_RETRY)),
        };
        renewed
    }

    /// Registers the enclave again with a fresh quote, if that ends its registration later.
    async fn renew(&self, registration: &mut Registration, now: u64, ttl: u64) -> Result<(), WorkerError> {
        // Registering sets the end to now + the chain's TTL, which may have been cut since: a
        // renewal must end the registration later than it ends now, and late enough to serve.
        if now.saturating_add(ttl) <= registration.until || ttl < MIN_RENEWABLE_TTL {
            return Err(WorkerError::RenewalUseless { ttl, until: registration.until, min_ttl: MIN_RENEWABLE_TTL });
        }
        let (platform_key, measurement) = (registration.platform_key, registration.measurement);
        let attestation = attest(&self.client, &self.chain, None).await?;
        // The enclave keeps its identity across attestations; another address would be a new
        // enclave, and the sealed identity on disk is left as it is.
        if attestation.enclave != self.enclave {
            return Err(WorkerError::Enclave(format!(
                "the enclave re-attested as {}, not {}",
                attestation.enclave, self.enclave
            )));
        }
        let until =
            register(&self.chain, platform_key, measurement, &attestation.quote, attestation.platform_signature)
                .await?;
        registration.until = until;
        info!(enclave = %self.enclave, until, "enclave registration renewed");
        Ok(())
    }

    async fn run(self: Arc<Self>, mut registration: Registration, mut stopped: watch::Receiver<bool>) {
        // Where the last run stopped, so that the tasks created while the worker was down are
        // served (those no longer active are left alone); else from the chain head. A cursor
        // past the head is of a chain that was reset: the head it is.
        let start = match self.config.start_block {
            Some(block) => Ok(block),
            None => match (self.chain.block_number().await, self.journal.cursor()) {
                (Ok(head), Ok(Some(cursor))) if cursor <= head + 1 => Ok(cursor),
                (Ok(head), _) => Ok(head),
                (Err(e), _) => Err(e),
            },
        };
        let mut next_block = match start {
            Ok(n) => n,
            Err(e) => {
                error!(error = %e, "cannot read the chain head; worker stops");
                return;
            }
        };
        let limit = Arc::new(Semaphore::new(self.config.concurrent_tasks.clamp(1, MAX_CONCURRENT_TASKS)));
        let mut serving = Serving { tasks: JoinSet::new(), ids: HashSet::new(), limit };
        // The tasks a run before this one left unfinished, at the step it left them.
        match self.journal.unfinished() {
            Ok(entries) => {
                if !entries.is_empty() {
                    info!(tasks = entries.len(), "taking up the tasks the journal has unfinished");
                }
                for entry in entries {
                    serving.start(&self, entry.task_id, None);
                }
            }
            Err(e) => error!(error = %e, "cannot read the journal's unfinished tasks"),
        }
        // The last head the loop acted on.
        let mut seen_head = None;
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
            serving.reap();
            let head = match self.chain.block_number().await {
                Ok(head) => head,
                Err(e) => {
                    warn!(error = %e, "chain unavailable; retrying");
                    continue;
                }
            };
            // A new block, or nothing to do: the index may have read past the head read here, so
            // the head, not the cursor, says whether the chain moved.
            if head < next_block && seen_head == Some(head) {
                continue;
            }
            seen_head = Some(head);
            // The chain's clock moves only with its blocks: a registration can come due only now.
            if let Err(e) = self.renew_if_due(&mut registration).await {
                warn!(error = %e, "cannot renew the enclave's registration; retrying");
            }
            // From the index, which follows the chain's events a range at a time (a provider
            // refuses too wide a log query) and rolls back what a reorganisation replaced.
            let (tasks, through) = match self.index.tasks_of_pool(self.config.pool, next_block).await {
                Ok(found) => found,
                Err(e) => {
                    warn!(error = %e, "cannot read new tasks; retrying");
                    continue;
                }
            };
            // The index rolled back below the cursor (a reorganisation): the rentals mined again
            // there are looked for again; the journal knows the ones it has by id and rental.
            if through + 1 < next_block {
                warn!(from = through + 1, "the chain reorganised below the worker's cursor; looking again from there");
                next_block = through + 1;
                continue;
            }
            if through < next_block {
                continue;
            }
            // Journaled before they are served, with the cursor moved past them in the same
            // transaction: a crash from here on loses none, and serving does not hold up polling.
            let seen: Vec<_> = tasks.iter().map(|t| (t.id, t.params.deadline, commitment_hash(&t.params))).collect();
            let new = match self.journal.see(&seen, Some(through + 1)) {
                Ok(new) => new,
                Err(e) => {
                    warn!(error = %e, "cannot journal new tasks; retrying");
                    continue;
                }
            };
            next_block = through + 1;
            for task in tasks.into_iter().filter(|t| new.contains(&t.id)) {
                serving.start(&self, task.id, Some(task));
            }
        }
        // Stopped: the tasks in hand are dropped at their next step, which a restart takes up.
        serving.tasks.abort_all();
        while serving.tasks.join_next().await.is_some() {}
    }

    /// Serves the task (`task`, or the chain's task of that id) from the step the journal has
    /// it at, and journals how it ended.
    async fn take_up(&self, id: U256, task: Option<Task>) {
        let task = match task {
            Some(task) => task,
            None => match self.index.task(id).await {
                // The journal's line must be of the chain's rental of this id: one of a rental a
                // reorganisation replaced starts over, and its result is never submitted for this
                // one. (A task found by polling was journaled as this rental just before.)
                Ok(Some(task)) => {
                    match self.journal.see(&[(id, task.params.deadline, commitment_hash(&task.params))], None) {
                        Ok(reset) => {
                            if !reset.is_empty() {
                                warn!(task = %id, "the journal's line was of a rental a reorganisation replaced; it starts over");
                            }
                            task
                        }
                        Err(e) => {
                            error!(task = %id, error = %e, "cannot journal the task");
                            return;
                        }
                    }
                }
                Ok(None) => {
                    let _ = self.journal.finish(id, Step::NotActive, Some("the chain has no such task"));
                    return;
                }
                Err(e) => {
                    // Left at its step: the next start takes it up again.
                    error!(task = %id, error = %e, "cannot read the task from the chain");
                    return;
                }
            },
        };
        let span = info_span!("task", task = %task.id, dataset = %task.params.dataset);
        let served = self.serve(&task).instrument(span.clone()).await;
        let _in_span = span.enter();
        let step = match self.journal.entry(task.id) {
            Ok(Some(entry)) => entry.step,
            _ => Step::Seen,
        };
        let ended = match served {
            Ok(()) => return,
            // Nothing left the key service: the task stays active, and after its deadline the
            // analyst is refunded.
            // Settled meanwhile, or its id now another rental's: not this worker's to serve.
            Err(e @ WorkerError::NotServable { .. }) => {
                info!(error = %e, "task no longer needs serving");
                self.journal.finish(task.id, Step::NotActive, Some(&e.to_string()))
            }
            Err(e) if step < Step::Authorized || matches!(e, WorkerError::TooLate { .. }) => {
                error!(error = %e, "task declined");
                self.journal.finish(task.id, Step::Declined, Some(&e.to_string()))
            }
            Err(e) => {
                error!(error = %e, step = step.name(), "task given up");
                self.journal.finish(task.id, Step::GivenUp, Some(&e.to_string()))
            }
        };
        if let Err(e) = ended {
            error!(error = %e, "cannot journal how the task ended");
        }
    }

    async fn serve(&self, task: &Task) -> Result<(), WorkerError> {
        let chain = &self.chain;
        let Some(entry) = self.journal.entry(task.id)? else {
            return Err(WorkerError::State("journal".into(), format!("has no line for task {}", task.id)));
        };
        if entry.step.is_final() {
            return Ok(());
        }
        // Tasks from before a restart may have been settled or refunded meanwhile, and a
        // reorganisation can give the id to another rental.
        let Some(status) = self.rental_status(task).await? else {
            let why = "another rental's, or no task's, on chain now (a reorganisation)";
            info!(why, "task no longer needs serving");
            return self.journal.finish(task.id, Step::NotActive, Some(why));
        };
        let now = chain.block_timestamp().await?;
        if status != TaskStatus::Active || now > task.params.deadline {
            let why = match status {
                TaskStatus::Active => "past its deadline".to_owned(),
                other => other.describe().to_owned(),
            };
            info!(status = %why, "task no longer needs serving");
            return self.journal.finish(task.id, Step::NotActive, Some(&why));
        }
        let computed = match entry.computed.filter(|_| entry.step >= Step::Computed) {
            Some(computed) => computed,
            None => self.compute(task, entry.step).await?,
        };
        if entry.step < Step::ResultStored {
            let location = StorageUrl::parse(&computed.location)?;
            // The keys are out: from here a step that fails is tried again until the deadline,
            // since a result that is never submitted costs the pool its stake.
            self.retrying(task, "storing the result", Patience::Result, || async {
                Ok(self.config.storage.put(&location, computed.sealed_result.clone().into()).await?)
            })
            .await?;
            self.journal.advance(task.id, Step::ResultStored)?;
            self.halt_if_asked(Step::ResultStored).await;
        }
        let authorization = self.authorization(task);
        let sent = self
            .retrying(task, "submitting the result", Patience::Result, || async {
                // A submission whose reply was lost, or sent before a restart, may have landed.
                if chain.task_status(task.id).await? != TaskStatus::Active {
                    return Ok(None);
                }
                let sent = chain.submit_result(
                    task,
                    computed.digest,
                    &computed.location,
                    authorization.clone(),
                    computed.signature.clone(),
                    computed.outcome,
                );
                Ok(Some(sent.await?))
            })
            .await?;
        let (digest, outcome) = (computed.digest, computed.outcome);
        match sent {
            Some(sent) => {
                self.journal.submitted(task.id, sent.hash)?;
                info!(%digest, ?outcome, gas = sent.gas_used, "result submitted");
            }
            None => info!(%digest, ?outcome, "result submitted (an earlier attempt landed)"),
        }
        // Settled by this result (whichever outcome the enclave signed), or by something else.
        let settled_as = match outcome {
            Outcome::Completed => TaskStatus::Completed,
            Outcome::Refused => TaskStatus::Refused,
            Outcome::Failed => TaskStatus::Failed,
            Outcome::HostFault => TaskStatus::HostFault,
        };
        match chain.task_status(task.id).await? {
            TaskStatus::Active => Err(WorkerError::State(
                "chain".into(),
                format!("still has task {} active after its submission was mined", task.id),
            )),
            status if status == settled_as => self.journal.finish(task.id, Step::Confirmed, None),
            other => self.journal.finish(task.id, Step::NotActive, Some(other.describe())),
        }
    }

    /// The task's status as the chain has it now, if the chain's task of this id is this rental
    /// (a reorganisation can give the id to another); `None` if it is another's, or none.
    async fn rental_status(&self, task: &Task) -> Result<Option<TaskStatus>, WorkerError> {
        let stored = self.chain.task_commitment(task.id).await?;
        let ours = commitment_hash(&task.params);
        // The stored word is the hash of the parameters with the status in its last byte.
        Ok((stored[..31] == ours[..31]).then(|| TaskStatus::from(stored[31])))
    }

    /// The operator's authorization of this enclave for the task (deterministic: the same on
    /// every call, as the key service's repeat check wants).
    fn authorization(&self, task: &Task) -> Bytes {
        sign_typed(
            self.config.operator_key.credential(),
            &Authorization { taskId: task.id, enclave: self.enclave },
            &self.chain.domain(),
        )
    }

    /// From the step the task stands at up to its sealed result, journaled step by step; what
    /// may pass is tried again (see [`Patience`]).
    async fn compute(&self, task: &Task, step: Step) -> Result<Computed, WorkerError> {
        let asked_for = step >= Step::Authorized;
        let patience = if asked_for { Patience::AfterKeys } else { Patience::BeforeKeys };
        let prepared = self.retrying(task, "preparing the task", patience, || self.prepare(task, asked_for)).await?;
        if !asked_for {
            self.journal.advance(task.id, Step::Authorized)?;
            self.halt_if_asked(Step::Authorized).await;
        }
        let asked = AtomicBool::new(false);
        let run = || self.request_release_run(task, &prepared, &asked);
        let computed = self.retrying(task, "running the task", Patience::AfterKeys, run).await?;
        self.journal.computed(task.id, &computed)?;
        self.halt_if_asked(Step::Computed).await;
        Ok(computed)
    }

    /// Checks the task against the chain and the storage and fetches what it reads, before any
    /// key is asked for.
    async fn prepare(&self, task: &Task, asked_for: bool) -> Result<Prepared, WorkerError> {
        let chain = &self.chain;
        let dataset =
            chain.dataset(task.params.dataset).await?.ok_or(WorkerError::UnknownDataset(task.params.dataset))?;
        // The key service the task was rented against: only it releases the task's keys, the
        // enclave opens only a release sealed by it, and signs which. After the owner moved the
        // keys elsewhere it is found by its key in the dataset's history.
        let kms_key = task.params.kmsKey;
        let key_service = X25519PublicKey(kms_key.0);
        let kms_url = match dataset.kms_key == kms_key {
            true => dataset.kms_url.clone(),
            false => self
                .index
                .key_service_url_for(dataset.id, kms_key)
                .await?
                .ok_or(WorkerError::UnknownKeyService(dataset.id, kms_key))?,
        };
        // The dataset URI names its manifest, which gives the enclave the schema to plan against
        // and lists the objects, which sit beside it. The enclave checks the manifest against the
        // chain and every object against the manifest; here they are only read.
        // A task rented before the owner rotated the keys reads the data version it was rented
        // against, which the owner leaves in place.
        let rented = task.manifest_digest();
        let uri = match dataset.manifest_digest == rented {
            true => dataset.uri,
            false => self
                .index
                .dataset_uri_for(dataset.id, rented)
                .await?
                .ok_or(WorkerError::UnknownDataVersion(dataset.id, rented))?,
        };
        let uri = StorageUrl::parse(&uri).map_err(|e| WorkerError::BadManifest(uri.clone(), e.to_string()))?;
        // The dataset's owner chose the URI; the worker reads only where its operator allows.
        if !self.config.dataset_storage.iter().any(|prefix| uri.is_within(prefix)) {
            return Err(WorkerError::StorageNotAllowed(uri));
        }
        let manifest_bytes = self.config.storage.get_at_most(&uri, Manifest::MAX_STORED_BYTES as u64).await?;
        // Only what the host needs to fetch the objects: the enclave checks the rest, and what it
        // finds wrong ends as an attested failure the analyst reads.
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| WorkerError::BadManifest(uri.to_string(), format!("is malformed: {e}")))?;
        // Every object URL is a plain name joined to the manifest's directory, or refused.
        let object_urls =
            manifest.object_urls(&uri).map_err(|e| WorkerError::BadManifest(uri.to_string(), e.to_string()))?;
        within_task_budget(&manifest).map_err(|reason| WorkerError::BadManifest(uri.to_string(), reason))?;
        // The licence the task was rented under, which the enclave checks the job against (and
        // its hash against the chain's): the dataset's key service serves it by that hash.
        // Every object is fetched before any key is asked for: what the storage does not serve
        // then costs nobody anything (the task refunds), whereas keys released to a task that
        // then cannot run would be a release with no result. Each is read up to the size its
        // manifest lists (a larger one is not the listed object; the enclave checks its sha256
        // anyway), so the host holds no more than the manifest declares (`within_task_budget`).
        // A few at a time: a manifest of many small objects does not open as many connections.
        let fetch: Vec<_> = manifest
            .objects
            .iter()
            .zip(&object_urls)
            .map(|(entry, url)| self.config.storage.get_at_most(url, entry.bytes))
            .collect();
        let objects: Vec<_> = futures::stream::iter(fetch).buffered(CONCURRENT_FETCHES).try_collect().await?;
        // What the chain pins, checked here too, before any key moves: a copy that is not the
        // rented one (a storage that serves other bytes) declines the task, which then refunds,
        // instead of costing a release and ending as a host fault inside the enclave.
        let found = strongroom_types::ManifestDigest::of(&manifest_bytes);
        if found != rented {
            return Err(WorkerError::NotAsRented(format!("manifest {uri} has digest {found}, not {rented}")));
        }
        for ((entry, url), object) in manifest.objects.iter().zip(&object_urls).zip(&objects) {
            let found = B256::from_slice(&sha2::Sha256::digest(object));
            if found != entry.sha256 {
                return Err(WorkerError::NotAsRented(format!("object {url} has sha256 {found}, not {}", entry.sha256)));
            }
        }
        // Taken up again after its keys were asked for, the task is finished if it still can be.
        let now = chain.block_timestamp().await?;
        if !asked_for && now + MIN_TIME_TO_SERVE > task.params.deadline {
            return Err(WorkerError::TooLate { deadline: task.params.deadline, now });
        }
        // A result from an enclave whose registration has lapsed is refused, and after a release
        // that would slash the pool: such a task is declined before any key moves.
        let (_, registered_until) = chain.enclave(self.enclave).await?;
        if registered_until <= task.params.deadline {
            return Err(WorkerError::RegistrationEnds {
                enclave: self.enclave,
                until: registered_until,
                deadline: task.params.deadline,
            });
        }
        let location = self.config.results_url.join(&format!("task-{}.sealed", task.id))?;
        let kms = KmsClient::with_http(&kms_url, self.http.clone());
        Ok(Prepared { kms, key_service, manifest: manifest_bytes, objects, location })
    }

    /// Has the enclave ask for the task's keys, relays the request to the key service and the
    /// release back, and has the enclave run the task on the objects.
    /// `asked` is whether this serving of the task has sent a release request already.
    async fn request_release_run(
        &self,
        task: &Task,
        prepared: &Prepared,
        asked: &AtomicBool,
    ) -> Result<Computed, WorkerError> {
        let Prepared { kms, key_service, manifest, objects, location } = prepared;
        // Still this rental, and active: no key is asked for a task settled meanwhile or for an id
        // a reorganisation gave to another rental (whose facts the key service would seal).
        match self.rental_status(task).await? {
            Some(TaskStatus::Active) => {}
            status => {
                let why = status.map_or("another rental's on chain now (a reorganisation)", TaskStatus::describe);
                return Err(WorkerError::NotServable { task: task.id, why: why.to_owned() });
            }
        }
        // Asked late, a first request would bind the task to this enclave with too little time
        // left to run and settle it, and the pool would be slashed. A request sent already in
        // this serving may be bound (its reply lost or late), and is asked again whatever the
        // time; after a restart, the key service's receipt says whether one was.
        let now = self.chain.block_timestamp().await?;
        if !asked.load(Ordering::Acquire)
            && now + MIN_TIME_TO_SERVE > task.params.deadline
            && kms.receipt(task.id).await?.is_none()
        {
            return Err(WorkerError::TooLate { deadline: task.params.deadline, now });
        }
        let policy = kms.policy(task.params.policyHash).await?;
        let reply = self
            .client
            .call(HostRequest::RequestKeys {
                task_id: task.id,
                spec: task.spec.clone(),
                manifest: manifest.clone().into(),
                policy,
            })
            .await?;
        let EnclaveReply::KeyRequest { task_key, columns, signature, .. } = reply else {
            return Err(unexpected(reply));
        };
        // Asked again after a lost reply or a restart, the request is the same (the enclave
        // derives the task key), and the key service answers it with the same release.
        let request = ReleaseRequest {
            task_id: task.id,
            enclave: self.enclave,
            task_key,
            columns,
            enclave_signature: signature,
            authorization: self.authorization(task),
        };
        asked.store(true, Ordering::Release);
        let release = kms.release(&request).await?;
        self.journal.advance(task.id, Step::KeysReleased)?;
        info!("keys released to the enclave (sealed)");
        self.halt_if_asked(Step::KeysReleased).await;
        let request = HostRequest::RunTask {
            task_id: task.id,
            sealed_release: release.sealed_release,
            key_service: *key_service,
            objects: objects.len() as u32,
            spec: task.spec.clone(),
            location: location.to_string(),
        };
        let reply = self.client.call_with(request, objects.clone()).await?;
        let EnclaveReply::TaskResult { sealed_result, digest, outcome, signature, .. } = reply else {
            return Err(unexpected(reply));
        };
        Ok(Computed {
            location: location.to_string(),
            sealed_result: sealed_result.0.into(),
            digest,
            outcome,
            signature,
        })
    }

    /// Runs `attempt` again while it fails with what `patience` waits out, pausing longer each
    /// time (up to [`RETRY_PAUSE_MAX`]), until the time `patience` gives.
    async fn retrying<T, Attempt, Fut>(
        &self,
        task: &Task,
        what: &str,
        patience: Patience,
        mut attempt: Attempt,
    ) -> Result<T, WorkerError>
    where
        Attempt: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, WorkerError>>,
    {
        let (until, until_text) = match patience {
            Patience::BeforeKeys => {
                (task.params.deadline.saturating_sub(MIN_TIME_TO_SERVE), "30 s before the task's deadline")
            }
            Patience::AfterKeys | Patience::Result => (task.params.deadline, "the task's deadline"),
        };
        let mut pause = Duration::from_millis(200);
        loop {
            let error = match attempt().await {
                Ok(done) => return Ok(done),
                Err(e) if !patience.waits_out(&e) => return Err(e),
                Err(e) => e,
            };
            match self.chain.block_timestamp().await {
                Ok(now) if now >= until => return Err(error),
                _ => {}
            }
            let _ = self.journal.failed_attempt(task.id, &error.to_string());
            warn!(error = %error, what, "failed; trying again until {until_text}");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    /// For fault drills (`STRONGROOM_WORKER_HALT_AT=<step>`): once a task reaches the step, the
    /// worker stops serving it and waits to be killed, as a host that crashed there would.
    async fn halt_if_asked(&self, step: Step) {
        if self.config.halt_at == Some(step) {
            warn!(step = step.name(), "halting here, as STRONGROOM_WORKER_HALT_AT asks");
            std::future::pending::<()>().await;
        }
    }
}

/// The tasks in hand: at most the configured number served at once, each once.
struct Serving {
    tasks: JoinSet<U256>,
    ids: HashSet<U256>,
    limit: Arc<Semaphore>,
}

impl Serving {
    /// Serves the task unless it is in hand already (taken up from the journal, then seen again).
    fn start(&mut self, worker: &Arc<Worker>, id: U256, task: Option<Task>) {
        if !self.ids.insert(id) {
            return;
        }
        let (worker, limit) = (Arc::clone(worker), Arc::clone(&self.limit));
        self.tasks.spawn(async move {
            let Ok(_permit) = limit.acquire_owned().await else { return id };
            worker.take_up(id, task).await;
            id
        });
    }

    /// Forgets the tasks that ended.
    fn reap(&mut self) {
        while let Some(ended) = self.tasks.try_join_next() {
            match ended {
                Ok(id) => {
                    self.ids.remove(&id);
                }
                Err(e) => error!(error = %e, "a task's serving panicked; a restart takes it up again"),
            }
        }
    }
}

/// The longest pause between two attempts at a step after the keys were released.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(5);

/// The least time before a task's deadline in which the host still asks for its keys: enough
/// to run it and settle, so that keys are not released to a task that can no longer end.
const MIN_TIME_TO_SERVE: u64 = 30;

/// How many objects of a task are fetched at once.
const CONCURRENT_FETCHES: usize = 4;

/// How long a registration must still last for a restart to keep it rather than renew it.
const KEEP_REGISTRATION_FOR: u64 = 86_400;

/// The most chain time after a failed or useless renewal before the next is tried.
const RENEWAL_RETRY: u64 = 300;

/// The shortest TTL worth renewing under: a registration must outlast at least one task's
/// minimum serving time twice over, or the gas buys no task.
const MIN_RENEWABLE_TTL: u64 = 2 * MIN_TIME_TO_SERVE;

/// The most tasks served at once: below the enclave's bound on tasks whose keys were asked for
/// and that have not run (256), beyond which it drops the oldest, whose release would be lost.
pub const MAX_CONCURRENT_TASKS: usize = 64;

/// What one task's objects may total: the host holds them all, then relays them to the enclave,
/// which holds them too. The manifest's owner writes the sizes; a rental of a manifest listing
/// more is refused before any key is requested.
const MAX_TASK_BYTES: u64 = 8 << 30;

/// Refuses a manifest whose objects could not be relayed (each is one frame) or exceed the budget.
fn within_task_budget(manifest: &Manifest) -> Result<(), String> {
    let frame = strongroom_types::protocol::MAX_FRAME as u64;
    if let Some(entry) = manifest.objects.iter().find(|o| o.bytes > frame) {
        return Err(format!(
            "lists object {} of {} bytes, more than the {frame} one frame carries",
            entry.name, entry.bytes
        ));
    }
    if manifest.bytes() > MAX_TASK_BYTES {
        return Err(format!(
            "lists {} bytes of objects, more than the {MAX_TASK_BYTES} a worker takes for one task",
            manifest.bytes()
        ));
    }
    Ok(())
}

fn unexpected(reply: EnclaveReply) -> WorkerError {
    match reply {
        EnclaveReply::Error { message } => WorkerError::Enclave(message),
        other => WorkerError::Enclave(format!("unexpected reply {}", reply_name(&other))),
    }
}

fn reply_name(reply: &EnclaveReply) -> &'static str {
    match reply {
        EnclaveReply::Attested { .. } => "attested",
        EnclaveReply::KeyRequest { .. } => "key_request",
        EnclaveReply::TaskResult { .. } => "task_result",
        EnclaveReply::Error { .. } => "error",
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::B256;
    use strongroom_dataplane::ObjectEntry;
    use strongroom_types::DataVersion;

    use super::*;

    fn listing(sizes: &[u64]) -> Manifest {
        let object = |(i, bytes): (usize, &u64)| ObjectEntry {
            name: format!("part-{i:05}.parquet"),
            rows: 1,
            bytes: *bytes,
            sha256: B256::ZERO,
        };
        Manifest {
            format: Manifest::FORMAT.into(),
            dataset: B256::repeat_byte(1),
            data_version: DataVersion::FIRST,
            columns: Vec::new(),
            rows: sizes.len() as u64,
            objects: sizes.iter().enumerate().map(object).collect(),
        }
    }

    #[test]
    fn a_task_is_refused_when_its_manifest_lists_more_than_a_worker_holds() {
        let frame = strongroom_types::protocol::MAX_FRAME as u64;
        assert_eq!(within_task_budget(&listing(&[frame; 8])), Ok(()), "exactly the budget");
        assert_eq!(
            within_task_budget(&listing(&[1, frame + 1])),
            Err(format!(
                "lists object part-00001.parquet of {} bytes, more than the {frame} one frame carries",
                frame + 1
            ))
        );
        assert_eq!(
            within_task_budget(&listing(&[frame; 9])),
            Err(format!(
                "lists {} bytes of objects, more than the {MAX_TASK_BYTES} a worker takes for one task",
                9 * frame
            ))
        );
        // Sizes that would overflow a sum saturate and are refused, not wrapped into a small total.
        let mut many = listing(&[frame; 2]);
        many.objects.iter_mut().for_each(|o| o.bytes = u64::MAX / 2 + 1);
        assert!(within_task_budget(&many).unwrap_err().contains("one frame carries"));
        assert_eq!(listing(&[u64::MAX, 1]).bytes(), u64::MAX);
    }
}
