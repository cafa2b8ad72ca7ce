"""Scale benchmark (issue 2): a VGG16-shaped checkpoint, all 13 conv layers.

Prints: wall time and peak memory of the whole analysis (in a child process, from
file to written results); and, on one large layer, the accuracy and speed of the
subsampled pipeline against the exact pipeline measured in the same run
(overlap of the dense cores, difference of the top H1 bars, speed ratio).

Both use the pipeline defaults (``k="auto"``: the subsample's k is chosen from its
size). The exact pipeline runs the same chunked BLAS kNN on every filter of the
layer; to estimate density at the same scale as the subsample it uses
k_exact = k * n / max_points neighbours. Both are timed after an untimed warm-up
run on a small cloud, so neither pays the one-off imports of the process. The
subsampled run is timed twice, before and after the exact run, and the mean is used,
so that a change of load during the exact run weighs on both sides. Wall and CPU
time (``time.process_time``: all threads of the process; BLAS uses two) are printed
with the wall and CPU speed ratios, and the wall/CPU time of each stage (``_stages.py``),
which shows the fixed costs that both paths pay (persistent homology on the same
number of landmarks, circular coordinates) and that bound the ratio.

    python benchmarks/bench_vgg16.py            # about 3-5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _stages import format_stages, stage_times  # noqa: E402
from _synthetic import vgg16_kernels  # noqa: E402


def machine() -> str:
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '')} x{i['num_threads']}"
                         for i in threadpool_info() if i["user_api"] == "blas")
    except Exception:
        blas = "?"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, {mem:.0f} GiB, "
            f"Python {platform.python_version()}, numpy {np.__version__} ({blas})")


CHILD = """
import sys, time, json
t0 = time.perf_counter()
import filtertopo
kw = {} if sys.argv[3] == "default" else {"k": int(sys.argv[3])}
if sys.argv[7] != "default":
    kw["n_landmarks"] = int(sys.argv[7])
res = filtertopo.analyze(sys.argv[1], p=float(sys.argv[4]), max_points=int(sys.argv[5]),
                         n_jobs=int(sys.argv[6]), progress=False, **kw)
res.save(sys.argv[2], force=True)
print(json.dumps({"wall_s": time.perf_counter() - t0,
                  "verdicts": [l.verdict for l in res], "n_filters": sum(l.n_filters for l in res)}))
"""


def load() -> str:
    """Load average now (1 and 5 minutes): benchmarks on shared cores are noisy."""
    a, b, _ = os.getloadavg()
    return f"load {a:.2f} {b:.2f}"


def _tree_rss(pid: int) -> int:
    """Summed resident memory (bytes) of a process and all its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) * 1024
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            pass
    return total


