//! Attested failures: the enclave reports what went wrong, sealed to the analyst, and the
//! analyst gets the dataset price back.

use alloy::primitives::U256;
use strongroom_client::analyst::{self, Outcome, RentOptions};
use strongroom_client::owner::Published;
use strongroom_devnet::Devnet;
use strongroom_devnet::{analyst_key, operator_key, owner_key};
use strongroom_e2e::{devnet, pass_claim_window, publish_sample, publish_split, rent, result_of, wait_for_log};
use strongroom_types::{FailureCode, Outcome as AttestedOutcome};

async fn rent_and_read(devnet: &Devnet, published: &Published, sql: &str) -> (AttestedOutcome, Outcome) {
    let rental = rent(devnet, published, sql, &RentOptions { epsilon: 100_000, ..Default::default() }).await.unwrap();
    let result = result_of(devnet, &rental).await;
    let outcome = analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await.unwrap();
    (result.outcome, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sql_ends_as_attested_failure_and_refunds_the_dataset_price() {
    let (_dir, devnet) = devnet(true).await;
    let published = publish_sample(&devnet).await;

    let (settled, outcome) = rent_and_read(&devnet, &published, "SELECT no_such_column FROM dataset").await;
    assert_eq!(settled, AttestedOutcome::Refused);
    let Outcome::Failed { code, message, .. } = outcome else { panic!("expected a failure, got {outcome:?}") };
    assert_eq!(code, FailureCode::Query);
    assert!(message.contains("no_such_column"), "the sealed message names the column: {message}");

    let chain = devnet.chain_as(analyst_key()).await.unwrap();
    assert_eq!(chain.balance_of(analyst_key().address()).await.unwrap(), published.offer.price);
    assert_eq!(chain.balance_of(operator_key().address()).await.unwrap(), devnet.pool_offer.price);
    assert_eq!(chain.balance_of(owner_key().address()).await.unwrap(), U256::ZERO);
    // A task refused before reading the data spends no privacy budget.
    assert_eq!(chain.privacy_spend(published.dataset, analyst_key().address()).await.unwrap(), (0, 0));

    // Queries may only read: DDL and DML are refused inside the enclave.
    let (settled, outcome) = rent_and_read(&devnet, &published, "CREATE TABLE copy AS SELECT * FROM dataset").await;
    assert_eq!(settled, AttestedOutcome::Refused);
    let Outcome::Failed { code, message, .. } = outcome else { panic!("expected a failure, got {outcome:?}") };
    assert_eq!(code, FailureCode::Query);
    assert!(message.contains("DDL not supported"), "{message}");
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_flipped_byte_in_storage_costs_no_release_and_refunds_in_full() {
    let (_dir, devnet) = devnet(true).await;
    let flip = |url: &strongroom_types::StorageUrl, at: Option<usize>| {
        let path = url::Url::parse(url.as_str()).unwrap().to_file_path().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let i = at.unwrap_or(bytes.len() / 2);
        bytes[i] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
    };
    let options = RentOptions { epsilon: 100_000, ..Default::default() };

    // Any one of the encrypted objects (the sample is split into three): the worker checks each
    // against the manifest before it asks for any key, and declines the task.
    let published = publish_split(&devnet, 1_000).await;
    let objects = published.object_urls();
    assert_eq!(objects.len(), 3, "3000 rows, 1000 per object");
    flip(&objects[1], None);
    let tampered = rent(&devnet, &published, "SELECT COUNT(*) FROM dataset", &options).await.unwrap();
    wait_for_log(&format!(
        "the storage does not serve what the task was rented against (object {} has sha256",
        objects[1]
    ))
    .await;

    // The manifest: checked against the digest on chain. A flipped byte inside a column name keeps it JSON.
    let sample = publish_sample(&devnet).await;
    let manifest =
        std::fs::read_to_string(url::Url::parse(sample.uri.as_str()).unwrap().to_file_path().unwrap()).unwrap();
    flip(&sample.uri, Some(manifest.find("monthly_spend").unwrap()));
    let broken = rent(&devnet, &sample, "SELECT COUNT(*) FROM dataset", &options).await.unwrap();
    wait_for_log(&format!("(manifest {} has digest", sample.uri)).await;

    // No key left the key service, and nobody earns: after the claim window the analyst gets
    // every price and the epsilon back, and the pool keeps its whole stake.
    for dataset in [published.dataset, sample.dataset] {
        let audit = strongroom_e2e::audit(&devnet, &devnet.kms.url(), dataset, None).await;
        assert!(audit.is_empty(), "{audit:?}");
    }
    pass_claim_window(&devnet).await;
    let chain = devnet.chain_as(analyst_key()).await.unwrap();
    chain.refund(&tampered.task).await.unwrap();
    chain.refund(&broken.task).await.unwrap();
    let paid = published.offer.price + sample.offer.price + devnet.pool_offer.price * U256::from(2);
    assert_eq!(chain.balance_of(analyst_key().address()).await.unwrap(), paid);
    assert_eq!(chain.balance_of(operator_key().address()).await.unwrap(), U256::ZERO);
    assert_eq!(chain.balance_of(owner_key().address()).await.unwrap(), U256::ZERO);
    assert_eq!(chain.privacy_spend(published.dataset, analyst_key().address()).await.unwrap(), (0, 0));
    let pool = chain.pool(devnet.pool).await.unwrap().unwrap();
    assert_eq!((pool.stake, pool.locked), (devnet.options.pool_stake, U256::ZERO));
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_query_of_a_hidden_column_gets_no_key_and_fails_naming_the_rule() {
    let (_dir, devnet) = devnet(true).await;
    let published = publish_sample(&devnet).await;
    let sql = "SELECT region, COUNT(DISTINCT email) AS n FROM dataset GROUP BY region";
    let (settled, outcome) = rent_and_read(&devnet, &published, sql).await;
    assert_eq!(settled, AttestedOutcome::Refused);
    let Outcome::Failed { code, message, .. } = outcome else { panic!("expected a failure, got {outcome:?}") };
    assert_eq!(code, FailureCode::PolicyViolation);
    assert_eq!(
        message,
        "refused by the licence, rule hidden_column: column `email` is hidden: its key is never released and no \
         query may read it (in `count(DISTINCT dataset.email)`)"
    );

    // The enclave asked for no column key: the audit log shows the footer's alone.
    let audit = strongroom_e2e::audit(&devnet, &devnet.kms.url(), published.dataset, None).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].key_ids, ["footer"]);
    // The dataset's price came back to the analyst.
    let chain = devnet.chain_as(analyst_key()).await.unwrap();
    assert_eq!(chain.balance_of(analyst_key().address()).await.unwrap(), published.offer.price);
    devnet.shutdown().await;
}
