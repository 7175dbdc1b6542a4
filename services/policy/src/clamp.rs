//! Clamping a measure to its declared bounds, as a scalar function that costs next to nothing
//! on data that already lies within them.
//!
//! `CASE WHEN x < lo THEN lo WHEN x > hi THEN hi ELSE x END` evaluates two comparisons and
//! builds a new array for every batch. [`Clamp`] first checks the batch in one pass; when every
//! value is within the bounds, which is the usual case (the bounds are the owner's declared range
//! of the column), it returns the batch as it is. Otherwise it clamps each value. Either way the
//! result is the CASE's: NULL stays NULL, and floats are ordered as DataFusion's comparisons
//! order them (total order: NaN above every number, so it clamps to `hi`).
//!
//! The bounds are the policy's, converted to the column's type by [`bounds_in_type`]: rounded
//! inward, never outward (the sensitivity of a DP sum is computed from the policy's bounds, so a
//! clamped value must never lie outside them), and saturated to the type's range (a bound past
//! it holds nothing back).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ArrowNativeTypeOp, ArrowPrimitiveType, AsArray, PrimitiveArray};
use datafusion::arrow::compute::{max, min};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::{ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, lit,
};

/// `strongroom_clamp(x, lo, hi)`: `x` held to `[lo, hi]`, in `x`'s own type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Clamp {
    signature: Signature,
}

/// The policy's bounds `[lo, hi]` as values of `data_type`: the least value of the type at or
/// above `lo` and the greatest at or below `hi`, within the type's range. An error says why
/// there are none: the type is not a number a measure can be, or no value of it lies between.
pub fn bounds_in_type(lo: f64, hi: f64, data_type: &DataType) -> Result<(ScalarValue, ScalarValue), String> {
    let none = || format!("its bounds [{lo}, {hi}] hold no value of its type {data_type}");
    macro_rules! integer {
        ($variant:ident, $native:ty) => {{
            let (least, most) = (<$native>::MIN as f64, <$native>::MAX as f64);
            let (lo, hi) = (lo.ceil().max(least), hi.floor().min(most));
            if lo > hi {
                return Err(none());
            }
            // In range and whole: the conversions are exact (`as` saturates at the very top,
            // where f64 cannot name MAX itself).
            (ScalarValue::$variant(Some(lo as $native)), ScalarValue::$variant(Some(hi as $native)))
        }};
    }
    Ok(match data_type {
        DataType::Int8 => integer!(Int8, i8),
        DataType::Int16 => integer!(Int16, i16),
        DataType::Int32 => integer!(Int32, i32),
        DataType::Int64 => integer!(Int64, i64),
        DataType::UInt8 => integer!(UInt8, u8),
        DataType::UInt16 => integer!(UInt16, u16),
        DataType::UInt32 => integer!(UInt32, u32),
        DataType::UInt64 => integer!(UInt64, u64),
        DataType::Float64 => (ScalarValue::Float64(Some(lo)), ScalarValue::Float64(Some(hi))),
        DataType::Float32 => {
            let (mut low, mut high) = (lo as f32, hi as f32);
            if f64::from(low) < lo {
                low = low.next_up();
            }
            if f64::from(high) > hi {
                high = high.next_down();
            }
            if low > high {
                return Err(none());
            }
            (ScalarValue::Float32(Some(low)), ScalarValue::Float32(Some(high)))
        }
        DataType::Decimal128(precision, scale) if *scale >= 0 => {
            let most = 10_i128.checked_pow(u32::from(*precision)).map_or(i128::MAX, |p| p - 1);
            let (low, high) = (decimal_units(lo, *scale, true).max(-most), decimal_units(hi, *scale, false).min(most));
            if low > high {
                return Err(none());
            }
            (
                ScalarValue::Decimal128(Some(low), *precision, *scale),
                ScalarValue::Decimal128(Some(high), *precision, *scale),
            )
        }
        other => {
            return Err(format!(
                "it is of type {other}; a measure must be an integer, a float or a decimal (of scale 0 or more)"
            ));
        }
    })
}

