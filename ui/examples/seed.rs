//! Seeds a SQLite database with one synthetic experiment of N trials (default 10,000) and
//! their objective curves, for the UI load test (`ui/web/e2e/load.mjs`):
//!
//!     cargo run -p katib-ui --example seed -- /tmp/load/katib.db 10000 10
//!
//! Trials follow the random example's search space; the objective is a smooth function of
//! the parameters plus noise; ~90 % succeed, ~5 % fail, ~5 % are early stopped.

use std::sync::Arc;

use katib_api::crd::{
    Condition, ExperimentStatus, Metric, NameValue, ObjectMeta, Observation, OptimalTrial, Trial, TrialSpec,
    TrialStatus,
};
use katib_db_manager::{MetricRow, ObservationStore, SqliteStore};
use katib_ui::Hub;
use katib_ui::record::Recorder;

const EXAMPLE: &str = include_str!("../../examples/random.yaml");

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn cond(t: &str) -> Condition {
    Condition {
        type_: t.into(),
        status: "True".into(),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).cloned().unwrap_or_else(|| "katib-load.db".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let points: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let store = Arc::new(SqliteStore::open(&format!("sqlite://{path}")).await?);
    let mut exp = katib_ui::check_yaml(&EXAMPLE.replace("name: random-example", "name: load-10k"))
        .map_err(|p| format!("{p:?}"))?;
    exp.spec.max_trial_count = Some(n as i32);
    let mut rec = Recorder::new(store.clone(), Hub::default(), None);
    let mut rng = Lcg(42);
    let opts = ["sgd", "adam", "rmsprop"];
    let t0 = jiff::Timestamp::from_second(1_700_000_000)?;
    let (mut best, mut best_name, mut best_params) = (f64::MIN, String::new(), Vec::new());
    let (mut ok, mut failed, mut stopped) = (0, 0, 0);
    let mut batch = Vec::new();
    for i in 0..n {
        let lr = 10f64.powf(-3.0 + rng.next() * 2.477);
        let momentum = 0.5 + rng.next() * 0.45;
        let opt = opts[(rng.next() * 3.0) as usize % 3];
        let name = format!("load-10k-{i:05}");
        let target = 0.95 - 0.08 * (lr.log10() + 1.2).powi(2) - 0.3 * (momentum - 0.8).powi(2)
            + if opt == "adam" { 0.03 } else { 0.0 }
            + (rng.next() - 0.5) * 0.04;
        let roll = rng.next();
        let (status, steps) = if roll < 0.05 {
            failed += 1;
            ("Failed", 0)
        } else if roll < 0.10 {
            stopped += 1;
            ("EarlyStopped", points / 2)
        } else {
            ok += 1;
            ("Succeeded", points)
        };
        let curve: Vec<f64> = (1..=steps)
            .map(|s| target * (1.0 - (-(s as f64) / 3.0).exp()))
            .collect();
        let rows: Vec<MetricRow> = curve
            .iter()
            .enumerate()
            .map(|(s, v)| {
                MetricRow::new(
                    t0 + jiff::SignedDuration::from_secs((i * 100 + s) as i64),
                    "accuracy",
                    format!("{v:.4}"),
                )
            })
            .collect();
        store.report(&name, &rows).await?;
        let last = curve.last().copied();
        let params = vec![
            NameValue {
                name: "lr".into(),
                value: format!("{lr}"),
            },
            NameValue {
                name: "momentum".into(),
                value: format!("{momentum}"),
            },
            NameValue {
                name: "optimizer".into(),
                value: opt.into(),
            },
        ];
        if let Some(v) = last
            && v > best
        {
            best = v;
            best_name = name.clone();
            best_params = params.clone();
        }
        let obs = last.map(|v| {
            let (lo, hi) = (curve[0], v);
            Observation {
                metrics: vec![Metric {
                    name: "accuracy".into(),
                    min: format!("{lo:.4}"),
                    max: format!("{hi:.4}"),
                    latest: format!("{v:.4}"),
                }],
            }
        });
        batch.push(Trial {
            api_version: "kubeflow.org/v1beta1".into(),
            kind: "Trial".into(),
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some("kubeflow".into()),
                ..Default::default()
            },
            spec: TrialSpec {
                objective: exp.spec.objective.clone(),
                parameter_assignments: params,
                ..Default::default()
            },
            status: Some(TrialStatus {
                start_time: Some("2026-01-01T00:00:00Z".into()),
                completion_time: Some("2026-01-01T00:01:00Z".into()),
                conditions: vec![cond("Created"), cond(status)],
                observation: obs,
                ..Default::default()
            }),
        });
        if batch.len() == 500 || i + 1 == n {
            if i < 500 {
                rec.experiment(&exp).await?;
            }
            rec.trials(&exp, &batch).await?;
            batch.clear();
        }
    }
    exp.status = Some(ExperimentStatus {
        conditions: vec![cond("Created"), cond("Succeeded")],
        trials: n as i32,
        trials_succeeded: ok,
        trials_failed: failed,
        trials_early_stopped: stopped,
        current_optimal_trial: Some(OptimalTrial {
            best_trial_name: best_name,
            parameter_assignments: best_params,
            observation: Observation {
                metrics: vec![Metric {
                    name: "accuracy".into(),
                    min: format!("{best:.4}"),
                    max: format!("{best:.4}"),
                    latest: format!("{best:.4}"),
                }],
            },
        }),
        ..Default::default()
    });
    rec.experiment(&exp).await?;
    println!("seeded {n} trials ({ok} succeeded, {failed} failed, {stopped} early stopped) into {path}");
    Ok(())
}
