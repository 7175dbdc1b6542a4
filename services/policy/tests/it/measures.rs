//! Measures the data cannot hold: refused by the policy check at publish and by the checker on
//! every query that sums them, before any data is read.

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use strongroom_policy::{NoiseSeed, Rule, check, check_measures, plan_job};
use strongroom_types::Policy;

use crate::behaviour::fixture;

fn policy(measures: &str) -> Policy {
    Policy::parse(&format!(
        "version = 2\nname = \"t\"\n[columns]\ncustomer_id = \"identifier\"\nregion = \"dimension\"\n{measures}\n\
         [aggregation]\nfunctions = [\"sum\", \"count\"]\nmin_group_size = 2\n"
    ))
    .unwrap()
}

#[test]
fn a_measure_must_be_a_number_that_its_bounds_fit() {
    let schema = Schema::new(vec![
        Field::new("plan", DataType::Utf8, true),
        Field::new("age", DataType::Int64, true),
        Field::new("spend", DataType::Float64, true),
    ]);
    assert_eq!(check_measures(&policy("spend = { role = \"measure\", bounds = [0, 200] }"), &schema), Ok(()));
    // A bound past the type's range holds nothing back: it is no error.
    assert_eq!(check_measures(&policy("age = { role = \"measure\", bounds = [-1e30, 1e30] }"), &schema), Ok(()));

    let err = check_measures(&policy("plan = { role = \"measure\", bounds = [0, 1] }"), &schema).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused by the licence, rule measure_type: measure `plan`: it is of type Utf8; a measure must be an \
         integer, a float or a decimal (of scale 0 or more) (in `plan`)"
    );
    let err = check_measures(&policy("age = { role = \"measure\", bounds = [0.3, 0.7] }"), &schema).unwrap_err();
    assert_eq!(err.rule, Rule::MeasureType);
    assert_eq!(err.reason, "measure `age`: its bounds [0.3, 0.7] hold no value of its type Int64");
}

#[tokio::test]
async fn a_query_that_sums_a_measure_the_data_cannot_hold_is_refused() {
    let ctx = fixture().await;
    let policy = policy("age = { role = \"measure\", bounds = [0.3, 0.7] }");
    let plan = plan_job(&ctx, "SELECT region, SUM(age) FROM dataset GROUP BY region", &policy).await.unwrap();
    let err = check(&plan, &policy, None, &NoiseSeed::random()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused by the licence, rule measure_type: measure `age`: its bounds [0.3, 0.7] hold no value of its type \
         Int64 (in `dataset.age`)"
    );
}
