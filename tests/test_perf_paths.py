"""The fast paths give the answers of the slow references (issue 8, "Fast").

* circular coordinates: numpy/scipy port of DREiMac vs ``dreimac.CircularCoords``;
* ripser: the direct call of ripser.py's C++ module vs ``ripser.ripser``;
* kNN: the buffered, in-place chunked brute force vs a KD-tree.
"""

import warnings

import numpy as np
import pytest

from filtertopo import circular
from filtertopo.circular import circular_agreement, circular_coordinates
from filtertopo.density import knn_distance
from filtertopo.homology import _rips_dm, persistence
from filtertopo.shapes import sample_shape


def _noisy_circle(n, noise, seed, dim=2):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n)
    X = np.zeros((n, dim))
    X[:, 0], X[:, 1] = np.cos(t), np.sin(t)
    return X + rng.normal(0, noise, X.shape), t


def _sphere_circle(n, seed):
    """A noisy great circle on the unit sphere of R^9 plus Gaussian clutter (like a dense core)."""
    X, t = _noisy_circle(n, 0.05, seed, dim=9)
    clutter = np.random.default_rng(seed + 1).normal(size=(n // 20, 9))
    X = np.concatenate([X, clutter])
    return X / np.linalg.norm(X, axis=1, keepdims=True), t


CASES = {
    "primary": lambda: (sample_shape("primary", 600, noise=0.03, seed=0).points, None),
    "noisy-2d": lambda: _noisy_circle(500, 0.1, 1),
    "sphere-9d": lambda: _sphere_circle(700, 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("nl", [60, 150])
def test_fast_circular_matches_dreimac(case, nl):
    pytest.importorskip("dreimac")
    X, t = CASES[case]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = circular_coordinates(X, n_landmarks=nl, seed=3)
        ref = circular_coordinates(X, n_landmarks=nl, seed=3, method="dreimac")
    assert circular_agreement(fast.theta, ref.theta) >= 0.95
    # the same algorithm on the same landmarks: equal up to rounding
    np.testing.assert_allclose(np.angle(np.exp(1j * (fast.theta - ref.theta))), 0, atol=1e-6)
    np.testing.assert_allclose(fast.bar, ref.bar, rtol=0, atol=1e-6)
    assert fast.standard_range == ref.standard_range and fast.n_landmarks == ref.n_landmarks
    if t is not None:
        assert circular_agreement(fast.theta[: len(t)], t) >= 0.8  # DREiMac itself on few landmarks


def test_fast_circular_rips_range_matches_dreimac():
    """A short bar (birth > death / 2) takes the Rips range in both."""
    pytest.importorskip("dreimac")
    X, _ = _noisy_circle(400, 0.35, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = circular_coordinates(X, n_landmarks=80)
        ref = circular_coordinates(X, n_landmarks=80, method="dreimac")
    assert fast.standard_range == ref.standard_range
    assert circular_agreement(fast.theta, ref.theta) >= 0.95


def test_non_cocycle_lift_falls_back_to_dreimac(monkeypatch):
    pytest.importorskip("dreimac")
    X, _ = _noisy_circle(300, 0.1, 5)
    ref = circular_coordinates(X, n_landmarks=50, method="dreimac")
    monkeypatch.setattr(circular, "_is_cocycle", lambda C, A: False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = circular_coordinates(X, n_landmarks=50)
    np.testing.assert_allclose(got.theta, ref.theta)


def test_is_cocycle_detects_a_broken_triangle():
    A = np.triu(np.ones((3, 3), dtype=bool), 1)
    C = np.zeros((3, 3), dtype=np.int64)
    C[0, 1], C[1, 2], C[0, 2] = 1, 1, 2
    assert circular._is_cocycle(C, A)
    C[0, 2] = 1
    assert not circular._is_cocycle(C, A)
    A[0, 2] = False  # no triangle, no condition
    assert circular._is_cocycle(C, A)


def test_warm_up_runs():
    circular.warm_up()


@pytest.mark.parametrize("coeff", [2, 3])
def test_direct_ripser_matches_ripser_py(coeff):
    from ripser import ripser

    X, _ = _sphere_circle(150, 6)
    D = np.sqrt(np.maximum(((X[:, None] - X[None]) ** 2).sum(-1), 0))
    np.fill_diagonal(D, 0)
    dgms, cocycles = _rips_dm(D, maxdim=2, coeff=coeff, do_cocycles=True)
    ref = ripser(D, maxdim=2, coeff=coeff, distance_matrix=True, do_cocycles=True)
    for d in range(3):
        np.testing.assert_array_equal(dgms[d], ref["dgms"][d])
        assert len(cocycles[d]) == len(ref["cocycles"][d])
        for a, b in zip(cocycles[d], ref["cocycles"][d]):
            np.testing.assert_array_equal(a, b)
    assert _rips_dm(D, maxdim=1, coeff=coeff)[1] is None


def test_persistence_matches_ripser_py_on_landmarks():
    from ripser import ripser

    X, _ = _sphere_circle(400, 7)
    P = persistence(X, n_landmarks=120, coeff=2)
    L = X[P.landmarks]
    D = np.sqrt(np.maximum(((L[:, None] - L[None]) ** 2).sum(-1), 0))
    ref = ripser(D, maxdim=1, distance_matrix=True)["dgms"]
    for d in range(2):  # GUDHI's engine lists the bars in another order: compare sorted
        a, b = (np.asarray(x).reshape(-1, 2) for x in (P.diagrams[d], ref[d]))
        np.testing.assert_allclose(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])], atol=1e-6)


def test_knn_buffered_chunks_match_tree(monkeypatch):
    from filtertopo import density

    rng = np.random.default_rng(8)
    X = rng.normal(size=(5000, 9))  # float32 path (n >= _F32_FROM), several chunks
    monkeypatch.setattr(density, "_CHUNK_BYTES", 5000 * 4 * 700)
    for k in (1, 37, 300):
        np.testing.assert_allclose(knn_distance(X, k), knn_distance(X, k, method="tree"), atol=2e-5)


def test_knn_preselection_is_exact_with_fallback_rows(monkeypatch):
    from filtertopo import density

    rng = np.random.default_rng(9)
    X = rng.normal(size=(6000, 9))
    X[:800] = X[0]  # ties: 800 identical points, their k-th neighbour is at distance 0
    ref = {k: knn_distance(X, k, method="tree") for k in (5, 150)}
    for k in (5, 150):
        assert density._sample_plan(len(X), k)[0] is not None  # the pre-selection is used
        np.testing.assert_allclose(knn_distance(X, k), ref[k], atol=2e-5)
    # a rank far too low: most rows miss k + 1 candidates and are selected in full
    monkeypatch.setattr(density, "_sample_plan", lambda n, k: (n // 8, 2))
    np.testing.assert_allclose(knn_distance(X, 150), ref[150], atol=2e-5)


def test_kth_smallest_matches_partition():
    from filtertopo.density import _kth_smallest, _sample_plan

    rng = np.random.default_rng(10)
    d2 = rng.normal(size=(300, 8192)).astype(np.float32)
    for k in (0, 1, 60, 200):
        s, r = _sample_plan(d2.shape[1], k)
        want = np.partition(d2, k, axis=1)[:, k]
        np.testing.assert_array_equal(_kth_smallest(d2.copy(), k, s, r), want)
        np.testing.assert_array_equal(_kth_smallest(d2.copy(), k, None, None), want)
