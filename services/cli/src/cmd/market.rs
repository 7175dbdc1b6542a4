use clap::{Args, Subcommand};
use strongroom_market::MarketConfig;

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum MarketCommand {
    /// Serve the order book until interrupted.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7420")]
    pub listen: String,
}

impl MarketCommand {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let Self::Serve(args) = self;
        let config = MarketConfig {
            data_dir: global.data_dir.join("market"),
            rpc_url: global.rpc_url()?.into(),
            contract: global.contract()?,
        };
        let handle = strongroom_market::spawn(config, super::bind(&args.listen)?).await?;
        println!("market listening on {}", handle.url());
        super::until_interrupted().await?;
        handle.shutdown().await;
        Ok(())
    }
}
