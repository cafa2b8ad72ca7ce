"""Profile one large layer of the synthetic VGG16 checkpoint, stage by stage.

Runs ``analyze_points`` on one layer (subsampled, and with ``--exact`` also on all
filters) under cProfile and prints the time of each stage: normalisation, kNN /
dense core, landmarks, ripser, circular coordinates, verdict. Import time of the
package is printed first (a fresh interpreter pays it once per process).

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


def profile(label, top, **kw):
    pr = cProfile.Profile()
    t = time.perf_counter()
    pr.enable()
    res = analyze_points(**kw)
    pr.disable()
    wall = time.perf_counter() - t
    st = pstats.Stats(pr)
    times = stage_times(st)
    print(f"{label}: {wall:.2f} s wall, verdict {res.verdict!r}, n_used {res.n_used}, k {res.k}, "
          f"h1_top {np.round(res.summary['h1_top'][:3], 3).tolist()}")
    for name, _ in STAGES:
        if name in times:
            print(f"    {name:22s} {times[name]:7.2f} s")
    if top:
        st.sort_stats("cumulative").print_stats(top)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="features.12")
    ap.add_argument("--k", default=None, help="k for the subsampled run (default: the pipeline default)")
    ap.add_argument("--n-landmarks", type=int, default=None, help="default: the pipeline's")
    ap.add_argument("--max-points", type=int, default=10000)
    ap.add_argument("--exact", action="store_true", help="also profile the exact run (kNN on all filters)")
    ap.add_argument("--top", type=int, default=0, help="also print the top N cProfile entries")
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
    res = profile(f"{args.layer} subsampled ({n:,} -> {args.max_points:,})", args.top, **kw_sub)
    if args.exact:
        k_exact = int(round(res.k * n / args.max_points))
        profile(f"{args.layer} exact (all {n:,}, k={k_exact})", args.top,
                **dict(kw, k=k_exact, max_points=None))


if __name__ == "__main__":
    main()
