"""filtertopo.study.compare and `filtertopo compare`: distances between the diagrams of two networks."""

import warnings

import numpy as np
import pandas as pd
import pytest

from filtertopo.cli import main
from filtertopo.config import AnalysisConfig
from filtertopo.errors import InputError
from filtertopo.pipeline import analyze
from filtertopo.study.compare import COMPARE_COLUMNS, compare, diagram_distances
from filtertopo.weights import save_kernels

CFG = AnalysisConfig(n_landmarks=80, circular=False)


def _circle(seed, n=400):
    from conftest import primary_circle_filters

    P, _ = primary_circle_filters(n, seed=seed, noise=0.05)
    return {"conv1": P.reshape(n, 1, 3, 3).astype(np.float32)}


def _random(seed, n=400):
    return {"conv1": np.random.default_rng(seed).normal(size=(n, 1, 3, 3)).astype(np.float32)}


def test_diagram_distances_known_answers():
    bar = np.array([[0.2, 1.0]])
    empty = np.zeros((0, 2))
    bn, w, ia, ib = diagram_distances(bar, empty)
    assert bn == pytest.approx(0.4)  # L-infinity distance to the diagonal: half the persistence
    assert w == pytest.approx(0.8 / np.sqrt(2))  # persim's Wasserstein: Euclidean distance to the diagonal
    assert (ia, ib) == (0, 0)
    bn, w, ia, ib = diagram_distances(np.array([[0.0, np.inf], [0.0, 0.5]]), np.array([[0.0, np.inf], [0.0, 0.7]]))
    assert bn == pytest.approx(0.2) and w == pytest.approx(0.2) and (ia, ib) == (1, 1)  # infinite bars dropped
    assert diagram_distances(empty, empty)[:2] == (0.0, 0.0)
    a, b = np.array([[0.0, 0.3], [0.1, 0.9]]), np.array([[0.05, 0.85]])
    assert diagram_distances(a, b)[0] == diagram_distances(b, a)[0]  # symmetric


def test_missing_persim_is_an_input_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "persim", None)
    with pytest.raises(InputError, match="pip install persim"):
        diagram_distances(np.array([[0.0, 1.0]]), np.zeros((0, 2)))


def test_a_network_is_at_distance_zero_from_itself():
    k = _circle(0)
    df = compare(k, k, config=CFG)
    assert tuple(df.columns) == COMPARE_COLUMNS and len(df) == 1
    row = df.iloc[0]
    assert row.h1_bottleneck == 0 and row.h1_wasserstein == 0 and row.h0_bottleneck == 0
    assert row.same_verdict and row.verdict_a == "primary-circle"
    assert row.n_inf_a == 1 and row.n_inf_b == 1  # the one infinite H0 bar of each side


def test_circle_is_far_from_random_and_random_close_to_random():
    circ = compare(_circle(0), _random(1), config=CFG).iloc[0]
    rand = compare(_random(2), _random(3), config=CFG).iloc[0]
    two = compare(_circle(4), _circle(5), config=CFG).iloc[0]
    assert circ.verdict_a == "primary-circle" and circ.verdict_b != "primary-circle" and not circ.same_verdict
    assert circ.h1_bottleneck > 2 * rand.h1_bottleneck
    assert circ.h1_bottleneck > 2 * two.h1_bottleneck  # two circles agree with each other
    assert circ.h1_bottleneck == pytest.approx(max((circ.h1_1_a - circ.h1_1_b) / 2, circ.h1_1_a / 2), rel=0.3)


def test_inputs_checkpoint_run_folder_analysis_folder_and_result(tmp_path):
    k = {"conv1": _circle(0)["conv1"], "conv2": _random(1, 40).get("conv1").repeat(4, axis=1)}
    ckpt = save_kernels(tmp_path / "a.npz", k)
    run = tmp_path / "run"
    run.mkdir()
    save_kernels(run / "kernels.npz", k)
    res = analyze(str(ckpt), CFG, progress=False)
    res.save(tmp_path / "analysis")
    other = _random(7)
    frames = [compare(src, other, config=CFG) for src in (str(ckpt), str(run), str(tmp_path / "analysis"), res)]
    for df in frames[1:]:
        pd.testing.assert_frame_equal(df, frames[0])
    assert list(frames[0]["layer"]) == ["conv1"] and frames[0].attrs["only_a"] == ["conv2"]
    assert list(compare(str(ckpt), str(ckpt), config=CFG, layers="2")["layer"]) == ["conv2"]


def test_bad_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="share no analysed layer"):
        compare({"a": _random(0)["conv1"]}, {"b": _random(1)["conv1"]}, config=CFG)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither analysis.json"):
        compare(str(tmp_path / "empty"), _random(0), config=CFG)
    with pytest.raises(InputError, match="does not exist"):
        compare(str(tmp_path / "nope.npz"), _random(0), config=CFG)
    with pytest.raises(InputError, match="matches no conv layer"):
        compare(_random(0), _random(1), config=CFG, layers="conv9")


def test_different_settings_warn(tmp_path):
    a = analyze(_random(0), CFG, progress=False)
    b = analyze(_random(1), CFG.replace(p=0.5), progress=False)
    with pytest.warns(UserWarning, match="different settings"):
        compare(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        compare(a, analyze(_random(1), CFG, progress=False))


def test_cli_compare(tmp_path, capsys):
    a = save_kernels(tmp_path / "a.npz", _circle(0))
    b = save_kernels(tmp_path / "b.npz", _random(1))
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CFG.to_toml())
    out = tmp_path / "cmp.csv"
    assert main(["compare", str(a), str(b), "--config", str(cfg), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "h1_bottleneck" in text and "primary-circle" in text and f"wrote {out}" in text
    df = pd.read_csv(out)
    assert tuple(df.columns) == COMPARE_COLUMNS and df.loc[0, "h1_bottleneck"] > 0
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not exist" in err and "Traceback" not in err
