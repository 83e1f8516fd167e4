//! The store conformance suite, written once over `&dyn ObservationStore` so the same
//! checks run on SQLite here and on real MariaDB / PostgreSQL servers in `tests/`
//! (enable the `test-support` feature).
//!
//! Every check uses its own trial names and deletes them first, so the checks can share
//! one database, also one that earlier runs left data in. They panic on failure, like
//! `assert!`.

use jiff::Timestamp;

use std::collections::BTreeMap;

use crate::store::{
    Appended, BestValue, Goal, LogQuery, MetricGoal, MetricRow, ObservationStore, ReportKey, StoreError,
    TrialSet, open_store,
};

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
    count_matches_what_get_returns(store).await;
    empty_report_is_a_no_op(store).await;
    large_report(store).await;
    out_of_range_time_is_refused_whole(store).await;
    keyed_report_is_stored_once(store).await;
    bulk_read_by_names_and_prefix(store).await;
    best_values_follow_goals(store).await;
    best_values_across_reports_and_delete(store).await;
    concurrent_reports_keep_their_own_outcome(store).await;
    reports_written_together_as_if_one_by_one(store).await;
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

/// `count` is the number of rows `get` returns for the trial, across reports, a repeated
/// keyed report and a delete; other trials do not count.
pub async fn count_matches_what_get_returns(store: &dyn ObservationStore) {
    let (trial, other) = ("suite-count", "suite-count-other");
    fresh(store, trial).await;
    fresh(store, other).await;
    assert_eq!(store.count(trial).await.expect("count of nothing"), 0);
    let rows = [
        row("2024-05-01T10:00:00Z", "loss", "0.5"),
        row("2024-05-01T10:00:01Z", "loss", "0.4"),
        row("0001-01-01T00:00:00Z", "accuracy", "unavailable"),
    ];
    store.report(trial, &rows[..2]).await.expect("first report");
    store.report(other, &rows).await.expect("other trial");
    let key = ReportKey::of(trial, [("0001-01-01T00:00:00Z", "accuracy", "unavailable")]);
    // Counted with the report (in its transaction where the store can).
    assert_eq!(
        store
            .append_and_count(trial, &rows[2..], Some(&key))
            .await
            .expect("keyed report"),
        (Appended::Stored, Some(3))
    );
    assert_eq!(
        store
            .append_and_count(trial, &rows[2..], Some(&key))
            .await
            .expect("repeated keyed report"),
        (Appended::Duplicate, Some(3))
    );
    assert_eq!(store.count(trial).await.expect("count"), 3);
    assert_eq!(all(store, trial).await.len(), 3);
    store.delete(trial).await.expect("delete");
    assert_eq!(store.count(trial).await.expect("count after delete"), 0);
    assert_eq!(store.count(other).await.expect("other trial's count"), 3);

    // Reports that arrive together (one group on SQLite) each get their own trial's count.
    let trials: Vec<String> = (0..6).map(|i| format!("suite-count-together-{i}")).collect();
    for t in &trials {
        fresh(store, t).await;
    }
    let answers = futures::future::join_all(
        trials
            .iter()
            .enumerate()
            .map(|(i, t)| store.append_and_count(t, &rows[..=i % 3], None)),
    )
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(
            answer.expect("report"),
            (Appended::Stored, Some(i as u64 % 3 + 1)),
            "trial {i}"
        );
    }
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

