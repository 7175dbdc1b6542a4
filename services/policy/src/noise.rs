//! The noise of differential privacy: exact discrete Laplace samples (Canonne, Kamath and
//! Steinke, "The Discrete Gaussian for Differential Privacy", 2020, algorithms 1 and 2), drawn
//! with integer arithmetic only, so the distribution is exactly the one the privacy proof
//! assumes: no floating-point Laplace, whose rounding leaks.
//!
//! The noise is consistent: each released value's draw comes from a generator seeded by
//! HMAC-SHA256 under the task's secret [`NoiseSeed`] of which value it is (its label) and of
//! its group's key. The same task run twice (an enclave restarted after a crash, or a host that
//! launches a second one) answers the same, so running it again tells nothing the first run did
//! not; distinct tasks have independent seeds, so each is a fresh measurement, paid for in the
//! privacy budget. The order rows come out in changes nothing.
//!
//! [`Noise`] is the scalar function the rewritten plan calls on each released aggregate; it is
//! volatile, so the optimizer neither folds nor merges two draws.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{DataFusionError, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sha2::Sha256;

/// The secret a task's noise is drawn from: in the enclave, derived from its identity key and the
/// task, so that nobody else can predict the noise and a rerun draws the same.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NoiseSeed([u8; 32]);

impl NoiseSeed {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A seed from the thread's CSPRNG, for a check whose noise no rerun needs to repeat
    /// (planning, tests).
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The generator of the value `label` of the group whose key encodes as `group`.
    fn generator(&self, label: &str, group: &[u8]) -> StdRng {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(b"strongroom/v1/noise\0");
        mac.update(&(label.len() as u64).to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(group);
        StdRng::from_seed(mac.finalize().into_bytes().into())
    }
}

impl std::fmt::Debug for NoiseSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoiseSeed(…)")
    }
}

/// An integer `x` with probability proportional to `exp(-|x| · s / t)`: the discrete Laplace
/// of scale `t / s`. Both must be at least 1.
pub(crate) fn discrete_laplace<R: RngCore + ?Sized>(rng: &mut R, t: u128, s: u128) -> i128 {
    assert!(t >= 1 && s >= 1, "a discrete Laplace scale t/s needs t, s >= 1");
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp(rng, u, t) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp(rng, 1, 1) {
            v += 1;
        }
        let Some(x) = t.checked_mul(v).and_then(|tv| tv.checked_add(u)) else { continue };
        let y = x / s;
        let negative = rng.random::<bool>();
        if negative && y == 0 {
            continue;
        }
        let y = i128::try_from(y).unwrap_or(i128::MAX);
        return if negative { -y } else { y };
    }
}

/// True with probability `exp(-n / d)`, exactly.
fn bernoulli_exp<R: RngCore + ?Sized>(rng: &mut R, n: u128, d: u128) -> bool {
    for _ in 0..n / d {
        if !bernoulli_exp_at_most_one(rng, 1, 1) {
            return false;
        }
    }
    bernoulli_exp_at_most_one(rng, n % d, d)
}

/// True with probability `exp(-n / d)` for `n / d` in [0, 1]: count the draws of
/// Bernoulli(n / (d k)), k = 1, 2, …, up to the first failure; true when that count is odd.
fn bernoulli_exp_at_most_one<R: RngCore + ?Sized>(rng: &mut R, n: u128, d: u128) -> bool {
    let mut k: u128 = 1;
    // Past u128, the probability n / (d k) is below 2^-64: the draw counts as a failure.
    while let Some(denominator) = d.checked_mul(k) {
        if uniform_below(rng, denominator) >= n {
            break;
        }
        k += 1;
    }
    k % 2 == 1
}

/// A uniform integer in `[0, bound)`, by rejection (no modulo bias).
fn uniform_below<R: RngCore + ?Sized>(rng: &mut R, bound: u128) -> u128 {
    let zone = u128::MAX - (u128::MAX - bound + 1) % bound;
    loop {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        let value = u128::from_le_bytes(bytes);
        if value <= zone {
            return value % bound;
        }
    }
}

/// The noise added to one released aggregate: `value + grid · L` where `L` is a discrete
/// Laplace of scale `t / s` in units of `grid`. Counts use a grid of 1 and come back as
/// integers; sums are rounded to the grid first (the sensitivity counts that rounding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Noise {
    signature: Signature,
    seed: NoiseSeed,
    /// Which released value of a group this is: two values of one group draw independently.
    label: String,
    /// The scale's numerator and denominator, in grid units.
    t: u128,
    s: u128,
    /// The grid, as the bits of an f64; `None` for integer counts.
    grid_bits: Option<u64>,
}

impl Noise {
    /// Noise of scale `t / s` on an integer count, the value `label` of its group.
    pub fn count(t: u128, s: u128, seed: &NoiseSeed, label: &str) -> ScalarUDF {
        ScalarUDF::from(Self {
            signature: Signature::variadic_any(Volatility::Volatile),
            seed: seed.clone(),
            label: label.into(),
            t,
            s,
            grid_bits: None,
        })
    }

