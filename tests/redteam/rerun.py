#!/usr/bin/env python
"""Rerun the reproduction commands of the second red-team report (REDTEAM-2.md, issue 12).

    python tests/redteam/rerun.py [--only ID,...] [--out FILE] [--keep DIR] [--trials N] [-v]

The report lists 46 failing classes, each with a reproduction command. This script builds the
report's fixtures in a temporary folder ($RT), with the report's own fixture scripts (verbatim
copies in ``fixtures/``; ``$RT`` is substituted when they are copied into the folder), runs every
failing class's reproduction commands there (adapted only as far as paths and this machine need,
see ADAPTED below), each under a memory limit (RLIMIT_AS) and a timeout, and checks the outcome
against the table EXPECTED below:

- ``error``  : the class is fixed by refusing the input: exit 2, exactly one stderr line that
               starts with ``error:``, no ``Traceback`` (plus the per-class checks: what the line
               names, what must not be printed, that nothing was left behind or overwritten);
- ``result`` : the class is fixed by a correct result (exit 0 and the right output, checked).

It prints one line per class (id, expected, got, PASS/FAIL) and exits 1 if any class fails.
``--out FILE`` also writes every command, its exit status, time and the tail of its stderr as
JSON. The filtertopo that runs is the one of this checkout (``<repo>/src`` goes first on
PYTHONPATH), started as ``python -m filtertopo``.

Needs the test extras (torch, h5py, onnx, safetensors, Pillow, scikit-image, tifffile, mlxtend).
A full run takes about 5 to 8 minutes on two cores; ``--only`` runs the named classes (and
builds only what they need).

ADAPTED (where a command could not be run exactly as printed in the report):

- ``$FT`` is ``python -m filtertopo`` with this checkout's src first on PYTHONPATH.
- "as user nobody" (F04, O02): the report uses ``setpriv --reuid=65534``; the interpreter may
  live in root's home, which nobody cannot enter, so a root Python imports filtertopo and then
  drops to uid/gid 65534 before ``filtertopo.cli.main`` runs. Not root: the command runs as
  the current user, for whom ``chmod 000`` / a read-only folder refuse the same way.
- X07's ``$PY -c "... load_kernels('fx/ext_secret.h5') ..."`` (the API, no CLI): expected to
  raise InputError, whose text must not hold the secret; the snippet prints it instead of a
  traceback.
- O06 (conctest.py) and O07 (killtest.py): their logic, re-implemented here so that the verdict
  can be checked (conctest: ``--trials`` trials, default 3, instead of 10).
- BP (``| head -1``): the reader closes the pipe after one line, as head does.
- ``ulimit -v K`` / ``ulimit -f N`` become RLIMIT_AS = K KiB / RLIMIT_FSIZE = N KiB of the run.
- O09's ``$PY -c "... json.load(...)['config']['sources']"``: analysis.json schema 2 keeps the
  sources under 'inputs'; the snippet reads whichever holds them (and a layer's notes are under
  'notes', not 'extras': T22 and S13 read either).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import redteam_fixtures  # noqa: E402  (tests/redteam/redteam_fixtures.py)

REPO = HERE.parents[1]
SRC = REPO / "src"

GB = 1_000_000_000
MEM_DEFAULT = 2_500_000_000        # the report's harness (h.py): RLIMIT_AS 2.5 GB for every run
KIB = 1024

E2 = "exit 2, one error: line, no traceback"

# --------------------------------------------------------------------------------------------
# The expected outcome of every failing class of the report: (kind, what is checked).
# kind 'error' = refused with one error line (exit 2); 'result' = the documented correct result.
# Decided from the report's "expect" strings (Appendix C) and the regression tests named after
# each class (tests/test_redteam_*.py, tests/test_mapper_scaling.py).
# --------------------------------------------------------------------------------------------
EXPECTED = {
    "X07":  ("error",  "HDF5 external raw storage (.h5 abs/rel, inside .keras): describe/analyze exit 2, one "
                       "error: line 'external raw storage'; the secret never printed; load_kernels raises "
                       "InputError"),
    "O07":  ("result", "SIGKILL after points.npz moved in, --force over old results: the folder loads as the "
                       "old or the new analysis (never a mix), or `report` refuses it with one error: line "
                       "'incomplete or mixed'"),
    "O09":  ("error",  "RLIMIT_FSIZE 20 KiB while saving (fresh and --force over old): exit 2, one error: line "
                       "'File too large'; the old results still load unchanged and `report` renders them"),
    "O06":  ("result", "two concurrent analyze runs on one --out: rcs 0/2 (the loser: one error: line), no "
                       "traceback; analysis.json, layers.csv and points.npz of one run, never corrupt"),
    "K18":  ("error",  "track --out whose steps/step_000000 holds an analysis, no --force: exit 2, one error: "
                       "line naming --force; the analysis unchanged"),
    "DM04": ("error",  "demo --out whose init/ holds an analysis, no --force: exit 2 before training, one "
                       "error: line; init/analysis.json unchanged"),
    "O04":  ("result", "analyze --force without --report over a folder with report.html: exit 0, no "
                       "report.html of the old input left beside the new results"),
    "F08c": ("error",  "100 zero bytes .bin, 2^62 header .bin: exit 2, one error: line calling them corrupt; "
                       "no --allow-pickle advice"),
    "K09":  ("error",  "index.csv entry outside the run folder (../../../x.npz, absolute path): exit 2, one "
                       "error: line 'outside the run folder'; the file's bytes never printed"),
    "K08":  ("result", "index.csv lists a snapshot twice: exit 0, the step pooled once (n_runs 1, the run's "
                       "filters once) with a note"),
    "N01":  ("error",  "train --lr nan/inf, --momentum nan, --weight-decay inf, config lr NaN: exit 2 before "
                       "training, one error: line; no run folder"),
    "P10f": ("error",  "--coeff 251/257/7919/65537/1000003: exit 2, one error: line naming --coeff, before "
                       "ripser (no abort, rc never 134/-6)"),
    "P11d": ("error",  "--maxdim 3 (and 2) on 2,000 filters / 500 landmarks under RLIMIT_AS 2 GB: exit 2, one "
                       "error: line with the estimated cost; never a C++ abort"),
    "Q08":  ("result", "analyze --report on 64 identical filters under 2.5 GB: exit 0 in seconds, report.html "
                       "written"),
    "M02":  ("error",  "2.4 KB .h5 declaring 460 MB (fill value), under 2 GB: describe/analyze exit 2, one "
                       "error: line naming MAX_TENSOR_BYTES; no out-of-memory"),
    "S04b": ("error",  "144 Mpx PNG / 400 Mpx TIFF of a few hundred KB, under 2 GB: exit 2, one error: line "
                       "naming MAX_IMAGE_PIXELS"),
    "S10b": ("error",  "patches --n-per-image 500000000 under 2 GB: exit 2, one error: line naming "
                       "--n-per-image, no 'out of memory'"),
    "K11":  ("error",  "FIFO as track index.csv / train --config / patches image: exit 2 at once, one error: "
                       "line 'FIFO'; no hang"),
    "P10h": ("error",  "--coeff 10^400+1: exit 2, one error: line"),
    "P10i": ("error",  "--coeff a 31-digit prime: exit 2 within seconds, one error: line"),
    "P12":  ("error",  "--seed -1 in analyze, track, patches, demo (demo before training): exit 2, one error: "
                       "line naming the seed"),
    "N11":  ("error",  "train --seed 2^70, --data-seed -1: exit 2 before training, one error: line"),
    "F04":  ("error",  "unreadable checkpoint (as user nobody): describe/analyze exit 2, one error: line "
                       "'permission denied'"),
    "O08":  ("error",  "--out / checkpoint name of 300 bytes: exit 2, one error: line 'too long'"),
    "O02":  ("error",  "(as user nobody) --out under a read-only folder / a read-only folder, report --out in "
                       "one: exit 2 before the work, one error: line"),
    "O05b": ("error",  "--out a dangling symlink: exit 2 before the work, one error: line"),
    "O05d": ("error",  "a result name (analysis.json) that is a folder, --force: exit 2, one error: line "
                       "'is a folder'; nothing written, no stray .tmp"),
    "R19":  ("error",  "report --out an existing folder (--force and not): exit 2, one error: line; no stray "
                       ".tmp"),
    "R03":  ("error",  "hand-edited analysis.json (list, no layers, non-UTF-8, layer without name, string "
                       "diagrams, kernel_shape [5,5]), with and without manifest.json: report exit 2, one "
                       "error: line"),
    "R12":  ("error",  "corrupt points.npz (truncated, garbage, object array, wrong dimension), with and "
                       "without manifest.json: report exit 2, one error: line; NaN points: exit 0 or that"),
    "R21":  ("error",  "report --mapper-max-points -5 / 0: exit 2, one error: line naming the flag"),
    "K04":  ("error",  "index.csv not UTF-8: exit 2, one error: line naming index.csv"),
    "K05":  ("result", "run.json a JSON list: exit 0 with a note; run.json a folder: exit 2, one error: line"),
    "K10":  ("error",  "index.csv is a folder: exit 2, one error: line 'is a folder'"),
    "N05":  ("error",  "--config holding a JSON list / {\"config\": 5}: exit 2, one error: line naming "
                       "--config"),
    "N22":  ("error",  "--model-kwarg input_size=2 / -5, num_classes=0, in_channels=\"abc\": exit 2 before "
                       "training, one error: line naming the key; run.json never left 'running'"),
    "N10":  ("error",  "folder: data set holding a non-image .png: exit 2, one error: line naming the file"),
    "N20":  ("result", "train --force over a run whose snapshots/ holds a sub-folder: exit 0, a warning, the "
                       "sub-folder kept, run.json complete"),
    "T06":  ("result", "filters scaled by 1e-40 (float32 denormals) / 1e-300 (float64): exit 0, analysed like "
                       "the unscaled filters (not 'all constant')"),
    "T05":  ("result", "finite float64 filters scaled by 1e300: exit 0, analysed like the unscaled filters "
                       "(not 'NaN or Inf')"),
    "T22":  ("result", "1 filter with --k 1, 2 filters with --clamp-k: exit 0, verdict too-few, no advice to "
                       "pass --k 1 / --clamp-k"),
    "S13":  ("result", "patches --k 5000 on 100 patches: exit 0, too-few, notes name no --layers/--clamp-k "
                       "(and --clamp-k stays an argparse usage error: patches has no such flag)"),
    "W05":  ("result", "a valid torch zip named .safetensors: describe/analyze exit 0, read as torch"),
    "DM06": ("error",  "demo --k 0 / --p 2 / --layers nosuch: exit 2 before training, one error: line, no "
                       "runs/; the corrected rerun (--k 5) then exits 0"),
    "Q11":  ("result", "unicode layer names with PYTHONIOENCODING=latin-1: describe/analyze exit 0, no "
                       "traceback"),
    "BP":   ("result", "describe/analyze piped into head -1: exit 0 or 141 (closed pipe), stderr without "
                       "traceback"),
}

ORDER = list(EXPECTED)  # the report's order (most serious first)


# --------------------------------------------------------------------------------------------
# running commands
# --------------------------------------------------------------------------------------------

@dataclass
class Run:
    argv: list
    rc: object              # int, or "TIMEOUT"
    out: str
    err: str
    secs: float
    cwd: str = ""

    @property
    def error_lines(self):
        return [ln for ln in self.err.splitlines() if ln.startswith("error:")]

    @property
    def traceback(self):
        return "Traceback" in self.err or "Traceback" in self.out

    def outcome(self):
        if self.rc == "TIMEOUT":
            return f"TIMEOUT after {self.secs:.0f} s"
        s = f"exit {self.rc}"
        n = len(self.error_lines)
        if n:
            s += ", one error: line" if n == 1 else f", {n} error: lines"
        if self.traceback:
            s += ", Traceback"
        return s

    def short(self):
        if self.argv[:3] == PYFT or (self.argv[1:2] == ["-c"] and self.argv[2:3] == [DROP]):
            args = [a for a in self.argv[3:] if a not in ("--no-progress",)]
        else:
            args = self.argv
        text = " ".join(str(a) for a in args)
        return text if len(text) < 110 else text[:107] + "..."


PYFT = [sys.executable, "-m", "filtertopo"]

#: Run as uid 65534 from a root Python: import everything first (the interpreter may live in
#: root's home, which nobody cannot read), then drop privileges and run the CLI.
DROP = r"""
import importlib, os, pkgutil, sys, warnings
warnings.simplefilter("ignore")
import filtertopo, filtertopo.cli as cli
for m in pkgutil.walk_packages(filtertopo.__path__, "filtertopo."):
    if m.name.endswith("__main__"):   # importing it would run the command, as root
        continue
    try:
        importlib.import_module(m.name)
    except Exception:
        pass
