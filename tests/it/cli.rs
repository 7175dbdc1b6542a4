//! The journeys as people type them: the `strongroom` binary against a running devnet.

use strongroom_cli::devnet::{analyst_key, owner_key};
use strongroom_e2e::{POLICY, SAMPLE, anvil, devnet, strongroom};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_and_analyst_journeys_through_the_binary() {
    let (dir, devnet) = devnet(true).await;
    let owner_dir = dir.path().join("owner");
    let analyst_dir = dir.path().join("analyst");

    // Amounts carry their unit and epsilons fit the contract's resolution, or nothing happens.
    let out = strongroom(
        &devnet,
        &owner_dir,
        &owner_key(),
        &["dataset", "publish", SAMPLE, "--policy", POLICY, "--price", "1"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr()
            .contains("invalid value '1' for '--price <PRICE>': `1` has no unit: write e.g. 1ether, 1gwei or 1wei"),
        "{}",
        out.stderr()
    );
    let out = strongroom(
        &devnet,
        &analyst_dir,
        &analyst_key(),
        &["rent", &format!("0x{}", "00".repeat(32)), "--sql", "SELECT 1", "--epsilon", "0.0000001"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr().contains(
            "epsilon `0.0000001` is finer than the contract's resolution of 0.000001; round it to 6 decimals"
        ),
        "{}",
        out.stderr()
    );

    let out = strongroom(
        &devnet,
        &owner_dir,
        &owner_key(),
        &[
            "--json",
            "dataset",
            "publish",
            SAMPLE,
            "--policy",
            POLICY,
            "--price",
            "0.01ether",
            "--rows-per-object",
            "2000",
        ],
    );
    assert!(out.status.success(), "publish failed: {}", out.stderr());
    let published: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let dataset = published["dataset"].as_str().unwrap().to_owned();
    assert_eq!(published["rows"], 3000);
    let rows: Vec<u64> = published["objects"].as_array().unwrap().iter().map(|o| o["rows"].as_u64().unwrap()).collect();
    assert_eq!(rows, [2000, 1000]);
    assert!(out.stderr().contains("published 3000 rows"), "{}", out.stderr());

    // Fresh keys, a new data version; renting goes on as before.
    let out = strongroom(&devnet, &owner_dir, &owner_key(), &["dataset", "rotate", &dataset]);
    assert!(out.status.success(), "rotate failed: {}", out.stderr());
    assert!(out.stdout().starts_with(&format!("dataset {dataset} now serves data version 2 (3000 rows in 1 object,")));
    let backup = owner_dir.join("owner");
    assert!(backup.join("backup.salt").is_file() && !backup.join("backup.key").exists(), "passphrase-protected");

    let out = strongroom(
        &devnet,
        &analyst_dir,
        &analyst_key(),
        &["rent", &dataset, "--sql", "SELECT plan, COUNT(*) AS n FROM dataset GROUP BY plan ORDER BY plan"],
    );
    assert!(out.status.success(), "rent failed: {}", out.stderr());
    let table = out.stdout();
    for plan in ["basic", "plus", "pro"] {
        assert!(table.contains(plan), "{table}");
    }
    assert!(!table.contains('@'), "no email reaches the analyst for an aggregate");

    // Rent without waiting, then read the result later from the same data dir.
    let out = strongroom(
        &devnet,
        &analyst_dir,
        &analyst_key(),
        &["rent", &dataset, "--sql", "SELECT COUNT(*) AS n FROM dataset", "--no-wait"],
    );
    assert!(out.status.success(), "{}", out.stderr());
    let task = out.stdout().trim().to_owned();
    let out = strongroom(&devnet, &analyst_dir, &analyst_key(), &["--json", "result", "get", &task]);
    assert!(out.status.success(), "{}", out.stderr());
    assert_eq!(out.stdout().trim(), r#"[{"n":3000}]"#);

    // A failing query: the attested message, and the dataset price back to withdraw.
    let out =
        strongroom(&devnet, &analyst_dir, &analyst_key(), &["rent", &dataset, "--sql", "SELECT missing FROM dataset"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr().contains("failed inside the enclave (attested): Schema error: No field named missing"),
        "{}",
        out.stderr()
    );
    let out = strongroom(&devnet, &analyst_dir, &analyst_key(), &["balance"]);
    assert_eq!(out.stdout().trim(), format!("{}: 0.010000000000000000 ETH withdrawable", analyst_key().address()));
    let out = strongroom(&devnet, &analyst_dir, &analyst_key(), &["withdraw"]);
    assert!(out.status.success(), "{}", out.stderr());
    let out = strongroom(&devnet, &analyst_dir, &analyst_key(), &["withdraw"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr().contains("error: there is nothing to withdraw"), "{}", out.stderr());

    // The price cap is the analyst's, checked before paying.
    let out = strongroom(
        &devnet,
        &analyst_dir,
        &analyst_key(),
        &["rent", &dataset, "--sql", "SELECT 1", "--max-price", "0.001ether"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr().contains("above your maximum"), "{}", out.stderr());

    // The owner earned two successful tasks' prices.
    let out = strongroom(&devnet, &owner_dir, &owner_key(), &["--json", "balance"]);
    let balance: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(balance["withdrawable_wei"], "20000000000000000");
    devnet.shutdown().await;
}

#[test]
fn the_demo_runs_from_an_installed_copy_of_the_binaries() {
    // The binaries, linked into a directory of their own and run from elsewhere: nothing may
    // reach back into the checkout they were built in.
    let built = strongroom_worker::locate_enclave_binary().expect("binaries are built");
    let installed = tempfile::tempdir().unwrap();
    for name in ["strongroom", "strongroom-enclave"] {
        std::fs::hard_link(built.with_file_name(name), installed.path().join(name)).unwrap();
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(installed.path().join("strongroom"))
        .arg("demo")
        .current_dir(elsewhere.path())
        .env_remove("STRONGROOM_ENCLAVE")
        .env("STRONGROOM_ANVIL", anvil())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().last().unwrap().starts_with("demo: ok task=1 rows=5 "), "{stdout}");
}
