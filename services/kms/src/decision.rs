//! The key-release decision, as pure functions of the request and what the chain and the store
//! say: no I/O here, so every refusal is a table test that runs without a chain. It comes in two
//! halves, [`authorize`] then [`grant`], so the deposit is read and opened only for a request
//! that may be served.
//!
//! The checks run in this order, and the first that fails is the answer: the task exists, is
//! active and before its deadline; the enclave signed the request and the pool operator
//! authorized that enclave; the enclave is registered with the pinned measurement, if any; the
//! dataset is registered with this key service; the keys of the data version rented against are
//! deposited under the policy rented under; the columns asked for exist. What is released is
//! needed ∩ granted; needed but not granted is reported, never released.

use std::collections::BTreeSet;

use alloy::primitives::{Address, B256, keccak256};
use alloy::sol_types::Eip712Domain;
use strongroom_chain::{DatasetInfo, Task, TaskStatus};
use strongroom_types::{Authorization, JobKind, KeyRequest, Policy, ReleaseRequest, TaskFacts, recover_typed};

use crate::{KmsError, Result};

/// What the chain said, read just before deciding.
#[derive(Clone, Debug)]
pub struct ChainView {
    pub chain_id: u64,
    pub contract: Address,
    /// The latest block's timestamp: the contract's "now".
    pub now: u64,
    /// The task, its parameters checked against the on-chain commitment.
    pub task: Option<Task>,
    /// Whether the requesting enclave is registered, unexpired and of a trusted measurement.
    pub enclave_active: bool,
    /// The enclave's measurement, read only when the task pins one (zero otherwise).
    pub enclave_measurement: B256,
    /// Who presigned the request's authorization on chain, read only when the request carries
    /// no signature (zero otherwise, or if nobody did).
    pub authorization_presigner: Address,
    pub dataset: Option<DatasetInfo>,
}

/// The deposit of the data version the task was rented against, as the store holds it.
#[derive(Clone, Debug)]
pub struct DepositView {
    pub policy: String,
    /// The columns that have keys, from opening the sealed keys (or why they do not open).
    pub key_columns: std::result::Result<BTreeSet<String>, String>,
}

/// A release the service may make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Columns whose keys are released (with the footer key).
    pub columns: Vec<String>,
    /// Columns the plan reads that the policy does not grant; the task must fail naming them.
    pub withheld: Vec<String>,
    /// The task's on-chain facts, sealed with the keys.
    pub facts: TaskFacts,
}

/// A request that may be served: the task and dataset it is for. Only then does the service read
/// the deposit and open its keys, so nobody unauthorized makes it do either.
#[derive(Clone, Copy, Debug)]
pub struct Authorized<'a> {
    pub task: &'a Task,
    pub dataset: &'a DatasetInfo,
}

/// The request is signed by the enclave it names: checked first of all, with no I/O.
pub fn check_enclave_signature(request: &ReleaseRequest, domain: &Eip712Domain) -> Result<()> {
    let key_request =
        KeyRequest { taskId: request.task_id, taskKey: request.task_key.to_b256(), columns: request.columns.clone() };
    if recover_typed(&key_request, domain, &request.enclave_signature) != Some(request.enclave) {
        return Err(KmsError::BadEnclaveSignature(request.enclave));
    }
    Ok(())
}

