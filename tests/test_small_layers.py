"""Issue 8: right answers on small and real layers with the defaults (k="auto", too-few, the
primary-circle / circle / arc / clusters split, no traceback from any stage, multi-scale verdict)."""

import json
import warnings

import numpy as np
import pytest

from filtertopo.errors import InputError
from filtertopo.pipeline import MIN_FILTERS, analyze, analyze_points, auto_k, scale_grid
from filtertopo.shapes import _unit, klein_filters, primary_filters, sample_shape


def _run(X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyze_points(X, **kw)


def test_auto_k_reproduces_the_published_settings():
    assert auto_k(6400) == 200          # the paper: k = 200 for 6,400 pooled filters
    assert auto_k(50000) == 300         # Carlsson et al.: k = 300 of 50,000 patches
    ks = [auto_k(n) for n in range(30, 20000, 97)]
    assert all(a <= b for a, b in zip(ks, ks[1:])) and min(ks) >= 5
    assert 15 <= auto_k(338) <= 30      # where seven real first layers pooled show their circle


@pytest.mark.parametrize("n", [60, 120, 200, 400])
def test_small_primary_circle_layer_is_primary_circle(n):
    X = sample_shape("primary", n, noise=0.1, seed=n).points
    r = _run(X)
    assert r.k == auto_k(n) and r.n_core >= 60
    assert r.verdict == "primary-circle", r.extras["verdict"]["reasons"]


@pytest.mark.parametrize("n", [2000, 20000])
def test_large_primary_circle_is_primary_circle(n):
    r = _run(sample_shape("primary", n, noise=0.1, seed=n).points)
    assert r.verdict == "primary-circle", r.extras["verdict"]["reasons"]


@pytest.mark.parametrize("m", [4, 8])
def test_orientation_clusters_are_clusters(m):
    rng = np.random.default_rng(m)
    F = primary_filters(np.repeat(np.arange(m) * 2 * np.pi / m, 1600 // m))
    r = _run(_unit(F + rng.normal(0, 0.04, F.shape)))
    assert r.verdict == "clusters", r.extras["verdict"]["reasons"]


def test_small_four_orientation_layer_is_clusters():
    rng = np.random.default_rng(0)
    F = primary_filters(np.repeat(np.arange(4) * np.pi / 2, 50))
    assert _run(_unit(F + rng.normal(0, 0.04, F.shape))).verdict == "clusters"


def test_loop_of_non_edge_filters_is_a_circle_not_the_primary_circle():
    # a secondary circle (lines and edges along x): a loop, but not of rotating edges
    t = np.random.default_rng(1).uniform(0, 2 * np.pi, 400)
    F = klein_filters(np.zeros_like(t), t)
    F = _unit(F + np.random.default_rng(2).normal(0, 0.05, F.shape))
    # p=1: phi -> filter is not of constant speed, so the densest 30% is an arc (the core is
    # then rightly called "arc"); the whole loop is a circle
    r = _run(F, p=1.0)
    assert r.verdict == "circle", r.extras["verdict"]["reasons"]


def test_half_covered_loop_is_not_a_continuous_circle():
    t = np.random.default_rng(3).uniform(0, np.pi * 0.9, 800)   # edges over half the orientations
    F = _unit(primary_filters(t) + np.random.default_rng(4).normal(0, 0.03, (800, 9)))
    r = _run(F)
    assert r.verdict not in ("primary-circle", "circle")


def test_twenty_filters_are_too_few_not_an_error():
    r = _run(sample_shape("primary", 20, noise=0.1, seed=0).points)
    assert r.verdict == "too-few" and r.n_core == 0
    assert any("too-few" in s for s in r.extras["notes"])
    assert r.to_row()["verdict"] == "too-few"


def test_integer_k_larger_than_layer_is_too_few_with_the_fix():
    r = _run(sample_shape("primary", 100, noise=0.1, seed=0).points, k=200)
    assert r.verdict == "too-few" and "k='auto'" in r.extras["notes"][-1]


def test_model_with_one_tiny_layer_is_analysed(tmp_path):
    rng = np.random.default_rng(0)
    big = primary_filters(rng.uniform(0, 2 * np.pi, 64 * 32)).reshape(64, 32, 3, 3)
    kernels = {"conv1": rng.normal(size=(9, 3, 3, 3)), "conv2": big + rng.normal(0, 0.05, big.shape)}
    with pytest.warns(UserWarning, match="too-few"):
        res = analyze(kernels, progress=False)
    v = res.to_frame().set_index("layer")["verdict"]
    assert v["conv1"] == "too-few" and v["conv2"] == "primary-circle"
    res.save(tmp_path / "o")
    from filtertopo.result import AnalysisResult

    assert AnalysisResult.load(tmp_path / "o")["conv1"].verdict == "too-few"


def test_cli_first_layer_of_27_filters_exit_0(tmp_path, capsys):
    from filtertopo.cli import main

    rng = np.random.default_rng(1)
    big = primary_filters(rng.uniform(0, 2 * np.pi, 64 * 16)).reshape(64, 16, 3, 3)
    np.savez(tmp_path / "m.npz", conv1=rng.normal(size=(9, 3, 3, 3)), conv2=big)
    assert main(["analyze", str(tmp_path / "m.npz"), "--out", str(tmp_path / "o"), "--jobs", "1"]) == 0
    cap = capsys.readouterr()
    assert "too-few" in cap.out and cap.err.count("warning:") >= 1 and "Traceback" not in cap.err
    rows = json.loads((tmp_path / "o" / "analysis.json").read_text())["layers"]
    assert [r["verdict"] for r in rows] == ["too-few", "primary-circle"]


def test_parameters_validated_before_reading(tmp_path):
    with pytest.raises(InputError, match=r"from 2 to 127"):
        analyze(str(tmp_path / "missing.npz"), coeff=257)
    with pytest.raises(InputError, match=r"--n-landmarks"):
        analyze(str(tmp_path / "missing.npz"), maxdim=3)
    with pytest.raises(InputError, match=r"seed"):
        analyze(str(tmp_path / "missing.npz"), seed=-1)


@pytest.mark.parametrize("q", ["10" + "0" * 398 + "1", "1000000000000000000000000000057"])
def test_p10h_p10i_huge_coeff_refused_at_once(q):
    with pytest.raises(InputError, match="127"):
        analyze_points(np.zeros((5, 9)), coeff=q)


def test_scales_grid_reports_majority_and_support():
    assert len(scale_grid(20, 0.3, 400)) == 9
    r = _run(sample_shape("primary", 400, noise=0.1, seed=5).points, scales=True)
    sc = r.extras["scales"]
    assert len(sc["cells"]) == 9 and sc["majority"] == "primary-circle" and sc["support"] >= 0.5
    row = r.to_row()
    assert row["scale_verdict"] == "primary-circle" and row["scale_support"] == sc["support"]


def test_random_filters_show_nothing_at_the_defaults():
    for seed in range(3):
        assert _run(np.random.default_rng(seed).normal(size=(500, 9))).verdict == "none"


def test_failing_circular_coordinates_become_a_note(monkeypatch):
    import filtertopo.circular as circ

    def boom(*a, **k):
        raise ValueError("The cohomology class does not have an integral lift")

    monkeypatch.setattr(circ, "circular_coordinates", boom)
    r = _run(sample_shape("primary", 300, noise=0.1, seed=0).points)
    assert r.theta is None and any("integral lift" in s for s in r.extras["notes"])
    assert r.summary["n_significant"] == 1


def test_min_filters_documented_floor():
    assert MIN_FILTERS == 30
    assert _run(sample_shape("primary", MIN_FILTERS, noise=0.1, seed=0).points).verdict != "too-few"