try:
    import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot
except Exception:
    pass
cli.build_parser()
os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.argv[0] = "filtertopo"
sys.exit(cli.main(sys.argv[1:]))
"""


def _kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Ctx:
    def __init__(self, rt: Path, verbose=False, trials=3):
        self.rt = rt
        self.verbose = verbose
        self.trials = trials
        self.built = set()
        self.root = hasattr(os, "geteuid") and os.geteuid() == 0
        env = dict(os.environ)
        if SRC.is_dir():
            env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.setdefault("MPLBACKEND", "Agg")
        env.pop("PYTHONIOENCODING", None)
        self.env = env

    # ---- processes
    def run(self, argv, *, mem=MEM_DEFAULT, timeout=180, cwd=None, env=None, fsize=None, stdin=None):
        def limits():
            if mem:
                resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            if fsize:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

        e = dict(self.env, **(env or {}))
        t0 = time.time()
        p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=stdin if stdin is not None else subprocess.DEVNULL,
                             cwd=str(cwd or self.rt), env=e, preexec_fn=limits, start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            _kill_group(p)
            out, err = p.communicate()
            rc = "TIMEOUT"
        _kill_group(p)  # workers a killed or finished run left behind
        r = Run([str(a) for a in argv], rc, out.decode("utf-8", "backslashreplace"),
                err.decode("utf-8", "backslashreplace"), time.time() - t0, str(cwd or self.rt))
        if self.verbose:
            print(f"    [{r.secs:5.1f} s] {r.short()} -> {r.outcome()}", file=sys.stderr)
            if r.rc != 0 and r.err.strip():
                print("        " + r.err.strip().splitlines()[-1][:300], file=sys.stderr)
        return r

    def ft(self, *args, **kw):
        return self.run(PYFT + [str(a) for a in args], **kw)

    def ft_nobody(self, *args, **kw):
        """The command as user nobody (65534), as the report's ``setpriv`` runs; see DROP."""
        if not self.root:
            return self.ft(*args, **kw)
        env = dict(HOME=str(self.rt / "nb"), MPLCONFIGDIR=str(self.rt / "nb" / "mpl"))
        return self.run([sys.executable, "-c", DROP, *map(str, args)], env=env, **kw)

    def py(self, code, *args, **kw):
        return self.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], **kw)

    def p(self, rel) -> Path:
        return self.rt / rel

    # ---- what the cases need, built once
    def need(self, *what):
        for w in what:
            if w in self.built:
                continue
            getattr(self, f"_build_{w}")()
            self.built.add(w)

    def _build_fx(self):
        """Appendix A: secret.txt, then the report's fixture scripts in its order."""
        redteam_fixtures.build(self.rt)
        os.chmod(self.rt, 0o755)  # user nobody (F04, O02) must be able to enter $RT

    def _build_base0(self):
        self.need("fx")
        r = self.ft("analyze", "fx/base.npz", "--out", "out/base0", "--k", "10", "--no-progress")
        if r.rc != 0:
            raise RuntimeError(f"the baseline analysis failed: {r.err[-2000:]}")

    def _build_r0(self):
        self.need("fx")
        r = self.ft("train", "--out", "runs/r0", "--n-train", "64", "--epochs", "1", "--batch-size", "32",
                    "--snapshot-every", "1", "--eval-samples", "50", "--threads", "1", "--no-progress")
        if r.rc != 0:
            raise RuntimeError(f"the baseline training failed: {r.err[-2000:]}")

    def _build_ref64(self):
        """T05/T06: the unscaled filters (fx/f64.npz is fx/huge64.npz / 1e300, fx/tiny64.npz * 1e300)."""
        self.need("fx")
        r = self.ft("analyze", "fx/f64.npz", "--out", "out/t06ref", "--k", "10", "--no-progress")
        if r.rc != 0:
            raise RuntimeError(f"the reference analysis of fx/f64.npz failed: {r.err[-2000:]}")

    def _build_refs(self):
        """Reference analyses of fx/many.npz for O06 and O07 (conctest.py / killtest.py)."""
        self.need("fx")
        for d, extra in (("o/conc_ref10", ["--k", "10"]), ("o/conc_ref12", ["--k", "12"]),
                         ("o/kill_ref7", ["--k", "12", "--seed", "7"])):
            r = self.ft("analyze", "fx/many.npz", "--out", d, *extra, "--no-progress", "--jobs", "1")
            if r.rc != 0:
                raise RuntimeError(f"reference analysis {d} failed: {r.err[-2000:]}")


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------

