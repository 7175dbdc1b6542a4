//! Clamping a measure to its declared bounds, as a scalar function that costs next to nothing
//! on data that already lies within them.
//!
//! `CASE WHEN x < lo THEN lo WHEN x > hi THEN hi ELSE x END` evaluates two comparisons and
//! builds a new array for every batch. [`Clamp`] first checks the batch in one pass; when every
//! value is within the bounds, which is the usual case (the bounds are the owner's declared range
//! of the column), it returns the batch as it is. Otherwise it clamps each value. Either way the
//! result is the CASE's: NULL stays NULL, and floats are ordered as DataFusion's comparisons
//! order them (total order: NaN above every number, so it clamps to `hi`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ArrowNativeTypeOp, ArrowPrimitiveType, AsArray, PrimitiveArray};
use datafusion::arrow::compute::{max, min};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Decimal256Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
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

impl Clamp {
    /// Whether values of `data_type` can be clamped by the function (every numeric type).
    pub(crate) fn supports(data_type: &DataType) -> bool {
        matches!(
            data_type,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(_, _)
                | DataType::Decimal256(_, _)
        )
    }

    /// `value` (of a type [`Clamp::supports`]) held to the bounds, which are already in its type.
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
            [value, lo, hi] if value == lo && value == hi && Self::supports(value) => Ok(value.clone()),
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
            DataType::Decimal256(_, _) => clamp::<Decimal256Type>(&array, &lo, &hi),
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
