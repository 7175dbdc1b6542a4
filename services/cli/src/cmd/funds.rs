//! Money held by the contract for an account: see it, withdraw it, reclaim an overdue task.

use alloy::primitives::utils::format_ether;
use alloy::primitives::{Address, U256};
use anyhow::Context;
use clap::Args;
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
        let tx = chain.refund(&task).await?;
        let p = &task.params;
        println!(
            "task {} refunded: {} ETH (prices and the pool's slashed stake) credited to {} (tx {}); `strongroom withdraw` collects it",
            self.task,
            format_ether(
                U256::from(p.datasetPrice) + U256::from(p.poolPrice) + U256::from(p.appPrice) + U256::from(p.stake)
            ),
            p.analyst,
            tx.hash
        );
        Ok(())
    }
}
