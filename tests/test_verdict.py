"""Layer verdicts: bar counts, continuous circle vs clusters, Klein bottle (filtertopo.verdict)."""

import warnings

import numpy as np
import pytest

from filtertopo.pipeline import analyze_points
from filtertopo.shapes import _unit, primary_filters, sample_shape
from filtertopo.verdict import LABELS, angular_gap, layer_verdict


def _run(X, **kw):
    opts = dict(k=50, p=0.3, n_landmarks=250)
    opts.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyze_points(X, **opts)


def _clusters(m, n=1600, spread=0.04, seed=0):
    """Edges at only m orientations, each a tight cluster."""
    rng = np.random.default_rng(seed)
    F = primary_filters(np.repeat(np.arange(m) * 2 * np.pi / m, n // m))
    return _unit(F + rng.normal(0, spread, F.shape))


def test_primary_circle_is_a_circle():
    r = _run(sample_shape("primary", 1500, noise=0.08, seed=1).points)
    v = layer_verdict(r.diagrams_by_coeff, r.core)
    assert v.label == "circle" and v.n_significant == 1 and v.continuous
    assert v.n_clusters == 1 and v.angular_gap < np.pi / 8
    assert v.label in LABELS and isinstance(v.to_dict()["reasons"], list)


def test_three_circle_model_has_five_bars():
    r = _run(sample_shape("three_circle", 1500, noise=0.04, seed=2).points, k=15)
    v = layer_verdict(r.diagrams_by_coeff, r.core)
    assert v.label == "three-circle" and v.n_significant == 5


def test_random_filters_show_nothing():
    r = _run(np.random.default_rng(3).normal(size=(1500, 9)))
    assert layer_verdict(r.diagrams_by_coeff, r.core).label == "none"


@pytest.mark.parametrize("m", [4, 8])
def test_tight_clusters_show_a_bar_but_are_not_a_continuous_circle(m):
    r = _run(_clusters(m, seed=m))
    v = layer_verdict(r.diagrams_by_coeff, r.core)
    assert v.n_significant == 1          # H1 alone would call it a circle
    assert v.label == "clusters" and v.continuous is False
    assert v.n_clusters == m and v.n_angle_gaps == m
    assert any("clusters" in s for s in v.reasons)


def test_clusters_also_caught_by_the_angle_alone():
    r = _run(_clusters(8, seed=9))
    dg = {2: {1: r.diagrams[1]}}  # no H0: only the angular test can see the clusters
    v = layer_verdict(dg, r.core)
    assert v.label == "clusters" and v.n_clusters == 1 and v.n_angle_gaps == 8


def test_given_theta_overrides_the_pca_angle():
    r = _run(sample_shape("primary", 1200, noise=0.05, seed=4).points)
    bad_theta = np.repeat(np.arange(4) * np.pi / 2, int(np.ceil(r.n_core / 4)))[: r.n_core]
    assert layer_verdict(r.diagrams_by_coeff, r.core, theta=bad_theta).label == "clusters"


def test_angular_gap():
    assert angular_gap([0.1]) == pytest.approx(2 * np.pi)
    assert angular_gap(np.linspace(0, 2 * np.pi, 100, endpoint=False)) == pytest.approx(2 * np.pi / 100)


@pytest.fixture(scope="module")
def klein_layer():
    # 1,200 Klein-bottle filters, all kept, 200 landmarks, Z/2 and Z/3, H2: a few seconds
    X = sample_shape("klein", 1200, noise=0.02, seed=0).points
    return _run(X, k=10, p=1.0, n_landmarks=200, coeff=(2, 3), maxdim=2)


def test_klein_bottle_signature_z2_vs_z3(klein_layer):
    v = layer_verdict(klein_layer.diagrams_by_coeff)
    assert v.klein is True and v.label == "klein-bottle", v.reasons
    assert v.n_significant == 2  # over Z/2


def test_klein_bottle_needs_both_fields(klein_layer):
    only2 = {2: klein_layer.diagrams_by_coeff[2]}
    v = layer_verdict(only2)
    assert v.label == "multiple" and v.klein is None
    assert any("coeff=(2, 3)" in s for s in v.reasons)
    only3 = {3: klein_layer.diagrams_by_coeff[3]}
    assert layer_verdict(only3, klein_layer.core).n_significant == 1


def test_torus_is_not_a_klein_bottle():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0, 2 * np.pi, (2, 900))
    T = np.c_[np.cos(a), np.sin(a), np.cos(b), np.sin(b)]  # flat torus: same bars over Z/2 and Z/3
    r = _run(T, k=10, p=1.0, n_landmarks=150, coeff=(2, 3), maxdim=2)
    v = layer_verdict(r.diagrams_by_coeff)
    assert v.klein is False and v.label != "klein-bottle"
