use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use strongroom_worker::storage;

use super::GlobalArgs;
use crate::owner::{self, OfferTerms, PublishRequest};
use crate::units::{parse_amount, parse_epsilon};

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Encrypt a dataset column by column, store it, deposit its keys, register it, offer it.
    Publish(PublishArgs),
    /// Deposit a dataset's keys again from your local backup, e.g. to a new key service.
    Redeposit(RedepositArgs),
}

#[derive(Debug, Args)]
pub struct RedepositArgs {
    pub dataset: strongroom_types::DatasetId,
    /// The key service to deposit to; if it is not the registered one, the dataset is updated to use it.
    #[arg(long, env = "STRONGROOM_KMS_URL")]
    pub kms_url: String,
}

impl RedepositArgs {
    async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let chain = global.chain().await?;
        let backup = crate::backup::KeyBackup::new(&global.data_dir.join("owner"));
        let dataset = owner::redeposit(&chain, &global.signer()?, &backup, self.dataset, &self.kms_url).await?;
        println!("dataset {} (version {}) now has its keys at {}", dataset.id, dataset.version, dataset.kms_url);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// CSV, JSON lines, Parquet or Arrow IPC file, or a directory of files of one of them.
    pub input: PathBuf,
    /// The input's schema, e.g. `id:Int64,email:Utf8` (default: inferred from the data).
    #[arg(long)]
    pub schema: Option<String>,
    /// Licence policy file (its hash is registered on chain).
    #[arg(long)]
    pub policy: PathBuf,
    /// Price per task, e.g. 0.01ether.
    #[arg(long)]
    pub price: String,
    /// How long the offer stays valid, in days.
    #[arg(long, default_value_t = 30)]
    pub valid_days: u64,
    /// How many tasks the offer may be used for.
    #[arg(long, default_value_t = 1000)]
    pub volume: u64,
    /// Only these analysts may rent (repeat the flag; a Merkle root goes on chain).
    #[arg(long = "requester")]
    pub requesters: Vec<alloy::primitives::Address>,
    /// Total epsilon each analyst may spend on this dataset, e.g. 10.
    #[arg(long, default_value = "10")]
    pub privacy_budget: String,
    /// Most epsilon one task may reserve.
    #[arg(long, default_value = "1")]
    pub max_epsilon: String,
    /// Key service that will hold the keys.
    #[arg(long, env = "STRONGROOM_KMS_URL")]
    pub kms_url: String,
    /// Storage URL for the encrypted objects; defaults to `<data-dir>/objects`.
    #[arg(long, env = "STRONGROOM_STORAGE_URL")]
    pub storage_url: Option<String>,
}

impl DatasetCommand {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let args = match self {
            Self::Publish(args) => args,
            Self::Redeposit(args) => return args.run(global).await,
        };
        let signer = global.signer()?;
        let chain = global.chain().await?;
        let storage_url = match args.storage_url {
            Some(url) => url,
            None => storage::file_url(&global.data_dir.join("objects"))?,
        };
        let request = PublishRequest {
            input: args.input,
            policy: args.policy,
            terms: OfferTerms {
                volume: args.volume,
                requesters: args.requesters,
                max_epsilon: parse_epsilon(&args.max_epsilon)?,
                ..OfferTerms::sql(parse_amount(&args.price)?, Duration::from_secs(args.valid_days * 86_400))
            },
            privacy_budget: parse_epsilon(&args.privacy_budget)?,
            storage_url,
            kms_url: args.kms_url,
            market_url: global.market_url()?.into(),
            salt: None,
            backup_dir: global.data_dir.join("owner"),
            schema: args.schema.as_deref().map(owner::parse_schema).transpose()?,
        };
        // Long work shows a spinner on stderr (hidden when stderr is not a terminal).
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(format!("reading, encrypting and publishing {}", request.input.display()));
        spinner.enable_steady_tick(std::time::Duration::from_millis(100));
        let started = std::time::Instant::now();
        let published = owner::publish(&chain, &signer, &request).await.context("publishing the dataset");
        spinner.finish_and_clear();
        let published = published?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "published {} rows, {} bytes encrypted, in {secs:.2} s ({:.0} rows/s, {:.1} MB/s)",
            published.manifest.rows,
            published.manifest.ciphertext_bytes,
            published.manifest.rows as f64 / secs,
            published.manifest.ciphertext_bytes as f64 / secs / 1e6
        );
        if global.json {
            println!(
                "{}",
                serde_json::json!({
                    "dataset": published.dataset,
                    "uri": published.uri,
                    "rows": published.manifest.rows,
                    "columns": published.manifest.columns,
                    "manifest_sha256": published.checksum,
                    "object": published.object_uri,
                    "object_sha256": published.manifest.ciphertext_sha256,
                    "offer": published.offer,
                })
            );
        } else {
            println!("dataset {}", published.dataset);
            println!(
                "  rows {}, {} columns, each with its own key",
                published.manifest.rows,
                published.manifest.columns.len()
            );
            println!("  manifest {} (sha256 {}, registered on chain)", published.uri, published.checksum);
            println!("  object {} (sha256 {})", published.object_uri, published.manifest.ciphertext_sha256);
            println!("  offered at {} wei per task", published.offer.price);
        }
        Ok(())
    }
}
