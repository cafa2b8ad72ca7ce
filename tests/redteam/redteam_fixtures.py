"""Build the fixtures of the second red-team report (REDTEAM-2.md, Appendix A) in a folder.

The report's fixture scripts are kept verbatim in ``fixtures/<name>.txt``; ``build(rt)`` writes
``secret.txt`` as Appendix A does, copies each script into ``rt`` with ``$RT`` replaced by the
folder (as the report says to), and runs them there in the report's order, each in its own
process under an address-space limit and a timeout. Used by ``rerun.py`` and
``tests/test_redteam_held.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: Appendix A, in the order the report runs them.
SCRIPTS = ("mkfx.py", "mkfx2.py", "mkfx3.py", "mkfx3b.py", "mkfx4.py", "mkfx5.py", "mkfx6.py",
           "mkfx7_images.py", "mkfx8_misc.sh")

#: The Python packages the scripts import (the test extras of filtertopo).
NEEDS = ("numpy", "torch", "safetensors", "onnx", "h5py", "PIL", "tifffile")


def script_text(name: str, rt) -> str:
    """The report's script ``name`` with ``$RT`` replaced by the folder ``rt``."""
    return (FIXTURES / f"{name}.txt").read_text().replace("$RT", str(rt))


def write_secret(rt) -> Path:
    """Appendix A's ``secret.txt`` (what X07 / K09 must never leak)."""
    lines = [f"TOPSECRET-{int(time.time())}-abcdefghijklmnopqrstuvwxyz0123456789"]
    lines += [f"secret line {i}: the quick brown fox jumps over the lazy dog 0123456789" for i in range(1, 41)]
    p = Path(rt) / "secret.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def build(rt, scripts=SCRIPTS, *, mem: int = 4_000_000_000, timeout: float = 300) -> Path:
    """Run Appendix A in folder ``rt`` (created): the report's fixtures under rt/fx, im, cfg, imgs."""
    rt = Path(rt).resolve()
    rt.mkdir(parents=True, exist_ok=True)
    for d in ("fx", "out", "o", "r", "runs", "tr", "dm"):
        (rt / d).mkdir(exist_ok=True)
    write_secret(rt)

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))

    # mkfx8_misc.sh calls `python`: the interpreter running this
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in scripts:
        (rt / name).write_text(script_text(name, rt))
        cmd = ["bash", name] if name.endswith(".sh") else [sys.executable, name]
        r = subprocess.run(cmd, cwd=rt, env=env, capture_output=True, text=True, timeout=timeout,
                           preexec_fn=limit, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"REDTEAM-2 fixture script {name} failed (rc {r.returncode}):\n{r.stderr[-3000:]}")
    return rt
