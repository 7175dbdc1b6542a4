//! The journeys as people type them: the `strongroom` binary against a running devnet.

use std::process::{Command, Output};

use strongroom_cli::devnet::{Devnet, analyst_key, owner_key};
use strongroom_e2e::{POLICY, SAMPLE, devnet};

fn strongroom(
    devnet: &Devnet,
    data_dir: &std::path::Path,
    key: &alloy::signers::local::PrivateKeySigner,
    args: &[&str],
) -> Output {
    let enclave = strongroom_worker::locate_enclave_binary().unwrap();
    let binary = enclave.with_file_name("strongroom");
    Command::new(&binary)
        .args(args)
        .env("STRONGROOM_RPC_URL", devnet.rpc_url())
        .env("STRONGROOM_CONTRACT", devnet.governance.address().to_string())
        .env("STRONGROOM_MARKET_URL", devnet.market.url())
        .env("STRONGROOM_KMS_URL", devnet.kms.url())
        .env("STRONGROOM_STORAGE_URL", &devnet.objects_url)
        .env("STRONGROOM_DATA_DIR", data_dir)
        .env("STRONGROOM_KEY", format!("0x{}", alloy::hex::encode(key.to_bytes())))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_and_analyst_journeys_through_the_binary() {
    let (dir, devnet) = devnet(true).await;
    let owner_dir = dir.path().join("owner");
    let analyst_dir = dir.path().join("analyst");

    let out = strongroom(
        &devnet,
        &owner_dir,
        &owner_key(),
        &["--json", "dataset", "publish", SAMPLE, "--policy", POLICY, "--price", "0.01ether"],
    );
    assert!(out.status.success(), "publish failed: {}", stderr(&out));
    let published: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let dataset = published["dataset"].as_str().unwrap().to_owned();
    assert_eq!(published["rows"], 3000);

    let out = strongroom(
        &devnet,
        &analyst_dir,
        &analyst_key(),
        &["rent", &dataset, "--sql", "SELECT plan, COUNT(*) AS n FROM dataset GROUP BY plan ORDER BY plan"],
    );
    assert!(out.status.success(), "rent failed: {}", stderr(&out));
    let table = stdout(&out);
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
    assert!(out.status.success(), "{}", stderr(&out));
    let task = stdout(&out).trim().to_owned();
    let out = strongroom(&devnet, &analyst_dir, &analyst_key(), &["--json", "result", "get", &task]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"[{"n":3000}]"#);

    // A failing query: the attested message, and the dataset price back to withdraw.
    let out =
        strongroom(&devnet, &analyst_dir, &analyst_key(), &["rent", &dataset, "--sql", "SELECT missing FROM dataset"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("failed inside the enclave (attested): Schema error: No field named missing"),
        "{}",
        stderr(&out)
    );
    let out = strongroom(&devnet, &analyst_dir, &analyst_key(), &["balance"]);
    assert_eq!(stdout(&out).trim(), format!("{}: 0.010000000000000000 ETH withdrawable", analyst_key().address()));
    let out = strongroom(&devnet, &analyst_dir, &analyst_key(), &["withdraw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = strongroom(&devnet, &analyst_dir, &analyst_key(), &["withdraw"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("error: there is nothing to withdraw"), "{}", stderr(&out));

    // The price cap is the analyst's, checked before paying.
    let out = strongroom(
        &devnet,
        &analyst_dir,
        &analyst_key(),
        &["rent", &dataset, "--sql", "SELECT 1", "--max-price", "0.001ether"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("above your maximum"), "{}", stderr(&out));

    // The owner earned two successful tasks' prices.
    let out = strongroom(&devnet, &owner_dir, &owner_key(), &["--json", "balance"]);
    let balance: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(balance["withdrawable_wei"], "20000000000000000");
    devnet.shutdown().await;
}
