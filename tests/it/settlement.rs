//! Tasks past their deadline without a result, settled by who is at fault (docs/SETTLEMENT.md):
//! a pool is slashed only when the task's key service shows it released the keys to the pool's
//! enclave, and nobody earns from a failure they caused. Real anvil, real key services, the
//! test playing the worker host where a host misbehaves.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use strongroom_chain::{Chain, StrongroomErrors, TaskStatus, format_utc};
use strongroom_client::KmsClient;
use strongroom_client::analyst::{self, Overdue, RentOptions, Rental};
use strongroom_devnet::{Devnet, analyst_key, operator_key, owner_key};
use strongroom_e2e::{
    devnet, pass_claim_window, publish_sample, registered_enclave, rent, request_release, spawn_key_service,
};
use strongroom_types::{
    DatasetOffer, ManifestDigest, PoolOffer, Released, X25519SecretKey, random_salt, recover_typed, sign_typed,
};

/// Balances the contract holds for the analyst, the owner and the operator, and the pool's
/// (stake, locked).
async fn money(devnet: &Devnet, chain: &Chain) -> ([U256; 3], (U256, U256)) {
    let mut balances = [U256::ZERO; 3];
    for (slot, key) in balances.iter_mut().zip([analyst_key(), owner_key(), operator_key()]) {
        *slot = chain.balance_of(key.address()).await.unwrap();
    }
    let pool = chain.pool(devnet.pool).await.unwrap().unwrap();
    (balances, (pool.stake, pool.locked))
}

/// The pool stakes only where the keys are released and no result follows: a task nobody
/// serves (the pool offline, or a key service that never answers) goes back to the analyst in
/// full, and only after the claim window, which is the owner's time to show a release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_nobody_served_is_refunded_in_full_after_the_claim_window() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    let rental =
        rent(&devnet, &published, "SELECT 1", &RentOptions { epsilon: 300_000, ..Default::default() }).await.unwrap();
    let task = &rental.task;
    assert_eq!(analyst.privacy_spend(published.dataset, analyst_key().address()).await.unwrap(), (0, 300_000));
    let stake = U256::from(task.params.stake);
    assert!(stake > U256::ZERO, "the devnet's pool stakes on its key service");
    assert_eq!(analyst.pool(devnet.pool).await.unwrap().unwrap().locked, stake);

    let err = analyst.refund(task).await.unwrap_err();
    let Some(StrongroomErrors::DeadlineNotReached(revert)) = err.revert() else { panic!("{err:?}") };
    assert_eq!(
        (revert.taskId, revert.deadline),
        (task.id, task.params.deadline),
        "the decoded error keeps its arguments"
    );
    assert_eq!(
        err.to_string(),
        format!("task {} can be refunded only after its deadline, {}", task.id, format_utc(task.params.deadline))
    );

    // Past the deadline, inside the claim window: nothing yet, and the sentence says why.
    devnet.increase_time(devnet.options.max_task_duration.as_secs() + 1).await.unwrap();
    let window = analyst.release_claim_window().await.unwrap();
    let err = analyst::settle_overdue(&analyst, task).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "task {} can be refunded without a key service's receipt only after {}: until then its key service may still show it released the keys",
            task.id,
            format_utc(task.params.deadline + window)
        )
    );

    pass_claim_window(&devnet).await;
    let Overdue::Refunded { credited, .. } = analyst::settle_overdue(&analyst, task).await.unwrap() else {
        panic!("nothing was released: a plain refund")
    };
    let owed = published.offer.price + devnet.pool_offer.price;
    assert_eq!(credited, owed);
    assert_eq!(analyst.task(task.id).await.unwrap().unwrap().status, TaskStatus::Refunded);
    let ([to_analyst, to_owner, to_operator], (pool_stake, locked)) = money(&devnet, &analyst).await;
    assert_eq!((to_analyst, to_owner, to_operator), (owed, U256::ZERO, U256::ZERO));
    assert_eq!((pool_stake, locked), (devnet.options.pool_stake, U256::ZERO), "unlocked, not slashed");
    assert_eq!(analyst.privacy_spend(published.dataset, analyst_key().address()).await.unwrap(), (0, 0));

    let err = analyst.refund(task).await.unwrap_err();
    let Some(StrongroomErrors::TaskNotActive(revert)) = err.revert() else { panic!("{err:?}") };
    assert_eq!((revert.taskId, TaskStatus::from(revert.status)), (task.id, TaskStatus::Refunded));

    let provider = analyst.contract().provider();
    let before = provider.get_balance(analyst_key().address()).await.unwrap();
    analyst.withdraw().await.unwrap();
    let after = provider.get_balance(analyst_key().address()).await.unwrap();
    // The refund arrives less the withdrawal's gas, which on anvil is far below 0.001 ether.
    let gas_allowance = U256::from(1_000_000_000_000_000u64);
    assert!(
        after > before && after - before + gas_allowance >= owed,
        "withdraw moved the refund to the analyst's account"
    );
    assert_eq!(analyst.balance_of(analyst_key().address()).await.unwrap(), U256::ZERO);
    let err = analyst.withdraw().await.unwrap_err();
    assert_eq!(err.revert_name(), Some("NothingToWithdraw"));
    devnet.shutdown().await;
}

