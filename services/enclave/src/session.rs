//! The enclave's state across requests: its identity key, its deployment, its open tasks.

use std::collections::HashMap;

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use k256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};
use strongroom_dataplane::{DecryptionFactory, Manifest};
use strongroom_enclave_sim_guest::PlatformClient;
use strongroom_types::protocol::{EnclaveReply, HostRequest};

use crate::failure::TaskFailure;
use strongroom_types::{
    INFO_RELEASE, INFO_RESULT, JobKind, KeyRelease, KeyRequest, ManifestDigest, Outcome, Policy, RecentBlock,
    ResultAttestation, ResultPayload, X25519PublicKey, X25519SecretKey, address_of, domain, open, open_from,
    report_data_for, seal, sign_hash,
};

/// HPKE info of the enclave's identity key sealed under its platform's sealing key.
const INFO_IDENTITY: &[u8] = b"strongroom/v1/enclave-identity";

#[derive(Debug, thiserror::Error)]
pub(crate) enum EnclaveError {
    #[error("enclave is not attested yet: send Attest first")]
    NotAttested,
    #[error("no key request was made for task {0}: send RequestKeys first")]
    UnknownTask(U256),
    #[error("the key release is for task {got}, not task {expected}")]
    WrongTask { expected: U256, got: U256 },
    #[error("the manifest is {0} bytes, more than the {MAX_MANIFEST_BYTES} an enclave keeps for a task")]
    ManifestTooLarge(usize),
    #[error("the licence policy is {0} bytes, more than the {MAX_POLICY_BYTES} an enclave keeps for a task")]
    PolicyTooLarge(usize),
    #[error("keys for task {0} were already requested for another job, manifest or policy")]
    AlreadyRequested(U256),
    #[error(
        "this enclave is attested for chain {chain_id} contract {contract}; an identity signs for one deployment: launch another enclave"
    )]
    OtherDeployment { chain_id: u64, contract: Address },
    #[error("task {0} already ran in this enclave: a task runs once")]
    AlreadyRan(U256),
    #[error("the key release is for chain {chain_id} contract {contract}, not this enclave's deployment")]
    WrongDeployment { chain_id: u64, contract: Address },
    #[error(transparent)]
    Seal(#[from] strongroom_types::Error),
    #[error(transparent)]
    Platform(#[from] strongroom_enclave_sim_guest::Error),
    #[error("malformed key release: {0}")]
    MalformedRelease(String),
    #[error(
        "no result is signed for task {task}: {failure}. The host relayed what the chain does not pin for it, and a signed host fault would refund a task whose real result a host may hold from an earlier run; relay the rented manifest, objects, job and policy"
    )]
    HostFault { task: U256, failure: String },
}

#[derive(Default)]
pub(crate) struct Session {
    identity: Option<Identity>,
    /// Tasks whose keys were requested and not yet run.
    tasks: HashMap<U256, PendingTask>,
    /// Key requests made so far: orders the pending tasks.
    requests: u64,
    /// The tasks run so far, newest last, at most [`MAX_RAN_TASKS`]: none is run again here, as
    /// its result was handed out. This saves work, it guards nothing: a task run again (once
    /// forgotten here, or in another enclave of this identity) answers the same, as its key and
    /// its noise are derived from the identity (`Identity::task_secret`).
    ran: std::collections::VecDeque<U256>,
}

/// What the enclave keeps of a task between its key request and its run.
struct PendingTask {
    /// The key its release is sealed to.
    secret: X25519SecretKey,
    /// The columns its plan reads, as requested.
    columns: Vec<String>,
    /// The manifest the columns were planned on; checked against the chain at run time.
    manifest: bytes::Bytes,
    /// The licence policy the job was checked against; checked against the chain at run time.
    policy: String,
    /// keccak256 of the job the columns were planned for; the job run must be this one.
    spec_hash: B256,
    /// When the keys were requested, in requests: the oldest pending task is dropped first.
    requested: u64,
}

/// Most tasks whose keys may be requested and not yet run. A host that gives a task up never
/// runs it, so the oldest is dropped to make room (it can be requested again), never refused:
/// a refusal would stop the worker for good.
const MAX_PENDING_TASKS: usize = 256;

/// How many run tasks the enclave remembers (32 bytes each).
const MAX_RAN_TASKS: usize = 1 << 16;

/// The largest manifest the enclave keeps for a pending task.
const MAX_MANIFEST_BYTES: usize = Manifest::MAX_STORED_BYTES;

/// The largest licence policy the enclave keeps for a pending task.
const MAX_POLICY_BYTES: usize = 1 << 20;

struct Identity {
    key: SigningKey,
    domain: Eip712Domain,
    chain_id: u64,
    contract: Address,
}

