//! The journeys as people type them: the `strongroom` binary against a running devnet.

use strongroom_devnet::{analyst_key, owner_key};
use strongroom_e2e::{POLICY, SAMPLE, anvil, devnet, run, strongroom, strongroom_command};

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

    // A second offer under other terms, beside the first.
    let out = strongroom(
        &devnet,
        &owner_dir,
        &owner_key(),
        &["dataset", "offer", &dataset, "--price", "0.02ether", "--volume", "5"],
    );
    assert!(out.status.success(), "offer failed: {}", out.stderr());
    let offered = format!("dataset {dataset} offered at 20000000000000000 wei per task, for 5 tasks until unix time ");
    assert!(out.stdout().starts_with(&offered), "{}", out.stdout());

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

    // The preflight: what the enclave will decide, the keys and the cost, with nothing sent.
    let sql = "SELECT region, COUNT(*) AS n, AVG(monthly_spend) AS spend FROM dataset GROUP BY region";
    let out = strongroom(&devnet, &analyst_dir, &analyst_key(), &["rent", &dataset, "--sql", sql, "--dry-run"]);
    assert!(out.status.success(), "{}", out.stderr());
    assert_eq!(
        out.stdout(),
        format!(
            "dry run: nothing sent, nothing paid\n\
             dataset   {dataset} under the licence `aggregate-with-threshold`\n\
             verdict   allowed, as the enclave will run it:\n  \
             - monthly_spend is clamped to [0, 200] in avg(dataset.monthly_spend)\n  \
             - groups of fewer than 10 distinct customer_id are dropped\n  \
             - a result of more than 10000 rows fails the task, which is still charged\n\
             keys      customer_id, monthly_spend, region (and the footer's)\n\
             price     11000000000000000 wei (dataset 10000000000000000 + compute 1000000000000000)\n\
             epsilon   0.000000 reserved from your budget on the dataset\n"
        )
    );
    let out = strongroom(
        &devnet,
        &analyst_dir,
        &analyst_key(),
        &["rent", &dataset, "--sql", "SELECT * FROM dataset", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout().contains("verdict   refused\n  refused by the licence, rule row_level_output"),
        "{}",
        out.stdout()
    );

    // Queries a new user writes first are refused before paying, each saying why; `SELECT *`
    // lists what may be used instead.
    for (sql, why) in [
        ("SELECT missing FROM dataset", "the query does not plan: Schema error: No field named missing"),
        (
            "SELECT COUNT(*) FROM customers",
            "the query does not plan: Error during planning: table 'datafusion.public.customers' not found",
        ),
        (
            "SELECT * FROM dataset",
            "refused by the licence, rule row_level_output: every output row must be an aggregate over at least 10 \
             distinct customer_id; group by the dimensions (age, plan, region) and aggregate the measures \
             (monthly_spend) with count, count_distinct, sum, avg (in `customer_id, email, age, region, plan, monthly_spend`)",
        ),
    ] {
        let out = strongroom(&devnet, &analyst_dir, &analyst_key(), &["rent", &dataset, "--sql", sql]);
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stderr().contains(&format!("error: not rented, nothing paid: {why}")), "{}", out.stderr());
    }

    // Sent anyway, a failing query ends as the attested message, the dataset price back to withdraw.
    let out = strongroom(
        &devnet,
        &analyst_dir,
        &analyst_key(),
        &["rent", &dataset, "--sql", "SELECT missing FROM dataset", "--no-preflight"],
    );
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
    for name in ["strongroom", "strongroom-enclave", "strongroom-platform"] {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_keystores_key_files_or_the_environment_never_flags() {
    let (dir, devnet) = devnet(false).await;
    let home = dir.path().join("analyst");
    let analyst = analyst_key();
    let hex_key = format!("0x{}", alloy::hex::encode(analyst.to_bytes()));
    let password = "a long enough password";
    let cli = |envs: &[(&str, &str)], args: &[&str], stdin: &str| {
        let mut command = strongroom_command(&devnet, &home);
        command.args(args).envs(envs.iter().copied());
        run(&mut command, stdin.as_bytes())
    };
    let balance_line = format!("{}: 0.000000000000000000 ETH withdrawable", analyst.address());

    // A private key is not a flag: flags show in process lists and shell histories.
    let out = cli(&[], &["--key", &hex_key, "balance"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr().contains("unexpected argument '--key'"), "{}", out.stderr());
    let out = cli(&[], &["balance"], "");
    assert!(out.stderr_line().starts_with("error: no account given: pass --account <name>"), "{}", out.stderr());

    // Import reads the key from standard input into an encrypted keystore only its owner reads.
    let with_password = [("STRONGROOM_KEYSTORE_PASSWORD", password)];
    let out = cli(&with_password, &["account", "import", "analyst"], &hex_key);
    assert!(out.status.success(), "{}", out.stderr());
    assert!(out.stdout().starts_with(&format!("account analyst ({}) imported into", analyst.address())));
    let keystore = home.join("keystore/analyst");
    let text = std::fs::read_to_string(&keystore).unwrap();
    assert!(!text.contains(&hex_key[2..]), "the keystore holds no plaintext key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&keystore).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let out = cli(&with_password, &["--account", "analyst", "balance"], "");
    assert_eq!(out.stdout().trim(), balance_line, "{}", out.stderr());

    // The password comes from the environment or a file, and a wrong one opens nothing.
    let out = cli(&[], &["--account", "analyst", "balance"], "");
    assert_eq!(
        out.stderr_line(),
        format!(
            "error: the keystore {} needs its password: set STRONGROOM_KEYSTORE_PASSWORD or pass --password-file",
            keystore.display()
        )
    );
    let out = cli(&[("STRONGROOM_KEYSTORE_PASSWORD", "not the password")], &["--account", "analyst", "balance"], "");
    assert!(
        out.stderr_line()
            .starts_with(&format!("error: cannot open the keystore {}: wrong password?", keystore.display())),
        "{}",
        out.stderr()
    );
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let with_file = ["--account", "analyst", "--password-file", password_file.to_str().unwrap(), "balance"];
    let out = cli(&[], &with_file, "");
    assert_eq!(
        out.stderr_line(),
        format!("error: password file {} is readable by others (mode 644): `chmod 600` it", password_file.display())
    );
    std::fs::set_permissions(&password_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = cli(&[], &with_file, "");
    assert_eq!(out.stdout().trim(), balance_line, "{}", out.stderr());

    // New accounts, listed by name; one account at a time.
    let out = cli(&with_password, &["account", "new", "spare"], "");
    assert!(out.status.success() && out.stdout().starts_with("account spare (0x"), "{}", out.stderr());
    let out = cli(&with_password, &["account", "new", "spare"], "");
    assert!(out.stderr_line().starts_with("error: account `spare` already exists"), "{}", out.stderr());
    let out = cli(&[("STRONGROOM_KEYSTORE_PASSWORD", "short")], &["account", "new", "other"], "");
    assert_eq!(out.stderr_line(), "error: the keystore password has 5 characters; use at least 12");
    assert_eq!(cli(&[], &["account", "list"], "").stdout(), "analyst\nspare\n");
    let out = cli(&[("STRONGROOM_KEY", &hex_key)], &["--account", "spare", "balance"], "");
    assert_eq!(out.stderr_line(), "error: more than one account given (--account, STRONGROOM_KEY): use one");

    // A key file must be private to its owner.
    let key_file = dir.path().join("analyst.key");
    std::fs::write(&key_file, &hex_key).unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = cli(&[], &["--key-file", key_file.to_str().unwrap(), "balance"], "");
    assert_eq!(
        out.stderr_line(),
        format!("error: key file {} is readable by others (mode 644): `chmod 600` it", key_file.display())
    );
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = cli(&[], &["--key-file", key_file.to_str().unwrap(), "balance"], "");
    assert_eq!(out.stdout().trim(), balance_line, "{}", out.stderr());
    devnet.shutdown().await;
}

/// The processes descending from `pid`, read from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(parent) = next.pop() {
        let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).into_iter().flatten().flatten();
        for task in tasks {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}

/// Whether `pid` still runs: a zombie nobody has reaped yet has ended.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')))
        .unwrap_or(false)
}

/// `strongroom devnet` killed with SIGKILL, which it cannot catch, leaves no anvil, platform
/// daemon or enclave behind.
#[test]
fn a_devnet_killed_with_sigkill_leaves_no_process_behind() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let enclave = strongroom_worker::locate_enclave_binary().expect("binaries are built");
    let mut devnet = std::process::Command::new(enclave.with_file_name("strongroom"))
        .arg("devnet")
        .env("STRONGROOM_DATA_DIR", dir.path())
        .env("STRONGROOM_ANVIL", anvil())
        .env_remove("STRONGROOM_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(devnet.stdout.take().unwrap());
    let ready = stdout.lines().map_while(Result::ok).any(|line| line.starts_with("export STRONGROOM_STORAGE_URL="));
    assert!(ready, "the devnet did not start");
    let children = descendants(devnet.id());
    let name = |pid: &u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned();
    let names: Vec<String> = children.iter().map(name).collect();
    assert!(names.iter().any(|n| n == "anvil"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("strongroom-plat")), "{names:?}");
    devnet.kill().unwrap();
    devnet.wait().unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while children.iter().any(|pid| running(*pid)) {
        let left: Vec<String> = children.iter().filter(|p| running(**p)).map(name).collect();
        assert!(std::time::Instant::now() < until, "still running after the devnet was killed: {left:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