/// The host gets the task's keys into its enclave, then keeps the result (or loses it): the key
/// service's receipt settles the task as abandoned. The owner is paid (a host colluding with the
/// analyst could have passed the result on), the epsilon is spent, and the analyst takes the
/// pool price back plus the slashed stake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_got_the_keys_and_kept_the_result_is_slashed_and_the_owner_paid() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    let rental =
        rent(&devnet, &published, "SELECT 1", &RentOptions { epsilon: 200_000, ..Default::default() }).await.unwrap();
    let task = &rental.task;
    let stake = U256::from(task.params.stake);

    let enclave = registered_enclave(&devnet).await;
    let task_key = X25519SecretKey::generate().public_key();
    let (status, body) = request_release(&devnet, &analyst, task.id, &enclave, &operator_key(), task_key).await;
    assert_eq!(status, 200, "{body}");
    // The release carries the key service's receipt, and the service gives it again on request.
    let receipt: strongroom_types::ReleaseReceipt = serde_json::from_value(body["receipt"].clone()).unwrap();
    assert_eq!((receipt.task_id, receipt.enclave), (task.id, enclave.address()));
    let signer =
        recover_typed(&Released { taskId: task.id, enclave: enclave.address() }, &analyst.domain(), &receipt.signature);
    assert_eq!(signer, Some(devnet.kms.info().signer));
    assert_eq!(analyst.key_service_signer(task.params.kmsKey).await.unwrap(), Some(devnet.kms.info().signer));
    let kms = KmsClient::new(&devnet.kms.url()).unwrap();
    assert_eq!(kms.receipt(task.id).await.unwrap(), Some(receipt.clone()));

    // Until the deadline the pool may still deliver.
    let err = analyst.refund_released(task, &receipt).await.unwrap_err();
    assert_eq!(err.revert_name(), Some("DeadlineNotReached"));

    devnet.increase_time(devnet.options.max_task_duration.as_secs() + 1).await.unwrap();
    let Overdue::Abandoned { credited, receipt: used, .. } = analyst::settle_overdue(&analyst, task).await.unwrap()
    else {
        panic!("the keys were released: the task is abandoned by the pool")
    };
    assert_eq!(used, receipt);
    assert_eq!(credited, devnet.pool_offer.price + stake);
    assert_eq!(analyst.task(task.id).await.unwrap().unwrap().status, TaskStatus::Abandoned);
    let ([to_analyst, to_owner, to_operator], (pool_stake, locked)) = money(&devnet, &analyst).await;
    assert_eq!(
        (to_analyst, to_owner, to_operator),
        (devnet.pool_offer.price + stake, published.offer.price, U256::ZERO)
    );
    assert_eq!((pool_stake, locked), (devnet.options.pool_stake - stake, U256::ZERO), "slashed");
    assert_eq!(analyst.privacy_spend(published.dataset, analyst_key().address()).await.unwrap(), (200_000, 0));

    // Settled once: neither a plain refund nor the receipt again moves anything.
    pass_claim_window(&devnet).await;
    let err = analyst.refund(task).await.unwrap_err();
    assert_eq!(err.to_string(), format!("task {} is {}, not active", task.id, TaskStatus::Abandoned.describe()));
    let err = analyst.refund_released(task, &receipt).await.unwrap_err();
    assert_eq!(err.revert_name(), Some("TaskNotActive"));
    devnet.shutdown().await;
}

