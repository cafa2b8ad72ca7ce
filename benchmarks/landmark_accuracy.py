"""How many landmarks does persistent homology of a dense core need?

For dense cores built as the pipeline builds them (defaults: k="auto", p=0.3,
max_points=10000) from synthetic VGG16 layers, a Gaussian (null) layer and
sampled reference shapes, prints the bottleneck distance of the H0 and H1 diagrams
on n landmarks to those on ``--reference`` landmarks (default 500, the pipeline
default; a larger reference shows how far 500 itself is from a finer complex), the
longest H1 bar, the number of significant H1 bars, the cover radius and the CPU time
of persistent homology.

    python benchmarks/landmark_accuracy.py              # about 2 minutes on 2 cores
    python benchmarks/landmark_accuracy.py --landmarks 300,400,450,500 --reference 700
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _synthetic import vgg16_kernels  # noqa: E402


def cores(max_points=10000, p=0.3, seed=0):
    from filtertopo.density import dense_core
    from filtertopo.filters import filters_from_kernels
    from filtertopo.normalize import normalize_filters
    from filtertopo.pipeline import auto_k
    from filtertopo.shapes import sample_shape

    kernels = vgg16_kernels(seed=0)
    rng = np.random.default_rng(seed)
    clouds = {name: filters_from_kernels(name, [kernels[f"{name}.weight"]]).points
              for name in ("features.2", "features.12", "features.28")}
    clouds["gaussian"] = rng.normal(size=(20000, 9))
    for shape in ("primary", "three_circle", "klein"):
        try:
            clouds[shape] = sample_shape(shape, 20000, noise=0.1, seed=1).points
        except Exception as e:  # noqa: BLE001 - a shape name this version lacks
            print(f"(skipping {shape}: {e})")
    for name, X in clouds.items():
        X = normalize_filters(X).points
        if len(X) > max_points:
            X = X[np.sort(np.random.default_rng(seed).choice(len(X), max_points, replace=False))]
        idx, _ = dense_core(X, auto_k(len(X)), p)
        yield name, X[idx]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landmarks", default="150,200,250,300,400,500")
    ap.add_argument("--reference", type=int, default=500,
                    help="landmarks of the reference diagrams (cost grows about as n^3: 700 takes ~3x 500)")
    args = ap.parse_args()
    from persim import bottleneck

    from filtertopo.density import maxmin_landmarks
    from filtertopo.homology import bar_summary, persistence

    sizes = sorted({int(s) for s in args.landmarks.split(",")} | {args.reference})
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'core':>13s} {'n':>5s} {'lm':>4s} {'cover':>6s} {'PH cpu s':>8s} {'h1_max':>6s} {'n_sig':>5s} "
          f"{'bn H1':>6s} {'bn H0':>6s}")
    for name, core in cores():
        lm_all, _ = maxmin_landmarks(core, max(sizes), seed=0)
        ref = None
        rows = []
        for m in sorted(sizes, key=lambda m: (m != args.reference, -m)):  # the reference first
            # greedy landmarks are nested: the first m of the largest set are the m-landmark choice
            idx = lm_all[:m]
            dist = np.min(np.linalg.norm(core[:, None, :] - core[None, idx, :], axis=2), axis=1) \
                if len(core) * m < 2e7 else np.zeros(1)
            t = time.process_time()
            P = persistence(core, landmarks=(idx, float(dist.max())))
            dt = time.process_time() - t
            s = bar_summary(P.diagrams)
            fin = {d: P.diagrams[d][np.isfinite(P.diagrams[d][:, 1])] for d in (0, 1)}
            if m == args.reference:
                ref = fin
            rows.append((m, float(dist.max()), dt, s["h1_max"], s["n_significant"],
                         bottleneck(fin[1], ref[1]), bottleneck(fin[0], ref[0])))
        for m, cov, dt, h1, ns, b1, b0 in sorted(rows):
            print(f"{name:>13s} {len(core):5d} {m:4d} {cov:6.3f} {dt:8.2f} {h1:6.3f} {ns:5d} {b1:6.3f} {b0:6.3f}")


if __name__ == "__main__":
    main()
