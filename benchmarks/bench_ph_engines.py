"""Persistent-homology engines: GUDHI's Ripser against ripser.py on the pipeline's complexes.

On the dense core of the large layer of the synthetic VGG16 checkpoint (the one
``bench_vgg16.py`` compares), built as the pipeline builds it (10,000 filters, k="auto",
p=0.3, greedy max-min landmarks), prints for 300, 400 and 500 landmarks and each field
the time of each engine on the full complex (up to the enclosing radius), their ratio, the
time of GUDHI with the early stop (``homology._early_stop``: the complex cut at 0.9 of the
enclosing radius when that is provably the whole answer; the pipeline's call) and the largest
difference between the sorted bars of the three;
then H0-H2 on 500 random unit vectors in R^9 (the ``--maxdim 2`` case), each engine in its
own child process so that its peak memory (max RSS) is its own.

    python benchmarks/bench_ph_engines.py        # about 2 minutes on 2 cores
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_vgg16 import load, machine  # noqa: E402
from landmark_accuracy import cores  # noqa: E402

CHILD = """
import json, resource, sys, time
import numpy as np
engine, maxdim, coeff = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
P = np.random.default_rng(0).normal(size=(500, 9)); P /= np.linalg.norm(P, axis=1, keepdims=True)
D = np.sqrt(np.maximum(2 - 2 * P @ P.T, 0)); np.fill_diagonal(D, 0)
import filtertopo.homology as H
if engine == "ripser.py":
    H._gudhi_full = lambda: None
H._rips_dm(np.zeros((3, 3)), maxdim=1, coeff=2)  # imports
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
dg, _ = H._rips_dm(D, maxdim=maxdim, coeff=coeff)
print(json.dumps({"s": time.perf_counter() - t, "bars": [len(d) for d in dg],
                  "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "before_gib": before / 2**20}))
"""


def _core():
    """The pipeline's dense core of features.12 (landmark_accuracy.py builds the same cores)."""
    return next(core for name, core in cores() if name == "features.12")


def _sorted_lengths(dg):
    dg = np.asarray(dg, dtype=np.float64).reshape(-1, 2)
    life = dg[:, 1] - dg[:, 0]
    return np.sort(life[np.isfinite(life)])[::-1]


def main():
    import filtertopo.homology as H
    from filtertopo.density import maxmin_landmarks

    print("machine:", machine(), "|", load())
    print("engines:", H.ph_engine(), "|", "ripser.py", end=" ")
    from importlib.metadata import version

    print(version("ripser"))
    full, early_from = H._gudhi_full, H._EARLY_STOP_FROM
    core = _core()
    print(f"dense core of features.12: {len(core):,} filters")
    for nl in (300, 400, 500):
        lm, radius = maxmin_landmarks(core, nl, seed=0)
        L = core[lm].astype(np.float64)
        sq = np.einsum("ij,ij->i", L, L)
        D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * L @ L.T, 0.0))
        np.fill_diagonal(D, 0.0)
        for q in (2, 3):
            times, bars = {}, {}
            # the engines on the full complex, then GUDHI with the early stop (the pipeline's call)
            for name, f, early in (("gudhi", full, False), ("ripser.py", lambda: None, False),
                                   ("gudhi+early", full, True)):
                H._gudhi_full = f
                H._EARLY_STOP_FROM = early_from if early else 10**9
                t = time.perf_counter()
                dg, _ = H._rips_dm(D, maxdim=1, coeff=q)
                times[name] = time.perf_counter() - t
                bars[name] = [_sorted_lengths(d) for d in dg]
            H._gudhi_full, H._EARLY_STOP_FROM = full, early_from
            diff = max(float(np.max(np.abs(a - b))) if len(a) else 0.0
                       for other in ("ripser.py", "gudhi+early")
                       for a, b in zip(bars["gudhi"], bars[other]))
            print(f"  {nl} landmarks (cover radius {radius:.3f}), H0-H1 over Z/{q}, full complex: ripser.py "
                  f"{times['ripser.py']:.2f} s, gudhi {times['gudhi']:.2f} s, "
                  f"{times['ripser.py'] / times['gudhi']:.1f}x; gudhi with the early stop "
                  f"{times['gudhi+early']:.2f} s, {times['gudhi'] / times['gudhi+early']:.2f}x; "
                  f"longest H1 {bars['gudhi'][1][0]:.4f}, largest bar difference of the three "
                  f"{diff:.1e}; {load()}")
    print("500 random unit vectors in R^9, H0-H2 over Z/2 (child process each):")
    for name in ("ripser.py", "gudhi"):
        out = subprocess.run([sys.executable, "-c", CHILD, name, "2", "2"], capture_output=True, text=True,
                             env=dict(os.environ))
        if out.returncode:
            sys.exit(out.stderr)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {name}: {r['s']:.1f} s, peak RSS {r['rss_gib']:.2f} GiB (after imports "
              f"{r['before_gib']:.2f}), bars per dimension {r['bars']}; {load()}")


if __name__ == "__main__":
    main()
