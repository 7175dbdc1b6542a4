//! kill -9 at the worst moments, with real processes: a worker (`strongroom worker run`) killed at
//! a step it was asked to halt at (`STRONGROOM_WORKER_HALT_AT`), a key service (`strongroom kms
//! serve`) killed in the middle of a release (`STRONGROOM_KMS_HALT_AFTER_BINDING`), and the chain
//! (anvil) killed with a task in flight, each then started again. After each, the task ends completed, its keys went to one enclave and task key
//! only, and the contract's books balance to the wei.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::providers::Provider;
use strongroom_chain::TaskStatus;
use strongroom_client::analyst::{self, Outcome, RentOptions};
use strongroom_devnet::{Devnet, analyst_key, governance_key, operator_key, owner_key};
use strongroom_e2e::{audit, devnet, publish_sample, rent, result_of, strongroom_command};
use strongroom_worker::journal::Step;

/// A `strongroom` process (a worker, a key service), its output in a file.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(mut command: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        command.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
        Self { child: command.spawn().expect("the strongroom binary is built"), log }
    }

    /// `strongroom worker run` for the devnet's pool, halting at `halt_at` if given.
    fn worker(devnet: &Devnet, halt_at: Option<&str>, run: u32) -> Self {
        let mut command = strongroom_command(devnet, &devnet.options.data_dir);
        command
            .args(["worker", "run", "--pool", &devnet.pool.to_string()])
            .args(["--platform-socket", &devnet.platform.socket().display().to_string()])
            .args(["--dataset-storage", devnet.objects_url.as_str(), "--results-url", devnet.results_url.as_str()])
            .env("STRONGROOM_KEY", format!("0x{}", alloy::hex::encode(operator_key().to_bytes())))
            .env_remove("STRONGROOM_WORKER_HALT_AT");
        if let Some(step) = halt_at {
            command.env("STRONGROOM_WORKER_HALT_AT", step);
        }
        Self::start(command, devnet.options.data_dir.join(format!("worker-run-{run}.log")))
    }

    /// `strongroom kms serve` with its data under `data_dir`, on `listen`.
    fn key_service(devnet: &Devnet, data_dir: &Path, listen: &str, halt_after_binding: bool, run: u32) -> Self {
        let mut command = strongroom_command(devnet, data_dir);
        command.args(["kms", "serve", "--listen", listen]).env_remove("STRONGROOM_KMS_HALT_AFTER_BINDING");
        if halt_after_binding {
            command.env("STRONGROOM_KMS_HALT_AFTER_BINDING", "1");
        }
        Self::start(command, data_dir.join(format!("kms-run-{run}.log")))
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a line containing `needle`; returns that line.
    async fn wait_for(&self, needle: &str) -> String {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.output().lines().find(|line| line.contains(needle)) {
                return line.to_owned();
            }
            assert!(Instant::now() < until, "the process never said {needle:?}:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no destructor, no flush, no goodbye.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The contract's books: every wei it holds is owed to someone (a withdrawable balance, a pool's
/// stake or unbonding stake, or the prices of a task still active), and nothing more.
async fn assert_books_balance(devnet: &Devnet, active: &[strongroom_chain::Task]) {
    let chain = &devnet.governance;
    let held = chain.contract().provider().get_balance(chain.address()).await.unwrap();
    let mut owed = U256::ZERO;
    for account in [governance_key(), owner_key(), operator_key(), analyst_key()] {
        owed += chain.balance_of(account.address()).await.unwrap();
    }
    let pool = chain.pool(devnet.pool).await.unwrap().expect("the devnet's pool");
    owed += pool.stake + pool.unbonding;
    for task in active {
        let p = &task.params;
        owed += U256::from(p.datasetPrice) + U256::from(p.poolPrice) + U256::from(p.appPrice);
    }
    assert_eq!(held, owed, "the contract holds {held} wei and owes {owed}");
}

/// Kills the worker at `step` while it serves one task, starts it again, and checks that the
/// task completes once, with its keys released to one enclave, and that the pay went where the
/// rental said.
async fn killed_at(step: &str) {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let chain = &devnet.governance;
    let before = |account: alloy::primitives::Address| async move { chain.balance_of(account).await.unwrap() };
    let (owner_before, operator_before) = (before(owner_key().address()).await, before(operator_key().address()).await);

    let first = Daemon::worker(&devnet, Some(step), 1);
    first.wait_for("worker serving pool").await;
    let rental = rent(&devnet, &published, "SELECT COUNT(*) AS n FROM dataset", &RentOptions::default()).await.unwrap();
    first.wait_for("halting here, as STRONGROOM_WORKER_HALT_AT asks").await;
    first.kill_9();
    assert_eq!(chain.task_status(rental.task_id()).await.unwrap(), TaskStatus::Active, "nothing was submitted");
    assert_books_balance(&devnet, std::slice::from_ref(&rental.task)).await;
    let released_before = audit(&devnet, &devnet.kms.url(), published.dataset, Some(rental.task_id())).await;
    assert_eq!(released_before.len(), 1, "the keys were released before the kill: {released_before:?}");

    // Started again: the journal has the task at `step`, and the worker finishes it from there.
    let second = Daemon::worker(&devnet, None, 2);
    let result = result_of(&devnet, &rental).await;
    assert_eq!(result.outcome, strongroom_types::Outcome::Completed);
    let outcome = analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await.unwrap();
    let Outcome::Table { rows: 1, .. } = outcome else { panic!("one row: {outcome:?}") };
    second.wait_for("taking up the tasks the journal has unfinished").await;

    // One enclave had the keys: asked again (from a step before the result) it got the same
    // release, which the key service gives only to the enclave and task key it first bound.
    let released = audit(&devnet, &devnet.kms.url(), published.dataset, Some(rental.task_id())).await;
    assert!(released.iter().all(|r| r.enclave == released_before[0].enclave), "{released:?}");
    let asked_again = matches!(step, "keys_released" | "authorized");
    assert_eq!(released.len(), 1 + usize::from(asked_again), "{released:?}");

    // Paid once, to whom the rental said; nothing held for the task any more.
    let p = &rental.task.params;
    assert_eq!(before(owner_key().address()).await - owner_before, U256::from(p.datasetPrice));
    assert_eq!(before(operator_key().address()).await - operator_before, U256::from(p.poolPrice));
    assert_books_balance(&devnet, &[]).await;

    // The journal says so, as `strongroom worker status` shows it (the worker journals the
    // confirmation just after the result lands).
    let status = || {
        let run =
            strongroom_e2e::run(strongroom_command(&devnet, &devnet.options.data_dir).args(["worker", "status"]), b"");
        assert!(run.status.success(), "{}", run.stderr());
        run.stdout()
    };
    let until = Instant::now() + Duration::from_secs(30);
    let mut text = status();
    while !text.contains(" confirmed=1 ") && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        text = status();
    }
    assert!(
        text.starts_with(
            "tasks: seen=0 authorized=0 keys_released=0 computed=0 result_stored=0 submitted=0 confirmed=1 "
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("{:<13}  {:>10}  {:>8}  {:<10}", "confirmed", p.deadline, 0, rental.task_id())),
        "{text}"
    );
    drop(second);
    devnet.shutdown().await;
}

/// Killed once the key service released the keys to the enclave and before it ran the task: the
/// restarted enclave asks with the same task key, gets the same release, and runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_the_keys_were_released_finishes_the_task_after_a_restart() {
    killed_at("keys_released").await;
}

/// Killed with the result computed and stored, before its submission: the restarted worker
/// submits the journaled result without asking for the keys again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_storing_the_result_and_submitting_it_submits_it_after_a_restart() {
    killed_at("result_stored").await;
}