impl Identity {
    /// A secret of this identity's for `task_id`, for `purpose`: HMAC-SHA256 under the identity
    /// key, which only this binary on this platform can unseal. So the enclave, restarted after
    /// a crash with its sealed identity, derives the same ones again (see `task_secret`).
    fn derive(&self, purpose: &[u8], task_id: U256, bound_to: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
        use hmac::Mac;
        let secret = zeroize::Zeroizing::new(self.key.to_bytes());
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&secret[..]).expect("HMAC takes a key of any length");
        mac.update(purpose);
        mac.update(&deployment_aad(self.chain_id, self.contract));
        mac.update(&task_id.to_be_bytes::<32>());
        mac.update(bound_to);
        zeroize::Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// The key a task's release is sealed to. Derived rather than drawn, so that after a crash
    /// (the host's or the enclave's) the task is asked for with the same key, which the key
    /// service answers with the release it already made, instead of refusing a second key.
    /// Running a task again is then possible, and safe: its result is the same (see
    /// `noise_seed`), so a host that runs it twice, or in two enclaves, learns nothing more.
    fn task_secret(&self, task_id: U256) -> Result<X25519SecretKey, EnclaveError> {
        Ok(X25519SecretKey::from_bytes(&self.derive(b"strongroom/v1/task-key\0", task_id, &[])[..])?)
    }

    /// What a task's noise is drawn from: secret to all but this enclave, the same on every run of
    /// the task, distinct from every other task's. Bound to the task's facts as the key service
    /// sealed them from the chain, not to its id alone: a rental that took the same id after a
    /// reorganisation draws other noise, so the two results' difference does not cancel it.
    fn noise_seed(&self, facts: &strongroom_types::TaskFacts) -> strongroom_policy::NoiseSeed {
        let facts_hash = keccak256(serde_json::to_vec(facts).expect("facts serialize"));
        strongroom_policy::NoiseSeed::new(*self.derive(
            b"strongroom/v1/noise-seed\0",
            facts.task_id,
            facts_hash.as_slice(),
        ))
    }
}

