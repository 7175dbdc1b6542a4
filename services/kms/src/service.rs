//! HTTP routes and the release decision.

use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use alloy::primitives::{B256, U256, keccak256};
use serde::Deserialize;
use strongroom_chain::{Chain, TaskStatus};
use strongroom_types::{
    AuditEntry, Authorization, DatasetKeys, Deposit, DepositRequest, DepositResponse, INFO_DEPOSIT, INFO_RELEASE,
    KeyRelease, KeyRequest, KmsInfo, Policy, ReleaseRequest, ReleaseResponse, SealedBox, TaskFacts, X25519SecretKey,
    key_set_aad, open, recover_typed, seal,
};
use tracing::{info, warn};

use crate::store::{Store, now};
use crate::{KmsConfig, KmsError, Result};

struct State {
    chain: Chain,
    secret: X25519SecretKey,
    store: Mutex<Store>,
}

/// A running key service. [`KmsHandle::shutdown`] stops it gracefully.
pub struct KmsHandle {
    addr: SocketAddr,
    info: KmsInfo,
    server: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl KmsHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn info(&self) -> &KmsInfo {
        &self.info
    }

    pub async fn shutdown(self) {
        self.server.stop(true).await;
        let _ = self.task.await;
    }

    /// Waits until the server stops (for `strongroom kms serve`).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Starts the key service on `listener` (bind port 0 in tests); must run inside a tokio runtime.
pub async fn spawn(config: KmsConfig, listener: TcpListener) -> Result<KmsHandle> {
    std::fs::create_dir_all(&config.data_dir)?;
    // Created on first start, mode 0600.
    let secret = X25519SecretKey::load_or_create(&config.data_dir.join("kms.key")).map_err(|e| match e {
        strongroom_types::Error::KeyFile { path, reason } => KmsError::KeyFile { path, reason },
        other => KmsError::Internal(other.to_string()),
    })?;
    let chain = Chain::connect(&config.rpc_url, config.contract, None).await?;
    let store = Store::open(&config.data_dir.join("kms.sqlite"))?;
    let info = KmsInfo { public_key: secret.public_key(), chain_id: chain.chain_id(), contract: chain.address() };
    let state = web::Data::new(State { chain, secret, store: Mutex::new(store) });
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::JsonConfig::default().limit(1 << 20))
            .route("/v1/info", web::get().to(get_info))
            .route("/v1/deposits", web::post().to(post_deposit))
            .route("/v1/releases", web::post().to(post_release))
            .route("/v1/audit", web::get().to(get_audit))
    })
    .workers(2)
    .client_request_timeout(std::time::Duration::from_secs(30))
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    info!(%addr, public_key = %info.public_key, "key service listening");
    Ok(KmsHandle { addr, info, server: handle, task: tokio::spawn(server) })
}

async fn get_info(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(KmsInfo {
        public_key: state.secret.public_key(),
        chain_id: state.chain.chain_id(),
        contract: state.chain.address(),
    })
}

async fn post_deposit(state: web::Data<State>, body: web::Json<DepositRequest>) -> Result<HttpResponse> {
    let req = body.into_inner();
    let message = Deposit {
        dataset: req.dataset,
        manifest: req.manifest_sha256,
        keysDigest: keccak256(req.sealed_keys.as_bytes()),
    };
    let signer =
        recover_typed(&message, &state.chain.domain(), &req.owner_signature).ok_or(KmsError::BadDepositSignature)?;
    // Open once to refuse a deposit we could never release; the plaintext is dropped (wiped) here.
    let keys = open_keys(&state.secret, req.dataset, req.manifest_sha256, &req.sealed_keys)?;
    let policy = Policy::parse(&req.policy).map_err(|e| KmsError::BadDeposit(e.to_string()))?;
    if let Some(column) = policy.columns.allow.iter().find(|c| !keys.columns.contains_key(*c)) {
        return Err(KmsError::BadDeposit(format!("the policy allows column `{column}`, which has no key")));
    }
    // The dataset may not be registered yet: owners deposit first so that a registered dataset
    // always has its keys. Ownership is then checked again at every release.
    if let Some(dataset) = state.chain.dataset(req.dataset).await?
        && dataset.owner != signer
    {
        return Err(KmsError::NotOwner { dataset: req.dataset, signer, owner: dataset.owner });
    }
    let store = state.store.lock().expect("store lock");
    store.put_deposit(req.dataset, signer, req.manifest_sha256, &req.sealed_keys, &req.policy)?;
    drop(store);
    info!(dataset = %req.dataset, manifest = %req.manifest_sha256, depositor = %signer, keys = keys.key_ids().len(), "keys deposited");
    Ok(HttpResponse::Ok().json(DepositResponse {
        dataset: req.dataset,
        manifest_sha256: req.manifest_sha256,
        depositor: signer,
        key_ids: keys.key_ids(),
    }))
}

/// Opens keys sealed to this service for one data version of `dataset`; the plaintext is wiped
/// when dropped.
fn open_keys(secret: &X25519SecretKey, dataset: B256, manifest: B256, sealed: &SealedBox) -> Result<DatasetKeys> {
    let plain = zeroize::Zeroizing::new(
        open(secret, INFO_DEPOSIT, &key_set_aad(dataset, manifest), sealed, "deposit")
            .map_err(|e| KmsError::BadDeposit(e.to_string()))?,
    );
    let keys: DatasetKeys = serde_json::from_slice(&plain).map_err(|_| KmsError::BadDeposit("not a key set".into()))?;
    if keys.footer.is_none() {
        return Err(KmsError::BadDeposit("the key set has no footer key".into()));
    }
    Ok(keys)
}

