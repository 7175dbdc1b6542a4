//! The key service refuses every release it should, each with its own error.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use strongroom_chain::Chain;
use strongroom_client::analyst::RentOptions;
use strongroom_devnet::{Devnet, analyst_key, operator_key};
use strongroom_e2e::{devnet, pass_claim_window, publish_sample, registered_enclave, rent, request_release, result_of};
use strongroom_types::{X25519SecretKey, sign_typed};

/// Posts a release request for `task` by `enclave`, authorized by `authorizer`; returns (status, body).
async fn request(
    devnet: &Devnet,
    chain: &Chain,
    task: U256,
    enclave: &PrivateKeySigner,
    authorizer: &PrivateKeySigner,
) -> (u16, serde_json::Value) {
    request_release(devnet, chain, task, enclave, authorizer, X25519SecretKey::generate().public_key()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_no_key_goes_to_an_unregistered_enclave_an_unauthorized_one_or_a_settled_or_late_task() {
    // No worker: the rented tasks stay active until we settle them by hand.
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    let options = RentOptions::default();
    let active = rent(&devnet, &published, "SELECT 1", &options).await.unwrap().task;
    let rogue_enclave = PrivateKeySigner::random();
    let enclave = registered_enclave(&devnet).await;

    // An enclave that never registered a quote is refused before the chain is searched for the
    // task, whatever the task: made-up requests cost no log scan.
    for task in [U256::from(999), active.id] {
        let (status, body) = request(&devnet, &analyst, task, &rogue_enclave, &operator_key()).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("enclave_not_registered")));
        assert_eq!(
            body["message"],
            format!(
                "enclave {} is not registered on chain, has expired, or its measurement is no longer trusted",
                rogue_enclave.address()
            )
        );
    }

    let (status, body) = request(&devnet, &analyst, U256::from(999), &enclave, &operator_key()).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("unknown_task")));
    assert_eq!(body["message"], "task 999 does not exist on chain");

    // Authorized by someone other than the pool operator.
    let (status, body) = request(&devnet, &analyst, active.id, &enclave, &analyst_key()).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("not_authorized")));
    assert_eq!(
        body["message"],
        format!(
            "the pool operator {} did not authorize enclave {} for task {}: it signs `Authorization(taskId, \
             enclave)` with its key or, if it is a contract, presigns it on chain with `presignAuthorization` and \
             the request carries no authorization",
            operator_key().address(),
            enclave.address(),
            active.id
        )
    );

    // Refunded after its deadline: the analyst has its money back, so there is nothing to run.
    pass_claim_window(&devnet).await;
    analyst.refund(&active).await.unwrap();
    let (status, body) = request(&devnet, &analyst, active.id, &enclave, &operator_key()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("task_not_active")));
    assert_eq!(
        body["message"],
        format!("task {} is refunded, not active: keys are released only for paid, running tasks", active.id)
    );

    // Active but past its deadline (not yet refunded).
    let late = rent(&devnet, &published, "SELECT 1", &options).await.unwrap().task_id();
    devnet.increase_time(devnet.options.max_task_duration.as_secs() + 1).await.unwrap();
    let (status, body) = request(&devnet, &analyst, late, &enclave, &operator_key()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("deadline_passed")));
    assert!(body["message"].as_str().unwrap().starts_with(&format!("task {late} passed its deadline")));
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_tasks_keys_are_released_once_to_one_enclave_and_task_key() {
    // No worker: two enclaves of our own, registered from quotes of the trusted measurement.
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    let task = rent(&devnet, &published, "SELECT 1", &RentOptions::default()).await.unwrap().task_id();
    let operator = devnet.chain_as(operator_key()).await.unwrap();
    let (first, second) = (PrivateKeySigner::random(), PrivateKeySigner::random());
    for enclave in [&first, &second] {
        let (quote, signature) = strongroom_e2e::vendor_quote(&devnet, enclave.address()).await;
        operator.register_enclave(&quote, signature).await.unwrap();
    }
    let key = X25519SecretKey::generate().public_key();
    let (status, body) = request_release(&devnet, &analyst, task, &first, &operator_key(), key).await;
    assert_eq!(status, 200, "{body}");
    // A host retrying after a lost reply sends the same request: it is answered again.
    let (status, body) = request_release(&devnet, &analyst, task, &first, &operator_key(), key).await;
    assert_eq!(status, 200, "{body}");
    // Another task key of the same enclave (a second run), or another enclave: nothing.
    let other_key = X25519SecretKey::generate().public_key();
    for (enclave, key) in [(&first, other_key), (&second, key), (&second, other_key)] {
        let (status, body) = request_release(&devnet, &analyst, task, enclave, &operator_key(), key).await;
        assert_eq!((status, body["error"].as_str()), (409, Some("already_released")));
        assert_eq!(
            body["message"],
            format!(
                "the keys of task {task} were already released to enclave {} under its own task key: a task's keys \
                 are released once, and only that request is answered again",
                first.address()
            )
        );
    }
    let audit = strongroom_e2e::audit(&devnet, &devnet.kms.url(), published.dataset, None).await;
    let released_to: Vec<Address> = audit.iter().filter(|e| e.task_id == task).map(|e| e.enclave).collect();
    assert_eq!(released_to, [first.address(), first.address()], "the release and its repeat, nothing else");
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_no_key_goes_to_a_task_already_paid_out() {
    let (_dir, devnet) = devnet(true).await;
    let published = publish_sample(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    let rental = rent(&devnet, &published, "SELECT 1", &RentOptions::default()).await.unwrap();
    result_of(&devnet, &rental).await;

    let enclave = registered_enclave(&devnet).await;
    let (status, body) = request(&devnet, &analyst, rental.task_id(), &enclave, &operator_key()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("task_not_active")));
    assert_eq!(
        body["message"],
        format!(
            "task {} is completed (already paid out), not active: keys are released only for paid, running tasks",
            rental.task_id()
        )
    );
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_deposit_not_signed_by_the_owner_or_replayed_under_another_policy_is_refused() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let chain = devnet.chain_as(analyst_key()).await.unwrap();
    let info = strongroom_client::KmsClient::new(&devnet.kms.url()).unwrap().info().await.unwrap();
    let keys = strongroom_types::DatasetKeys::generate(["a"]);
    let sealed = strongroom_types::seal(
        &info.public_key,
        strongroom_types::INFO_DEPOSIT,
        &strongroom_types::key_set_aad(published.dataset, published.manifest_digest),
        &keys.to_json(),
    )
    .unwrap();
    let digest = alloy::primitives::keccak256(sealed.as_bytes());
    let signature = sign_typed(
        analyst_key().credential(),
        &strongroom_types::Deposit {
            dataset: published.dataset,
            manifestDigest: published.manifest_digest.to_b256(),
            keysDigest: digest,
            policyHash: alloy::primitives::keccak256(body_policy().as_bytes()),
            notAfter: deposit_good_until(),
        },
        &chain.domain(),
    );
    let request = strongroom_types::DepositRequest {
        dataset: published.dataset,
        manifest_digest: published.manifest_digest,
        sealed_keys: sealed,
        policy: body_policy(),
        not_after: deposit_good_until(),
        owner_signature: signature,
    };
    let response =
        reqwest::Client::new().post(format!("{}/v1/deposits", devnet.kms.url())).json(&request).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    let owner: Address = strongroom_devnet::owner_key().address();
    assert_eq!(
        body["message"],
        format!("{} signed the deposit but dataset {} is owned by {owner}", analyst_key().address(), published.dataset)
    );

    // The owner's own deposit, seen by somebody who re-posts it under another policy: the
    // signature covers the policy, so the re-post is somebody else's deposit and refused.
    let owner_signature = sign_typed(
        strongroom_devnet::owner_key().credential(),
        &strongroom_types::Deposit {
            dataset: published.dataset,
            manifestDigest: published.manifest_digest.to_b256(),
            keysDigest: digest,
            policyHash: alloy::primitives::keccak256(body_policy().as_bytes()),
            notAfter: deposit_good_until(),
        },
        &chain.domain(),
    );
    let genuine = strongroom_types::DepositRequest { owner_signature, ..request.clone() };
    let post = |request: strongroom_types::DepositRequest| {
        let url = format!("{}/v1/deposits", devnet.kms.url());
        async move { reqwest::Client::new().post(url).json(&request).send().await.unwrap() }
    };
    assert_eq!(post(genuine.clone()).await.status().as_u16(), 200);
    let replayed = body_policy().replace("min_group_size = 5", "min_group_size = 1");
    let response = post(strongroom_types::DepositRequest { policy: replayed, ..genuine }).await;
    assert_eq!(response.status().as_u16(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.ends_with(&format!("signed the deposit but dataset {} is owned by {owner}", published.dataset))
            && !message.starts_with(&owner.to_string()),
        "{message}"
    );

    // A policy this build cannot read is refused at deposit, not weakened.
    let unenforced = body_policy().replace("version = 2", "version = 1");
    let request = strongroom_types::DepositRequest { policy: unenforced, ..request };
    let response =
        reqwest::Client::new().post(format!("{}/v1/deposits", devnet.kms.url())).json(&request).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["message"],
        "the deposited policy is refused: malformed licence policy: version 1 (a column allow-list) is not \
         enforced by this build: write it as version 2, a role per column (see policies/README.md)"
    );

    // The policy a dataset is rented under is public, served by its hash.
    let kms = strongroom_client::KmsClient::new(&devnet.kms.url()).unwrap();
    let sample = std::fs::read_to_string(strongroom_e2e::POLICY).unwrap();
    assert_eq!(kms.policy(alloy::primitives::keccak256(sample.as_bytes())).await.unwrap(), sample);
    let unknown = alloy::primitives::B256::repeat_byte(0x42);
    let err = kms.policy(unknown).await.unwrap_err().to_string();
    assert!(err.contains(&format!("no policy with keccak256 {unknown} was deposited here")), "{err}");
    devnet.shutdown().await;
}

/// A licence for a dataset of one column, `a`.
/// A minute from now: when a deposit signed now stops being good.
fn deposit_good_until() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 60
}

