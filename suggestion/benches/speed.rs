//! `GetSuggestions` latency over gRPC, and the suggestion service's memory.
//!
//! The bench starts the suggestion service (the same `serve` as `katib suggestion`) in a
//! child process (itself, run with `--serve ADDR`), then for each algorithm, history size and
//! batch size sends `GetSuggestions` with `n` completed Hartmann6 trials (6 doubles) and
//! reports the median (p50) round-trip time and the median CPU time the service spent on the
//! call (all its threads, from `/proc/<pid>/task/*/schedstat`; robust to other load on the
//! machine, which inflates wall time). After each history size it reads the child's
//! `VmRSS` and `VmHWM` from `/proc/<pid>/status`.
//!
//! ```text
//! cargo bench -p katib-suggestion --bench speed -- \
//!     [--algorithms bayesianoptimization] [--observations 10,50,100,200,500,1000] \
//!     [--batches 1,8] [--repeats 7] [--json target/bench/speed.jsonl]
//! ```
//! For profiling (`perf record`), `speed --in-process N BATCH` calls the algorithm five times
//! in process on `N` observations, without gRPC.
use std::io::{BufRead as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use katib_api::pb;
use katib_api::pb::suggestion_client::SuggestionClient;
use katib_suggestion::testfunctions;
use rand::{RngExt as _, SeedableRng as _};

struct Args {
    algorithms: Vec<String>,
    observations: Vec<usize>,
    batches: Vec<usize>,
    repeats: usize,
    json: Option<String>,
}

fn list<T: std::str::FromStr>(v: &str) -> Vec<T> {
    v.split(',')
        .map(|x| x.trim().parse().ok().expect("a comma-separated list"))
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        algorithms: vec!["bayesianoptimization".into()],
        observations: vec![10, 50, 100, 200, 500, 1000],
        batches: vec![1, 8],
        repeats: 7,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--algorithms" => a.algorithms = list(&value()?),
            "--observations" => a.observations = list(&value()?),
            "--batches" => a.batches = list(&value()?),
            "--repeats" => a.repeats = value()?.parse().map_err(|_| "--repeats")?,
            "--json" => {
                // Relative to the repository root (`cargo bench` runs in the package).
                let v = value()?;
                let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join(&v);
                a.json = Some(if std::path::Path::new(&v).is_absolute() {
                    v
                } else {
                    p.to_string_lossy().into_owned()
                });
            }
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn serve(addr: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        println!("ready");
        std::io::stdout().flush().ok();
        katib_suggestion::serve(listener, std::future::pending())
            .await
            .expect("serve");
    });
}

/// `VmRSS` and `VmHWM` of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Nanoseconds the process's threads have run on a CPU (`/proc/<pid>/task/*/schedstat`):
/// unlike wall time, not inflated when other work shares the machine.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn history(n: usize, seed: u64) -> Vec<pb::Trial> {
    let f = testfunctions::hartmann6();
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let assignments: Vec<pb::ParameterAssignment> = f
                .parameters
                .iter()
                .map(|p| pb::ParameterAssignment {
                    name: p.name.clone(),
                    value: format!("{}", rng.random::<f64>()),
                })
                .collect();
            let v = f.evaluate(&assignments).expect("evaluate");
            testfunctions::completed_trial(&format!("t{i}"), assignments, v)
        })
        .collect()
}

fn main() {
    let mut raw = std::env::args().skip(1);
    match raw.next().as_deref() {
        Some("--serve") => {
            serve(&raw.next().expect("--serve ADDR"));
            return;
        }
        Some("--in-process") => {
            // Profiling aid: calls the algorithm directly, no gRPC.
            let n: usize = raw.next().expect("n").parse().expect("n");
            let batch: usize = raw.next().expect("batch").parse().expect("batch");
            let f = testfunctions::hartmann6();
            let request = pb::GetSuggestionsRequest {
                experiment: Some(f.experiment("bayesianoptimization", &[("random_state", "1")], 10_000)),
                trials: history(n, n as u64),
                current_request_number: batch as i32,
                total_request_number: (n + batch) as i32,
            };
            let registry = katib_suggestion::Registry::builtin();
            let algo = registry.get("bayesianoptimization").expect("algorithm");
            for _ in 0..5 {
                let t = Instant::now();
                let req = katib_suggestion::SuggestRequest::from_pb(&request).expect("request");
                algo.suggest(&req).expect("suggest");
                eprintln!("in-process {n} x{batch}: {:?}", t.elapsed());
            }
            return;
        }
        _ => {}
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--serve", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the service");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("service ready");
    let pid = child.id();
    let (rss0, _) = memory(pid);
    println!("suggestion service pid {pid}, idle VmRSS {rss0:.1} MiB");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut records = Vec::new();
    runtime.block_on(async {
        let mut client = SuggestionClient::connect(format!("http://{addr}"))
            .await
            .expect("connect")
            .max_decoding_message_size(usize::MAX >> 1)
            .max_encoding_message_size(usize::MAX >> 1);
        println!(
            "\n| algorithm | observations | batch | p50 ms | min ms | max ms | p50 CPU ms | VmRSS MiB | VmHWM MiB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let f = testfunctions::hartmann6();
        for algorithm in &args.algorithms {
            let experiment = f.experiment(algorithm, &[("random_state", "1")], 10_000);
            for &n in &args.observations {
                let trials = history(n, n as u64);
                for &batch in &args.batches {
                    let request = pb::GetSuggestionsRequest {
                        experiment: Some(experiment.clone()),
                        trials: trials.clone(),
                        current_request_number: batch as i32,
                        total_request_number: (n + batch) as i32,
                    };
                    let mut times = Vec::with_capacity(args.repeats);
                    let mut cpu = Vec::with_capacity(args.repeats);
                    // One warm-up call, then the measured ones.
                    for rep in 0..=args.repeats {
                        let c0 = cpu_ns(pid);
                        let t = Instant::now();
                        let reply = client
                            .get_suggestions(request.clone())
                            .await
                            .expect("GetSuggestions");
                        let dt = t.elapsed();
                        let dc = cpu_ns(pid).saturating_sub(c0) as f64 / 1e6;
                        assert_eq!(reply.get_ref().parameter_assignments.len(), batch);
                        if rep > 0 {
                            times.push(dt);
                            cpu.push(dc);
                        }
                    }
                    times.sort();
                    cpu.sort_by(f64::total_cmp);
                    let cpu50 = cpu[cpu.len() / 2];
                    let ms = |d: Duration| d.as_secs_f64() * 1e3;
                    let p50 = ms(times[times.len() / 2]);
                    let (rss, hwm) = memory(pid);
                    println!(
                        "| {algorithm} | {n} | {batch} | {p50:.1} | {:.1} | {:.1} | {cpu50:.1} | {rss:.1} | {hwm:.1} |",
                        ms(times[0]),
                        ms(times[times.len() - 1])
                    );
                    records.push(serde_json::json!({
                        "algorithm": algorithm, "observations": n, "batch": batch,
                        "p50_ms": p50, "p50_cpu_ms": cpu50, "min_ms": ms(times[0]), "max_ms": ms(times[times.len() - 1]),
                        "vm_rss_mib": rss, "vm_hwm_mib": hwm,
                    }));
                }
            }
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Some(path) = &args.json {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open --json");
        for r in records {
            writeln!(file, "{r}").expect("write --json");
        }
    }
}
