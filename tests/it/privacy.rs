//! Differential privacy end to end: a licence that requires it, noisy results, and the epsilon
//! spent on chain, through the `strongroom` binary.

use strongroom_devnet::{analyst_key, owner_key};
use strongroom_e2e::{SAMPLE, devnet, strongroom};

const DP_POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/dp-required.toml");
const SQL: &str = "SELECT plan, COUNT(*) AS n, AVG(monthly_spend) AS spend FROM dataset GROUP BY plan ORDER BY plan";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dp_licence_releases_noisy_aggregates_and_charges_the_epsilon_on_chain() {
    let (dir, devnet) = devnet(true).await;
    let owner_dir = dir.path().join("owner");
    let analyst_dir = dir.path().join("analyst");
    let out = strongroom(
        &devnet,
        &owner_dir,
        &owner_key(),
        &["--json", "dataset", "publish", SAMPLE, "--policy", DP_POLICY, "--price", "0.01ether"],
    );
    assert!(out.status.success(), "publish failed: {}", out.stderr());
    let published: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let dataset = published["dataset"].as_str().unwrap().to_owned();
    let analyst = |args: &[&str]| strongroom(&devnet, &analyst_dir, &analyst_key(), args);

    // A template its own licence would refuse is refused at publish, before anything is stored.
    let text = std::fs::read_to_string(DP_POLICY).unwrap();
    let bad = dir.path().join("bad-template.toml");
    std::fs::write(&bad, format!("{text}\n[[templates]]\nname = \"rows\"\nsql = \"SELECT email FROM dataset\"\n"))
        .unwrap();
    let out = strongroom(
        &devnet,
        &owner_dir,
        &owner_key(),
        &["dataset", "publish", SAMPLE, "--policy", bad.to_str().unwrap(), "--price", "0.01ether"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr().contains(&format!(
            "policy file {}: template `rows` would be refused: refused by the licence, rule row_level_output",
            bad.display()
        )),
        "{}",
        out.stderr()
    );

    // So is a measure the data cannot hold: its column must be a number within its bounds.
    let text_measure = dir.path().join("text-measure.toml");
    std::fs::write(
        &text_measure,
        text.replace("email = \"hidden\"", "email = { role = \"measure\", bounds = [0, 1] }"),
    )
    .unwrap();
    let out = strongroom(
        &devnet,
        &owner_dir,
        &owner_key(),
        &["dataset", "publish", SAMPLE, "--policy", text_measure.to_str().unwrap(), "--price", "0.01ether"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr().contains(&format!(
            "policy file {} does not fit {SAMPLE}: measure `email`: it is of type Utf8; a measure must be an integer, \
             a float or a decimal (of scale 0 or more)",
            text_measure.display()
        )),
        "{}",
        out.stderr()
    );

    // Without an epsilon the licence releases nothing, and nothing is paid.
    let out = analyst(&["rent", &dataset, "--sql", SQL]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr().contains(
            "error: not rented, nothing paid: refused by the licence, rule differential_privacy: this licence releases \
             aggregates only with differential privacy: rent with an epsilon above 0"
        ),
        "{}",
        out.stderr()
    );

    // The preflight says how the epsilon is split and what the noise is.
    let out = analyst(&["rent", &dataset, "--sql", SQL, "--epsilon", "0.5", "--dry-run"]);
    assert!(out.status.success(), "{}", out.stderr());
    assert!(
        out.stdout().contains("  - epsilon 0.500000 is split over 4 noisy values, 0.125000 each (discrete Laplace)"),
        "{}",
        out.stdout()
    );

    // The same query twice: the same shape, other noise.
    let mut results = Vec::new();
    for _ in 0..2 {
        let out = analyst(&["--json", "rent", &dataset, "--sql", SQL, "--epsilon", "0.5"]);
        assert!(out.status.success(), "{}", out.stderr());
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out.stdout()).unwrap();
        let plans: Vec<&str> = rows.iter().map(|r| r["plan"].as_str().unwrap()).collect();
        assert_eq!(plans, ["basic", "plus", "pro"], "every plan holds hundreds of customers");
        results.push(rows);
    }
    assert_ne!(results[0], results[1], "two draws of the noise differ");
    // Each noisy count is near the true one (the scale is 8: off by more than 200 once in e^25).
    let truth = [("basic", 1500), ("plus", 900), ("pro", 600)];
    for rows in &results {
        for (row, (plan, _)) in rows.iter().zip(truth) {
            let n = row["n"].as_i64().unwrap();
            assert!((200..3000).contains(&n), "{plan}: a noisy count of {n}");
        }
    }

    // The result says, attested, what the licence did: the split of the epsilon among others.
    let out = analyst(&["result", "get", "1"]);
    assert!(out.status.success(), "{}", out.stderr());
    assert!(
        out.stderr().contains("licence: epsilon 0.500000 is split over 4 noisy values, 0.125000 each"),
        "{}",
        out.stderr()
    );

    // Both tasks' epsilon is spent on chain, and the CLI says what is left.
    let out = analyst(&["budget", &dataset]);
    assert!(out.status.success(), "{}", out.stderr());
    assert_eq!(
        out.stdout().trim(),
        format!(
            "{} on dataset {dataset}: epsilon 1.000000 spent, 0.000000 reserved by running tasks, 9.000000 left of 10.000000",
            analyst_key().address()
        )
    );

    // A task that fails once it has read the data is paid and spends its epsilon, or failing would
    // be a free probe: here the noisy groups outnumber what a licence with `max_output_rows = 2`
    // releases.
    let narrow = dir.path().join("narrow.toml");
    std::fs::write(&narrow, text.replace("max_output_rows = 1000", "max_output_rows = 2")).unwrap();
    let out = strongroom(
        &devnet,
        &owner_dir,
        &owner_key(),
        &["--json", "dataset", "publish", SAMPLE, "--policy", narrow.to_str().unwrap(), "--price", "0.01ether"],
    );
    assert!(out.status.success(), "publish failed: {}", out.stderr());
    let published: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let narrow_dataset = published["dataset"].as_str().unwrap().to_owned();
    let out = analyst(&["rent", &narrow_dataset, "--sql", SQL, "--epsilon", "0.5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr().contains("refused by the licence, rule output_rows: the result has more than 2 rows")
            && out.stderr().contains(
                "it failed while running on the data, so it is paid and its epsilon (if any) spent: a failure can \
                 tell something of the data"
            ),
        "{}",
        out.stderr()
    );
    let out = analyst(&["budget", &narrow_dataset]);
    assert!(out.stdout().contains("epsilon 0.500000 spent, 0.000000 reserved"), "{}", out.stdout());
    devnet.shutdown().await;
}
