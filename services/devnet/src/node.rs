//! A local anvil chain started by the project itself: the embedded default chain.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strongroom_chain::Chain;

use crate::{DevnetError, Result};

/// anvil's well-known development accounts (mnemonic "test test … junk"), public test keys
/// with no value: governance, data owner, pool operator, analyst, spare.
pub const DEV_KEYS: [&str; 5] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
];

/// Moves the chain's clock forward and mines a block (anvil only): deadlines, refunds, expiry.
pub async fn increase_time(chain: &Chain, seconds: u64) -> Result<()> {
    use alloy::providers::Provider;
    let provider = chain.contract().provider();
    let rpc = |e: alloy::transports::TransportError| DevnetError::Node(format!("time travel on {}: {e}", chain.url()));
    let _: serde_json::Value = provider.raw_request("evm_increaseTime".into(), (seconds,)).await.map_err(rpc)?;
    let _: serde_json::Value = provider.raw_request("evm_mine".into(), ()).await.map_err(rpc)?;
    Ok(())
}

/// Mines `blocks` empty blocks (anvil only): quotes age by blocks.
pub async fn mine_blocks(chain: &Chain, blocks: u64) -> Result<()> {
    use alloy::providers::Provider;
    let provider = chain.contract().provider();
    let rpc = |e: alloy::transports::TransportError| DevnetError::Node(format!("mining on {}: {e}", chain.url()));
    let _: serde_json::Value = provider.raw_request("anvil_mine".into(), (blocks,)).await.map_err(rpc)?;
    Ok(())
}

/// Where `make contracts` installs anvil, relative to a checkout's root.
const CHECKOUT_ANVIL: &str = "contracts/node_modules/.bin/anvil";

/// A running anvil on a loopback port the OS picked. Dropping it stops the chain.
#[derive(Debug)]
pub struct DevNode {
    child: Child,
    url: String,
    binary: PathBuf,
    port: u16,
    /// Where the chain's state is dumped every second and loaded from at a start, if anywhere.
    state: Option<PathBuf>,
    /// anvil's home: it moves old blocks' states to files under `~/.foundry/anvil/tmp`, which
    /// it removes only when it exits gracefully. A node killed (as `Drop` does) would leave them
    /// in the user's home, gigabytes over a test suite; here they go with the node.
    home: tempfile::TempDir,
}

impl DevNode {
    /// The anvil to run: `STRONGROOM_ANVIL` if set, else `anvil` on `PATH`, else the one
    /// `make contracts` installs in the checkout the command runs from. Looked up when called,
    /// never fixed at build time, so a copied or installed binary does not reach back into the
    /// directory it was built in.
    pub fn default_binary() -> PathBuf {
        if let Some(path) = std::env::var_os("STRONGROOM_ANVIL") {
            return PathBuf::from(path);
        }
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|dir| dir.join("anvil"))
            .find(|candidate| candidate.is_file());
        on_path.unwrap_or_else(|| PathBuf::from(CHECKOUT_ANVIL))
    }

    /// Starts anvil with instant mining and waits until it listens.
    pub fn spawn(binary: &Path) -> Result<Self> {
        Self::spawn_with_state(binary, None)
    }

    /// Starts anvil as [`DevNode::spawn`] does; with `state`, from the chain kept in that file if
    /// it exists, dumping the chain there every second (and at exit), so that a node killed and
    /// started again ([`DevNode::restart`]) goes on from at most a second before.
    pub fn spawn_with_state(binary: &Path, state: Option<&Path>) -> Result<Self> {
        let home = tempfile::Builder::new()
            .prefix("strongroom-anvil-")
            .tempdir()
            .map_err(|e| DevnetError::Node(format!("cannot make a home directory for anvil: {e}")))?;
        let (child, url, port) = start(binary, 0, state, home.path())?;
        Ok(Self { child, url, binary: binary.to_owned(), port, state: state.map(Path::to_owned), home })
    }

    /// Kills the node with SIGKILL, as a crash would: nothing is dumped on the way out.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the node again on its port, from its dumped state if it keeps one.
    pub fn restart(&mut self) -> Result<()> {
        self.kill_9();
        let (child, url, _) = start(&self.binary, self.port, self.state.as_deref(), self.home.path())?;
        (self.child, self.url) = (child, url);
        Ok(())
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts anvil on `port` (0: one the OS picks), with `home` as its home directory, and waits
/// until it listens; returns the process, its URL and its port.
fn start(binary: &Path, port: u16, state: Option<&Path>, home: &Path) -> Result<(Child, String, u16)> {
    if !binary.exists() {
        return Err(DevnetError::Node(format!(
            "anvil not found at {}: set STRONGROOM_ANVIL to its path, put it on PATH, or run from a checkout after `make contracts`",
            binary.display()
        )));
    }
    let mut command = Command::new(binary);
    crate::dies_with_devnet(&mut command);
    command.args(["--port", &port.to_string(), "--host", "127.0.0.1", "--accounts", "5", "--balance", "10000"]);
    if let Some(state) = state {
        command.arg("--state").arg(state).args(["--state-interval", "1", "--preserve-historical-states"]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("HOME", home)
        // The chain needs none of the caller's secrets.
        .env_remove("STRONGROOM_KEY")
        .env_remove("STRONGROOM_KEYSTORE_PASSWORD")
        .env_remove("STRONGROOM_BACKUP_PASSPHRASE")
        .spawn()
        .map_err(|e| DevnetError::Node(format!("cannot start {}: {e}", binary.display())))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    // anvil announces its address on stdout; keep draining afterwards so it never blocks.
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if !sent && let Some(addr) = line.strip_prefix("Listening on ") {
                let _ = tx.send(addr.trim().to_owned());
                sent = true;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(addr) => break addr,
            Err(_) if Instant::now() < deadline => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(DevnetError::Node(format!("anvil exited with {status} before listening")));
                }
            }
            Err(_) => {
                let _ = child.kill();
                return Err(DevnetError::Node("anvil did not start listening within 30 s".into()));
            }
        }
    };
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| DevnetError::Node(format!("anvil listens on {addr}, which names no port")))?;
    Ok((child, format!("http://{addr}"), port))
}
