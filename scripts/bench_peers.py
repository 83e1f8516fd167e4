#!/usr/bin/env python3
"""Peers of katib-rs's model-based suggestion algorithms, on the benchmark functions of
suggestion/src/testfunctions.rs (same formulas, spaces, budget and seeds).

  quality  runs each peer on each function for --budget evaluations and --seeds seeds and
           appends one JSON line per run to --out (runs already in the file are skipped, so an
           interrupted run resumes). The Rust bench (`cargo bench -p katib-suggestion --bench
           quality -- --peers FILE`) merges the file into its table.
  speed    times one ask() of each peer after n observations (6 parameters, Hartmann6) and
           prints JSON lines.
  check    evaluates the functions at the fixed points that testfunctions.rs checks too.

Peers:
  skopt-gp      scikit-optimize Optimizer(base_estimator="GP", acq_func="gp_hedge",
                acq_optimizer="auto", n_initial_points=10): what Katib's bayesianoptimization
                runs. Katib maps every double to Real(..., "log-uniform"), which cannot express
                ranges with min <= 0 (most of these functions); here doubles keep the
                experiment's distribution (uniform or log-uniform), ints are Integer (stepped
                ints as an Integer index), categoricals Categorical.
  optuna-gp     Optuna GPSampler(seed=seed) (needs torch).
  optuna-tpe    Optuna TPESampler(seed=seed), defaults (10 startup trials; in Optuna 5 the
                default is the multivariate TPE with constant liar for single-objective studies).
  optuna-tpe-indep  TPESampler(multivariate=False, seed=seed): the independent TPE (hyperopt's
                model, Katib's `tpe`).
  optuna-mvtpe  TPESampler(multivariate=True, constant_liar=True, seed=seed) as Katib's
                multivariate-tpe.
  random        uniform random search (numpy), a floor.

Stepped doubles are evaluated at the grid value nearest to the peer's proposal, so every
algorithm is scored on the same feasible set. Run with one thread:
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 python3 scripts/bench_peers.py quality
"""
import argparse
import json
import math
import os
import sys
import time
import warnings

PI = math.pi
TAU = 2 * math.pi

# ---- the functions (keep in step with suggestion/src/testfunctions.rs) ----------------------


def branin(x):
    b, c, t = 5.1 / (4 * PI * PI), 5 / PI, 1 / (8 * PI)
    return (x[1] - b * x[0] ** 2 + c * x[0] - 6) ** 2 + 10 * (1 - t) * math.cos(x[0]) + 10