/// A signed dataset offer for `dataset` by the devnet's owner, at 0.01 ether.
fn dataset_offer(
    devnet: &Devnet,
    dataset: B256,
    policy_hash: B256,
    signer: &PrivateKeySigner,
) -> (DatasetOffer, alloy::primitives::Bytes) {
    let offer = DatasetOffer {
        dataset,
        price: U256::from(10_000_000_000_000_000u64),
        volume: 10,
        validFrom: 0,
        validUntil: u64::MAX,
        requester: Address::ZERO,
        requesterRoot: B256::ZERO,
        allowSql: true,
        allowApps: false,
        app: B256::ZERO,
        pool: B256::ZERO,
        measurement: B256::ZERO,
        policyHash: policy_hash,
        maxEpsilon: 1_000_000,
        salt: random_salt(),
    };
    let signature = sign_typed(signer.credential(), &offer, &devnet.governance.domain());
    (offer, signature)
}

async fn rent_with(
    devnet: &Devnet,
    dataset: (&DatasetOffer, &alloy::primitives::Bytes),
    pool: (&PoolOffer, &alloy::primitives::Bytes),
) -> strongroom_client::Result<Rental> {
    let chain = devnet.chain_as(analyst_key()).await.unwrap();
    let keys = analyst::result_keys(&devnet.options.data_dir.join("analyst"), &chain).unwrap();
    analyst::rent(&chain, &keys, dataset, pool, "SELECT COUNT(*) FROM dataset", &RentOptions::default()).await
}

/// The key service refuses the release (here: the owner registered a dataset whose keys were
/// never deposited): nothing left the key service, so it has no receipt, and the pool that
/// staked on it loses nothing; the analyst gets every price back after the claim window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_key_service_withholds_cost_the_pool_nothing() {
    let (_dir, devnet) = devnet(false).await;
    let owner = devnet.chain_as(owner_key()).await.unwrap();
    let policy_hash = alloy::primitives::keccak256(b"never deposited");
    let kms_key = devnet.kms.info().public_key.to_b256();
    let (dataset, _) = owner
        .register_dataset(
            random_salt(),
            "file:///nowhere/manifest.json",
            ManifestDigest::new(B256::repeat_byte(7)),
            &devnet.kms.url(),
            kms_key,
            policy_hash,
            1_000_000,
        )
        .await
        .unwrap();
    let (offer, signature) = dataset_offer(&devnet, dataset, policy_hash, &owner_key());
    let rental =
        rent_with(&devnet, (&offer, &signature), (&devnet.pool_offer, &devnet.pool_offer_signature)).await.unwrap();
    let task = &rental.task;
    let stake = U256::from(task.params.stake);
    assert!(stake > U256::ZERO);

    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    let enclave = registered_enclave(&devnet).await;
    let key = X25519SecretKey::generate().public_key();
    let (status, body) = request_release(&devnet, &analyst, task.id, &enclave, &operator_key(), key).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("no_keys_deposited")), "{body}");
    let kms = KmsClient::new(&devnet.kms.url()).unwrap();
    assert_eq!(kms.receipt(task.id).await.unwrap(), None, "nothing released, no receipt");

    pass_claim_window(&devnet).await;
    let Overdue::Refunded { credited, .. } = analyst::settle_overdue(&analyst, task).await.unwrap() else {
        panic!("nothing was released")
    };
    assert_eq!(credited, offer.price + devnet.pool_offer.price);
    let ([to_analyst, to_owner, to_operator], (pool_stake, locked)) = money(&devnet, &analyst).await;
    assert_eq!((to_analyst, to_owner, to_operator), (credited, U256::ZERO, U256::ZERO));
    assert_eq!((pool_stake, locked), (devnet.options.pool_stake, U256::ZERO));
    devnet.shutdown().await;
}

