//! Attacks on attestation and on the enclave's identity, each run on anvil against the real
//! platform daemon and enclave process: the attacker is the worker host (who holds the enclave's
//! channel, its sealed identity file and the daemon's socket) or a vendor signing what it must
//! not. Every one must end in a refusal that names itself, with nothing registered.
//!
//! The rest of the attack suite sits beside the flows it attacks: `settlement.rs`,
//! `release.rs`, `failures.rs` (every test named `attack_…`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use alloy::primitives::Address;
use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use strongroom_client::analyst::RentOptions;
use strongroom_devnet::{Devnet, mine_blocks, operator_key};
use strongroom_e2e::{devnet, publish_sample, rent, vendor_platform, vendor_quote};
use strongroom_enclave_sim::PlatformDaemon;
use strongroom_types::protocol::{EnclaveReply, HostRequest, read_frame, write_frame};
use strongroom_types::{QUOTE_TYPE_SIMULATED, Quote, sign_typed};

/// An enclave the daemon launched and attested for the devnet's deployment, as a host would
/// have it: its channel, its address, its quote.
struct Attested {
    channel: UnixStream,
    enclave: Address,
    quote: Quote,
    signature: alloy::primitives::Bytes,
}

async fn attest(devnet: &Devnet, binary: &std::path::Path) -> Attested {
    let mut launched = PlatformDaemon::new(devnet.platform.socket()).launch(binary).unwrap();
    let block = devnet.governance.recent_block().await.unwrap();
    let request = HostRequest::Attest {
        chain_id: devnet.governance.chain_id(),
        contract: devnet.governance.address(),
        block,
        sealed_identity: None,
    };
    write_frame(&mut launched.channel, &request).unwrap();
    match read_frame(&mut launched.channel).unwrap() {
        Some(EnclaveReply::Attested { enclave, quote, platform_signature, .. }) => {
            Attested { channel: launched.channel, enclave, quote, signature: platform_signature }
        }
        other => panic!("expected an attestation, got {other:?}"),
    }
}

