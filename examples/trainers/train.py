#!/usr/bin/env python3
"""A small stand-in for a training job (standard library only, no downloads).

It "trains" for a few epochs on a synthetic problem whose accuracy depends smoothly on
the learning rate, momentum and optimizer, and reports metrics the way real trainers do:

  --format text   prints `epoch 3: accuracy=0.9123 loss=0.1234` (Katib's StdOut collector)
  --format file   appends Katib's File-collector lines to --log-path:
                  `2026-01-01T00:00:00Z {metricName: accuracy, metricValue: 0.9123};...`
  --format json   appends JSON lines with a timestamp to --log-path
  --format push   reports through db-manager's gRPC API with the kubeflow-katib SDK

--fail makes it exit 1 after the first epoch; --silent prints no metrics.
--diverge-lr X gives the space a bad region: with --lr above X training diverges (accuracy
falls towards 0.1 and loss grows), the case early stopping is for.
"""
import argparse
import datetime
import json
import math
import sys
import time


def quality(lr, momentum, optimizer):
    # Best near lr=0.03 (on a log scale), momentum=0.8; sgd is the best optimizer.
    q = math.exp(-(math.log(lr / 0.03) ** 2) / 4.0 - ((momentum - 0.8) ** 2) / 0.2)
    return q * {"sgd": 1.0, "adam": 0.97, "rmsprop": 0.93}.get(optimizer, 0.9)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.5)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--sleep", type=float, default=0.05, help="seconds per epoch")
    p.add_argument("--format", choices=["text", "file", "json", "push"], default="text")
    p.add_argument("--log-path", default="")
    p.add_argument("--fail", action="store_true")
    p.add_argument("--silent", action="store_true")
    p.add_argument("--diverge-lr", type=float, default=0.0,
                   help="learning rates above this diverge (0: never)")
    a = p.parse_args()
    if a.lr <= 0:
        sys.exit(f"--lr must be > 0, got {a.lr}")

    q = quality(a.lr, a.momentum, a.optimizer)
    diverges = a.diverge_lr > 0 and a.lr > a.diverge_lr
    for epoch in range(1, a.epochs + 1):
        time.sleep(a.sleep)
        if diverges:
            accuracy = 0.1 + 0.35 * math.exp(-epoch / 3)
            loss = 1 - accuracy + 0.2 * epoch
        else:
            accuracy = 0.5 + 0.49 * q * (1 - math.exp(-epoch / 2))
            loss = 1 - accuracy + 0.05 / epoch
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        print(f"training epoch {epoch}/{a.epochs}", flush=True)
        if a.silent:
            continue
        if a.format == "text":
            print(f"epoch {epoch}: accuracy={accuracy:.4f} loss={loss:.4f}", flush=True)
        elif a.format == "file":
            with open(a.log_path, "a") as f:
                f.write(f"{now} {{metricName: accuracy, metricValue: {accuracy:.4f}}};"
                        f"{{metricName: loss, metricValue: {loss:.4f}}}\n")
        elif a.format == "json":
            with open(a.log_path, "a") as f:
                f.write(json.dumps({"timestamp": now, "accuracy": round(accuracy, 4), "loss": round(loss, 4)}) + "\n")
        elif a.format == "push" and epoch == a.epochs:
            import kubeflow.katib as katib  # needs: pip install kubeflow-katib
            import os
            katib.report_metrics({"accuracy": accuracy, "loss": loss},
                                 db_manager_address=os.environ["KATIB_DB_MANAGER_ADDRESS"])
        if a.fail:
            print("error: simulated training failure", file=sys.stderr, flush=True)
            sys.exit(1)


if __name__ == "__main__":
    main()