    /// Noise of scale `t / s` grid units on a real sum, rounded to `grid`.
    pub fn sum(t: u128, s: u128, grid: f64, seed: &NoiseSeed, label: &str) -> ScalarUDF {
        ScalarUDF::from(Self {
            signature: Signature::variadic_any(Volatility::Volatile),
            seed: seed.clone(),
            label: label.into(),
            t,
            s,
            grid_bits: Some(grid.to_bits()),
        })
    }

    /// Wraps `value` in the function (it must already be of the function's type), drawing per
    /// group of key `group` (the aggregate's group columns; none for a global aggregate).
    pub fn call(
        udf: ScalarUDF,
        value: datafusion::logical_expr::Expr,
        group: Vec<datafusion::logical_expr::Expr>,
    ) -> datafusion::logical_expr::Expr {
        Arc::new(udf).call([vec![value], group].concat())
    }
}

impl ScalarUDFImpl for Noise {
    fn name(&self) -> &str {
        "strongroom_noise"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(if self.grid_bits.is_some() { DataType::Float64 } else { DataType::Int64 })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let Some((value, group)) = args.args.split_first() else {
            return exec_err!("strongroom_noise takes the value and its group's key");
        };
        let array = value.to_array(args.number_rows)?;
        let group = group.iter().map(|key| key.to_array(args.number_rows)).collect::<Result<Vec<_>, _>>()?;
        // Each row's group key, encoded so that equal keys give equal bytes and distinct keys
        // distinct bytes, whatever their types.
        let keys = match group.is_empty() {
            true => None,
            false => {
                let fields = group.iter().map(|key| SortField::new(key.data_type().clone())).collect();
                Some(RowConverter::new(fields)?.convert_columns(&group)?)
            }
        };
        let key = |row: usize| keys.as_ref().map_or(&[][..], |keys| keys.row(row).data());
        let draw = |row: usize| discrete_laplace(&mut self.seed.generator(&self.label, key(row)), self.t, self.s);
        let noised: ArrayRef = match self.grid_bits {
            None => {
                let Some(counts) = array.as_any().downcast_ref::<Int64Array>() else {
                    return exec_err!("strongroom_noise on a count needs Int64");
                };
                let noise = |row| i64::try_from(draw(row)).unwrap_or(i64::MAX);
                // NULL is noised as 0: a NULL passed through would tell an empty group apart.
                Arc::new(
                    counts
                        .iter()
                        .enumerate()
                        .map(|(row, v)| Some(v.unwrap_or(0).saturating_add(noise(row))))
                        .collect::<Int64Array>(),
                )
            }
            Some(bits) => {
                let grid = f64::from_bits(bits);
                let Some(sums) = array.as_any().downcast_ref::<Float64Array>() else {
                    return exec_err!("strongroom_noise on a sum needs Float64");
                };
                Arc::new(
                    sums.iter()
                        .enumerate()
                        .map(|(row, v)| {
                            let v = v.unwrap_or(0.0);
                            let cells = (v / grid).round() + draw(row) as f64;
                            Some(cells * grid)
                        })
                        .collect::<Float64Array>(),
                )
            }
        };
        if noised.len() != array.len() {
            return Err(DataFusionError::Internal("noise changed the row count".into()));
        }
        Ok(ColumnarValue::Array(noised))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// The sample's frequency of 0 and variance against the distribution's: for scale b,
    /// P[0] = (1 - q) / (1 + q) and Var = 2q / (1 - q)^2 with q = exp(-1/b).
    #[test]
    fn samples_follow_the_discrete_laplace() {
        let mut rng = StdRng::seed_from_u64(7);
        for (t, s) in [(2u128, 1u128), (5, 2), (1, 3)] {
            let n = 40_000;
            let draws: Vec<i128> = (0..n).map(|_| discrete_laplace(&mut rng, t, s)).collect();
            let q = (-(s as f64) / t as f64).exp();
            let zero = draws.iter().filter(|x| **x == 0).count() as f64 / n as f64;
            let mean = draws.iter().sum::<i128>() as f64 / n as f64;
            let variance = draws.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let (want_zero, want_variance) = ((1.0 - q) / (1.0 + q), 2.0 * q / (1.0 - q).powi(2));
            assert!((zero - want_zero).abs() < 0.015, "scale {t}/{s}: P[0] {zero} vs {want_zero}");
            assert!(mean.abs() < 0.1 * want_variance.sqrt().max(0.5), "scale {t}/{s}: mean {mean}");
            assert!((variance / want_variance - 1.0).abs() < 0.1, "scale {t}/{s}: var {variance} vs {want_variance}");
        }
    }

    #[test]
    fn exp_bernoulli_is_exact_at_its_edges_and_uniform_has_no_bias() {
        let mut rng = StdRng::seed_from_u64(9);
        assert!((0..1000).all(|_| bernoulli_exp(&mut rng, 0, 5)), "exp(0) = 1");
        let hits = (0..40_000).filter(|_| bernoulli_exp(&mut rng, 3, 2)).count() as f64 / 40_000.0;
        assert!((hits - (-1.5f64).exp()).abs() < 0.01, "exp(-1.5): {hits}");
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[uniform_below(&mut rng, 3) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (*c as i64 - 10_000).abs() < 400), "{counts:?}");
    }
}