/// `value` in units of `10^-scale`, rounded up (`up`) or down to a whole unit, saturating at the
/// ends of i128. The digits are those of `value`'s shortest decimal form (what the owner wrote:
/// `0.3` is 30 hundredths, not 29 or 31), so the rounding is exact.
fn decimal_units(value: f64, scale: i8, up: bool) -> i128 {
    let written = format!("{}", value.abs());
    let (whole, fraction) = written.split_once('.').unwrap_or((&written, ""));
    let scale = scale as usize;
    let kept: String = fraction.chars().chain(std::iter::repeat('0')).take(scale).collect();
    let cut = fraction.len() > scale && fraction[scale..].bytes().any(|d| d != b'0');
    let units = format!("{whole}{kept}").parse::<i128>().unwrap_or(i128::MAX);
    let units = if value < 0.0 { -units } else { units };
    // A cut-off fraction moves the bound inward: toward +inf for `lo`, toward -inf for `hi`.
    match (cut, up) {
        (false, _) => units,
        (true, true) if value > 0.0 => units.saturating_add(1),
        (true, false) if value < 0.0 => units.saturating_sub(1),
        (true, _) => units,
    }
}

impl Clamp {
    /// `value` held to the bounds, which [`bounds_in_type`] gave in its type.
    pub(crate) fn call(value: Expr, lo: ScalarValue, hi: ScalarValue) -> Expr {
        let udf = ScalarUDF::from(Self { signature: Signature::any(3, Volatility::Immutable) });
        Arc::new(udf).call(vec![value, lit(lo), lit(hi)])
    }
}

impl ScalarUDFImpl for Clamp {
    fn name(&self) -> &str {
        "strongroom_clamp"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, types: &[DataType]) -> datafusion::common::Result<DataType> {
        match types {
            [value, lo, hi] if value == lo && value == hi => Ok(value.clone()),
            _ => exec_err!("strongroom_clamp takes a number and two bounds of its type, not {types:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let [value, ColumnarValue::Scalar(lo), ColumnarValue::Scalar(hi)] = args.args.as_slice() else {
            return exec_err!("strongroom_clamp takes a value and two constant bounds");
        };
        let (lo, hi) = (lo.to_array()?, hi.to_array()?);
        let array = value.to_array(args.number_rows)?;
        let held: ArrayRef = match array.data_type() {
            DataType::Int8 => clamp::<Int8Type>(&array, &lo, &hi),
            DataType::Int16 => clamp::<Int16Type>(&array, &lo, &hi),
            DataType::Int32 => clamp::<Int32Type>(&array, &lo, &hi),
            DataType::Int64 => clamp::<Int64Type>(&array, &lo, &hi),
            DataType::UInt8 => clamp::<UInt8Type>(&array, &lo, &hi),
            DataType::UInt16 => clamp::<UInt16Type>(&array, &lo, &hi),
            DataType::UInt32 => clamp::<UInt32Type>(&array, &lo, &hi),
            DataType::UInt64 => clamp::<UInt64Type>(&array, &lo, &hi),
            DataType::Float32 => clamp::<Float32Type>(&array, &lo, &hi),
            DataType::Float64 => clamp::<Float64Type>(&array, &lo, &hi),
            DataType::Decimal128(_, _) => clamp::<Decimal128Type>(&array, &lo, &hi),
            other => return exec_err!("strongroom_clamp cannot clamp {other}"),
        };
        Ok(match value {
            ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&held, 0)?),
            ColumnarValue::Array(_) => ColumnarValue::Array(held),
        })
    }
}

