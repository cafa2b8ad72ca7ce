"""Reference shapes: formulas, samplers, distances and parameters (filtertopo.shapes)."""

import numpy as np
import pytest

from filtertopo.errors import InputError
from filtertopo.normalize import to_dct
from filtertopo.shapes import (SHAPES, best_shape, fit_shapes, kernel_size, klein_filters,
                               primary_filters, sample_shape, secondary_filters, shape_fractions)


def _circ(a, b):
    """Absolute angular difference in [0, pi]."""
    return np.abs(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b)))))


def test_primary_theta0_is_the_paper_edge():
    F = primary_filters([0.0]).reshape(3, 3) * np.sqrt(6)
    np.testing.assert_allclose(F, [[-1, 0, 1]] * 3, atol=1e-12)


def test_pixel_integral_is_the_paper_kf_formula():
    c = np.array([-1.0, 0.0, 1.0])
    rng = np.random.default_rng(0)
    for t1, t2 in rng.uniform(0, 2 * np.pi, (5, 2)):
        u = c[None, :] * np.cos(t1) + c[:, None] * np.sin(t1)  # [i (y), j (x)]
        kf = np.cos(t2) * (-100 / 243 + 32 / 81 * u**2) + np.sin(t2) * 8 / 27 * u
        kf = kf.ravel() - kf.mean()
        np.testing.assert_allclose(klein_filters([t1], [t2])[0], kf / np.linalg.norm(kf), atol=1e-12)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_pixel_integral_matches_numerical_integration(k):
    t1, t2, m = 0.4, 2.0, 40  # m x m midpoint rule inside every pixel
    s = (np.arange(k * m) + 0.5) / (k * m) * 2 - 1
    x, y = np.meshgrid(s, s)  # y along rows
    u = x * np.cos(t1) + y * np.sin(t1)
    f = np.sin(t2) * u + np.cos(t2) * (2 * u**2 - 1)
    F = f.reshape(k, m, k, m).mean(axis=(1, 3)).ravel()
    F = (F - F.mean()) / np.linalg.norm(F - F.mean())
    np.testing.assert_allclose(klein_filters([t1], [t2], k)[0], F, atol=1e-3)


@pytest.mark.parametrize("k", [3, 5])
def test_point_and_pixel_sampling_give_the_same_sets(k):
    s = sample_shape("klein", 200, k=k, sampling="point", seed=1)
    fit = fit_shapes(s.points, k, sampling="pixel")
    assert fit.dist_klein.max() < 2e-3


def test_special_parameters_are_the_circles():
    t = np.linspace(0, 2 * np.pi, 7)
    np.testing.assert_allclose(klein_filters(np.zeros(7), t), secondary_filters(t, "x"), atol=1e-12)
    np.testing.assert_allclose(klein_filters(np.full(7, 0.3), np.pi / 2), primary_filters(np.full(7, 0.3)), atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_samples_recognised_as_their_shape_and_not_others(shape):
    s = sample_shape(shape, 600, noise=0.03, seed=2)
    fr = shape_fractions(s.points, (3, 3))
    expected = {"primary": "primary", "secondary_x": "secondary", "secondary_y": "secondary",
                "three_circle": "three-circle", "klein": "klein"}[shape]
    assert best_shape(fr) == expected, fr


def test_random_filters_are_no_shape():
    fr = shape_fractions(np.random.default_rng(0).normal(size=(3000, 9)), 3)
    assert best_shape(fr) == "none"
    assert fr["frac_primary"] < 0.03 and fr["frac_klein"] < 0.15


@pytest.mark.parametrize("k,sampling", [(3, "pixel"), (3, "point"), (5, "pixel")])
def test_theta_recovered_on_primary_circle(k, sampling):
    rng = np.random.default_rng(3)
    th = rng.uniform(0, 2 * np.pi, 300)
    F = primary_filters(th, k, sampling=sampling)
    assert np.max(_circ(fit_shapes(F, k, sampling=sampling).theta, th)) < 1e-9  # exact, closed form
    # pixel noise of 0.01 (about 0.03 in norm): theta within 0.1 rad (6 degrees)
    fit = fit_shapes(F + rng.normal(0, 0.01, F.shape), k, sampling=sampling)
    assert np.max(_circ(fit.theta, th)) < 0.1
    assert np.median(_circ(fit.theta, th)) < 0.03


@pytest.mark.parametrize("k,sampling", [(3, "pixel"), (5, "point")])
def test_klein_parameters_recovered(k, sampling):
    rng = np.random.default_rng(4)
    t1 = rng.uniform(0.05, np.pi - 0.05, 200)
    t2 = rng.uniform(0, 2 * np.pi, 200)
    fit = fit_shapes(klein_filters(t1, t2, k, sampling=sampling), k, sampling=sampling, refine=True)
    assert fit.dist_klein.max() < 1e-6
    # theta1 is determined where the filter is not a pure, orientation-free quadratic: all here
    assert np.max(_circ(2 * fit.theta1, 2 * t1)) / 2 < 1e-3
    assert np.max(_circ(fit.theta2, t2)) < 1e-3


def test_klein_identification_is_respected():
    fit = fit_shapes(klein_filters([0.5 + np.pi], [1.0]), 3, refine=True)
    assert abs(fit.theta1[0] - 0.5) < 1e-4 and _circ(fit.theta2[0], -1.0) < 1e-4


def test_klein_distance_against_brute_force():
    # slow twin: nearest neighbour among a dense 360 x 360 grid of Klein-bottle filters
    g1, g2 = np.meshgrid(np.linspace(0, np.pi, 360, endpoint=False),
                         np.linspace(0, 2 * np.pi, 360, endpoint=False))
    K = klein_filters(g1.ravel(), g2.ravel())
    X = np.random.default_rng(5).normal(size=(150, 9))
    X = X - X.mean(1, keepdims=True)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    brute = np.sqrt(np.maximum(2 - 2 * (X @ K.T).max(axis=1), 0))
    fit = fit_shapes(X, 3, refine=True)
    assert np.all(fit.dist_klein <= brute + 1e-9)  # the fit is the exact minimum
    assert np.max(brute - fit.dist_klein) < 0.01   # the grid's spacing bounds the excess
    P = primary_filters(np.linspace(0, 2 * np.pi, 3600, endpoint=False))
    brute_p = np.sqrt(np.maximum(2 - 2 * (X @ P.T).max(axis=1), 0))
    np.testing.assert_allclose(fit.dist_primary, brute_p, atol=1e-3)


def test_dct_coordinates_give_the_same_fractions():
    s = sample_shape("three_circle", 300, noise=0.1, seed=6)
    V = to_dct(s.points)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    a, b = shape_fractions(V, 3), shape_fractions(s.points, 3)
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], atol=1e-9)


@pytest.mark.parametrize("bad", [1, 2, 4, (2, 2), (3, 5), (1, 1), (4, 4), "3x3"])
def test_unfittable_kernel_sizes_are_refused(bad):
    with pytest.raises(InputError, match="kernel_shape"):
        kernel_size(bad)
    with pytest.raises(InputError):
        shape_fractions(np.ones((4, 9)), bad)


def test_wrong_width_is_refused():
    with pytest.raises(InputError, match="k\\*k = 25"):
        fit_shapes(np.zeros((3, 9)), 5)
