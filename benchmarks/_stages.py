"""Wall and CPU time of each pipeline stage, without cProfile.

cProfile's per-call overhead inflates the Python-heavy stages (the per-filter shape fit
loop: 3.2 s under cProfile, 1.8-2.2 s CPU without it on the same core), so the benchmarks
time the stages by wrapping the stage functions where the pipeline looks them up:

    with stage_times() as st:
        analyze_points(...)
    print(format_stages(st))

CPU time (``time.process_time``) counts every thread of the process (BLAS uses two), so on
shared cores it is the steadier measure; wall time is what a user waits.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import time

#: (label, defining module, function); nested calls are counted in both stages
#: (``persistence`` picks its own landmarks only when the caller gave none).
STAGES = [
    ("normalise", "filtertopo.normalize", "normalize_filters"),
    ("kNN+core", "filtertopo.density", "dense_core"),
    ("landmarks", "filtertopo.density", "maxmin_landmarks"),
    ("PH", "filtertopo.homology", "persistence"),
    ("circular", "filtertopo.circular", "circular_coordinates"),
    ("shapes", "filtertopo.shapes", "fit_shapes"),
    ("verdict", "filtertopo.verdict", "layer_verdict"),
]

#: Modules that bind the stage functions by name (``from .density import dense_core``).
CALLERS = ("filtertopo.pipeline", "filtertopo.topology", "filtertopo.nullmodel")


@contextlib.contextmanager
def stage_times():
    """Time the stages while inside; yields {label: [wall_s, cpu_s, calls]}."""
    out = {label: [0.0, 0.0, 0] for label, _, _ in STAGES}
    callers = []
    for name in CALLERS:
        try:
            callers.append(importlib.import_module(name))
        except ImportError:
            pass
    undo = []
    for label, modname, fn in STAGES:
        mod = importlib.import_module(modname)
        orig = getattr(mod, fn)

        def wrapped(*a, _orig=orig, _acc=out[label], **k):
            w, c = time.perf_counter(), time.process_time()
            try:
                return _orig(*a, **k)
            finally:
                _acc[0] += time.perf_counter() - w
                _acc[1] += time.process_time() - c
                _acc[2] += 1

        functools.update_wrapper(wrapped, orig)
        for m in [mod] + callers:
            if getattr(m, fn, None) is orig:
                setattr(m, fn, wrapped)
                undo.append((m, fn, orig))
    try:
        yield out
    finally:
        for m, fn, orig in undo:
            setattr(m, fn, orig)


def format_stages(st, *, cpu: bool = True) -> str:
    """One line: ``label wall/cpu s`` for each stage that ran."""
    parts = []
    for label, (w, c, n) in st.items():
        if n:
            parts.append(f"{label} {w:.2f}/{c:.2f}" if cpu else f"{label} {w:.2f}")
    return ("stages wall/cpu s: " if cpu else "stages s: ") + ", ".join(parts)