@dataclass
class Record:
    cid: str
    steps: list = field(default_factory=list)   # (label, outcome, ok, why)
    runs: list = field(default_factory=list)

    def add(self, label, ok, outcome, why=""):
        self.steps.append((label, outcome, bool(ok), why))
        return ok

    @property
    def ok(self):
        return bool(self.steps) and all(s[2] for s in self.steps)

    def got(self):
        bad = [s for s in self.steps if not s[2]]
        if bad:
            return "; ".join(f"{label}: {outcome}" + (f" ({why})" if why else "") for label, outcome, _, why in bad)
        counts = {}
        for _, outcome, _, _ in self.steps:
            counts[outcome] = counts.get(outcome, 0) + 1
        return "; ".join(f"{o}" + (f" x{n}" if n > 1 else "") for o, n in counts.items())


def error(rec: Record, r: Run, *needles, forbid=(), label=None, max_secs=None):
    """exit 2, exactly one stderr line starting with 'error:', no traceback (+ needles/forbid)."""
    rec.runs.append(r)
    label = label or r.short()
    why = []
    if r.rc != 2:
        why.append(f"expected exit 2")
    if len(r.error_lines) != 1:
        why.append(f"{len(r.error_lines)} error: lines")
    if r.traceback:
        why.append("traceback: " + r.err.strip().splitlines()[-1][:160])
    line = r.error_lines[0] if r.error_lines else ""
    for n in needles:
        if n not in line:
            why.append(f"error line lacks {n!r}")
    for f in forbid:
        if f in r.out or f in r.err:
            why.append(f"output holds {f!r}")
    if max_secs is not None and r.secs > max_secs:
        why.append(f"took {r.secs:.0f} s > {max_secs} s")
    if why and line:
        why.append(f"line: {line[:200]}")
    return rec.add(label, not why, r.outcome(), "; ".join(why))


def ok(rec: Record, r: Run, *, needles=(), forbid=(), rcs=(0,), label=None, max_secs=None):
    """exit 0 (or one of rcs), no traceback (+ needles in stdout+stderr, forbid)."""
    rec.runs.append(r)
    label = label or r.short()
    why = []
    if r.rc not in rcs:
        why.append(f"expected exit {'/'.join(map(str, rcs))}")
        if r.err.strip():
            why.append("stderr: " + r.err.strip().splitlines()[-1][:200])
    elif r.traceback:
        why.append("traceback: " + r.err.strip().splitlines()[-1][:160])
    for n in needles:
        if n not in r.out and n not in r.err:
            why.append(f"output lacks {n!r}")
    for f in forbid:
        if f in r.out or f in r.err:
            why.append(f"output holds {f!r}")
    if max_secs is not None and r.secs > max_secs:
        why.append(f"took {r.secs:.0f} s > {max_secs} s")
    return rec.add(label, not why, r.outcome(), "; ".join(why))


def check(rec: Record, cond, label, why=""):
    return rec.add(label, cond, "check ok" if cond else "check FAILED", "" if cond else why)


def sources(js):
    """The checkpoints an analysis.json was made from: 'inputs' (schema 2) or 'config' (the report's)."""
    return js.get("inputs", js.get("config", {})).get("sources")


def layer_notes(lay):
    """A layer's notes and verdict reasons in analysis.json (schema 2: 'notes'; the report's: 'extras')."""
    extras = lay.get("extras") or {}
    detail = lay.get("verdict_detail") or extras.get("verdict") or {}
    return [str(n) for n in list(lay.get("notes") or extras.get("notes") or []) + list(detail.get("reasons") or [])]


def md5(p):
    return hashlib.md5(Path(p).read_bytes()).hexdigest()


def csv_rows(p):
    with open(p, newline="") as fh:
        return list(csv.DictReader(fh))


def same_layer(rec, ctx, got_dir, ref_dir, label, rtol=1e-3):
    """layers.csv of got_dir analysed like ref_dir: n_dropped, n_core, verdict equal, h1 close."""
    try:
        g, r = csv_rows(ctx.p(got_dir) / "layers.csv"), csv_rows(ctx.p(ref_dir) / "layers.csv")
    except OSError as e:
        return check(rec, False, label, f"cannot read layers.csv: {e}")
    why = []
    for a, b in zip(g, r):
        for col in ("n_dropped", "n_core", "verdict"):
            if a[col] != b[col]:
                why.append(f"{a['layer']} {col} {a[col]} != {b[col]}")
        for col in ("h1_1", "h1_2"):
            x, y = float(a[col] or "nan"), float(b[col] or "nan")
            if not abs(x - y) <= rtol * max(abs(y), 1e-12):
                why.append(f"{a['layer']} {col} {x:.6g} != {y:.6g}")
    if len(g) != len(r):
        why.append(f"{len(g)} layers != {len(r)}")
    return check(rec, not why, label, "; ".join(why))


def copytree(ctx, src, dst):
    shutil.rmtree(ctx.p(dst), ignore_errors=True)
    shutil.copytree(ctx.p(src), ctx.p(dst), symlinks=True)
    return ctx.p(dst)


# --------------------------------------------------------------------------------------------
# the classes: each runs the report's reproduction commands and checks them
# --------------------------------------------------------------------------------------------

CASES = {}


def case(cid, *needs):
    def deco(fn):
        CASES[cid] = (fn, needs)
        return fn
    return deco


A = ["--k", "10", "--p", "0.3", "--no-progress", "--jobs", "1"]          # the batch drivers' flags
TS = ["--n-train", "64", "--epochs", "1", "--eval-samples", "50", "--threads", "1", "--no-progress"]


@case("X07", "fx")
def c_x07(ctx, rec):
    secret = "TOPSECRE"
    for p in ("fx/ext_secret.h5", "fx/ext_secret.keras"):
        error(rec, ctx.ft("describe", p), "external raw storage", forbid=(secret, "secret line"))
        error(rec, ctx.ft("analyze", p, "--out", "out/x07", "--k", "10", "--no-progress"), "external raw storage",
              forbid=(secret, "secret line"))
        check(rec, not ctx.p("out/x07").exists(), "out/x07 not written", "out/x07 was created")
    # the relative ../secret.txt, resolved against the CWD: read from fx/, where it exists
    error(rec, ctx.ft("describe", "ext_rel.h5", cwd=ctx.p("fx")), "external raw storage", forbid=(secret,),
          label="(cwd fx) describe ext_rel.h5")
    r = ctx.py("""
        import sys, numpy as np
        from filtertopo.errors import InputError
        from filtertopo.weights import load_kernels
        try:
            w = load_kernels('fx/ext_secret.h5').kernels['conv1']
        except InputError as e:
            print('error:', e, file=sys.stderr); sys.exit(2)
        print(np.transpose(w, (2, 3, 1, 0)).astype('<f4').tobytes()[:60])
    """)
    error(rec, r, "external raw storage", forbid=(secret,), label="load_kernels('fx/ext_secret.h5')")