/// Killed once a release request bound the task to the enclave and its task key, before the
/// release was recorded and answered: started again on the same port, the key service answers the
/// worker's repeat of the request, and the task completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_service_killed_in_the_middle_of_a_release_answers_it_after_a_restart() {
    let (_dir, devnet) = devnet(true).await;
    let published = publish_sample(&devnet).await;
    let kms_dir = devnet.options.data_dir.join("kms-process");
    std::fs::create_dir_all(&kms_dir).unwrap();
    let first = Daemon::key_service(&devnet, &kms_dir, "127.0.0.1:0", true, 1);
    let line = first.wait_for("key service listening on ").await;
    let url = line.split("key service listening on ").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    devnet.owner().await.unwrap().redeposit(published.dataset, &url).await.unwrap();

    let rental = rent(&devnet, &published, "SELECT COUNT(*) AS n FROM dataset", &RentOptions::default()).await.unwrap();
    first.wait_for("halting here, as STRONGROOM_KMS_HALT_AFTER_BINDING asks").await;
    first.kill_9();
    assert_eq!(devnet.governance.task_status(rental.task_id()).await.unwrap(), TaskStatus::Active);
    let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
    let second = Daemon::key_service(&devnet, &kms_dir, &format!("127.0.0.1:{port}"), false, 2);
    second.wait_for("key service listening on ").await;

    let result = result_of(&devnet, &rental).await;
    assert_eq!(result.outcome, strongroom_types::Outcome::Completed);
    let outcome = analyst::read_result(&result, &rental.result_secret, &devnet.options.storage).await.unwrap();
    let Outcome::Table { rows: 1, .. } = outcome else { panic!("one row: {outcome:?}") };
    // The release that was cut off left no record; the repeat that completed it did, once.
    let released = audit(&devnet, &url, published.dataset, Some(rental.task_id())).await;
    assert_eq!(released.len(), 1, "{released:?}");
    assert_books_balance(&devnet, &[]).await;
    drop(second);
    devnet.shutdown().await;
}

