//! HTTP routes: deposits, releases (decided in `decision`), the audit log.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use strongroom_chain::{Chain, ChainIndex, IndexOptions};
use strongroom_http::{Limits, ServiceHandle};
use strongroom_types::{
    AuditEntry, AuditLogRequest, AuditRequest, DatasetKeys, Deposit, DepositRequest, DepositResponse, INFO_DEPOSIT,
    INFO_RELEASE, KeyRelease, KeyService, KmsInfo, ManifestDigest, Policy, PolicyResponse, ReleaseReceipt,
    ReleaseRequest, ReleaseResponse, Released, SealedBox, X25519SecretKey, canonical_signature, key_set_aad, open,
    recover_typed, seal_from, sign_typed,
};
use tracing::{Instrument, info, warn};

use crate::decision::{ChainView, DepositView, authorize, check_enclave_signature, grant};
use crate::store::{DepositStore, SqliteDepositStore, TaskRef, now};
use crate::{KmsConfig, KmsError, Result};

struct State {
    chain: Chain,
    /// The chain's events, followed locally: tasks and dataset histories without log scans.
    index: Arc<ChainIndex>,
    secret: X25519SecretKey,
    /// Signs receipts; registered on chain for `secret`'s public key.
    signer: PrivateKeySigner,
    info: KmsInfo,
    store: Arc<dyn DepositStore>,
    /// See [`KmsConfig::halt_after_binding`].
    halt_after_binding: bool,
}

impl State {
    fn receipt(
        &self,
        task_id: U256,
        enclave: alloy::primitives::Address,
        authorization: alloy::primitives::Bytes,
    ) -> ReleaseReceipt {
        let message = Released { taskId: task_id, enclave };
        let signature = sign_typed(self.signer.credential(), &message, &self.chain.domain());
        ReleaseReceipt { task_id, enclave, signature, authorization }
    }
}

/// A running key service. [`KmsHandle::shutdown`] stops it gracefully.
pub struct KmsHandle {
    service: ServiceHandle,
    info: KmsInfo,
    /// Keeps the chain index following the chain; stopped with the service.
    _follower: strongroom_chain::Follower,
}

impl KmsHandle {
    pub fn url(&self) -> String {
        self.service.url()
    }

    pub fn info(&self) -> &KmsInfo {
        &self.info
    }

    pub async fn shutdown(self) {
        self.service.shutdown().await
    }

    /// Waits until the server stops (for `strongroom kms serve`).
    pub async fn wait(self) -> std::io::Result<()> {
        self.service.wait().await
    }
}

/// How often the chain index looks for new blocks between requests; a request that needs a
/// block not yet indexed catches up at once.
const INDEX_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Starts the key service on `listener` (bind port 0 in tests); must run inside a tokio runtime.
pub async fn spawn(config: KmsConfig, listener: TcpListener) -> Result<KmsHandle> {
    std::fs::create_dir_all(&config.data_dir)?;
    // Created on first start, mode 0600.
    let secret = X25519SecretKey::load_or_create(&config.data_dir.join("kms.key")).map_err(|e| match e {
        strongroom_types::Error::KeyFile { path, reason } => KmsError::KeyFile { path, reason },
        other => KmsError::Internal(other.to_string()),
    })?;
    let signer = crate::signer::load_or_create(&config.data_dir.join("kms-signer.key"))?;
    let chain = Chain::connect(&config.rpc_url, config.contract, None).await?;
    let store = Arc::new(SqliteDepositStore::open(&config.data_dir.join("kms.sqlite"))?);
    let public_key = secret.public_key();
    let registration =
        sign_typed(signer.credential(), &KeyService { sealingKey: public_key.to_b256() }, &chain.domain());
    let info = KmsInfo {
        public_key,
        chain_id: chain.chain_id(),
        contract: chain.address(),
        signer: signer.address(),
        registration,
    };
    let index = ChainIndex::open(
        chain.clone(),
        &IndexOptions { path: config.data_dir.join("chain-index.sqlite"), confirmations: config.confirmations },
    )
    .await?;
    let index = Arc::new(index);
    index.catch_up().await?;
    let follower = index.clone().follow(INDEX_POLL);
    let halt_after_binding = config.halt_after_binding;
    let state = web::Data::new(State { chain, index, secret, signer, info: info.clone(), store, halt_after_binding });
    let limits = Limits { json_bytes: 1 << 20, ..Limits::default() };
    let service = strongroom_http::serve(listener, limits, state, routes)?;
    info!(addr = %service.addr(), public_key = %info.public_key, signer = %info.signer, "key service listening");
    Ok(KmsHandle { service, info, _follower: follower })
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/info", web::get().to(get_info))
        .route("/v1/deposits", web::post().to(post_deposit))
        .route("/v1/releases", web::post().to(post_release))
        .route("/v1/audit", web::post().to(post_audit))
        .route("/v1/receipts/{task_id}", web::get().to(get_receipt))
        .route("/v1/policies/{hash}", web::get().to(get_policy));
}

