//! The chain index: a task by id, a pool's tasks and a dataset's states without log scans,
//! through a reorganisation and a restart.

use strongroom_chain::{ChainIndex, DatasetState, IndexOptions};
use strongroom_client::analyst::RentOptions;
use strongroom_e2e::{devnet, publish_sample, rent};

/// Replaces the chain's last `depth` blocks with empty ones, as a reorganisation would.
async fn reorg(rpc_url: &str, depth: u64) {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "anvil_reorg", "params": [depth, []]});
    let reply: serde_json::Value =
        reqwest::Client::new().post(rpc_url).json(&body).send().await.unwrap().json().await.unwrap();
    assert!(reply.get("error").is_none(), "{reply}");
}

/// The SQL of the pool's tasks, from the index.
async fn of_pool(index: &ChainIndex, pool: strongroom_types::PoolId) -> Vec<String> {
    let (tasks, _) = index.tasks_of_pool(pool, 0).await.unwrap();
    tasks.iter().map(|t| t.sql().unwrap_or_default().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_index_follows_a_reorganisation_and_resumes_from_its_cursor() {
    let (dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let options = IndexOptions { path: dir.path().join("index.sqlite"), confirmations: 0 };
    let index = ChainIndex::open(devnet.governance.clone(), &options).await.unwrap();
    let owner = strongroom_devnet::owner_key().address();
    let registered =
        DatasetState { owner, manifest_digest: published.manifest_digest, policy_hash: published.policy_hash };
    assert_eq!(index.dataset_states(published.dataset).await.unwrap(), vec![registered]);

    // A task rented, then reorganised away: the chain no longer has it, and neither does the index.
    let first = rent(&devnet, &published, "SELECT COUNT(*) AS n FROM dataset", &RentOptions::default()).await.unwrap();
    let indexed = index.task(first.task_id()).await.unwrap().expect("the task is indexed");
    assert_eq!(indexed.sql(), Some("SELECT COUNT(*) AS n FROM dataset"));
    // The pool's tasks, as a worker finds them.
    assert_eq!(of_pool(&index, devnet.pool).await, ["SELECT COUNT(*) AS n FROM dataset"]);
    let (none, _) = index.tasks_of_pool(alloy::primitives::B256::repeat_byte(1), 0).await.unwrap();
    assert!(none.is_empty(), "another pool's tasks are not this one's");
    let before = index.cursor();
    reorg(devnet.rpc_url(), 1).await;
    assert!(index.task(first.task_id()).await.unwrap().is_none());
    assert!(of_pool(&index, devnet.pool).await.is_empty(), "the reorganised task is gone from the pool's too");
    // The next rent takes the same id: the index answers with it, not with the task it dropped.
    let second =
        rent(&devnet, &published, "SELECT region, COUNT(*) AS n FROM dataset GROUP BY region", &RentOptions::default())
            .await
            .unwrap();
    assert_eq!(second.task_id(), first.task_id());
    let indexed = index.task(second.task_id()).await.unwrap().expect("the new task is indexed");
    assert_eq!(indexed.sql(), Some("SELECT region, COUNT(*) AS n FROM dataset GROUP BY region"));
    assert_eq!(indexed.block, second.task.block);
    assert_eq!(of_pool(&index, devnet.pool).await, ["SELECT region, COUNT(*) AS n FROM dataset GROUP BY region"]);
    let (_, through) = index.tasks_of_pool(devnet.pool, second.task.block + 1).await.unwrap();
    assert!(through >= second.task.block);
    assert!(index.cursor() >= before);

    // A dataset update reorganised away is gone from the dataset's states.
    let owner_chain = devnet.chain_as(strongroom_devnet::owner_key()).await.unwrap();
    let d = owner_chain.dataset(published.dataset).await.unwrap().unwrap();
    let rotated = strongroom_types::ManifestDigest::new(alloy::primitives::B256::repeat_byte(7));
    owner_chain.update_dataset(d.id, &d.uri, rotated, &d.kms_url, d.kms_key, d.policy_hash).await.unwrap();
    let updated = DatasetState { manifest_digest: rotated, ..registered };
    assert_eq!(index.dataset_states(published.dataset).await.unwrap(), vec![registered, updated]);
    reorg(devnet.rpc_url(), 1).await;
    assert_eq!(index.dataset_states(published.dataset).await.unwrap(), vec![registered]);

    // Reopened, it resumes from its cursor and still knows the task.
    let cursor = index.cursor();
    drop(index);
    let index = ChainIndex::open(devnet.governance.clone(), &options).await.unwrap();
    assert_eq!(index.cursor(), cursor);
    assert_eq!(index.task(second.task_id()).await.unwrap().unwrap().sql(), second.task.sql());
    devnet.shutdown().await;
}
