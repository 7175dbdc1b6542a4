//! Properties of the noise that hold over many runs of one query, on the behaviour table's
//! fixture under `policies/dp-required.toml`.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use strongroom_policy::{NoiseSeed, check, plan_job};
use strongroom_types::Policy;

use crate::behaviour::{fixture, policies_dir};

/// The threshold a group's noisy unit count must reach, as the rewrite states it.
fn threshold(rewrites: &[String]) -> i64 {
    let line = rewrites.iter().find(|r| r.starts_with("groups whose noisy count")).expect("a threshold");
    let after = line.split(" is below ").nth(1).expect("the threshold's value");
    after.split(' ').next().unwrap().parse().expect("a whole number")
}

/// The count the threshold is applied to is the count released: one draw of the noise, not one
/// for the filter and another for the output (which an optimizer that inlines a projection into
/// a filter above it would make, and which would release counts below the threshold).
#[tokio::test]
async fn the_noisy_count_that_passes_the_threshold_is_the_one_released() {
    let ctx = fixture().await;
    let text = std::fs::read_to_string(policies_dir().join("dp-required.toml")).unwrap();
    let policy = Policy::parse(&text).unwrap();
    // 34 customers; at epsilon 0.42 the threshold is 34 too, so about half the runs release the
    // count, and a second draw would fall below the threshold about half the time it is released.
    let sql = "SELECT COUNT(DISTINCT customer_id) AS customers FROM dataset";
    let epsilon = 420_000;
    let (mut released, mut withheld) = (Vec::new(), 0);
    for _ in 0..80 {
        let checked =
            check(&plan_job(&ctx, sql, &policy).await.unwrap(), &policy, Some(epsilon), &NoiseSeed::random()).unwrap();
        let tau = threshold(&checked.rewrites);
        assert_eq!(tau, 34, "{:?}", checked.rewrites);
        let batches = ctx.execute_logical_plan(checked.plan).await.unwrap().collect().await.unwrap();
        let counts: Vec<i64> =
            batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().iter().flatten()).collect();
        match counts.as_slice() {
            [] => withheld += 1,
            [count] => released.push(*count),
            more => panic!("one group, not {more:?}"),
        }
    }
    assert!(
        released.len() >= 10 && withheld >= 10,
        "the runs straddle the threshold: {released:?}, {withheld} withheld"
    );
    let below: Vec<&i64> = released.iter().filter(|c| **c < 34).collect();
    assert!(below.is_empty(), "released counts below the threshold they passed: {below:?}");
    // And the noise is noise: the released counts are not all one value.
    assert!(released.iter().any(|c| *c != released[0]), "{released:?}");
}

/// A noisy sum goes back to its column's integer type rounded, not cut: with noise of (all but
/// surely) zero, a sum of whole numbers comes back whole and exact, though it was rounded to a
/// grid of sensitivity / 1024 on the way (for some of these bounds the grid lands just below).
#[tokio::test]
async fn a_noisy_sum_of_integers_comes_back_rounded() {
    let ctx = fixture().await;
    let text = std::fs::read_to_string(policies_dir().join("dp-required.toml")).unwrap();
    for hi in 90..=100 {
        let measure = format!("age = {{ role = \"measure\", bounds = [0, {hi}] }}");
        let policy = Policy::parse(&text.replace("age = \"dimension\"", &measure)).unwrap();
        let sql = "SELECT SUM(age) AS years FROM dataset";
        let checked =
            check(&plan_job(&ctx, sql, &policy).await.unwrap(), &policy, Some(100_000_000_000), &NoiseSeed::random())
                .unwrap();
        let batches = ctx.execute_logical_plan(checked.plan).await.unwrap().collect().await.unwrap();
        let got = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        // What the rewrite sums: each customer's ages, held to the bounds per row and per customer.
        let truth = format!(
            "SELECT SUM(LEAST(years, {hi})) FROM (SELECT customer_id, SUM(LEAST(GREATEST(age, 0), {hi})) AS years \
             FROM dataset WHERE customer_id IS NOT NULL GROUP BY customer_id)"
        );
        let batches = ctx.sql(&truth).await.unwrap().collect().await.unwrap();
        let want = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(got, want, "bounds [0, {hi}]");
    }
}

/// The noise is consistent: one seed draws the same noise for the same groups, however many
/// times the task runs and whatever order its groups come out in (an enclave restarted after a
/// crash reruns a task: it must not release a second, independent sample). Another seed (another
/// task) draws afresh.
#[tokio::test]
async fn a_task_run_again_with_its_seed_releases_the_same_noisy_values() {
    let ctx = fixture().await;
    let text = std::fs::read_to_string(policies_dir().join("dp-required.toml")).unwrap();
    let policy = Policy::parse(&text.replace("min_group_size = 10", "min_group_size = 1")).unwrap();
    let sql = "SELECT region, plan, COUNT(*) AS n, SUM(monthly_spend) AS spend FROM dataset GROUP BY region, plan";
    let run = |seed: NoiseSeed, order: &'static str| {
        let (ctx, policy) = (ctx.clone(), policy.clone());
        async move {
            let checked =
                check(&plan_job(&ctx, sql, &policy).await.unwrap(), &policy, Some(50_000_000), &seed).unwrap();
            // The rows in another order: sorted above the noise, ascending or descending.
            let sorted = ctx.execute_logical_plan(checked.plan).await.unwrap();
            let sorted = match order {
                "asc" => sorted.sort_by(vec![datafusion::prelude::col("region"), datafusion::prelude::col("plan")]),
                _ => sorted.sort(vec![
                    datafusion::prelude::col("region").sort(false, true),
                    datafusion::prelude::col("plan").sort(false, true),
                ]),
            };
            let batches = sorted.unwrap().collect().await.unwrap();
            let mut rows: Vec<String> = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
                .lines()
                .filter(|line| line.starts_with("| ") && !line.contains("region"))
                .map(str::to_owned)
                .collect();
            rows.sort();
            rows
        }
    };
    let seed = NoiseSeed::new([7; 32]);
    let first = run(seed.clone(), "asc").await;
    assert!(first.len() >= 4, "several groups are released: {first:?}");
    assert_eq!(run(seed.clone(), "desc").await, first, "the same seed, the rows in another order");
    assert_eq!(run(seed, "asc").await, first, "the same seed again");
    assert_ne!(run(NoiseSeed::new([8; 32]), "asc").await, first, "another task's seed draws other noise");
}