/// Many reports at once (on SQLite they are written as groups in one transaction): each is
/// stored exactly once, and a report the database refuses (its rows hold `poison`) fails
/// alone, without taking the others of its group with it.
pub async fn concurrent_reports_fail_alone(store: &dyn ObservationStore, poison: &str) {
    let trials: Vec<String> = (0..24).map(|i| format!("suite-group-{i}")).collect();
    for t in &trials {
        fresh(store, t).await;
    }
    let rows_of = |i: usize| {
        let value = if i == 7 {
            poison.to_string()
        } else {
            format!("{i}")
        };
        vec![
            row("2024-06-01T00:00:00Z", "loss", &value),
            row("2024-06-01T00:00:01Z", "acc", &format!("0.{i}")),
        ]
    };
    let reports: Vec<(usize, Vec<MetricRow>)> = (0..trials.len()).map(|i| (i, rows_of(i))).collect();
    let trials = &trials;
    let results = futures::future::join_all(reports.iter().map(|(i, rows)| async move {
        let key = ReportKey::of(&trials[*i], [("k", "k", "k")]);
        store.append(&trials[*i], rows, Some(&key)).await
    }))
    .await;
    for ((i, rows), result) in reports.iter().zip(results) {
        if *i == 7 {
            assert!(matches!(result, Err(StoreError::Query { .. })), "{result:?}");
            assert!(all(store, &trials[*i]).await.is_empty());
        } else {
            assert_eq!(result.expect("report"), Appended::Stored);
            let mut stored = all(store, &trials[*i]).await;
            stored.sort_by(|a, b| a.metric_name.cmp(&b.metric_name));
            let mut want = rows.clone();
            want.sort_by(|a, b| a.metric_name.cmp(&b.metric_name));
            assert_eq!(stored, want, "trial {i}");
        }
    }
}

/// Reports that arrive together (on SQLite: one group transaction) keep every report's own
/// outcome: two reports of one trial both land and their summaries merge, a copy of a keyed
/// report is a duplicate, and rows of different trials stay apart.
pub async fn concurrent_reports_keep_their_own_outcome(store: &dyn ObservationStore) {
    let (a, b) = ("suite-group-a", "suite-group-b");
    fresh(store, a).await;
    fresh(store, b).await;
    let first = [row("2024-07-01T00:00:00Z", "loss", "0.5")];
    let second = [row("2024-07-01T00:00:01Z", "loss", "0.3")];
    let other = [row("2024-07-01T00:00:02Z", "loss", "0.9")];
    let key = |trial: &str, v: &str| ReportKey::of(trial, [("t", "loss", v)]);
    let (k1, k2, k3) = (key(a, "0.5"), key(a, "0.3"), key(b, "0.9"));
    let results = futures::future::join_all([
        store.append(a, &first, Some(&k1)),
        store.append(a, &second, Some(&k2)),
        store.append(a, &first, Some(&k1)),
        store.append(b, &other, Some(&k3)),
        store.append(a, &second, None),
    ])
    .await;
    let results: Vec<Appended> = results.into_iter().map(|r| r.expect("append")).collect();
    // Exactly one of the two copies of the first report is stored.
    assert_eq!(
        results.iter().filter(|r| **r == Appended::Duplicate).count(),
        1,
        "{results:?}"
    );
    assert_eq!(results[1], Appended::Stored);
    assert_eq!(results[3], Appended::Stored);
    assert_eq!(results[4], Appended::Stored);
    assert_eq!(all(store, a).await.len(), 3);
    assert_eq!(all(store, b).await, other);
    let goals = [
        MetricGoal::new("loss", Goal::Min),
        MetricGoal::new("loss", Goal::Max),
    ];
    let got = store
        .best_values(&TrialSet::Names(vec![a.into(), b.into()]), &goals)
        .await
        .expect("best values");
    assert_eq!(
        got,
        [
            best(a, "loss", Goal::Min, "0.3"),
            best(a, "loss", Goal::Max, "0.5"),
            best(b, "loss", Goal::Min, "0.9"),
            best(b, "loss", Goal::Max, "0.9"),
        ]
    );
}

