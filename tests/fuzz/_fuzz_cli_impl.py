"""Property-based fuzzing of the `train`, `track` and `patches` CLIs (run by test_fuzz_cli.py in a
subprocess under RLIMIT_AS and a timeout; issue 12).

The property, for every example: ``filtertopo VERB ...`` exits 0 or 2, prints no traceback, and
an exit 2 prints exactly one ``error:`` line (argparse's ``filtertopo VERB: error:`` counts as
one). Each example runs the real CLI in this process (``filtertopo.cli.main``), under an alarm.

- ``train``: the flags lr, momentum, weight decay, epochs, batch size, n-train, eval-samples,
  snapshot-every, threads, seed, data-seed, optimizer, model, ``--model-kwarg`` (JSON values),
  ``--seeds/--workers`` and a ``--config`` file of random TrainConfig keys and values, over a
  tiny base (sklearn digits, 32 images, 1 epoch): a valid example trains for real (about 0.3 s).
  Counts that would be valid *and* long (10^9 epochs) are left out; lr up to 1e300 is in
  (it diverges, which must be an error line, not a traceback).
- ``track``: one tiny run (3 snapshots), copied per example, with a hand-edited / corrupt
  ``snapshots/index.csv`` (rows with junk steps, NaN accuracies, files outside the run, missing
  and extra columns, bad bytes, no header, BOM) and ``run.json``, and the flags --steps,
  --mapper-steps, --layers, --k, --p, --seed, --null-draws, --report.
- ``patches``: bundled images and small written ones (PNG/TIFF of random size, mode and
  dtype, truncated or not an image), with --n-per-image, --top, --k, --p, --seed,
  --null-draws, --max-points, --n-landmarks, --coeff, --maxdim.

Run directly: ``python tests/fuzz/_fuzz_cli_impl.py train 50``. Importing it does nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

#: Seconds one example may take before it counts as a hang.
EXAMPLE_TIMEOUT = 90

_ARGPARSE_ERROR = re.compile(r"^filtertopo(?: \w+)?: error: ")

#: FILTERTOPO_FUZZ_STRICT=1: an error message that runs over several lines (one ``error:`` line
#: followed by more text) fails the example too. By default such messages are only listed.
STRICT = os.environ.get("FILTERTOPO_FUZZ_STRICT", "") not in ("", "0")
MULTILINE: dict = {}


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"example ran past {EXAMPLE_TIMEOUT} s")


def run_cli(argv):
    """Run the CLI; return (rc, stdout, stderr). SystemExit (argparse, --version) is an exit code."""
    from filtertopo.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(EXAMPLE_TIMEOUT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return rc, out.getvalue(), err.getvalue()


def check(argv, tally):
    rc, out, err = run_cli(argv)
    shown = f"\nargv: {argv}\nrc: {rc}\nstderr:\n{err[-3000:]}"
    assert rc in (0, 2), "exit status not 0 or 2" + shown
    assert "Traceback" not in err and "Traceback" not in out, "traceback" + shown
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("error:") or _ARGPARSE_ERROR.match(ln)]
        assert len(lines) == 1, f"{len(lines)} error lines" + shown
        if not _ARGPARSE_ERROR.match(lines[0]):  # our own error: one line, after any warning lines
            rest = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
            if rest != lines:  # one error: line, but the message goes on over several lines
                assert not STRICT, "the error message spans several lines" + shown
                MULTILINE.setdefault(re.sub(r"'[^']*'", "'...'", lines[0])[:100], err[-1500:])
    key = "0" if rc == 0 else ("usage" if "usage:" in err else "error")
    if os.environ.get("FILTERTOPO_FUZZ_LOG"):  # every example's argv and outcome, one JSON line each
        with open(os.environ["FILTERTOPO_FUZZ_LOG"], "a") as fh:
            last = [ln for ln in err.splitlines() if ln.strip()][-1:] or [""]
            fh.write(json.dumps({"argv": [str(a) for a in argv], "rc": rc, "err": last[0][:300]}) + "\n")
    tally[key] = tally.get(key, 0) + 1
    return rc, out, err


# --------------------------------------------------------------------------------------------- values

def _strategies():
    from hypothesis import strategies as st

    anyfloat = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                         st.sampled_from(["nan", "inf", "-inf", "1e400", "-0.0", "0", "abc", "", "1e-320",
                                          "0x10", "1_000", " 0.1 ", "1e300", "-1e300"]))
    small_float = st.one_of(st.floats(-2, 2, allow_nan=False).map(repr), anyfloat)
    # counts: small valid values, the edges, and junk; never a valid count that runs for minutes
    count = st.one_of(st.integers(-3, 4).map(str),
                      st.sampled_from(["0", "-1", "1.5", "abc", "", "nan", "1e3", "-" + str(2**64), "2**3",
                                       " 2", "+1", "١"]))
    seed = st.one_of(st.integers(-3, 3).map(str),
                     st.sampled_from([str(2**32 - 1), str(2**32), str(2**63), str(2**64), str(2**70),
                                      str(-(2**63)), "1.0", "abc", ""]))
    json_value = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True),
                  st.text(max_size=6), st.sampled_from([2**64, -(2**64), 1e300, 28, 32, 3])),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=2)),
        max_leaves=4)
    return st, anyfloat, small_float, count, seed, json_value


def focused(st, table, max_others=2):
    """Flags for one example: one "focus" flag (or none) takes a value to probe (edges, huge, junk),
    up to ``max_others`` others take cheap valid ones. ``table``: flag -> (valid, probe)."""
    names = sorted(table)

    @st.composite
    def flags(draw):
        focus = draw(st.sampled_from(names + [None]))
        out = {k: draw(table[k][0]) for k in draw(st.lists(st.sampled_from(names), max_size=max_others,
                                                           unique=True)) if k != focus}
        if focus is not None:
            out[focus] = draw(table[focus][1])
        return out

    return flags()


# --------------------------------------------------------------------------------------------- train

TRAIN_BASE = ["--dataset", "digits", "--n-train", "32", "--batch-size", "16", "--epochs", "1",
              "--eval-samples", "16", "--threads", "1", "--no-progress"]


def fuzz_train(n, derandomize, folder, tally):
    """Each example probes one "focus" argument with any value (edges, junk, huge) while up to
    three other flags take cheap valid values, so that most examples reach the code behind the
    validation (a fully random mix is almost always refused by its first bad value)."""
    from hypothesis import HealthCheck, example, given, settings

    st, anyfloat, small_float, count, seed, json_value = _strategies()

    def vals(*v):
        return st.sampled_from([str(x) for x in v])

    # flag: (cheap valid values, values to probe: edges, huge, junk)
    flags = {
        "--lr": (vals(0.05, 0.01, 0.5), st.one_of(st.floats(1e-4, 1).map(repr), vals(1e-6, 1e30, 1e300), anyfloat)),
        "--momentum": (vals(0, 0.5, 0.9), st.one_of(st.floats(0, 1.5).map(repr), small_float)),
        "--weight-decay": (vals(0, 1e-3), st.one_of(st.floats(0, 10).map(repr), small_float)),
        "--epochs": (vals(0, 1, 2), count),
        "--batch-size": (vals(1, 7, 16, 32), st.one_of(vals(100000, 2**31, 2**64), count)),
        "--n-train": (vals(1, 2, 17, 32), st.one_of(vals(5000, 2**31), count)),
        "--eval-samples": (vals(1, 16, 40), st.one_of(vals(100000, 2**63), count)),
        "--snapshot-every": (vals(0, 1, 3), st.one_of(vals(10**12, 2**64), count)),
        "--threads": (vals(1, 2), st.one_of(vals(8, 9, 64, 4096, 2**31, 2**64), count)),
        "--seed": (vals(0, 1, 2**32 - 1), seed), "--data-seed": (vals(0, 3), seed),
        "--optimizer": (vals("sgd", "adam", "adamw"), vals("SGD", "rmsprop", "", "sgd ")),
        "--model": (vals("mnist_net", "cifar_net"), vals("vgg11", "resnet9000", "", "MNIST_NET")),
        "--dataset": (vals("digits"), vals("imagenet", "folder:/nonexistent", "folder:", "mnist", "", "cifar10",
                                          "mnist_subset")),
        "--test-dataset": (vals("digits"), vals("nope", "", "folder:/x", "mnist")),
        "--device": (vals("cpu"), vals("tpu", "cuda:x", "", "auto", "cpu:0", "cuda:99", "meta")),
    }
    kwarg_key = st.sampled_from(["in_channels", "input_size", "num_classes", "widths", "hidden", "width",
                                 "nope", "", "batch_norm"])
    kwarg_value = st.one_of(
        st.sampled_from(["1", "3", "0", "-5", "2", "4", "8", "16", "28", '"abc"', "1.5", "null", "true",
                         "[8]", "[8,4]", "[]", "[0]", "[-1]", '["a"]', "[8,4,4,4,4]", "{}", "nan", "",
                         "0.25", "1e300", "10", "5", "11", "[20000,20000]", "100000000", "100", "64",
                         "[1e300]", "2e9", "-0", "[[8]]"]),
        json_value.map(json.dumps))
    kwarg = st.one_of(st.tuples(kwarg_key, kwarg_value).map(lambda kv: f"{kv[0]}={kv[1]}"),
                      st.sampled_from(["nope", "=1", "a=b=c", "in_channels", "input_size=", "widths=[8"]))
    config_key = st.sampled_from(["lr", "momentum", "weight_decay", "epochs", "batch_size", "n_train",
                                  "eval_samples", "seed", "data_seed", "optimizer", "model", "model_kwargs",
                                  "snapshot_every", "dataset", "threads", "device", "config", "nope"])
    config_value = st.one_of(json_value, st.sampled_from([0.05, 1, 16, 32, "digits", "sgd", {"width": 0.5},
                                                          {"widths": [8]}, 2**31, None]))
    cheap = {"epochs": 2, "n_train": 64, "eval_samples": 64}   # larger valid values would just take long

    def capped(d):
        return {k: (min(v, cheap[k]) if k in cheap and isinstance(v, int) and not isinstance(v, bool) else v)
                for k, v in d.items()}

    config = st.one_of(
        st.dictionaries(config_key, config_value, max_size=4).map(lambda d: json.dumps(capped(d))),
        st.sampled_from(["[1,2]", '{"config": 5}', '{"lr": NaN}', "{not json", "\xff\xfe", "", "null",
                         '{"config": {"lr": -1}}', '{"epochs": 1.5}', '{"threads": 100000}',
                         '{"model_kwargs": {"widths": [20000, 20000]}}', '{"model_kwargs": 5}',
                         '{"lr": 1e400}', '{"seed": -1}', '{"config": {"config": {}}}']))
    focus_names = sorted(flags) + ["--model-kwarg", "--config", "--seeds", "mix"]

    @st.composite
    def case(draw):
        """(flags, --model-kwarg items, --config text or None, (--seeds, --workers) or None)."""
        focus = draw(st.sampled_from(focus_names))
        others = draw(st.lists(st.sampled_from(sorted(flags)), max_size=3, unique=True))
        chosen = {k: draw(flags[k][0]) for k in others if k != focus}
        if focus in flags:
            chosen[focus] = draw(flags[focus][1])
        elif focus == "mix":  # any values for several flags at once
            for k in draw(st.lists(st.sampled_from(sorted(flags)), min_size=2, max_size=4, unique=True)):
                chosen[k] = draw(st.one_of(flags[k][0], flags[k][1]))
        kwargs = draw(st.lists(kwarg, min_size=1, max_size=2)) if focus == "--model-kwarg" else []
        cfg = draw(config) if focus == "--config" else None
        # (--seeds, --workers); --workers >= 2 with 2 seeds would spawn interpreters (10 s each)
        seeds = draw(st.one_of(st.tuples(st.sampled_from(["1", "2", "0", "-1", "x", str(2**32), "10001"]),
                                         st.sampled_from(["1", "0", "-1", "x"])),
                               st.tuples(st.just("1"), st.sampled_from(["2", "64", str(2**31)])))) \
            if focus == "--seeds" else None
        return chosen, kwargs, cfg, seeds

    # what this fuzz found (issue 12), kept as explicit examples: a thread count torch cannot take
    # (ValueError traceback) or cannot start (exit 1, out of memory, or libgomp aborting the
    # process); torch's multi-line C++ error for an absurd VGG width; a model whose weights alone
    # would take 14 GB; 4 billion seeds; an lr or weight decay beyond float32 (RuntimeError
    # traceback in the first optimizer step)
    found = [({"--threads": str(2**31)}, [], None, None), ({"--threads": "4096"}, [], None, None),
             ({"--model": "vgg11"}, ["width=1e300"], None, None),
             ({}, ["widths=[20000,20000]"], None, None), ({}, [], '{"threads": 100000}', None),
             ({}, [], None, (str(2**32), "1")),   # 4 billion seeds (exit 1, out of memory)
             ({"--lr": "1e300"}, [], None, None), ({"--weight-decay": "1e39"}, [], None, None)]  # float32 overflow

    def prop(c, force):
        chosen, kwargs, cfg, seeds = c
        out = Path(tempfile.mkdtemp(dir=folder))
        argv = ["train", "--out", out / "run", *TRAIN_BASE]
        for flag, v in chosen.items():
            argv.append(f"{flag}={v}")
        if chosen.get("--model") == "vgg11" and not any(k.startswith("width=") for k in kwargs):
            argv += ["--model-kwarg", "width=0.0625"]   # full width takes 7 s an example
        for kw in kwargs:
            argv += ["--model-kwarg", kw]
        if cfg is not None:
            (out / "cfg.json").write_text(cfg, encoding="utf-8", errors="surrogateescape")
            argv += ["--config", out / "cfg.json"]
        if seeds:
            argv += ["--seeds", seeds[0], "--workers", seeds[1]]
        if force:
            argv.append("--force")
        try:
            rc, _, _ = check(argv, tally)
            if rc == 0 and not seeds:
                status = json.loads((out / "run" / "run.json").read_text())
                assert status["status"] == "complete", (argv, status)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    test = given(c=case(), force=st.booleans())(prop)
    for f in found:
        test = example(c=f, force=False)(test)
    settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
             suppress_health_check=list(HealthCheck), print_blob=True)(test)()


# --------------------------------------------------------------------------------------------- track

def _tiny_run(folder):
    from filtertopo.training import train

    return train(dict(dataset="digits", n_train=32, batch_size=16, epochs=1, eval_samples=16, threads=1,
                      snapshot_every=1), Path(folder) / "r0", progress=False)


def fuzz_track(n, derandomize, folder, tally):
    from hypothesis import HealthCheck, given, settings

    st, anyfloat, small_float, count, seed, json_value = _strategies()
    run0 = _tiny_run(folder)
    outside = Path(folder) / "outside.npz"
    shutil.copy(run0 / "snapshots" / "step_000001.npz", outside)
    header = (run0 / "snapshots" / "index.csv").read_text().splitlines()[0]
    cell = st.one_of(st.integers(-3, 12).map(str), anyfloat,
                     st.sampled_from(["", "nan", "x", "1e400", "-0", str(2**64), '"1"', " 1"]))
    files = st.sampled_from(["step_000000.npz", "step_000001.npz", "step_000002.npz", "./step_000001.npz",
                             "nope.npz", "", "../run.json", "../../outside.npz", str(outside), "snapshots",
                             "step_000001.npz/", "sub/../step_000002.npz", "STEP_000001.NPZ", "..",
                             "step_000001.npz\u00e9", "../config.json", "/dev/zero", "/etc/passwd"])
    row = st.one_of(
        st.tuples(cell, cell, files, cell, cell, cell).map(lambda t: ",".join(t)),
        st.lists(st.one_of(cell, files), max_size=8).map(",".join),
        st.text(max_size=20).map(lambda s: s.replace("\n", " ").replace("\r", " ")))
    raw_tail = st.sampled_from([b"", b"", b"\xff\xfe,\xff\n", b"\x00\x00\n", b"\"unterminated,1,2\n",
                                b"\r\n", b"a" * 70000 + b"\n"])
    heads = st.sampled_from([header, header, "", "step,file", "file,step,epoch", "\ufeff" + header,
                             header.upper(), header + ",extra", "step;epoch;file"])
    run_json = st.one_of(st.none(), st.none(), json_value.map(json.dumps),
                         st.sampled_from(['{"status": "running"}', '{"status": "failed"}', "[1, 2]", "{bad"]))
    def vals(*v):
        return st.sampled_from([str(x) for x in v])

    opt = {  # flag: (cheap valid values, values to probe)
        "--steps": (vals("0", "2", "0,2", "1,2"),
                    st.one_of(st.lists(st.integers(-2, 4), max_size=3).map(lambda l: ",".join(map(str, l))),
                              vals("a,b", ",", "1,1", 2**64, " 0 ", "-0", "1.0"))),
        "--mapper-steps": (vals("", "0"), vals("2", "9", "x", "0,2", "0,0", 2**64)),
        "--layers": (vals("conv1", "1"), vals("conv2", "2", "conv*", "nope", "", "0", "conv1,conv2", "-1", ",")),
        "--k": (vals("10", "auto", "20"), vals("1", "0", "-1", "59", "60", "100000", "x", "2.5", 2**64)),
        "--p": (vals("0.3", "1"), st.one_of(small_float, vals("0", "nan", "2", "0.001", "1e-9"))),
        "--seed": (vals(0, 1), seed),
        "--null-draws": (vals(0, 1), vals("2", "-1", "x", 2**64, 10**9)),
        "--n-landmarks": (vals(60, 500), vals("1", "2", "0", "100001", 10**12)),
        "--coeff": (vals("2", "3"), vals("2,3", "4", "131", "", "x", "127")),
        "--maxdim": (vals("1"), vals("0", "2", "3", "-1", "x")),
        "--max-points": (vals("10000", "50"), vals("1", "2", "0", 10**9)),
    }

    @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(head=heads, rows=st.lists(row, max_size=5), keep=st.integers(0, 3), tail=raw_tail, rj=run_json,
           chosen=focused(st, opt), report=st.sampled_from([False, False, False, True]),
           twice=st.sampled_from([False, False, True]))
    def prop(head, rows, keep, tail, rj, chosen, report, twice):
        work = Path(tempfile.mkdtemp(dir=folder))
        try:
            run = work / "r"
            shutil.copytree(run0, run)
            good = (run0 / "snapshots" / "index.csv").read_text().splitlines()[1:1 + keep]
            text = "\n".join(([head] if head else []) + good + rows) + "\n"
            (run / "snapshots" / "index.csv").write_bytes(text.encode("utf-8", "surrogateescape") + tail)
            if rj is not None:
                (run / "run.json").write_text(rj)
            argv = ["track", run, *([run] if twice else []), "--out", work / "t", "--k", "10", "--layers",
                    "conv1", "--n-landmarks", "60", "--no-progress"]
            for flag, v in chosen.items():
                argv.append(f"{flag}={v}")
            if report:
                argv.append("--report")
            check(argv, tally)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    prop()


# --------------------------------------------------------------------------------------------- patches

def _image_bytes(kind, h, w, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    if kind.startswith("tif"):
        import tifffile

        dtype = {"tif8": np.uint8, "tif16": np.uint16, "tiff32": np.float32, "tifneg": np.float32}[kind]
        a = rng.random((h, w))
        a = (a * (255 if dtype == np.uint8 else 65535)).astype(dtype) if dtype != np.float32 else \
            (a - (0.5 if kind == "tifneg" else 0)).astype(np.float32)
        tifffile.imwrite(buf, a)
        return buf.getvalue(), ".tif"
    from PIL import Image

    mode = {"L": "L", "RGB": "RGB", "RGBA": "RGBA", "P": "P", "I16": "I;16", "1": "1", "const": "L"}[kind]
    if kind == "const":
        img = Image.fromarray(np.full((h, w), 77, np.uint8))
    elif mode == "I;16":
        img = Image.fromarray((rng.random((h, w)) * 65535).astype(np.uint16))
    else:
        ch = {"RGB": 3, "RGBA": 4}.get(mode)
        a = (rng.random((h, w, ch) if ch else (h, w)) * 255).astype(np.uint8)
        img = Image.fromarray(a, "RGBA" if mode == "RGBA" else ("RGB" if mode == "RGB" else "L"))
        if mode in ("P", "1"):
            img = img.convert(mode)
    img.save(buf, format="PNG")
    return buf.getvalue(), ".png"


def fuzz_patches(n, derandomize, folder, tally):
    from hypothesis import HealthCheck, given, settings

    st, anyfloat, small_float, count, seed, json_value = _strategies()
    image = st.one_of(
        st.sampled_from(["camera", "camera", "coins", "nosuch", "natural"]),
        st.tuples(st.sampled_from(["L", "RGB", "RGBA", "P", "I16", "1", "const", "tif8", "tif16", "tiff32",
                                   "tifneg"]),
                  st.integers(1, 80), st.integers(1, 80), st.integers(0, 3),
                  st.sampled_from(["ok", "ok", "ok", "trunc", "garbage", "empty", "folder"])))
    def vals(*v):
        return st.sampled_from([str(x) for x in v])

    opt = {  # flag: (cheap valid values, values to probe)
        "--n-per-image": (vals(300, 1000, 50),
                          st.one_of(st.integers(-2, 2000).map(str),
                                    vals(0, 1, 10, 10**6, 10**6 + 1, 10**7, "5e8", "x", 2**64))),
        "--top": (vals(0.2, 0.5, 1), st.one_of(small_float, vals("0", "1e-9", "nan", "1.0000001"))),
        "--k": (vals(10, 5, "auto"), vals(1, 0, -1, 5000, "x", 2.5, 2**64, 59, 60)),
        "--p": (vals(0.3, 1), st.one_of(small_float, vals("0", "1e-9"))),
        "--seed": (vals(0, 7, 2**64 - 1), seed),
        "--null-draws": (vals(0, 1), vals(2, -1, "x", 2**64, 10**9)),
        "--max-points": (vals(50000, 100), vals(1, 2, 30, 0, 10**9)),
        "--n-landmarks": (vals(500, 50), vals(2, 1, 0, 10**6, 100001)),
        "--coeff": (vals(2, 3), vals("2,3", 4, 131, "", "x", 127, "2,2")),
        "--maxdim": (vals(1), vals(0, 2, 3, -1, "x")),
    }

    @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(images=st.lists(image, min_size=1, max_size=2),
           chosen=focused(st, opt))
    def prop(images, chosen):
        work = Path(tempfile.mkdtemp(dir=folder))
        try:
            names = []
            for i, im in enumerate(images):
                if isinstance(im, str):
                    names.append(im)
                    continue
                kind, h, w, s, damage = im
                data, ext = _image_bytes(kind, h, w, s)
                p = work / f"im{i}{ext}"
                if damage == "folder":
                    p.mkdir()
                else:
                    data = {"ok": data, "trunc": data[: len(data) // 2], "garbage": b"not an image\n" * 3,
                            "empty": b""}[damage]
                    p.write_bytes(data)
                names.append(p)
            argv = ["patches", *names, "--out", work / "o", "--k", "10", "--n-per-image", "300", "--null-draws",
                    "0", "--no-progress"]
            for flag, v in chosen.items():
                argv.append(f"{flag}={v}")
            check(argv, tally)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    prop()


VERBS = {"train": fuzz_train, "track": fuzz_track, "patches": fuzz_patches}


def run(verb, n, derandomize=True):
    import warnings

    warnings.simplefilter("ignore")
    folder = tempfile.mkdtemp(prefix=f"ft_fuzz_{verb}_")
    tally = {}
    try:
        VERBS[verb](n, derandomize, folder, tally)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"FUZZ {verb}: {n} examples, outcomes {dict(sorted(tally.items()))}")
    for first, err in MULTILINE.items():
        print(f"FUZZ {verb}: multi-line error message (exit 2, one error: line, more lines after it):\n"
              + "\n".join("    " + ln for ln in err.strip().splitlines()[:6]))


if __name__ == "__main__":
    verb, n = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MPLBACKEND", "Agg")
    run(verb, n, derandomize=os.environ.get("FILTERTOPO_FUZZ_RANDOM", "") in ("", "0"))
