//! The store conformance suite, written once over `&dyn ObservationStore` so the same
//! checks run on SQLite here and on real MariaDB / PostgreSQL servers in `tests/`
//! (enable the `test-support` feature).
//!
//! Every check uses its own trial names and deletes them first, so the checks can share
//! one database, also one that earlier runs left data in. They panic on failure, like
//! `assert!`.

use jiff::Timestamp;

use crate::store::{LogQuery, MetricRow, ObservationStore, StoreError, open_store};

fn ts(text: &str) -> Timestamp {
    match text.parse() {
        Ok(ts) => ts,
        Err(err) => panic!("bad test timestamp {text:?}: {err}"),
    }
}

fn row(time: &str, metric: &str, value: &str) -> MetricRow {
    MetricRow::new(ts(time), metric, value)
}

async fn fresh(store: &dyn ObservationStore, trial: &str) {
    store.delete(trial).await.expect("delete before the check");
}

async fn all(store: &dyn ObservationStore, trial: &str) -> Vec<MetricRow> {
    store.get(&LogQuery::trial(trial)).await.expect("get")
}

/// Every check that needs nothing but the store.
pub async fn run_all(store: &dyn ObservationStore) {
    store.ping().await.expect("ping");
    round_trip(store).await;
    time_order_ties_by_insertion(store).await;
    metric_and_time_filters(store).await;
    microsecond_precision(store).await;
    values_kept_verbatim(store).await;
    delete_only_that_trial(store).await;
    empty_report_is_a_no_op(store).await;
    large_report(store).await;
    out_of_range_time_is_refused_whole(store).await;
}

/// What goes in comes out, in time order.
pub async fn round_trip(store: &dyn ObservationStore) {
    let trial = "suite-round-trip";
    fresh(store, trial).await;
    let rows = vec![
        row("2024-05-01T10:00:00Z", "loss", "0.7"),
        row("2024-05-01T10:00:01Z", "accuracy", "0.81"),
        row("2024-05-01T10:00:02.5Z", "accuracy", "0.93"),
    ];
    store.report(trial, &rows).await.expect("report");
    assert_eq!(all(store, trial).await, rows);
}

/// Rows come back sorted by time whatever the report order; equal times keep
/// insertion order, across reports too. Katib's zero time sorts first.
pub async fn time_order_ties_by_insertion(store: &dyn ObservationStore) {
    let trial = "suite-order";
    fresh(store, trial).await;
    store
        .report(
            trial,
            &[
                row("2024-05-01T10:00:02Z", "m", "c"),
                row("2024-05-01T10:00:01Z", "m", "b1"),
                row("2024-05-01T10:00:01Z", "m", "b2"),
                row("0001-01-01T00:00:00Z", "m", "zero"),
            ],
        )
        .await
        .expect("first report");
    store
        .report(
            trial,
            &[
                row("2024-05-01T10:00:01Z", "m", "b3"),
                row("2023-12-31T23:59:59.999999Z", "m", "a"),
            ],
        )
        .await
        .expect("second report");
    let values: Vec<String> = all(store, trial).await.into_iter().map(|r| r.value).collect();
    assert_eq!(values, ["zero", "a", "b1", "b2", "b3", "c"]);
}

