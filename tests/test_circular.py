"""Circular coordinates from the longest H1 bar (filtertopo.circular, DREiMac)."""

import json

import numpy as np
import pytest

from filtertopo.circular import circular_agreement, circular_coordinates
from filtertopo.errors import InputError
from filtertopo.shapes import fit_shapes, sample_shape


@pytest.fixture(scope="module")
def primary():
    s = sample_shape("primary", 800, noise=0.03, seed=0)
    return s.points, fit_shapes(s.points, 3).theta


def test_agrees_with_template_theta_up_to_rotation_and_reflection(primary):
    X, theta = primary
    cc = circular_coordinates(X, n_landmarks=100, seed=0)
    assert cc.theta.shape == (len(X),) and np.all((cc.theta >= 0) & (cc.theta < 2 * np.pi))
    assert circular_agreement(cc.theta, theta) > 0.95
    b, d = cc.bar
    assert d - b > 1.0 and cc.n_landmarks == 100 and cc.standard_range
    # the order unrolls the circle: consecutive filters are near in template angle
    step = np.abs(np.angle(np.exp(1j * np.diff(theta[cc.order]))))
    assert np.median(step) < 0.05


def test_input_order_does_not_matter_beyond_landmark_choice(primary):
    X, theta = primary
    perm = np.random.default_rng(1).permutation(len(X))
    cc = circular_coordinates(X[perm], n_landmarks=100, seed=0)
    assert circular_agreement(cc.theta, theta[perm]) > 0.95


def test_to_json_round_trips(primary):
    cc = circular_coordinates(primary[0][:200], n_landmarks=50)
    d = json.loads(json.dumps(cc.to_json()))
    assert len(d["theta"]) == 200 and len(d["bar"]) == 2


def test_agreement_metric():
    t = np.random.default_rng(0).uniform(0, 2 * np.pi, 500)
    assert circular_agreement(2.0 - t, t) == pytest.approx(1.0)
    assert circular_agreement(np.random.default_rng(1).uniform(0, 2 * np.pi, 500), t) < 0.2


def test_bad_input():
    with pytest.raises(InputError, match="at least 4 rows"):
        circular_coordinates(np.zeros((2, 3)))
    with pytest.raises(InputError, match="perc"):
        circular_coordinates(np.random.default_rng(0).normal(size=(20, 2)), perc=1.5)
    with pytest.raises(InputError, match="cocycle_idx"):
        t = np.linspace(0, 2 * np.pi, 50, endpoint=False)
        circular_coordinates(np.c_[np.cos(t), np.sin(t)], n_landmarks=20, cocycle_idx=30)
