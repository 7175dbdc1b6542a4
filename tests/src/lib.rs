//! Helpers for the end-to-end suite: a devnet per test and a log capture shared by the binary.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use strongroom_chain::Chain;
use strongroom_client::analyst::{self, Published as ResultPublished, RentOptions, Rental};
use strongroom_client::owner::{OfferTerms, PublishRequest, Published};
use strongroom_devnet::analyst_key;
use strongroom_devnet::{Devnet, DevnetOptions};
use strongroom_types::{Authorization, KeyRequest, ReleaseRequest, X25519PublicKey, sign_typed};

// A minimal contract wallet (ERC-1271 for its owner's key; `exec` for its owner's calls), from the
// contract tests: a pool run by a contract rather than a key.
alloy::sol!(
    #[sol(rpc)]
    TestWallet,
    "../contracts/out/Fixture.sol/TestWallet.json"
);

pub const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../datasets/customers.csv");
pub const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/aggregate-with-threshold.toml");

/// The anvil this checkout's `make contracts` installed, unless `STRONGROOM_ANVIL` says otherwise.
pub fn anvil() -> std::path::PathBuf {
    std::env::var_os("STRONGROOM_ANVIL")
        .map(Into::into)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../contracts/node_modules/.bin/anvil").into())
}

/// Every log line of every component in this test binary (host, key service, market, and the
/// enclave's stderr, which the host forwards).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capture once, at debug level for our crates, and returns it.
pub fn logs() -> LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = LogCapture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("info,strongroom=debug"))
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .init();
            capture
        })
        .clone()
}

pub mod s3;

/// The audit log of `dataset` at the key service at `kms_url`, as its owner (the devnet's) reads it.
pub async fn audit(
    devnet: &Devnet,
    kms_url: &str,
    dataset: strongroom_types::DatasetId,
    task: Option<U256>,
) -> Vec<strongroom_types::AuditEntry> {
    let kms = strongroom_client::KmsClient::new(kms_url).unwrap();
    // The devnet's own key service, whose word on its key the test can take.
    let key_service = kms.info().await.unwrap().public_key.to_b256();
    kms.audit(&strongroom_devnet::owner_key(), &devnet.governance.domain(), key_service, dataset, task).await.unwrap()
}

