"""Red-team report 2: output folders, result files and the CLI's streams (REDTEAM-2.md).

Each test is named after the class it covers (O02 ... O09, R03, R12, R19, R21, BP, Q11).
Faults that need a signal or a resource limit run in a subprocess.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from filtertopo import _io
from filtertopo.cli import main
from filtertopo.errors import InputError
from filtertopo.result import AnalysisResult, check_output_dir
from filtertopo.weights import save_kernels

from conftest import primary_circle_filters

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A checkpoint and two saved analyses of it that differ (k=10 and k=12)."""
    base = tmp_path_factory.mktemp("rt2")
    P, _ = primary_circle_filters(300, seed=0)
    ckpt = save_kernels(base / "a.npz", {"conv1": P.reshape(30, 10, 3, 3)})
    from filtertopo import analyze

    res = {}
    for k in (10, 12):
        r = analyze(str(ckpt), k=k, progress=False, n_jobs=1, circular=False)
        r.save(base / f"src{k}")
        res[k] = r
    return {"base": base, "ckpt": ckpt, "res": res, "src": {k: base / f"src{k}" for k in res}}


def _sig(res):
    """What tells two analyses apart: k and the core points of every layer."""
    return (res.config.get("k"), tuple((l.name, l.n_core, np.asarray(l.core).tobytes()) for l in res))


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def cli(*argv):
    return main([str(a) for a in argv])