impl Session {
    pub(crate) fn handle(
        &mut self,
        request: HostRequest,
        attached: Vec<bytes::Bytes>,
        platform: &mut PlatformClient,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<EnclaveReply, EnclaveError> {
        match request {
            HostRequest::Attest { chain_id, contract, block, sealed_identity } => {
                self.attest(platform, chain_id, contract, block, sealed_identity)
            }
            HostRequest::RequestKeys { task_id, spec, manifest, policy } => {
                self.request_keys(task_id, &spec, manifest.0, policy, runtime)
            }
            HostRequest::RunTask { task_id, sealed_release, key_service, spec, location, .. } => {
                self.run_task(task_id, &sealed_release, &key_service, attached, &spec, location, runtime)
            }
        }
    }

    fn attest(
        &mut self,
        platform: &mut PlatformClient,
        chain_id: u64,
        contract: Address,
        block: RecentBlock,
        sealed_identity: Option<alloy_primitives::Bytes>,
    ) -> Result<EnclaveReply, EnclaveError> {
        // The identity key is sealed under a key only this binary on this platform can derive,
        // bound to the deployment: a restart takes it back and keeps its registration, while
        // the host, another binary or another platform can neither open nor plant one.
        let sealing = X25519SecretKey::from_bytes(platform.sealing_key()?.as_slice())?;
        let aad = deployment_aad(chain_id, contract);
        if let Some(identity) = &self.identity
            && (identity.chain_id, identity.contract) != (chain_id, contract)
        {
            return Err(EnclaveError::OtherDeployment { chain_id: identity.chain_id, contract: identity.contract });
        }
        // Kept until the new quote is made: a renewal whose seal or quote fails leaves the
        // enclave with the identity its registration names, not with none.
        let key = match (&self.identity, sealed_identity) {
            (Some(identity), _) => identity.key.clone(),
            (None, Some(sealed)) => {
                let opened =
                    open(&sealing, INFO_IDENTITY, &aad, &strongroom_types::SealedBox(sealed.to_vec()), "identity")
                        .ok()
                        .map(zeroize::Zeroizing::new)
                        .and_then(|bytes| SigningKey::from_slice(&bytes).ok());
                if opened.is_none() {
                    eprintln!(
                        "enclave: the sealed identity does not open here (another binary, platform or deployment); a new one is made"
                    );
                }
                opened.unwrap_or_else(new_identity_key)
            }
            (None, None) => new_identity_key(),
        };
        let enclave = address_of(&key);
        let secret = zeroize::Zeroizing::new(key.to_bytes());
        let sealed = seal(&sealing.public_key(), INFO_IDENTITY, &aad, &secret[..])?;
        let (quote, platform_signature) = platform.quote(report_data_for(enclave, block))?;
        self.identity = Some(Identity { key, domain: domain(chain_id, contract), chain_id, contract });
        eprintln!("enclave: attested as {enclave} for chain {chain_id} after block {} (SIMULATED quote)", block.number);
        Ok(EnclaveReply::Attested { enclave, quote, platform_signature, sealed_identity: sealed.0.into() })
    }

    fn request_keys(
        &mut self,
        task_id: U256,
        spec: &[u8],
        manifest: bytes::Bytes,
        policy: String,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<EnclaveReply, EnclaveError> {
        let identity = self.identity.as_ref().ok_or(EnclaveError::NotAttested)?;
        if self.ran.contains(&task_id) {
            return Err(EnclaveError::AlreadyRan(task_id));
        }
        // Asked again (a host retrying after a lost reply): the same request, for the same task
        // key, so a release already made for it still opens. For another job, manifest or
        // policy: no.
        if let Some(pending) = self.tasks.get(&task_id) {
            if pending.spec_hash != keccak256(spec) || pending.manifest != manifest || pending.policy != policy {
                return Err(EnclaveError::AlreadyRequested(task_id));
            }
            let (task_key, columns) = (pending.secret.public_key(), pending.columns.clone());
            let request = KeyRequest { taskId: task_id, taskKey: task_key.to_b256(), columns: columns.clone() };
            let signature = sign_hash(&identity.key, &request.eip712_signing_hash(&identity.domain));
            return Ok(EnclaveReply::KeyRequest { task_id, task_key, columns, signature });
        }
        if manifest.len() > MAX_MANIFEST_BYTES {
            return Err(EnclaveError::ManifestTooLarge(manifest.len()));
        }
        if policy.len() > MAX_POLICY_BYTES {
            return Err(EnclaveError::PolicyTooLarge(policy.len()));
        }
        if self.tasks.len() >= MAX_PENDING_TASKS
            && let Some(oldest) = self.tasks.iter().min_by_key(|(_, t)| t.requested).map(|(id, _)| *id)
        {
            self.tasks.remove(&oldest);
        }
        self.requests += 1;
        // A query that does not plan or that the licence refuses, or a manifest or policy that
        // does not parse, needs no column; the task fails, attested, at RunTask.
        let schema = serde_json::from_slice::<Manifest>(&manifest).map(|m| m.columns).unwrap_or_default();
        let columns = match (std::str::from_utf8(spec), Policy::parse(&policy)) {
            (Ok(sql), Ok(policy)) => {
                runtime.block_on(super::query::columns_read(&schema, sql, &policy)).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let secret = identity.task_secret(task_id)?;
        let task_key = secret.public_key();
        let request = KeyRequest { taskId: task_id, taskKey: task_key.to_b256(), columns: columns.clone() };
        let signature = sign_hash(&identity.key, &request.eip712_signing_hash(&identity.domain));
        let pending = PendingTask {
            secret,
            columns: columns.clone(),
            manifest,
            policy,
            spec_hash: keccak256(spec),
            requested: self.requests,
        };
        self.tasks.insert(task_id, pending);
        Ok(EnclaveReply::KeyRequest { task_id, task_key, columns, signature })
    }

    #[allow(clippy::too_many_arguments)]
    fn run_task(
        &mut self,
        task_id: U256,
        sealed_release: &strongroom_types::SealedBox,
        key_service: &X25519PublicKey,
        attached: Vec<bytes::Bytes>,
        spec: &[u8],
        location: String,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<EnclaveReply, EnclaveError> {
        let identity = self.identity.as_ref().ok_or(EnclaveError::NotAttested)?;
        let pending = self.tasks.get(&task_id).ok_or(EnclaveError::UnknownTask(task_id))?;
        // Only a release sealed by `key_service` opens: a host cannot make one up, as it would have
        // to name a key of its own here, which the signed result carries to the contract. One
        // that does not open leaves the task pending.
        let plain = zeroize::Zeroizing::new(open_from(
            &pending.secret,
            key_service,
            INFO_RELEASE,
            &task_id.to_be_bytes::<32>(),
            sealed_release,
            "key release",
        )?);
        let PendingTask { secret: task_secret, columns: needed, manifest, policy, spec_hash, .. } =
            self.tasks.remove(&task_id).expect("the task is pending");
        drop(task_secret);
        // Whatever happens below, the task's key is gone: it is not run again.
        if self.ran.len() >= MAX_RAN_TASKS {
            self.ran.pop_front();
        }
        self.ran.push_back(task_id);
        let release: KeyRelease =
            serde_json::from_slice(&plain).map_err(|e| EnclaveError::MalformedRelease(e.to_string()))?;
        drop(plain);
        let facts = &release.facts;
        if facts.task_id != task_id {
            return Err(EnclaveError::WrongTask { expected: task_id, got: facts.task_id });
        }
        if facts.chain_id != identity.chain_id || facts.contract != identity.contract {
            return Err(EnclaveError::WrongDeployment { chain_id: facts.chain_id, contract: facts.contract });
        }
        let result_key = X25519PublicKey(facts.result_key.0);
        // The keys were requested for the columns of the job planned then; the job run now
        // (checked against the chain below) must be that one.
        let outcome = match keccak256(spec) == spec_hash {
            true => {
                let seed = identity.noise_seed(&release.facts);
                run_checked(release, &needed, &manifest, &policy, attached, spec, &seed, runtime)
            }
            false => Err(TaskFailure::NotPlanned),
        };
        let (payload, outcome) = match outcome {
            Ok(payload) => (payload, Outcome::Completed),
            // Not signed: a task can run again (its key and noise are derived), so a host that
            // kept a run's real result could trade it for a signed fault that refunds everything
            // and gives the epsilon back. Unsigned, the task ends with the key service's receipt
            // (`refundReleased`): the owner is paid, the epsilon spent, the pool slashed.
            Err(failure) if failure.outcome() == Outcome::HostFault => {
                eprintln!("enclave: task {task_id} was not relayed what the chain pins; no result is signed");
                return Err(EnclaveError::HostFault { task: task_id, failure: failure.to_string() });
            }
            Err(failure) => {
                (ResultPayload::Failed { code: failure.code(), message: failure.to_string() }, failure.outcome())
            }
        };
        let said = match outcome {
            Outcome::Completed => "succeeded",
            Outcome::Refused => "was refused (attested)",
            Outcome::Failed => "failed while running (attested)",
            Outcome::HostFault => unreachable!("a host fault is not signed"),
        };
        eprintln!("enclave: task {task_id} {said}");
        let plaintext = serde_json::to_vec(&payload).expect("payload serializes");
        let sealed = seal(&result_key, INFO_RESULT, &task_id.to_be_bytes::<32>(), &plaintext)?;
        let digest = keccak256(sealed.as_bytes());
        let attestation = ResultAttestation {
            taskId: task_id,
            digest,
            outcome: outcome.as_u8(),
            keyService: key_service.to_b256(),
            location,
        };
        let signature = sign_hash(&identity.key, &attestation.eip712_signing_hash(&identity.domain));
        Ok(EnclaveReply::TaskResult { task_id, sealed_result: sealed.0.into(), digest, outcome, signature })
    }
}

/// The checks and the computation whose failure is the analyst's to read (an attested failure).
#[allow(clippy::too_many_arguments)]
fn run_checked(
    release: KeyRelease,
    needed: &[String],
    manifest: &[u8],
    policy: &str,
    objects: Vec<bytes::Bytes>,
    spec: &[u8],
    seed: &strongroom_policy::NoiseSeed,
    runtime: &tokio::runtime::Runtime,
) -> Result<ResultPayload, TaskFailure> {
    let facts = &release.facts;
    let found = ManifestDigest::of(manifest);
    if found != facts.manifest_digest {
        return Err(TaskFailure::ManifestMismatch { found, rented: facts.manifest_digest });
    }
    let manifest = Manifest::parse(manifest, facts.dataset)?;
    if objects.len() != manifest.objects.len() {
        return Err(TaskFailure::ObjectCount { relayed: objects.len(), listed: manifest.objects.len() });
    }
    for (entry, object) in manifest.objects.iter().zip(&objects) {
        let found = B256::from_slice(&Sha256::digest(object));
        if found != entry.sha256 {
            return Err(TaskFailure::ObjectChecksum { name: entry.name.clone(), found, listed: entry.sha256 });
        }
    }
    if keccak256(spec) != facts.job_hash {
        return Err(TaskFailure::JobMismatch);
    }
    if facts.job_kind != JobKind::Sql {
        return Err(TaskFailure::UnsupportedJob);
    }
    // The licence the job is held to is the one the task was rented under, as the chain says.
    let relayed = keccak256(policy.as_bytes());
    if relayed != facts.policy_hash {
        return Err(TaskFailure::PolicyMismatch { relayed, rented: facts.policy_hash });
    }
    let policy = Policy::parse(policy).map_err(|e| TaskFailure::BadPolicy(e.to_string()))?;
    if !release.withheld.is_empty() {
        return Err(TaskFailure::PolicyDenied(release.withheld.clone()));
    }
    if let Some(missing) = needed.iter().find(|c| !release.keys.columns.contains_key(*c)) {
        return Err(TaskFailure::KeyMissing(missing.clone()));
    }
    let sql = std::str::from_utf8(spec).map_err(|_| TaskFailure::NotUtf8)?;
    let names: Vec<String> = manifest.objects.iter().map(|o| o.name.clone()).collect();
    let released: std::collections::BTreeSet<String> = release.keys.columns.keys().cloned().collect();
    let factory = DecryptionFactory::new(release.keys, facts.dataset, manifest.data_version, names.clone());
    let objects = names.into_iter().zip(objects).collect();
    let run = super::query::run_encrypted(objects, factory, sql, &policy, facts.epsilon, seed, &released);
    let (arrow_ipc, rows, licence) = runtime.block_on(run)?;
    Ok(ResultPayload::Table { arrow_ipc: arrow_ipc.into(), rows, licence })
}

/// What a sealed identity is bound to: the deployment it signs for.
fn deployment_aad(chain_id: u64, contract: Address) -> Vec<u8> {
    [chain_id.to_be_bytes().as_slice(), contract.as_slice()].concat()
}

/// A fresh secp256k1 key from `rand`'s thread generator (ChaCha, seeded and reseeded from the
/// operating system): the enclave's identity for one run.
fn new_identity_key() -> SigningKey {
    loop {
        // All but a 2^-128 fraction of 32-byte strings are valid scalars.
        if let Ok(key) = SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
            return key;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use strongroom_types::{DataVersion, DatasetKeys, KeyId, TaskFacts, open, seal_from};

    use strongroom_dataplane::{ColumnEntry, Layout, ObjectWriter};

    use super::*;

    const SQL: &[u8] = b"SELECT SUM(n) AS s FROM dataset";

    /// The licence of the test dataset: sums of `n`, over groups of at least two rows.
    const POLICY: &str = "version = 2\nname = \"t\"\n[columns]\nn = { role = \"measure\", bounds = [0, 100] }\n\
                          [aggregation]\nfunctions = [\"sum\", \"count\"]\nmin_group_size = 2\n";

    /// Thirty rows of one column in three objects, and the manifest that lists them.
    fn dataset() -> (DatasetKeys, Manifest, Vec<bytes::Bytes>) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..30))]).unwrap();
        let keys = DatasetKeys::generate(["n"]);
        let mut writer =
            ObjectWriter::new(schema, &keys, B256::repeat_byte(9), DataVersion::FIRST, Layout::with_object_rows(10))
                .unwrap();
        let mut objects = writer.write(&batch).unwrap();
        objects.extend(writer.finish().unwrap());
        let manifest = Manifest {
            format: Manifest::FORMAT.into(),
            dataset: B256::repeat_byte(9),
            data_version: DataVersion::FIRST,
            columns: vec![ColumnEntry { name: "n".into(), data_type: "Int64".into(), key_id: KeyId::column("n") }],
            rows: 30,
            objects: objects.iter().map(|o| o.entry.clone()).collect(),
        };
        (keys, manifest, objects.into_iter().map(|o| o.ciphertext).collect())
    }

    /// Runs the checks and the query as for a task rented against `manifest` (the chain's copy).
    fn run(keys: &DatasetKeys, manifest: &Manifest, objects: Vec<bytes::Bytes>) -> Result<ResultPayload, String> {
        run_to_failure(keys, manifest, objects).map_err(|e| e.to_string())
    }

    /// [`run`], failing with the task's failure itself.
    fn run_to_failure(
        keys: &DatasetKeys,
        manifest: &Manifest,
        objects: Vec<bytes::Bytes>,
    ) -> Result<ResultPayload, TaskFailure> {
        let sql = SQL;
        let (stored, digest) = manifest.to_stored();
        let facts = TaskFacts {
            chain_id: 1,
            contract: Address::ZERO,
            task_id: U256::from(1),
            dataset: B256::repeat_byte(9),
            job_kind: JobKind::Sql,
            job_hash: keccak256(sql),
            result_key: B256::ZERO,
            policy_hash: keccak256(POLICY),
            manifest_digest: digest,
            deadline: 0,
            epsilon: 0,
        };
        let release = KeyRelease { facts, keys: keys.clone(), withheld: Vec::new() };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        run_checked(
            release,
            &["n".into()],
            &stored,
            POLICY,
            objects,
            sql,
            &strongroom_policy::NoiseSeed::random(),
            &runtime,
        )
    }

    #[test]
    fn every_object_the_manifest_lists_is_scanned() {
        let (keys, manifest, objects) = dataset();
        let Ok(ResultPayload::Table { rows: 1, .. }) = run(&keys, &manifest, objects) else { panic!("query fails") };
    }

    #[test]
    fn objects_missing_swapped_or_of_another_dataset_are_refused() {
        let (keys, manifest, objects) = dataset();
        let err = run(&keys, &manifest, objects[..2].to_vec()).unwrap_err();
        assert_eq!(err, "the worker relayed 2 objects; the manifest registered on chain lists 3");

        let swapped = vec![objects[1].clone(), objects[0].clone(), objects[2].clone()];
        let err = run(&keys, &manifest, swapped.clone()).unwrap_err();
        assert!(err.starts_with("dataset object part-00000.parquet has sha256"), "{err}");
        // Not what the chain pins, so the host's (or its storage's) doing: nobody is paid for it.
        for relayed in [objects[..2].to_vec(), swapped] {
            assert_eq!(run_to_failure(&keys, &manifest, relayed).unwrap_err().outcome(), Outcome::HostFault);
        }

        let other = Manifest { dataset: B256::repeat_byte(8), ..manifest.clone() };
        let err = run(&keys, &other, objects.clone()).unwrap_err();
        assert!(err.starts_with("the manifest registered on chain is for dataset 0x0808"), "{err}");
        // The manifest is the one on chain: the owner's, refused (the pool did its part).
        assert_eq!(run_to_failure(&keys, &other, objects.clone()).unwrap_err().outcome(), Outcome::Refused);

        let mut repeated = manifest.clone();
        repeated.objects[1].name = repeated.objects[0].name.clone();
        let err = run(&keys, &repeated, objects.clone()).unwrap_err();
        assert_eq!(err, "the manifest registered on chain lists a bad or repeated object name `part-00000.parquet`");

        let mut short = manifest.clone();
        short.rows = 29;
        let err = run(&keys, &short, objects.clone()).unwrap_err();
        assert_eq!(err, "the manifest registered on chain lists objects whose rows do not add up to its total");
    }

    #[test]
    fn an_object_listed_under_another_name_fails_on_its_aad_in_the_scan() {
        // Its sha256 matches, so only the AAD (which binds the object's name) can catch it.
        let (keys, mut manifest, objects) = dataset();
        manifest.objects[2].name = "part-00009.parquet".into();
        let failure = run_to_failure(&keys, &manifest, objects).unwrap_err();
        let err = failure.to_string();
        assert!(err.to_lowercase().contains("decrypt") || err.to_lowercase().contains("tag"), "{err}");
        // The owner published objects that do not open: refunded, not paid for.
        assert_eq!(failure.outcome(), Outcome::Refused);
    }

    /// An attested session for chain 1, as if `Attest` had run.
    fn attested() -> Session {
        let identity = Identity {
            key: new_identity_key(),
            domain: domain(1, Address::ZERO),
            chain_id: 1,
            contract: Address::ZERO,
        };
        Session { identity: Some(identity), tasks: HashMap::new(), requests: 0, ran: Default::default() }
    }

    /// Requests keys for `planned` under `relayed_policy`, releases them as a key service would
    /// for a task rented to run `rented` under [`POLICY`], then runs `relayed`; returns the
    /// attested outcome and what the analyst reads, or the enclave's refusal to sign one.
    fn request_release_run(
        planned: &[u8],
        rented: &[u8],
        relayed: &[u8],
        relayed_policy: &str,
    ) -> Result<(Outcome, ResultPayload), String> {
        request_release_run_under(POLICY, planned, rented, relayed, relayed_policy)
    }

    /// [`request_release_run`] for a task rented under `rented_policy`.
    fn request_release_run_under(
        rented_policy: &str,
        planned: &[u8],
        rented: &[u8],
        relayed: &[u8],
        relayed_policy: &str,
    ) -> Result<(Outcome, ResultPayload), String> {
        let (keys, manifest, objects) = dataset();
        let (stored, digest) = manifest.to_stored();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut session = attested();
        let task_id = U256::from(7);
        let EnclaveReply::KeyRequest { task_key, columns, .. } =
            session.request_keys(task_id, planned, stored.clone().into(), relayed_policy.into(), &runtime).unwrap()
        else {
            panic!("a key request")
        };
        assert!(columns.iter().all(|c| c == "n"), "the plan's columns: {columns:?}");
        let analyst = X25519SecretKey::generate();
        let facts = TaskFacts {
            chain_id: 1,
            contract: Address::ZERO,
            task_id,
            dataset: B256::repeat_byte(9),
            job_kind: JobKind::Sql,
            job_hash: keccak256(rented),
            result_key: analyst.public_key().to_b256(),
            policy_hash: keccak256(rented_policy),
            manifest_digest: digest,
            deadline: 0,
            epsilon: 0,
        };
        let release = KeyRelease { facts, keys, withheld: Vec::new() };
        let key_service = X25519SecretKey::generate();
        let plaintext = serde_json::to_vec(&release).unwrap();
        let aad = task_id.to_be_bytes::<32>();
        // A release the host seals itself, to the same task key, does not open as the key
        // service's; it is refused without a signed result, and the task is still pending.
        let forged = seal(&task_key, INFO_RELEASE, &aad, &plaintext).unwrap();
        let err = session
            .run_task(
                task_id,
                &forged,
                &key_service.public_key(),
                objects.clone(),
                relayed,
                "file:///r".into(),
                &runtime,
            )
            .expect_err("a forged release is refused");
        assert!(err.to_string().contains("key release"), "{err}");
        let sealed = seal_from(&task_key, &key_service, INFO_RELEASE, &aad, &plaintext).unwrap();
        let reply = session
            .run_task(task_id, &sealed, &key_service.public_key(), objects, relayed, "file:///r".into(), &runtime)
            .map_err(|e| e.to_string())?;
        let EnclaveReply::TaskResult { sealed_result, outcome, .. } = reply else { panic!("a task result") };
        let opened = open(
            &analyst,
            INFO_RESULT,
            &task_id.to_be_bytes::<32>(),
            &strongroom_types::SealedBox(sealed_result.to_vec()),
            "result",
        )
        .unwrap();
        assert!(session.tasks.is_empty(), "a run task is forgotten");
        // And it is not run again, whatever the host asks.
        let again = session.request_keys(task_id, planned, stored.into(), relayed_policy.into(), &runtime).unwrap_err();
        assert_eq!(again.to_string(), "task 7 already ran in this enclave: a task runs once");
        Ok((outcome, serde_json::from_slice(&opened).unwrap()))
    }

    #[test]
    fn an_enclave_restarted_with_its_identity_asks_for_a_task_with_the_same_key_and_noise() {
        let (_, manifest, _) = dataset();
        let (stored, _) = manifest.to_stored();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let first = attested();
        let identity = first.identity.as_ref().unwrap();
        // The same identity in a new process, as an unsealed identity is.
        let again = || {
            let mut session = attested();
            session.identity.as_mut().unwrap().key = identity.key.clone();
            session
        };
        let task_key = |mut session: Session, task: u64| match session
            .request_keys(U256::from(task), SQL, stored.clone().into(), POLICY.into(), &runtime)
            .unwrap()
        {
            EnclaveReply::KeyRequest { task_key, .. } => task_key,
            other => panic!("a key request, not {other:?}"),
        };
        let key = task_key(again(), 5);
        assert_eq!(task_key(again(), 5), key, "the restarted enclave asks with the same task key");
        assert_ne!(task_key(again(), 6), key, "another task, another key");
        assert_ne!(task_key(attested(), 5), key, "another identity, another key");
        let facts = |task: u64| TaskFacts {
            chain_id: 1,
            contract: Address::ZERO,
            task_id: U256::from(task),
            dataset: B256::repeat_byte(9),
            job_kind: JobKind::Sql,
            job_hash: keccak256(SQL),
            result_key: B256::repeat_byte(1),
            policy_hash: keccak256(POLICY),
            manifest_digest: ManifestDigest::new(B256::repeat_byte(2)),
            deadline: 0,
            epsilon: 1,
        };
        let seed = identity.noise_seed(&facts(5));
        assert_eq!(again().identity.unwrap().noise_seed(&facts(5)), seed);
        assert_ne!(identity.noise_seed(&facts(6)), seed);
        assert_ne!(attested().identity.unwrap().noise_seed(&facts(5)), seed);
        // Another rental that took the same id (after a reorganisation): other noise.
        let other_analyst = TaskFacts { result_key: B256::repeat_byte(3), ..facts(5) };
        assert_ne!(identity.noise_seed(&other_analyst), seed);
    }

    #[test]
    fn pending_tasks_are_bounded_by_dropping_the_oldest() {
        let (_, manifest, _) = dataset();
        let (stored, _) = manifest.to_stored();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut session = attested();
        for task in 1..=MAX_PENDING_TASKS as u64 + 1 {
            session.request_keys(U256::from(task), SQL, stored.clone().into(), POLICY.into(), &runtime).unwrap();
        }
        assert_eq!(session.tasks.len(), MAX_PENDING_TASKS);
        assert!(!session.tasks.contains_key(&U256::from(1)), "the oldest made room");
        assert!(session.tasks.contains_key(&U256::from(MAX_PENDING_TASKS as u64 + 1)));
        let huge = bytes::Bytes::from(vec![b' '; MAX_MANIFEST_BYTES + 1]);
        let err = session.request_keys(U256::from(9_999), SQL, huge, POLICY.into(), &runtime).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the manifest is {} bytes, more than the {MAX_MANIFEST_BYTES} an enclave keeps for a task",
                MAX_MANIFEST_BYTES + 1
            )
        );
    }

    #[test]
    fn a_repeated_key_request_is_the_same_request_or_refused() {
        let (_, manifest, _) = dataset();
        let (stored, _) = manifest.to_stored();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut session = attested();
        let task_id = U256::from(3);
        let key_of = |reply: EnclaveReply| match reply {
            EnclaveReply::KeyRequest { task_key, columns, .. } => (task_key, columns),
            other => panic!("a key request, not {other:?}"),
        };
        let first = key_of(session.request_keys(task_id, SQL, stored.clone().into(), POLICY.into(), &runtime).unwrap());
        let again = key_of(session.request_keys(task_id, SQL, stored.clone().into(), POLICY.into(), &runtime).unwrap());
        assert_eq!(first, again, "a retry gets the same task key and columns");
        let err = session
            .request_keys(task_id, b"SELECT COUNT(*) FROM dataset", stored.clone().into(), POLICY.into(), &runtime)
            .unwrap_err();
        assert_eq!(err.to_string(), "keys for task 3 were already requested for another job, manifest or policy");
        let other_policy = POLICY.replace("min_group_size = 2", "min_group_size = 1");
        let err = session.request_keys(task_id, SQL, stored.into(), other_policy, &runtime).unwrap_err();
        assert_eq!(err.to_string(), "keys for task 3 were already requested for another job, manifest or policy");
        assert_eq!(session.tasks.len(), 1);
    }

    #[test]
    fn the_job_run_must_be_the_one_planned_for_the_key_request() {
        let (outcome, payload) = request_release_run(SQL, SQL, SQL, POLICY).unwrap();
        assert!(
            outcome == Outcome::Completed && matches!(payload, ResultPayload::Table { rows: 1, .. }),
            "{payload:?}"
        );

        // The host plans one query for the keys and relays the rented one to run: no result is
        // signed (a signed host fault would refund the task).
        let wide = b"SELECT COUNT(n) AS c FROM dataset";
        assert_eq!(
            request_release_run(wide, SQL, SQL, POLICY).unwrap_err(),
            host_fault("the job relayed to run is not the one whose columns were planned for the key request")
        );

        // Or relays another job than the one rented, planned or not.
        assert_eq!(
            request_release_run(wide, SQL, wide, POLICY).unwrap_err(),
            host_fault("the job relayed by the worker does not match the job hash on chain")
        );
    }

    /// The enclave's refusal to sign task 7's result, for `failure`.
    fn host_fault(failure: &str) -> String {
        format!(
            "no result is signed for task 7: {failure}. The host relayed what the chain does not pin for it, and a \
             signed host fault would refund a task whose real result a host may hold from an earlier run; relay the \
             rented manifest, objects, job and policy"
        )
    }

    #[test]
    fn the_job_is_held_to_the_licence_it_was_rented_under() {
        // A query the licence refuses asks for no key and fails, attested, naming the rule.
        let row_level = b"SELECT n FROM dataset";
        let (outcome, payload) = request_release_run(row_level, row_level, row_level, POLICY).unwrap();
        let ResultPayload::Failed { code, message } = payload else { panic!("expected a failure") };
        assert_eq!(outcome, Outcome::Refused);
        assert_eq!(code, strongroom_types::FailureCode::PolicyViolation);
        assert!(message.starts_with("refused by the licence, rule row_level_output: "), "{message}");

        // A host that relays a looser policy than the one rented gets no result signed.
        let loose = POLICY.replace("min_group_size = 2", "min_group_size = 1");
        assert_eq!(
            request_release_run(SQL, SQL, SQL, &loose).unwrap_err(),
            host_fault(&format!(
                "the licence policy relayed by the worker hashes to {}, not {}, the policy the task was rented under",
                keccak256(&loose),
                keccak256(POLICY)
            ))
        );
    }

    #[test]
    fn a_failure_once_the_data_is_read_is_attested_as_failed_not_refused() {
        // Thirty groups where the licence releases at most two: found only by running the query,
        // so the failure tells something of the data and must spend the epsilon.
        let policy = "version = 2\nname = \"t\"\n[columns]\nn = \"dimension\"\n[aggregation]\n\
                      functions = [\"count\"]\nmin_group_size = 1\nmax_output_rows = 2\n";
        let sql = b"SELECT n, COUNT(*) AS c FROM dataset GROUP BY n";
        let (outcome, payload) = request_release_run_under(policy, sql, sql, sql, policy).unwrap();
        let ResultPayload::Failed { code, message } = payload else { panic!("expected a failure") };
        assert_eq!(outcome, Outcome::Failed);
        assert_eq!(code, strongroom_types::FailureCode::PolicyViolation);
        assert!(message.starts_with("refused by the licence, rule output_rows: "), "{message}");
    }
}
