//! `make bench-gas`: the gas of the on-chain protocol on a real anvil.
//!
//! Ten SQL tasks on the same offers and accounts, one app task and one refund. The first line is
//! the steady-state SQL task (median of tasks 2 to 10): `gas: rent=<n> submit=<n> total=<n>`.
//! A bench enclave identity stands in for the enclave process (its quote is signed by the
//! simulated platform), so only chain gas is measured here; `make demo` measures the whole flow.

use alloy::primitives::{B256, Bytes, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use strongroom_chain::{Chain, Rental, Task};
use strongroom_devnet::DevNode;
use strongroom_devnet::{analyst_key, governance_key, operator_key, owner_key};
use strongroom_enclave_sim::Platform;
use strongroom_types::{
    AppOffer, Authorization, DatasetOffer, Outcome, PoolOffer, ResultAttestation, random_salt, report_data_for,
    sign_typed,
};

const MILLI_ETHER: u64 = 1_000_000_000_000_000;

/// The bench dataset's key service key, which every result names.
const KMS_KEY: B256 = B256::repeat_byte(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let node = DevNode::spawn(&strongroom_e2e::anvil())?;
    let dir = tempfile::tempdir()?;
    let gov = Chain::deploy(node.url(), governance_key(), true).await?;
    let owner = gov.with_signer(owner_key()).await?;
    let operator = gov.with_signer(operator_key()).await?;
    let analyst = gov.with_signer(analyst_key()).await?;
    let domain = gov.domain();

    // A registered enclave identity.
    let platform = Platform::load_or_create(dir.path())?;
    let measurement = keccak256(b"strongroom bench enclave");
    gov.set_platform_key(platform.address(), strongroom_chain::PlatformKind::Simulated).await?;
    let identity = strongroom_enclave_sim::SIMULATED_IDENTITY;
    gov.set_enclave_identity(identity.signer, identity.product_id, identity.svn).await?;
    gov.set_measurement(measurement, true).await?;
    let enclave = PrivateKeySigner::random();
    let block = gov.recent_block().await?;
    let (quote, platform_sig) = platform.quote_for(measurement, report_data_for(enclave.address(), block));
    operator.register_enclave(&quote, platform_sig).await?;

    // A dataset with a privacy budget, a staked pool, an app.
    let policy = keccak256(b"policy");
    let (dataset, _) = owner
        .register_dataset(
            random_salt(),
            "file:///bench/data.parquet",
            strongroom_types::ManifestDigest::new(B256::repeat_byte(1)),
            "http://kms",
            KMS_KEY,
            policy,
            100_000_000,
        )
        .await?;
    let (pool, _) = operator.register_pool(random_salt()).await?;
    operator.deposit_stake(pool, U256::from(10 * 1000 * MILLI_ETHER)).await?;
    let (app, _) = owner.register_app(random_salt(), B256::repeat_byte(3), "file:///bench/app.wasm").await?;

    let now = gov.block_timestamp().await?;
    let dataset_offer = DatasetOffer {
        dataset,
        price: U256::from(10 * MILLI_ETHER),
        volume: 100,
        validFrom: now,
        validUntil: now + 86_400,
        requester: Default::default(),
        requesterRoot: B256::ZERO,
        allowSql: true,
        allowApps: true,
        app: B256::ZERO,
        pool: B256::ZERO,
        measurement: B256::ZERO,
        policyHash: policy,
        maxEpsilon: 1_000_000,
        salt: random_salt(),
    };
    let dataset_sig = sign_typed(owner_key().credential(), &dataset_offer, &domain);
    // A staking pool offer: it names the key service whose receipts may slash it.
    let pool_offer = PoolOffer {
        pool,
        price: U256::from(MILLI_ETHER),
        volume: 100,
        maxDuration: 600,
        validUntil: now + 86_400,
        keyService: KMS_KEY,
        salt: random_salt(),
    };
    let pool_sig = sign_typed(operator_key().credential(), &pool_offer, &domain);
    let app_offer = AppOffer {
        app,
        price: U256::from(2 * MILLI_ETHER),
        volume: 100,
        dataset: B256::ZERO,
        pool: B256::ZERO,
        requester: Default::default(),
        salt: random_salt(),
    };
    let app_sig = sign_typed(owner_key().credential(), &app_offer, &domain);
    let rental = |sql: &str| Rental {
        resultKey: B256::repeat_byte(4),
        epsilon: 100_000,
        maxPrice: U256::from(100 * MILLI_ETHER),
        requesterProof: Vec::new(),
        spec: Bytes::copy_from_slice(sql.as_bytes()),
    };
    let submit = |task: Task| {
        let operator = operator.clone();
        let enclave = enclave.clone();
        let domain = domain.clone();
        async move {
            let digest = keccak256(task.id.to_be_bytes::<32>());
            let auth = sign_typed(
                operator_key().credential(),
                &Authorization { taskId: task.id, enclave: enclave.address() },
                &domain,
            );
            let location = format!("file:///bench/results/{}", task.id);
            let attestation = ResultAttestation {
                taskId: task.id,
                digest,
                outcome: Outcome::Completed.as_u8(),
                keyService: task.params.kmsKey,
                location: location.clone(),
            };
            let sig = sign_typed(enclave.credential(), &attestation, &domain);
            operator.submit_result(&task, digest, &location, auth, sig, Outcome::Completed).await
        }
    };

    let sql_value = dataset_offer.price + pool_offer.price;
    let mut sql_gas = Vec::new();
    for i in 0..10 {
        let sql = format!("SELECT region, COUNT(*) FROM dataset WHERE age > {i} GROUP BY region");
        let (task, rent) = analyst
            .rent(&dataset_offer, dataset_sig.clone(), &pool_offer, pool_sig.clone(), &rental(&sql), sql_value)
            .await?;
        let done = submit(task).await?;
        sql_gas.push((rent.gas_used, done.gas_used));
    }
    let app_value = sql_value + app_offer.price;
    let (task, app_rent) = analyst
        .rent_app(
            &dataset_offer,
            dataset_sig.clone(),
            &pool_offer,
            pool_sig.clone(),
            &app_offer,
            app_sig,
            &rental("{\"k\":10}"),
            app_value,
        )
        .await?;
    let app_done = submit(task).await?;
    let (task, refund_rent) = analyst
        .rent(&dataset_offer, dataset_sig, &pool_offer, pool_sig, &rental("SELECT COUNT(*) FROM dataset"), sql_value)
        .await?;
    // Past the deadline and the claim window: refunded as never released.
    strongroom_devnet::increase_time(&gov, 601 + 86_400).await?;
    let refund = analyst.refund(&task).await?;

    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let steady = &sql_gas[1..];
    let rent = median(steady.iter().map(|g| g.0).collect());
    let submit_gas = median(steady.iter().map(|g| g.1).collect());
    let total = median(steady.iter().map(|g| g.0 + g.1).collect());
    println!("gas: rent={rent} submit={submit_gas} total={total}");
    println!("gas-first-sql: rent={} submit={} total={}", sql_gas[0].0, sql_gas[0].1, sql_gas[0].0 + sql_gas[0].1);
    println!(
        "gas-app: rent={} submit={} total={}",
        app_rent.gas_used,
        app_done.gas_used,
        app_rent.gas_used + app_done.gas_used
    );
    println!(
        "gas-refund: rent={} refund={} total={}",
        refund_rent.gas_used,
        refund.gas_used,
        refund_rent.gas_used + refund.gas_used
    );
    println!("gas-target: steady-state SQL total {total} {} 200000", if total <= 200_000 { "<=" } else { ">" });
    Ok(())
}
