"""Tracking the filter topology over training: pooling by step, known answer, broken runs."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from filtertopo.cli import main  # noqa: E402
from filtertopo.errors import InputError  # noqa: E402
from filtertopo.training import SnapshotWriter, track, train  # noqa: E402


def fake_run(root, seed, circle_filters, steps=(0, 100)):
    """A run whose conv1 is Gaussian at step 0 and on the primary circle afterwards."""
    rng = np.random.default_rng(seed)
    w = SnapshotWriter(root)
    for step in steps:
        if step == 0:
            conv1 = rng.normal(size=(150, 1, 3, 3))
        else:
            conv1 = circle_filters(150, seed=seed + step, noise=0.05)[0].reshape(150, 1, 3, 3)
        w.write({"conv1": conv1}, step=step, epoch=step / 100, train_acc=step / 200,
                test_acc=step / 250, train_loss=1.0)
    (root / "run.json").write_text(json.dumps({"status": "complete"}))
    return root


def test_known_answer_circle_appears(tmp_path, circle_filters):
    runs = [fake_run(tmp_path / f"r{i}", i, circle_filters) for i in range(3)]
    # p=1: uniform samples on the circle have no dense part, and a core of the densest
    # 30% would be a few arcs (the core then rightly says "clusters").
    res = track(runs, layers="conv1", k=30, p=1.0, n_landmarks=150, progress=False,
                mapper_steps=[100], out=tmp_path / "out")
    assert (tmp_path / "out" / "mapper_conv1_step_000100.png").is_file()
    t = res.table.set_index("step")
    assert list(t.index) == [0, 100] and (t["n_runs"] == 3).all()
    assert t.loc[0, "n_filters"] == 450  # pooled over the three runs
    assert t.loc[0, "verdict"] != "circle"
    assert t.loc[100, "verdict"] == "circle"
    assert t.loc[100, "h1_1"] > 2 * t.loc[0, "h1_1"]
    assert t.loc[100, "test_acc"] == pytest.approx(0.4)
    assert t.loc[100, "mapper_b1"] == 1
    assert res.missing == ()


def test_incomplete_runs_tracked_with_notes(tmp_path, circle_filters):
    a = fake_run(tmp_path / "a", 0, circle_filters)
    b = fake_run(tmp_path / "b", 1, circle_filters)
    (b / "snapshots" / "step_000100.npz").unlink()        # lost file
    (b / "run.json").write_text(json.dumps({"status": "running"}))
    c = tmp_path / "c"
    c.mkdir()                                              # interrupted before any snapshot
    res = track([a, b, c], layers="conv1", k=30, n_landmarks=100, progress=False,
                out=tmp_path / "out")
    assert list(res.table["n_runs"]) == [2, 1]
    notes = "\n".join(res.missing)
    assert "step_000100.npz: listed in index.csv but missing" in notes
    assert "'running'" in notes and "no snapshots" in notes
    assert "step 100: pooled 1 of 3 runs" in notes
    for f in ("track.csv", "track.json", "track_h1.png"):
        assert (tmp_path / "out" / f).is_file()
    assert (tmp_path / "out" / "steps" / "step_000100" / "analysis.json").is_file()
    with pytest.raises(InputError, match="already holds tracking results"):
        track([a], layers="conv1", k=30, out=tmp_path / "out")


def test_no_snapshots_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="snapshot-every"):
        track([tmp_path], progress=False)
    with pytest.raises(InputError, match="does not exist"):
        track([tmp_path / "missing"], progress=False)


def test_cli_track_on_trained_runs(tmp_path, capsys):
    base = dict(dataset="digits", n_train=32, batch_size=16, epochs=1, eval_samples=16,
                snapshot_every=2, threads=1)
    for s in (0, 1):
        train(dict(base, seed=s), tmp_path / "runs" / f"seed_{s:03d}")
    rc = main(["track", str(tmp_path / "runs"), "--layers", "conv1", "--k", "20",
               "--n-landmarks", "80", "--out", str(tmp_path / "t"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "wrote" in out
    table = json.loads((tmp_path / "t" / "track.json").read_text())["rows"]
    assert [r["step"] for r in table] == [0, 2] and all(r["n_runs"] == 2 for r in table)
    assert main(["track", str(tmp_path / "runs"), "--out", str(tmp_path / "t")]) == 2
