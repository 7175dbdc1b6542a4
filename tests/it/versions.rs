//! A dataset's objects and data versions: a split dataset answers like a whole one, and a key
//! rotation re-encrypts everything under fresh keys without disturbing the tasks in flight.

use arrow::util::pretty::pretty_format_batches;
use strongroom_client::analyst::{self, Outcome, RentOptions};
use strongroom_client::owner::Published;
use strongroom_dataplane as dataplane;
use strongroom_dataplane::Manifest;
use strongroom_devnet::Devnet;
use strongroom_e2e::{devnet, publish_sample, publish_split, rent, result_of, spawn_key_service};
use strongroom_types::{DataVersion, RegistryVersion};

const BY_REGION: &str =
    "SELECT region, COUNT(*) AS n, SUM(monthly_spend) AS spend FROM dataset GROUP BY region ORDER BY region";

async fn table(devnet: &Devnet, published: &Published, sql: &str) -> String {
    let rental = rent(devnet, published, sql, &RentOptions::default()).await.unwrap();
    let result = result_of(devnet, &rental).await;
    match analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await.unwrap() {
        Outcome::Table { batches, .. } => pretty_format_batches(&batches).unwrap().to_string(),
        Outcome::Failed { message, .. } => panic!("task failed: {message}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_split_into_objects_answers_like_one_object() {
    let (_dir, devnet) = devnet(true).await;
    let whole = publish_sample(&devnet).await;
    let split = publish_split(&devnet, 1_000).await;
    assert_eq!(whole.manifest.objects.len(), 1);
    let rows: Vec<u64> = split.manifest.objects.iter().map(|o| o.rows).collect();
    assert_eq!(rows, [1_000, 1_000, 1_000]);
    assert_eq!(split.manifest.rows, 3_000);
    let expected = table(&devnet, &whole, BY_REGION).await;
    assert_eq!(table(&devnet, &split, BY_REGION).await, expected);
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_re_encrypts_under_fresh_keys_and_tasks_in_flight_still_run() {
    let (dir, devnet) = devnet(false).await;
    let published = publish_split(&devnet, 1_000).await;
    // Rented against data version 1; no worker serves it until after the rotation.
    let before = rent(&devnet, &published, BY_REGION, &RentOptions::default()).await.unwrap();

    let owner = devnet.owner().await.unwrap();
    let backup = owner.backup();
    let rotated = owner.rotate(published.dataset, dataplane::Layout::default(), None).await.unwrap();
    assert_eq!(rotated.manifest.data_version, DataVersion::new(2));
    assert_eq!(rotated.dataset.version, RegistryVersion::new(2), "one update of the record");
    assert_eq!(rotated.manifest.rows, 3_000);
    assert_eq!(rotated.manifest.objects.len(), 1, "re-cut to the layout asked for");
    let uri = &rotated.dataset.uri;
    let manifest_url: strongroom_types::StorageUrl = uri.parse().unwrap();
    assert!(uri.contains(&format!("/{}/v2-", published.dataset)) && uri.ends_with("/manifest.json"), "{uri}");
    assert_ne!(rotated.dataset.manifest_digest, published.manifest_digest);
    let stored: Manifest = serde_json::from_slice(&devnet.options.storage.get(&manifest_url).await.unwrap()).unwrap();
    assert_eq!(stored, rotated.manifest);

    // The new object opens with the new keys only; the old keys are useless on it.
    let (old_keys, _) = backup.load(published.dataset, published.manifest_digest).unwrap();
    let (new_keys, _) = backup.load(published.dataset, rotated.dataset.manifest_digest).unwrap();
    assert_ne!(old_keys, new_keys);
    let object = &rotated.manifest.object_urls(&manifest_url).unwrap()[0];
    let ciphertext = devnet.options.storage.get(object).await.unwrap();
    let aad = dataplane::aad_prefix(published.dataset, DataVersion::new(2), &rotated.manifest.objects[0].name);
    let err = dataplane::decrypt(&ciphertext, &old_keys, aad.clone()).unwrap_err();
    assert!(err.to_string().starts_with("cannot decrypt the dataset:"), "{err}");
    let (_, batches) = dataplane::decrypt(&ciphertext, &new_keys, aad).unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3_000);

    // The keys of both versions move to a new key service, from the backup. The task in flight
    // was rented against the old one, which alone can tell whether it released its keys already:
    // it still serves that task, and the new one serves the tasks rented from now on.
    let replacement = spawn_key_service(&devnet, &dir.path().join("kms-2")).await;
    owner.redeposit(published.dataset, &replacement.url()).await.unwrap();

    // The worker serves the task rented before the rotation from version 1, and a new one from 2.
    let worker = devnet.start_worker_from(Some(0)).await.unwrap();
    let result = result_of(&devnet, &before).await;
    let old = match analyst::read_result(&result, &before.result_secret, &devnet.options.storage).await.unwrap() {
        Outcome::Table { batches, .. } => pretty_format_batches(&batches).unwrap().to_string(),
        Outcome::Failed { message, .. } => panic!("the task rented before the rotation failed: {message}"),
    };
    assert_eq!(table(&devnet, &published, BY_REGION).await, old);
    // The old task could only succeed on version 1: the enclave refuses any manifest but the one
    // it was rented against, and version 1's objects open with version 1's keys only.
    let audit = |url: String| {
        let devnet = &devnet;
        async move {
            let entries = strongroom_e2e::audit(devnet, &url, published.dataset, None).await;
            entries.iter().map(|e| e.task_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(audit(devnet.kms.url()).await, [before.task_id()], "the key service it was rented against");
    let after = audit(replacement.url()).await;
    assert!(after.len() == 1 && after[0] != before.task_id(), "the new key service serves the new task: {after:?}");
    worker.shutdown().await;
    replacement.shutdown().await;
    devnet.shutdown().await;
}