/// Waits until a log line of the run contains `needle` (half a minute at most): for what a
/// service does without telling the caller, such as a worker declining a task.
pub async fn wait_for_log(needle: &str) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !logs().text().contains(needle) {
        assert!(std::time::Instant::now() < until, "no log line says {needle:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh local stack in a temporary directory.
pub async fn devnet(with_worker: bool) -> (tempfile::TempDir, Devnet) {
    devnet_with(|options| options.with_worker = with_worker).await
}

/// A fresh local stack in a temporary directory, with options adjusted by `adjust`.
pub async fn devnet_with(adjust: impl FnOnce(&mut DevnetOptions)) -> (tempfile::TempDir, Devnet) {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let enclave = strongroom_worker::locate_enclave_binary()
        .expect("strongroom-enclave is not built: run `make test` (or `cargo build --bins` before `cargo test`)");
    let mut options = DevnetOptions::new(dir.path(), enclave);
    options.anvil = anvil();
    adjust(&mut options);
    let devnet = Devnet::start(options).await.expect("devnet starts");
    (dir, devnet)
}

/// A second key service on the devnet's chain, its data under `dir` (an owner moving keys to it).
pub async fn spawn_key_service(devnet: &Devnet, dir: &std::path::Path) -> strongroom_kms::KmsHandle {
    let config = strongroom_kms::KmsConfig {
        data_dir: dir.to_owned(),
        rpc_url: devnet.rpc_url().into(),
        contract: devnet.governance.address(),
        confirmations: 0,
        halt_after_binding: false,
    };
    strongroom_kms::spawn(config, std::net::TcpListener::bind("127.0.0.1:0").unwrap()).await.unwrap()
}

/// How long the sample's offers stay valid: a week, beyond a task's deadline and claim window.
pub const SAMPLE_OFFER_VALIDITY: Duration = Duration::from_secs(7 * 86_400);

/// Publishes the sample dataset as the devnet's owner at 0.01 ether per task.
pub async fn publish_sample(devnet: &Devnet) -> Published {
    publish_with(
        devnet,
        OfferTerms::sql(alloy::primitives::U256::from(10_000_000_000_000_000u64), SAMPLE_OFFER_VALIDITY),
        2_000_000,
    )
    .await
}

/// Publishes the sample dataset cut into objects of at most `rows_per_object` rows.
pub async fn publish_split(devnet: &Devnet, rows_per_object: usize) -> Published {
    let terms = OfferTerms::sql(alloy::primitives::U256::from(10_000_000_000_000_000u64), SAMPLE_OFFER_VALIDITY);
    publish_request(devnet, terms, 2_000_000, strongroom_dataplane::Layout::with_object_rows(rows_per_object)).await
}

/// Publishes the sample dataset with these offer terms and privacy budget (micro-epsilon).
pub async fn publish_with(devnet: &Devnet, terms: OfferTerms, privacy_budget: u64) -> Published {
    publish_request(devnet, terms, privacy_budget, Default::default()).await
}

async fn publish_request(
    devnet: &Devnet,
    terms: OfferTerms,
    privacy_budget: u64,
    layout: strongroom_dataplane::Layout,
) -> Published {
    let request = sample_request(devnet).with_terms(terms).with_privacy_budget(privacy_budget).with_layout(layout);
    devnet.owner().await.unwrap().publish(&request).await.expect("publish succeeds")
}

/// A request to publish the sample dataset on the devnet's storage, key service and market at
/// 0.01 ether per task.
pub fn sample_request(devnet: &Devnet) -> PublishRequest {
    let price = alloy::primitives::U256::from(10_000_000_000_000_000u64);
    PublishRequest::new(SAMPLE, POLICY, price, &devnet.objects_url, &devnet.kms.url(), &devnet.market.url())
}

/// The sample's rows as (email, region) pairs, read without Strongroom, to check results against.
pub fn sample_rows() -> Vec<(String, String)> {
    std::fs::read_to_string(SAMPLE)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            (cols[1].to_owned(), cols[3].to_owned())
        })
        .collect()
}

/// Rents the published dataset on the devnet's pool as the analyst, with the pool's offer for
/// the key service the dataset names now.
pub async fn rent(
    devnet: &Devnet,
    published: &Published,
    sql: &str,
    options: &RentOptions,
) -> strongroom_client::Result<Rental> {
    let chain = devnet.chain_as(analyst_key()).await.expect("the devnet serves the analyst");
    let keys = analyst::result_keys(&devnet.options.data_dir.join("analyst"), &chain)?;
    let dataset = chain.dataset(published.dataset).await?.expect("the published dataset is registered");
    analyst::rent(
        &chain,
        &keys,
        (&published.offer, &published.offer_signature),
        devnet.pool_offer_for(dataset.kms_key),
        sql,
        options,
    )
    .await
}

/// Moves the chain's clock past the deadline of every task rented so far and past the claim
/// window after it, when a task without a receipt of its release can be refunded.
pub async fn pass_claim_window(devnet: &Devnet) {
    let window = devnet.governance.release_claim_window().await.unwrap();
    devnet.increase_time(devnet.options.max_task_duration.as_secs() + window + 1).await.unwrap();
}

/// Waits for the rental's result (a minute at most).
pub async fn result_of(devnet: &Devnet, rental: &Rental) -> ResultPublished {
    let chain = devnet.chain_as(analyst_key()).await.unwrap();
    analyst::wait_for_result(&chain, rental.task_id(), rental.block, Duration::from_secs(60)).await.unwrap()
}