/// The task's key service is gone when the task is settled: it shows no release, so the task is
/// refunded in full and the pool staking on it is not slashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_service_that_is_down_costs_the_pool_nothing() {
    let (dir, devnet) = devnet(false).await;
    let other = spawn_key_service(&devnet, &dir.path().join("kms-2")).await;
    let request = strongroom_client::owner::PublishRequest::new(
        strongroom_e2e::SAMPLE,
        strongroom_e2e::POLICY,
        U256::from(10_000_000_000_000_000u64),
        &devnet.objects_url,
        &other.url(),
        &devnet.market.url(),
    );
    let published = devnet.owner().await.unwrap().publish(&request).await.unwrap();
    // The operator stakes on the second key service too (its registration was posted at publish).
    let kms_key = other.info().public_key.to_b256();
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    assert_eq!(analyst.key_service_signer(kms_key).await.unwrap(), Some(other.info().signer));
    let pool_offer = PoolOffer { keyService: kms_key, salt: random_salt(), ..devnet.pool_offer.clone() };
    let pool_signature = sign_typed(operator_key().credential(), &pool_offer, &devnet.governance.domain());
    let rental = rent_with(&devnet, (&published.offer, &published.offer_signature), (&pool_offer, &pool_signature))
        .await
        .unwrap();
    let stake = U256::from(rental.task.params.stake);
    assert!(stake > U256::ZERO);

    other.shutdown().await;
    pass_claim_window(&devnet).await;
    let Overdue::Refunded { credited, .. } = analyst::settle_overdue(&analyst, &rental.task).await.unwrap() else {
        panic!("an unreachable key service shows no release")
    };
    assert_eq!(credited, published.offer.price + pool_offer.price);
    let (_, (pool_stake, locked)) = money(&devnet, &analyst).await;
    assert_eq!((pool_stake, locked), (devnet.options.pool_stake, U256::ZERO));
    devnet.shutdown().await;
}

/// The attack of the review: register a dataset whose key service never answers, rent it on a
/// victim's public pool offer and take the stake at the deadline. A staking offer does not serve
/// another key service's datasets; an open one stakes nothing; the attacker gets back exactly
/// what they paid and the pool loses nothing. With a key service of their own that signs a false
/// receipt, they still only pay themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_key_service_of_the_attackers_cannot_take_a_pools_stake() {
    let (dir, devnet) = devnet(false).await;
    // The attacker is analyst and owner at once.
    let attacker = analyst_key();
    let chain = devnet.chain_as(attacker.clone()).await.unwrap();
    let silent_key = B256::repeat_byte(0x5e);
    let policy_hash = alloy::primitives::keccak256(b"bait");
    let (dataset, _) = chain
        .register_dataset(
            random_salt(),
            "file:///bait/manifest.json",
            ManifestDigest::new(B256::repeat_byte(1)),
            "http://127.0.0.1:9",
            silent_key,
            policy_hash,
            1_000_000,
        )
        .await
        .unwrap();
    let (offer, signature) = dataset_offer(&devnet, dataset, policy_hash, &attacker);

    // The victim's staking offer serves only its own key service's datasets.
    let err =
        rent_with(&devnet, (&offer, &signature), (&devnet.pool_offer, &devnet.pool_offer_signature)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the pool offer serves only datasets of key service {}, and this dataset's is {silent_key}",
            devnet.pool_offer.keyService
        )
    );
    // Its open offer takes the task but stakes nothing on it.
    let silent = rent_with(&devnet, (&offer, &signature), (&devnet.open_pool_offer, &devnet.open_pool_offer_signature))
        .await
        .unwrap();
    assert_eq!(silent.task.params.stake, 0);

    // A key service of the attacker's, registered, signing a receipt of a release that never was.
    let liar = spawn_key_service(&devnet, &dir.path().join("liar")).await;
    let liar_key = liar.info().public_key.to_b256();
    chain.register_key_service(liar_key, liar.info().registration.clone()).await.unwrap();
    let (lying_dataset, _) = chain
        .register_dataset(
            random_salt(),
            "file:///bait/manifest.json",
            ManifestDigest::new(B256::repeat_byte(2)),
            &liar.url(),
            liar_key,
            policy_hash,
            1_000_000,
        )
        .await
        .unwrap();
    let (lying_offer, lying_signature) = dataset_offer(&devnet, lying_dataset, policy_hash, &attacker);
    let lying = rent_with(
        &devnet,
        (&lying_offer, &lying_signature),
        (&devnet.open_pool_offer, &devnet.open_pool_offer_signature),
    )
    .await
    .unwrap();
    let signer_file = std::fs::read_to_string(dir.path().join("liar").join("kms-signer.key")).unwrap();
    let liar_signer: PrivateKeySigner = signer_file.trim().parse().unwrap();
    let enclave = Address::repeat_byte(0xee);
    let receipt = strongroom_types::ReleaseReceipt {
        task_id: lying.task.id,
        enclave,
        signature: sign_typed(liar_signer.credential(), &Released { taskId: lying.task.id, enclave }, &chain.domain()),
        // The pool never asked for the keys, so there is no authorization of its to show.
        authorization: sign_typed(
            attacker.credential(),
            &strongroom_types::Authorization { taskId: lying.task.id, enclave },
            &chain.domain(),
        ),
    };

    pass_claim_window(&devnet).await;
    let paid = offer.price + devnet.open_pool_offer.price + lying_offer.price + devnet.open_pool_offer.price;
    chain.refund(&silent.task).await.unwrap();
    // A key service's word alone pays its owner nothing: the release must have been asked for.
    let err = chain.refund_released(&lying.task, &receipt).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the pool operator did not authorize enclave {enclave} for task {}", lying.task.id)
    );
    chain.refund(&lying.task).await.unwrap();
    // Everything the attacker paid comes back to the attacker (as analyst and as owner), nothing more.
    assert_eq!(chain.balance_of(attacker.address()).await.unwrap(), paid);
    assert_eq!(chain.balance_of(operator_key().address()).await.unwrap(), U256::ZERO);
    let pool = chain.pool(devnet.pool).await.unwrap().unwrap();
    assert_eq!((pool.stake, pool.locked), (devnet.options.pool_stake, U256::ZERO), "the victim's stake is whole");
    liar.shutdown().await;
    devnet.shutdown().await;
}

