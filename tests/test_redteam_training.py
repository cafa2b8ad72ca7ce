"""Regression tests for the training / tracking classes of the red-team report
(/work/shared/reliability/REDTEAM-2.md): one test per class id, named after it.

Runs are tiny (sklearn digits, 64 images, 4 batches); hangs (FIFOs) and signals are
tried in subprocesses with timeouts.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from filtertopo.cli import main  # noqa: E402
from filtertopo.errors import InputError  # noqa: E402
from filtertopo.training import TrainConfig, read_index, register_model, track, train  # noqa: E402
from filtertopo.training.loop import SEED_MAX, TrainingDiverged  # noqa: E402
from filtertopo.training.models import MODELS  # noqa: E402

TINY = dict(dataset="digits", n_train=64, batch_size=16, epochs=1, eval_samples=32, threads=1)
TINY_ARGS = ["--dataset", "digits", "--n-train", "64", "--batch-size", "16", "--epochs", "1",
             "--eval-samples", "32", "--threads", "1", "--no-progress"]
FAST = dict(layers="conv1", k=20, n_landmarks=80, progress=False)
TRACK_ARGS = ["--layers", "conv1", "--k", "20", "--n-landmarks", "80", "--no-progress"]


@pytest.fixture(scope="module")
def run0(tmp_path_factory):
    """One tiny run with snapshots at steps 0, 2, 4."""
    return train(dict(TINY, snapshot_every=2), tmp_path_factory.mktemp("runs") / "r0",
                 progress=False)


def copy_run(run0, tmp_path, name="r"):
    dst = tmp_path / name
    shutil.copytree(run0, dst)
    return dst


def cli(capsys, *args):
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.err


def assert_one_error_line(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def subprocess_cli(args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "filtertopo", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kw)


# --------------------------------------------------------------------------- N01


@pytest.mark.parametrize("flag, value, key", [
    ("--lr", "nan", "lr"), ("--lr", "inf", "lr"), ("--lr", "-inf", "lr"),
    ("--momentum", "nan", "momentum"), ("--weight-decay", "inf", "weight_decay")])
def test_n01_nonfinite_hyperparameters_refused(tmp_path, capsys, flag, value, key):
    out = tmp_path / "run"
    code, err = cli(capsys, "train", "--out", out, *TINY_ARGS, f"{flag}={value}")
    assert_one_error_line(code, err, f"'{key}'", "finite", flag, value)
    assert not out.exists()  # refused before anything was written
    with pytest.raises(InputError, match=f"'{key}' must be"):
        TrainConfig(**{key: float(value)})


def test_n01_nan_in_config_file_refused(tmp_path, capsys):
    cfg = tmp_path / "nanlr.json"
    cfg.write_text('{"lr": NaN, "dataset": "digits"}')
    code, err = cli(capsys, "train", "--out", tmp_path / "run", "--config", cfg)
    assert_one_error_line(code, err, "'lr'", "nan")
    assert not (tmp_path / "run").exists()


def test_n01_divergence_recorded_as_failed(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="diverged at step"):
        train(dict(TINY, lr=1e30, snapshot_every=2), run, progress=False)
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "failed"
    assert status["error"]["type"] == "TrainingDiverged"
    assert "lower --lr" in status["error"]["message"].lower()
    assert not (run / "kernels.npz").exists()  # no all-NaN result
    snaps, _ = read_index(run)
    for s in snaps:  # whatever was snapshotted is finite
        assert all(np.isfinite(v).all() for v in np.load(s.path).values()
                   if v.dtype.kind == "f")


# --------------------------------------------------------------------------- N05


@pytest.mark.parametrize("text, needle", [("[1, 2]", "got a JSON list"),
                                          ('{"config": 5}', "the key 'config' must hold")])
def test_n05_config_not_an_object_refused(tmp_path, capsys, text, needle):
    cfg = tmp_path / "c.json"
    cfg.write_text(text)
    code, err = cli(capsys, "train", "--out", tmp_path / "run", "--config", cfg, "--epochs", "1")
    assert_one_error_line(code, err, "--config", needle)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- N22


@pytest.mark.parametrize("kwarg, needle", [
    ("input_size=2", "'input_size'"), ("input_size=-5", "'input_size'"),
    ("num_classes=0", "'num_classes'"), ('in_channels="abc"', "'in_channels'"),
    ("in_channels=0", "'in_channels'"), ("num_classes=5", "num_classes=10"),
    ("in_channels=2", "in_channels 2"), ("nope=1", "nope")])
def test_n22_bad_model_kwargs_refused(tmp_path, capsys, kwarg, needle):
    out = tmp_path / "run"
    code, err = cli(capsys, "train", "--out", out, *TINY_ARGS, "--model-kwarg", kwarg)
    assert_one_error_line(code, err, needle)
    assert not (out / "run.json").exists()  # never left "running"


def test_n22_vgg_width_refused(tmp_path, capsys):
    code, err = cli(capsys, "train", "--out", tmp_path / "run", *TINY_ARGS, "--model", "vgg11",
                    "--model-kwarg", "width=-1")
    assert_one_error_line(code, err, "'width'", "-1")


# --------------------------------------------------------------------------- N10


def test_n10_non_image_png_named(tmp_path, capsys):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    bad = tmp_path / "imgs" / "a" / "bad.png"
    bad.write_text("this is not an image")
    code, err = cli(capsys, "train", "--out", tmp_path / "run", "--dataset",
                    f"folder:{tmp_path / 'imgs'}", "--epochs", "1", "--no-progress")
    assert_one_error_line(code, err, str(bad), "cannot be decoded")
    assert not (tmp_path / "run").exists()


def test_n10_fifo_in_image_folder_refused_without_hang(tmp_path):
    from PIL import Image

    (tmp_path / "imgs" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "a" / "0.png")
    os.mkfifo(tmp_path / "imgs" / "a" / "pipe.png")
    r = subprocess_cli(["train", "--out", tmp_path / "run", "--dataset", f"folder:{tmp_path / 'imgs'}",
                        "--epochs", "1", "--no-progress"], timeout=120)
    assert r.returncode == 2 and "pipe.png" in r.stderr and "not a regular file" in r.stderr


# --------------------------------------------------------------------------- N11 / P12


@pytest.mark.parametrize("flag, value", [("--seed", 2**70), ("--seed", -1), ("--data-seed", -1),
                                         ("--data-seed", 2**32)])
def test_n11_train_seed_out_of_range_refused(tmp_path, capsys, flag, value):
    code, err = cli(capsys, "train", "--out", tmp_path / "run", *TINY_ARGS, flag, value)
    assert_one_error_line(code, err, flag, str(value), "4294967295")
    assert not (tmp_path / "run").exists()


def test_n11_seed_range_edges(tmp_path, capsys):
    assert TrainConfig(seed=SEED_MAX, data_seed=SEED_MAX).seed == 2**32 - 1
    code, err = cli(capsys, "train", "--out", tmp_path / "run", *TINY_ARGS, "--seed", SEED_MAX,
                    "--seeds", 2)
    assert_one_error_line(code, err, "--seeds", "--seed")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [-1, 2**70])
def test_p12_track_seed_out_of_range_refused(run0, tmp_path, capsys, value):
    code, err = cli(capsys, "track", run0, "--out", tmp_path / "t", *TRACK_ARGS, "--seed", value)
    assert_one_error_line(code, err, "--seed", str(value))
    assert not (tmp_path / "t").exists()


# --------------------------------------------------------------------------- N20


def test_n20_force_with_subfolder_in_snapshots(run0, tmp_path, capsys):
    run = copy_run(run0, tmp_path)
    (run / "snapshots" / "sub").mkdir()
    (run / "snapshots" / "sub" / "mine.txt").write_text("keep")
    (run / "notes.txt").write_text("keep")
    code, err = cli(capsys, "train", "--out", run, *TINY_ARGS, "--snapshot-every", "4", "--force")
    assert code == 0, err
    assert "snapshots/sub" in err and "left in place" in err  # one warning line, no traceback
    assert (run / "snapshots" / "sub" / "mine.txt").read_text() == "keep"
    assert (run / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in (run / "snapshots").glob("step_*.npz")) == \
        ["step_000000.npz", "step_000004.npz"]  # the old step_000002 was replaced
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_n20_force_refuses_folder_where_a_file_is_written(run0, tmp_path, capsys):
    run = copy_run(run0, tmp_path)
    (run / "snapshots" / "step_000002.npz").unlink()
    (run / "snapshots" / "step_000002.npz").mkdir()
    (run / "snapshots" / "step_000002.npz" / "mine.txt").write_text("keep")
    before = sorted(p.name for p in run.rglob("*"))
    code, err = cli(capsys, "train", "--out", run, *TINY_ARGS, "--force")
    assert_one_error_line(code, err, "step_000002.npz", "is a folder")
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing removed


# --------------------------------------------------------------------------- K04 / K05 / K10 / K11


def test_k04_index_not_utf8_refused(run0, tmp_path, capsys):
    run = copy_run(run0, tmp_path)
    with open(run / "snapshots" / "index.csv", "ab") as fh:
        fh.write(b"\xff\xfe,\xff\n")
    code, err = cli(capsys, "track", run, "--out", tmp_path / "t", *TRACK_ARGS)
    assert_one_error_line(code, err, "index.csv", "not UTF-8")


def test_k05_run_json_list_is_a_note(run0, tmp_path):
    run = copy_run(run0, tmp_path)
    (run / "run.json").write_text("[1, 2]")
    res = track(run, steps=[0], **FAST)
    assert any("run.json is unreadable (a JSON list" in m for m in res.missing)


def test_k05_run_json_folder_refused(run0, tmp_path, capsys):
    run = copy_run(run0, tmp_path)
    (run / "run.json").unlink()
    (run / "run.json").mkdir()
    code, err = cli(capsys, "track", run, "--out", tmp_path / "t", *TRACK_ARGS)
    assert_one_error_line(code, err, "run.json", "is a folder")


def test_k10_index_is_folder_refused(run0, tmp_path, capsys):
    run = copy_run(run0, tmp_path)
    (run / "snapshots" / "index.csv").unlink()
    (run / "snapshots" / "index.csv").mkdir()
    code, err = cli(capsys, "track", run, "--out", tmp_path / "t", *TRACK_ARGS)
    assert_one_error_line(code, err, "index.csv", "is a folder")


def test_k11_fifo_index_and_config_refused_without_hang(run0, tmp_path):
    run = copy_run(run0, tmp_path)
    (run / "snapshots" / "index.csv").unlink()
    os.mkfifo(run / "snapshots" / "index.csv")
    r = subprocess_cli(["track", run, "--out", tmp_path / "t", *TRACK_ARGS], timeout=120)
    assert r.returncode == 2 and "FIFO" in r.stderr and "Traceback" not in r.stderr
    os.mkfifo(tmp_path / "fifo.json")
    r = subprocess_cli(["train", "--out", tmp_path / "r2", "--config", tmp_path / "fifo.json"],
                       timeout=120)
    assert r.returncode == 2 and "FIFO" in r.stderr and "--config" in r.stderr
    (run / "snapshots" / "index.csv").unlink()
    shutil.copy(run0 / "snapshots" / "index.csv", run / "snapshots" / "index.csv")
    (run / "run.json").unlink()
    os.mkfifo(run / "run.json")
    r = subprocess_cli(["track", run, "--out", tmp_path / "t", *TRACK_ARGS], timeout=120)
    assert r.returncode == 2 and "FIFO" in r.stderr and "run.json" in r.stderr


# --------------------------------------------------------------------------- K08


def test_k08_duplicate_index_row_pooled_once(run0, tmp_path):
    run = copy_run(run0, tmp_path)
    with open(run / "snapshots" / "index.csv", "a") as fh:
        fh.write("2,0.5,step_000002.npz,0.12,0.16,2.3\n")   # the same file again
        fh.write("4,1,./step_000004.npz,0.1,0.1,2.3\n")      # the same file, spelled differently
    snaps, problems = read_index(run)
    assert [s.step for s in snaps] == [0, 2, 4]
    assert sum("listed again" in p for p in problems) == 2
    res = track(run, steps=[2], **FAST)
    row = res.table.iloc[0]
    assert row["n_runs"] == 1 and row["n_filters"] == 64
    assert any("listed again" in m for m in res.missing)


def test_k08_same_run_given_twice_tracked_once(run0, tmp_path):
    res = track([run0, run0], steps=[0], **FAST)
    assert res.table.iloc[0]["n_runs"] == 1
    assert any("given twice" in m for m in res.missing)


# --------------------------------------------------------------------------- K09


def test_k09_index_path_outside_run_refused(run0, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET contents")
    np.savez(tmp_path / "foreign.npz", conv1=np.random.default_rng(0).normal(size=(64, 4, 5, 5)))
    for i, entry in enumerate(["../../foreign.npz", str(secret), str(tmp_path / "foreign.npz")]):
        run = copy_run(run0, tmp_path, f"r{i}")
        with open(run / "snapshots" / "index.csv", "a") as fh:
            fh.write(f"9,9,{entry},0,0,0\n")
        code, err = cli(capsys, "track", run, "--out", tmp_path / f"t{i}", *TRACK_ARGS)
        assert_one_error_line(code, err, "outside the run folder", "not read")
        assert "TOPSECRE" not in err
        assert not (tmp_path / f"t{i}").exists()
    run = copy_run(run0, tmp_path, "link")
    (run / "snapshots" / "step_000009.npz").symlink_to(secret)
    with pytest.raises(InputError, match="outside the run folder") as exc:
        read_index(run)
    assert "TOPSECRE" not in str(exc.value)


# --------------------------------------------------------------------------- K18


def test_k18_results_under_steps_not_overwritten_without_force(run0, tmp_path, capsys, monkeypatch):
    out = tmp_path / "t"
    (out / "steps" / "step_000000").mkdir(parents=True)
    mine = out / "steps" / "step_000000" / "analysis.json"
    mine.write_text('{"mine": true}')
    import filtertopo.pipeline as pipeline

    def no_work(*a, **k):
        raise AssertionError("analysis started before the output folder was checked")

    with monkeypatch.context() as m:
        m.setattr(pipeline, "analyze", no_work)
        code, err = cli(capsys, "track", run0, "--out", out, *TRACK_ARGS)
    assert_one_error_line(code, err, "steps/", "--force")
    assert mine.read_text() == '{"mine": true}'
    assert not (out / "track.csv").exists()
    code, err = cli(capsys, "track", run0, "--out", out, *TRACK_ARGS, "--steps", "0", "--force")
    assert code == 0, err
    assert "mine" not in json.loads(mine.read_text())  # replaced by the new analysis


def test_k18_save_checks_steps_tree(run0, tmp_path):
    res = track(run0, steps=[0], **FAST)
    out = tmp_path / "t"
    (out / "steps" / "step_000000").mkdir(parents=True)
    (out / "steps" / "step_000000" / "layers.csv").write_text("mine")
    with pytest.raises(InputError, match="steps/"):
        res.save(out)
    assert (out / "steps" / "step_000000" / "layers.csv").read_text() == "mine"
    assert not (out / "track.csv").exists()
    res.save(out, force=True, figures=False)
    assert (out / "steps" / "step_000000" / "analysis.json").is_file()


# --------------------------------------------------------------------------- issue 9 step 7


class _RaisesMidway(torch.nn.Module):
    def __init__(self, in_channels=1, input_size=28, num_classes=10):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * input_size * input_size, num_classes)
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("boom in the middle of training")
        return self.fc(torch.relu(self.conv1(x)).flatten(1))


def test_issue9_training_error_recorded_as_failed(tmp_path):
    register_model("_raises_midway", _RaisesMidway, overwrite=True)
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            train(dict(TINY, model="_raises_midway", snapshot_every=1), tmp_path / "run",
                  progress=False)
    finally:
        MODELS.pop("_raises_midway", None)
    status = json.loads((tmp_path / "run" / "run.json").read_text())
    assert status["status"] == "failed" and status["step"] == 2
    assert status["error"] == {"type": "RuntimeError", "message": "boom in the middle of training"}
    assert signal.getsignal(signal.SIGTERM) == before  # the training handler was removed


def test_issue9_sigterm_recorded_as_interrupted(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "filtertopo", "train", "--out", str(run),
                             "--dataset", "digits", "--n-train", "64", "--batch-size", "8",
                             "--epochs", "100000", "--eval-samples", "16", "--threads", "1",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if json.loads((run / "run.json").read_text())["status"] == "running" \
                        and (run / "metrics.csv").exists():
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("training did not start within 120 s")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM", status
    assert proc.returncode == 130 and "Traceback" not in err, err


def test_issue9_keyboard_interrupt_recorded(tmp_path, monkeypatch):
    import filtertopo.training.loop as loop

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, tmp_path / "run", progress=False)
    status = json.loads((tmp_path / "run" / "run.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGINT"


# --------------------------------------------------------------------------- validation up front


def test_validate_before_work_track_layers(run0, tmp_path, capsys, monkeypatch):
    import filtertopo.pipeline as pipeline

    def no_work(*a, **k):
        raise AssertionError("analysis started before --layers was checked")

    monkeypatch.setattr(pipeline, "analyze", no_work)
    code, err = cli(capsys, "track", run0, "--out", tmp_path / "t", "--layers", "conv9",
                    "--no-progress")
    assert_one_error_line(code, err, "--layers", "conv9")
    code, err = cli(capsys, "track", run0, "--out", tmp_path / "t", *TRACK_ARGS, "--p", "2")
    assert_one_error_line(code, err, "p")
    assert not (tmp_path / "t").exists()


def test_validate_before_work_train_seeds_folders(tmp_path, capsys):
    (tmp_path / "root" / "seed_001").mkdir(parents=True)
    (tmp_path / "root" / "seed_001" / "mine.txt").write_text("keep")
    code, err = cli(capsys, "train", "--out", tmp_path / "root", *TINY_ARGS, "--seeds", "2")
    assert_one_error_line(code, err, "seed_001", "not empty")
    assert not (tmp_path / "root" / "seed_000").exists()  # nothing trained first