/// anvil killed with SIGKILL while a task is in flight (its keys released and its result computed,
/// the results storage refusing it for now), then started again on its port from the state it
/// dumps every second: the worker rides out the outage, stores and submits the result once the
/// chain is back, the next task is served as usual, and the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_killed_and_restarted_from_its_dumped_state_loses_no_task() {
    let (_dir, mut devnet) = strongroom_e2e::devnet_with(|options| {
        options.chain_state = Some(options.data_dir.join("chain-state.json"));
    })
    .await;
    let published = publish_sample(&devnet).await;
    let sql = "SELECT COUNT(*) AS n FROM dataset";
    let served = rent(&devnet, &published, sql, &RentOptions::default()).await.unwrap();
    assert_eq!(result_of(&devnet, &served).await.outcome, strongroom_types::Outcome::Completed);

    // A file where the results directory should be: the next result is computed, not stored.
    let results = devnet.options.data_dir.join("results");
    std::fs::remove_dir_all(&results).unwrap();
    std::fs::write(&results, b"not a directory").unwrap();
    let in_flight = rent(&devnet, &published, sql, &RentOptions::default()).await.unwrap();
    let journal = strongroom_worker::journal::Journal::open_read_only(
        &devnet.options.data_dir.join("worker").join("journal.sqlite"),
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while journal.entry(in_flight.task_id()).unwrap().is_none_or(|e| e.step != Step::Computed) {
        assert!(Instant::now() < until, "the task was never computed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the next dump, which then holds the rent; then the crash, and an outage.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    devnet.node.kill_9();
    std::fs::remove_file(&results).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    devnet.node.restart().unwrap();

    let result = result_of(&devnet, &in_flight).await;
    assert_eq!(result.outcome, strongroom_types::Outcome::Completed);
    let outcome = analyst::read_result(&result, &in_flight.result_secret, &devnet.options.storage).await.unwrap();
    let Outcome::Table { rows: 1, .. } = outcome else { panic!("one row: {outcome:?}") };
    let after = rent(&devnet, &published, sql, &RentOptions::default()).await.unwrap();
    assert_eq!(result_of(&devnet, &after).await.outcome, strongroom_types::Outcome::Completed);

    // Each task paid once; nothing held for any.
    let p = &served.task.params;
    assert_eq!(
        devnet.governance.balance_of(owner_key().address()).await.unwrap(),
        U256::from(p.datasetPrice) * U256::from(3)
    );
    assert_eq!(
        devnet.governance.balance_of(operator_key().address()).await.unwrap(),
        U256::from(p.poolPrice) * U256::from(3)
    );
    assert_books_balance(&devnet, &[]).await;
    // The worker journals the confirmation just after the result lands.
    let until = Instant::now() + Duration::from_secs(30);
    while !journal.counts().unwrap().contains(&(Step::Confirmed, 3)) {
        assert!(Instant::now() < until, "{:?}", journal.counts().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    devnet.shutdown().await;
}
