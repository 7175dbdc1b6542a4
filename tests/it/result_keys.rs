//! No paid result becomes unreadable: the analyst's result key is on disk before the rental is
//! sent, filed by deployment, account and public key, and found again from the task on chain.

use alloy::signers::local::PrivateKeySigner;
use strongroom_client::analyst::{self, RentOptions};
use strongroom_devnet::DEV_KEYS;
use strongroom_devnet::{Devnet, analyst_key};
use strongroom_e2e::{devnet, publish_sample, strongroom};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_stay_readable_across_restarted_chains_accounts_and_crashes() {
    // One analyst data directory for everything below, as a person would have.
    let home = tempfile::tempdir().unwrap();
    let data_dir = home.path();
    let spare: PrivateKeySigner = DEV_KEYS[4].parse().unwrap();
    let analyst = analyst_key();
    let rent = |devnet: &Devnet, key: &PrivateKeySigner, dataset: &str, sql: &str| {
        let out = strongroom(devnet, data_dir, key, &["rent", dataset, "--sql", sql, "--no-wait"]);
        assert!(out.status.success(), "rent failed: {}", out.stderr());
        out.stdout().trim().to_owned()
    };
    let result = |devnet: &Devnet, key: &PrivateKeySigner, task: &str| {
        strongroom(devnet, data_dir, key, &["--json", "result", "get", task])
    };

    // Two accounts rent on one chain from the same data directory; each reads its own result.
    let (_a_dir, a) = devnet(true).await;
    let dataset = publish_sample(&a).await.dataset.to_string();
    let mine = rent(&a, &analyst, &dataset, "SELECT COUNT(*) AS n FROM dataset");
    let theirs = rent(&a, &spare, &dataset, "SELECT 2 AS two");
    assert_eq!(result(&a, &analyst, &mine).stdout().trim(), r#"[{"n":3000}]"#);
    assert_eq!(result(&a, &spare, &theirs).stdout().trim(), r#"[{"two":2}]"#);
    let out = result(&a, &analyst, &theirs);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr_line().starts_with(&format!("error: no result key for task {theirs} (result key 0x"))
            && out.stderr_line().ends_with("was it rented from another data dir or account?"),
        "{}",
        out.stderr()
    );
    let (chain_id, contract) = (a.governance.chain_id(), a.governance.address());
    a.shutdown().await;

    // The devnet restarted: the same chain id and contract address, task ids from 1 again.
    let (_b_dir, b) = devnet(true).await;
    assert_eq!((b.governance.chain_id(), b.governance.address()), (chain_id, contract));
    let dataset = publish_sample(&b).await.dataset.to_string();
    let again = rent(&b, &analyst, &dataset, "SELECT COUNT(*) AS n FROM dataset");
    assert_eq!(again, mine, "the restarted chain numbers its tasks from 1 again");
    assert_eq!(result(&b, &analyst, &again).stdout().trim(), r#"[{"n":3000}]"#);

    // The process dies right after the rental is sent: the key it held in memory is gone, and
    // the one on disk still opens the result.
    let chain = b.chain_as(analyst_key()).await.unwrap();
    let keys = analyst::result_keys(data_dir, &chain).unwrap();
    let offers = strongroom_client::MarketClient::new(&b.market.url())
        .unwrap()
        .dataset_offers(dataset.parse().unwrap())
        .await
        .unwrap();
    let strongroom_types::SignedOffer::Dataset { offer, signature, .. } = &offers[0] else { panic!("a dataset offer") };
    let rental = analyst::rent(
        &chain,
        &keys,
        (offer, signature),
        (&b.pool_offer, &b.pool_offer_signature),
        "SELECT 3 AS three",
        &RentOptions::default(),
    )
    .await
    .unwrap();
    let task = rental.task_id().to_string();
    drop(rental);
    assert_eq!(result(&b, &analyst, &task).stdout().trim(), r#"[{"three":3}]"#);
    b.shutdown().await;
}
