use clap::{Args, Subcommand};
use strongroom_kms::KmsConfig;

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    /// Serve deposits and attested releases until interrupted.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7410")]
    pub listen: String,
    /// Blocks a task's rent must have on top before its keys are released (raise it on a chain
    /// that can reorganise).
    #[arg(long, default_value_t = 0)]
    pub confirmations: u64,
}

impl KmsCommand {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let Self::Serve(args) = self;
        let config = KmsConfig {
            data_dir: global.data_dir.join("kms"),
            rpc_url: global.rpc_url()?.into(),
            contract: global.contract()?,
            confirmations: args.confirmations,
            halt_after_binding: std::env::var_os("STRONGROOM_KMS_HALT_AFTER_BINDING").is_some_and(|v| v == "1"),
        };
        let handle = strongroom_kms::spawn(config, super::bind(&args.listen)?).await?;
        println!("key service listening on {} (public key {})", handle.url(), handle.info().public_key);
        super::until_interrupted().await?;
        handle.shutdown().await;
        Ok(())
    }
}