fn body_policy() -> String {
    "version = 2\nname = \"a\"\n[columns]\na = \"dimension\"\n[aggregation]\nfunctions = [\"count\"]\nmin_group_size = 5\n"
        .into()
}

/// The release follows the owner recorded at rent: an owner who transfers the dataset does not
/// strand the tasks rented before, whose keys are the ones that owner deposited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_owner_transferring_the_dataset_strands_no_task_rented_before() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    let task = rent(&devnet, &published, "SELECT 1", &RentOptions::default()).await.unwrap().task_id();
    let owner = devnet.chain_as(strongroom_devnet::owner_key()).await.unwrap();
    owner.transfer_dataset(published.dataset, analyst_key().address()).await.unwrap();

    let enclave = registered_enclave(&devnet).await;
    let (status, body) = request(&devnet, &analyst, task, &enclave, &operator_key()).await;
    assert_eq!(status, 200, "the task rented before the transfer still gets its keys: {body}");
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_the_audit_log_is_for_the_datasets_owner_alone() {
    let (_dir, devnet) = devnet(true).await;
    let published = publish_sample(&devnet).await;
    let rental = rent(&devnet, &published, "SELECT COUNT(*) AS n FROM dataset", &RentOptions::default()).await.unwrap();
    result_of(&devnet, &rental).await;
    let post = |body: serde_json::Value| {
        let url = format!("{}/v1/audit", devnet.kms.url());
        async move {
            let response = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let ours = devnet.kms.info().public_key.to_b256();
    let signed_for = |key: &PrivateKeySigner, key_service: B256, not_after: u64| {
        let message =
            strongroom_types::AuditRequest { dataset: published.dataset, keyService: key_service, notAfter: not_after };
        serde_json::json!({
            "dataset": published.dataset,
            "key_service": key_service,
            "not_after": not_after,
            "signature": sign_typed(key.credential(), &message, &devnet.governance.domain()),
        })
    };
    let signed = |key: &PrivateKeySigner, not_after: u64| signed_for(key, ours, not_after);

    // Anyone else, the analyst included, reads nothing of who ran what when.
    let (status, body) = post(signed(&analyst_key(), now + 60)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("not_dataset_owner")), "{body}");
    assert_eq!(
        body["message"],
        format!(
            "{} asked for dataset {}'s audit log, which is for its owner {} alone",
            analyst_key().address(),
            published.dataset,
            strongroom_devnet::owner_key().address()
        )
    );
    // A request of the owner's seen on its way is good for an hour at most, and not after.
    for not_after in [now - 1, now + 7_200] {
        let (status, body) = post(signed(&strongroom_devnet::owner_key(), not_after)).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("audit_request_out_of_time")), "{body}");
    }
    // A request the owner signed for another key service, replayed here by that one, is refused,
    // and so is one relabelled as for this one (its signature then recovers nobody who owns).
    let elsewhere = B256::repeat_byte(0x3e);
    let (status, body) = post(signed_for(&strongroom_devnet::owner_key(), elsewhere, now + 60)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("audit_request_for_another_key_service")), "{body}");
    assert_eq!(
        body["message"],
        format!(
            "the audit request is for key service {elsewhere}, and this is key service {ours}: sign one for this one"
        )
    );
    let mut relabelled = signed_for(&strongroom_devnet::owner_key(), elsewhere, now + 60);
    relabelled["key_service"] = serde_json::json!(ours);
    let (status, body) = post(relabelled).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("not_dataset_owner")), "{body}");
    // The log is no longer public.
    let response = reqwest::get(format!("{}/v1/audit", devnet.kms.url())).await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    // Its owner reads it.
    let audit = strongroom_e2e::audit(&devnet, &devnet.kms.url(), published.dataset, None).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].task_id, rental.task_id());
    devnet.shutdown().await;
}

