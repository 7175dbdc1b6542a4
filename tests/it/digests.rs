//! Messages signed in Rust hash exactly as the contract hashes them (EIP-712), and the task
//! commitment the services recompute is the one the contract stores.

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolStruct;
use strongroom_chain::{Chain, Strongroom};
use strongroom_devnet::DevNode;
use strongroom_devnet::governance_key;
use strongroom_types::{AppOffer, DatasetOffer, KeyService, PoolOffer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_contract_agree_on_every_signed_digest() {
    let node = DevNode::spawn(&strongroom_e2e::anvil()).unwrap();
    let chain = Chain::deploy(node.url(), governance_key(), true).await.unwrap();
    let contract = chain.contract();
    let domain = chain.domain();
    assert_eq!(contract.domainSeparator().call().await.unwrap(), domain.separator());

    let dataset_offer = DatasetOffer {
        dataset: B256::repeat_byte(1),
        price: U256::from(12345),
        volume: 10,
        validFrom: 1_800_000_000,
        validUntil: 1_900_000_000,
        requester: Address::repeat_byte(7),
        requesterRoot: B256::repeat_byte(8),
        allowSql: true,
        allowApps: true,
        app: B256::repeat_byte(9),
        pool: B256::repeat_byte(10),
        measurement: B256::repeat_byte(11),
        policyHash: B256::repeat_byte(12),
        maxEpsilon: 1_500_000,
        salt: B256::repeat_byte(2),
    };
    let onchain = contract.hashDatasetOffer(Strongroom::DatasetOffer::from(&dataset_offer)).call().await.unwrap();
    assert_eq!(onchain, dataset_offer.eip712_signing_hash(&domain));

    let pool_offer = PoolOffer {
        pool: B256::repeat_byte(3),
        price: U256::from(7),
        volume: 5,
        maxDuration: 600,
        validUntil: 1_900_000_000,
        keyService: B256::repeat_byte(18),
        salt: B256::repeat_byte(4),
    };
    let onchain = contract.hashPoolOffer(Strongroom::PoolOffer::from(&pool_offer)).call().await.unwrap();
    assert_eq!(onchain, pool_offer.eip712_signing_hash(&domain));

    let app_offer = AppOffer {
        app: B256::repeat_byte(13),
        price: U256::from(99),
        volume: 3,
        dataset: B256::repeat_byte(14),
        pool: B256::repeat_byte(15),
        requester: Address::repeat_byte(16),
        salt: B256::repeat_byte(17),
    };
    let onchain = contract.hashAppOffer(Strongroom::AppOffer::from(&app_offer)).call().await.unwrap();
    assert_eq!(onchain, app_offer.eip712_signing_hash(&domain));

    let onchain = contract.hashKeyService(B256::repeat_byte(19)).call().await.unwrap();
    assert_eq!(onchain, KeyService { sealingKey: B256::repeat_byte(19) }.eip712_signing_hash(&domain));

    // A task's own messages (`Authorization`, `Released`, `Result`) have no helper on chain, to
    // keep the contract within EIP-170: every task the suite settles checks them, as
    // `submitResult`, `refundReleased` and the key service's look-up of a presigned
    // authorization verify them.
    // The task commitment (keccak256 of the ABI-encoded TaskParams) has no helper on chain: every
    // task the client reads is checked against the stored commitment (`Chain::task`), so every
    // flow of the suite agrees on it.
}
