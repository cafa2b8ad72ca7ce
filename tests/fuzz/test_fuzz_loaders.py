"""Fuzzing the checkpoint loaders: any bytes give a KernelBundle or an InputError, nothing else.

Hypothesis mutates valid ``.npz``, safetensors, torch (zip and legacy) and HDF5 (``.h5``
and ``.keras``) files: truncations, bit flips, overwrites, insertions, damaged headers
and trailers, wrong extensions, and hand-written headers with random shapes, dtypes and
offsets. Each format runs in its own subprocess under RLIMIT_AS (3 GiB) and a timeout, so
a segfault, a memory blow-up or a hang in a parser fails the test instead of the run.

The default run is short (``FUZZ_EXAMPLES`` examples per format, derandomised, about
20 s in all). For a longer, random campaign::

    FILTERTOPO_FUZZ_EXAMPLES=2000 FILTERTOPO_FUZZ_RANDOM=1 python -m pytest tests/fuzz -q
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Examples per format in the default (CI) run.
FUZZ_EXAMPLES = 40

IMPL = Path(__file__).with_name("_fuzz_loaders_impl.py")
NEEDS = {"npz": [], "safetensors": ["safetensors"], "torch": ["torch"], "h5": ["h5py"]}


def _examples() -> int:
    raw = os.environ.get("FILTERTOPO_FUZZ_EXAMPLES", "")
    return int(raw) if raw.strip() else FUZZ_EXAMPLES


@pytest.mark.parametrize("fmt", sorted(NEEDS))
def test_fuzz_loader_returns_or_raises_input_error(fmt):
    pytest.importorskip("hypothesis")
    for mod in NEEDS[fmt]:
        pytest.importorskip(mod)
    n = _examples()

    def limit():
        import resource

        cap = 3 * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    try:
        r = subprocess.run([sys.executable, str(IMPL), fmt, str(n)], capture_output=True, text=True,
                           timeout=60 + 2 * n, preexec_fn=limit, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"fuzzing {fmt} hung past {e.timeout} s:\n{(e.stdout or b'')[-3000:]!r}")
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"fuzzing {fmt} failed (rc {r.returncode}):\n{out[-6000:]}"
    assert f"FUZZ {fmt}: {n} examples" in out, out[-3000:]