/// An owner registers a dataset whose manifest URI names a file of the worker's machine and rents
/// it on the pool's own key service: the worker reads datasets only under its operator's storage
/// prefixes, declines the task before reading anything or asking for any key, and the attacker
/// gets back only what it paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_dataset_naming_a_file_of_the_workers_machine_is_not_read() {
    let (_dir, devnet) = devnet(true).await;
    let attacker = owner_key();
    let chain = devnet.chain_as(attacker.clone()).await.unwrap();
    let policy_hash = alloy::primitives::keccak256(b"bait");
    let kms_key = devnet.kms.info().public_key.to_b256();
    let (dataset, _) = chain
        .register_dataset(
            random_salt(),
            "file:///etc/hostname",
            ManifestDigest::new(B256::repeat_byte(3)),
            &devnet.kms.url(),
            kms_key,
            policy_hash,
            1_000_000,
        )
        .await
        .unwrap();
    let (offer, signature) = dataset_offer(&devnet, dataset, policy_hash, &attacker);
    let rental =
        rent_with(&devnet, (&offer, &signature), (&devnet.pool_offer, &devnet.pool_offer_signature)).await.unwrap();
    strongroom_e2e::wait_for_log(
        "dataset manifest file:///etc/hostname is not under a storage prefix this worker reads datasets from",
    )
    .await;
    let audit = strongroom_e2e::audit(&devnet, &devnet.kms.url(), dataset, None).await;
    assert!(audit.is_empty(), "no key was asked for: {audit:?}");
    pass_claim_window(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    analyst.refund(&rental.task).await.unwrap();
    let (balances, stake) = money(&devnet, &analyst).await;
    assert_eq!(balances, [offer.price + devnet.pool_offer.price, U256::ZERO, U256::ZERO]);
    assert_eq!(stake, (devnet.options.pool_stake, U256::ZERO), "the pool's stake is whole");
    devnet.shutdown().await;
}

/// A worker whose enclave registration ends before a task's deadline could not settle it: its
/// result would be refused, and after a release the pool would be slashed. It asks for no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_registration_ends_before_the_deadline_asks_for_no_keys() {
    let (_dir, devnet) = devnet(false).await;
    devnet.governance.set_enclave_ttl(120).await.unwrap();
    let worker = devnet.start_worker().await.unwrap();
    let published = publish_sample(&devnet).await;
    let rental = rent(&devnet, &published, "SELECT COUNT(*) AS n FROM dataset", &RentOptions::default()).await.unwrap();
    assert!(rental.task.params.deadline > devnet.governance.block_timestamp().await.unwrap() + 120);
    strongroom_e2e::wait_for_log(&format!("enclave {} stays registered until unix time", worker.enclave())).await;
    assert!(strongroom_e2e::audit(&devnet, &devnet.kms.url(), published.dataset, None).await.is_empty());
    worker.shutdown().await;
    devnet.shutdown().await;
}

