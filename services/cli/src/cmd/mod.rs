//! Argument parsing: one file per subcommand, each with `Args::run`.

mod account;
mod dataset;
mod demo;
mod devnet;
mod funds;
mod kms;
mod market;
mod rent;
mod result;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use strongroom_client::KeyBackup;
use strongroom_client::owner::Owner;

/// Rent data without handing it over: encrypted datasets, attested enclaves, results paid on chain.
#[derive(Debug, Parser)]
#[command(name = "strongroom", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand understands; each can also come from the environment
/// (`strongroom devnet` writes them to `devnet.env`).
#[derive(Clone, Debug, Args)]
pub struct GlobalArgs {
    /// JSON-RPC endpoint of the chain.
    #[arg(long, global = true, env = "STRONGROOM_RPC_URL")]
    pub rpc_url: Option<String>,
    /// Address of the Strongroom contract.
    #[arg(long, global = true, env = "STRONGROOM_CONTRACT")]
    pub contract: Option<Address>,
    /// The account acting (owner, analyst or operator): an encrypted keystore of yours by name
    /// (`strongroom account new|import|list`). Private keys are never command-line values:
    /// otherwise give a keystore file, a key file, or the key in STRONGROOM_KEY.
    #[arg(long, global = true, env = "STRONGROOM_ACCOUNT")]
    pub account: Option<String>,
    /// An encrypted keystore file (the standard Ethereum JSON keystore `cast wallet` writes).
    #[arg(long, global = true, env = "STRONGROOM_KEYSTORE")]
    pub keystore: Option<PathBuf>,
    /// A file only you can read (mode 0600) holding the account's private key in hex.
    #[arg(long, global = true, env = "STRONGROOM_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// A file holding the keystore's password (else STRONGROOM_KEYSTORE_PASSWORD).
    #[arg(long, global = true, env = "STRONGROOM_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Market URL.
    #[arg(long, global = true, env = "STRONGROOM_MARKET_URL")]
    pub market_url: Option<String>,
    /// Local state (result keys of your rentals, service data).
    #[arg(long, global = true, env = "STRONGROOM_DATA_DIR", default_value = ".strongroom")]
    pub data_dir: PathBuf,
    /// Storage credentials, scoped by URL prefix (default: `<data-dir>/storage.toml` if present;
    /// `AWS_*` environment variables otherwise).
    #[arg(long, global = true, env = "STRONGROOM_STORAGE_CONFIG")]
    pub storage_config: Option<PathBuf>,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

impl GlobalArgs {
    pub fn rpc_url(&self) -> anyhow::Result<&str> {
        self.rpc_url
            .as_deref()
            .context("no chain given: pass --rpc-url or set STRONGROOM_RPC_URL (see `strongroom devnet`)")
    }

    pub fn contract(&self) -> anyhow::Result<Address> {
        self.contract.context("no contract given: pass --contract or set STRONGROOM_CONTRACT (see `strongroom devnet`)")
    }

    /// The acting account's key, from exactly one of: `--account`, `--keystore`, `--key-file`,
    /// or `STRONGROOM_KEY` (an environment variable, never a flag: flags show in process lists).
    pub fn signer(&self) -> anyhow::Result<PrivateKeySigner> {
        let from_env = std::env::var("STRONGROOM_KEY").ok().map(zeroize::Zeroizing::new);
        let given = [
            self.account.as_ref().map(|_| "--account"),
            self.keystore.as_ref().map(|_| "--keystore"),
            self.key_file.as_ref().map(|_| "--key-file"),
            from_env.as_ref().map(|_| "STRONGROOM_KEY"),
        ];
        let given: Vec<&str> = given.into_iter().flatten().collect();
        if given.len() > 1 {
            bail!("more than one account given ({}): use one", given.join(", "));
        }
        if let Some(name) = &self.account {
            return account::open_keystore(&account::keystore_path(&self.data_dir, name)?, self);
        }
        if let Some(path) = &self.keystore {
            return account::open_keystore(path, self);
        }
        if let Some(path) = &self.key_file {
            return account::read_key_file(path);
        }
        let key = from_env.context(
            "no account given: pass --account <name> (see `strongroom account new`), --keystore, --key-file, or set STRONGROOM_KEY",
        )?;
        key.trim().parse().map_err(|_| anyhow::anyhow!("STRONGROOM_KEY is not a secp256k1 private key in hex"))
    }