async fn refused(devnet: &Devnet, quote: &Quote, signature: alloy::primitives::Bytes) -> String {
    let operator = devnet.chain_as(operator_key()).await.unwrap();
    operator.register_enclave(quote, signature).await.unwrap_err().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_the_host_cannot_have_the_platform_sign_a_quote() {
    let (_dir, devnet) = devnet(false).await;
    // The daemon's socket is the host's only way to the platform, and it offers no quote.
    let mut socket = UnixStream::connect(devnet.platform.socket()).unwrap();
    let forged = Address::repeat_byte(0x66);
    let block = devnet.governance.recent_block().await.unwrap();
    let request = serde_json::json!({
        "op": "quote",
        "report_data": strongroom_types::report_data_for(forged, block),
    });
    socket.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(socket).read_line(&mut reply).unwrap();
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["op"], "error");
    assert!(
        reply["message"].as_str().unwrap().starts_with("bad request to the platform: unknown variant `quote`"),
        "{reply}"
    );
    let (measurement, _) = devnet.governance.enclave(forged).await.unwrap();
    assert!(measurement.is_zero(), "nothing registered for the host's key");
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_the_platform_launches_no_program_of_the_hosts() {
    let (dir, devnet) = devnet(false).await;
    // The enclave with a few bytes appended would still run, and is another binary, one that
    // (running as the platform's user) could read the platform key: it is not launched.
    let mut bytes = std::fs::read(&devnet.options.enclave_binary).unwrap();
    bytes.extend_from_slice(b"the host's own build");
    let doctored = dir.path().join("strongroom-enclave-doctored");
    std::fs::write(&doctored, bytes).unwrap();
    std::fs::set_permissions(&doctored, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = PlatformDaemon::new(devnet.platform.socket()).launch(&doctored).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "platform channel: {} is not an enclave this platform launches ({}): start strongroom-platform with \
             --enclave for it",
            doctored.display(),
            std::fs::canonicalize(&devnet.options.enclave_binary).unwrap().display()
        )
    );

    // Replacing the trusted binary's file does not help either: the platform runs the copy it
    // read at start (`platform::tests::a_missing_binary_is_named_and_a_launchable_one_is_what_was_measured`).
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_old_quote_cannot_renew_a_registration() {
    let (_dir, devnet) = devnet(false).await;
    let Attested { enclave, quote, signature, .. } = attest(&devnet, &devnet.options.enclave_binary).await;
    let operator = devnet.chain_as(operator_key()).await.unwrap();
    operator.register_enclave(&quote, signature.clone()).await.unwrap();
    let (_, expires) = devnet.governance.enclave(enclave).await.unwrap();

    // Kept until the chain no longer knows the block it names, the quote renews nothing.
    devnet.increase_time(3_600).await.unwrap();
    mine_blocks(&devnet.governance, 256).await.unwrap();
    let quoted = strongroom_types::quoted_block(&quote).number;
    let now = devnet.governance.block_number().await.unwrap() + 1;
    assert_eq!(
        refused(&devnet, &quote, signature).await,
        format!(
            "the quote names block {quoted} and the chain is at block {now}: a quote is good for 256 blocks after \
             the block it names (and only a past block's hash counts); ask the enclave for a fresh one"
        )
    );
    assert_eq!(devnet.governance.enclave(enclave).await.unwrap().1, expires, "the registration was not renewed");
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_quote_naming_a_block_hash_of_its_own_is_not_fresh() {
    let (_dir, devnet) = devnet(false).await;
    let vendor = vendor_platform(&devnet);
    let enclave = PrivateKeySigner::random().address();
    let recent = devnet.governance.recent_block().await.unwrap();
    // A made-up hash for a real block, and a block yet to come: a quote made in advance.
    let cases = [
        strongroom_types::RecentBlock { hash: alloy::primitives::B256::repeat_byte(0x77), ..recent },
        strongroom_types::RecentBlock { number: recent.number + 10, ..recent },
    ];
    for block in cases {
        let (quote, signature) =
            vendor.quote_for(devnet.measurement, strongroom_types::report_data_for(enclave, block));
        let message = refused(&devnet, &quote, signature).await;
        assert!(
            message.starts_with(&format!("the quote names block {} and the chain is at block", block.number)),
            "{message}"
        );
    }
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_simulator_key_cannot_pass_a_quote_off_as_hardware() {
    let (_dir, devnet) = devnet(false).await;
    let (mut quote, _) = vendor_quote(&devnet, PrivateKeySigner::random().address()).await;
    assert_eq!(quote.quoteType, QUOTE_TYPE_SIMULATED);
    quote.quoteType = 2;
    let signature = vendor_platform(&devnet).sign_quote(&quote);
    assert_eq!(
        refused(&devnet, &quote, signature).await,
        format!(
            "platform key {} is trusted for simulated quotes only, not for this hardware one",
            devnet.platform.key()
        )
    );
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_enclave_of_another_author_product_or_an_older_version_is_refused() {
    let (_dir, devnet) = devnet(false).await;
    let vendor = vendor_platform(&devnet);
    let identity = devnet.platform.info().identity;
    let (good, _) = vendor_quote(&devnet, PrivateKeySigner::random().address()).await;

    let refusal = |q: &Quote| {
        format!(
            "the enclave reports author {}, product {} and security version {}, which are not the author and product \
             governance trusts or are below its least version (see `enclaveIdentity`): upgrade the enclave or ask \
             governance",
            q.signer, q.productId, q.svn
        )
    };
    let other_author = Quote { signer: alloy::primitives::B256::repeat_byte(0xa0), ..good.clone() };
    assert_eq!(refused(&devnet, &other_author, vendor.sign_quote(&other_author)).await, refusal(&other_author));
    let other_product = Quote { productId: identity.product_id + 1, ..good.clone() };
    assert_eq!(refused(&devnet, &other_product, vendor.sign_quote(&other_product)).await, refusal(&other_product));
    // After a fix ships as the next security version, the builds before it no longer register.
    devnet.governance.set_enclave_identity(identity.signer, identity.product_id, identity.svn + 1).await.unwrap();
    assert_eq!(refused(&devnet, &good, vendor.sign_quote(&good)).await, refusal(&good));
    let fixed = Quote { svn: identity.svn + 1, ..good.clone() };
    let operator = devnet.chain_as(operator_key()).await.unwrap();
    operator.register_enclave(&fixed, vendor.sign_quote(&fixed)).await.unwrap();
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_sealed_identity_opens_only_in_its_own_enclave() {
    let (dir, devnet) = devnet(false).await;
    let sealed = dir.path().join("worker").join("enclave-identity.sealed");

    // A restart takes the identity back from its seal and keeps the registration.
    let first = devnet.start_worker().await.unwrap();
    let enclave = first.enclave();
    first.shutdown().await;
    let bytes = std::fs::read(&sealed).unwrap();
    assert!(!bytes.is_empty());
    let (_, expires) = devnet.governance.enclave(enclave).await.unwrap();
    let again = devnet.start_worker().await.unwrap();
    assert_eq!(again.enclave(), enclave, "the same identity after a restart");
    assert_eq!(devnet.governance.enclave(enclave).await.unwrap().1, expires, "no new registration was needed");
    again.shutdown().await;

    // The host edits the sealed file: it does not open, and the enclave makes a new identity.
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(&sealed, &tampered).unwrap();
    let fresh = devnet.start_worker().await.unwrap();
    let renewed = fresh.enclave();
    assert_ne!(renewed, enclave, "a tampered seal gives the host no identity of its choosing");
    assert!(devnet.governance.is_enclave_active(renewed).await.unwrap(), "the new identity registered");
    fresh.shutdown().await;

    // Another binary could not open it either: its sealing key differs
    // (`platform::tests::sealing_keys_are_bound_to_the_measurement`), and the platform launches none.
    devnet.shutdown().await;
}

/// The attacker as the pool's own host: a real enclave launched by the platform daemon and
/// registered for the devnet's pool, driven by hand instead of by the worker.
struct PlayedHost {
    channel: UnixStream,
    enclave: Address,
    operator: strongroom_chain::Chain,
}

impl PlayedHost {
    async fn start(devnet: &Devnet) -> Self {
        let Attested { channel, enclave, quote, signature } = attest(devnet, &devnet.options.enclave_binary).await;
        let operator = devnet.chain_as(operator_key()).await.unwrap();
        operator.register_enclave(&quote, signature).await.unwrap();
        Self { channel, enclave, operator }
    }

    fn call(&mut self, request: &HostRequest, attached: &[Vec<u8>]) -> EnclaveReply {
        write_frame(&mut self.channel, request).unwrap();
        for frame in attached {
            strongroom_types::protocol::write_raw_frame(&mut self.channel, frame).unwrap();
        }
        read_frame(&mut self.channel).unwrap().expect("the enclave answers")
    }

    fn authorization(&self, task: alloy::primitives::U256) -> alloy::primitives::Bytes {
        sign_typed(
            operator_key().credential(),
            &strongroom_types::Authorization { taskId: task, enclave: self.enclave },
            &self.operator.domain(),
        )
    }

    /// Asks the enclave for `task`'s keys over `manifest` and `policy` as relayed, and has the
    /// key service release them; returns the sealed release.
    async fn release(
        &mut self,
        devnet: &Devnet,
        task: &strongroom_chain::Task,
        manifest: &[u8],
        policy: &str,
    ) -> strongroom_types::ReleaseResponse {
        let request = HostRequest::RequestKeys {
            task_id: task.id,
            spec: task.spec.clone(),
            manifest: manifest.to_vec().into(),
            policy: policy.into(),
        };
        let EnclaveReply::KeyRequest { task_key, columns, signature, .. } = self.call(&request, &[]) else {
            panic!("expected a key request");
        };
        let release = strongroom_types::ReleaseRequest {
            task_id: task.id,
            enclave: self.enclave,
            task_key,
            columns,
            enclave_signature: signature,
            authorization: self.authorization(task.id),
        };
        strongroom_client::KmsClient::new(&devnet.kms.url()).unwrap().release(&release).await.unwrap()
    }

    /// Runs the task and settles it on chain with what the enclave signed; returns the outcome.
    fn run(
        &mut self,
        task: &strongroom_chain::Task,
        sealed_release: strongroom_types::SealedBox,
        objects: &[Vec<u8>],
    ) -> EnclaveReply {
        let request = HostRequest::RunTask {
            task_id: task.id,
            sealed_release,
            key_service: strongroom_types::X25519PublicKey(task.params.kmsKey.0),
            objects: objects.len() as u32,
            spec: task.spec.clone(),
            location: location(task),
        };
        self.call(&request, objects)
    }
}

/// What an honest host relays for a task of a published dataset: its stored manifest, its
/// objects, the policy it was rented under.
async fn inputs(
    devnet: &Devnet,
    published: &strongroom_client::owner::Published,
    task: &strongroom_chain::Task,
) -> (Vec<u8>, Vec<Vec<u8>>, String) {
    let read = |url: &strongroom_types::StorageUrl| {
        std::fs::read(url::Url::parse(url.as_str()).unwrap().to_file_path().unwrap()).unwrap()
    };
    let manifest = read(&published.uri);
    let objects = published.object_urls().iter().map(read).collect();
    let kms = strongroom_client::KmsClient::new(&devnet.kms.url()).unwrap();
    (manifest, objects, kms.policy(task.params.policyHash).await.unwrap())
}

fn location(task: &strongroom_chain::Task) -> String {
    format!("file:///played-host/task-{}.sealed", task.id)
}

async fn balances(devnet: &Devnet) -> [alloy::primitives::U256; 3] {
    let chain = &devnet.governance;
    let [analyst, owner, operator] =
        [strongroom_devnet::analyst_key(), strongroom_devnet::owner_key(), operator_key()].map(|k| k.address());
    [
        chain.balance_of(analyst).await.unwrap(),
        chain.balance_of(owner).await.unwrap(),
        chain.balance_of(operator).await.unwrap(),
    ]
}

const SQL: &str = "SELECT plan, COUNT(*) AS n FROM dataset GROUP BY plan";

/// A host that relays what the chain does not pin after the keys were released gets no signed
/// result (a signed host fault would refund the task, and a host that kept a real result from an
/// earlier run could trade it for one): the task ends with the key service's receipt, the owner
/// is paid and the pool's locked stake goes to the analyst.
async fn assert_no_result_and_slashed(
    devnet: &Devnet,
    published: &strongroom_client::owner::Published,
    task: &strongroom_chain::Task,
    reply: EnclaveReply,
    receipt: &strongroom_types::ReleaseReceipt,
    failure: &str,
) {
    let EnclaveReply::Error { message } = reply else { panic!("no result, not {reply:?}") };
    assert!(message.starts_with(&format!("no result is signed for task {}: {failure}", task.id)), "{message}");
    devnet.increase_time(devnet.options.max_task_duration.as_secs() + 1).await.unwrap();
    let analyst = devnet.chain_as(strongroom_devnet::analyst_key()).await.unwrap();
    analyst.refund_released(task, receipt).await.unwrap();
    let stake = U256::from(task.params.stake);
    assert_eq!(balances(devnet).await, [devnet.pool_offer.price + stake, published.offer.price, U256::ZERO]);
    let pool = devnet.governance.pool(devnet.pool).await.unwrap().unwrap();
    assert_eq!((pool.stake, pool.locked), (devnet.options.pool_stake - stake, U256::ZERO), "slashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_host_relaying_a_looser_policy_gets_no_result_signed_and_is_slashed() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let rental = rent(&devnet, &published, SQL, &RentOptions::default()).await.unwrap();
    let task = &rental.task;
    let mut host = PlayedHost::start(&devnet).await;
    let (manifest, objects, policy) = inputs(&devnet, &published, task).await;

    // The host plans the job under a policy of its own and relays it to run.
    let looser = format!("{policy}\n# relaxed by the host\n");
    let release = host.release(&devnet, task, &manifest, &looser).await;
    let reply = host.run(task, release.sealed_release, &objects);
    let failure = "the licence policy relayed by the worker hashes to";
    assert_no_result_and_slashed(&devnet, &published, task, reply, &release.receipt, failure).await;
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_task_runs_once_in_an_enclave() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let rental = rent(&devnet, &published, SQL, &RentOptions::default()).await.unwrap();
    let task = &rental.task;
    let mut host = PlayedHost::start(&devnet).await;
    let (manifest, objects, policy) = inputs(&devnet, &published, task).await;
    let release = host.release(&devnet, task, &manifest, &policy).await;
    let reply = host.run(task, release.sealed_release.clone(), &objects);
    assert!(
        matches!(reply, EnclaveReply::TaskResult { outcome: strongroom_types::Outcome::Completed, .. }),
        "{reply:?}"
    );

    // Running it again, with the same release or a new key request, gets nothing.
    let again = host.run(task, release.sealed_release, &objects);
    assert!(
        matches!(&again, EnclaveReply::Error { message } if message == &format!("no key request was made for task {}: send RequestKeys first", task.id)),
        "{again:?}"
    );
    let request = HostRequest::RequestKeys {
        task_id: task.id,
        spec: task.spec.clone(),
        manifest: manifest.clone().into(),
        policy: policy.clone(),
    };
    let again = host.call(&request, &[]);
    assert!(
        matches!(&again, EnclaveReply::Error { message } if message == &format!("task {} already ran in this enclave: a task runs once", task.id)),
        "{again:?}"
    );
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_the_result_of_one_task_cannot_settle_another() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let first = rent(&devnet, &published, SQL, &RentOptions::default()).await.unwrap().task;
    let second = rent(&devnet, &published, SQL, &RentOptions::default()).await.unwrap().task;
    let mut host = PlayedHost::start(&devnet).await;
    let (manifest, objects, policy) = inputs(&devnet, &published, &first).await;
    let release = host.release(&devnet, &first, &manifest, &policy).await;
    let EnclaveReply::TaskResult { digest, outcome, signature, .. } =
        host.run(&first, release.sealed_release, &objects)
    else {
        panic!("expected a result");
    };
    // The enclave signed the first task's id: over the second, its signature recovers a stranger.
    let err = host
        .operator
        .submit_result(&second, digest, &location(&first), host.authorization(second.id), signature, outcome)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("is not registered, has expired, or its measurement is no longer trusted"), "{err}");
    assert!(!err.contains(&host.enclave.to_string()), "{err}");
    assert_eq!(devnet.governance.task_status(second.id).await.unwrap(), strongroom_chain::TaskStatus::Active);
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_receipt_for_one_task_slashes_nobody_for_another() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let first = rent(&devnet, &published, SQL, &RentOptions::default()).await.unwrap().task;
    let second = rent(&devnet, &published, SQL, &RentOptions::default()).await.unwrap().task;
    let mut host = PlayedHost::start(&devnet).await;
    let (manifest, _, policy) = inputs(&devnet, &published, &first).await;
    let receipt = host.release(&devnet, &first, &manifest, &policy).await.receipt;

    devnet.increase_time(devnet.options.max_task_duration.as_secs() + 1).await.unwrap();
    let analyst = devnet.chain_as(strongroom_devnet::analyst_key()).await.unwrap();
    let err = analyst.refund_released(&second, &receipt).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the receipt is not the task's key service's word that it released task {}'s keys to enclave {}",
            second.id, host.enclave
        )
    );
    // Nor can the analyst take the second task's refund early, before its key service could speak.
    let err = analyst.refund(&second).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("task {} can be refunded without a key service's receipt only after", second.id)),
        "{err}"
    );
    // The first task's own receipt settles the first task only.
    analyst.refund_released(&first, &receipt).await.unwrap();
    let pool = devnet.governance.pool(devnet.pool).await.unwrap().unwrap();
    assert_eq!(pool.stake, devnet.options.pool_stake - U256::from(first.params.stake));
    assert_eq!(devnet.governance.task_status(second.id).await.unwrap(), strongroom_chain::TaskStatus::Active);
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_host_relaying_a_flipped_object_gets_no_result_signed_and_is_slashed() {
    let (_dir, devnet) = devnet(false).await;
    let published = publish_sample(&devnet).await;
    let rental = rent(&devnet, &published, SQL, &RentOptions::default()).await.unwrap();
    let task = &rental.task;
    let mut host = PlayedHost::start(&devnet).await;
    let (manifest, mut objects, policy) = inputs(&devnet, &published, task).await;
    let release = host.release(&devnet, task, &manifest, &policy).await;

    // The keys are released; the host then relays an object of its own making.
    let middle = objects[0].len() / 2;
    objects[0][middle] ^= 1;
    let reply = host.run(task, release.sealed_release, &objects);
    let failure = "dataset object part-00000.parquet has sha256";
    assert_no_result_and_slashed(&devnet, &published, task, reply, &release.receipt, failure).await;
    devnet.shutdown().await;
}