def _one_error_line(err):
    lines = [l for l in err.strip().splitlines() if not l.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    return lines[0]


def _no_work(monkeypatch):
    """Make the analysis itself fail loudly: a refusal must come before it."""
    import filtertopo.pipeline

    def boom(*a, **k):
        raise AssertionError("the analysis ran before the output folder was checked")

    monkeypatch.setattr(filtertopo.pipeline, "analyze", boom)


def _py(code, **kw):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


# --------------------------------------------------------------------------- O02

def test_o02_readonly_out_refused_before_work(world, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(_io.os, "access",
                        lambda p, mode, **k: False if str(p).startswith(str(ro)) else real(p, mode, **k))
    _no_work(monkeypatch)
    for out in (ro, ro / "sub"):
        assert cli("analyze", world["ckpt"], "--out", out, "--k", 10) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "not writable" in line and "--out" in line and str(out) in line
    with pytest.raises(InputError, match="not writable"):
        check_output_dir(ro / "sub")
    assert not (ro / "sub").exists()
    # report --out in a read-only folder: refused before rendering
    assert cli("report", world["src"][10], "--out", ro / "r.html") == 2
    assert "not writable" in _one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="POSIX only")
def test_o02_readonly_out_real_permissions(tmp_path):
    """The real check, as a user without write permission (as root: a child run as nobody)."""
    import tempfile

    top = tempfile.mkdtemp(prefix="ft-o02-")
    try:
        os.chmod(top, 0o755)
        ro = os.path.join(top, "ro")
        os.mkdir(ro)
        os.chmod(ro, 0o555)
        code = ("import sys; from filtertopo.result import check_output_dir\n"
                "from filtertopo.errors import InputError\n"
                "for p in sys.argv[1:]:\n"
                "    try:\n        check_output_dir(p)\n    except InputError as e:\n        print('REFUSED', e)\n"
                "    else:\n        print('ACCEPTED', p)\n")
        pre = (lambda: (os.setgid(65534), os.setuid(65534))) if ROOT else None
        try:
            r = subprocess.run([sys.executable, "-c", code, ro, os.path.join(ro, "sub")], capture_output=True,
                               text=True, preexec_fn=pre, cwd=top, env={**os.environ, "HOME": top})
        except PermissionError:
            pytest.skip("this Python cannot be run by an unprivileged user here")
        if r.returncode != 0 and "ModuleNotFoundError" in r.stderr:
            pytest.skip("the package is not importable as an unprivileged user here")
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("REFUSED") == 2 and "not writable" in r.stdout, r.stdout
    finally:
        os.chmod(os.path.join(top, "ro"), 0o755)
        shutil.rmtree(top, ignore_errors=True)


# --------------------------------------------------------------------------- O04

def test_o04_force_without_report_sets_old_report_aside(world, tmp_path):
    out = _copy(world["src"][10], tmp_path / "res")
    (out / "report.html").write_text("old report of the k=10 run")
    (out / "notes.txt").write_text("mine")
    world["res"][12].save(out, force=True)
    assert not (out / "report.html").exists()
    assert (out / "report.html.stale").read_text() == "old report of the k=10 run"
    assert (out / "notes.txt").read_text() == "mine"
    assert _sig(AnalysisResult.load(out)) == _sig(world["res"][12])


# --------------------------------------------------------------------------- O05b / O05d

def test_o05b_dangling_symlink_out_refused_before_work(world, tmp_path, monkeypatch, capsys):
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    _no_work(monkeypatch)
    assert cli("analyze", world["ckpt"], "--out", link, "--k", 10) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "symbolic link" in line and "does not exist" in line
    with pytest.raises(InputError, match="symbolic link"):
        world["res"][10].save(link)


def test_o05d_result_name_is_folder_refused_before_work(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "res3"
    (out / "analysis.json").mkdir(parents=True)
    _no_work(monkeypatch)
    assert cli("analyze", world["ckpt"], "--out", out, "--k", 10, "--force") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "analysis.json is a folder" in line
    with pytest.raises(InputError, match="is a folder"):
        world["res"][10].save(out, force=True)
    assert sorted(os.listdir(out)) == ["analysis.json"]  # nothing written, no stray temporary


# --------------------------------------------------------------------------- O06

_SLOW_SAVE = """
import sys, time, numpy as np
from filtertopo.result import AnalysisResult
from filtertopo.errors import InputError
res = AnalysisResult.load(sys.argv[1])
real = np.savez_compressed
def slow(*a, **k):
    time.sleep(float(sys.argv[3]))
    return real(*a, **k)
np.savez_compressed = slow
try:
    res.save(sys.argv[2], force=len(sys.argv) > 4)
except InputError as e:
    print("INPUTERROR", e)
    sys.exit(2)
print("SAVED")
"""


def test_o06_concurrent_writers_second_gets_input_error(world, tmp_path):
    out = tmp_path / "conc"
    ps = [subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(world["src"][k]), str(out), "1.5"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (10, 12)]
    outs = [p.communicate(timeout=120) for p in ps]
    rcs = sorted(p.returncode for p in ps)
    assert rcs == [0, 2], outs
    loser = next(o for p, o in zip(ps, outs) if p.returncode == 2)
    assert "INPUTERROR" in loser[0] and "Traceback" not in loser[1]
    assert "another filtertopo process" in loser[0] or "already holds results" in loser[0]
    winner = next(k for p, k in zip(ps, (10, 12)) if p.returncode == 0)
    assert _sig(AnalysisResult.load(out)) == _sig(world["res"][winner])
    assert not [n for n in os.listdir(out) if n.startswith(".filtertopo-tmp")]


def test_o06_lock_held_by_another_process_refuses(world, tmp_path):
    out = _copy(world["src"][10], tmp_path / "locked")
    holder = _py(f"""
        import sys, time
        from filtertopo._io import output_lock
        with output_lock({str(out)!r}):
            print("LOCKED", flush=True)
            time.sleep(60)
    """)
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        with pytest.raises(InputError, match=rf"another filtertopo process \(pid {holder.pid}\)"):
            world["res"][12].save(out, force=True)
        with pytest.raises(InputError, match="another filtertopo process"):
            check_output_dir(out, force=True)  # the CLI's early check says so before any work
        with pytest.raises(InputError, match="another filtertopo process"):
            AnalysisResult.load(out)  # a reader does not read a folder while it is being written
    finally:
        holder.kill()
        holder.wait()
    assert _sig(AnalysisResult.load(out)) == _sig(world["res"][10])


# --------------------------------------------------------------------------- O07

_KILL_SAVE = """
import os, sys, time, numpy as np
from filtertopo.result import AnalysisResult
res = AnalysisResult.load(sys.argv[1])
out, stage = sys.argv[2], int(sys.argv[3])
if stage == 0:  # stop while the files are being written into the temporary folder
    real_savez = np.savez_compressed
    def slow(*a, **k):
        real_savez(*a, **k)
        print("READY", flush=True); time.sleep(60)
    np.savez_compressed = slow
else:  # stop right after the stage-th rename into the folder
    real, n = os.replace, [0]
    def replace(src, dst, *a, **k):
        real(src, dst, *a, **k)
        if os.path.dirname(os.path.abspath(dst)) == os.path.abspath(out):
            n[0] += 1
            if n[0] == stage:
                print("READY", flush=True); time.sleep(60)
    os.replace = replace
res.save(out, force=True)
print("DONE", flush=True)
"""


@pytest.mark.parametrize("stage", [0, 1, 2, 3, 4])
def test_o07_sigkill_during_save_never_loads_mixed(world, tmp_path, stage):
    out = _copy(world["src"][10], tmp_path / "kill")
    p = subprocess.Popen([sys.executable, "-c", _KILL_SAVE, str(world["src"][12]), str(out), str(stage)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert line == "READY", p.stderr.read()
    old, new = _sig(world["res"][10]), _sig(world["res"][12])
    try:
        got = _sig(AnalysisResult.load(out))
    except InputError as e:
        assert "incomplete or mixed" in str(e) and "--force" in str(e)
        assert 1 <= stage <= 3  # the manifest moved in, not every file after it
        r = subprocess.run([sys.executable, "-m", "filtertopo", "report", str(out)], capture_output=True,
                           text=True)
        assert r.returncode == 2 and "incomplete or mixed" in _one_error_line(r.stderr)
    else:
        assert got == (old if stage == 0 else new)  # never a mix
        assert stage in (0, 4)
    # a re-run with --force repairs the folder and cleans the killed run's temporary folder
    world["res"][12].save(out, force=True)
    assert _sig(AnalysisResult.load(out)) == new
    assert not [n for n in os.listdir(out) if n.startswith(".filtertopo-tmp")]


# --------------------------------------------------------------------------- O08

def test_o08_out_path_too_long_refused(world, tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch)
    long = tmp_path / ("x" * 300)
    assert cli("analyze", world["ckpt"], "--out", long, "--k", 10) == 2
    assert "too long" in _one_error_line(capsys.readouterr().err)
    deep = tmp_path.joinpath(*["d" * 200] * 25)
    with pytest.raises(InputError, match="too long"):
        check_output_dir(deep)
    assert cli("report", world["src"][10], "--out", tmp_path / ("r" * 300 + ".html")) == 2
    assert "too long" in _one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- O09

_FULL_SAVE = """
import resource, sys
from filtertopo.result import AnalysisResult
from filtertopo.errors import InputError
res = AnalysisResult.load(sys.argv[1])
lim = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (lim, lim))
try:
    res.save(sys.argv[2], force=True)
except InputError as e:
    print("INPUTERROR", e); sys.exit(2)
print("SAVED")
"""


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "force-over-old"])
def test_o09_disk_full_never_loads_and_keeps_old_results(world, tmp_path, fresh):
    out = tmp_path / "full"
    if not fresh:
        _copy(world["src"][10], out)
    size = os.path.getsize(world["src"][12] / "analysis.json")
    r = subprocess.run([sys.executable, "-c", _FULL_SAVE, str(world["src"][12]), str(out), str(size // 2)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "INPUTERROR" in r.stdout and "File too large" in r.stdout and "Traceback" not in r.stderr
    if fresh:
        with pytest.raises(InputError):
            AnalysisResult.load(out)
    else:
        assert _sig(AnalysisResult.load(out)) == _sig(world["res"][10])  # old results survive
    assert not [n for n in os.listdir(out) if n.startswith(".filtertopo-tmp")]


def test_o09_disk_full_cli_one_error_line(world, tmp_path):
    import resource

    out = _copy(world["src"][10], tmp_path / "full3")
    lim = os.path.getsize(out / "analysis.json") // 2

    def pre():
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim, lim))

    r = subprocess.run([sys.executable, "-m", "filtertopo", "analyze", str(world["ckpt"]), "--out", str(out),
                        "--k", "12", "--no-progress", "--jobs", "1", "--no-circular", "--force"],
                       capture_output=True, text=True, preexec_fn=pre, timeout=300)
    assert r.returncode == 2
    assert "File too large" in _one_error_line(r.stderr)
    assert _sig(AnalysisResult.load(out)) == _sig(world["res"][10])


# --------------------------------------------------------------------------- manifest

def test_manifest_lists_every_file_and_detects_a_mix(world, tmp_path, capsys):
    out = _copy(world["src"][10], tmp_path / "mix")
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["files"]) == {"points.npz", "analysis.json", "layers.csv"}
    assert len(m["run_id"]) == 32 and m["filtertopo_version"]
    shutil.copy(world["src"][12] / "points.npz", out / "points.npz")
    with pytest.raises(InputError, match="incomplete or mixed results folder.*points.npz.*--force"):
        AnalysisResult.load(out)
    assert cli("report", out) == 2
    assert "incomplete or mixed" in _one_error_line(capsys.readouterr().err)
    shutil.copy(world["src"][10] / "points.npz", out / "points.npz")
    AnalysisResult.load(out)
    os.remove(out / "layers.csv")
    with pytest.raises(InputError, match="layers.csv is missing"):
        AnalysisResult.load(out)


def test_folder_without_manifest_loads_with_warning(world, tmp_path):
    out = _copy(world["src"][10], tmp_path / "legacy")
    os.remove(out / "manifest.json")
    with pytest.warns(UserWarning, match="cannot be verified"):
        back = AnalysisResult.load(out)
    assert _sig(back) == _sig(world["res"][10])


def test_repeated_force_saves_like_track_and_demo(world, tmp_path):
    out = tmp_path / "steps" / "step_000000"
    for k in (10, 12, 10):
        world["res"][k].save(out, force=True)
        assert _sig(AnalysisResult.load(out)) == _sig(world["res"][k])
    assert sorted(os.listdir(out)) == [".filtertopo.lock", "analysis.json", "layers.csv", "manifest.json",
                                       "points.npz"]
    with pytest.raises(InputError, match="already holds results"):
        world["res"][12].save(out)


def test_o07_leftovers_of_killed_saves_are_cleaned(world, tmp_path):
    out = _copy(world["src"][10], tmp_path / "left")
    for name in (".points.npz.tmp.npz", ".analysis.json.tmp", ".layers.csv.tmp"):  # filtertopo 0.1.0
        (out / name).write_text("partial")
    (out / ".filtertopo-tmp-abc").mkdir()
    (out / ".filtertopo-tmp-abc" / "points.npz").write_text("partial")
    (out / ".mine.tmp").write_text("a user file")
    world["res"][12].save(out, force=True)
    assert sorted(os.listdir(out)) == [".filtertopo.lock", ".mine.tmp", "analysis.json", "layers.csv",
                                       "manifest.json", "points.npz"]


def test_atomic_write_unique_temp_and_no_leftover(tmp_path):
    target = tmp_path / "f.npz"
    seen = []

    def write(p):
        seen.append(p)
        np.savez(p, a=np.arange(3))

    _io.atomic_write(target, write)
    _io.atomic_write(target, write)
    assert seen[0] != seen[1] and seen[0].parent == tmp_path and seen[0].name.endswith(".npz")
    assert np.load(target)["a"].tolist() == [0, 1, 2]

    def fail(p):
        p.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(InputError, match="No space left.*left unchanged"):
        _io.atomic_write(target, fail)
    assert sorted(os.listdir(tmp_path)) == ["f.npz"]
    assert np.load(target)["a"].tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- R03

def _drop(key):
    return lambda j: {k: v for k, v in j.items() if k != key}


def _layers(fn):
    return lambda j: {**j, "layers": [fn(l) for l in j["layers"]]}


R03_EDITS = {
    "list": b"[1,2,3]",
    "no-layers": _drop("layers"),
    "non-utf8": b'{"layers": [], "x": "\xff\xfe"}',
    "layer-without-name": _layers(lambda l: {k: v for k, v in l.items() if k != "name"}),
    "string-diagrams": _layers(lambda l: {**l, "diagrams": {"0": [["a", "b"]], "1": [["x", None]]}}),
    "kernel-shape-5x5": _layers(lambda l: {**l, "kernel_shape": [5, 5]}),
    "n-core-negative": _layers(lambda l: {**l, "n_core": -5, "k": "ten"}),
    "nan-counts": _layers(lambda l: {**l, "n_filters": float("nan")}),
    "layers-not-objects": lambda j: {**j, "layers": [1, "x"]},
}


@pytest.mark.parametrize("edit", list(R03_EDITS), ids=list(R03_EDITS))
@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "legacy"])
def test_r03_hand_edited_analysis_json_is_input_error(world, tmp_path, edit, manifest, capsys):
    out = _copy(world["src"][10], tmp_path / "j")
    e = R03_EDITS[edit]
    js = out / "analysis.json"
    js.write_bytes(e if isinstance(e, bytes) else json.dumps(e(json.loads(js.read_text()))).encode())
    if not manifest:
        os.remove(out / "manifest.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="analysis.json" if manifest else "analysis.json"):
            AnalysisResult.load(out)
        assert cli("report", out) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "analysis.json" in line
    assert not (out / "report.html").exists()


# --------------------------------------------------------------------------- R12

def _npz_edit(fn):
    def edit(d):
        z = dict(np.load(d / "points.npz"))
        fn(z)
        np.savez(d / "points.npz", **z)
    return edit


def _objarr(z):
    a = np.empty(1, object)
    a[0] = {"x": 1}
    z["conv1::core"] = a


R12_EDITS = {
    "truncated": lambda d: (d / "points.npz").write_bytes((d / "points.npz").read_bytes()[:3000]),
    "garbage": lambda d: (d / "points.npz").write_bytes(np.random.default_rng(0).bytes(3000)),
    "object-array": _npz_edit(_objarr),
    "wrong-dimension": _npz_edit(lambda z: z.__setitem__("conv1::core", np.zeros((77, 4), np.float32))),
    "nan": _npz_edit(lambda z: z.__setitem__("conv1::core", np.full_like(z["conv1::core"], np.nan))),
    "provenance-shape": _npz_edit(lambda z: z.__setitem__("conv1::provenance", np.zeros((3, 7), np.int64))),
    "plain-npy": lambda d: np.save(open(d / "points.npz", "wb"), np.zeros(3)),
}


@pytest.mark.parametrize("edit", list(R12_EDITS), ids=list(R12_EDITS))
@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "legacy"])
def test_r12_corrupt_points_npz_is_input_error(world, tmp_path, edit, manifest, capsys):
    out = _copy(world["src"][10], tmp_path / "p")
    R12_EDITS[edit](out)
    if not manifest:
        os.remove(out / "manifest.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="points.npz"):
            AnalysisResult.load(out)
        assert cli("report", out) == 2
    assert "points.npz" in _one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- R19 / R21

def test_r19_report_out_existing_folder_force(world, tmp_path, capsys):
    d = tmp_path / "r"
    (d / "outdir").mkdir(parents=True)
    for force in (("--force",), ()):
        assert cli("report", world["src"][10], "--out", d / "outdir", *force) == 2
        assert "is a folder" in _one_error_line(capsys.readouterr().err)
    assert os.listdir(d) == ["outdir"] and os.listdir(d / "outdir") == []  # no stray temporary
    # and a report into the results folder itself works and leaves no temporary behind
    out = _copy(world["src"][10], tmp_path / "ok")
    assert cli("report", out, "--mapper-max-points", 50) == 0
    assert (out / "report.html").stat().st_size > 0
    assert not [n for n in os.listdir(out) if n.endswith(".tmp") or ".tmp." in n]
    AnalysisResult.load(out)  # still verifies


@pytest.mark.parametrize("value", ["0", "-5"])
def test_r21_mapper_max_points_must_be_positive(world, tmp_path, capsys, value):
    assert cli("report", world["src"][10], "--out", tmp_path / "m.html", "--mapper-max-points", value) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--mapper-max-points" in line and value in line
    assert not (tmp_path / "m.html").exists()


# --------------------------------------------------------------------------- BP / Q11

@pytest.fixture(scope="module")
def many_layers(tmp_path_factory):
    rng = np.random.default_rng(0)
    return save_kernels(tmp_path_factory.mktemp("many") / "many.npz",
                        {f"features.{i}.conv_layer_with_a_long_name": rng.normal(size=(4, 2, 3, 3))
                         for i in range(400)})


def test_bp_stdout_closed_early_no_traceback(many_layers):
    p = subprocess.Popen([sys.executable, "-m", "filtertopo", "describe", str(many_layers)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # like `| head -1` that has already exited
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert p.returncode in (0, 141), err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    r = subprocess.run(f"{sys.executable} -m filtertopo describe {many_layers} | head -1", shell=True,
                       capture_output=True, text=True)
    assert r.stdout.count("\n") == 1 and "Traceback" not in r.stderr and r.stderr == ""


def test_q11_unicode_layer_names_latin1_stdout(tmp_path):
    P, _ = primary_circle_filters(300, seed=0)
    ckpt = save_kernels(tmp_path / "names.npz", {"conv_é_π_слой": P.reshape(30, 10, 3, 3),
                                                 "🙂.weight": P[:200].reshape(20, 10, 3, 3)})
    env = {**os.environ, "PYTHONIOENCODING": "latin-1"}
    r = subprocess.run([sys.executable, "-m", "filtertopo", "describe", str(ckpt)], capture_output=True,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert b"Traceback" not in r.stderr
    assert "conv_é".encode("latin-1") in r.stdout and b"\\u03c0" in r.stdout
    r = subprocess.run([sys.executable, "-m", "filtertopo", "analyze", str(ckpt), "--out", str(tmp_path / "o"),
                        "--k", "10", "--no-progress", "--jobs", "1", "--no-circular"], capture_output=True,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert b"Traceback" not in r.stderr
    names = {l.name for l in AnalysisResult.load(tmp_path / "o")}
    assert len(names) == 2 and "conv_é_π_слой" in names


# --------------------------------------------------------------------------- MemoryError / OSError

def test_memory_error_message_fits_the_verb(monkeypatch, capsys, tmp_path):
    import filtertopo.commands.describe as describe
    import filtertopo.commands.report as report

    def oom(args):
        raise MemoryError

    monkeypatch.setattr(describe, "run", oom)
    assert cli("describe", tmp_path / "x.npz") == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "out of memory while running `filtertopo describe`" in line
    assert "--max-points" not in line and "--layers" not in line
    monkeypatch.setattr(report, "run", oom)
    assert cli("report", tmp_path) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "`filtertopo report`" in line and "--mapper-max-points" in line and "--layers" not in line


def test_memory_error_analyze_advice(monkeypatch, capsys, tmp_path, world):
    import filtertopo.pipeline

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(filtertopo.pipeline, "analyze", oom)
    assert cli("analyze", world["ckpt"], "--out", tmp_path / "o") == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "`filtertopo analyze`" in line and "--max-points" in line and "--layers" in line


def test_oserror_is_one_error_line_naming_the_path(monkeypatch, capsys, tmp_path):
    import filtertopo.commands.describe as describe

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/points.npz")

    monkeypatch.setattr(describe, "run", full)
    assert cli("describe", tmp_path / "x.npz") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "/data/out/points.npz" in line and "No space left" in line


def test_o06_file_system_without_locks_still_saves(world, tmp_path, monkeypatch):
    import fcntl

    def nolock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", nolock)
    with pytest.warns(UserWarning, match="does not support locks"):
        world["res"][10].save(tmp_path / "nfs")
    monkeypatch.undo()
    assert _sig(AnalysisResult.load(tmp_path / "nfs")) == _sig(world["res"][10])