/// Metric filter, inclusive start and end, each alone and together.
pub async fn metric_and_time_filters(store: &dyn ObservationStore) {
    let trial = "suite-filters";
    fresh(store, trial).await;
    fresh(store, "suite-filters-other").await;
    let rows = vec![
        row("2024-05-01T10:00:00Z", "accuracy", "0.1"),
        row("2024-05-01T10:00:00Z", "loss", "0.9"),
        row("2024-05-01T11:00:00Z", "accuracy", "0.2"),
        row("2024-05-01T11:00:00Z", "loss", "0.8"),
        row("2024-05-01T12:00:00Z", "accuracy", "0.3"),
    ];
    store.report(trial, &rows).await.expect("report");
    store
        .report(
            "suite-filters-other",
            &[row("2024-05-01T11:00:00Z", "accuracy", "other")],
        )
        .await
        .expect("report other trial");

    let get = |query: LogQuery| async move {
        let rows = store.get(&query).await.expect("get");
        rows.into_iter().map(|r| r.value).collect::<Vec<_>>()
    };
    let q = || LogQuery::trial(trial);
    assert_eq!(get(q().metric("accuracy")).await, ["0.1", "0.2", "0.3"]);
    assert_eq!(get(q().metric("loss")).await, ["0.9", "0.8"]);
    assert_eq!(get(q().metric("f1")).await, Vec::<String>::new());
    let eleven = Some(ts("2024-05-01T11:00:00Z"));
    assert_eq!(get(q().between(eleven, None)).await, ["0.2", "0.8", "0.3"]);
    assert_eq!(get(q().between(None, eleven)).await, ["0.1", "0.9", "0.2", "0.8"]);
    assert_eq!(get(q().between(eleven, eleven)).await, ["0.2", "0.8"]);
    assert_eq!(
        get(q()
            .metric("accuracy")
            .between(Some(ts("2024-05-01T10:30:00Z")), eleven))
        .await,
        ["0.2"]
    );
    // A range given in another offset means the same instants.
    let start = Some(ts("2024-05-01T13:00:00+02:00"));
    assert_eq!(get(q().metric("loss").between(start, None)).await, ["0.8"]);
    assert_eq!(
        get(q().between(Some(ts("2024-05-01T12:00:00.000001Z")), None)).await,
        Vec::<String>::new()
    );
    assert_eq!(
        get(LogQuery::trial("suite-no-such-trial")).await,
        Vec::<String>::new()
    );
}

/// Microseconds survive; anything finer is floored.
pub async fn microsecond_precision(store: &dyn ObservationStore) {
    let trial = "suite-micros";
    fresh(store, trial).await;
    store
        .report(
            trial,
            &[
                row("2024-05-01T10:00:00.000001Z", "m", "1"),
                row("2024-05-01T10:00:00.000002Z", "m", "2"),
                row("2024-05-01T10:00:00.000003999Z", "m", "3"),
            ],
        )
        .await
        .expect("report");
    let rows = all(store, trial).await;
    let times: Vec<Timestamp> = rows.iter().map(|r| r.time).collect();
    assert_eq!(
        times,
        [
            ts("2024-05-01T10:00:00.000001Z"),
            ts("2024-05-01T10:00:00.000002Z"),
            ts("2024-05-01T10:00:00.000003Z"),
        ]
    );
    let two = Some(ts("2024-05-01T10:00:00.000002Z"));
    let only_two = store
        .get(&LogQuery::trial(trial).between(two, two))
        .await
        .expect("get one microsecond");
    assert_eq!(only_two.len(), 1);
    assert_eq!(only_two[0].value, "2");
}

/// Values (and names) are data, never SQL, and come back byte for byte.
pub async fn values_kept_verbatim(store: &dyn ObservationStore) {
    let trial = "suite-verbatim-o'brien\"; --";
    fresh(store, trial).await;
    let values = [
        "unavailable",
        "0.93",
        "'; DROP TABLE observation_logs; --",
        "",
        "  padded  ",
        "1e-7",
        "NULL",
        "\"quoted\" and 'single'",
        "multi\nline\ttabbed",
        "ünïcödé ✓ 指标",
        "%_\\",
    ];
    let rows: Vec<MetricRow> = values
        .iter()
        .enumerate()
        .map(|(i, value)| MetricRow {
            time: ts("2024-05-01T10:00:00Z")
                .checked_add(jiff::SignedDuration::from_secs(i64::try_from(i).unwrap_or(0)))
                .expect("time"),
            metric_name: "m'; DELETE FROM observation_logs; --".to_owned(),
            value: (*value).to_owned(),
        })
        .collect();
    store.report(trial, &rows).await.expect("report");
    assert_eq!(all(store, trial).await, rows);
    let by_name = store
        .get(&LogQuery::trial(trial).metric("m'; DELETE FROM observation_logs; --"))
        .await
        .expect("get by odd metric name");
    assert_eq!(by_name.len(), values.len());
    store.ping().await.expect("table and database still fine");
}

