"""Null model of matched random filters (filtertopo.nullmodel)."""

import numpy as np
import pytest

from filtertopo.errors import InputError
from filtertopo.nullmodel import null_distribution, null_margin
from filtertopo.shapes import sample_shape

FAST = dict(k=30, p=0.3, n_landmarks=150)


@pytest.mark.parametrize("kernel", [(3, 3), (5, 5)])
def test_random_filters_never_get_a_circle_verdict(kernel):
    nd = null_distribution(800, kernel, n_draws=3, seed=0, **FAST)
    assert not {"circle", "primary-circle"} & set(nd.labels) and set(nd.labels) <= {"none", "multiple", "clusters"}
    assert nd.h1_max.shape == (3,) and np.all(nd.h1_max < 0.5)
    assert len(set(nd.seeds)) == 3 and nd.dim == kernel[0] * kernel[1]


def test_dct_null_is_uniform_on_s7():
    nd = null_distribution(600, (3, 3), n_draws=2, coeff=2, coords="dct", **FAST)
    assert nd.dim == 8 and not {"circle", "primary-circle"} & set(nd.labels)


def test_primary_circle_stands_far_above_the_null():
    X = sample_shape("primary", 800, noise=0.1, seed=1).points * 3.0 + 1.0  # raw: scale and offset
    m = null_margin(X, (3, 3), n_draws=3, seed=0, **FAST)
    assert {"null_h1_mean", "null_h1_max", "h1_margin_z", "h1_ratio_null_max", "null_frac_circle"} <= set(m)
    assert m["h1_observed"] > 1.0 and m["h1_ratio_null_max"] > 3 and m["h1_margin_z"] > 10
    assert m["null_frac_circle"] == 0.0


def test_random_layer_is_within_its_null():
    X = np.random.default_rng(7).normal(size=(800, 9))
    m = null_margin(X, (3, 3), n_draws=3, seed=1, **FAST)
    assert m["h1_ratio_null_max"] < 1.5


def test_observed_is_reused_and_seeds_reproduce():
    X = np.random.default_rng(2).normal(size=(500, 9))
    a = null_margin(X, (3, 3), n_draws=2, seed=3, observed=0.9, **FAST)
    b = null_margin(X, (3, 3), n_draws=2, seed=3, observed=0.9, **FAST)
    assert a == b or all(a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)
    assert a["h1_observed"] == 0.9


def test_network_at_initialisation_as_null():
    rng = np.random.default_rng(4)
    X = sample_shape("primary", 600, noise=0.1, seed=4).points
    init = rng.uniform(-1, 1, size=(60, 10, 3, 3))  # OIHW kernels at initialisation
    m = null_margin(X, (3, 3), n_draws=1, init_kernels=init, **FAST)
    assert m["init_h1"] < 0.5 and m["h1_ratio_init"] > 2
    assert np.isnan(m["h1_margin_z"])  # one draw has no spread


def test_bad_input():
    with pytest.raises(InputError, match="points_raw"):
        null_margin(np.zeros((50, 9)), (5, 5), **FAST)
    with pytest.raises(InputError, match="n_draws"):
        null_distribution(100, (3, 3), n_draws=0, **FAST)
    with pytest.raises(InputError, match="init_kernels"):
        null_margin(np.random.default_rng(0).normal(size=(100, 9)), (3, 3), n_draws=1, observed=1.0,
                    init_kernels=np.zeros((4, 4, 5, 5)), **FAST)
