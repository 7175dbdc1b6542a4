use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use strongroom_types::StorageUrl;

use super::GlobalArgs;
use strongroom_dataplane::Layout;

use crate::units::{Amount, Epsilon};
use strongroom_client::owner::{self, OfferTerms, PublishRequest};

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Encrypt a dataset column by column, store it, deposit its keys, register it, offer it.
    Publish(PublishArgs),
    /// Deposit a dataset's keys again from your local backup, e.g. to a new key service.
    Redeposit(RedepositArgs),
    /// Offer one of your registered datasets under new terms (e.g. after an offer ran out).
    Offer(OfferArgs),
    /// Re-encrypt a dataset under fresh keys as a new data version, deposit them, register it.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    pub dataset: strongroom_types::DatasetId,
    /// Most rows per object of the new version.
    #[arg(long, default_value_t = Layout::default().object_rows)]
    pub rows_per_object: usize,
}

impl RotateArgs {
    async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let owner = global.owner().await?;
        let spinner = spinner(format!("re-encrypting dataset {} under fresh keys", self.dataset));
        let layout = Layout::with_object_rows(self.rows_per_object);
        let rotated = owner.rotate(self.dataset, layout, Some(spinner.clone())).await;
        spinner.finish_and_clear();
        let rotated = rotated?;
        println!(
            "dataset {} now serves data version {} ({} rows in {}, new keys at {})",
            rotated.dataset.id,
            rotated.manifest.data_version,
            rotated.manifest.rows,
            objects(rotated.manifest.objects.len()),
            rotated.dataset.kms_url
        );
        println!(
            "  manifest {} (digest {}, registered on chain)",
            rotated.dataset.uri, rotated.dataset.manifest_digest
        );
        Ok(())
    }
}

fn objects(n: usize) -> String {
    if n == 1 { "1 object".into() } else { format!("{n} objects") }
}

/// A spinner on stderr for long work (hidden when stderr is not a terminal).
fn spinner(message: String) -> indicatif::ProgressBar {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    spinner
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
        let dataset = global.owner().await?.redeposit(self.dataset, &self.kms_url).await?;
        println!(
            "dataset {} (registry version {}) now has its keys at {}",
            dataset.id, dataset.version, dataset.kms_url
        );
        Ok(())
    }
}

/// The terms of a dataset offer.
#[derive(Debug, Args)]
pub struct TermsArgs {
    /// Price per task, with its unit: e.g. 0.01ether, 10gwei.
    #[arg(long)]
    pub price: Amount,
    /// How long the offer stays valid, in days.
    #[arg(long, default_value_t = 30)]
    pub valid_days: u64,
    /// How many tasks the offer may be used for.
    #[arg(long, default_value_t = 1000)]
    pub volume: u64,
    /// Only these analysts may rent (repeat the flag; a Merkle root goes on chain).
    #[arg(long = "requester")]
    pub requesters: Vec<alloy::primitives::Address>,
    /// Most epsilon one task may reserve.
    #[arg(long, default_value = "1")]
    pub max_epsilon: Epsilon,
}

impl TermsArgs {
    fn terms(self) -> OfferTerms {
        OfferTerms {
            volume: self.volume,
            requesters: self.requesters,
            max_epsilon: self.max_epsilon.0,
            ..OfferTerms::sql(self.price.0, Duration::from_secs(self.valid_days * 86_400))
        }
    }
}

#[derive(Debug, Args)]
pub struct OfferArgs {
    pub dataset: strongroom_types::DatasetId,
    #[command(flatten)]
    pub terms: TermsArgs,
}

impl OfferArgs {
    async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let offer = global.owner().await?.offer(self.dataset, &self.terms.terms(), global.market_url()?).await?;
        if global.json {
            println!("{}", serde_json::json!({ "dataset": self.dataset, "offer": offer }));
        } else {
            println!(
                "dataset {} offered at {} wei per task, for {} tasks until unix time {}",
                self.dataset, offer.price, offer.volume, offer.validUntil
            );
        }
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
    #[command(flatten)]
    pub terms: TermsArgs,
    /// Total epsilon each analyst may spend on this dataset, e.g. 10.
    #[arg(long, default_value = "10")]
    pub privacy_budget: Epsilon,
    /// Key service that will hold the keys.
    #[arg(long, env = "STRONGROOM_KMS_URL")]
    pub kms_url: String,
    /// Storage URL for the encrypted objects; defaults to `<data-dir>/objects`.
    #[arg(long, env = "STRONGROOM_STORAGE_URL")]
    pub storage_url: Option<StorageUrl>,
    /// Most rows per encrypted object; larger inputs are split into several.
    #[arg(long, default_value_t = Layout::default().object_rows)]
    pub rows_per_object: usize,
}

impl DatasetCommand {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let args = match self {
            Self::Publish(args) => args,
            Self::Redeposit(args) => return args.run(global).await,
            Self::Offer(args) => return args.run(global).await,
            Self::Rotate(args) => return args.run(global).await,
        };
        let owner = global.owner().await?;
        let storage_url = match args.storage_url {
            Some(url) => url,
            None => StorageUrl::from_path(&global.data_dir.join("objects"))?,
        };
        let terms = args.terms.terms();
        let spinner = spinner(format!("reading, encrypting and publishing {}", args.input.display()));
        let request = PublishRequest::new(
            &args.input,
            &args.policy,
            terms.price,
            &storage_url,
            &args.kms_url,
            global.market_url()?,
        )
        .with_terms(terms)
        .with_privacy_budget(args.privacy_budget.0)
        .with_schema(args.schema.as_deref().map(owner::parse_schema).transpose()?)
        .with_layout(Layout::with_object_rows(args.rows_per_object))
        .with_progress(spinner.clone());
        let started = std::time::Instant::now();
        let published = owner.publish(&request).await.context("publishing the dataset");
        spinner.finish_and_clear();
        let published = published?;
        let secs = started.elapsed().as_secs_f64();
        let bytes = published.manifest.bytes();
        eprintln!(
            "published {} rows, {bytes} bytes encrypted in {}, in {secs:.2} s ({:.0} rows/s, {:.1} MB/s)",
            published.manifest.rows,
            objects(published.manifest.objects.len()),
            published.manifest.rows as f64 / secs,
            bytes as f64 / secs / 1e6
        );
        if global.json {
            println!(
                "{}",
                serde_json::json!({
                    "dataset": published.dataset,
                    "uri": published.uri,
                    "rows": published.manifest.rows,
                    "columns": published.manifest.columns,
                    "manifest_digest": published.manifest_digest,
                    "data_version": published.manifest.data_version,
                    "objects": published.manifest.objects,
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
            println!("  manifest {} (digest {}, registered on chain)", published.uri, published.manifest_digest);
            for (object, url) in published.manifest.objects.iter().zip(published.object_urls()) {
                println!("  object {url} ({} rows, sha256 {})", object.rows, object.sha256);
            }
            println!("  offered at {} wei per task", published.offer.price);
        }
        Ok(())
    }
}