/// Delete removes one trial's rows and nothing else.
pub async fn delete_only_that_trial(store: &dyn ObservationStore) {
    let (gone, kept) = ("suite-delete-gone", "suite-delete-kept");
    fresh(store, gone).await;
    fresh(store, kept).await;
    let rows = [
        row("2024-05-01T10:00:00Z", "m", "1"),
        row("2024-05-01T10:00:01Z", "m", "2"),
    ];
    store.report(gone, &rows).await.expect("report gone");
    store.report(kept, &rows[..1]).await.expect("report kept");
    assert_eq!(store.delete(gone).await.expect("delete"), 2);
    assert_eq!(all(store, gone).await, Vec::new());
    assert_eq!(all(store, kept).await, rows[..1]);
    assert_eq!(store.delete(gone).await.expect("delete again"), 0);
}

/// Reporting nothing succeeds and writes nothing (Katib errors here).
pub async fn empty_report_is_a_no_op(store: &dyn ObservationStore) {
    let trial = "suite-empty";
    fresh(store, trial).await;
    store.report(trial, &[]).await.expect("empty report");
    assert_eq!(all(store, trial).await, Vec::new());
}

/// A report larger than one `INSERT` statement's worth of rows lands whole, in order.
pub async fn large_report(store: &dyn ObservationStore) {
    let trial = "suite-large";
    fresh(store, trial).await;
    let rows = numbered_rows(1201, None);
    store.report(trial, &rows).await.expect("large report");
    assert_eq!(all(store, trial).await, rows);
}

/// A time no backend can order correctly fails the report before anything is written.
pub async fn out_of_range_time_is_refused_whole(store: &dyn ObservationStore) {
    let trial = "suite-out-of-range";
    fresh(store, trial).await;
    let rows = [
        row("2024-05-01T10:00:00Z", "m", "fine"),
        row("0000-06-01T00:00:00Z", "m", "year zero"),
    ];
    let err = store.report(trial, &rows).await.expect_err("year 0 is refused");
    assert!(matches!(err, StoreError::TimeOutOfRange { .. }), "{err}");
    assert_eq!(all(store, trial).await, Vec::new());
}

/// A report whose last row fails in the database leaves nothing behind.
///
/// The harness must first make inserting a row with value `poison` fail (a trigger), so
/// the failure happens in the database, in the last of several `INSERT` statements.
pub async fn report_is_atomic(store: &dyn ObservationStore, poison: &str) {
    let trial = "suite-atomic";
    fresh(store, trial).await;
    let before = row("2024-01-01T00:00:00Z", "m", "before");
    store
        .report(trial, std::slice::from_ref(&before))
        .await
        .expect("report before");
    let rows = numbered_rows(1201, Some(poison));
    let err = store
        .report(trial, &rows)
        .await
        .expect_err("the poisoned row fails the report");
    assert!(matches!(err, StoreError::Query { .. }), "{err}");
    assert_eq!(all(store, trial).await, vec![before]);
}

/// Data survives closing and re-opening the database at `url`, and opening an
/// up-to-date database again (re-running the migrations) succeeds.
pub async fn reopen_keeps_data(url: &str) {
    let trial = "suite-reopen";
    let rows = [
        row("2024-05-01T10:00:00.123456Z", "accuracy", "0.5"),
        row("2024-05-01T10:00:01Z", "accuracy", "unavailable"),
    ];
    let first = open_store(url).await.expect("first open");
    fresh(&*first, trial).await;
    first.report(trial, &rows).await.expect("report");
    first.close().await;
    drop(first);

    let second = open_store(url).await.expect("second open");
    assert_eq!(all(&*second, trial).await, rows);
    second.close().await;
}

/// `count` rows one second apart; the last one's value is `last_value` when given.
fn numbered_rows(count: usize, last_value: Option<&str>) -> Vec<MetricRow> {
    let start = ts("2024-05-01T00:00:00Z");
    (0..count)
        .map(|i| {
            let offset = jiff::SignedDuration::from_secs(i64::try_from(i).unwrap_or(0));
            let value = match last_value {
                Some(last) if i + 1 == count => last.to_owned(),
                _ => i.to_string(),
            };
            MetricRow::new(start.checked_add(offset).expect("time"), "step", value)
        })
        .collect()
}
