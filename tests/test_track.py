"""Tracking the filter topology over training: pooling by step, known answer, broken runs,
the null-model margin against step, the figures (drawn apart from saving), the tracking
report and the deprecated ``filtertopo.training.track``."""

import importlib
import inspect
import json
import re
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from filtertopo.cli import main  # noqa: E402
from filtertopo.errors import InputError  # noqa: E402
from filtertopo.pipeline import analyze  # noqa: E402
from filtertopo.report.track_figures import (plot_track, save_track_figures,  # noqa: E402
                                             track_panels)
from filtertopo.report.track_html import write_track_report  # noqa: E402
from filtertopo.tracking import track  # noqa: E402
from filtertopo.training import SnapshotWriter, TrainConfig, train  # noqa: E402

FAST = dict(layers="conv1", k=20, n_landmarks=80, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny trained runs (seed_000, seed_001) with snapshots at steps 0 and 2."""
    root = tmp_path_factory.mktemp("runs")
    for s in (0, 1):
        train(TrainConfig(dataset="digits", n_train=64, epochs=1, snapshot_every=2,
                          eval_samples=32, threads=1, seed=s), root / f"seed_{s:03d}")
    return root


@pytest.fixture(scope="module")
def tracked(runs):
    """Those runs tracked with one null draw per step."""
    return track(sorted(runs.glob("seed_*")), null_draws=1, **FAST)


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


def test_known_answer_circle_appears(tmp_path, circle_filters, monkeypatch):
    from matplotlib.figure import Figure

    runs = [fake_run(tmp_path / f"r{i}", i, circle_filters) for i in range(3)]

    def no_drawing(*args, **kwargs):
        raise AssertionError("saving a tracking result drew a figure")

    # saving (track(out=...)) never draws, even with Mapper graphs to draw
    monkeypatch.setattr(Figure, "savefig", no_drawing)
    # p=1: uniform samples on the circle have no dense part, and a core of the densest
    # 30% would be a few arcs (the core then rightly says "clusters").
    res = track(runs, layers="conv1", k=30, p=1.0, n_landmarks=150, progress=False,
                mapper_steps=[100], out=tmp_path / "out")
    with pytest.warns(DeprecationWarning, match="no longer draws figures"):
        res.save(tmp_path / "again", figures=True)
    monkeypatch.undo()
    assert not list((tmp_path / "out").glob("*.png"))
    assert not list((tmp_path / "again").glob("*.png"))
    assert (tmp_path / "out" / "track.csv").is_file()
    assert [p.name for p in save_track_figures(res, tmp_path / "out")] == [
        "track_h1.png", "mapper_conv1_step_000100.png"]
    assert (tmp_path / "out" / "mapper_conv1_step_000100.png").is_file()
    with pytest.raises(InputError, match="already holds track_h1.png"):
        save_track_figures(res, tmp_path / "out")
    assert len(save_track_figures(res, tmp_path / "out", force=True)) == 2
    t = res.table.set_index("step")
    assert list(t.index) == [0, 100] and (t["n_runs"] == 3).all()
    assert t.loc[0, "n_filters"] == 450  # pooled over the three runs
    assert t.loc[0, "verdict"] not in ("circle", "primary-circle")
    assert t.loc[100, "verdict"] == "primary-circle"
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
    for f in ("track.csv", "track.json"):
        assert (tmp_path / "out" / f).is_file()
    assert not (tmp_path / "out" / "track_h1.png").exists()  # figures are drawn apart
    save_track_figures(res, tmp_path / "out")
    assert (tmp_path / "out" / "track_h1.png").is_file()
    assert (tmp_path / "out" / "steps" / "step_000100" / "analysis.json").is_file()
    with pytest.raises(InputError, match="already holds tracking results"):
        track([a], layers="conv1", k=30, out=tmp_path / "out")


def test_no_snapshots_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="snapshot-every"):
        track([tmp_path], progress=False)
    with pytest.raises(InputError, match="does not exist"):
        track([tmp_path / "missing"], progress=False)




def test_cli_track_on_trained_runs(runs, tmp_path, capsys):
    rc = main(["track", str(runs), "--layers", "conv1", "--k", "20",
               "--n-landmarks", "80", "--out", str(tmp_path / "t"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "wrote" in out
    table = json.loads((tmp_path / "t" / "track.json").read_text())["rows"]
    assert [r["step"] for r in table] == [0, 2] and all(r["n_runs"] == 2 for r in table)
    assert (tmp_path / "t" / "track_h1.png").is_file()  # the command draws what save does not
    assert not (tmp_path / "t" / "report.html").exists()
    assert main(["track", str(runs), "--out", str(tmp_path / "t")]) == 2


def test_track_defaults_match_analyze(tracked):
    # one config: tracking differs from analyze only by clamp_k (a pooled early step may have
    # fewer filters than an integer k), and records the config it used, with its key
    from filtertopo.config import AnalysisConfig
    from filtertopo.tracking import TRACK_DEFAULTS

    assert TRACK_DEFAULTS == {"clamp_k": True}
    used = AnalysisConfig.from_dict({k: v for k, v in tracked.config.items()
                                     if k in AnalysisConfig.__dataclass_fields__})
    settings = {k: v for k, v in FAST.items() if k in AnalysisConfig.__dataclass_fields__}
    assert used == AnalysisConfig(clamp_k=True, null_draws=used.null_draws, **settings)
    assert tracked.config["config_key"] == used.key()


def test_null_draws_add_the_margin_against_step(tracked, runs):
    t = tracked.table
    assert list(t["step"]) == [0, 2]
    for col in ("null_h1_mean", "null_h1_max", "h1_margin_z", "h1_ratio_null_max",
                "null_frac_circle", "frac_primary"):
        assert col in t, col
    assert t["h1_ratio_null_max"].notna().all()
    assert np.allclose(t["h1_ratio_null_max"], t["h1_1"] / t["null_h1_max"])
    assert tracked.config["null_draws"] == 1
    assert track_panels(t) == ("h1", "fractions", "margin", "verdict")
    fig = plot_track(t)
    assert len(fig.axes) >= 4  # 4 panels (+ a twin axis when h1_margin_z is finite)
    labels = {ln.get_label() for ax in fig.axes for ln in ax.get_lines()}
    assert {"h1_ratio_null_max", "frac_primary (circle)", "null longest bar, max"} <= labels
    # without the null model there is no margin panel and no null column
    plain = track(sorted(runs.glob("seed_*")), **FAST).table
    assert "h1_ratio_null_max" not in plain or plain["h1_ratio_null_max"].isna().all()
    assert track_panels(plain) == ("h1", "fractions", "verdict")
    with pytest.raises(InputError, match=r"null_draws \(--null-draws\) must be in \[0, 1000\]; got -1"):
        track(sorted(runs.glob("seed_*")), null_draws=-1, **FAST)


def test_report_is_self_contained_with_a_row_per_step(tracked, tmp_path):
    path = write_track_report(tracked, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text
    rows = re.findall(r'<tr class="(?:detail|row)" data-step="(\d+)" data-layer="conv1">', text)
    assert rows == ["0", "2"]  # one row per step (one layer)
    assert re.search(r'<img class="fig curves" alt="tracked quantities against step" '
                     r'src="data:image/png;base64,', text)
    assert "h1_ratio_null_max" in text  # margin column in the table and curve caption
    # first and last step analysed layer by layer, as in the analysis report
    for step in (0, 2):
        assert f'<section class="step" id="step-{step}">' in text
        assert f"<h2>step {step} &middot; conv1" in text
    assert len(re.findall(r'<svg class="mapper" id="mapper-(\d+)"', text)) == 2
    assert text.count('class="gallery"') == 2
    data = json.loads(re.search(r'<script id="report-data" type="application/json">(.*?)'
                                r"</script>", text, re.S).group(1))
    assert len(data["layers"]) == 2 and all(d["sizes"] for d in data["layers"])
    with pytest.raises(InputError, match="exists; pass --force"):
        write_track_report(tracked, path)
    # detail_steps picks the sections; an untracked step names the tracked ones
    write_track_report(tracked, path, force=True, detail_steps=[2])
    text = path.read_text(encoding="utf-8")
    assert 'id="step-2"' in text and 'id="step-0"' not in text
    with pytest.raises(InputError, match=r"detail_steps must be tracked steps \[0, 2\]"):
        write_track_report(tracked, tmp_path / "other.html", detail_steps=[5])


def test_cli_track_report_and_exit_codes(runs, tmp_path, capsys):
    out = tmp_path / "t"
    args = ["track", str(runs), "--layers", "conv1", "--k", "20", "--n-landmarks", "80",
            "--out", str(out), "--no-progress", "--null-draws", "1", "--report"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "h1_ratio_null_max" in printed and "report.html" in printed
    report = out / "report.html"
    assert report.is_file()
    assert "Layer x step" in report.read_text(encoding="utf-8")
    report.write_text("keep me")
    assert main(args) == 2  # refuses before any work
    assert "already holds report.html" in capsys.readouterr().err
    assert report.read_text() == "keep me"
    assert main(args + ["--force"]) == 0
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert main(args[:-3] + ["--null-draws", "-1", "--out", str(tmp_path / "u")]) == 2


def test_training_track_is_a_deprecated_shim(monkeypatch):
    import filtertopo.tracking
    import filtertopo.training

    assert filtertopo.training.TrackResult is filtertopo.tracking.TrackResult
    # re-import the shim whatever imported it before; both bindings are restored afterwards
    monkeypatch.delitem(sys.modules, "filtertopo.training.track", raising=False)
    monkeypatch.setattr(filtertopo.training, "track", filtertopo.tracking.track)
    with pytest.warns(DeprecationWarning, match="import track and TrackResult from "
                                                "filtertopo.tracking"):
        shim = importlib.import_module("filtertopo.training.track")
    assert shim.track is filtertopo.tracking.track
    assert shim.TrackResult is filtertopo.tracking.TrackResult
    assert shim.check_track_out is filtertopo.tracking.check_track_out
    # importing the submodule rebinds filtertopo.training.track to it: it still tracks
    assert filtertopo.training.track is shim and callable(shim)
    assert inspect.signature(shim) == inspect.signature(filtertopo.tracking.track)
    with pytest.raises(InputError, match="run_dirs is empty"):
        filtertopo.training.track([])
    # the figures moved to report, which training never imports: say where
    with pytest.raises(ImportError, match="moved to filtertopo.report.track_figures"):
        from filtertopo.training.track import plot_track  # noqa: F401
    # the package itself binds the function and does not warn (it imports
    # filtertopo.tracking, not the shim); in a fresh process, whatever this one imported
    import subprocess

    subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c",
                    "import filtertopo.training as t, filtertopo.tracking as T; "
                    "assert t.track is T.track, t.track"], check=True)
