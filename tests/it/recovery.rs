//! Losing a key service loses nothing: the owner redeposits from the local sealed backup to a
//! new key service, the dataset points at it, and rentals go on.

use strongroom_client::KeyBackup;
use strongroom_client::analyst::{self, Outcome, RentOptions};
use strongroom_client::owner::{OfferTerms, Owner, PublishRequest};
use strongroom_devnet::owner_key;
use strongroom_e2e::{devnet, pass_claim_window, publish_sample, rent, result_of, spawn_key_service};
use strongroom_types::RegistryVersion;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_moves_the_keys_to_a_new_key_service_from_the_backup() {
    let (dir, devnet) = devnet(true).await;
    let published = publish_sample(&devnet).await;

    let replacement = spawn_key_service(&devnet, &dir.path().join("kms-2")).await;
    let dataset = devnet.owner().await.unwrap().redeposit(published.dataset, &replacement.url()).await.unwrap();
    assert_eq!((dataset.version, dataset.kms_url.as_str()), (RegistryVersion::new(2), replacement.url().as_str()));
    assert_eq!(dataset.manifest_digest, published.manifest_digest, "a new registry version of the same data version");
    assert_eq!(dataset.kms_key, replacement.info().public_key.to_b256());

    let rental = rent(&devnet, &published, "SELECT COUNT(*) AS n FROM dataset", &RentOptions::default()).await.unwrap();
    let result = result_of(&devnet, &rental).await;
    let outcome = analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await.unwrap();
    assert!(matches!(outcome, Outcome::Table { rows: 1, .. }), "{outcome:?}");

    let audit = |url: String| {
        let devnet = &devnet;
        async move { strongroom_e2e::audit(devnet, &url, published.dataset, None).await }
    };
    assert_eq!(audit(replacement.url()).await.len(), 1, "the new key service released the keys");
    assert!(audit(devnet.kms.url()).await.is_empty(), "the old one was never asked");
    replacement.shutdown().await;
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_fails_midway_registers_nothing() {
    let (dir, devnet) = devnet(false).await;
    let chain = devnet.chain_as(owner_key()).await.unwrap();
    let salt = alloy::primitives::B256::repeat_byte(0x5a);
    // Storage that refuses the upload: a regular file stands where the object directory should be.
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"x").unwrap();
    let request = strongroom_e2e::sample_request(&devnet)
        .with_terms(OfferTerms::sql(alloy::primitives::U256::from(1u64), std::time::Duration::from_secs(60)))
        .with_privacy_budget(0)
        .with_salt(salt);
    let request = PublishRequest { storage_url: strongroom_types::StorageUrl::from_path(&blocker).unwrap(), ..request };
    let owner =
        Owner::new(chain.clone(), owner_key(), KeyBackup::new(&dir.path().join("owner")), Default::default()).unwrap();
    let err = owner.publish(&request).await.unwrap_err();
    assert!(format!("{err:#}").contains("storage file://"), "{err:#}");

    let id = chain.dataset_id(owner_key().address(), salt).await.unwrap();
    assert_eq!(chain.dataset(id).await.unwrap(), None, "nothing registered");
    let offers = strongroom_client::MarketClient::new(&devnet.market.url()).unwrap().dataset_offers(id).await.unwrap();
    assert!(offers.is_empty(), "nothing offered");
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_serves_the_tasks_created_while_it_was_down() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let waiting =
        rent(&devnet, &published, "SELECT COUNT(*) AS n FROM dataset", &RentOptions::default()).await.unwrap();
    // One task is refunded while no worker runs: the restarted worker must leave it alone.
    pass_claim_window(&devnet).await;
    let analyst = devnet.chain_as(strongroom_devnet::analyst_key()).await.unwrap();
    analyst.refund(&waiting.task).await.unwrap();
    let late = rent(&devnet, &published, "SELECT 2", &RentOptions::default()).await.unwrap();

    let worker = devnet.start_worker_from(Some(0)).await.unwrap();
    let result = result_of(&devnet, &late).await;
    let outcome = analyst::read_result(&result, &late.result_secret, &devnet.options.storage).await.unwrap();
    assert!(matches!(outcome, Outcome::Table { rows: 1, .. }), "{outcome:?}");
    assert_eq!(analyst.task_status(waiting.task_id()).await.unwrap(), strongroom_chain::TaskStatus::Refunded);
    worker.shutdown().await;
    devnet.shutdown().await;
}

/// A worker stopped and started again, with no block named, goes on from where it stopped: the
/// task rented while it was down is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_again_goes_on_from_where_it_stopped() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let worker = devnet.start_worker().await.unwrap();
    let first = rent(&devnet, &published, "SELECT COUNT(*) AS n FROM dataset", &RentOptions::default()).await.unwrap();
    assert_eq!(result_of(&devnet, &first).await.outcome, strongroom_types::Outcome::Completed);
    worker.shutdown().await;
    let while_down = rent(&devnet, &published, "SELECT 2", &RentOptions::default()).await.unwrap();
    strongroom_devnet::mine_blocks(&devnet.governance, 3).await.unwrap();
    let worker = devnet.start_worker().await.unwrap();
    let result = result_of(&devnet, &while_down).await;
    let outcome = analyst::read_result(&result, &while_down.result_secret, &devnet.options.storage).await.unwrap();
    assert!(matches!(outcome, Outcome::Table { rows: 1, .. }), "{outcome:?}");
    worker.shutdown().await;
    devnet.shutdown().await;
}