/// A deposited licence policy by its keccak256: public, like the hash the chain records.
async fn get_policy(state: web::Data<State>, path: web::Path<B256>) -> Result<HttpResponse> {
    let hash = path.into_inner();
    let policy = state.store.policy(hash).await?.ok_or(KmsError::UnknownPolicy(hash))?;
    Ok(HttpResponse::Ok().json(PolicyResponse { policy }))
}

async fn get_info(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(&state.info)
}

/// The receipt of a task's release, signed again from the audit log: public, since the chain
/// already shows the task and a receipt gives nothing but the right to settle it as abandoned.
async fn get_receipt(state: web::Data<State>, path: web::Path<U256>) -> Result<HttpResponse> {
    let task_id = path.into_inner();
    let task = TaskRef { chain_id: state.chain.chain_id(), contract: state.chain.address(), id: task_id };
    let (enclave, authorization) = state.store.released_to(task).await?.ok_or(KmsError::NotReleased(task_id))?;
    Ok(HttpResponse::Ok().json(state.receipt(task_id, enclave, authorization)))
}

async fn post_deposit(state: web::Data<State>, body: web::Json<DepositRequest>) -> Result<HttpResponse> {
    let req = body.into_inner();
    let now = now() as u64;
    if req.not_after < now || req.not_after > now + MAX_REQUEST_SECS {
        return Err(KmsError::DepositOutOfTime { not_after: req.not_after, now });
    }
    let message = Deposit {
        dataset: req.dataset,
        manifestDigest: req.manifest_digest.to_b256(),
        keysDigest: keccak256(req.sealed_keys.as_bytes()),
        policyHash: keccak256(req.policy.as_bytes()),
        notAfter: req.not_after,
    };
    let signer =
        recover_typed(&message, &state.chain.domain(), &req.owner_signature).ok_or(KmsError::BadDepositSignature)?;
    // Open once to refuse a deposit we could never release; the plaintext is dropped (wiped) here.
    let keys = open_keys(&state.secret, req.dataset, req.manifest_digest, &req.sealed_keys)?;
    let policy = Policy::parse(&req.policy).map_err(|e| KmsError::BadPolicy(e.to_string()))?;
    if let Some(column) = policy.granted_columns().find(|c| !keys.columns.contains_key(*c)) {
        return Err(KmsError::BadPolicy(format!("it grants column `{column}`, which has no key")));
    }
    // Only the registered owner deposits, and only keys for a state the chain has recorded the
    // dataset in while they owned it, plus one not yet recorded (a rotation deposits before it
    // updates the dataset): what a key service keeps for a dataset grows only with the dataset's
    // transactions on chain. Owners register first, then deposit, then sign offers: until an
    // offer exists nobody can rent the dataset, so a registration whose deposit failed is not
    // rentable, and `strongroom dataset redeposit` finishes it. Ownership is checked again at
    // every release.
    let registered =
        state.chain.dataset(req.dataset).await?.ok_or(KmsError::DepositForUnregisteredDataset(req.dataset))?;
    if registered.owner != signer {
        return Err(KmsError::NotOwner { dataset: req.dataset, signer, owner: registered.owner });
    }
    let deposited = (req.manifest_digest, message.policyHash);
    let (sealed, policy) = (req.sealed_keys.clone(), req.policy.clone());
    let staged = if (registered.manifest_digest, registered.policy_hash) == deposited {
        state.store.put_deposit(req.dataset, signer, req.manifest_digest, sealed, policy).await?;
        false
    } else {
        // The confirmed states, and the one the chain holds now, which a lagging or shallower
        // index may not show yet and whose deposit a staged one must never replace.
        let mut recorded: Vec<_> = state
            .index
            .dataset_states(req.dataset)
            .await?
            .into_iter()
            .filter(|s| s.owner == signer)
            .map(|s| (s.manifest_digest, s.policy_hash))
            .collect();
        recorded.push((registered.manifest_digest, registered.policy_hash));
        let staged = !recorded.contains(&deposited);
        match staged {
            false => state.store.put_deposit(req.dataset, signer, req.manifest_digest, sealed, policy).await?,
            true => {
                state.store.stage_deposit(req.dataset, signer, req.manifest_digest, sealed, policy, recorded).await?
            }
        }
        staged
    };
    info!(dataset = %req.dataset, manifest = %req.manifest_digest, depositor = %signer, keys = keys.key_ids().len(), "keys deposited");
    Ok(HttpResponse::Ok().json(DepositResponse {
        dataset: req.dataset,
        manifest_digest: req.manifest_digest,
        depositor: signer,
        key_ids: keys.key_ids(),
        staged,
    }))
}