/// Several reports of one trial that arrive together leave the rows, summaries and
/// counts that the same reports written one after another leave. On SQLite they are one
/// group, written with a statement per table rather than per report, in the order they
/// arrived: ties in min and max keep the first report's text, a tie in time makes the
/// last one the latest. On a server each report is its own transaction and concurrent
/// ones have no order, so only what does not depend on it is checked there.
pub async fn reports_written_together_as_if_one_by_one(store: &dyn ObservationStore) {
    let (trial, other) = ("suite-together", "suite-together-other");
    fresh(store, trial).await;
    fresh(store, other).await;
    let reports = [
        vec![row("2024-08-01T00:00:05Z", "m", "5")],
        vec![
            row("2024-08-01T00:00:01Z", "m", "1"),
            row("2024-08-01T00:00:01Z", "n", "x"),
        ],
        vec![row("2024-08-01T00:00:01Z", "m", "1.0")],
        vec![
            row("2024-08-01T00:00:05Z", "m", "9"),
            row("2024-08-01T00:00:05Z", "m", "9.0"),
        ],
    ];
    let keys: Vec<ReportKey> = (0..reports.len())
        .map(|i| ReportKey::of(trial, [("together", "m", i.to_string().as_str())]))
        .collect();
    let other_rows = [row("2024-08-01T00:00:03Z", "m", "3")];
    let mut writes: Vec<_> = reports
        .iter()
        .zip(&keys)
        .map(|(rows, key)| store.append_and_count(trial, rows, Some(key)))
        .collect();
    writes.insert(2, store.append_and_count(other, &other_rows, None));
    let answers: Vec<_> = futures::future::join_all(writes)
        .await
        .into_iter()
        .map(|answer| answer.expect("report"))
        .collect();
    assert!(
        answers.iter().all(|(appended, _)| *appended == Appended::Stored),
        "{answers:?}"
    );
    // Each count includes the report's own rows and at most all of its trial's.
    let own = [1, 2, 1, 1, 2];
    for (i, (_, count)) in answers.iter().enumerate() {
        let count = count.expect("a count");
        let most = if i == 2 { 1 } else { 6 };
        assert!((own[i]..=most).contains(&count), "answer {i}: {count}");
    }
    assert_eq!(store.count(trial).await.expect("count"), 6);
    let mut got: Vec<(String, String)> = all(store, trial)
        .await
        .into_iter()
        .map(|r| (r.metric_name, r.value))
        .collect();
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(m, v)| ((*m).to_owned(), (*v).to_owned()))
            .collect()
    };
    let in_order = pairs(&[
        ("m", "1"),
        ("n", "x"),
        ("m", "1.0"),
        ("m", "5"),
        ("m", "9"),
        ("m", "9.0"),
    ]);
    let goals = [
        MetricGoal::new("m", Goal::Min),
        MetricGoal::new("m", Goal::Max),
        MetricGoal::new("m", Goal::Latest),
        MetricGoal::new("n", Goal::Latest),
    ];
    let best_of = |trial: &str| {
        let goals = &goals;
        let trial = trial.to_owned();
        async move {
            store
                .best_values(&TrialSet::Names(vec![trial]), goals)
                .await
                .expect("best values")
                .into_iter()
                .map(|b| b.value)
                .collect::<Vec<_>>()
        }
    };
    let best = best_of(trial).await;
    if store.backend() == "sqlite" {
        assert_eq!(answers.last().and_then(|(_, n)| *n), Some(6));
        assert_eq!(got, in_order);
        assert_eq!(best, ["1", "9", "9.0", "x"]);
    } else {
        let mut expected = in_order;
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        assert!(["1", "1.0"].contains(&best[0].as_str()), "{best:?}");
        assert_eq!(best[1], "9");
        assert!(["5", "9.0"].contains(&best[2].as_str()), "{best:?}");
        assert_eq!(best[3], "x");
    }
    assert_eq!(best_of(other).await, ["3", "3", "3"]);
    // The same reports again: every one is a retry, and nothing changes.
    let again = futures::future::join_all(
        reports
            .iter()
            .zip(&keys)
            .map(|(rows, key)| store.append_and_count(trial, rows, Some(key))),
    )
    .await;
    for answer in again {
        assert_eq!(answer.expect("retry"), (Appended::Duplicate, Some(6)));
    }
    assert_eq!(best_of(trial).await, best);
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

