//! Amounts as people type them: `0.01ether`, `10gwei`, `1000wei`, or a bare number of ether.

use alloy::primitives::U256;
use alloy::primitives::utils::parse_units;

pub fn parse_amount(text: &str) -> anyhow::Result<U256> {
    let t = text.trim().to_ascii_lowercase();
    let (number, unit) = if let Some(n) = t.strip_suffix("ether").or_else(|| t.strip_suffix("eth")) {
        (n, "ether")
    } else if let Some(n) = t.strip_suffix("gwei") {
        (n, "gwei")
    } else if let Some(n) = t.strip_suffix("wei") {
        (n, "wei")
    } else {
        (t.as_str(), "ether")
    };
    let value = parse_units(number.trim(), unit)
        .map_err(|e| anyhow::anyhow!("`{text}` is not an amount ({e}); write e.g. 0.01ether, 10gwei or 1000wei"))?;
    Ok(value.into())
}

/// Epsilon as people write it (`0.1`, `1`, `2.5`) in the contract's fixed point (micro-units).
pub fn parse_epsilon(text: &str) -> anyhow::Result<u64> {
    let value = parse_units(text.trim(), 6)
        .map_err(|e| anyhow::anyhow!("`{text}` is not an epsilon ({e}); write e.g. 0.1 or 1"))?;
    let value: U256 = value.into();
    u64::try_from(value).map_err(|_| anyhow::anyhow!("epsilon `{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("0.01ether").unwrap(), U256::from(10_000_000_000_000_000u64));
        assert_eq!(parse_amount("10gwei").unwrap(), U256::from(10_000_000_000u64));
        assert_eq!(parse_amount("7wei").unwrap(), U256::from(7));
        assert_eq!(parse_amount("1").unwrap(), U256::from(1_000_000_000_000_000_000u64));
        assert_eq!(parse_epsilon("0.1").unwrap(), 100_000);
        assert_eq!(parse_epsilon("2").unwrap(), 2_000_000);
        assert!(parse_epsilon("-1").is_err());
        let err = parse_amount("lots").unwrap_err().to_string();
        assert!(err.starts_with("`lots` is not an amount"), "{err}");
    }
}