/// What a key service keeps for a dataset grows only with the dataset's transactions on chain:
/// keys for the states the chain recorded it in under their depositor, and one more per owner
/// that the chain has not recorded yet (a rotation deposits before it updates the dataset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_key_service_keeps_deposits_only_for_what_the_chain_recorded_and_one_more() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let kms = strongroom_client::KmsClient::new(&devnet.kms.url()).unwrap();
    let info = kms.info().await.unwrap();
    let policy = |name: &str| body_policy().replace("name = \"a\"", &format!("name = \"{name}\""));
    let deposit_until = |by: &PrivateKeySigner, dataset: B256, manifest: B256, policy: String, not_after: u64| {
        let manifest = strongroom_types::ManifestDigest::new(manifest);
        let keys = strongroom_types::DatasetKeys::generate(["a"]);
        let aad = strongroom_types::key_set_aad(dataset, manifest);
        let sealed =
            strongroom_types::seal(&info.public_key, strongroom_types::INFO_DEPOSIT, &aad, &keys.to_json()).unwrap();
        let message = strongroom_types::Deposit {
            dataset,
            manifestDigest: manifest.to_b256(),
            keysDigest: alloy::primitives::keccak256(sealed.as_bytes()),
            policyHash: alloy::primitives::keccak256(policy.as_bytes()),
            notAfter: not_after,
        };
        let owner_signature = sign_typed(by.credential(), &message, &devnet.governance.domain());
        let request = strongroom_types::DepositRequest {
            dataset,
            manifest_digest: manifest,
            sealed_keys: sealed,
            policy,
            not_after,
            owner_signature,
        };
        let url = format!("{}/v1/deposits", devnet.kms.url());
        async move {
            let response = reqwest::Client::new().post(url).json(&request).send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let deposit = |by: &PrivateKeySigner, dataset: B256, manifest: B256, policy: String| {
        deposit_until(by, dataset, manifest, policy, deposit_good_until())
    };
    // A deposit's policy is public while the key service keeps it.
    let policy_kept = |text: &str| {
        let url = format!("{}/v1/policies/{}", devnet.kms.url(), alloy::primitives::keccak256(text.as_bytes()));
        async move { reqwest::get(url).await.unwrap().status().as_u16() == 200 }
    };
    // An id nobody registered costs only a signature, so it gets nothing kept.
    let squatter = PrivateKeySigner::random();
    let unregistered = strongroom_types::random_salt();
    let (status, body) = deposit(&squatter, unregistered, B256::repeat_byte(1), body_policy()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("dataset_not_registered")), "{body}");
    assert_eq!(
        body["message"],
        format!(
            "dataset {unregistered} is not registered on chain: register it first (its owner deposits the keys of a \
             registered dataset only), then deposit"
        )
    );
    // The owner of one registration deposits versions the chain never recorded, one after another:
    // each replaces the one before, and its policy goes with it.
    let owner = strongroom_devnet::owner_key();
    for n in 1..=20u8 {
        let (status, body) = deposit(&owner, published.dataset, B256::repeat_byte(n), policy(&format!("v{n}"))).await;
        assert_eq!((status, body["staged"].as_bool()), (200, Some(true)), "{body}");
    }
    assert!(!policy_kept(&policy("v19")).await);
    assert!(policy_kept(&policy("v20")).await);
    // Once the chain records the staged version it is kept for good, beside the next staged one.
    let owner_chain = devnet.chain_as(owner.clone()).await.unwrap();
    let registered = owner_chain.dataset(published.dataset).await.unwrap().unwrap();
    let record = |n: u8| {
        let (chain, registered) = (&owner_chain, &registered);
        let (manifest, policy_hash) = (
            strongroom_types::ManifestDigest::new(B256::repeat_byte(n)),
            alloy::primitives::keccak256(policy(&format!("v{n}")).as_bytes()),
        );
        async move {
            chain
                .update_dataset(
                    registered.id,
                    &registered.uri,
                    manifest,
                    &registered.kms_url,
                    registered.kms_key,
                    policy_hash,
                )
                .await
                .unwrap();
        }
    };
    record(20).await;
    let (status, body) = deposit(&owner, published.dataset, B256::repeat_byte(21), policy("v21")).await;
    assert_eq!((status, body["staged"].as_bool()), (200, Some(true)), "{body}");
    assert!(policy_kept(&policy("v20")).await);
    let (status, body) = deposit(&owner, published.dataset, B256::repeat_byte(20), policy("v20")).await;
    assert_eq!((status, body["staged"].as_bool()), (200, Some(false)), "{body}");
    // A new owner's deposits are counted from the transfer: the version current then is recorded
    // for them, the versions before it (their seller's) are not.
    record(21).await;
    let buyer = PrivateKeySigner::random();
    owner_chain.transfer_dataset(published.dataset, buyer.address()).await.unwrap();
    let (status, body) = deposit(&buyer, published.dataset, B256::repeat_byte(21), policy("v21")).await;
    assert_eq!((status, body["staged"].as_bool()), (200, Some(false)), "{body}");
    let (status, body) = deposit(&buyer, published.dataset, B256::repeat_byte(20), policy("v20")).await;
    assert_eq!((status, body["staged"].as_bool()), (200, Some(true)), "{body}");
    // A deposit seen on its way is good for an hour at most: posted again later, to replace the
    // one a rotation staged, it is refused.
    let now = deposit_good_until() - 60;
    for not_after in [now - 1, now + 7_200] {
        let (status, body) =
            deposit_until(&buyer, published.dataset, B256::repeat_byte(23), policy("v23"), not_after).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("deposit_out_of_time")), "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("the deposit is good until unix time {not_after}, and it is ")),
            "{body}"
        );
    }
    // The seller may no longer deposit at all.
    let (status, body) = deposit(&owner, published.dataset, B256::repeat_byte(22), policy("v22")).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("not_owner")), "{body}");
    devnet.shutdown().await;
}
