"""Sweeps (issue 10, steps 1, 2 and 4): the spec, `filtertopo sweep plan|run|status`, the store.

Fault tests run the real CLI in subprocesses and SIGKILL a worker or the driver mid-run; a
full disk is simulated by making a write raise ENOSPC. The Dask test starts a real
scheduler and two worker processes on 127.0.0.1 (no dashboard). Runs are tiny: sklearn's
digits, 100-1,400 images, one epoch, 8-24 filters in conv1.
"""

import errno
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from filtertopo.cli import main  # noqa: E402
from filtertopo.errors import InputError  # noqa: E402
from filtertopo.sweep import load_spec, parse_spec, plan_sweep, run_sweep, verify_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

BASE = """
seeds = 2
[train]
dataset = "digits"
n_train = 100
epochs = 1
batch_size = 50
eval_samples = 20
threads = 1
[train.model_kwargs]
widths = [8, 4]
[axes]
lr = [0.02, 0.05]
[analysis]
layers = "conv1"
n_landmarks = 30
circular = false
"""


def _spec(tmp_path, text=BASE, name="spec.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _index(out):
    con = sqlite3.connect(f"file:{Path(out) / 'index.sqlite'}?mode=ro", uri=True)
    try:
        rows = {r[0]: {"status": r[1], "attempts": r[2], "error": r[3], "phase": r[4]}
                for r in con.execute("SELECT id, status, attempts, error, error_phase FROM runs")}
        events = list(con.execute("SELECT run_id, event FROM events ORDER BY seq"))
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()
    return rows, events


def _records(out):
    """{id: bytes of sweep_run.json} of the complete run folders."""
    runs = Path(out) / "runs"
    return {p.name: (p / "sweep_run.json").read_bytes() for p in runs.iterdir()
            if (p / "sweep_run.json").exists()}


def _consistent(out):
    rows, events = _index(out)
    assert verify_store(out) == []
    assert not [p for p in (Path(out) / "runs").iterdir() if p.name.startswith(".tmp-")]
    done = {rid for rid, r in rows.items() if r["status"] == "done"}
    recs = {rid: json.loads(b) for rid, b in _records(out).items()}
    assert done == {rid for rid, r in recs.items() if r["status"] == "done"}
    for rid in done:  # every finished run recorded done exactly once
        assert sum(1 for r, e in events if r == rid and e in ("done", "recovered done")) == 1, rid
    return rows


# --------------------------------------------------------------------------- the spec

def test_examples_tiny_and_study_shape():
    tiny = load_spec(EXAMPLES / "sweep_tiny.toml")
    runs = tiny.expand()
    assert 1 < len(runs) <= 8
    assert all(r.config.epochs == 1 and r.config.n_train <= 200 for r in runs)
    assert [r.id for r in runs] == [r.config.key() for r in runs] and len({r.id for r in runs}) == len(runs)
    assert runs[0].varied == {"model_kwargs.widths": [32, 16], "seed": 0}
    assert runs[1].varied["seed"] == 1  # the seed varies fastest

    study = load_spec(EXAMPLES / "sweep_mnist_cpu.toml")
    axes = dict(study.axes)
    assert len(study.expand()) >= 192 and len(axes["seed"]) == 4
    assert len([a for a in axes if a != "seed"]) >= 3 and all(len(v) >= 3 for v in axes.values())
    _, _, infos = plan_sweep(study)  # every architecture builds and has the selected layers
    assert all(i.layers == ("conv1", "conv2") for i in infos.values())


def test_run_id_is_the_train_config_key_whatever_the_spelling(tmp_path):
    from filtertopo.training import TrainConfig

    a = parse_spec({"train": {"dataset": "digits", "lr": 1}, "axes": {"model_kwargs": {"widths": [[8, 4]]}}})
    b = parse_spec({"train": {"dataset": "digits", "lr": 1.0}, "axes": {"model_kwargs.widths": [[8, 4]]}})
    (ra,), (rb,) = a.expand(), b.expand()
    assert ra.id == rb.id == TrainConfig(dataset="digits", lr=1.0, model_kwargs={"widths": [8, 4]}).key()
    assert ra.varied == {"model_kwargs.widths": [8, 4]}
    assert a.key() == b.key()
    c = parse_spec({"train": {"dataset": "digits", "lr": 1.0}, "axes": {"model_kwargs.widths": [[8, 4]]},
                    "analysis": {"p": 0.2}})
    assert c.key() != a.key()  # another analysis is another sweep


BAD_SPECS = [  # (text, fragments every message must hold)
    ('axis = {lr = [0.1]}', ["unknown key 'axis'", "did you mean 'axes'"]),
    ('lr = 0.1', ["unknown key 'lr'", "put it under [train]"]),
    ('[train]\nlearning_rat = 0.1', ["[train]", "'learning_rat'", "lr"]),
    ('[train]\nbatchsize = 8', ["did you mean 'batch_size'"]),
    ('[train]\nlr = "fast"', ["lr", "must be float", "fast"]),
    ('[axes]\nlr = []', ["[axes] lr is empty", "at least one value", "lr = [0.01, 0.05]"]),
    ('[axes]\nlr = 0.1', ["[axes] lr must be a list", "lr = [0.1]"]),
    ('[axes]\nlr = [0.1, "x"]', ["[axes] lr[1]", "\"x\"", "must be float"]),
    ('[axes]\nlr = [0.1, 0.10]', ["lists the value", "twice"]),
    ('[axes]\nbatch = [8]', ["unknown key 'batch'", "batch_size"]),
    ('[axes]\ndevice = ["cpu", "cuda"]', ["device", "not part of the run id", "--device"]),
    ('seeds = 2\n[axes]\nseed = [0, 1]', ["seeds are given twice"]),
    ('seeds = 0', ["seeds must be a number of seeds", "seeds = 4"]),
    ('seeds = [1, 1]', ["more than once"]),
    ('[axes]\n"model_kwargs.widths" = [16, 8]', ["model_kwargs", "cannot be built", "[[64, 32]]"]),
    ('[snapshots]\nanalyze = [0]', ["needs snapshots", "every = N"]),
    ('[snapshots]\nevery = 4\nanalyze = [0, 6]', ["[6]", "multiples of the snapshot interval 4"]),
    ('[snapshots]\nevry = 4', ["did you mean 'every'"]),
    ('[analysis]\nn_landmark = 50', ["[analysis]", "did you mean 'n_landmarks'"]),
    ('[analysis]\np = 2.0', ["[analysis]", "p (--p) must be in (0, 1]"]),
    ('[analysis]\nlayers = "fc*"', ["layers", "matches no conv layer", "conv1"]),
    ('[train]\nlr = 0.1\n[axes]\nlr = [0.1, 0.2]', ["both in [train]", "and in [axes]"]),
    ('train = 3', ["train must be a table"]),
    ('[train', ["not valid TOML"]),
]


@pytest.mark.parametrize("text, fragments", BAD_SPECS, ids=[t.split("\n")[-1][:30] for t, _ in BAD_SPECS])
def test_bad_spec_is_one_error_line_naming_key_rule_and_fix(tmp_path, capsys, text, fragments):
    spec = _spec(tmp_path, text)
    rc = main(["sweep", "plan", str(spec)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for f in fragments:
        assert f in err, (f, err)


def test_duplicate_runs_are_refused():
    from filtertopo.sweep import SweepSpec
    from filtertopo.training import TrainConfig

    with pytest.raises(InputError, match="twice"):
        parse_spec({"axes": {"model_kwargs": [{"widths": [8, 4]}, {"widths": [8, 4]}]}})
    spec = SweepSpec(name="dup", base=TrainConfig(), axes=(("lr", (0.1, 0.2)), ("momentum", (0.9,)),
                                                           ("epochs", (1, 1))))
    with pytest.raises(InputError, match=r"runs 0 .* and 1 .* are the same training run \(id [0-9a-f]{16}\)"):
        spec.expand()


def test_plan_prints_runs_and_counted_and_measured_cost(tmp_path, capsys):
    spec = _spec(tmp_path)
    assert main(["sweep", "plan", str(spec), "--calibrate", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    ids = [r.id for r in load_spec(spec).expand()]
    assert all(i in out for i in ids)
    head = [line for line in out.splitlines() if line.startswith("id ")][0]
    assert head.split() == ["id", "lr", "seed"]
    assert "4 runs = 2 lr x 2 seed" in out
    assert "counted (not measured)" in out and "FLOP" in out
    assert "measured here" in out and "GFLOP/s" in out and "on 2 worker(s)" in out


# --------------------------------------------------------------------------- running, resuming

def test_run_resume_and_retry_failed(tmp_path, monkeypatch):
    import filtertopo.training.loop as loop

    spec = _spec(tmp_path)
    out = tmp_path / "sweep"
    runs = load_spec(spec).expand()
    bad = runs[2].id
    real = loop.train

    def flaky(config, run_dir, **kw):
        if config.key() == bad:
            raise RuntimeError("simulated failure inside training")
        return real(config, run_dir, **kw)

    monkeypatch.setattr(loop, "train", flaky)
    res = run_sweep(spec, out, progress=False)
    assert res.counts == {"pending": 0, "running": 0, "done": 3, "failed": 1} and res.ran == 4
    assert res.failures[0][0] == bad and "simulated failure" in res.failures[0][1]
    rows = _consistent(out)
    assert rows[bad]["phase"] == "train"
    rec = json.loads((out / "runs" / bad / "sweep_run.json").read_text())
    assert rec["status"] == "failed" and rec["error"]["type"] == "RuntimeError"
    done = _records(out)
    good = runs[0].id
    layout = sorted(p.relative_to(out / "runs" / good).as_posix() for p in (out / "runs" / good).rglob("*")
                    if p.is_file())
    for f in ("config.json", "run.json", "metrics.csv", "kernels.npz", "model.pt", "sweep_run.json",
              "analysis/final/analysis.json", "analysis/final/layers.csv", "analysis/final/manifest.json"):
        assert f in layout, (f, layout)
    from filtertopo import AnalysisResult

    assert AnalysisResult.load(out / "runs" / good / "analysis" / "final")["conv1"].verdict == "too-few"

    monkeypatch.setattr(loop, "train", real)
    again = run_sweep(spec, out, progress=False)  # failed runs are not retried unless asked
    assert again.ran == 0 and again.skipped_done == 3 and again.counts["failed"] == 1
    assert _records(out) == done
    fixed = run_sweep(spec, out, retry_failed=True, progress=False)
    assert fixed.ran == 1 and fixed.counts["done"] == 4
    rows = _consistent(out)
    assert {rid: r["attempts"] for rid, r in rows.items()} == {r.id: (2 if r.id == bad else 1) for r in runs}
    assert all(_records(out)[rid] == b for rid, b in done.items() if rid != bad)  # untouched


def test_batched_groups_train_in_the_driver_and_match_one_by_one(tmp_path, monkeypatch):
    """Where choose_path says "batched" (CUDA; here forced on the CPU) the driver trains each
    group in one batched step and the pool only analyses; the runs, their ids, folders and
    index are those of the one-by-one sweep, and the weights agree within float tolerance."""
    import numpy as np

    spec = _spec(tmp_path)
    one = run_sweep(spec, tmp_path / "one", progress=False)
    monkeypatch.setenv("FILTERTOPO_BATCHED_CPU", "1")
    lines = []
    bat = run_sweep(spec, tmp_path / "bat", progress=False, log=lines.append)
    assert one.counts == bat.counts == {"pending": 0, "running": 0, "done": 4, "failed": 0}
    assert any("batched group" in s for s in lines), lines
    rows = _consistent(tmp_path / "bat")
    assert set(rows) == set(_consistent(tmp_path / "one"))
    assert all(r["attempts"] == 1 for r in rows.values())
    for rid in rows:
        a, b = (tmp_path / "one" / "runs" / rid, tmp_path / "bat" / "runs" / rid)
        assert json.loads((b / "run.json").read_text())["path"] == "batched"
        assert (b / "analysis" / "final" / "analysis.json").is_file()
        ka, kb = np.load(a / "kernels.npz"), np.load(b / "kernels.npz")
        for name in ka.files:
            if ka[name].dtype.kind == "f":
                assert np.max(np.abs(ka[name] - kb[name])) < 1e-4, (rid, name)


def test_a_batched_group_that_fails_fails_its_runs_and_the_index_stays_consistent(tmp_path, monkeypatch):
    import filtertopo.training.batched as batched

    def broken(*a, **kw):
        raise RuntimeError("simulated failure of a batched step")

    monkeypatch.setenv("FILTERTOPO_BATCHED_CPU", "1")
    monkeypatch.setattr(batched, "train_group", broken)
    res = run_sweep(_spec(tmp_path), tmp_path / "sweep", progress=False)
    assert res.counts == {"pending": 0, "running": 0, "done": 0, "failed": 4} and res.ran == 4
    rows = _consistent(tmp_path / "sweep")
    assert all(r["phase"] == "train" and "simulated failure" in r["error"] for r in rows.values())


def test_other_sweep_in_the_folder_is_refused_and_force_deletes_only_its_own(tmp_path, capsys):
    spec = _spec(tmp_path, BASE.replace("seeds = 2", "seeds = 1"))
    out = tmp_path / "sweep"
    assert main(["sweep", "run", str(spec), "--out", str(out), "--no-progress"]) == 0
    old = set(_records(out))
    (out / "notes.txt").write_text("mine")
    (out / "runs" / "mine").mkdir()
    other = _spec(tmp_path, BASE.replace("seeds = 2", "seeds = [5]"), "other.toml")
    capsys.readouterr()
    assert main(["sweep", "run", str(other), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds another sweep" in err and "--force" in err
    assert set(_records(out)) == old  # nothing changed
    assert main(["sweep", "run", str(other), "--out", str(out), "--force", "--no-progress"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "runs" / "mine").is_dir()
    assert not old & set(_records(out)) and len(_records(out)) == 2
    _consistent(out)

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "data.csv").write_text("x")
    assert main(["sweep", "run", str(spec), "--out", str(plain), "--no-progress"]) == 2
    assert "holds no sweep" in capsys.readouterr().err and sorted(os.listdir(plain)) == ["data.csv"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["sweep", "run", str(spec), "--out", str(afile), "--no-progress"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_full_disk_while_writing_a_run_keeps_the_index_consistent(tmp_path, monkeypatch):
    import filtertopo.sweep._runfolder as store

    spec = _spec(tmp_path)
    out = tmp_path / "sweep"
    real, kernels = store._write_file, []

    def full(path, data):  # the disk fills up while the second run folder is written
        if path.name == "kernels.npz":
            kernels.append(path)
            if len(kernels) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(store, "_write_file", full)
    with pytest.raises(InputError, match="No space left on device") as e:
        run_sweep(spec, out, progress=False)
    assert "run the same command again to resume" in str(e.value)
    rows = _consistent(out)
    assert sorted(r["status"] for r in rows.values()) == ["done", "pending", "pending", "pending"]
    first = _records(out)
    monkeypatch.setattr(store, "_write_file", real)
    res = run_sweep(spec, out, progress=False)
    assert res.counts["done"] == 4 and res.ran == 3
    rows = _consistent(out)
    assert all(_records(out)[rid] == b for rid, b in first.items())
    assert sorted(r["attempts"] for r in rows.values()) == [1, 1, 1, 2]


def test_full_disk_on_the_index_update_is_rolled_back_and_recovered(tmp_path, monkeypatch):
    import filtertopo.sweep.store as store

    spec = _spec(tmp_path)
    out = tmp_path / "sweep"
    real_connect = store._connect
    state = {"done": 0}

    class FullAfterOne:
        def __init__(self, con):
            self._con = con

        def __getattr__(self, name):
            return getattr(self._con, name)

        def execute(self, sql, *args):
            if sql.startswith("UPDATE runs SET status=?, error=?") and args and args[0][0] == "done":
                state["done"] += 1
                if state["done"] == 2:
                    raise sqlite3.OperationalError("database or disk is full")
            return self._con.execute(sql, *args)

    monkeypatch.setattr(store, "_connect", lambda p: FullAfterOne(real_connect(p)))
    with pytest.raises(InputError, match="database or disk is full") as e:
        run_sweep(spec, out, progress=False)
    assert "rolled back" in str(e.value)
    rows, _ = _index(out)
    assert sorted(r["status"] for r in rows.values()) == ["done", "pending", "pending", "running"] or \
        sorted(r["status"] for r in rows.values()) == ["done", "pending", "pending", "pending"]
    assert len(_records(out)) == 2  # the second folder is complete; the index missed it
    monkeypatch.setattr(store, "_connect", real_connect)
    res = run_sweep(spec, out, progress=False)
    assert res.counts["done"] == 4 and res.ran == 2  # the recovered run was not trained again
    assert len(res.recovered) >= 1 and any(new == "done" for _, _, new, _ in res.recovered)
    _consistent(out)


# --------------------------------------------------------------------------- SIGKILL in subprocesses

KILL_SPEC = BASE.replace("n_train = 100", "n_train = 600").replace("widths = [8, 4]", "widths = [16, 8]")


def _driver(spec, out, scratch, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "filtertopo.cli", "sweep", "run", str(spec), "--out",
                             str(out), "--scratch", str(scratch), "--no-progress", *extra], env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _training_now(scratch):
    """(run id, pid) of a run training right now: its worker's private run.json says running."""
    for p in Path(scratch).glob("filtertopo-sweep-*/run/run.json"):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("status") == "running":
            return p.parts[-3].split("-")[2], rec["pid"]
    return None


def _wait(pred, proc, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        got = pred()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"the driver ended early: {proc.communicate()}")
        time.sleep(0.03)
    proc.kill()
    pytest.fail("timed out")


def _n_done(out):
    try:
        con = sqlite3.connect(f"file:{out / 'index.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM runs WHERE status='done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_sigkill_a_worker_mid_run_then_resume(tmp_path):
    import threading

    spec, out, scratch = _spec(tmp_path, KILL_SPEC), tmp_path / "sweep", tmp_path / "scratch"
    scratch.mkdir()
    killed, stop = [], threading.Event()

    def killer():  # SIGKILL the first pool worker seen training once a run is done
        while not stop.is_set():
            got = _n_done(out) >= 1 and _training_now(scratch)
            if got and got[1] != os.getpid():
                os.kill(got[1], signal.SIGKILL)
                killed.append(got)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        res = run_sweep(spec, out, workers=2, scratch=scratch, progress=False)  # the driver is this process
    finally:
        stop.set()
        thread.join()
    assert killed, "no worker was seen mid-run"
    rid = killed[0][0]
    rows = _consistent(out)
    assert rows[rid]["status"] == "failed" and rows[rid]["phase"] == "worker" and "died" in rows[rid]["error"]
    assert "running" not in {r["status"] for r in rows.values()}
    assert res.counts["failed"] >= 1 and res.counts["pending"] == 0  # the rest went on without it
    assert any(r == rid and "worker process running it died" in e for r, e in res.failures)
    before = _records(out)
    done_before = {k for k, r in rows.items() if r["status"] == "done"}
    assert done_before

    res = run_sweep(spec, out, retry_failed=True, progress=False)
    assert res.ran == len(rows) - len(done_before) and res.counts["done"] == len(rows)
    rows = _consistent(out)
    assert {r["status"] for r in rows.values()} == {"done"}
    assert all(rows[k]["attempts"] == 1 and _records(out)[k] == before[k] for k in done_before)


def test_worker_death_through_the_cli_is_one_error_line(tmp_path, capsys, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    spec, out = _spec(tmp_path), tmp_path / "sweep"

    def dies(*a, **k):  # what iter_jobs raises when a pool worker is killed
        k["on_submit"](0)
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")
        yield

    import filtertopo.jobs as jobs

    monkeypatch.setattr(jobs, "iter_jobs", dies)
    assert main(["sweep", "run", str(spec), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 3 worker processes died; the sweep stopped") and "--retry-failed" in last, err
    rows = _consistent(out)
    assert sorted(r["status"] for r in rows.values()) == ["failed", "failed", "failed", "pending"]
    assert {r["phase"] for r in rows.values() if r["status"] == "failed"} == {"worker"}


def test_sigkill_the_driver_mid_sweep_then_resume(tmp_path):
    spec, out, tmpdir = _spec(tmp_path, KILL_SPEC), tmp_path / "sweep", tmp_path / "tmp"
    tmpdir.mkdir()
    proc = _driver(spec, out, tmpdir)  # one by one, in the driver's own process
    rid, pid = _wait(lambda: _n_done(out) >= 1 and _training_now(tmpdir), proc)
    assert pid == proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    rows, _ = _index(out)
    assert rows[rid]["status"] == "running"  # what the dead driver left
    done_before = {k for k, r in rows.items() if r["status"] == "done"}
    before = _records(out)
    assert done_before and rid not in before

    lines = []
    res = run_sweep(spec, out, progress=False, log=lines.append)  # resumed here: no second start-up
    assert (rid, "running", "pending", "the driver stopped while it was running") in res.recovered
    assert f"run {rid}: running -> pending (the driver stopped while it was running)" in lines
    assert res.ran == 4 - len(done_before)
    rows = _consistent(out)
    assert {r["status"] for r in rows.values()} == {"done"} and len(rows) == 4
    assert all(rows[k]["attempts"] == 1 and _records(out)[k] == before[k] for k in done_before)
    assert rows[rid]["attempts"] == 2


# --------------------------------------------------------------------------- Dask

def test_dask_scheduler_and_two_workers_on_localhost(tmp_path, capsys):
    distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed "
                                                            "(pip install 'filtertopo[dask]')")
    out = tmp_path / "sweep"
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        addr = cluster.scheduler_address
        assert addr.startswith("tcp://127.0.0.1:")
        rc = main(["sweep", "run", str(EXAMPLES / "sweep_tiny.toml"), "--out", str(out), "--scheduler", addr,
                   "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 0, err
        assert "2 worker thread(s)" in err
    rows = _consistent(out)
    assert len(rows) == 4 and {r["status"] for r in rows.values()} == {"done"}
    workers = {json.loads(b)["worker"] for b in _records(out).values()}
    assert all(not w.endswith(f":{os.getpid()}") for w in workers)  # ran on the Dask workers
    rec = json.loads(next(iter(_records(out).values())))
    assert set(rec["summary"]["analyses"]) == {"final", "step_000000"}


def test_dask_local_starts_a_localhost_cluster_without_dashboard(tmp_path, capsys, monkeypatch):
    """--dask-local N: the cluster's settings, with fakes (the real cluster is tested above)."""
    distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed "
                                                            "(pip install 'filtertopo[dask]')")
    from concurrent.futures import ThreadPoolExecutor

    made, closed = [], []

    class Cluster:
        scheduler_address = "tcp://127.0.0.1:1"

        def __init__(self, **kw):
            made.append(kw)

        def close(self):
            closed.append("cluster")

    class Client:
        def __init__(self, cluster, **kw):
            self.pool = ThreadPoolExecutor(1)

        def nthreads(self):
            return {"w1": 1, "w2": 1}

        def get_executor(self, **kw):
            assert kw == {"pure": False}
            return self.pool

        def close(self):
            self.pool.shutdown()
            closed.append("client")

    monkeypatch.setattr(distributed, "LocalCluster", Cluster)
    monkeypatch.setattr(distributed, "Client", Client)
    out = tmp_path / "sweep"
    spec = _spec(tmp_path, BASE.replace("seeds = 2", "seeds = 1"))
    assert main(["sweep", "run", str(spec), "--out", str(out), "--dask-local", "2", "--no-progress"]) == 0
    assert made == [dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None)]
    assert closed == ["client", "cluster"]
    assert "local Dask cluster of 2 workers" in capsys.readouterr().err
    assert {r["status"] for r in _consistent(out).values()} == {"done"}


def test_dead_scheduler_is_a_clear_error_within_seconds_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'filtertopo[dask]')")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "sweep"
    t0 = time.time()
    rc = main(["sweep", "run", str(_spec(tmp_path)), "--out", str(out), "--scheduler",
               f"tcp://127.0.0.1:{port}", "--connect-timeout", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --scheduler") and "no Dask scheduler answered" in err, err
    assert time.time() - t0 < 10 and not out.exists()


def test_import_filtertopo_imports_neither_sweep_nor_dask():
    code = ("import sys, filtertopo; assert 'filtertopo.sweep' not in sys.modules; "
            "import filtertopo.sweep, filtertopo.commands.sweep; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_status_reports_counts_failures_and_consistency(tmp_path, capsys, monkeypatch):
    import filtertopo.training.loop as loop

    spec = _spec(tmp_path, BASE.replace("seeds = 2", "seeds = 1"))
    out = tmp_path / "sweep"

    def boom(config, run_dir, **kw):
        raise loop.TrainingDiverged("training diverged at step 1: simulated")

    monkeypatch.setattr(loop, "train", boom)
    capsys.readouterr()
    assert main(["sweep", "run", str(spec), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: 2 of 2 runs failed") and "--retry-failed" in err[-1]
    assert main(["sweep", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "0 done" in text and "2 failed" in text and "TrainingDiverged" in text and "agree" in text
    assert main(["sweep", "status", str(tmp_path)]) == 2
    assert "holds no sweep index" in capsys.readouterr().err
