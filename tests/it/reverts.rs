//! Every refusal of `rent` (and a late result) reaches the analyst as a sentence, through the
//! `strongroom` binary where an analyst would meet it.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use strongroom_chain::format_utc;
use strongroom_client::analyst::RentOptions;
use strongroom_client::owner::OfferTerms;
use strongroom_devnet::{analyst_key, operator_key};
use strongroom_e2e::{devnet, publish_with, rent, strongroom};

fn terms() -> OfferTerms {
    OfferTerms::sql(U256::from(10_000_000_000_000_000u64), Duration::from_secs(3600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rent_refusals_read_as_sentences() {
    let (dir, devnet) = devnet(false).await;
    let cli = |args: &[&str]| strongroom(&devnet, &dir.path().join("analyst"), &analyst_key(), args);

    // Expired offer.
    let expiring = publish_with(&devnet, OfferTerms { validity: Duration::from_secs(5), ..terms() }, 0).await;
    devnet.increase_time(60).await.unwrap();
    let out = cli(&["rent", &expiring.dataset.to_string(), "--sql", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stderr_line(), format!("error: offer expired at {}", format_utc(expiring.offer.validUntil)));

    // Volume exhausted.
    let single = publish_with(&devnet, OfferTerms { volume: 1, ..terms() }, 0).await;
    let dataset = single.dataset.to_string();
    let out = cli(&["rent", &dataset, "--sql", "SELECT 1", "--no-wait"]);
    assert!(out.status.success(), "{}", out.stderr());
    let out = cli(&["rent", &dataset, "--sql", "SELECT 1", "--no-wait"]);
    let offer_hash = devnet.governance.contract().hashDatasetOffer((&single.offer).into()).call().await.unwrap();
    assert_eq!(out.stderr_line(), format!("error: offer {offer_hash} is used up: all 1 tasks of its volume are taken"));

    // Requester not allowed: one named analyst, then an allow-list.
    let named = publish_with(&devnet, OfferTerms { requester: operator_key().address(), ..terms() }, 0).await;
    let out = cli(&["rent", &named.dataset.to_string(), "--sql", "SELECT 1"]);
    assert_eq!(out.stderr_line(), format!("error: the offer does not allow {} to rent", analyst_key().address()));
    let listed = publish_with(
        &devnet,
        OfferTerms { requesters: vec![operator_key().address(), Address::repeat_byte(9)], ..terms() },
        0,
    )
    .await;
    let out = cli(&["rent", &listed.dataset.to_string(), "--sql", "SELECT 1"]);
    assert_eq!(out.stderr_line(), format!("error: the offer does not allow {} to rent", analyst_key().address()));
    let welcoming = publish_with(
        &devnet,
        OfferTerms { requesters: vec![analyst_key().address(), Address::repeat_byte(9)], ..terms() },
        0,
    )
    .await;
    let out = cli(&["rent", &welcoming.dataset.to_string(), "--sql", "SELECT 1", "--no-wait"]);
    assert!(out.status.success(), "an analyst on the list proves membership: {}", out.stderr());

    // Price above the analyst's maximum.
    let priced = publish_with(&devnet, terms(), 0).await;
    let out = cli(&["rent", &priced.dataset.to_string(), "--sql", "SELECT 1", "--max-price", "0.005ether"]);
    assert_eq!(
        out.stderr_line(),
        "error: the rental costs 0.011000000000000000 ETH, above your maximum of 0.005000000000000000 ETH"
    );

    // Privacy budget exhausted: a budget of 1.5 allows one task at epsilon 1 and then not another.
    let private = publish_with(&devnet, terms(), 1_500_000).await;
    let dataset = private.dataset.to_string();
    let out = cli(&["rent", &dataset, "--sql", "SELECT 1", "--epsilon", "1", "--no-wait"]);
    assert!(out.status.success(), "{}", out.stderr());
    let out = cli(&["rent", &dataset, "--sql", "SELECT 1", "--epsilon", "1"]);
    assert_eq!(
        out.stderr_line(),
        format!(
            "error: privacy budget exhausted: {} may spend epsilon 0.500000 more on dataset {dataset}, not 1.000000",
            analyst_key().address()
        )
    );
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_after_the_deadline_is_refused_in_words() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_with(&devnet, terms(), 0).await;
    let rental = rent(&devnet, &published, "SELECT 1", &RentOptions::default()).await.unwrap();
    devnet.increase_time(devnet.options.max_task_duration.as_secs() + 1).await.unwrap();
    let operator = devnet.chain_as(operator_key()).await.unwrap();
    let err = operator
        .submit_result(
            &rental.task,
            B256::repeat_byte(1),
            "file:///late",
            vec![0u8; 65].into(),
            vec![0u8; 65].into(),
            strongroom_types::Outcome::Completed,
        )
        .await
        .unwrap_err();
    let Some(strongroom_chain::StrongroomErrors::DeadlinePassed(revert)) = err.revert() else { panic!("{err:?}") };
    assert_eq!((revert.taskId, revert.deadline), (rental.task_id(), rental.task.params.deadline));
    assert_eq!(
        err.to_string(),
        format!("task {}'s deadline passed at {}", rental.task_id(), format_utc(rental.task.params.deadline))
    );
    devnet.shutdown().await;
}
