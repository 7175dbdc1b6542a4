//! Datasets and results on an S3-compatible store (s3s-fs on loopback, SigV4 credentials):
//! the same flow as on local files, tampering detected, bad credentials named.

use strongroom_client::analyst::Outcome;
use strongroom_client::owner::{OfferTerms, Owner, PublishRequest};
use strongroom_dataplane::Layout;
use strongroom_devnet::owner_key;
use strongroom_e2e::s3::{S3Server, SECRET_KEY};
use strongroom_e2e::{devnet_with, rent, result_of, sample_request};
use strongroom_storage::Storage;

fn request(devnet: &strongroom_devnet::Devnet) -> PublishRequest {
    sample_request(devnet)
        .with_terms(OfferTerms::sql(alloy::primitives::U256::from(1_000u64), std::time::Duration::from_secs(3600)))
        .with_privacy_budget(0)
        .with_layout(Layout::with_object_rows(2_000))
}

/// The devnet's owner, with these storage credentials.
async fn owner(devnet: &strongroom_devnet::Devnet, storage: Storage) -> Owner {
    let chain = devnet.chain_as(owner_key()).await.unwrap();
    let backup = strongroom_client::KeyBackup::new(&devnet.options.data_dir.join("owner"));
    Owner::new(chain, owner_key(), backup, storage).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_and_results_live_on_an_s3_compatible_store() {
    let s3 = S3Server::start(&["datasets", "results"]).await;
    let storage = Storage::new(vec![s3.scope(SECRET_KEY)]);
    let (_dir, devnet) = devnet_with(|options| {
        options.objects_url = Some("s3://datasets/owner".parse().unwrap());
        options.results_url = Some("s3://results/pool".parse().unwrap());
        options.storage = storage.clone();
    })
    .await;
    let published = owner(&devnet, storage.clone()).await.publish(&request(&devnet)).await.unwrap();
    assert!(published.uri.as_str().starts_with("s3://datasets/owner/"), "{}", published.uri);
    assert_eq!(published.object_urls().len(), 2);
    for url in published.object_urls() {
        assert!(s3.file(url.as_str()).is_file(), "{url} is an object of the S3 store");
    }

    let sql = "SELECT plan, COUNT(*) AS n FROM dataset GROUP BY plan ORDER BY plan";
    let rental = rent(&devnet, &published, sql, &Default::default()).await.unwrap();
    let result = result_of(&devnet, &rental).await;
    assert!(result.location.as_str().starts_with("s3://results/pool/"), "{}", result.location);
    let outcome = strongroom_client::analyst::read_result(&result, &rental.result_secret, &storage).await.unwrap();
    assert!(matches!(outcome, Outcome::Table { rows: 3, .. }), "{outcome:?}");

    // A byte flipped on the store is caught by the worker before it asks for keys, as on local
    // files: the task is declined and no key moves.
    let object = s3.file(published.object_urls()[1].as_str());
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&object, bytes).unwrap();
    rent(&devnet, &published, sql, &Default::default()).await.unwrap();
    strongroom_e2e::wait_for_log(&format!("(object {} has sha256", published.object_urls()[1])).await;
    let audit = strongroom_e2e::audit(&devnet, &devnet.kms.url(), published.dataset, None).await;
    assert_eq!(audit.len(), 1, "only the first task's keys were released");
    devnet.shutdown().await;
    s3.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_refused_by_the_store_registers_nothing_and_says_why() {
    let s3 = S3Server::start(&["datasets"]).await;
    let (_dir, devnet) = devnet_with(|options| {
        options.with_worker = false;
        options.objects_url = Some("s3://datasets/owner".parse().unwrap());
    })
    .await;
    let chain = devnet.chain_as(owner_key()).await.unwrap();
    let request = request(&devnet).with_salt(alloy::primitives::B256::repeat_byte(0x33));
    let refused = owner(&devnet, Storage::new(vec![s3.scope("not-the-secret")])).await;
    let err = refused.publish(&request).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("storage s3://datasets/owner/")
            && message.contains("The operation lacked the necessary privileges to complete"),
        "{message}"
    );
    let id = chain.dataset_id(owner_key().address(), request.salt.unwrap()).await.unwrap();
    assert_eq!(chain.dataset(id).await.unwrap(), None, "nothing registered");
    devnet.shutdown().await;
    s3.shutdown().await;
}