/// A pool run by a contract wallet cannot sign, and an ERC-1271 answer is the wallet's to change:
/// a wallet that vouched for its authorization while the keys were released and stopped before
/// the receipt was posted would keep its stake, and an analyst colluding with it would get
/// everything back after the result was passed on off chain. So the key service takes from a
/// contract only an authorization presigned on chain, which is for good, and the receipt slashes
/// with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_wallet_pool_gets_keys_only_with_an_authorization_it_cannot_take_back() {
    use alloy::sol_types::SolCall;
    use strongroom_chain::Strongroom;
    use strongroom_e2e::{TestWallet, request_release_with};

    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    // The wallet's owner is the operator's key; the wallet registers and funds a pool of its own.
    let operator = devnet.chain_as(operator_key()).await.unwrap();
    let wallet = TestWallet::deploy(operator.contract().provider().clone(), operator_key().address()).await.unwrap();
    let exec = async |call: Vec<u8>, value: U256| {
        let pending = wallet.exec(operator.address(), call.into()).value(value).send().await.unwrap();
        assert!(pending.get_receipt().await.unwrap().status(), "the wallet's call succeeds");
    };
    let salt = random_salt();
    exec(Strongroom::registerPoolCall { salt }.abi_encode(), U256::ZERO).await;
    let pool = operator.contract().poolId(*wallet.address(), salt).call().await.unwrap();
    exec(Strongroom::depositStakeCall { pool }.abi_encode(), devnet.options.pool_stake).await;
    // Its offer is its owner's signature, which the wallet vouches for when the task is rented.
    let offer = PoolOffer { pool, salt: random_salt(), ..devnet.pool_offer.clone() };
    let offer_signature = sign_typed(operator_key().credential(), &offer, &analyst.domain());
    let keys = analyst::result_keys(&devnet.options.data_dir.join("analyst"), &analyst).unwrap();
    let options = RentOptions::default();
    let rented = (&published.offer, &published.offer_signature);
    let task =
        analyst::rent(&analyst, &keys, rented, (&offer, &offer_signature), "SELECT 1", &options).await.unwrap().task;
    assert_eq!(task.params.poolOperator, *wallet.address());
    let stake = U256::from(task.params.stake);
    assert_eq!(stake, devnet.options.pool_price, "the task locks the wallet pool's stake");

    let enclave = registered_enclave(&devnet).await;
    let task_key = X25519SecretKey::generate().public_key();
    let refused = format!(
        "the pool operator {} did not authorize enclave {} for task {}: it signs `Authorization(taskId, enclave)` with \
         its key or, if it is a contract, presigns it on chain with `presignAuthorization` and the request carries no \
         authorization",
        wallet.address(),
        enclave.address(),
        task.id
    );
    // The owner's signature, which the wallet would vouch for: refused.
    let (status, body) = request_release(&devnet, &analyst, task.id, &enclave, &operator_key(), task_key).await;
    assert_eq!(
        (status, body["error"].as_str(), body["message"].as_str()),
        (403, Some("not_authorized"), Some(&*refused))
    );
    // No signature and nothing presigned: refused.
    let empty = alloy::primitives::Bytes::new();
    let (status, body) = request_release_with(&devnet, &analyst, task.id, &enclave, empty.clone(), task_key).await;
    assert_eq!(
        (status, body["error"].as_str(), body["message"].as_str()),
        (403, Some("not_authorized"), Some(&*refused))
    );
    // Nobody but the task's operator presigns for it.
    let err = analyst.presign_authorization(&task, enclave.address()).await.unwrap_err();
    assert_eq!(err.revert_name(), Some("NotPoolOperator"));

    // The wallet presigns; the key service sees it on chain and releases.
    let presign =
        Strongroom::presignAuthorizationCall { task: task.params.clone(), taskId: task.id, enclave: enclave.address() };
    exec(presign.abi_encode(), U256::ZERO).await;
    assert_eq!(analyst.authorization_presigner(task.id, enclave.address()).await.unwrap(), *wallet.address());
    let (status, body) = request_release_with(&devnet, &analyst, task.id, &enclave, empty.clone(), task_key).await;
    assert_eq!(status, 200, "{body}");
    let receipt: strongroom_types::ReleaseReceipt = serde_json::from_value(body["receipt"].clone()).unwrap();
    assert_eq!(receipt.authorization, empty, "the authorization is on chain, not in the receipt");

    // No result by the deadline: the receipt slashes the wallet's pool, which has nothing to take back.
    devnet.increase_time(devnet.options.max_task_duration.as_secs() + 1).await.unwrap();
    let Overdue::Abandoned { credited, .. } = analyst::settle_overdue(&analyst, &task).await.unwrap() else {
        panic!("the keys were released to the wallet pool's enclave: the task is abandoned by the pool")
    };
    assert_eq!(credited, offer.price + stake);
    assert_eq!(analyst.task(task.id).await.unwrap().unwrap().status, TaskStatus::Abandoned);
    let pool = analyst.pool(pool).await.unwrap().unwrap();
    assert_eq!((pool.stake, pool.locked), (devnet.options.pool_stake - stake, U256::ZERO), "slashed");
    assert_eq!(analyst.balance_of(analyst_key().address()).await.unwrap(), offer.price + stake);
    assert_eq!(analyst.balance_of(owner_key().address()).await.unwrap(), published.offer.price);
    assert_eq!(analyst.balance_of(*wallet.address()).await.unwrap(), U256::ZERO);
    devnet.shutdown().await;
}

