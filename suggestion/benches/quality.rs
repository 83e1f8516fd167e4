//! Optimization quality: simple regret after `--budget` evaluations on the functions of
//! `katib_suggestion::testfunctions`, `--seeds` seeds each, for our algorithms (in process,
//! through the same `Algorithm::suggest` the gRPC service calls), merged with the peers' runs
//! written by `scripts/bench_peers.py` into one table of median regret and IQR.
//!
//! ```text
//! cargo bench -p katib-suggestion --bench quality -- \
//!     [--algorithms bayesianoptimization,random] [--functions all|branin,...] \
//!     [--seeds 10] [--budget 50] [--batch 1] [--out target/bench/ours.jsonl] \
//!     [--peers target/bench/peers.jsonl] [--report-only] [--set name=value ...] \
//!     [--label NAME]
//! ```
//! `--set` adds algorithm settings; `--label` records the runs under another name (to compare
//! variants of one algorithm).
//! Paths are relative to the repository root. Each run appends one JSON line to `--out` (runs already there are skipped, so adding an
//! algorithm such as `tpe` only runs that one); `--report-only` just prints the table.
//! `random_state` is the seed.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::time::Instant;

use katib_api::pb;
use katib_suggestion::testfunctions::{self, TestFunction};
use katib_suggestion::{Registry, SuggestRequest};
use serde_json::{Value, json};

struct Args {
    algorithms: Vec<String>,
    functions: Vec<String>,
    seeds: u64,
    budget: usize,
    batch: usize,
    out: String,
    peers: Vec<String>,
    report_only: bool,
    settings: Vec<(String, String)>,
    label: Option<String>,
}