def run_sampled(cmd):
    """Run cmd; return (CompletedProcess-like stdout/stderr/returncode, peak summed RSS of its tree)."""
    import threading

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def poll():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.1)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    out, err = proc.communicate()
    t.join()
    return proc.returncode, out, err, peak[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=None, help="density neighbour (default: the pipeline's k='auto')")
    ap.add_argument("--p", type=float, default=0.3)
    ap.add_argument("--max-points", type=int, default=10000)
    ap.add_argument("--layer", default="features.12", help="large layer for the exact comparison")
    ap.add_argument("--jobs", type=int, default=-1, help="worker processes for the full analysis")
    ap.add_argument("--n-landmarks", type=int, default=None, help="default: the pipeline's")
    ap.add_argument("--skip-exact", action="store_true")
    args = ap.parse_args()
    print("machine:", machine(), "|", load())
    with tempfile.TemporaryDirectory() as tmp:
        kernels = vgg16_kernels(seed=0)
        ckpt = Path(tmp) / "vgg16_synthetic.npz"
        np.savez(ckpt, **kernels)
        n_total = sum(w.shape[0] * w.shape[1] for w in kernels.values())
        print(f"checkpoint: 13 conv layers, {n_total:,} 3x3 filters, {ckpt.stat().st_size / 2**20:.0f} MiB")

        t = time.perf_counter()
        rc, out, err, tree_peak = run_sampled([sys.executable, "-c", CHILD, str(ckpt), str(Path(tmp) / "out"),
                                               "default" if args.k is None else str(args.k), str(args.p), str(args.max_points), str(args.jobs),
                                               "default" if args.n_landmarks is None else str(args.n_landmarks)])
        wall = time.perf_counter() - t
        if rc:
            sys.exit(err)
        info = json.loads(out.strip().splitlines()[-1])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
        print(f"full analysis, 13 layers, n_jobs={args.jobs}: {wall:.1f} s wall (incl. interpreter start; "
              f"{info['wall_s']:.1f} s inside); peak RSS of the largest process {peak:.2f} GiB, "
              f"of the whole process tree (sampled every 0.1 s, shared pages counted per process) "
              f"{tree_peak / 2**30:.2f} GiB  [target < 60 s, < 4 GiB]; {load()}")
        print("verdicts:", info["verdicts"])

        if args.skip_exact:
            return
        from filtertopo import analyze_points
        from filtertopo.filters import filters_from_kernels

        W = kernels[f"{args.layer}.weight"]
        fs = filters_from_kernels(args.layer, [W])
        n = len(fs)
        kw = {} if args.k is None else {"k": args.k}
        if args.n_landmarks is not None:
            kw["n_landmarks"] = args.n_landmarks
        # untimed warm-up: imports and first calls, paid once per process by both paths
        analyze_points(fs.points[:3000], p=args.p, max_points=args.max_points, **kw)

        def timed(**kwargs):
            w, c, ld = time.perf_counter(), time.process_time(), os.getloadavg()[0]
            with stage_times() as st:
                res = analyze_points(fs.points, p=args.p, provenance=fs.provenance, **kwargs)
            return (res, time.perf_counter() - w, time.process_time() - c,
                    f"load {ld:.2f} -> {os.getloadavg()[0]:.2f}", st)

        approx, w1, c1, load1, st_a = timed(max_points=args.max_points, **kw)
        k_exact = int(round(approx.k * n / args.max_points))
        exact, t_exact, c_exact, load_exact, st_e = timed(max_points=None, **dict(kw, k=k_exact))
        _, w2, c2, load2, _ = timed(max_points=args.max_points, **kw)
        t_approx, c_approx = (w1 + w2) / 2, (c1 + c2) / 2
        flat = lambda prov: set((prov[:, 1] * W.shape[1] + prov[:, 2]).tolist())  # noqa: E731
        a, e = flat(approx.provenance), flat(exact.provenance)
        overlap = len(a & e) / len(a)
        ta, te = _h1_top(approx)[:3], _h1_top(exact)[:3]
        diff = abs(ta[0] - te[0])
        ratio, ratio_cpu = t_exact / t_approx, c_exact / c_approx
        print(f"layer {args.layer}: {n:,} filters; subsampled to {args.max_points:,} with k={approx.k} "
              f"vs exact on all with k={k_exact}")
        print(f"  dense-core overlap: {overlap:.3f} of the subsampled core lies in the exact core "
              f"(chance level {args.p:.2f})  [target >= 0.95]")
        print(f"  top H1 bars: subsampled {np.round(ta, 3).tolist()} vs exact {np.round(te, 3).tolist()}; "
              f"|diff| of longest {diff:.3f}  [target <= 0.02]")
        print(f"  verdict: subsampled {approx.verdict!r}, exact {exact.verdict!r}")
        print(f"  time: subsampled {w1:.1f} s and {w2:.1f} s wall ({c1:.1f} s and {c2:.1f} s CPU; "
              f"{load1}, {load2}), exact {t_exact:.1f} s wall ({c_exact:.1f} s CPU; {load_exact})")
        print(f"    subsampled {format_stages(st_a)}")
        print(f"    exact      {format_stages(st_e)}")
        print(f"  speed ratio: {ratio:.1f}x wall, {ratio_cpu:.1f}x CPU  [target >= 10x]")
        ok = overlap >= 0.95 and diff <= 0.02 and approx.verdict == exact.verdict and ratio >= 10
        print(f"  equal conclusions and >= 10x (wall): {'yes' if ok else 'NO'}")


def _h1_top(res):
    bars = getattr(res, "bars", None)
    return list(bars.h1_top) if bars is not None else list(res.summary["h1_top"])


if __name__ == "__main__":
    main()
