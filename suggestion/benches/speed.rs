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
    // Each line on stdin asks for the process's CPU time so far (all threads, exited ones
    // too, so the decoder's short-lived scoped threads count), answered in ns on stdout.
    std::thread::spawn(|| {
        for line in std::io::stdin().lines() {
            if line.is_err() {
                break;
            }
            let usage =
                nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).expect("getrusage");
            let ns =
                |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1_000;
            println!("{}", ns(usage.user_time()) + ns(usage.system_time()));
            std::io::stdout().flush().ok();
        }
    });
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

/// The service's CPU time so far in ns (user + system, every thread it has had), asked over
/// its stdin: unlike wall time, not inflated when other work shares the machine.
struct CpuProbe {
    ask: std::process::ChildStdin,
    answers: std::io::BufReader<std::process::ChildStdout>,
}

impl CpuProbe {
    fn ns(&mut self) -> u64 {
        writeln!(self.ask, "cpu").expect("ask the service for its CPU time");
        let mut line = String::new();
        self.answers.read_line(&mut line).expect("the service's CPU time");
        line.trim().parse().expect("CPU ns")
    }
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
            // Profiling aid: `--in-process N BATCH [ALGORITHM]` calls the algorithm directly,
            // no gRPC, decoding the request from its bytes as the service does.
            let n: usize = raw.next().expect("n").parse().expect("n");
            let batch: usize = raw.next().expect("batch").parse().expect("batch");
            let name = raw.next().unwrap_or_else(|| "bayesianoptimization".into());
            let f = testfunctions::hartmann6();
            let request = pb::GetSuggestionsRequest {
                experiment: Some(f.experiment(&name, &[("random_state", "1")], 10_000)),
                trials: history(n, n as u64),
                current_request_number: batch as i32,
                total_request_number: (n + batch) as i32,
            };
            let bytes = bytes::Bytes::from(prost::Message::encode_to_vec(&request));
            let registry = katib_suggestion::Registry::builtin();
            let algo = registry.get(&name).expect("algorithm");
            let (mut decode, mut suggest) = (Vec::new(), Vec::new());
            for _ in 0..200 {
                let t = Instant::now();
                let req = katib_suggestion::wire::decode_request(bytes.clone(), None).expect("request");
                decode.push(t.elapsed());
                let t = Instant::now();
                algo.suggest(&req).expect("suggest");
                suggest.push(t.elapsed());
            }
            decode.sort();
            suggest.sort();
            eprintln!(
                "in-process {name} {n} x{batch}: p50 decode {:?}, suggest {:?}",
                decode[decode.len() / 2],
                suggest[suggest.len() / 2]
            );
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
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the service");
    let mut answers = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    answers.read_line(&mut line).expect("service ready");
    let mut probe = CpuProbe {
        ask: child.stdin.take().expect("stdin"),
        answers,
    };
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
            "\n| algorithm | observations | batch | p50 ms | min ms | max ms | p50 CPU ms | cold p50 ms | cold p50 CPU ms | VmRSS MiB | VmHWM MiB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
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
                    // Two kinds of call, alternating:
                    // - steady: what the controller sends during an experiment, the previous
                    //   call's history with the last `batch` trials changed (they finished);
                    //   the service reuses what it decoded for the rest;
                    // - cold: an experiment the service has not seen (a new name each time), so
                    //   the whole history is decoded, as on a service's first call.
                    let mut steady = (Vec::new(), Vec::new());
                    let mut cold = (Vec::new(), Vec::new());
                    // One warm-up round, then the measured ones.
                    for rep in 0..=args.repeats {
                        for is_cold in [false, true] {
                            // The copy is the bench's, not the call's: made before the clock starts.
                            let mut copy = request.clone();
                            if is_cold {
                                copy.experiment.as_mut().expect("experiment").name = format!("cold-{rep}");
                            } else {
                                for t in copy.trials.iter_mut().rev().take(batch) {
                                    let metric = &mut t.status.as_mut().expect("status").observation.as_mut().expect("observation").metrics[0];
                                    metric.value = format!("{}{rep}", metric.value);
                                }
                            }
                            let c0 = probe.ns();
                            let t = Instant::now();
                            let reply = client
                                .get_suggestions(copy)
                                .await
                                .expect("GetSuggestions");
                            let dt = t.elapsed();
                            let dc = probe.ns().saturating_sub(c0) as f64 / 1e6;
                            assert_eq!(reply.get_ref().parameter_assignments.len(), batch);
                            if rep > 0 {
                                let (times, cpu) = if is_cold { &mut cold } else { &mut steady };
                                times.push(dt);
                                cpu.push(dc);
                            }
                        }
                    }
                    let ms = |d: Duration| d.as_secs_f64() * 1e3;
                    let median = |(times, cpu): &mut (Vec<Duration>, Vec<f64>)| {
                        times.sort();
                        cpu.sort_by(f64::total_cmp);
                        (ms(times[times.len() / 2]), cpu[cpu.len() / 2], ms(times[0]), ms(times[times.len() - 1]))
                    };
                    let (p50, cpu50, min, max) = median(&mut steady);
                    let (cold50, cold_cpu50, _, _) = median(&mut cold);
                    let (rss, hwm) = memory(pid);
                    println!(
                        "| {algorithm} | {n} | {batch} | {p50:.1} | {min:.1} | {max:.1} | {cpu50:.1} | {cold50:.1} | {cold_cpu50:.1} | {rss:.1} | {hwm:.1} |"
                    );
                    records.push(serde_json::json!({
                        "algorithm": algorithm, "observations": n, "batch": batch,
                        "p50_ms": p50, "p50_cpu_ms": cpu50, "min_ms": min, "max_ms": max,
                        "cold_p50_ms": cold50, "cold_p50_cpu_ms": cold_cpu50,
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