/// `array` held to `[lo, hi]` (one-value arrays of its type).
fn clamp<T: ArrowPrimitiveType>(array: &ArrayRef, lo: &ArrayRef, hi: &ArrayRef) -> ArrayRef {
    let values: &PrimitiveArray<T> = array.as_primitive();
    let (lo, hi) = (lo.as_primitive::<T>().value(0), hi.as_primitive::<T>().value(0));
    // Arrow's min and max skip NULLs and order floats as the comparisons do (NaN above all).
    let within = match (min(values), max(values)) {
        (Some(least), Some(most)) => !least.is_lt(lo) && !most.is_gt(hi),
        _ => true, // no value at all, only NULLs
    };
    if within {
        return array.clone();
    }
    let held: PrimitiveArray<T> = values.unary(|v| {
        if v.is_lt(lo) {
            lo
        } else if v.is_gt(hi) {
            hi
        } else {
            v
        }
    });
    // `unary` keeps the NULLs; the data type carries a decimal's precision and scale.
    Arc::new(held.with_data_type(array.data_type().clone()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Decimal128Array, Float64Array, Int64Array};
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    use super::*;

    fn run(array: ArrayRef, lo: ScalarValue, hi: ScalarValue) -> ArrayRef {
        let udf = Clamp { signature: Signature::any(3, Volatility::Immutable) };
        let field = Arc::new(Field::new("x", array.data_type().clone(), true));
        let args = ScalarFunctionArgs {
            number_rows: array.len(),
            args: vec![ColumnarValue::Array(array), ColumnarValue::Scalar(lo), ColumnarValue::Scalar(hi)],
            arg_fields: vec![field.clone(), field.clone(), field.clone()],
            return_field: field,
            config_options: Arc::new(ConfigOptions::default()),
        };
        match udf.invoke_with_args(args).unwrap() {
            ColumnarValue::Array(array) => array,
            ColumnarValue::Scalar(_) => panic!("an array in, an array out"),
        }
    }

    #[test]
    fn values_within_the_bounds_come_back_as_they_are_and_others_are_held() {
        let within: ArrayRef = Arc::new(Int64Array::from(vec![Some(0), None, Some(7), Some(10)]));
        let held = run(within.clone(), ScalarValue::Int64(Some(0)), ScalarValue::Int64(Some(10)));
        assert!(Arc::ptr_eq(&within, &held), "nothing to clamp, nothing copied");

        let outside: ArrayRef = Arc::new(Int64Array::from(vec![Some(-5), None, Some(7), Some(99)]));
        let held = run(outside, ScalarValue::Int64(Some(0)), ScalarValue::Int64(Some(10)));
        assert_eq!(held.as_primitive::<Int64Type>(), &Int64Array::from(vec![Some(0), None, Some(7), Some(10)]));
    }

    #[test]
    fn bounds_are_rounded_inward_and_saturated_to_the_type() {
        let bounds = |lo, hi, t: DataType| bounds_in_type(lo, hi, &t);
        assert_eq!(bounds(-2.5, 2.5, DataType::Int64), Ok((ScalarValue::Int64(Some(-2)), ScalarValue::Int64(Some(2)))));
        assert_eq!(
            bounds(-1.0, 1000.0, DataType::UInt8),
            Ok((ScalarValue::UInt8(Some(0)), ScalarValue::UInt8(Some(255))))
        );
        assert_eq!(
            bounds(0.0, 1e30, DataType::Int64),
            Ok((ScalarValue::Int64(Some(0)), ScalarValue::Int64(Some(i64::MAX))))
        );
        assert_eq!(
            bounds(0.3, 0.7, DataType::Int32),
            Err("its bounds [0.3, 0.7] hold no value of its type Int32".into())
        );
        assert_eq!(
            bounds(-9.0, -1.0, DataType::UInt16),
            Err("its bounds [-9, -1] hold no value of its type UInt16".into())
        );
        // Decimals take the digits as written: 0.3 is 0.30, and 0.005 at scale 2 rounds inward.
        assert_eq!(
            bounds(0.3, 200_000.0, DataType::Decimal128(15, 2)),
            Ok((ScalarValue::Decimal128(Some(30), 15, 2), ScalarValue::Decimal128(Some(20_000_000), 15, 2)))
        );
        assert_eq!(
            bounds(-0.005, 0.005, DataType::Decimal128(15, 2)),
            Ok((ScalarValue::Decimal128(Some(0), 15, 2), ScalarValue::Decimal128(Some(0), 15, 2)))
        );
        assert_eq!(
            bounds(-1e20, 1e20, DataType::Decimal128(5, 2)),
            Ok((ScalarValue::Decimal128(Some(-99_999), 5, 2), ScalarValue::Decimal128(Some(99_999), 5, 2)))
        );
        // A float32 bound never rounds outward.
        let (ScalarValue::Float32(Some(lo)), ScalarValue::Float32(Some(hi))) =
            bounds(0.1, 0.7, DataType::Float32).unwrap()
        else {
            panic!("float32 bounds")
        };
        assert!(f64::from(lo) >= 0.1 && f64::from(hi) <= 0.7, "{lo} {hi}");
        assert_eq!(
            bounds(0.0, 1.0, DataType::Utf8),
            Err("it is of type Utf8; a measure must be an integer, a float or a decimal (of scale 0 or more)".into())
        );
    }

    #[test]
    fn floats_clamp_as_datafusion_compares_them_and_decimals_keep_their_scale() {
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![f64::NAN, -1.0, 0.5, f64::INFINITY]));
        let held = run(floats, ScalarValue::Float64(Some(0.0)), ScalarValue::Float64(Some(1.0)));
        assert_eq!(held.as_primitive::<Float64Type>().values().to_vec(), [1.0, 0.0, 0.5, 1.0]);

        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(-100), Some(200_000), None]).with_precision_and_scale(15, 2).unwrap(),
        );
        let held =
            run(decimals, ScalarValue::Decimal128(Some(0), 15, 2), ScalarValue::Decimal128(Some(100_000), 15, 2));
        assert_eq!(held.data_type(), &DataType::Decimal128(15, 2));
        assert_eq!(held.as_primitive::<Decimal128Type>().iter().collect::<Vec<_>>(), [Some(0), Some(100_000), None]);
    }
}