/// Opens keys sealed to this service for one data version of `dataset`; the plaintext is wiped
/// when dropped.
fn open_keys(
    secret: &X25519SecretKey,
    dataset: B256,
    manifest: ManifestDigest,
    sealed: &SealedBox,
) -> Result<DatasetKeys> {
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
    match release(&state, &req).instrument(span.clone()).await {
        Ok(response) => Ok(HttpResponse::Ok().json(response)),
        Err(e) => {
            span.in_scope(|| warn!(error = %e, "release refused"));
            Err(e)
        }
    }
}

/// Reads the chain and authorizes; only then reads the deposit, opens it and grants; then
/// seals and audits.
async fn release(state: &State, req: &ReleaseRequest) -> Result<ReleaseResponse> {
    let chain = &state.chain;
    // Before the chain's logs are read for the task: the request must be signed by an enclave the
    // chain has registered, so a flood of made-up requests costs a signature check and one call
    // each, never a log scan.
    check_enclave_signature(req, &chain.domain())?;
    let enclave_active = chain.is_enclave_active(req.enclave).await?;
    if !enclave_active {
        return Err(KmsError::EnclaveNotRegistered(req.enclave));
    }
    // The parameters come from the TaskCreated event, checked against the on-chain commitment.
    let task = state.index.task(req.task_id).await?;
    let (block_time, enclave_measurement, authorization_presigner, dataset) = match &task {
        Some(task) => (
            chain.block_timestamp().await?,
            // Needed only to compare with a pinned measurement.
            match task.params.measurement.is_zero() {
                true => B256::ZERO,
                false => chain.enclave(req.enclave).await?.0,
            },
            // A pool operator that cannot sign (a contract wallet) presigns on chain instead.
            match req.authorization.is_empty() {
                true => chain.authorization_presigner(req.task_id, req.enclave).await?,
                false => Address::ZERO,
            },
            chain.dataset(task.params.dataset).await?,
        ),
        None => (0, B256::ZERO, Address::ZERO, None),
    };
    let view = ChainView {
        chain_id: chain.chain_id(),
        contract: chain.address(),
        now: block_time,
        task,
        enclave_active,
        enclave_measurement,
        authorization_presigner,
        dataset,
    };
    let authorized = authorize(req, &chain.domain(), &view, state.secret.public_key().to_b256())?;
    // The keys of the data version and policy the task was rented against, deposited by the
    // dataset's owner at rent: a transfer since then does not strand the task.
    let params = &authorized.task.params;
    let (id, owner, manifest) = (authorized.dataset.id, params.datasetOwner, authorized.task.manifest_digest());
    let deposit = state.store.deposit(id, owner, manifest, params.policyHash).await?.map(|(sealed, policy)| {
        let keys = open_keys(&state.secret, id, manifest, &sealed).map_err(|e| e.to_string());
        (keys, policy)
    });
    let deposit_view = deposit.as_ref().map(|(keys, policy)| DepositView {
        policy: policy.clone(),
        key_columns: keys.as_ref().map(|k| k.columns.keys().cloned().collect()).map_err(Clone::clone),
    });
    let grant = grant(req, &view, authorized, deposit_view.as_ref())?;
    // Only now, with the request authorized and granted, is the task bound to this enclave and
    // task key; another enclave, or the same one with another key, gets nothing.
    let task_key = req.task_key.to_b256();
    let task = TaskRef { chain_id: chain.chain_id(), contract: chain.address(), id: req.task_id };
    // Kept, and returned with the receipt, in the one form `refundReleased` accepts (empty when
    // it was presigned on chain, where it stays for good).
    let authorization = match req.authorization.is_empty() {
        true => Bytes::new(),
        false => canonical_signature(&req.authorization)
            .ok_or_else(|| KmsError::Internal("an authorization that verified does not parse".into()))?,
    };
    let (holder, holder_key) = state.store.claim_task(task, req.enclave, task_key, authorization.clone()).await?;
    if (holder, holder_key) != (req.enclave, task_key) {
        return Err(KmsError::AlreadyReleased { task: req.task_id, holder });
    }
    if state.halt_after_binding {
        tracing::warn!(task = %req.task_id, "halting here, as STRONGROOM_KMS_HALT_AFTER_BINDING asks");
        std::future::pending::<()>().await;
    }

    let Some((Ok(mut keys), _)) = deposit else {
        return Err(KmsError::Internal("a release was granted without deposited keys".into()));
    };
    keys.columns.retain(|name, _| grant.columns.contains(name));
    let key_ids = keys.key_ids();
    let dataset = grant.facts.dataset;
    let release = KeyRelease { facts: grant.facts, keys, withheld: grant.withheld };
    let plaintext =
        zeroize::Zeroizing::new(serde_json::to_vec(&release).map_err(|e| KmsError::Internal(e.to_string()))?);
    drop(release);
    // Sealed as this service (HPKE auth mode), whose key the task records at rent: the enclave
    // opens only a release from that key, so a host cannot make one up.
    let sealed_release =
        seal_from(&req.task_key, &state.secret, INFO_RELEASE, &req.task_id.to_be_bytes::<32>(), &plaintext)
            .map_err(|e| KmsError::Internal(e.to_string()))?;
    let entry = AuditEntry { task_id: req.task_id, dataset, enclave: req.enclave, key_ids, released_at: now() as u64 };
    // Audit before answering: a release that is not on record does not leave the service.
    let released = entry.key_ids.clone();
    state.store.record_release(task, entry).await?;
    info!(%dataset, key_ids = ?released, "keys released");
    Ok(ReleaseResponse { sealed_release, receipt: state.receipt(req.task_id, req.enclave, authorization) })
}