/// What one run of the `strongroom` binary printed.
pub struct CliRun {
    pub status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl CliRun {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The `error: …` line, as the user reads it.
    pub fn stderr_line(&self) -> String {
        self.stderr().lines().find(|l| l.starts_with("error: ")).unwrap_or_default().to_owned()
    }
}

/// Runs the `strongroom` binary as `key`, pointed at the devnet through its environment variables.
pub fn strongroom(
    devnet: &Devnet,
    data_dir: &std::path::Path,
    key: &alloy::signers::local::PrivateKeySigner,
    args: &[&str],
) -> CliRun {
    let mut command = strongroom_command(devnet, data_dir);
    command.args(args).env("STRONGROOM_KEY", format!("0x{}", alloy::hex::encode(key.to_bytes())));
    run(&mut command, b"")
}

/// The `strongroom` binary pointed at the devnet, acting as no account until it is given one.
pub fn strongroom_command(devnet: &Devnet, data_dir: &std::path::Path) -> std::process::Command {
    let enclave = strongroom_worker::locate_enclave_binary().expect("binaries are built");
    let mut command = std::process::Command::new(enclave.with_file_name("strongroom"));
    command
        .env("STRONGROOM_RPC_URL", devnet.rpc_url())
        .env("STRONGROOM_CONTRACT", devnet.governance.address().to_string())
        .env("STRONGROOM_MARKET_URL", devnet.market.url())
        .env("STRONGROOM_KMS_URL", devnet.kms.url())
        .env("STRONGROOM_STORAGE_URL", devnet.objects_url.as_str())
        .env("STRONGROOM_DATA_DIR", data_dir)
        .env_remove("STRONGROOM_KEY")
        // Owners typing commands protect their key backup with a passphrase.
        .env("STRONGROOM_BACKUP_PASSPHRASE", "correct horse battery staple");
    command
}

/// Runs `command` with `stdin` as its standard input; returns what it printed.
pub fn run(command: &mut std::process::Command, stdin: &[u8]) -> CliRun {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    child.stdin.take().expect("piped").write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    CliRun { status: out.status, stdout: out.stdout, stderr: out.stderr }
}

/// The devnet's platform key, read from the platform daemon's own directory: for tests that play
/// the hardware vendor, who alone can sign a quote without launching an enclave.
pub fn vendor_platform(devnet: &Devnet) -> strongroom_enclave_sim::Platform {
    strongroom_enclave_sim::Platform::load_or_create(&devnet.options.data_dir.join("platform")).unwrap()
}

/// A quote of the trusted measurement for `enclave`, made after the latest block, signed by the
/// vendor (see [`vendor_platform`]).
pub async fn vendor_quote(
    devnet: &Devnet,
    enclave: alloy::primitives::Address,
) -> (strongroom_types::Quote, alloy::primitives::Bytes) {
    let block = devnet.governance.recent_block().await.unwrap();
    vendor_platform(devnet).quote_for(devnet.measurement, strongroom_types::report_data_for(enclave, block))
}

/// An enclave key of the devnet's pool, registered from a quote of the trusted measurement: for
/// tests that play the pool's host.
pub async fn registered_enclave(devnet: &Devnet) -> PrivateKeySigner {
    let enclave = PrivateKeySigner::random();
    let operator = devnet.chain_as(strongroom_devnet::operator_key()).await.unwrap();
    let (quote, signature) = vendor_quote(devnet, enclave.address()).await;
    operator.register_enclave(&quote, signature).await.unwrap();
    enclave
}

/// Posts a release request for `task` by `enclave`, authorized by `authorizer`, for the release
/// to be sealed to `task_key`, as a worker host would; returns (status, body).
pub async fn request_release(
    devnet: &Devnet,
    chain: &Chain,
    task: U256,
    enclave: &PrivateKeySigner,
    authorizer: &PrivateKeySigner,
    task_key: X25519PublicKey,
) -> (u16, serde_json::Value) {
    let authorization = sign_typed(
        authorizer.credential(),
        &Authorization { taskId: task, enclave: enclave.address() },
        &chain.domain(),
    );
    request_release_with(devnet, chain, task, enclave, authorization, task_key).await
}

/// [`request_release`] with the authorization as given: empty for one presigned on chain.
pub async fn request_release_with(
    devnet: &Devnet,
    chain: &Chain,
    task: U256,
    enclave: &PrivateKeySigner,
    authorization: alloy::primitives::Bytes,
    task_key: X25519PublicKey,
) -> (u16, serde_json::Value) {
    let domain = chain.domain();
    let body = ReleaseRequest {
        task_id: task,
        enclave: enclave.address(),
        task_key,
        columns: Vec::new(),
        enclave_signature: sign_typed(
            enclave.credential(),
            &KeyRequest { taskId: task, taskKey: task_key.to_b256(), columns: Vec::new() },
            &domain,
        ),
        authorization,
    };
    let response =
        reqwest::Client::new().post(format!("{}/v1/releases", devnet.kms.url())).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}
