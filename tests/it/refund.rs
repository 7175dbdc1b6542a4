//! Refunds: refused before the deadline, complete after it, and the money can be withdrawn.

use alloy::primitives::U256;
use alloy::providers::Provider;
use strongroom_chain::TaskStatus;
use strongroom_cli::analyst;
use strongroom_cli::devnet::analyst_key;
use strongroom_e2e::{devnet, publish_sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_only_after_the_deadline_then_withdraw() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    let rental = analyst::rent(
        &analyst,
        (&published.offer, &published.offer_signature),
        (&devnet.pool_offer, &devnet.pool_offer_signature),
        "SELECT 1",
    )
    .await
    .unwrap();

    let err = analyst.refund(rental.task_id).await.unwrap_err();
    assert_eq!(err.revert_name(), Some("DeadlineNotReached"));
    let task = analyst.task(rental.task_id).await.unwrap();
    assert_eq!(
        err.to_string(),
        format!("task {} can be refunded only after its deadline, unix time {}", rental.task_id, task.deadline)
    );

    devnet.governance.dev_increase_time(devnet.options.max_task_duration.as_secs() + 1).await.unwrap();
    analyst.refund(rental.task_id).await.unwrap();
    assert_eq!(analyst.task(rental.task_id).await.unwrap().status, TaskStatus::Refunded);
    let owed = published.offer.price + devnet.pool_offer.price;
    assert_eq!(analyst.balance_of(analyst_key().address()).await.unwrap(), owed);

    let err = analyst.refund(rental.task_id).await.unwrap_err();
    assert_eq!(err.revert_name(), Some("TaskNotActive"));

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
