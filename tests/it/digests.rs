//! Messages signed in Rust hash exactly as the contract hashes them (EIP-712).

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolStruct;
use strongroom_chain::{Chain, DevNode, Strongroom};
use strongroom_cli::devnet::governance_key;
use strongroom_types::{Authorization, DatasetOffer, PoolOffer, ResultAttestation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_contract_agree_on_every_signed_digest() {
    let node = DevNode::spawn(&DevNode::default_binary()).unwrap();
    let chain = Chain::deploy(node.url(), governance_key(), true).await.unwrap();
    let contract = chain.contract();
    let domain = chain.domain();
    assert_eq!(contract.domainSeparator().call().await.unwrap(), domain.separator());

    let dataset_offer = DatasetOffer {
        dataset: B256::repeat_byte(1),
        price: U256::from(12345),
        validUntil: 1_900_000_000,
        salt: B256::repeat_byte(2),
    };
    let onchain = contract.hashDatasetOffer(Strongroom::DatasetOffer::from(&dataset_offer)).call().await.unwrap();
    assert_eq!(onchain, dataset_offer.eip712_signing_hash(&domain));

    let pool_offer =
        PoolOffer { pool: B256::repeat_byte(3), price: U256::from(7), maxDuration: 600, salt: B256::repeat_byte(4) };
    let onchain = contract.hashPoolOffer(Strongroom::PoolOffer::from(&pool_offer)).call().await.unwrap();
    assert_eq!(onchain, pool_offer.eip712_signing_hash(&domain));

    let enclave = Address::repeat_byte(5);
    let onchain = contract.hashAuthorization(U256::from(9), enclave).call().await.unwrap();
    assert_eq!(onchain, Authorization { taskId: U256::from(9), enclave }.eip712_signing_hash(&domain));

    let onchain = contract.hashResult(U256::from(9), B256::repeat_byte(6), true).call().await.unwrap();
    let attestation = ResultAttestation { taskId: U256::from(9), digest: B256::repeat_byte(6), failed: true };
    assert_eq!(onchain, attestation.eip712_signing_hash(&domain));
}
