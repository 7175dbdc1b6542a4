//! Refunds: refused before the deadline, complete after it, and the money can be withdrawn.

use alloy::primitives::U256;
use alloy::providers::Provider;
use strongroom_chain::{StrongroomErrors, TaskStatus, format_utc};
use strongroom_client::analyst::RentOptions;
use strongroom_devnet::analyst_key;
use strongroom_e2e::{devnet, publish_sample, rent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_only_after_the_deadline_then_withdraw() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();
    let rental =
        rent(&devnet, &published, "SELECT 1", &RentOptions { epsilon: 300_000, ..Default::default() }).await.unwrap();
    let task = &rental.task;
    assert_eq!(analyst.privacy_spend(published.dataset, analyst_key().address()).await.unwrap(), (0, 300_000));
    let stake = U256::from(task.params.stake);
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

    devnet.increase_time(devnet.options.max_task_duration.as_secs() + 1).await.unwrap();
    analyst.refund(task).await.unwrap();
    assert_eq!(analyst.task(task.id).await.unwrap().unwrap().status, TaskStatus::Refunded);
    // The analyst gets both prices back plus the pool's slashed stake; the epsilon is released.
    let owed = published.offer.price + devnet.pool_offer.price + stake;
    assert_eq!(analyst.balance_of(analyst_key().address()).await.unwrap(), owed);
    assert_eq!(analyst.privacy_spend(published.dataset, analyst_key().address()).await.unwrap(), (0, 0));
    let pool = analyst.pool(devnet.pool).await.unwrap().unwrap();
    assert_eq!((pool.stake, pool.locked), (devnet.options.pool_stake - stake, U256::ZERO));

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