/// A publish whose offer cannot be listed says what it left done (registered, keys deposited)
/// and what finishes it; `Owner::offer` (`strongroom dataset offer`) lists one afterwards and the
/// dataset rents as if the publish had gone through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_whose_offer_was_not_listed_is_finished_by_offering_it() {
    let (_dir, devnet) = devnet(true).await;
    // A market that is not there: a port the OS gave out and nobody listens on any more.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let request = strongroom_e2e::sample_request(&devnet);
    let terms = request.terms.clone();
    let request = PublishRequest { market_url: format!("http://{gone}"), ..request };
    let owner = devnet.owner().await.unwrap();
    let err = owner.publish(&request).await.unwrap_err().to_string();
    let (prefix, _) = err
        .split_once(" is registered and its keys are deposited, but its offer was not listed (")
        .unwrap_or_else(|| panic!("{err}"));
    let dataset: strongroom_types::DatasetId = prefix.trim_start_matches("dataset ").parse().unwrap();
    assert!(err.ends_with(&format!("run `strongroom dataset offer {dataset}` with the offer's terms")), "{err}");
    let chain = devnet.chain_as(owner_key()).await.unwrap();
    assert!(chain.dataset(dataset).await.unwrap().is_some(), "registered");
    let market = strongroom_client::MarketClient::new(&devnet.market.url()).unwrap();
    assert!(market.dataset_offers(dataset).await.unwrap().is_empty(), "nothing offered yet");

    let offer = owner.offer(dataset, &terms, &devnet.market.url()).await.unwrap();
    let listed = market.dataset_offers(dataset).await.unwrap();
    let [strongroom_types::SignedOffer::Dataset { offer: listed, signature, .. }] = listed.as_slice() else {
        panic!("one dataset offer listed: {listed:?}");
    };
    assert_eq!(listed, &offer);
    let analyst_chain = devnet.chain_as(strongroom_devnet::analyst_key()).await.unwrap();
    let keys = analyst::result_keys(&devnet.options.data_dir.join("analyst"), &analyst_chain).unwrap();
    let kms_key = chain.dataset(dataset).await.unwrap().unwrap().kms_key;
    let sql = "SELECT COUNT(*) AS n FROM dataset";
    let rental = analyst::rent(
        &analyst_chain,
        &keys,
        (listed, signature),
        devnet.pool_offer_for(kms_key),
        sql,
        &RentOptions::default(),
    )
    .await
    .unwrap();
    let result = result_of(&devnet, &rental).await;
    let outcome = analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await.unwrap();
    assert!(matches!(outcome, Outcome::Table { rows: 1, .. }), "{outcome:?}");

    // Only the dataset's owner offers it.
    let stranger = Owner::new(
        devnet.chain_as(strongroom_devnet::analyst_key()).await.unwrap(),
        strongroom_devnet::analyst_key(),
        KeyBackup::new(&devnet.options.data_dir.join("stranger")),
        Default::default(),
    )
    .unwrap();
    let err = stranger.offer(dataset, &terms, &devnet.market.url()).await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "dataset {dataset} is owned by {}, not by {}",
            owner_key().address(),
            strongroom_devnet::analyst_key().address()
        )
    );
    devnet.shutdown().await;
}

/// Once the keys are released, a step that fails is tried again until the deadline: a result
/// the storage refuses at first is stored and submitted when it takes it, and the pool keeps its
/// pay and stake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_storage_refuses_at_first_is_stored_and_submitted_once_it_takes_it() {
    let (_dir, devnet) = devnet(true).await;
    let published = publish_sample(&devnet).await;
    // A file where the results directory should be: every write under it fails.
    let results = devnet.options.data_dir.join("results");
    let _ = std::fs::remove_dir_all(&results);
    std::fs::write(&results, b"not a directory").unwrap();
    let rental = rent(&devnet, &published, "SELECT COUNT(*) AS n FROM dataset", &RentOptions::default()).await.unwrap();
    strongroom_e2e::wait_for_log("storing the result").await;
    strongroom_e2e::wait_for_log("failed; trying again until the task's deadline").await;
    assert_eq!(devnet.governance.task_status(rental.task_id()).await.unwrap(), strongroom_chain::TaskStatus::Active);
    std::fs::remove_file(&results).unwrap();
    let result = result_of(&devnet, &rental).await;
    assert_eq!(result.outcome, strongroom_types::Outcome::Completed);
    let outcome = analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await.unwrap();
    assert!(matches!(outcome, Outcome::Table { rows: 1, .. }), "{outcome:?}");
    devnet.shutdown().await;
}