    /// The keystore password: from `--password-file`, else `STRONGROOM_KEYSTORE_PASSWORD`.
    pub fn keystore_password(&self, keystore: &std::path::Path) -> anyhow::Result<zeroize::Zeroizing<String>> {
        if let Some(path) = &self.password_file {
            account::check_private(path, "password file")?;
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the password file {}", path.display()))?,
            );
            return Ok(zeroize::Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned()));
        }
        std::env::var("STRONGROOM_KEYSTORE_PASSWORD").map(zeroize::Zeroizing::new).map_err(|_| {
            anyhow::anyhow!(
                "the keystore {} needs its password: set STRONGROOM_KEYSTORE_PASSWORD or pass --password-file",
                keystore.display()
            )
        })
    }

    pub fn market_url(&self) -> anyhow::Result<&str> {
        self.market_url.as_deref().context("no market given: pass --market-url or set STRONGROOM_MARKET_URL")
    }

    /// The owner's key backup under `<data-dir>/owner`: protected by the passphrase in
    /// `STRONGROOM_BACKUP_PASSPHRASE` when set (never a flag: flags show in process lists), by a
    /// key file otherwise.
    pub fn key_backup(&self) -> KeyBackup {
        let dir = self.data_dir.join("owner");
        match std::env::var("STRONGROOM_BACKUP_PASSPHRASE") {
            Ok(passphrase) => KeyBackup::with_passphrase(&dir, zeroize::Zeroizing::new(passphrase)),
            Err(_) => KeyBackup::new(&dir),
        }
    }

    /// The acting account as a data owner: its key backup and storage credentials.
    pub async fn owner(&self) -> anyhow::Result<Owner> {
        Ok(Owner::new(self.chain().await?, self.signer()?, self.key_backup(), self.storage()?)?)
    }

    /// Storage as this party's credentials reach it.
    pub fn storage(&self) -> anyhow::Result<strongroom_storage::Storage> {
        let path = self.storage_config.clone().unwrap_or_else(|| self.data_dir.join("storage.toml"));
        Ok(strongroom_storage::Storage::load(&path)?)
    }

    pub async fn chain(&self) -> anyhow::Result<strongroom_chain::Chain> {
        Ok(strongroom_chain::Chain::connect(self.rpc_url()?, self.contract()?, Some(self.signer()?)).await?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole flow on a fresh local stack and print the analyst's result.
    Demo(demo::DemoArgs),
    /// Run a long-lived local stack (anvil, contract, key service, market, worker).
    Devnet(devnet::DevnetArgs),
    /// Data owners: publish datasets.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Analysts: rent a dataset plus compute to run one SQL query.
    Rent(rent::RentArgs),
    /// Analysts: fetch, verify and decrypt results.
    #[command(subcommand)]
    Result(result::ResultCommand),
    /// Analysts: the privacy budget (epsilon) spent, reserved and left on a dataset.
    Budget(rent::BudgetArgs),
    /// Your accounts: encrypted keystores on this machine.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Show the ETH the contract holds for an account (earnings, refunds, change).
    Balance(funds::BalanceArgs),
    /// Withdraw everything the contract holds for your account.
    Withdraw(funds::WithdrawArgs),
    /// Refund a task that passed its deadline without a result.
    Refund(funds::RefundArgs),
    /// Worker operators: run the key-gated executor.
    #[command(subcommand)]
    Worker(worker::WorkerCommand),
    /// Run a key service.
    #[command(subcommand)]
    Kms(kms::KmsCommand),
    /// Run a market.
    #[command(subcommand)]
    Market(market::MarketCommand),
}

/// Runs a parsed command; errors are printed with their context chain.
pub fn run(cli: Cli) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let global = cli.global;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => args.run(&global).await,
            Command::Devnet(args) => args.run(&global).await,
            Command::Dataset(cmd) => cmd.run(&global).await,
            Command::Rent(args) => args.run(&global).await,
            Command::Result(cmd) => cmd.run(&global).await,
            Command::Budget(args) => args.run(&global).await,
            Command::Account(cmd) => cmd.run(&global),
            Command::Balance(args) => args.run(&global).await,
            Command::Withdraw(args) => args.run(&global).await,
            Command::Refund(args) => args.run(&global).await,
            Command::Worker(cmd) => cmd.run(&global).await,
            Command::Kms(cmd) => cmd.run(&global).await,
            Command::Market(cmd) => cmd.run(&global).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (results to stdout); `RUST_LOG` tunes them.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,strongroom=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Waits for Ctrl-C or SIGTERM (for the long-running commands), so that they stop their
/// children (anvil, the enclave) and flush their stores on the way out.
async fn until_interrupted() -> anyhow::Result<()> {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}

fn bind(listen: &str) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