/// How far ahead a signed deposit or audit request may be good: one seen on its way is of use
/// for no longer.
const MAX_REQUEST_SECS: u64 = 3_600;

/// A dataset's audit log, for its owner alone: which tasks had which keys when says what the
/// dataset is used for. The signature is checked before the chain is asked who owns it.
async fn post_audit(state: web::Data<State>, body: web::Json<AuditLogRequest>) -> Result<HttpResponse> {
    let req = body.into_inner();
    let now = now() as u64;
    if req.not_after < now || req.not_after > now + MAX_REQUEST_SECS {
        return Err(KmsError::AuditRequestOutOfTime { not_after: req.not_after, now });
    }
    let ours = state.secret.public_key().to_b256();
    if req.key_service != ours {
        return Err(KmsError::AuditRequestForAnotherKeyService { asked: req.key_service, ours });
    }
    let message = AuditRequest { dataset: req.dataset, keyService: ours, notAfter: req.not_after };
    let signer = recover_typed(&message, &state.chain.domain(), &req.signature).ok_or(KmsError::BadAuditSignature)?;
    let dataset = state.chain.dataset(req.dataset).await?.ok_or(KmsError::UnknownDataset(req.dataset))?;
    if dataset.owner != signer {
        return Err(KmsError::NotAuditOwner { dataset: req.dataset, signer, owner: dataset.owner });
    }
    let entries = state.store.releases(req.dataset, req.task_id).await?;
    Ok(HttpResponse::Ok().json(entries))
}
