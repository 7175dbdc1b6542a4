//! One SQL rental from publish to a decrypted, verified result.

use alloy::primitives::U256;
use arrow_helpers::column_strings;
use std::collections::BTreeMap;
use strongroom_client::analyst::{self, Outcome, RentOptions};
use strongroom_devnet::{analyst_key, operator_key, owner_key};
use strongroom_e2e::{devnet, logs, publish_sample, rent, result_of, sample_rows};

/// Reads two of the dataset's six columns.
const SQL: &str =
    "SELECT region, COUNT(*) AS customers, AVG(monthly_spend) AS spend FROM dataset GROUP BY region ORDER BY region";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_rental_end_to_end_pays_everyone_and_logs_no_secrets() {
    let (_dir, devnet) = devnet(true).await;
    let published = publish_sample(&devnet).await;
    let analyst = devnet.chain_as(analyst_key()).await.unwrap();

    let rental = rent(&devnet, &published, SQL, &RentOptions { epsilon: 250_000, ..Default::default() }).await.unwrap();
    let result = result_of(&devnet, &rental).await;
    assert_eq!(result.outcome, strongroom_types::Outcome::Completed);
    let outcome = analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await.unwrap();

    // The result equals the same aggregation computed directly from the CSV.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (_, region) in sample_rows() {
        *expected.entry(region).or_default() += 1;
    }
    let Outcome::Table { batches, rows, licence } = outcome else { panic!("expected a table, got {outcome:?}") };
    assert_eq!(rows as usize, expected.len());
    assert!(licence.iter().any(|l| l == "groups of fewer than 10 distinct customer_id are dropped"), "{licence:?}");
    let regions = column_strings(&batches, 0);
    let counts = column_strings(&batches, 1);
    let got: BTreeMap<String, i64> = regions.into_iter().zip(counts.iter().map(|c| c.parse().unwrap())).collect();
    assert_eq!(got, expected);

    // Settlement: the owner and the pool are paid, nothing is left in escrow for the analyst.
    assert_eq!(analyst.balance_of(owner_key().address()).await.unwrap(), published.offer.price);
    assert_eq!(analyst.balance_of(operator_key().address()).await.unwrap(), devnet.pool_offer.price);
    assert_eq!(analyst.balance_of(analyst_key().address()).await.unwrap(), U256::ZERO);
    // The task's epsilon moved from reserved to spent; the pool's stake is unlocked again.
    assert_eq!(analyst.privacy_spend(published.dataset, analyst_key().address()).await.unwrap(), (250_000, 0));
    assert_eq!(analyst.pool(devnet.pool).await.unwrap().unwrap().locked, U256::ZERO);

    // The key service released this task's keys once, to the registered enclave, and audited it.
    let audit = strongroom_e2e::audit(&devnet, &devnet.kms.url(), published.dataset, Some(rental.task_id())).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].enclave, devnet.worker.as_ref().unwrap().enclave());
    assert_eq!(audit[0].dataset, published.dataset);
    // Only the keys of the columns the checked plan reads: the footer, `monthly_spend` and
    // `region`, and `customer_id`, which the threshold counts distinct in every group.
    assert_eq!(audit[0].key_ids, ["footer", "column:customer_id", "column:monthly_spend", "column:region"]);

    // No key byte and no plaintext row in any log line of the run.
    let text = logs().text();
    assert!(text.contains("keys released"), "the capture sees the key service's log");
    assert!(text.contains("succeeded"), "the capture sees the enclave's log");
    let footer = published.keys.footer.as_ref().unwrap();
    for key in std::iter::once(footer).chain(published.keys.columns.values()) {
        let hex = hex::encode(key.expose());
        assert!(!text.contains(&hex), "a dataset key appears in the logs");
        assert!(!text.contains(&hex.to_uppercase()), "a dataset key appears in the logs");
    }
    for (email, _) in sample_rows() {
        assert!(!text.contains(&email), "a plaintext row ({email}) appears in the logs");
    }
    devnet.shutdown().await;
}

mod arrow_helpers {
    use arrow::array::Array;
    use arrow::record_batch::RecordBatch;
    use arrow::util::display::ArrayFormatter;

    /// One column of the result, formatted as text, across batches.
    pub fn column_strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
        let mut out = Vec::new();
        for batch in batches {
            let array = batch.column(column);
            let formatter = ArrayFormatter::try_new(array.as_ref(), &Default::default()).unwrap();
            for row in 0..array.len() {
                out.push(formatter.value(row).to_string());
            }
        }
        out
    }
}