/// A report sent again with the same key writes nothing; another key, or none, writes.
pub async fn keyed_report_is_stored_once(store: &dyn ObservationStore) {
    let trial = "suite-idempotent";
    fresh(store, trial).await;
    let rows = [
        row("2024-05-01T10:00:00Z", "loss", "0.5"),
        row("2024-05-01T10:00:01Z", "loss", "0.4"),
    ];
    let key = ReportKey::of(trial, [("2024-05-01T10:00:00Z", "loss", "0.5")]);
    assert_eq!(
        store.append(trial, &rows, Some(&key)).await.expect("first"),
        Appended::Stored
    );
    assert_eq!(
        store.append(trial, &rows, Some(&key)).await.expect("retry"),
        Appended::Duplicate
    );
    assert_eq!(all(store, trial).await, rows);
    // The same key for another trial is another report.
    let other = "suite-idempotent-other";
    fresh(store, other).await;
    assert_eq!(
        store.append(other, &rows, Some(&key)).await.expect("other trial"),
        Appended::Stored
    );
    // A different key, or none, stores again.
    let key2 = ReportKey::of(trial, [("2024-05-01T10:00:01Z", "loss", "0.4")]);
    assert_eq!(
        store
            .append(trial, &rows[..1], Some(&key2))
            .await
            .expect("second key"),
        Appended::Stored
    );
    store.report(trial, &rows[..1]).await.expect("unkeyed");
    assert_eq!(all(store, trial).await.len(), 4);
    // Deleting the trial forgets its keys: the same report is stored again.
    store.delete(trial).await.expect("delete");
    assert_eq!(
        store
            .append(trial, &rows, Some(&key))
            .await
            .expect("after delete"),
        Appended::Stored
    );
    assert_eq!(all(store, trial).await, rows);
    // Concurrent copies of one report: exactly one is stored.
    let concurrent = "suite-idempotent-concurrent";
    fresh(store, concurrent).await;
    let key3 = ReportKey::of(concurrent, [("x", "y", "z")]);
    let results =
        futures::future::join_all((0..4).map(|_| store.append(concurrent, &rows, Some(&key3)))).await;
    let stored = results
        .into_iter()
        .map(|result| result.expect("concurrent append"))
        .filter(|appended| *appended == Appended::Stored)
        .count();
    assert_eq!(stored, 1);
    assert_eq!(all(store, concurrent).await, rows);
}

