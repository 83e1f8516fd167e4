//! Early stopping on a synthetic learning-curve workload: total trial-steps spent and best
//! value found with no early stopping, medianstop and ASHA, over 10 seeds.
//!
//! Run with `cargo bench --bench early_stopping` (about a second; no processes are started).
//!
//! The workload: random search, 60 trials, 4 in parallel, 81 steps per complete trial,
//! accuracy maximised. A configuration `(lr, momentum, width)` sets the curve
//! `a(t) = a_inf - (a_inf - 0.1) * exp(-t / tau) + noise`: `a_inf` peaks near `lr = 0.01`,
//! smaller learning rates learn more slowly (`tau` grows from 2 steps at `lr = 1` to 14
//! steps at `lr = 1e-4` in workload A, to 42 in the stress workload B, so curves cross), and
//! learning rates above 0.2 diverge (accuracy falls back towards 0.1). Noise is Gaussian,
//! sd 0.01 per step. Each seed draws the configurations and the noise once; every strategy
//! sees the same trials in the same order.
//!
//! The simulation runs the same code as a real run: rules come from
//! `katib_suggestion::earlystopping` (what the EarlyStopping service answers, computed from
//! the trials' curves so far), and each trial's collector is a
//! `katib_metrics_collector::StopRules` fed one value per step, refreshing its rules when it
//! asks (at a checkpoint; with no rules, at every report here, at most every 2 s in a real
//! run). Rules are also computed when a trial is created, as the runtime attaches them.
//! "medianstop (Katib)" is Katib's behaviour: rules fixed when the trial is created, never
//! refreshed (Katib's collector evaluates a rule once; with a fixed threshold and the best
//! value so far, evaluating once or on every step gives the same answer).

use std::time::Instant;

use katib_api::pb;
use katib_metrics_collector::{ObjectiveType, StopRule, StopRules, Verdict};
use katib_suggestion::earlystopping::{CurvePoint, EarlyStoppingSettings, Objective, TrialCurve};
use pb::trial_status::TrialConditionType as Condition;

const SEEDS: u64 = 10;
const TRIALS: usize = 60;
const PARALLEL: usize = 4;
const STEPS: usize = 81;
const NOISE: f64 = 0.01;
const METRIC: &str = "accuracy";