/// A path relative to the repository root (`cargo bench` runs in the package's directory).
fn from_repo(path: &str) -> String {
    let p = std::path::Path::new(path);
    if p.is_absolute() {
        return path.to_owned();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(p)
        .to_string_lossy()
        .into_owned()
}

fn parse_args() -> Args {
    let mut a = Args {
        algorithms: vec!["bayesianoptimization".into(), "random".into()],
        functions: testfunctions::all().iter().map(|f| f.name.to_string()).collect(),
        seeds: 10,
        budget: 50,
        batch: 1,
        out: from_repo("target/bench/ours.jsonl"),
        peers: Vec::new(),
        report_only: false,
        settings: Vec::new(),
        label: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--algorithms" => a.algorithms = value().split(',').map(str::to_owned).collect(),
            "--functions" => {
                let v = value();
                if v != "all" {
                    a.functions = v.split(',').map(str::to_owned).collect();
                }
            }
            "--seeds" => a.seeds = value().parse().expect("--seeds"),
            "--budget" => a.budget = value().parse().expect("--budget"),
            "--batch" => a.batch = value().parse().expect("--batch"),
            "--out" => a.out = from_repo(&value()),
            "--peers" => a.peers.push(from_repo(&value())),
            "--report-only" => a.report_only = true,
            "--label" => a.label = Some(value()),
            "--set" => {
                let v = value();
                let (k, v) = v.split_once('=').expect("--set name=value");
                a.settings.push((k.into(), v.into()));
            }
            // `cargo bench` passes --bench.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// One run: the best value after each evaluation and the seconds spent suggesting.
fn run_one(
    registry: &Registry,
    algorithm: &str,
    f: &TestFunction,
    seed: u64,
    args: &Args,
) -> (Vec<f64>, f64) {
    let seed_text = seed.to_string();
    let mut settings: Vec<(&str, &str)> = vec![("random_state", seed_text.as_str())];
    for (k, v) in &args.settings {
        settings.push((k.as_str(), v.as_str()));
    }
    let experiment = f.experiment(algorithm, &settings, args.budget as i32);
    let algo = registry.get(algorithm).expect("algorithm");
    let mut trials: Vec<pb::Trial> = Vec::new();
    let mut trace = Vec::with_capacity(args.budget);
    let mut best = f64::INFINITY;
    let mut spent = 0.0;
    while trials.len() < args.budget {
        let n = args.batch.min(args.budget - trials.len());
        let request = pb::GetSuggestionsRequest {
            experiment: Some(experiment.clone()),
            trials: trials.clone(),
            current_request_number: n as i32,
            total_request_number: (trials.len() + n) as i32,
        };
        let t = Instant::now();
        let req = SuggestRequest::from_pb(&request).expect("request");
        let suggested = algo.suggest(&req).expect("suggest");
        spent += t.elapsed().as_secs_f64();
        if suggested.assignments.is_empty() {
            break;
        }
        for a in suggested.assignments {
            let v = f.evaluate(&a).expect("evaluate");
            best = best.min(v);
            trace.push(best);
            let name = format!("t{}", trials.len());
            trials.push(testfunctions::completed_trial(&name, a, v));
        }
    }
    (trace, spent)
}

fn read_runs(path: &str) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    // Linear interpolation between order statistics (numpy's default).
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn fmt(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else {
        format!("{v:.4}")
    }
}

fn report(args: &Args, runs: &[Value]) {
    // (function, algorithm) -> regrets
    let mut cells: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let mut seconds: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut algorithms: Vec<String> = Vec::new();
    for r in runs {
        if r["budget"].as_u64() != Some(args.budget as u64) || r["seed"].as_u64() >= Some(args.seeds) {
            continue;
        }
        let (Some(a), Some(f), Some(regret)) = (
            r["algorithm"].as_str(),
            r["function"].as_str(),
            r["regret"].as_f64(),
        ) else {
            continue;
        };
        if !args.functions.iter().any(|x| x == f) {
            continue;
        }
        if !algorithms.iter().any(|x| x == a) {
            algorithms.push(a.to_string());
        }
        cells.entry((f.into(), a.into())).or_default().push(regret);
        // Wall time of the whole run per evaluation (the objective costs nothing), which for
        // scikit-optimize includes the model fit done in tell().
        if let Some(s) = r["seconds"].as_f64() {
            seconds.entry(a.into()).or_default().push(s / args.budget as f64);
        }
    }
    // Ours first, random last.
    algorithms.sort_by_key(|a| {
        (
            !args.algorithms.contains(a) || a == "random",
            a == "random",
            a.clone(),
        )
    });
    println!(
        "\nMedian simple regret [IQR] after {} evaluations, {} seeds (lower is better):\n",
        args.budget, args.seeds
    );
    print!("| function |");
    for a in &algorithms {
        print!(" {a} |");
    }
    println!();
    print!("|---|");
    for _ in &algorithms {
        print!("---|");
    }
    println!();
    let mut medians: BTreeMap<(String, String), f64> = BTreeMap::new();
    for f in &args.functions {
        print!("| {f} |");
        for a in &algorithms {
            match cells.get(&(f.clone(), a.clone())) {
                Some(v) if !v.is_empty() => {
                    let mut v = v.clone();
                    v.sort_by(f64::total_cmp);
                    let med = quantile(&v, 0.5);
                    medians.insert((f.clone(), a.clone()), med);
                    let n = if v.len() as u64 == args.seeds {
                        String::new()
                    } else {
                        format!(" (n={})", v.len())
                    };
                    print!(
                        " {} [{}, {}]{n} |",
                        fmt(med),
                        fmt(quantile(&v, 0.25)),
                        fmt(quantile(&v, 0.75))
                    );
                }
                _ => print!(" - |"),
            }
        }
        println!();
    }
    println!();
    let ours_names: Vec<String> = match &args.label {
        Some(l) => vec![l.clone()],
        None => args.algorithms.clone(),
    };
    for ours in ours_names.iter().filter(|a| *a != "random") {
        for peer in algorithms.iter().filter(|p| *p != ours) {
            let (mut better, mut not_worse, mut total) = (0, 0, 0);
            for f in &args.functions {
                if let (Some(m), Some(p)) = (
                    medians.get(&(f.clone(), ours.clone())),
                    medians.get(&(f.clone(), peer.clone())),
                ) {
                    total += 1;
                    if m < p {
                        better += 1;
                    }
                    if m <= p {
                        not_worse += 1;
                    }
                }
            }
            if total > 0 {
                println!(
                    "{ours} vs {peer}: better median on {better}/{total}, not worse on {not_worse}/{total}"
                );
            }
        }
    }
    println!("\nMean seconds per evaluation (run time / budget, all runs):");
    for a in &algorithms {
        if let Some(s) = seconds.get(a) {
            println!("  {a}: {:.4}", s.iter().sum::<f64>() / s.len() as f64);
        }
    }
}

fn main() {
    let args = parse_args();
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        std::fs::create_dir_all(dir).expect("create the output directory");
    }
    let done: HashSet<(String, String, u64, u64)> = read_runs(&args.out)
        .iter()
        .filter_map(|r| {
            Some((
                r["algorithm"].as_str()?.to_string(),
                r["function"].as_str()?.to_string(),
                r["seed"].as_u64()?,
                r["budget"].as_u64()?,
            ))
        })
        .collect();
    let registry = Registry::builtin();
    if !args.report_only {
        for algorithm in &args.algorithms {
            let label = args.label.clone().unwrap_or_else(|| algorithm.clone());
            for name in &args.functions {
                let f = testfunctions::by_name(name).unwrap_or_else(|| panic!("unknown function {name}"));
                for seed in 0..args.seeds {
                    let key = (label.clone(), name.clone(), seed, args.budget as u64);
                    if done.contains(&key) {
                        continue;
                    }
                    let t = Instant::now();
                    let (trace, spent) = run_one(&registry, algorithm, &f, seed, &args);
                    let best = trace.last().copied().unwrap_or(f64::INFINITY);
                    let rec = json!({
                        "algorithm": label, "function": name, "seed": seed,
                        "budget": args.budget, "batch": args.batch,
                        "best": best, "regret": best - f.optimum, "trace": trace,
                        "ask_seconds_mean": spent / trace.len().max(1) as f64,
                        "seconds": t.elapsed().as_secs_f64(),
                    });
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&args.out)
                        .expect("open --out");
                    writeln!(file, "{rec}").expect("write --out");
                    eprintln!(
                        "{algorithm:<22} {name:<17} seed {seed} regret {:.6e} ({:.1}s)",
                        best - f.optimum,
                        t.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
    let mut runs = read_runs(&args.out);
    let ours: HashSet<String> = runs
        .iter()
        .filter_map(|r| Some(r["algorithm"].as_str()?.to_string()))
        .collect();
    for p in &args.peers {
        for mut r in read_runs(p) {
            // A peer's run under one of our names (`random`) is shown apart.
            if let Some(a) = r["algorithm"].as_str()
                && ours.contains(a)
            {
                r["algorithm"] = Value::from(format!("{a}-py"));
            }
            runs.push(r);
        }
    }
    report(&args, &runs);
}