/// Bulk reads by a list of names (deduplicated, more than one statement's worth) and by
/// prefix (with LIKE/GLOB wildcards in it taken literally).
pub async fn bulk_read_by_names_and_prefix(store: &dyn ObservationStore) {
    let trials: Vec<String> = (0..3).map(|i| format!("suite-bulk_%*-{i}")).collect();
    let decoy = "suite-bulkX%*-9";
    for trial in trials.iter().map(String::as_str).chain([decoy]) {
        fresh(store, trial).await;
        store
            .report(
                trial,
                &[
                    row("2024-05-01T10:00:01Z", "loss", "0.2"),
                    row("2024-05-01T10:00:00Z", "loss", "0.3"),
                    row("2024-05-01T10:00:00Z", "accuracy", trial),
                ],
            )
            .await
            .expect("report");
    }
    let values = |got: BTreeMap<String, Vec<MetricRow>>| {
        got.into_iter()
            .map(|(trial, rows)| (trial, rows.into_iter().map(|r| r.value).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    let expected_all: Vec<(String, Vec<String>)> = trials
        .iter()
        .map(|t| (t.clone(), vec!["0.3".to_owned(), t.clone(), "0.2".to_owned()]))
        .collect();

    let by_prefix = store
        .get_trials(&TrialSet::Prefix("suite-bulk_%*-".into()), None)
        .await
        .expect("by prefix");
    assert_eq!(values(by_prefix), expected_all);

    let mut names: Vec<String> = trials.clone();
    names.push(trials[0].clone());
    names.push("suite-bulk-missing".into());
    // Pad past one statement's worth of names.
    names.extend((0..crate::store::NAMES_PER_QUERY).map(|i| format!("suite-bulk-none-{i}")));
    let by_names = store
        .get_trials(&TrialSet::Names(names), None)
        .await
        .expect("by names");
    assert_eq!(values(by_names), expected_all);

    let loss = store
        .get_trials(&TrialSet::Names(vec![trials[1].clone()]), Some("loss"))
        .await
        .expect("one metric");
    assert_eq!(
        values(loss),
        [(trials[1].clone(), vec!["0.3".to_owned(), "0.2".to_owned()])]
    );
    let none = store
        .get_trials(&TrialSet::Names(Vec::new()), None)
        .await
        .expect("empty list");
    assert!(none.is_empty());
}

fn best(trial: &str, metric: &str, goal: Goal, value: &str) -> BestValue {
    BestValue {
        trial: trial.to_owned(),
        metric: metric.to_owned(),
        goal,
        value: value.to_owned(),
    }
}

/// Min/max pick numbers only (text kept as reported, first on ties), latest picks the
/// latest row of any value; trials without a number for a min/max goal are left out.
pub async fn best_values_follow_goals(store: &dyn ObservationStore) {
    let (a, b, c) = ("suite-best-a", "suite-best-b", "suite-best-c");
    for trial in [a, b, c] {
        fresh(store, trial).await;
    }
    store
        .report(
            a,
            &[
                row("2024-05-01T10:00:00Z", "accuracy", "0.50"),
                row("2024-05-01T10:00:01Z", "accuracy", "0.930"),
                row("2024-05-01T10:00:02Z", "accuracy", "0.93"),
                row("2024-05-01T10:00:03Z", "accuracy", "unavailable"),
                row("2024-05-01T10:00:04Z", "accuracy", "1e-2"),
                row("2024-05-01T10:00:00Z", "loss", "-7.5E-05"),
                row("2024-05-01T10:00:09Z", "loss", "inf"),
                row("2024-05-01T10:00:05Z", "loss", "+3"),
            ],
        )
        .await
        .expect("report a");
    store
        .report(
            b,
            &[
                row("2024-05-01T10:00:00Z", "accuracy", "unavailable"),
                row("2024-05-01T10:00:00Z", "loss", "2"),
                row("2024-05-01T10:00:00Z", "loss", "1"),
            ],
        )
        .await
        .expect("report b");
    store
        .report(c, &[row("2024-05-01T10:00:00Z", "f1", "0.1")])
        .await
        .expect("report c");
    let goals = [
        MetricGoal::new("accuracy", Goal::Max),
        MetricGoal::new("accuracy", Goal::Min),
        MetricGoal::new("accuracy", Goal::Latest),
        MetricGoal::new("loss", Goal::Min),
        MetricGoal::new("loss", Goal::Latest),
    ];
    let got = store
        .best_values(&TrialSet::Prefix("suite-best-".into()), &goals)
        .await
        .expect("best values");
    assert_eq!(
        got,
        [
            best(a, "accuracy", Goal::Max, "0.930"),
            best(a, "accuracy", Goal::Min, "1e-2"),
            best(a, "accuracy", Goal::Latest, "1e-2"),
            best(a, "loss", Goal::Min, "-7.5E-05"),
            best(a, "loss", Goal::Latest, "inf"),
            best(b, "accuracy", Goal::Latest, "unavailable"),
            best(b, "loss", Goal::Min, "1"),
            best(b, "loss", Goal::Latest, "1"),
        ]
    );
    let by_names = store
        .best_values(
            &TrialSet::Names(vec![b.into(), "suite-best-none".into()]),
            &goals[3..4],
        )
        .await
        .expect("by names");
    assert_eq!(by_names, [best(b, "loss", Goal::Min, "1")]);
    assert_eq!(
        store
            .best_values(&TrialSet::Names(vec![a.into()]), &[])
            .await
            .expect("no goals"),
        []
    );
}

/// Summaries combine reports (a later report can beat or tie the best so far) and go
/// away with the trial.
pub async fn best_values_across_reports_and_delete(store: &dyn ObservationStore) {
    let trial = "suite-best-reports";
    fresh(store, trial).await;
    let goals = [
        MetricGoal::new("m", Goal::Min),
        MetricGoal::new("m", Goal::Max),
        MetricGoal::new("m", Goal::Latest),
    ];
    let get = || async {
        store
            .best_values(&TrialSet::Names(vec![trial.into()]), &goals)
            .await
            .expect("best values")
            .into_iter()
            .map(|b| b.value)
            .collect::<Vec<_>>()
    };
    store
        .report(trial, &[row("2024-05-01T10:00:05Z", "m", "5")])
        .await
        .expect("first");
    assert_eq!(get().await, ["5", "5", "5"]);
    // Older time, larger and smaller values: min and max move, latest stays.
    store
        .report(
            trial,
            &[
                row("2024-05-01T10:00:01Z", "m", "9"),
                row("2024-05-01T10:00:01Z", "m", "1"),
            ],
        )
        .await
        .expect("second");
    assert_eq!(get().await, ["1", "9", "5"]);
    // Ties keep the first; an equal time is a later latest.
    store
        .report(
            trial,
            &[
                row("2024-05-01T10:00:05Z", "m", "1.0"),
                row("2024-05-01T10:00:02Z", "m", "9.0"),
            ],
        )
        .await
        .expect("third");
    assert_eq!(get().await, ["1", "9", "1.0"]);
    // Non-numbers never become min or max.
    store
        .report(trial, &[row("2024-05-01T10:00:06Z", "m", "NaN")])
        .await
        .expect("fourth");
    assert_eq!(get().await, ["1", "9", "NaN"]);
    store.delete(trial).await.expect("delete");
    assert_eq!(get().await, Vec::<String>::new());
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

/// A database of its own on a real server, created from an admin URL (whose user may
/// create databases) and dropped by [`ScratchDb::drop_database`].
#[derive(Debug)]
pub struct ScratchDb {
    /// The admin URL it was made from.
    pub admin_url: String,
    /// The URL of the new database.
    pub url: String,
    /// Its name (`katib_test_<random>`).
    pub name: String,
}

impl ScratchDb {
    /// Creates `katib_test_<random>` on the server of `admin_url` (MySQL or PostgreSQL).
    pub async fn create(admin_url: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "katib_test_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        admin_exec(admin_url, &format!("CREATE DATABASE {name}")).await;
        let (base, query) = admin_url
            .split_once('?')
            .map_or((admin_url, None), |(base, query)| (base, Some(query)));
        let authority_end = base.find("://").map_or(0, |i| i + 3);
        let path_start = base[authority_end..]
            .find('/')
            .map_or(base.len(), |i| authority_end + i);
        let mut url = format!("{}/{name}", &base[..path_start]);
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        Self {
            admin_url: admin_url.to_owned(),
            url,
            name,
        }
    }

    /// Drops the database.
    pub async fn drop_database(self) {
        let force = if self.admin_url.starts_with("postgres") {
            " WITH (FORCE)"
        } else {
            ""
        };
        admin_exec(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {}{force}", self.name),
        )
        .await;
    }
}

/// Runs one statement on the server of `url` (a name we generated, never user input).
async fn admin_exec(url: &str, statement: &str) {
    use crate::store::{MySqlStore, PgStore};
    let statement = sqlx::AssertSqlSafe(statement.to_owned());
    if url.starts_with("postgres") {
        let store = PgStore::connect(url).await.expect("connect as admin");
        sqlx::raw_sql(statement)
            .execute(store.pool())
            .await
            .expect("admin statement");
        store.close().await;
    } else {
        let store = MySqlStore::connect(url).await.expect("connect as admin");
        sqlx::raw_sql(statement)
            .execute(store.pool())
            .await
            .expect("admin statement");
        store.close().await;
    }
}

/// Katib's own DDL and a few rows the way Katib's db-manager writes them (MySQL:
/// `DATETIME(6)` text; PostgreSQL: RFC3339Nano text), on a database with no sqlx
/// migration table: what a running Katib installation has.
const MYSQL_KATIB: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS observation_logs (trial_name VARCHAR(255) NOT NULL, \
     id INT AUTO_INCREMENT PRIMARY KEY, time DATETIME(6), \
     metric_name VARCHAR(255) NOT NULL, value TEXT NOT NULL)",
    "INSERT INTO observation_logs (trial_name, time, metric_name, value) VALUES \
     ('katib-trial', '2024-05-01 10:00:00.25', 'accuracy', '0.5'), \
     ('katib-trial', '2024-05-01 10:00:01', 'accuracy', '0.75'), \
     ('katib-trial', '2024-05-01 10:00:02', 'accuracy', '0.6'), \
     ('katib-trial', NULL, 'accuracy', '0.99'), \
     ('katib-trial', '2024-05-01 10:00:03', 'loss', 'unavailable')",
];
const POSTGRES_KATIB: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS observation_logs (trial_name VARCHAR(255) NOT NULL, \
     id serial PRIMARY KEY, time TIMESTAMP(6), metric_name VARCHAR(255) NOT NULL, \
     value TEXT NOT NULL)",
    "INSERT INTO observation_logs (trial_name, time, metric_name, value) VALUES \
     ('katib-trial', '2024-05-01T10:00:00.25Z', 'accuracy', '0.5'), \
     ('katib-trial', '2024-05-01T10:00:01Z', 'accuracy', '0.75'), \
     ('katib-trial', '2024-05-01T10:00:02Z', 'accuracy', '0.6'), \
     ('katib-trial', NULL, 'accuracy', '0.99'), \
     ('katib-trial', '2024-05-01T10:00:03Z', 'loss', 'unavailable')",
];
const MYSQL_POISON: &[&str] = &[
    "CREATE TRIGGER katib_test_poison BEFORE INSERT ON observation_logs \
     FOR EACH ROW BEGIN IF NEW.value = 'poison' THEN \
     SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poisoned row'; END IF; END",
];
const MYSQL_UNPOISON: &str = "DROP TRIGGER katib_test_poison";
const POSTGRES_POISON: &[&str] = &[
    "CREATE OR REPLACE FUNCTION katib_test_poison() RETURNS trigger AS $$ \
     BEGIN IF NEW.value = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; \
     RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER katib_test_poison BEFORE INSERT ON observation_logs \
     FOR EACH ROW EXECUTE FUNCTION katib_test_poison()",
];
const POSTGRES_UNPOISON: &str = "DROP TRIGGER katib_test_poison ON observation_logs";

/// The whole conformance suite on a real MySQL/MariaDB or PostgreSQL server, in a
/// scratch database made from `admin_url` and dropped afterwards: adopting a database
/// Katib created (its rows readable, metric summaries backfilled from them), every
/// [`run_all`] check, atomicity against a failing trigger, re-opening, and a re-run of
/// the migrations.
pub async fn on_server(admin_url: &str) {
    let scratch = ScratchDb::create(admin_url).await;
    let postgres = admin_url.starts_with("postgres");
    let (katib, poison, unpoison) = if postgres {
        (POSTGRES_KATIB, POSTGRES_POISON, POSTGRES_UNPOISON)
    } else {
        (MYSQL_KATIB, MYSQL_POISON, MYSQL_UNPOISON)
    };
    for statement in katib {
        admin_exec(&scratch.url, statement).await;
    }

    let store = open_store(&scratch.url).await.expect("adopt Katib's database");
    assert_eq!(
        all(&*store, "katib-trial").await,
        [
            row("2024-05-01T10:00:00.25Z", "accuracy", "0.5"),
            row("2024-05-01T10:00:01Z", "accuracy", "0.75"),
            row("2024-05-01T10:00:02Z", "accuracy", "0.6"),
            row("2024-05-01T10:00:03Z", "loss", "unavailable"),
        ],
        "Katib's rows (the one without a time is skipped, as Katib does)"
    );
    let backfilled = store
        .best_values(
            &TrialSet::Names(vec!["katib-trial".into()]),
            &[
                MetricGoal::new("accuracy", Goal::Max),
                MetricGoal::new("accuracy", Goal::Latest),
                MetricGoal::new("loss", Goal::Min),
                MetricGoal::new("loss", Goal::Latest),
            ],
        )
        .await
        .expect("backfilled summaries");
    assert_eq!(
        backfilled,
        [
            best("katib-trial", "accuracy", Goal::Max, "0.75"),
            best("katib-trial", "accuracy", Goal::Latest, "0.6"),
            best("katib-trial", "loss", Goal::Latest, "unavailable"),
        ]
    );

    run_all(&*store).await;
    let (experiments, _) = crate::experiments::open_experiment_store(&scratch.url)
        .await
        .expect("experiment store");
    experiment_store(&*experiments).await;

    for statement in poison {
        admin_exec(&scratch.url, statement).await;
    }
    report_is_atomic(&*store, "poison").await;
    admin_exec(&scratch.url, unpoison).await;
    store.close().await;

    reopen_keeps_data(&scratch.url).await;
    let checked = crate::store::open_store_with(&scratch.url, crate::store::Init::CheckOnly)
        .await
        .expect("check-only open of a migrated database");
    checked.close().await;
    scratch.drop_database().await;
}

/// The experiment store's checks ([`crate::ExperimentStore`]): upsert keeps `created` and
/// a known `run_dir`, list order and namespace filter, trial rows in `seq` order with
/// non-finite objectives stored as NULL, trial bodies scoped to their experiment, change
/// polling, and delete returning the trials' names.
pub async fn experiment_store(store: &dyn crate::ExperimentStore) {
    use crate::{ExperimentRecord, TrialRecord};
    let exp = |ns: &str, name: &str, created: &str| ExperimentRecord {
        namespace: ns.into(),
        name: name.into(),
        status: "Running".into(),
        summary: "{}".into(),
        body: format!("{{\"metadata\":{{\"name\":\"{name}\"}}}}"),
        run_dir: Some("/tmp/run".into()),
        created: created.into(),
        updated: created.into(),
    };
    let trial = |name: &str, seq: i64, objective: Option<f64>| TrialRecord {
        name: name.into(),
        seq,
        status: "Succeeded".into(),
        objective,
        row: format!("{{\"n\":\"{name}\"}}"),
        body: "{}".into(),
        updated: "2026-01-01T00:00:00Z".into(),
    };
    store
        .put_experiment(&exp("default", "a", "2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    store
        .put_experiment(&exp("other", "b", "2026-01-02T00:00:00Z"))
        .await
        .unwrap();
    let mut again = exp("default", "a", "2026-03-01T00:00:00Z");
    again.status = "Succeeded".into();
    again.run_dir = None;
    store.put_experiment(&again).await.unwrap();
    let all = store.list_experiments(None).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["b", "a"]
    );
    let a = store.get_experiment("default", "a").await.unwrap().unwrap();
    assert_eq!(a.created, "2026-01-01T00:00:00Z");
    assert_eq!(a.updated, "2026-03-01T00:00:00Z");
    assert_eq!(a.status, "Succeeded");
    assert_eq!(a.run_dir.as_deref(), Some("/tmp/run"));
    assert_eq!(a.body, "{\"metadata\":{\"name\":\"a\"}}");
    let other = store.list_experiments(Some("other")).await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].namespace, "other");
    assert!(store.get_experiment("default", "zzz").await.unwrap().is_none());

    store
        .put_trials(
            "default",
            "a",
            &[trial("a-2", 1, Some(0.5)), trial("a-1", 0, Some(f64::NAN))],
        )
        .await
        .unwrap();
    store
        .put_trials("default", "a", &[trial("a-2", 1, Some(0.7))])
        .await
        .unwrap();
    store.put_trials("default", "a", &[]).await.unwrap();
    let rows = store.trial_rows("default", "a").await.unwrap();
    assert_eq!(
        rows,
        [
            ("a-1".to_string(), "{\"n\":\"a-1\"}".to_string()),
            ("a-2".to_string(), "{\"n\":\"a-2\"}".to_string())
        ]
    );
    assert_eq!(
        store.get_trial("default", "a", "a-1").await.unwrap().as_deref(),
        Some("{}")
    );
    assert!(store.get_trial("default", "b", "a-1").await.unwrap().is_none());
    // A flush larger than one statement's chunk: every snapshot lands, in seq order.
    let many: Vec<_> = (0..61)
        .map(|i| trial(&format!("m-{i:02}"), i, Some(i as f64)))
        .collect();
    store.put_trials("default", "m", &many).await.unwrap();
    let rows = store.trial_rows("default", "m").await.unwrap();
    let names: Vec<String> = rows.into_iter().map(|(name, _)| name).collect();
    let expected: Vec<String> = (0..61).map(|i| format!("m-{i:02}")).collect();
    assert_eq!(names, expected);
    let changed = store.changed_since("2026-01-01T12:00:00Z").await.unwrap();
    assert_eq!(
        changed
            .iter()
            .map(|c| (c.0.as_str(), c.1.as_str()))
            .collect::<Vec<_>>(),
        [("other", "b"), ("default", "a")]
    );

    let mut gone = store.delete_experiment("default", "a").await.unwrap().unwrap();
    gone.sort();
    assert_eq!(gone, ["a-1", "a-2"]);
    assert!(store.delete_experiment("default", "a").await.unwrap().is_none());
    assert!(store.trial_rows("default", "a").await.unwrap().is_empty());
    assert_eq!(store.list_experiments(None).await.unwrap().len(), 1);
}