/// The first half of the decision: the task, the signatures, the enclave and the dataset.
/// `our_key` is this service's public key as the chain records key services.
pub fn authorize<'a>(
    request: &ReleaseRequest,
    domain: &Eip712Domain,
    chain: &'a ChainView,
    our_key: B256,
) -> Result<Authorized<'a>> {
    let task_id = request.task_id;
    let task = chain.task.as_ref().ok_or(KmsError::UnknownTask(task_id))?;
    if task.status != TaskStatus::Active {
        return Err(KmsError::TaskNotActive { task: task_id, status: task.status.describe() });
    }
    let params = &task.params;
    if chain.now > params.deadline {
        return Err(KmsError::DeadlinePassed { task: task_id, deadline: params.deadline });
    }
    check_enclave_signature(request, domain)?;
    // As the contract takes it (which is what lets a receipt slash): an ECDSA signature, or none
    // and a presignature on chain. Never ERC-1271, whose answer a wallet can change once the keys
    // are out.
    let operator = params.poolOperator;
    let authorized_by = match request.authorization.is_empty() {
        true => Some(chain.authorization_presigner),
        false => {
            recover_typed(&Authorization { taskId: task_id, enclave: request.enclave }, domain, &request.authorization)
        }
    };
    if operator.is_zero() || authorized_by != Some(operator) {
        return Err(KmsError::NotAuthorized { task: task_id, enclave: request.enclave, operator });
    }
    if !chain.enclave_active {
        return Err(KmsError::EnclaveNotRegistered(request.enclave));
    }
    if !params.measurement.is_zero() && chain.enclave_measurement != params.measurement {
        return Err(KmsError::MeasurementNotAllowed {
            enclave: request.enclave,
            measurement: chain.enclave_measurement,
            pinned: params.measurement,
        });
    }
    let dataset = chain.dataset.as_ref().ok_or(KmsError::UnknownDataset(params.dataset))?;
    // The key service the task was rented against, as the dataset named it at rent: the one
    // whose sealed release the enclave opens and the contract settles with, and the only one
    // that knows whether it released this task's keys already.
    if params.kmsKey != our_key {
        return Err(KmsError::WrongKeyService { task: task_id, registered: params.kmsKey, ours: our_key });
    }
    Ok(Authorized { task, dataset })
}