/// A worker that runs for longer than its enclave's registration renews it with a fresh quote as
/// it nears its end, and goes on serving: the tasks rented after that are within the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_worker_renews_its_registration_and_keeps_serving() {
    let (_dir, devnet) = devnet(false).await;
    // Registrations of twenty minutes, renewed in their last ten; tasks last ten at most.
    devnet.governance.set_enclave_ttl(1_200).await.unwrap();
    let worker = devnet.start_worker().await.unwrap();
    let (_, first_until) = devnet.governance.enclave(worker.enclave()).await.unwrap();
    let published = publish_sample(&devnet).await;
    // Eleven minutes on, a task's deadline would fall after the first registration ends.
    devnet.increase_time(660).await.unwrap();
    strongroom_e2e::wait_for_log("enclave registration renewed").await;
    let (_, renewed_until) = devnet.governance.enclave(worker.enclave()).await.unwrap();
    let now = devnet.governance.block_timestamp().await.unwrap();
    assert!(renewed_until >= now + 1_100 && renewed_until > first_until, "{first_until} → {renewed_until} at {now}");
    let rental = rent(&devnet, &published, "SELECT COUNT(*) AS n FROM dataset", &RentOptions::default()).await.unwrap();
    assert!(rental.task.params.deadline > first_until, "the first registration would not have covered it");
    let result = strongroom_e2e::result_of(&devnet, &rental).await;
    assert_eq!(result.outcome, strongroom_types::Outcome::Completed);
    // Governance cuts the TTL below what can serve a task: near its end the worker does not
    // register again, and says why.
    devnet.governance.set_enclave_ttl(30).await.unwrap();
    let now = devnet.governance.block_timestamp().await.unwrap();
    devnet.increase_time(renewed_until - 10 - now).await.unwrap();
    strongroom_e2e::wait_for_log(&format!(
        "the enclave's registration, which ends at unix time {renewed_until}, is not renewed: under the chain's \
         enclave TTL of 30 s a renewal would end it no later, or last under 60 s (governance must raise the TTL)"
    ))
    .await;
    assert_eq!(devnet.governance.enclave(worker.enclave()).await.unwrap().1, renewed_until);
    // With the TTL raised again, the registration is renewed.
    devnet.governance.set_enclave_ttl(1_200).await.unwrap();
    devnet.increase_time(5).await.unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while devnet.governance.enclave(worker.enclave()).await.unwrap().1 == renewed_until {
        assert!(std::time::Instant::now() < until, "the registration was not renewed under the raised TTL");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(devnet.governance.is_enclave_active(worker.enclave()).await.unwrap());
    worker.shutdown().await;
    devnet.shutdown().await;
}
