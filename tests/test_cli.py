"""The CLI: outputs, pooling, and every bad input named in issue 2."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from filtertopo.cli import main
from filtertopo.weights import save_kernels

from conftest import primary_circle_filters


@pytest.fixture
def ckpt(tmp_path):
    P, _ = primary_circle_filters(600, seed=0)
    rng = np.random.default_rng(0)
    return save_kernels(tmp_path / "a.npz", {
        "conv1": P.reshape(60, 10, 3, 3),
        "conv2": rng.normal(size=(30, 20, 3, 3)),
        "fc": rng.normal(size=(10, 5)),
    })


def run(*argv):
    return main([str(a) for a in argv])


def test_analyze_writes_outputs(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    assert run("analyze", ckpt, "--out", out, "--k", 20) == 0
    df = pd.read_csv(out / "layers.csv")
    assert df["layer"].tolist() == ["conv1", "conv2"]
    assert df.loc[0, "verdict"] == "primary-circle"
    js = json.loads((out / "analysis.json").read_text())
    layer = js["layers"][0]
    for key in ["name", "shape", "n_filters", "n_core", "k", "p", "diagrams"]:
        assert key in layer
    assert layer["shape"] == [60, 10, 3, 3] and layer["n_filters"] == 600 and layer["n_core"] == 180
    assert layer["diagrams"]["0"][-1][1] is None  # infinite H0 bar as null
    assert js["config"]["seed"] == 0
    assert any(s["name"] == "fc" for s in js["skipped"])
    assert "circle" in capsys.readouterr().out


def test_analyze_pools_checkpoints(ckpt, tmp_path):
    b = save_kernels(tmp_path / "b.npz", {"conv1": np.load(ckpt)["conv1"][::-1].copy(),
                                           "conv2": np.ones((30, 20, 3, 3)) * np.arange(9).reshape(3, 3)})
    out = tmp_path / "pooled"
    assert run("analyze", ckpt, b, "--out", out, "--k", 20, "--layers", "conv1") == 0
    js = json.loads((out / "analysis.json").read_text())
    assert [l["n_filters"] for l in js["layers"]] == [1200]


def test_describe(ckpt, capsys):
    assert run("describe", ckpt) == 0
    text = capsys.readouterr().out
    assert "conv1" in text and "skipped: linear layer" in text


def _err(capsys):
    return capsys.readouterr().err


@pytest.mark.parametrize("extra,match", [
    (["--k", "0"], "k (--k) must be"),
    (["--p", "1.5"], "p (--p) must be"),
    (["--coeff", "257"], "from 2 to 127"),
    (["--layers", "nothing*"], "matches no conv layer"),
    (["--coeff", "4"], "prime"),
])
def test_bad_parameters(ckpt, tmp_path, capsys, extra, match):
    out = tmp_path / "o"
    assert run("analyze", ckpt, "--out", out, *extra) == 2
    err = _err(capsys)
    assert match in err and "Traceback" not in err
    assert not (out / "layers.csv").exists()


def test_clamp_k_allows_small_layers(ckpt, tmp_path, capsys):
    assert run("analyze", ckpt, "--out", tmp_path / "o", "--k", "700", "--clamp-k") == 0
    assert "using k=599" in _err(capsys)


@pytest.mark.parametrize("weights,match", [
    ({"conv1": np.full((10, 10, 3, 3), np.nan)}, "NaN or Inf"),
    ({"conv1": np.ones((10, 10, 3, 3))}, "constant"),
    ({"fc": np.ones((10, 10))}, "no conv layer"),
])
def test_bad_weights(tmp_path, capsys, weights, match):
    p = save_kernels(tmp_path / "w.npz", weights)
    assert run("analyze", p, "--out", tmp_path / "o", "--k", "5") == 2
    assert match in _err(capsys)


def test_missing_and_corrupt_files(tmp_path, capsys):
    assert run("analyze", tmp_path / "missing.pt", "--out", tmp_path / "o") == 2
    assert "does not exist" in _err(capsys)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    assert run("analyze", bad, "--out", tmp_path / "o") == 2
    assert "corrupt" in _err(capsys)


def test_never_overwrites_without_force(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "layers.csv").write_text("precious")
    (out / "notes.txt").write_text("mine")
    assert run("analyze", ckpt, "--out", out, "--k", 20) == 2
    assert "--force" in _err(capsys)
    assert (out / "layers.csv").read_text() == "precious"
    assert run("analyze", ckpt, "--out", out, "--k", 20, "--force") == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "layers.csv").read_text() != "precious"


def test_subprocess_exit_code_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "filtertopo", "analyze", str(tmp_path / "x.pt"), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("error:") and "Traceback" not in r.stderr


def test_result_round_trip(ckpt, tmp_path):
    from filtertopo import AnalysisResult, analyze

    res = analyze(str(ckpt), k=20, progress=False)
    res.save(tmp_path / "r")
    back = AnalysisResult.load(tmp_path / "r")
    assert [l.name for l in back] == ["conv1", "conv2"]
    np.testing.assert_allclose(back["conv1"].core, res["conv1"].core)
    np.testing.assert_allclose(back["conv1"].diagrams[1], res["conv1"].diagrams[1])
    pd.testing.assert_frame_equal(back.to_frame(), res.to_frame(), check_dtype=False)


def test_analyze_with_report_and_null(ckpt, tmp_path):
    out = tmp_path / "rep"
    assert run("analyze", ckpt, "--out", out, "--k", 20, "--layers", "conv1", "--null-draws", 1,
               "--report") == 0
    html = (out / "report.html").read_text()
    assert "conv1" in html and "http://" not in html.replace("http://www.w3.org", "")
    df = pd.read_csv(out / "layers.csv")
    assert {"frac_primary", "null_h1_max", "h1_ratio_null_max"} <= set(df.columns)
    assert df.loc[0, "h1_ratio_null_max"] > 2  # a real circle stands far above matched noise


def test_null_init_needs_draws(ckpt, tmp_path, capsys):
    assert run("analyze", ckpt, "--out", tmp_path / "o", "--null-init", ckpt) == 2
    assert "null_draws" in _err(capsys)


def test_parallel_layers_give_the_same_result(ckpt):
    from filtertopo import analyze

    one = analyze(str(ckpt), k=20, n_jobs=1, progress=False).to_frame()
    two = analyze(str(ckpt), k=20, n_jobs=2, progress=False).to_frame()
    pd.testing.assert_frame_equal(one, two)


def test_missing_optional_dependency_is_named(ckpt, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    assert run("train", "--dataset", "digits", "--epochs", "0", "--out", tmp_path / "r") == 2
    assert "filtertopo[torch]" in _err(capsys)
