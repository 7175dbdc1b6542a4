//! Amounts and epsilons as people type them, parsed strictly: `0.01ether`, `10gwei`, `1000wei`;
//! `0.1` epsilon. A number without a unit is refused (is `1` one ether or one wei?), and so is
//! a value finer than its unit can hold, which would otherwise be rounded down in silence.

use std::str::FromStr;

use alloy::primitives::U256;
use alloy::primitives::utils::parse_units;

/// An amount of ETH, in wei. Parses from `<number><unit>`, the unit one of `ether` (or `eth`),
/// `gwei`, `wei`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount(pub U256);

impl FromStr for Amount {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        let (number, unit, decimals) = if let Some(n) = t.strip_suffix("ether").or_else(|| t.strip_suffix("eth")) {
            (n, "ether", 18)
        } else if let Some(n) = t.strip_suffix("gwei") {
            (n, "gwei", 9)
        } else if let Some(n) = t.strip_suffix("wei") {
            (n, "wei", 0)
        } else {
            return Err(format!("`{text}` has no unit: write e.g. {t}ether, {t}gwei or {t}wei"));
        };
        let number = number.trim();
        if number.starts_with('-') {
            return Err(format!("`{text}` is negative"));
        }
        check_resolution(number, decimals)
            .map_err(|_| format!("`{text}` is finer than one wei; use at most {decimals} decimals with {unit}"))?;
        let value = parse_units(number, unit)
            .map_err(|e| format!("`{text}` is not an amount ({e}); write e.g. 0.01ether, 10gwei or 1000wei"))?;
        Ok(Self(value.into()))
    }
}

/// Epsilon in the contract's fixed point: micro-units (6 decimals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epsilon(pub u64);

impl Epsilon {
    /// Decimals of the contract's fixed point.
    const DECIMALS: usize = 6;
}

impl FromStr for Epsilon {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let number = text.trim();
        if number.starts_with('-') {
            return Err(format!("epsilon `{text}` is negative"));
        }
        check_resolution(number, Epsilon::DECIMALS).map_err(|_| {
            format!("epsilon `{text}` is finer than the contract's resolution of 0.000001; round it to 6 decimals")
        })?;
        let value = parse_units(number, Epsilon::DECIMALS as u8)
            .map_err(|e| format!("`{text}` is not an epsilon ({e}); write e.g. 0.1 or 1"))?;
        let value: U256 = value.into();
        u64::try_from(value).map(Self).map_err(|_| format!("epsilon `{text}` is too large"))
    }
}

/// Refuses digits beyond `decimals` after the point, unless they are zeros.
fn check_resolution(number: &str, decimals: usize) -> Result<(), ()> {
    match number.split_once('.') {
        Some((_, fraction)) if fraction.len() > decimals && fraction[decimals..].bytes().any(|b| b != b'0') => Err(()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Result<U256, String> {
        text.parse::<Amount>().map(|a| a.0)
    }

    fn epsilon(text: &str) -> Result<u64, String> {
        text.parse::<Epsilon>().map(|e| e.0)
    }

    #[test]
    fn amounts_need_a_unit_and_fit_it() {
        assert_eq!(amount("0.01ether").unwrap(), U256::from(10_000_000_000_000_000u64));
        assert_eq!(amount("0.01 ETH").unwrap(), U256::from(10_000_000_000_000_000u64));
        assert_eq!(amount("10gwei").unwrap(), U256::from(10_000_000_000u64));
        assert_eq!(amount("7wei").unwrap(), U256::from(7));
        assert_eq!(amount("1.50wei").unwrap_err(), "`1.50wei` is finer than one wei; use at most 0 decimals with wei");
        assert_eq!(amount("1.0wei").unwrap(), U256::from(1));
        assert_eq!(amount("1").unwrap_err(), "`1` has no unit: write e.g. 1ether, 1gwei or 1wei");
        assert_eq!(amount("-1ether").unwrap_err(), "`-1ether` is negative");
        assert!(amount("lotsether").unwrap_err().starts_with("`lotsether` is not an amount"));
    }

    #[test]
    fn epsilons_are_refused_below_the_contracts_resolution() {
        assert_eq!(epsilon("0.1").unwrap(), 100_000);
        assert_eq!(epsilon("2").unwrap(), 2_000_000);
        assert_eq!(epsilon("0.0000010").unwrap(), 1);
        assert_eq!(
            epsilon("0.0000001").unwrap_err(),
            "epsilon `0.0000001` is finer than the contract's resolution of 0.000001; round it to 6 decimals"
        );
        assert_eq!(epsilon("-1").unwrap_err(), "epsilon `-1` is negative");
        assert!(epsilon("lots").unwrap_err().starts_with("`lots` is not an epsilon"));
    }
}