H_ALPHA = [1.0, 1.2, 3.0, 3.2]
H_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
       [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
H_P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
       [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
       [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
       [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]


def hartmann6(x):
    return -sum(H_ALPHA[i] * math.exp(-sum(H_A[i][j] * (x[j] - H_P[i][j]) ** 2 for j in range(6)))
                for i in range(4))


def rosenbrock(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def ackley(x):
    d = len(x)
    sq = sum(v * v for v in x) / d
    cs = sum(math.cos(TAU * v) for v in x) / d
    return max(-20 * math.exp(-0.2 * math.sqrt(sq)) - math.exp(cs) + 20 + math.e, 0.0)


def levy(x):
    w = [1 + (v - 1) / 4 for v in x]
    mid = sum((wi - 1) ** 2 * (1 + 10 * math.sin(PI * wi + 1) ** 2) for wi in w[:-1])
    return math.sin(PI * w[0]) ** 2 + mid + (w[-1] - 1) ** 2 * (1 + math.sin(TAU * w[-1]) ** 2)


def styblinski_tang(x):
    return 0.5 * sum(v ** 4 - 16 * v * v + 5 * v for v in x)


def mixed_mlp(x):
    lr, layers, dropout, opt = x
    u_best, floor = [(-1.5, 0.10), (-3.0, 0.08), (-2.5, 0.12)][min(int(opt), 2)]
    du = (math.log10(lr) - u_best) / 0.8
    dl = (layers - 4) / 2.5
    dd = (dropout - 0.05 * layers) / 0.15
    q = du * du + dl * dl + dd * dd + 0.6 * du * dl
    return floor + 0.6 * (1 - math.exp(-0.5 * q))


def mixed_gbm(x):
    eta, depth, trees, subsample, booster = x
    floor, depth_best, depth_weight = [(0.20, 5.0, 1.0), (0.19, 6.0, 1.0), (0.25, 1.0, 0.0)][min(int(booster), 2)]
    de = (math.log10(eta) - math.log10(5 / trees)) / 0.5
    dd = depth_weight * (depth - depth_best) / 3
    ds = (subsample - 0.8) / 0.3
    q = de * de + dd * dd + ds * ds
    return floor + 0.4 * (1 - math.exp(-0.5 * q)) + 0.01 * trees / 1000


# Parameter: (name, kind, lo, hi, step, log, choices)
def D(name, lo, hi, step=None, log=False):
    return (name, "double", lo, hi, step, log, None)


def I(name, lo, hi, step=1):
    return (name, "int", lo, hi, step, False, None)


def C(name, choices):
    return (name, "categorical", None, None, None, False, choices)


def box(d, lo, hi):
    return [D("x%d" % i, lo, hi) for i in range(1, d + 1)]


FUNCTIONS = {
    "branin": (branin, [D("x1", -5, 10), D("x2", 0, 15)], 0.3978873577297382),
    "hartmann6": (hartmann6, box(6, 0, 1), -3.322368011415515),
    "rosenbrock4": (rosenbrock, box(4, -5, 10), 0.0),
    "ackley5": (ackley, box(5, -5, 10), 0.0),
    "levy4": (levy, box(4, -10, 10), 0.0),
    "styblinski_tang5": (styblinski_tang, box(5, -5, 5), -39.16616570377142 * 5),
    "mixed_mlp": (mixed_mlp, [D("lr", 1e-5, 0.1, log=True), I("layers", 1, 8), D("dropout", 0, 0.5),
                              C("optimizer", ["sgd", "adam", "rmsprop"])], 0.08),
    "mixed_gbm": (mixed_gbm, [D("eta", 1e-3, 1, log=True), I("max_depth", 1, 12), I("n_estimators", 50, 1000, 50),
                              D("subsample", 0.5, 1, step=0.05), C("booster", ["gbtree", "dart", "gblinear"])],
                  0.1905),
}

CHECK_POINTS = [
    ("branin", ["0", "0"], 55.602112642270264),
    ("hartmann6", ["0.5"] * 6, -0.5053149917022333),
    ("rosenbrock4", ["0", "0.5", "-1", "2"], 286.5),
    ("ackley5", ["1", "2", "3", "-1", "0.5"], 6.792320363982681),
    ("levy4", ["0", "2", "-3", "5"], 10.33073418273571),
    ("styblinski_tang5", ["0", "1", "-1", "2", "-3"], -73.0),
    ("mixed_mlp", ["0.01", "2", "0.3", "sgd"], 0.5731851350844522),
    ("mixed_gbm", ["0.05", "3", "200", "0.6", "gbtree"], 0.38804151816457366),
]


def evaluate(name, values):
    """The objective at `values` (categoricals as their string, stepped doubles snapped)."""
    f, params, _ = FUNCTIONS[name]
    x = []
    for p, v in zip(params, values):
        pname, kind, lo, hi, step, log, choices = p
        if kind == "categorical":
            x.append(float(choices.index(v)))
        elif kind == "double" and step is not None:
            k = round((float(v) - lo) / step)
            k = max(0, min(k, int(round((hi - lo) / step))))
            x.append(lo + k * step)
        else:
            x.append(float(v))
    return f(x)


def check():
    for name, texts, expected in CHECK_POINTS:
        _, params, _ = FUNCTIONS[name]
        vals = [t if p[1] == "categorical" else float(t) for p, t in zip(params, texts)]
        got = evaluate(name, vals)
        assert abs(got - expected) <= 1e-9 * max(1.0, abs(expected)), (name, got, expected)
    print("check ok: %d points" % len(CHECK_POINTS))


# ---- peers -----------------------------------------------------------------------------------


def skopt_dims(params):
    from skopt.space import Categorical, Integer, Real
    dims = []
    for pname, kind, lo, hi, step, log, choices in params:
        if kind == "categorical":
            dims.append(Categorical(choices, name=pname))
        elif kind == "int":
            # Stepped ints as an index into the steps.
            dims.append(Integer(0, (hi - lo) // step, name=pname))
        else:
            dims.append(Real(lo, hi, prior="log-uniform" if log else "uniform", name=pname))
    return dims


def skopt_values(params, x):
    out = []
    for p, v in zip(params, x):
        if p[1] == "int":
            out.append(p[2] + int(v) * p[4])
        else:
            out.append(v)
    return out


def run_skopt(name, budget, seed, n_initial):
    from skopt import Optimizer
    _, params, _ = FUNCTIONS[name]
    opt = Optimizer(skopt_dims(params), base_estimator="GP", n_initial_points=n_initial,
                    acq_func="gp_hedge", acq_optimizer="auto", random_state=seed)
    ys, ask_s = [], []
    for _ in range(budget):
        # scikit-optimize fits its model in tell(); a suggestion costs tell + ask.
        t = time.perf_counter()
        x = opt.ask()
        ask_s.append(time.perf_counter() - t)
        y = evaluate(name, skopt_values(params, x))
        t = time.perf_counter()
        opt.tell(x, y)
        ask_s[-1] += time.perf_counter() - t
        ys.append(y)
    return ys, ask_s


def optuna_suggest(trial, params):
    vals = []
    for pname, kind, lo, hi, step, log, choices in params:
        if kind == "categorical":
            vals.append(trial.suggest_categorical(pname, choices))
        elif kind == "int":
            vals.append(trial.suggest_int(pname, lo, hi, step=step))
        else:
            vals.append(trial.suggest_float(pname, lo, hi, step=step, log=log))
    return vals


def optuna_sampler(algorithm, seed, n_initial):
    import optuna
    if algorithm == "optuna-gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_initial)
    if algorithm == "optuna-tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_initial)
    if algorithm == "optuna-tpe-indep":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_initial, multivariate=False)
    if algorithm == "optuna-mvtpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_initial, multivariate=True,
                                          constant_liar=True)
    raise ValueError(algorithm)


def run_optuna(algorithm, name, budget, seed, n_initial):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, params, _ = FUNCTIONS[name]
    study = optuna.create_study(direction="minimize", sampler=optuna_sampler(algorithm, seed, n_initial))
    ys, ask_s = [], []
    for _ in range(budget):
        t = time.perf_counter()
        trial = study.ask()
        vals = optuna_suggest(trial, params)
        ask_s.append(time.perf_counter() - t)
        y = evaluate(name, vals)
        study.tell(trial, y)
        ys.append(y)
    return ys, ask_s


def run_random(name, budget, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    _, params, _ = FUNCTIONS[name]
    ys = []
    for _ in range(budget):
        vals = []
        for pname, kind, lo, hi, step, log, choices in params:
            if kind == "categorical":
                vals.append(choices[rng.integers(len(choices))])
            elif kind == "int":
                vals.append(lo + step * int(rng.integers((hi - lo) // step + 1)))
            elif log:
                vals.append(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            else:
                vals.append(rng.uniform(lo, hi))
        ys.append(evaluate(name, vals))
    return ys, [0.0] * budget


def run(algorithm, name, budget, seed, n_initial):
    if algorithm == "skopt-gp":
        return run_skopt(name, budget, seed, n_initial)
    if algorithm.startswith("optuna-"):
        return run_optuna(algorithm, name, budget, seed, n_initial)
    if algorithm == "random":
        return run_random(name, budget, seed)
    raise SystemExit("unknown algorithm %s" % algorithm)


def quality(args):
    done = set()
    if os.path.exists(args.out):
        with open(args.out) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    done.add((r["algorithm"], r["function"], r["seed"], r["budget"]))
    functions = list(FUNCTIONS) if args.functions == "all" else args.functions.split(",")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for algorithm in args.algorithms.split(","):
        for name in functions:
            for seed in range(args.seeds):
                if (algorithm, name, seed, args.budget) in done:
                    continue
                t = time.perf_counter()
                ys, ask_s = run(algorithm, name, args.budget, seed, args.n_initial)
                best = math.inf
                trace = []
                for y in ys:
                    best = min(best, y)
                    trace.append(best)
                rec = {
                    "algorithm": algorithm, "function": name, "seed": seed, "budget": args.budget,
                    "best": best, "regret": best - FUNCTIONS[name][2], "trace": trace,
                    "ask_seconds_mean": sum(ask_s) / len(ask_s), "seconds": time.perf_counter() - t,
                }
                with open(args.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                print("%-12s %-17s seed %d regret %.6g (%.1fs)" % (algorithm, name, seed, rec["regret"], rec["seconds"]),
                      flush=True)


def speed(args):
    """Seconds for one ask() after n told observations of Hartmann6 (6 doubles)."""
    import numpy as np
    _, params, _ = FUNCTIONS["hartmann6"]
    for algorithm in args.algorithms.split(","):
        for n in [int(v) for v in args.observations.split(",")]:
            rng = np.random.default_rng(0)
            xs = rng.uniform(size=(n, 6)).tolist()
            ys = [hartmann6(x) for x in xs]
            times = []
            for rep in range(args.repeats):
                if algorithm == "skopt-gp":
                    from skopt import Optimizer
                    opt = Optimizer(skopt_dims(params), base_estimator="GP", acq_func="gp_hedge",
                                    n_initial_points=10, random_state=rep)
                    # The model is fitted in tell(); Katib tells the new trials, then asks.
                    opt.tell(xs[:-1], ys[:-1])
                    t = time.perf_counter()
                    opt.tell(xs[-1], ys[-1])
                    opt.ask()
                    times.append(time.perf_counter() - t)
                else:
                    import optuna
                    optuna.logging.set_verbosity(optuna.logging.WARNING)
                    study = optuna.create_study(direction="minimize", sampler=optuna_sampler(algorithm, rep, 10))
                    dists = {p[0]: optuna.distributions.FloatDistribution(p[2], p[3]) for p in params}
                    study.add_trials([optuna.trial.create_trial(params={p[0]: v for p, v in zip(params, x)},
                                                                distributions=dists, value=y)
                                      for x, y in zip(xs, ys)])
                    t = time.perf_counter()
                    trial = study.ask()
                    optuna_suggest(trial, params)
                    times.append(time.perf_counter() - t)
            times.sort()
            rec = {"algorithm": algorithm, "observations": n, "p50_seconds": times[len(times) // 2],
                   "repeats": len(times)}
            print(json.dumps(rec), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")


def main():
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--algorithms", default="skopt-gp,optuna-gp,optuna-tpe,random")
    q.add_argument("--functions", default="all")
    q.add_argument("--seeds", type=int, default=10)
    q.add_argument("--budget", type=int, default=50)
    q.add_argument("--n-initial", type=int, default=10)
    q.add_argument("--out", default="target/bench/peers.jsonl")
    s = sub.add_parser("speed")
    s.add_argument("--algorithms", default="skopt-gp,optuna-gp")
    s.add_argument("--observations", default="10,50,100,200")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--out", default="")
    sub.add_parser("check")
    args = p.parse_args()
    check()
    if args.cmd == "quality":
        quality(args)
    elif args.cmd == "speed":
        speed(args)


if __name__ == "__main__":
    main()
