"""Fast kNN and landmarks against brute-force twins (STYLE habit 9)."""

import numpy as np
import pytest

from filtertopo.density import dense_core, knn_distance, maxmin_landmarks
from filtertopo.errors import InputError


def _naive_knn(X, k):
    D = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=2)
    np.fill_diagonal(D, np.inf)
    return np.sort(D, axis=1)[:, k - 1]


@pytest.mark.parametrize("k", [1, 5, 40])
def test_knn_brute_matches_naive_and_tree(rng, k):
    X = rng.normal(size=(300, 9))
    ref = _naive_knn(X, k)
    np.testing.assert_allclose(knn_distance(X, k), ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(knn_distance(X, k, method="tree"), ref, rtol=1e-9, atol=1e-9)


def test_knn_chunked_matches(monkeypatch, rng):
    import filtertopo.density as d

    X = rng.normal(size=(257, 4))
    full = knn_distance(X, 7)
    monkeypatch.setattr(d, "_CHUNK_BYTES", 8 * 257 * 10)  # 10 rows per chunk
    np.testing.assert_allclose(knn_distance(X, 7), full)


def test_knn_float32_path_matches_tree(rng):
    X = rng.normal(size=(5000, 9))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(knn_distance(X, 30), knn_distance(X, 30, method="tree"), atol=2e-4)


def test_dense_core_keeps_densest(rng):
    dense = rng.normal(0, 0.01, size=(100, 3))
    sparse = rng.normal(0, 10, size=(100, 3))
    core, rho = dense_core(np.vstack([dense, sparse]), 5, 0.5)
    assert len(core) == 100
    assert set(core.tolist()) == set(range(100))
    assert np.all(np.diff(rho[core]) >= 0)


def test_maxmin_matches_naive(rng):
    X = rng.normal(size=(200, 5))
    idx, radius = maxmin_landmarks(X, 20, seed=3)
    # naive twin: recompute the greedy choice from scratch at every step
    chosen = [idx[0]]
    for _ in range(19):
        D = np.linalg.norm(X[:, None] - X[chosen][None], axis=2).min(axis=1)
        chosen.append(int(np.argmax(D)))
    assert idx.tolist() == chosen
    D = np.linalg.norm(X[:, None] - X[chosen][None], axis=2).min(axis=1)
    assert radius == pytest.approx(D.max())


def test_knn_rejects_bad_k(rng):
    with pytest.raises(InputError, match="k must be"):
        knn_distance(rng.normal(size=(10, 2)), 10)
    with pytest.raises(InputError, match="p must be"):
        dense_core(rng.normal(size=(10, 2)), 3, 1.5)
