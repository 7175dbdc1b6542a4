//! Money held by the contract for an account: see it, withdraw it, reclaim an overdue task.

use alloy::primitives::Address;
use alloy::primitives::utils::format_ether;
use anyhow::Context;
use clap::Args;
use strongroom_client::analyst::Overdue;
use strongroom_types::TaskId;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct BalanceArgs {
    /// Address to look at; defaults to the acting account's.
    pub address: Option<Address>,
}

impl BalanceArgs {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let chain = global.chain().await?;
        let account = match self.address {
            Some(a) => a,
            None => global.signer()?.address(),
        };
        let balance = chain.balance_of(account).await?;
        if global.json {
            println!("{}", serde_json::json!({ "account": account, "withdrawable_wei": balance.to_string() }));
        } else {
            println!("{account}: {} ETH withdrawable", format_ether(balance));
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct WithdrawArgs {}

impl WithdrawArgs {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let chain = global.chain().await?;
        let account = global.signer()?.address();
        let amount = chain.balance_of(account).await?;
        let tx = chain.withdraw().await?;
        println!("withdrew {} ETH to {account} (tx {}, gas {})", format_ether(amount), tx.hash, tx.gas_used);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct RefundArgs {
    /// A task past its deadline without a result.
    pub task: TaskId,
}

impl RefundArgs {
    pub async fn run(self, global: &GlobalArgs) -> anyhow::Result<()> {
        let chain = global.chain().await?;
        let task = chain.task(self.task).await?.with_context(|| format!("task {} does not exist", self.task))?;
        let analyst = task.params.analyst;
        match strongroom_client::analyst::settle_overdue(&chain, &task).await? {
            Overdue::Abandoned { tx, receipt, credited } => println!(
                "task {} abandoned: its key service released the keys to enclave {} and no result came; the owners are paid and {} ETH (the pool price and the pool's slashed stake) credited to {analyst} (tx {}); `strongroom withdraw` collects it",
                self.task,
                receipt.enclave,
                format_ether(credited),
                tx.hash
            ),
            Overdue::Refunded { tx, credited } => println!(
                "task {} refunded: no keys were released; {} ETH (every price) credited to {analyst} (tx {}); `strongroom withdraw` collects it",
                self.task,
                format_ether(credited),
                tx.hash
            ),
        }
        Ok(())
    }
}