@case("O07", "refs")
def c_o07(ctx, rec):
    """killtest.py: SIGKILL an analyze --force run right after it replaces points.npz."""
    d = ctx.p("o/kill")
    shutil.rmtree(d, ignore_errors=True)
    r = ctx.ft("analyze", "fx/many.npz", "--out", "o/kill", "--k", "10", "--no-progress", "--jobs", "1", "--seed", "0")
    if not ok(rec, r, label="first run (seed 0, k 10)"):
        return
    old_ino = os.stat(d / "points.npz").st_ino
    env = dict(ctx.env)
    p = subprocess.Popen(PYFT + ["analyze", "fx/many.npz", "--out", "o/kill", "--k", "10", "--no-progress", "--jobs",
                                 "1", "--seed", "7", "--k", "12", "--force"], cwd=ctx.rt, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    killed, t0 = False, time.time()
    while p.poll() is None and time.time() - t0 < 300:
        try:
            if os.stat(d / "points.npz").st_ino != old_ino:
                os.killpg(p.pid, signal.SIGKILL)
                killed = True
                break
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    if p.poll() is None and not killed:
        _kill_group(p)
    p.wait()
    err = p.stderr.read().decode(errors="replace")
    check(rec, killed or p.returncode == 0, "run killed after points.npz moved in",
          f"rc {p.returncode}: {err[-200:]}")
    rep = ctx.ft("report", "o/kill")
    rec.runs.append(rep)
    if rep.rc == 2:
        error(rec, rep, "incomplete or mixed", label="report o/kill (refused)")
    else:
        ok(rec, rep, label="report o/kill (rendered)")
        # rendered: the folder must be one analysis, not a mix
        try:
            import numpy as np
            js = json.loads((d / "analysis.json").read_text())["config"]
            z = np.load(d / "points.npz")
            ref = ctx.p("o/conc_ref10" if js["seed"] == 0 else "o/kill_ref7")
            zr = np.load(ref / "points.npz")
            same = sorted(z.files) == sorted(zr.files) and all(np.array_equal(z[k], zr[k]) for k in zr.files)
            check(rec, same, f"points.npz is the seed-{js['seed']} k={js['k']} run's",
                  "points.npz belongs to the other run: a mixed folder")
        except Exception as e:  # noqa: BLE001
            check(rec, False, "folder readable", f"{type(e).__name__}: {e}")
    again = ctx.ft("analyze", "fx/many.npz", "--out", "o/kill", "--k", "10", "--no-progress", "--jobs", "1")
    error(rec, again, label="rerun without --force (refused)")


@case("O09", "fx")
def c_o09(ctx, rec):
    full = 20 * KIB  # ulimit -f 20
    shutil.rmtree(ctx.p("o/full3"), ignore_errors=True)
    ok(rec, ctx.ft("analyze", "fx/b1.npz", "--out", "o/full3", "--k", "10", "--no-progress"), label="analyze b1 (old)")
    before = {f: md5(ctx.p("o/full3") / f) for f in os.listdir(ctx.p("o/full3"))}
    error(rec, ctx.ft("analyze", "fx/base.npz", "--out", "o/full3", "--k", "10", "--no-progress", "--force", fsize=full),
          "File too large", label="(ulimit -f 20) analyze base --force")
    after = {f: md5(ctx.p("o/full3") / f) for f in os.listdir(ctx.p("o/full3"))}
    check(rec, after == before, "old results unchanged", f"files now {sorted(after)} (were {sorted(before)})")
    r = ctx.py("import numpy as np,json; print(np.load('o/full3/points.npz').files, "
               "(lambda j: j.get('inputs', j['config'])['sources'])(json.load(open('o/full3/analysis.json'))))")
    ok(rec, r, needles=("fx/b1.npz",), label="$PY -c (sources still fx/b1.npz)")
    ok(rec, ctx.ft("report", "o/full3"), label="report o/full3 (the old, consistent results)")
    # fresh folder (batch9 O09)
    shutil.rmtree(ctx.p("o/full"), ignore_errors=True)
    error(rec, ctx.ft("analyze", "fx/base.npz", "--out", "o/full", *A, fsize=full), "File too large",
          label="(ulimit -f 20) analyze into a fresh folder")
    if ctx.p("o/full").exists():
        left = [n for n in os.listdir(ctx.p("o/full")) if n not in ("manifest.json",)]
        rr = ctx.ft("report", "o/full")
        if rr.rc == 2 or left:
            error(rec, rr, label="report o/full (nothing complete to render)")
        else:
            check(rec, True, "o/full left empty")


@case("O06", "refs")
def c_o06(ctx, rec):
    """conctest.py: two analyze runs (k 10, k 12) writing one fresh --out at once."""
    import numpy as np
    refs = {k: np.load(ctx.p(f"o/conc_ref{k}") / "points.npz") for k in ("10", "12")}

    def which_k(d):
        try:
            z = np.load(d / "points.npz")
            arrs = {x: z[x] for x in z.files}
        except Exception as e:  # noqa: BLE001
            return f"CORRUPT({type(e).__name__})"
        for k, zr in refs.items():
            if sorted(arrs) == sorted(zr.files) and all(np.array_equal(arrs[x], zr[x]) for x in zr.files):
                return k
        return "mixed"

    for trial in range(ctx.trials):
        d = ctx.p(f"o/conc{trial}")
        shutil.rmtree(d, ignore_errors=True)
        cmds = [PYFT + ["analyze", "fx/many.npz", "--out", str(d), "--k", k, "--no-progress", "--jobs", "1"]
                for k in ("10", "12")]
        t0 = time.time()
        ps = [subprocess.Popen(c, cwd=ctx.rt, env=ctx.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True) for c in cmds]
        outs = []
        for p, c in zip(ps, cmds):
            try:
                _, e = p.communicate(timeout=300)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                _kill_group(p)
                _, e = p.communicate()
                rc = "TIMEOUT"
            outs.append(Run(c, rc, "", e.decode(errors="replace"), time.time() - t0))
        label = f"trial {trial}"
        rcs = sorted(str(r.rc) for r in outs)
        for r in outs:
            if r.rc == 2:
                error(rec, r, label=f"{label} loser (k {r.argv[-4]})")
            else:
                ok(rec, r, label=f"{label} k {r.argv[-4]}")
        try:
            js = str(json.loads((d / "analysis.json").read_text())["config"]["k"])
        except Exception as e:  # noqa: BLE001
            js = f"CORRUPT({type(e).__name__})"
        try:
            csvk = csv_rows(d / "layers.csv")[0]["k"]
        except Exception as e:  # noqa: BLE001
            csvk = f"CORRUPT({type(e).__name__})"
        pk = which_k(d)
        check(rec, js == csvk == pk and js in ("10", "12"), f"{label}: rcs {rcs}; json k={js} csv k={csvk} "
              f"points k={pk}", "the folder mixes two runs or holds a corrupt file")
        leftovers = [n for n in os.listdir(d) if n.startswith(".") and n not in (".filtertopo.lock",)]
        check(rec, not leftovers, f"{label}: no temporary files left", f"left {leftovers}")


@case("K18", "fx", "base0", "r0")
def c_k18(ctx, rec):
    shutil.rmtree(ctx.p("tr/k18"), ignore_errors=True)
    ctx.p("tr/k18/steps/step_000000").mkdir(parents=True)
    target = ctx.p("tr/k18/steps/step_000000/analysis.json")
    shutil.copy(ctx.p("out/base0/analysis.json"), target)
    h0 = md5(target)
    error(rec, ctx.ft("track", "runs/r0", "--out", "tr/k18", "--k", "10", "--layers", "conv1", "--no-progress"),
          "--force")
    check(rec, md5(target) == h0, "steps/step_000000/analysis.json unchanged", "it was overwritten")


@case("DM04", "fx", "base0")
def c_dm04(ctx, rec):
    shutil.rmtree(ctx.p("dm/d4"), ignore_errors=True)
    ctx.p("dm/d4/init").mkdir(parents=True)
    target = ctx.p("dm/d4/init/analysis.json")
    shutil.copy(ctx.p("out/base0/analysis.json"), target)
    h0 = md5(target)
    error(rec, ctx.ft("demo", "--out", "dm/d4", "--n-nets", "1", "--epochs", "1", "--no-progress"), "--force",
          max_secs=60)
    check(rec, md5(target) == h0, "init/analysis.json unchanged", "it was overwritten")
    check(rec, not ctx.p("dm/d4/runs").exists(), "nothing trained", "dm/d4/runs exists")


@case("O04", "fx")
def c_o04(ctx, rec):
    shutil.rmtree(ctx.p("o/o04"), ignore_errors=True)
    ok(rec, ctx.ft("analyze", "fx/base.npz", "--out", "o/o04", "--k", "10", "--no-progress", "--report"),
       label="analyze base --report")
    ok(rec, ctx.ft("analyze", "fx/b1.npz", "--out", "o/o04", "--k", "10", "--no-progress", "--force"),
       label="analyze b1 --force")
    rep = ctx.p("o/o04/report.html")
    stale = rep.exists() and "fx/base.npz" in rep.read_text(errors="replace")
    check(rec, not stale, "no report.html of fx/base.npz beside the fx/b1.npz results",
          "report.html still shows fx/base.npz")
    src = sources(json.loads(ctx.p("o/o04/analysis.json").read_text()))
    check(rec, src == ["fx/b1.npz"], "analysis.json of fx/b1.npz", f"sources {src}")


@case("F08c", "fx")
def c_f08c(ctx, rec):
    bad = ("allow-pickle", "run code")
    ctx.p("fx/garbage.bin").write_bytes(b"\x00" * 100)   # head -c 100 /dev/zero > fx/garbage.bin
    error(rec, ctx.ft("describe", "fx/garbage.bin"), "corrupt", forbid=bad)
    error(rec, ctx.ft("analyze", "fx/garbage.bin", "--out", "out/F08c", *A), "corrupt", forbid=bad)
    error(rec, ctx.ft("describe", "fx/hdr_huge.bin"), "corrupt", forbid=bad)


@case("K09", "fx", "r0")
def c_k09(ctx, rec):
    run = copytree(ctx, "runs/r0", "runs/trav")
    with open(run / "snapshots/index.csv", "a") as fh:
        fh.write("9,9,../../../fx/b2_5x5.npz,0,0,0\n")
    error(rec, ctx.ft("track", "runs/trav", "--out", "tr/k09", "--k", "10", "--layers", "conv1", "--no-progress"),
          "outside the run folder")
    check(rec, not ctx.p("tr/k09/track.csv").exists(), "tr/k09 not written", "track.csv written")
    run = copytree(ctx, "runs/r0", "runs/abs")
    with open(run / "snapshots/index.csv", "a") as fh:
        fh.write(f"9,9,{ctx.rt}/secret.txt,0,0,0\n")
    error(rec, ctx.ft("track", "runs/abs", "--out", "tr/k09b", "--k", "10", "--layers", "conv1", "--no-progress"),
          "outside the run folder", forbid=("TOPSECRE",))


@case("K08", "fx", "r0")
def c_k08(ctx, rec):
    run = copytree(ctx, "runs/r0", "runs/dup")
    with open(run / "snapshots/index.csv", "a") as fh:
        fh.write("1,0.5,step_000001.npz,0.12,0.16,2.3\n")
    shutil.rmtree(ctx.p("tr/k08"), ignore_errors=True)
    r = ctx.ft("track", "runs/dup", "--out", "tr/k08", "--k", "10", "--layers", "conv1", "--no-progress")
    if not ok(rec, r, needles=("listed again",)):
        return
    rows = {row["step"]: row for row in csv_rows(ctx.p("tr/k08/track.csv"))}
    s0, s1 = rows.get("0", {}), rows.get("1", {})
    check(rec, s1.get("n_runs") == "1" and s1.get("n_filters") == s0.get("n_filters"),
          f"step 1 pooled once (n_runs {s1.get('n_runs')}, n_filters {s1.get('n_filters')})",
          f"step 0 has {s0.get('n_filters')} filters")


@case("N01", "fx")
def c_n01(ctx, rec):
    for tid, extra in (("n01", ["--lr", "nan"]), ("n01b", ["--lr", "inf"]), ("n01c", ["--momentum", "nan"]),
                       ("n01d", ["--weight-decay", "inf"])):
        shutil.rmtree(ctx.p(f"runs/{tid}"), ignore_errors=True)
        error(rec, ctx.ft("train", "--out", f"runs/{tid}", *TS, *extra), "finite", max_secs=60)
        check(rec, not ctx.p(f"runs/{tid}/run.json").exists(), f"runs/{tid}: no run written",
              "run.json written")
    shutil.rmtree(ctx.p("runs/n01e"), ignore_errors=True)
    error(rec, ctx.ft("train", "--out", "runs/n01e", "--config", "cfg/nanlr.json"), "'lr'", max_secs=60)
    check(rec, not ctx.p("runs/n01e/run.json").exists(), "runs/n01e: no run written", "run.json written")


@case("P10f", "fx")
def c_p10f(ctx, rec):
    for q in ("251", "257", "7919", "65537", "1000003"):
        error(rec, ctx.ft("analyze", "fx/base.npz", "--out", f"out/p{q}", "--k", "10", "--no-progress", "--jobs", "1",
                          "--coeff", q, mem=2_560_000_000), "--coeff")


@case("P11d", "fx")
def c_p11d(ctx, rec):
    for md in ("3", "2"):
        error(rec, ctx.ft("analyze", "fx/bign.npz", "--out", f"out/p11d{md}", "--k", "10", "--no-progress", "--jobs",
                          "1", "--maxdim", md, "--no-circular", mem=2_048_000_000), "--maxdim", max_secs=120,
              label=f"(ulimit -v 2000000) analyze bign --maxdim {md}")


@case("Q08", "fx")
def c_q08(ctx, rec):
    shutil.rmtree(ctx.p("out/q08"), ignore_errors=True)
    r = ctx.ft("analyze", "fx/dup.npz", "--out", "out/q08", "--k", "10", "--no-progress", "--jobs", "1", "--report",
               mem=2_560_000_000)
    ok(rec, r, max_secs=120, label="(ulimit -v 2500000) analyze dup --report")
    rep = ctx.p("out/q08/report.html")
    check(rec, rep.is_file() and rep.stat().st_size > 0, "report.html written", "no report.html")


@case("M02", "fx")
def c_m02(ctx, rec):
    mem = 2_048_000_000
    error(rec, ctx.ft("analyze", "fx/declared_460mb.h5", "--out", "out/m02", "--k", "10", "--no-progress",
                      "--max-points", "100", mem=mem), "MAX_TENSOR_BYTES", forbid=("out of memory",))
    error(rec, ctx.ft("describe", "fx/declared_460mb.h5", mem=mem), "MAX_TENSOR_BYTES", forbid=("out of memory",))


@case("S04b", "fx")
def c_s04b(ctx, rec):
    mem = 2_048_000_000
    for img, out in (("im/bomb_144mpx.png", "out/s04b"), ("im/bomb.tif", "out/s04c")):
        error(rec, ctx.ft("patches", img, "--out", out, "--k", "10", "--n-per-image", "500", "--null-draws", "0",
                          "--no-progress", mem=mem), "MAX_IMAGE_PIXELS", forbid=("out of memory",))


@case("S10b", "fx")
def c_s10b(ctx, rec):
    error(rec, ctx.ft("patches", "camera", "--out", "out/s10b", "--k", "10", "--null-draws", "0", "--no-progress",
                      "--n-per-image", "500000000", mem=2_048_000_000), "--n-per-image", forbid=("out of memory",))


@case("K11", "fx", "r0")
def c_k11(ctx, rec):
    run = copytree(ctx, "runs/r0", "runs/fifo")
    (run / "snapshots/index.csv").unlink()
    os.mkfifo(run / "snapshots/index.csv")
    error(rec, ctx.ft("track", "runs/fifo", "--out", "tr/k11", "--k", "10", "--layers", "conv1", "--no-progress",
                      timeout=40), "FIFO")
    for f in ("cfg/fifo.json", "im/fifo.png"):
        if not ctx.p(f).exists():
            os.mkfifo(ctx.p(f))
    error(rec, ctx.ft("train", "--out", "runs/n06c", "--config", "cfg/fifo.json", timeout=30), "FIFO")
    error(rec, ctx.ft("patches", "im/fifo.png", "--out", "out/s06", "--k", "10", "--null-draws", "0", timeout=30),
          "FIFO")


@case("P10h", "fx")
def c_p10h(ctx, rec):
    error(rec, ctx.ft("analyze", "fx/base.npz", "--out", "out/p10h", "--k", "10", "--coeff", str(10**400 + 1)),
          "--coeff", label="analyze --coeff 10^400+1")


@case("P10i", "fx")
def c_p10i(ctx, rec):
    error(rec, ctx.ft("analyze", "fx/base.npz", "--out", "out/p10i", "--k", "10", "--coeff",
                      "1000000000000000000000000000057", timeout=30), "--coeff", max_secs=20)


@case("P12", "fx", "r0")
def c_p12(ctx, rec):
    error(rec, ctx.ft("analyze", "fx/base.npz", "--out", "out/p12", "--k", "10", "--seed", "-1"), "seed")
    error(rec, ctx.ft("track", "runs/r0", "--out", "tr/p12", "--k", "10", "--seed", "-1"), "seed")
    error(rec, ctx.ft("patches", "camera", "--out", "out/s14", "--k", "10", "--seed", "-1", "--null-draws", "0"),
          "seed")
    shutil.rmtree(ctx.p("dm/d8"), ignore_errors=True)
    error(rec, ctx.ft("demo", "--out", "dm/d8", "--n-nets", "1", "--epochs", "1", "--seed", "-1"), "seed",
          max_secs=60)
    check(rec, not ctx.p("dm/d8/runs").exists(), "demo: nothing trained", "dm/d8/runs exists")


@case("N11", "fx")
def c_n11(ctx, rec):
    for tid, extra in (("n11", ["--seed", str(2**70)]), ("n12b", ["--data-seed", "-1"])):
        shutil.rmtree(ctx.p(f"runs/{tid}"), ignore_errors=True)
        error(rec, ctx.ft("train", "--out", f"runs/{tid}", "--n-train", "64", "--epochs", "1", *extra),
              extra[0], max_secs=60)


@case("F04", "fx")
def c_f04(ctx, rec):
    ctx.p("nb").mkdir(exist_ok=True)
    os.chmod(ctx.p("nb"), 0o777)
    unread = ctx.p("fx/unread.npz")
    if not unread.exists():
        shutil.copy(ctx.p("fx/base.npz"), unread)
    os.chmod(unread, 0)
    who = "(as nobody) " if ctx.root else ""
    error(rec, ctx.ft_nobody("describe", "fx/unread.npz"), "permission denied", label=who + "describe fx/unread.npz")
    error(rec, ctx.ft_nobody("analyze", "fx/unread.npz", "--out", "nb/o1", *A), "permission denied",
          label=who + "analyze fx/unread.npz")


@case("O08", "fx")
def c_o08(ctx, rec):
    error(rec, ctx.ft("analyze", "fx/base.npz", "--out", "o/" + "x" * 300, "--k", "10"), "too long",
          label="analyze --out o/x{300}")
    error(rec, ctx.ft("analyze", "fx/" + "y" * 300 + ".npz", "--out", "o/l2", "--k", "10"), "too long",
          label="analyze fx/y{300}.npz")


@case("O02", "fx", "base0")
def c_o02(ctx, rec):
    ro, nb = ctx.p("ro"), ctx.p("nb")
    ro.mkdir(exist_ok=True)
    nb.mkdir(exist_ok=True)
    os.chmod(nb, 0o777)
    if ctx.root:
        os.chmod(ro, 0o755)    # root's folder: read-only for nobody
        run, who = ctx.ft_nobody, "(as nobody) "
    else:
        os.chmod(ro, 0o555)    # read-only for us
        run, who = ctx.ft, ""
    try:
        error(rec, run("analyze", "fx/base.npz", "--out", "ro/sub", "--k", "10"), "writable", max_secs=60,
              label=who + "analyze --out ro/sub")
        error(rec, run("analyze", "fx/base.npz", "--out", "ro", *A), "writable", max_secs=60,
              label=who + "analyze --out ro")
        error(rec, run("report", "out/base0", "--out", "ro/report.html"), "writable", max_secs=60,
              label=who + "report --out ro/report.html")
    finally:
        os.chmod(ro, 0o755)


@case("O05b", "fx")
def c_o05b(ctx, rec):
    link = ctx.p("o/dangling")
    if not os.path.lexists(link):
        os.symlink(ctx.p("nowhere"), link)
    error(rec, ctx.ft("analyze", "fx/base.npz", "--out", "o/dangling", "--k", "10"), "symbolic link", max_secs=60)


@case("O05d", "fx")
def c_o05d(ctx, rec):
    shutil.rmtree(ctx.p("o/res3"), ignore_errors=True)
    ctx.p("o/res3/analysis.json").mkdir(parents=True)
    error(rec, ctx.ft("analyze", "fx/base.npz", "--out", "o/res3", "--k", "10", "--force"), "is a folder",
          max_secs=60)
    left = sorted(os.listdir(ctx.p("o/res3")))
    check(rec, left == ["analysis.json"], "o/res3: nothing written, no stray .tmp", f"o/res3 holds {left}")


@case("R19", "fx", "base0")
def c_r19(ctx, rec):
    shutil.rmtree(ctx.p("r/outdir"), ignore_errors=True)
    ctx.p("r/outdir").mkdir(parents=True)
    before = sorted(os.listdir(ctx.p("r")))
    error(rec, ctx.ft("report", "out/base0", "--out", "r/outdir", "--force"), "is a folder")
    error(rec, ctx.ft("report", "out/base0", "--out", "r/outdir"), "is a folder")
    after = sorted(os.listdir(ctx.p("r")))
    check(rec, after == before and not os.listdir(ctx.p("r/outdir")), "no stray r/outdir.tmp",
          f"r/ now holds {sorted(set(after) - set(before))}")


def _edited(ctx, name, edit=None, pts=None, manifest=True):
    """batch10.py's mk(): a copy of out/base0 with analysis.json / points.npz edited."""
    d = copytree(ctx, "out/base0", f"r/{name}")
    if callable(edit):
        js = json.loads((d / "analysis.json").read_text())
        (d / "analysis.json").write_text(json.dumps(edit(js)))
    elif isinstance(edit, bytes):
        (d / "analysis.json").write_bytes(edit)
    if isinstance(pts, bytes):
        (d / "points.npz").write_bytes(pts)
    elif pts is not None:
        pts(d)
    if not manifest and (d / "manifest.json").exists():
        (d / "manifest.json").unlink()
    return f"r/{name}"


@case("R03", "fx", "base0")
def c_r03(ctx, rec):
    edits = {
        "jlist": b"[1,2,3]",
        "j": b'{"config": {}}',
        "u": b'{"layers": [], "x": "\xff"}',
        "noname": lambda j: {**j, "layers": [{k: v for k, v in l.items() if k != "name"} for l in j["layers"]]},
        "dgmstr": lambda j: {**j, "layers": [{**l, "diagrams": {"0": [["a", "b"]], "1": [["x", None]]}}
                                             for l in j["layers"]]},
        "k": lambda j: {**j, "layers": [{**l, "kernel_shape": [5, 5]} for l in j["layers"]]},
    }
    for manifest in (True, False):
        for name, edit in edits.items():
            d = _edited(ctx, name + ("" if manifest else "_nm"), edit=edit, manifest=manifest)
            error(rec, ctx.ft("report", d), label=f"report {d}" + ("" if manifest else " (no manifest)"))


@case("R12", "fx", "base0")
def c_r12(ctx, rec):
    import numpy as np
    raw = ctx.p("out/base0/points.npz").read_bytes()

    def objarr(d):
        z = dict(np.load(d / "points.npz")); a = np.empty(1, object); a[0] = {"x": 1}
        z["conv1::core"] = a; np.savez(d / "points.npz", **z)

    def wrongdim(d):
        z = dict(np.load(d / "points.npz")); z["conv1::core"] = np.zeros((77, 4), np.float32)
        np.savez(d / "points.npz", **z)

    def nanpts(d):
        z = dict(np.load(d / "points.npz")); z["conv1::core"] = np.full_like(z["conv1::core"], np.nan)
        np.savez(d / "points.npz", **z)

    for manifest in (True, False):
        sfx = "" if manifest else "_nm"
        for name, pts in (("p", raw[:3000]), ("pgarb", os.urandom(3000)), ("pobj", objarr), ("p2", wrongdim)):
            d = _edited(ctx, name + sfx, pts=pts, manifest=manifest)
            error(rec, ctx.ft("report", d), label=f"report {d}" + ("" if manifest else " (no manifest)"))
        d = _edited(ctx, "pnan" + sfx, pts=nanpts, manifest=manifest)
        r = ctx.ft("report", d)
        if r.rc == 2:
            error(rec, r, label=f"report {d} (NaN points, refused)")
        else:
            ok(rec, r, label=f"report {d} (NaN points, rendered)")


@case("R21", "fx", "base0")
def c_r21(ctx, rec):
    for v in ("-5", "0"):
        error(rec, ctx.ft("report", "out/base0", "--out", "r/m.html", "--mapper-max-points", v),
              "--mapper-max-points")
    check(rec, not ctx.p("r/m.html").exists(), "r/m.html not written", "r/m.html written")


@case("K04", "fx", "r0")
def c_k04(ctx, rec):
    run = copytree(ctx, "runs/r0", "runs/k04")
    with open(run / "snapshots/index.csv", "ab") as fh:
        fh.write(b"\xff\xfe,\xff\n")
    error(rec, ctx.ft("track", "runs/k04", "--out", "tr/k04", "--k", "10", "--layers", "conv1"), "index.csv")


@case("K05", "fx", "r0")
def c_k05(ctx, rec):
    run = copytree(ctx, "runs/r0", "runs/k05")
    (run / "run.json").write_text("[1, 2]\n")
    shutil.rmtree(ctx.p("tr/k05"), ignore_errors=True)
    ok(rec, ctx.ft("track", "runs/k05", "--out", "tr/k05", "--k", "10", "--layers", "conv1"),
       needles=("note:", "run.json"), label="track (run.json a JSON list): exit 0 with a note")
    run = copytree(ctx, "runs/r0", "runs/k05b")
    (run / "run.json").unlink()
    (run / "run.json").mkdir()
    error(rec, ctx.ft("track", "runs/k05b", "--out", "tr/k05b", "--k", "10", "--layers", "conv1"), "run.json",
          label="track (run.json a folder)")


@case("K10", "fx", "r0")
def c_k10(ctx, rec):
    run = copytree(ctx, "runs/r0", "runs/k10")
    (run / "snapshots/index.csv").unlink()
    (run / "snapshots/index.csv").mkdir()
    error(rec, ctx.ft("track", "runs/k10", "--out", "tr/k10", "--k", "10", "--layers", "conv1"), "is a folder")


@case("N05", "fx")
def c_n05(ctx, rec):
    ctx.p("cfg/list.json").write_text("[1,2]\n")
    ctx.p("cfg/nested5.json").write_text('{"config": 5}\n')
    error(rec, ctx.ft("train", "--out", "runs/n05", "--config", "cfg/list.json"), "--config", max_secs=60)
    error(rec, ctx.ft("train", "--out", "runs/n06", "--config", "cfg/nested5.json", "--epochs", "1"), "--config",
          max_secs=60)


@case("N22", "fx")
def c_n22(ctx, rec):
    for tid, kw, key in (("n22", "input_size=2", "input_size"), ("n22e", "input_size=-5", "input_size"),
                         ("n22c", "num_classes=0", "num_classes"), ("n22d", 'in_channels="abc"', "in_channels")):
        shutil.rmtree(ctx.p(f"runs/{tid}"), ignore_errors=True)
        error(rec, ctx.ft("train", "--out", f"runs/{tid}", "--n-train", "64", "--epochs", "1", "--threads", "1",
                          "--no-progress", "--model-kwarg", kw), key, max_secs=60)
        rj = ctx.p(f"runs/{tid}/run.json")
        status = json.loads(rj.read_text()).get("status") if rj.exists() else None
        check(rec, status != "running", f"runs/{tid}: run.json not left 'running'", "run.json says running")


@case("N10", "fx")
def c_n10(ctx, rec):
    shutil.rmtree(ctx.p("runs/n10"), ignore_errors=True)
    error(rec, ctx.ft("train", "--out", "runs/n10", "--n-train", "64", "--epochs", "1", "--dataset",
                      f"folder:{ctx.rt}/imgs"), "bad.png", max_secs=60)


@case("N20", "fx")
def c_n20(ctx, rec):
    shutil.rmtree(ctx.p("runs/n20"), ignore_errors=True)
    ctx.p("runs/n20/snapshots/sub").mkdir(parents=True)
    r = ctx.ft("train", "--out", "runs/n20", "--n-train", "64", "--epochs", "1", "--force")
    ok(rec, r, needles=("snapshots/sub",))
    check(rec, ctx.p("runs/n20/snapshots/sub").is_dir(), "snapshots/sub kept", "snapshots/sub removed")
    rj = ctx.p("runs/n20/run.json")
    status = json.loads(rj.read_text()).get("status") if rj.exists() else None
    check(rec, status == "complete", "run.json complete", f"status {status}")


@case("T06", "fx", "ref64")
def c_t06(ctx, rec):
    for src, out in (("fx/denorm.npz", "out/t06"), ("fx/tiny64.npz", "out/t07")):
        shutil.rmtree(ctx.p(out), ignore_errors=True)
        if ok(rec, ctx.ft("analyze", src, "--out", out, "--k", "10", "--no-progress"), forbid=("constant",)):
            same_layer(rec, ctx, out, "out/t06ref", f"{src} analysed like the unscaled filters", rtol=1e-2)


@case("T05", "fx", "ref64")
def c_t05(ctx, rec):
    shutil.rmtree(ctx.p("out/t05"), ignore_errors=True)
    if ok(rec, ctx.ft("analyze", "fx/huge64.npz", "--out", "out/t05", "--k", "10", "--no-progress"),
          forbid=("NaN or Inf",)):
        same_layer(rec, ctx, "out/t05", "out/t06ref", "fx/huge64.npz analysed like the unscaled filters")


@case("T22", "fx")
def c_t22(ctx, rec):
    bad = ("--k 1", "--clamp-k")
    for src, out, extra in (("fx/one_filter.npz", "out/t22", ["--k", "1"]),
                            ("fx/two_filters.npz", "out/t23", ["--k", "10", "--clamp-k"])):
        shutil.rmtree(ctx.p(out), ignore_errors=True)
        if ok(rec, ctx.ft("analyze", src, "--out", out, *extra), forbid=bad):
            lay = json.loads(ctx.p(out, ).joinpath("analysis.json").read_text())["layers"][0]
            check(rec, lay["verdict"] == "too-few" and not any(b in n for n in layer_notes(lay) for b in bad),
                  f"{src}: verdict too-few, no --k 1/--clamp-k advice", f"verdict {lay['verdict']}, notes "
                  f"{layer_notes(lay)}")


@case("S13", "fx")
def c_s13(ctx, rec):
    shutil.rmtree(ctx.p("out/s13"), ignore_errors=True)
    bad = ("--layers", "--clamp-k")
    if ok(rec, ctx.ft("patches", "camera", "--out", "out/s13", "--k", "5000", "--n-per-image", "500", "--null-draws",
                      "0"), needles=("too-few",), forbid=bad):
        notes = layer_notes(json.loads(ctx.p("out/s13/analysis.json").read_text())["layers"][0])
        check(rec, not any(b in n for n in notes for b in bad), "notes name no --layers/--clamp-k", f"notes {notes}")
    r = ctx.ft("patches", "camera", "--out", "out/s13", "--k", "5000", "--n-per-image", "500", "--null-draws", "0",
               "--clamp-k")
    rec.runs.append(r)
    usage = r.rc == 2 and not r.traceback and "unrecognized arguments: --clamp-k" in r.err
    rec.add(r.short(), usage, "exit 2, argparse usage error" if usage else r.outcome(),
            "" if usage else "expected argparse's 'unrecognized arguments' (exit 2)")


@case("W05", "fx")
def c_w05(ctx, rec):
    shutil.copy(ctx.p("fx/good.pt"), ctx.p("fx/pt_as.safetensors"))
    ok(rec, ctx.ft("describe", "fx/pt_as.safetensors"), needles=("(torch)", "conv1"))
    shutil.rmtree(ctx.p("out/w05"), ignore_errors=True)
    ok(rec, ctx.ft("analyze", "fx/pt_as.safetensors", "--out", "out/w05", *A))


@case("DM06", "fx")
def c_dm06(ctx, rec):
    shutil.rmtree(ctx.p("dm/d6"), ignore_errors=True)
    for extra, needle in ((["--k", "0"], "--k"), (["--p", "2"], "p"), (["--layers", "nosuch"], "nosuch")):
        error(rec, ctx.ft("demo", "--out", "dm/d6", "--n-nets", "1", "--epochs", "1", *extra), needle, max_secs=60)
        check(rec, not ctx.p("dm/d6/runs").exists(), f"demo {' '.join(extra)}: nothing trained",
              "dm/d6/runs exists")
    ok(rec, ctx.ft("demo", "--out", "dm/d6", "--n-nets", "1", "--epochs", "1", "--k", "5", "--no-progress",
                   timeout=600), label="corrected rerun: demo --out dm/d6 --n-nets 1 --epochs 1 --k 5")


@case("Q11", "fx")
def c_q11(ctx, rec):
    env = {"PYTHONIOENCODING": "latin-1"}
    ok(rec, ctx.ft("describe", "fx/names.npz", env=env), label="PYTHONIOENCODING=latin-1 describe fx/names.npz")
    shutil.rmtree(ctx.p("out/Q11"), ignore_errors=True)
    ok(rec, ctx.ft("analyze", "fx/names.npz", "--out", "out/Q11", *A, env=env),
       label="PYTHONIOENCODING=latin-1 analyze fx/names.npz")


@case("BP", "fx")
def c_bp(ctx, rec):
    def head1(argv, label):
        t0 = time.time()
        p = subprocess.Popen(PYFT + argv, cwd=ctx.rt, env=ctx.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        first = p.stdout.readline()
        p.stdout.close()          # what `| head -1` does once it has its line
        try:
            err = p.stderr.read().decode(errors="replace")
            p.wait(timeout=300)
        except subprocess.TimeoutExpired:
            _kill_group(p)
            p.wait()
        r = Run(PYFT + argv, p.returncode, first.decode(errors="replace"), err, time.time() - t0)
        ok(rec, r, rcs=(0, 141), forbid=("BrokenPipe", "Exception ignored"), label=label)

    head1(["describe", "fx/manylayers.npz"], "describe fx/manylayers.npz | head -1")
    shutil.rmtree(ctx.p("out/bp"), ignore_errors=True)
    head1(["analyze", "fx/many.npz", "--out", "out/bp", *A], "analyze fx/many.npz ... | head -1")


# --------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated class ids (default: all 46)")
    ap.add_argument("--out", default=None, help="also write every command and outcome as JSON here")
    ap.add_argument("--keep", default=None, help="build in this folder and keep it (default: a temporary one)")
    ap.add_argument("--trials", type=int, default=3, help="O06 trials (conctest.py runs 10; default 3)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every command as it runs (stderr)")
    args = ap.parse_args(argv)
    ids = [s.strip() for s in args.only.split(",") if s.strip()] or ORDER
    unknown = [i for i in ids if i not in EXPECTED]
    if unknown:
        ap.error(f"unknown class id(s) {unknown}; known: {', '.join(ORDER)}")
    missing = [i for i in ORDER if i not in CASES]
    assert not missing, f"classes without a reproduction: {missing}"

    if args.keep:
        rt = Path(args.keep).resolve()
        if rt.exists() and any(rt.iterdir()):
            ap.error(f"--keep {args.keep}: the folder is not empty (the runs need fresh folders)")
        rt.mkdir(parents=True, exist_ok=True)
        cleanup = None
    else:
        cleanup = tempfile.mkdtemp(prefix="ft_redteam2_")
        rt = Path(cleanup)
    ctx = Ctx(rt, verbose=args.verbose, trials=args.trials)
    t_start = time.time()
    results = []
    w = max(len(i) for i in ids)
    print(f"{'id':<{w}}  {'kind':<6}  expected | got | verdict")
    try:
        for cid in ids:
            fn, needs = CASES[cid]
            rec = Record(cid)
            t0 = time.time()
            try:
                ctx.need(*needs)
                fn(ctx, rec)
            except Exception as e:  # noqa: BLE001  a crash of the harness is a FAIL of the class
                rec.add("harness", False, f"{type(e).__name__}", str(e)[:300])
            kind, expected = EXPECTED[cid]
            verdict = "PASS" if rec.ok else "FAIL"
            print(f"{cid:<{w}}  {kind:<6}  {expected} | {rec.got()} | {verdict}", flush=True)
            results.append({"id": cid, "kind": kind, "expected": expected, "got": rec.got(), "verdict": verdict,
                            "secs": round(time.time() - t0, 1),
                            "steps": [dict(label=l, outcome=o, ok=k, why=y) for l, o, k, y in rec.steps],
                            "runs": [dict(cmd=" ".join(r.argv[2:] if r.argv[:3] == PYFT else r.argv)[:400],
                                          cwd=r.cwd, rc=r.rc, secs=round(r.secs, 1), stderr_tail=r.err[-1500:],
                                          stdout_tail=r.out[-300:]) for r in rec.runs]})
    finally:
        if cleanup:
            for root, dirs, files in os.walk(cleanup):   # chmod 000 files and read-only folders
                for n in dirs + files:
                    try:
                        os.chmod(os.path.join(root, n), 0o755, follow_symlinks=False)
                    except (OSError, NotImplementedError):
                        pass
            shutil.rmtree(cleanup, ignore_errors=True)
    n_fail = sum(r["verdict"] == "FAIL" for r in results)
    print(f"{len(results)} classes, {len(results) - n_fail} PASS, {n_fail} FAIL in {time.time() - t_start:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({"results": results, "seconds": round(time.time() - t_start, 1)},
                                             indent=1))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