/// The second half: the deposit of the data version rented against, looked up for the
/// dataset's owner, its policy and its keys; what is released and what withheld.
pub fn grant(
    request: &ReleaseRequest,
    chain: &ChainView,
    authorized: Authorized<'_>,
    deposit: Option<&DepositView>,
) -> Result<Grant> {
    let Authorized { task, dataset } = authorized;
    let (task_id, params) = (request.task_id, &task.params);
    // The keys of the data version the task was rented against (a rotation makes a new one).
    let manifest = task.manifest_digest();
    let deposit = deposit.ok_or(KmsError::NoKeysDeposited { dataset: dataset.id, manifest })?;
    // The policy the task was rented under is the one its keys are granted by.
    let deposited = keccak256(deposit.policy.as_bytes());
    if deposited != params.policyHash {
        return Err(KmsError::PolicyMismatch { dataset: dataset.id, deposited, rented: params.policyHash });
    }
    let policy = Policy::parse(&deposit.policy).map_err(|e| KmsError::BadDeposit(e.to_string()))?;
    // The contract knows the policy by its hash only, so it cannot refuse a rental without the
    // epsilon the licence needs: no key moves for one (the task refunds at its deadline).
    if policy.differential_privacy.as_ref().is_some_and(|dp| dp.required) && params.epsilon == 0 {
        return Err(KmsError::EpsilonRequired(task_id));
    }
    let key_columns = deposit.key_columns.as_ref().map_err(|e| KmsError::BadDeposit(e.clone()))?;
    if let Some(column) = request.columns.iter().find(|c| !key_columns.contains(*c)) {
        return Err(KmsError::UnknownColumn { dataset: dataset.id, column: column.clone() });
    }
    let (columns, withheld) = request.columns.iter().cloned().partition(|c| policy.grants(c));
    let facts = TaskFacts {
        chain_id: chain.chain_id,
        contract: chain.contract,
        task_id,
        dataset: dataset.id,
        job_kind: JobKind::try_from(params.kind).map_err(|e| KmsError::Internal(e.to_string()))?,
        job_hash: params.jobHash,
        result_key: params.resultKey,
        policy_hash: params.policyHash,
        manifest_digest: manifest,
        deadline: params.deadline,
        epsilon: params.epsilon,
    };
    Ok(Grant { columns, withheld, facts })
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Bytes, U256};
    use alloy::signers::local::PrivateKeySigner;
    use strongroom_chain::TaskParams;
    use strongroom_types::{ManifestDigest, RegistryVersion, X25519SecretKey, domain, sign_typed};

    use super::*;

    const POLICY: &str = "version = 2\nname = \"no-email\"\n[columns]\nregion = \"dimension\"\n\
                          spend = { role = \"measure\", bounds = [0, 100] }\nemail = \"hidden\"\n\
                          [aggregation]\nfunctions = [\"sum\"]\nmin_group_size = 2\n";

    /// A task, a dataset, a deposit and a request that are all in order; each case spoils one.
    struct Case {
        request: ReleaseRequest,
        chain: ChainView,
        deposit: Option<DepositView>,
        domain: Eip712Domain,
        our_key: B256,
    }

    fn good() -> Case {
        let domain = domain(31337, Address::repeat_byte(0xcc));
        let (enclave, operator) = (PrivateKeySigner::random(), PrivateKeySigner::random());
        let task_id = U256::from(5);
        let task_key = X25519SecretKey::generate().public_key();
        let columns = vec!["region".to_owned(), "email".to_owned()];
        let request = ReleaseRequest {
            task_id,
            enclave: enclave.address(),
            task_key,
            columns: columns.clone(),
            enclave_signature: sign_typed(
                enclave.credential(),
                &KeyRequest { taskId: task_id, taskKey: task_key.to_b256(), columns },
                &domain,
            ),
            authorization: sign_typed(
                operator.credential(),
                &Authorization { taskId: task_id, enclave: enclave.address() },
                &domain,
            ),
        };
        let dataset = B256::repeat_byte(0xd1);
        let params = TaskParams {
            dataset,
            registryVersion: 1,
            pool: B256::repeat_byte(0x90),
            app: B256::ZERO,
            kind: 0,
            analyst: Address::repeat_byte(0xa1),
            datasetOwner: Address::repeat_byte(0x01),
            poolOperator: operator.address(),
            appOwner: Address::ZERO,
            deadline: 1_000,
            epsilon: 0,
            datasetPrice: 1,
            poolPrice: 1,
            appPrice: 0,
            stake: 1,
            jobHash: B256::repeat_byte(0x10),
            resultKey: B256::repeat_byte(0x11),
            policyHash: keccak256(POLICY),
            manifestDigest: B256::repeat_byte(0x12),
            measurement: B256::ZERO,
            kmsKey: B256::repeat_byte(0x4b),
        };
        let task = Task { id: task_id, params, spec: Bytes::new(), status: TaskStatus::Active, block: 1 };
        let our_key = B256::repeat_byte(0x4b);
        let info = DatasetInfo {
            id: dataset,
            owner: Address::repeat_byte(0x01),
            active: true,
            version: RegistryVersion::new(1),
            privacy_budget: 0,
            manifest_digest: ManifestDigest::new(B256::repeat_byte(0x12)),
            kms_key: our_key,
            policy_hash: keccak256(POLICY),
            uri: "file:///d/manifest.json".into(),
            kms_url: "http://kms".into(),
        };
        let chain = ChainView {
            chain_id: 31337,
            contract: Address::repeat_byte(0xcc),
            now: 500,
            task: Some(task),
            enclave_active: true,
            enclave_measurement: B256::repeat_byte(0xee),
            authorization_presigner: Address::ZERO,
            dataset: Some(info),
        };
        let key_columns = Ok(["region", "spend", "email"].map(String::from).into());
        Case { request, chain, deposit: Some(DepositView { policy: POLICY.into(), key_columns }), domain, our_key }
    }

    fn decide_case(case: &Case) -> Result<Grant> {
        let authorized = authorize(&case.request, &case.domain, &case.chain, case.our_key)?;
        grant(&case.request, &case.chain, authorized, case.deposit.as_ref())
    }

    /// One thing wrong with an otherwise good case.
    type Spoil = Box<dyn FnOnce(&mut Case)>;

    fn refusal(spoil: impl FnOnce(&mut Case)) -> String {
        let mut case = good();
        spoil(&mut case);
        let err = decide_case(&case).unwrap_err();
        format!("{}: {err}", err.code())
    }

    fn params(case: &mut Case) -> &mut TaskParams {
        &mut case.chain.task.as_mut().unwrap().params
    }

    #[test]
    fn in_order_the_plan_gets_needed_and_granted_and_hears_what_is_withheld() {
        let case = good();
        let grant = decide_case(&case).unwrap();
        assert_eq!((grant.columns, grant.withheld), (vec!["region".to_owned()], vec!["email".to_owned()]));
        assert_eq!(
            grant.facts.manifest_digest,
            ManifestDigest::new(B256::repeat_byte(0x12)),
            "the version rented against"
        );
        assert_eq!(grant.facts.result_key, B256::repeat_byte(0x11));
    }

    #[test]
    fn every_refusal_names_its_reason() {
        let other = PrivateKeySigner::random();
        let cases: Vec<(&str, Spoil)> = vec![
            ("unknown_task: task 5 does not exist on chain", Box::new(|c| c.chain.task = None)),
            (
                "task_not_active: task 5 is refunded, not active: keys are released only for paid, running tasks",
                Box::new(|c| c.chain.task.as_mut().unwrap().status = TaskStatus::Refunded),
            ),
            (
                "task_not_active: task 5 is completed (already paid out), not active: keys are released only for paid, running tasks",
                Box::new(|c| c.chain.task.as_mut().unwrap().status = TaskStatus::Completed),
            ),
            ("deadline_passed: task 5 passed its deadline at unix time 1000", Box::new(|c| c.chain.now = 1_001)),
            (
                "bad_enclave_signature",
                Box::new(|c| c.request.columns.push("spend".into())), // signed for other columns
            ),
            (
                "not_authorized",
                Box::new(move |c| {
                    c.request.authorization = sign_typed(
                        other.credential(),
                        &Authorization { taskId: c.request.task_id, enclave: c.request.enclave },
                        &c.domain,
                    )
                }),
            ),
            (
                // No signature, and no presignature on chain to stand for it.
                "not_authorized",
                Box::new(|c| c.request.authorization = Bytes::new()),
            ),
            (
                // A presignature, by someone other than the task's operator.
                "not_authorized",
                Box::new(|c| {
                    c.request.authorization = Bytes::new();
                    c.chain.authorization_presigner = Address::repeat_byte(0x66);
                }),
            ),
            (
                // A signature when the presigner is the operator: the signature is what counts.
                "not_authorized",
                Box::new(|c| {
                    c.chain.authorization_presigner = params(c).poolOperator;
                    c.request.authorization = sign_typed(
                        PrivateKeySigner::random().credential(),
                        &Authorization { taskId: c.request.task_id, enclave: c.request.enclave },
                        &c.domain,
                    );
                }),
            ),
            ("enclave_not_registered", Box::new(|c| c.chain.enclave_active = false)),
            ("measurement_not_allowed", Box::new(|c| params(c).measurement = B256::repeat_byte(0xef))),
            (
                "unknown_dataset: dataset 0xd1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1 is not registered on chain",
                Box::new(|c| c.chain.dataset = None),
            ),
            ("wrong_key_service", Box::new(|c| c.our_key = B256::repeat_byte(0x4c))),
            ("no_keys_deposited", Box::new(|c| c.deposit = None)),
            ("policy_mismatch", Box::new(|c| params(c).policyHash = B256::repeat_byte(0x77))),
            (
                "bad_deposit: the deposited keys cannot be opened: tampered",
                Box::new(|c| c.deposit.as_mut().unwrap().key_columns = Err("tampered".into())),
            ),
            (
                "unknown_column",
                Box::new(|c| c.deposit.as_mut().unwrap().key_columns = Ok(["email"].map(String::from).into())),
            ),
            (
                "epsilon_required: task 5 was rented with epsilon 0, but its licence releases results only with differential privacy",
                Box::new(|c| {
                    let private = format!(
                        "{POLICY}[differential_privacy]\nrequired = true\ndelta = 1e-6\nmax_groups_per_unit = 1\nmax_rows_per_unit = 1\n"
                    );
                    params(c).policyHash = keccak256(&private);
                    params(c).epsilon = 0;
                    c.deposit.as_mut().unwrap().policy = private;
                }),
            ),
        ];
        for (expected, spoil) in cases {
            let got = refusal(spoil);
            assert!(got.starts_with(expected), "expected `{expected}`, got `{got}`");
        }
        // A contract operator's authorization presigned on chain, with none in the request.
        let mut case = good();
        case.request.authorization = Bytes::new();
        case.chain.authorization_presigner = params(&mut case).poolOperator;
        assert!(decide_case(&case).is_ok());
        // A pinned measurement that matches is no refusal.
        let mut case = good();
        params(&mut case).measurement = B256::repeat_byte(0xee);
        assert!(decide_case(&case).is_ok());
    }
}
