"""Per-run features of a study (filtertopo.study.features): baselines, the shuffled control,
topology features, hyperparameter encoding, the optional WeightWatcher."""

import math
import sys

import numpy as np
import pytest

from filtertopo.pipeline import analyze
from filtertopo.study.features import (family_of, hyperparameter_features, layer_topology, shuffle_pixels,
                                       topology_features, weight_features, weightwatcher_features)


def test_weight_features_known_answers():
    w = np.arange(24, dtype=float).reshape(2, 3, 2, 2) - 10
    w0 = np.zeros_like(w)
    f = weight_features({"conv1": w, "fc1": 2 * np.eye(4)}, {"conv1": w0 + 1})
    assert f["base.conv1.fro"] == pytest.approx(np.sqrt((w ** 2).sum()))
    assert f["base.conv1.spec"] == pytest.approx(np.linalg.svd(w.reshape(2, 12), compute_uv=False)[0])
    assert f["base.conv1.mean"] == pytest.approx(1.5) and f["base.conv1.var"] == pytest.approx(w.var())
    assert f["base.conv1.q50"] == pytest.approx(1.5) and f["base.conv1.q05"] < f["base.conv1.q95"]
    assert f["base.conv1.dist_init"] == pytest.approx(np.sqrt(((w - 1) ** 2).sum()))
    assert f["base.conv1.dist_init_rel"] == pytest.approx(np.sqrt(((w - 1) ** 2).sum()) / np.sqrt(24))
    assert f["base.fc1.fro"] == 4.0 and f["base.fc1.spec"] == 2.0 and math.isnan(f["base.fc1.dist_init"])
    assert f["base.model.log_prod_fro"] == pytest.approx(np.log(f["base.conv1.fro"]) + np.log(4))
    assert f["base.model.log_prod_spec"] == pytest.approx(np.log(f["base.conv1.spec"]) + np.log(2))
    assert f["base.model.fro_sum_sq"] == pytest.approx((w ** 2).sum() + 16)
    assert f["base.model.dist_init"] == pytest.approx(f["base.conv1.dist_init"])  # fc1 has no init
    assert all(family_of(k) == "baseline" for k in f)
    assert math.isnan(weight_features({"c": w})["base.model.dist_init"])


def test_shuffled_pixels_keep_the_values_and_lose_the_circle(circle_filters):
    P, _ = circle_filters(400, seed=0, noise=0.05)
    k = {"conv1": P.reshape(400, 1, 3, 3)}
    s = shuffle_pixels(k, seed=1)
    assert s["conv1"].shape == k["conv1"].shape
    np.testing.assert_array_equal(np.sort(s["conv1"].reshape(400, 9), 1), np.sort(P, 1))  # per filter
    assert not np.array_equal(s["conv1"], k["conv1"])
    np.testing.assert_array_equal(shuffle_pixels(k, seed=1)["conv1"], s["conv1"])  # seeded
    fa, fb = weight_features(k), weight_features(s)
    for stat in ("fro", "mean", "var", "q05", "q25", "q50", "q75", "q95"):  # the baselines cannot tell
        assert fa[f"base.conv1.{stat}"] == pytest.approx(fb[f"base.conv1.{stat}"])
    before = analyze(k, n_landmarks=80, circular=False, progress=False)[0]
    after = analyze(s, n_landmarks=80, circular=False, progress=False)[0]
    assert before.verdict == "primary-circle" and after.verdict != "primary-circle"
    assert layer_topology(before)["circle"] == 1.0 and layer_topology(after)["circle"] == 0.0
    assert layer_topology(before)["h1_1"] > 1.5 * layer_topology(after)["h1_1"]
    assert layer_topology(before)["gap_ratio"] > 3 * layer_topology(after)["gap_ratio"]


def test_topology_features_of_a_layer(circle_filters):
    P, _ = circle_filters(400, seed=2, noise=0.05)
    with pytest.warns(UserWarning, match="too small"):
        res = analyze({"conv1": P.reshape(400, 1, 3, 3), "tiny": P[:10].reshape(10, 1, 3, 3)}, n_landmarks=80,
                      circular=False, scales=True, null_draws=2, progress=False)
    f = topology_features(res)
    top = res["conv1"].bars.h1_top
    assert f["topo.conv1.h1_1"] == top[0] and f["topo.conv1.h1_2"] == top[1]
    assert f["topo.conv1.gap_ratio"] == pytest.approx(top[0] / top[1], rel=1e-6)
    d1 = res["conv1"].diagrams[1]
    assert f["topo.conv1.h1_total"] == pytest.approx(float((d1[:, 1] - d1[:, 0]).sum()))
    assert f["topo.conv1.verdict"] == "primary-circle" and f["topo.conv1.circle"] == 1.0
    assert 0 < f["topo.conv1.scale_support"] <= 1 and 0 < f["topo.conv1.circle_support"] <= 1
    assert f["topo.conv1.frac_primary"] > 0.5 and f["topo.conv1.null_ratio"] > 1
    assert math.isfinite(f["topo.conv1.null_z"])
    assert f["topo.tiny.verdict"] == "too-few" and math.isnan(f["topo.tiny.h1_1"])  # too few: no numbers
    assert {family_of(k) for k in f} == {"topology"}


def test_hyperparameter_encoding():
    varied = [{"lr": 0.1, "optimizer": "sgd", "model_kwargs.widths": [64, 32], "seed": 0},
              {"lr": 0.2, "optimizer": "adam", "model_kwargs.widths": [32, 16], "seed": 1}]
    hp = hyperparameter_features(varied, ["lr", "optimizer", "model_kwargs.widths", "seed"])
    assert hp == {"hp.lr": [0.1, 0.2], "hp.optimizer=adam": [0.0, 1.0], "hp.optimizer=sgd": [1.0, 0.0],
                  "hp.model_kwargs.widths": [96.0, 48.0]}  # widths by their sum; the seed left out


def test_weightwatcher_missing_is_a_note_not_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "weightwatcher", None)  # import fails as if not installed
    feats, note = weightwatcher_features(object())
    assert feats == {} and "not installed" in note and "pip install weightwatcher" in note
