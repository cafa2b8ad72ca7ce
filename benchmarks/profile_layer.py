"""Profile one large layer of the synthetic VGG16 checkpoint, stage by stage.

Runs ``analyze_points`` on one layer (subsampled, and with ``--exact`` also on all
filters) and prints the wall and CPU time of each stage: normalisation, kNN /
dense core, landmarks, persistent homology, circular coordinates, shape fit,
verdict. The stages are timed by wrapping the stage functions (``_stages.py``);
``--top N`` runs under cProfile instead and lists the top N entries (cProfile's
per-call overhead inflates Python-heavy stages such as the shape fit loop). Import
time of the package is printed first; an untimed warm-up run on a small cloud pays
the first calls (``--no-warm-up`` to include them).

    python benchmarks/profile_layer.py                 # features.12, 65,536 filters
    python benchmarks/profile_layer.py --exact --top 25
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

t_import = time.perf_counter()
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import filtertopo  # noqa: E402,F401
from filtertopo import analyze_points  # noqa: E402
from filtertopo.filters import filters_from_kernels  # noqa: E402

t_import = time.perf_counter() - t_import

STAGES = [("normalize_filters", "normalize.py"), ("knn_distance", "density.py"),
          ("maxmin_landmarks", "density.py"), ("persistence", "homology.py"), ("ripser", "ripser.py"),
          ("circular_coordinates", "circular.py"), ("fit_shapes", "shapes.py"), ("layer_verdict", "verdict.py")]


def stage_times(stats: pstats.Stats) -> dict:
    out = {}
    for (file, _line, fn), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        for name, f in STAGES:
            if fn == name and file.endswith(f):
                out[name] = out.get(name, 0.0) + ct
    return out


def _h1_top(res):
    bars = getattr(res, "bars", None)
    top = bars.h1_top if bars is not None else res.summary["h1_top"]
    return np.round(top[:3], 3).tolist()


def profile(label, top, **kw):
    load = os.getloadavg()[0]
    if not top:
        from _stages import stage_times as timed_stages

        t, c = time.perf_counter(), time.process_time()
        with timed_stages() as st:
            res = analyze_points(**kw)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        print(f"{label}: {wall:.2f} s wall, {cpu:.2f} s CPU (load {load:.2f}), verdict {res.verdict!r}, "
              f"n_used {res.n_used}, k {res.k}, h1_top {_h1_top(res)}")
        print(f"    {'stage':22s} {'wall s':>7s} {'CPU s':>7s}")
        for name, (w, c, n) in st.items():
            if n:
                print(f"    {name:22s} {w:7.2f} {c:7.2f}")
        return res
    pr = cProfile.Profile()
    t = time.perf_counter()
    pr.enable()
    res = analyze_points(**kw)
    pr.disable()
    wall = time.perf_counter() - t
    st = pstats.Stats(pr)
    times = stage_times(st)
    print(f"{label}: {wall:.2f} s wall under cProfile (load {load:.2f}), verdict {res.verdict!r}, "
          f"n_used {res.n_used}, k {res.k}, h1_top {_h1_top(res)}")
    for name, _ in STAGES:
        if name in times:
            print(f"    {name:22s} {times[name]:7.2f} s")
    st.sort_stats("cumulative").print_stats(top)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="features.12")
    ap.add_argument("--k", default=None, help="k for the subsampled run (default: the pipeline default)")
    ap.add_argument("--n-landmarks", type=int, default=None, help="default: the pipeline's")
    ap.add_argument("--max-points", type=int, default=10000)
    ap.add_argument("--exact", action="store_true", help="also profile the exact run (kNN on all filters)")
    ap.add_argument("--top", type=int, default=0,
                    help="run under cProfile and print the top N entries (default: stage timers, no cProfile)")
    ap.add_argument("--no-warm-up", action="store_true", help="include the first calls of the process")
    args = ap.parse_args()
    from _synthetic import vgg16_kernels

    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; import filtertopo {t_import:.2f} s")
    W = vgg16_kernels(seed=0)[f"{args.layer}.weight"]
    fs = filters_from_kernels(args.layer, [W])
    n = len(fs)
    kw = dict(points=fs.points, provenance=fs.provenance, max_points=args.max_points)
    if args.n_landmarks is not None:
        kw["n_landmarks"] = args.n_landmarks
    kw_sub = dict(kw) if args.k is None else dict(kw, k=args.k if args.k == "auto" else int(args.k))
    if not args.no_warm_up:
        analyze_points(fs.points[:3000], max_points=args.max_points,
                       **{k: v for k, v in kw_sub.items() if k not in ("points", "provenance", "max_points")})
    res = profile(f"{args.layer} subsampled ({n:,} -> {args.max_points:,})", args.top, **kw_sub)
    if args.exact:
        k_exact = int(round(res.k * n / args.max_points))
        profile(f"{args.layer} exact (all {n:,}, k={k_exact})", args.top,
                **dict(kw, k=k_exact, max_points=None))


if __name__ == "__main__":
    main()
