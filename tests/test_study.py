"""`filtertopo study DIR --out STUDY` end to end on a tiny folder of 8 trained, analysed runs
(lr x weight decay x 2 seeds, 300 MNIST digits, one epoch), and on the same runs laid out as a
sweep folder."""

import json
import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from filtertopo.cli import main  # noqa: E402
from filtertopo.study.runs import find_runs  # noqa: E402

LRS, WDS, SEEDS = (0.02, 0.05), (0.0, 0.001), (0, 1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from filtertopo.pipeline import analyze
    from filtertopo.training import TrainConfig, train

    root = tmp_path_factory.mktemp("runs")
    for lr in LRS:
        for wd in WDS:
            for seed in SEEDS:
                cfg = TrainConfig(dataset="mnist_subset", n_train=300, epochs=1, lr=lr, weight_decay=wd, seed=seed,
                                  eval_samples=100, snapshot_every=100, threads=1)
                run = train(cfg, root / f"lr{lr}" / f"wd{wd}_s{seed}", progress=False)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    res = analyze(str(run / "kernels.npz"), layers="conv1", n_landmarks=60, circular=False,
                                  progress=False)  # scales=True would triple the controls' cost
                res.save(run / "analysis")
    return root


@pytest.fixture(scope="module")
def study_out(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "out"
    rc = main(["study", str(runs), "--out", str(out), "--bootstrap", "200", "--shifted-n", "100"])
    assert rc == 0
    return out


def test_runs_are_found_with_their_grid(runs):
    found = find_runs(runs)
    assert found.source == "folders" and len(found.runs) == 8
    assert found.axes == {"lr": LRS, "weight_decay": WDS, "seed": SEEDS}
    assert all(r.analysis.name == "analysis" for r in found.runs)


def test_study_writes_every_table_and_a_self_contained_report(study_out):
    names = {p.name for p in study_out.iterdir()}
    assert {"runs.csv", "features.csv", "tau.csv", "psi.csv", "cmi.csv", "partial.csv", "predict.csv",
            "controls.csv", "study.json", "report.html", "manifest.json"} <= names
    summary = json.loads((study_out / "study.json").read_text())
    assert summary["n_runs"] == 8 and summary["axes"] == {"lr": list(LRS), "weight_decay": list(WDS),
                                                          "seed": list(SEEDS)}
    assert summary["targets"][:3] == ["test_acc", "train_acc", "gen_gap"]
    assert {"acc_digits28", "acc_rotated", "acc_inverted", "acc_noisy", "acc_textured", "acc_shifted"} <= set(
        summary["targets"])
    assert {"topology", "baseline", "hyperparameter", "control_init", "control_shuffled"} <= set(summary["families"])
    if "weightwatcher" not in summary["families"]:  # the optional extra: absent, and said so
        assert any("weightwatcher is not installed" in n for n in summary["notes"])
    head = summary["headline"][0]
    assert head["target"] == "test_acc" and head["primary_feature"] == "topo.conv1.h1_1"
    assert head["ci_primary"][0] <= head["tau_primary"] <= head["ci_primary"][1]
    html = (study_out / "report.html").read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # no network request
    assert html.count("data:image/png;base64,") >= 4


def test_study_tables_hold_the_statistics(study_out):
    frame = pd.read_csv(study_out / "runs.csv")
    assert len(frame) == 8 and frame["id"].is_unique
    for col in ("test_acc", "gen_gap", "topo.conv1.h1_1", "topo.conv1.gap_ratio", "topo.conv1.frac_primary",
                "topo.conv1.h1_bottleneck_init", "init.conv1.h1_1", "shuf.conv1.h1_1",
                "base.conv1.fro", "base.fc1.spec", "base.model.dist_init", "hp.lr", "hp.weight_decay"):
        assert col in frame, col
    np.testing.assert_allclose(frame["gen_gap"], frame["train_acc"] - frame["test_acc"])
    assert frame["acc_rotated"].between(0, 1).all()
    # the shuffle keeps every weight value: the weight statistics of the run are what they are
    assert (frame["base.conv1.dist_init"] > 0).all()
    tau = pd.read_csv(study_out / "tau.csv")
    row = tau[(tau["feature"] == "topo.conv1.h1_1") & (tau["target"] == "test_acc")].iloc[0]
    assert -1 <= row["low"] <= row["tau"] <= row["high"] <= 1 and row["n"] == 8 and row["family"] == "topology"
    hp = tau[(tau["feature"] == "hp.lr") & (tau["target"] == "test_acc")].iloc[0]
    assert hp["tau"] == pytest.approx(_tau(frame["hp.lr"], frame["test_acc"]))
    psi = pd.read_csv(study_out / "psi.csv")
    assert {"psi", "psi:lr", "psi:weight_decay"} <= set(psi.columns)
    # hp.lr is constant within the weight-decay groups: its psi on that axis is undefined
    lr_row = psi[(psi["feature"] == "hp.lr") & (psi["target"] == "test_acc")].iloc[0]
    assert np.isnan(lr_row["psi:weight_decay"]) and lr_row["psi"] == lr_row["psi:lr"]
    cmi = pd.read_csv(study_out / "cmi.csv")
    assert cmi["cmi"].dropna().between(0, 1).all() and set(cmi["argmin"].dropna()) <= {"lr", "weight_decay"}
    pred = pd.read_csv(study_out / "predict.csv")
    assert {"hyperparameters", "baselines", "topology", "hyperparameters+baselines+topology"} <= set(pred["features"])
    assert (pred["n_splits"] == 4).all()  # 4 configurations, each a fold
    part = pd.read_csv(study_out / "partial.csv")
    assert len(part) and part["given"].str.startswith("base.").all()
    ctrl = pd.read_csv(study_out / "controls.csv")
    assert {"tau_final", "tau_init", "tau_shuffled"} <= set(ctrl.columns)


def _tau(x, y):
    from scipy.stats import kendalltau

    return kendalltau(x, y).statistic


def test_study_refuses_an_existing_output_and_an_incomplete_grid(runs, study_out, tmp_path, capsys):
    assert main(["study", str(runs), "--out", str(study_out), "--no-shifted"]) == 2
    assert "--force" in capsys.readouterr().err
    part = tmp_path / "part"
    for p in sorted(runs.glob("*/*")):
        if p.name != "wd0.001_s1" or p.parent.name != "lr0.05":
            shutil.copytree(p, part / p.parent.name / p.name)
    fast = ["--no-controls", "--no-shifted", "--bootstrap", "50"]
    assert main(["study", str(part), "--out", str(tmp_path / "o1"), *fast]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "lr=0.05, weight_decay=0.001, seed=1" in err and "Traceback" not in err
    assert not (tmp_path / "o1" / "study.json").exists()
    assert main(["study", str(part), "--out", str(tmp_path / "o2"), *fast, "--drop-incomplete"]) == 0
    assert json.loads((tmp_path / "o2" / "study.json").read_text())["n_runs"] == 7
    assert main(["study", str(tmp_path / "nothing"), "--out", str(tmp_path / "o3")]) == 2
    assert main(["study", str(runs), "--out", str(tmp_path / "o4"), *fast, "--layers", "conv9"]) == 2
    assert "matches no conv layer" in capsys.readouterr().err


def test_study_reads_a_sweep_folder(runs, tmp_path):
    """The sweep layout (DIR/sweep.json, DIR/runs/<id>/ with sweep_run.json, analysis/final/):
    only runs whose record says done are read, and the axes come from the spec."""
    sweep = tmp_path / "sweep"
    axes = {"lr": list(LRS), "seed": list(SEEDS)}
    (sweep / "runs").mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"format": "filtertopo-sweep", "version": 1, "sweep_key": "k",
                                                  "spec": {"name": "t", "axes": axes}}))
    for i, lr in enumerate(LRS):
        for seed in SEEDS:
            src = runs / f"lr{lr}" / f"wd0.0_s{seed}"
            dst = sweep / "runs" / f"run{i}{seed}"
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("analysis"))
            shutil.copytree(src / "analysis", dst / "analysis" / "final")
            (dst / "sweep_run.json").write_text(json.dumps({"format": "filtertopo-sweep-run", "id": dst.name,
                                                            "status": "done", "varied": {"lr": lr, "seed": seed}}))
    failed = sweep / "runs" / "bad"
    failed.mkdir()
    (failed / "sweep_run.json").write_text(json.dumps({"status": "failed", "id": "bad"}))
    found = find_runs(sweep)
    assert found.source == "sweep" and len(found.runs) == 4 and found.axes == {"lr": LRS, "seed": SEEDS}
    assert any("failed" in why for _, why in found.skipped)
    out = tmp_path / "out"
    assert main(["study", str(sweep), "--out", str(out), "--no-shifted", "--no-controls", "--bootstrap", "50",
                 "--layers", "1"]) == 0
    summary = json.loads((out / "study.json").read_text())
    assert summary["source"] == "sweep" and summary["n_runs"] == 4
    psi = pd.read_csv(out / "psi.csv")
    assert list(c for c in psi.columns if c.startswith("psi:")) == ["psi:lr"]