async fn post_release(state: web::Data<State>, body: web::Json<ReleaseRequest>) -> Result<HttpResponse> {
    let req = body.into_inner();
    let span = tracing::info_span!("release", task = %req.task_id, enclave = %req.enclave);
    let _guard = span.enter();
    match release(&state, &req).await {
        Ok(response) => Ok(HttpResponse::Ok().json(response)),
        Err(e) => {
            warn!(error = %e, "release refused");
            Err(e)
        }
    }
}

async fn release(state: &State, req: &ReleaseRequest) -> Result<ReleaseResponse> {
    let chain = &state.chain;
    let domain = chain.domain();
    // The parameters come from the TaskCreated event, checked against the on-chain commitment.
    let task = chain.task(req.task_id).await?.ok_or(KmsError::UnknownTask(req.task_id))?;
    if task.status != TaskStatus::Active {
        return Err(KmsError::TaskNotActive { task: req.task_id, status: task.status.describe() });
    }
    let params = &task.params;
    if chain.block_timestamp().await? > params.deadline {
        return Err(KmsError::DeadlinePassed { task: req.task_id, deadline: params.deadline });
    }
    let key_request = KeyRequest { taskId: req.task_id, taskKey: req.task_key.to_b256(), columns: req.columns.clone() };
    if recover_typed(&key_request, &domain, &req.enclave_signature) != Some(req.enclave) {
        return Err(KmsError::BadEnclaveSignature(req.enclave));
    }
    let operator = params.poolOperator;
    let authorization = Authorization { taskId: req.task_id, enclave: req.enclave };
    if recover_typed(&authorization, &domain, &req.authorization) != Some(operator) {
        return Err(KmsError::NotAuthorized { task: req.task_id, enclave: req.enclave, operator });
    }
    if !chain.is_enclave_active(req.enclave).await? {
        return Err(KmsError::EnclaveNotRegistered(req.enclave));
    }
    if !params.measurement.is_zero() {
        let (measurement, _) = chain.enclave(req.enclave).await?;
        if measurement != params.measurement {
            return Err(KmsError::MeasurementNotAllowed {
                enclave: req.enclave,
                measurement,
                pinned: params.measurement,
            });
        }
    }
    let dataset = chain.dataset(params.dataset).await?.ok_or(KmsError::UnknownDataset(params.dataset))?;
    let ours = state.secret.public_key().to_b256();
    if dataset.kms_key != ours {
        return Err(KmsError::WrongKeyService { dataset: dataset.id, registered: dataset.kms_key, ours });
    }
    // The keys of the data version the task was rented against (a rotation makes a new one).
    let manifest = params.checksum;
    let deposit = state.store.lock().expect("store lock").deposit(dataset.id, dataset.owner, manifest)?;
    let (sealed, policy_text) = deposit.ok_or(KmsError::NoKeysDeposited { dataset: dataset.id, manifest })?;
    // The policy the task was rented under is the one its keys are granted by.
    let deposited_policy = keccak256(policy_text.as_bytes());
    if deposited_policy != params.policyHash {
        return Err(KmsError::PolicyMismatch {
            dataset: dataset.id,
            deposited: deposited_policy,
            rented: params.policyHash,
        });
    }
    let policy = Policy::parse(&policy_text).map_err(|e| KmsError::BadDeposit(e.to_string()))?;
    let mut keys = open_keys(&state.secret, dataset.id, manifest, &sealed)?;
    for column in &req.columns {
        if !keys.columns.contains_key(column) {
            return Err(KmsError::UnknownColumn { dataset: dataset.id, column: column.clone() });
        }
    }
    // Released: needed ∩ granted. Needed but not granted is reported back, never released.
    let withheld: Vec<String> = req.columns.iter().filter(|c| !policy.grants(c)).cloned().collect();
    keys.columns.retain(|name, _| req.columns.contains(name) && policy.grants(name));
    let facts = TaskFacts {
        chain_id: chain.chain_id(),
        contract: chain.address(),
        task_id: req.task_id,
        dataset: dataset.id,
        job_kind: params.kind,
        job_hash: params.jobHash,
        result_key: params.resultKey,
        policy_hash: params.policyHash,
        manifest_sha256: params.checksum,
        deadline: params.deadline,
    };
    let key_ids = keys.key_ids();
    let release = KeyRelease { facts, keys, withheld };
    let plaintext =
        zeroize::Zeroizing::new(serde_json::to_vec(&release).map_err(|e| KmsError::Internal(e.to_string()))?);
    drop(release);
    let sealed_release = seal(&req.task_key, INFO_RELEASE, &req.task_id.to_be_bytes::<32>(), &plaintext)
        .map_err(|e| KmsError::Internal(e.to_string()))?;
    let entry = AuditEntry {
        task_id: req.task_id,
        dataset: dataset.id,
        enclave: req.enclave,
        key_ids,
        released_at: now() as u64,
    };
    // Audit before answering: a release that is not on record does not leave the service.
    state.store.lock().expect("store lock").record_release(&entry)?;
    info!(dataset = %dataset.id, key_ids = ?entry.key_ids, "keys released");
    Ok(ReleaseResponse { sealed_release })
}

#[derive(Deserialize)]
struct AuditQuery {
    task_id: Option<U256>,
}

async fn get_audit(state: web::Data<State>, query: web::Query<AuditQuery>) -> Result<HttpResponse> {
    let entries = state.store.lock().expect("store lock").releases(query.task_id)?;
    Ok(HttpResponse::Ok().json(entries))
}
