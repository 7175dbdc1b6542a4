use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::GlobalArgs;
use strongroom_devnet::{Devnet, DevnetOptions};

#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// The enclave program; defaults to `strongroom-enclave` beside this binary.
    #[arg(long, env = "STRONGROOM_ENCLAVE")]
    pub enclave: Option<PathBuf>,
}

impl DevnetArgs {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let enclave = self
            .enclave
            .or_else(strongroom_worker::locate_enclave_binary)
            .context("cannot find the enclave program `strongroom-enclave`: pass --enclave")?;
        let data_dir = global.data_dir.join("devnet");
        let devnet = Devnet::start(DevnetOptions::new(&data_dir, enclave)).await?;
        let env = format!(
            "export STRONGROOM_RPC_URL={}\nexport STRONGROOM_CONTRACT={}\nexport STRONGROOM_KMS_URL={}\nexport STRONGROOM_MARKET_URL={}\nexport STRONGROOM_POOL={}\nexport STRONGROOM_STORAGE_URL={}\n",
            devnet.rpc_url(),
            devnet.governance.address(),
            devnet.kms.url(),
            devnet.market.url(),
            devnet.pool,
            devnet.objects_url,
        );
        let env_file = data_dir.join("devnet.env");
        std::fs::File::create(&env_file)?.write_all(env.as_bytes())?;
        print!("{env}");
        eprintln!(
            "devnet running (SIMULATED TEE); `source {}` in another shell. Dev keys: anvil accounts 1 (owner), 3 (analyst). Ctrl-C stops.",
            env_file.display()
        );
        super::until_interrupted().await?;
        devnet.shutdown().await;
        Ok(())
    }
}