/// SplitMix64: a small, fixed generator so the workload never changes with a crate version.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A trial's whole learning curve (what it would report if never stopped). `tau_spread`
/// sets how much slower the smallest learning rates learn than the largest (in steps).
fn learning_curve(rng: &mut Rng, tau_spread: f64) -> Vec<f64> {
    let (u_lr, momentum, width) = (rng.uniform(), rng.uniform(), rng.uniform());
    let log_lr = -4.0 + 4.0 * u_lr; // lr in [1e-4, 1]
    let quality = (-(log_lr + 2.0).powi(2)).exp()
        * (0.6 + 0.4 * (-(momentum - 0.7).powi(2) / 0.1).exp())
        * (0.8 + 0.2 * width);
    let a_inf = 0.55 + 0.4 * quality;
    let tau = 2.0 + tau_spread * (1.0 - u_lr).powi(2);
    let diverges = log_lr > 0.2_f64.log10();
    (1..=STEPS)
        .map(|t| {
            let t = t as f64;
            let clean = if diverges {
                0.1 + 0.25 * (1.0 - (-t / 2.0).exp()) * (-t / 15.0).exp()
            } else {
                a_inf - (a_inf - 0.1) * (-t / tau).exp()
            };
            clean + NOISE * rng.normal()
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Running,
    Succeeded,
    EarlyStopped,
}

struct SimTrial {
    curve: Vec<f64>,
    steps: usize,
    state: State,
    rules: StopRules,
}

struct Strategy {
    name: &'static str,
    settings: Option<EarlyStoppingSettings>,
    refresh: bool,
}

struct Outcome {
    steps: usize,
    best: f64,
    stopped: usize,
}

fn spec(name: &str, settings: &[(&str, &str)]) -> EarlyStoppingSettings {
    let spec = pb::EarlyStoppingSpec {
        algorithm_name: name.into(),
        algorithm_settings: settings
            .iter()
            .map(|(n, v)| pb::EarlyStoppingSetting {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
    };
    match EarlyStoppingSettings::from_spec(&spec) {
        Ok(s) => s,
        Err(e) => panic!("invalid settings for {name}: {e}"),
    }
}

/// What the EarlyStopping service would answer now.
fn service_rules(settings: &EarlyStoppingSettings, trials: &[SimTrial]) -> Vec<StopRule> {
    let objective = Objective {
        metric: METRIC.into(),
        maximize: true,
    };
    let curves: Vec<TrialCurve> = trials
        .iter()
        .enumerate()
        .filter(|(_, t)| settings.wants(condition(t.state)))
        .map(|(i, t)| TrialCurve {
            name: format!("t{i}"),
            condition: condition(t.state),
            points: t.curve[..t.steps]
                .iter()
                .enumerate()
                .map(|(s, &value)| CurvePoint {
                    resource: (s + 1) as f64,
                    value,
                })
                .collect(),
        })
        .collect();
    settings
        .rules(&objective, &curves)
        .iter()
        .map(|r| StopRule::from_pb(r).unwrap_or_else(|e| panic!("service produced a bad rule: {e}")))
        .collect()
}

fn condition(state: State) -> Condition {
    match state {
        State::Running => Condition::Running,
        State::Succeeded => Condition::Succeeded,
        State::EarlyStopped => Condition::Earlystopped,
    }
}

fn simulate(curves: &[Vec<f64>], strategy: &Strategy) -> Outcome {
    let mut trials: Vec<SimTrial> = Vec::with_capacity(curves.len());
    let mut running: Vec<usize> = Vec::new();
    let mut steps = 0;
    loop {
        while running.len() < PARALLEL && trials.len() < curves.len() {
            let rules = strategy
                .settings
                .as_ref()
                .map(|s| service_rules(s, &trials))
                .unwrap_or_default();
            trials.push(SimTrial {
                curve: curves[trials.len()].clone(),
                steps: 0,
                state: State::Running,
                rules: StopRules::new(METRIC, ObjectiveType::Maximize, None, rules),
            });
            running.push(trials.len() - 1);
        }
        if running.is_empty() {
            break;
        }
        let mut still = Vec::with_capacity(running.len());
        for &i in &running {
            let value = trials[i].curve[trials[i].steps];
            trials[i].steps += 1;
            steps += 1;
            // As `EarlyStopper::check` does: refresh when asked, then decide.
            let stop = match trials[i]
                .rules
                .observe(&[(METRIC.to_string(), value.to_string())])
            {
                Verdict::Continue => false,
                Verdict::Stop(_) => true,
                Verdict::Refresh(_) => {
                    if let (true, Some(settings)) = (strategy.refresh, &strategy.settings) {
                        let fresh = service_rules(settings, &trials);
                        trials[i].rules.set_rules(fresh);
                    }
                    trials[i].rules.evaluate().is_some()
                }
            };
            let t = &mut trials[i];
            if stop {
                t.state = State::EarlyStopped;
            } else if t.steps == STEPS {
                t.state = State::Succeeded;
            } else {
                still.push(i);
            }
        }
        running = still;
    }
    let best = trials
        .iter()
        .map(|t| t.curve[..t.steps].iter().copied().fold(f64::MIN, f64::max))
        .fold(f64::MIN, f64::max);
    Outcome {
        steps,
        best,
        stopped: trials.iter().filter(|t| t.state == State::EarlyStopped).count(),
    }
}

fn strategies() -> Vec<Strategy> {
    let asha = |min: &str| spec("asha", &[("min_resource", min), ("max_resource", "81")]);
    vec![
        Strategy {
            name: "none",
            settings: None,
            refresh: false,
        },
        Strategy {
            name: "medianstop (Katib: mean, rules fixed at creation)",
            settings: Some(spec("medianstop", &[])),
            refresh: false,
        },
        Strategy {
            name: "medianstop (mean, refreshed)",
            settings: Some(spec("medianstop", &[])),
            refresh: true,
        },
        Strategy {
            name: "medianstop (rule: median, refreshed)",
            settings: Some(spec("medianstop", &[("rule", "median")])),
            refresh: true,
        },
        Strategy {
            name: "asha (eta 3, min_resource 1)",
            settings: Some(asha("1")),
            refresh: true,
        },
        Strategy {
            name: "asha (eta 3, min_resource 3)",
            settings: Some(asha("3")),
            refresh: true,
        },
        Strategy {
            name: "asha (eta 3, min_resource 9 = default max_resource/eta^2)",
            settings: Some(asha("9")),
            refresh: true,
        },
    ]
}

/// Runs every strategy on `SEEDS` draws of a workload and prints a table; returns the
/// ASHA rows as (name, share of the steps in %, worst-seed gap in %).
fn report(title: &str, tau_spread: f64) -> Vec<(&'static str, f64, f64)> {
    let strategies = strategies();
    let workloads: Vec<Vec<Vec<f64>>> = (0..SEEDS)
        .map(|seed| {
            let mut rng = Rng(0x6b61_7469_6200 + seed);
            (0..TRIALS)
                .map(|_| learning_curve(&mut rng, tau_spread))
                .collect()
        })
        .collect();
    let results: Vec<Vec<Outcome>> = strategies
        .iter()
        .map(|s| workloads.iter().map(|w| simulate(w, s)).collect())
        .collect();
    let baseline = &results[0];
    let base_steps: usize = baseline.iter().map(|o| o.steps).sum();

    println!("### {title}\n");
    println!(
        "| strategy | trial-steps (sum of {SEEDS} seeds) | % of none | trials stopped (mean of {TRIALS}) | best accuracy (mean) | best vs none: mean gap | worst seed gap |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut asha = Vec::new();
    for (strategy, outcomes) in strategies.iter().zip(&results) {
        let steps: usize = outcomes.iter().map(|o| o.steps).sum();
        let share = 100.0 * steps as f64 / base_steps as f64;
        let gaps: Vec<f64> = outcomes
            .iter()
            .zip(baseline)
            .map(|(o, b)| 100.0 * (b.best - o.best) / b.best)
            .collect();
        let mean_gap = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let worst_gap = gaps.iter().copied().fold(f64::MIN, f64::max);
        let best = outcomes.iter().map(|o| o.best).sum::<f64>() / outcomes.len() as f64;
        let stopped = outcomes.iter().map(|o| o.stopped).sum::<usize>() as f64 / outcomes.len() as f64;
        println!(
            "| {} | {steps} | {share:.1}% | {stopped:.1} | {best:.4} | {mean_gap:.2}% | {worst_gap:.2}% |",
            strategy.name
        );
        if strategy.name.starts_with("asha") {
            asha.push((strategy.name, share, worst_gap));
        }
    }
    println!();
    asha
}

fn main() {
    let started = Instant::now();
    println!(
        "Early stopping on synthetic learning curves: {SEEDS} seeds x {TRIALS} trials of random search, {PARALLEL} in \
         parallel, {STEPS} steps per complete trial (asha: max_resource {STEPS}).\ncommand: cargo bench --bench early_stopping\n"
    );
    let main = report(
        "Workload A: smaller learning rates learn more slowly (tau 2-14 steps)",
        12.0,
    );
    report(
        "Workload B (stress): strong crossing, slow learners are the best (tau 2-42 steps)",
        40.0,
    );
    println!("Target on workload A: <= 40% of the steps of `none`, best within 2% of it on every seed.");
    for (name, share, gap) in main {
        let ok = share <= 40.0 && gap <= 2.0;
        println!(
            "- {name}: {share:.1}% of the steps, worst gap {gap:.2}%: {}",
            if ok { "met" } else { "NOT met" }
        );
    }
    println!("\n({:.2} s)", started.elapsed().as_secs_f64());
}
