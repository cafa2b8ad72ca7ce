"""GUDHI's Ripser (diagrams) and ripser.py (cocycles, fallback) give the same diagrams."""

import numpy as np
import pytest

import filtertopo.homology as H
from filtertopo.errors import InputError
from filtertopo.homology import _rips_dm, persistence, ph_engine
from filtertopo.normalize import normalize_filters
from filtertopo.shapes import sample_shape

pytest.importorskip("gudhi")


def _dm(X):
    X = np.asarray(X, dtype=np.float64)
    sq = np.einsum("ij,ij->i", X, X)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0.0))
    np.fill_diagonal(D, 0.0)
    return D


def _ripser_py(D, maxdim, coeff):
    from ripser import ripser

    return ripser(D, maxdim=maxdim, coeff=coeff, distance_matrix=True)["dgms"]


def _sorted(dg):
    dg = np.asarray(dg, dtype=np.float64).reshape(-1, 2)
    return dg[np.lexsort((dg[:, 1], dg[:, 0]))]


def _clouds():
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 2 * np.pi, 120)
    yield "circle", np.c_[np.cos(t), np.sin(t)] + 0.05 * rng.normal(size=(120, 2)), 1
    yield "klein", normalize_filters(sample_shape("klein", 150, seed=1).points).points, 2
    yield "three_circle", normalize_filters(sample_shape("three_circle", 200, seed=2).points).points, 1
    yield "gaussian", rng.normal(size=(150, 9)), 1
    dup = rng.normal(size=(20, 3))
    yield "duplicates", np.r_[dup, dup, dup], 1
    yield "two points", np.array([[0.0, 0.0], [1.0, 0.0]]), 1


@pytest.mark.parametrize("coeff", [2, 3])
def test_gudhi_diagrams_equal_ripser_py(coeff):
    for name, X, maxdim in _clouds():
        D = _dm(X)
        ours, cocycles = _rips_dm(D, maxdim=maxdim, coeff=coeff)
        ref = _ripser_py(D, maxdim, coeff)
        assert cocycles is None
        for d in range(maxdim + 1):
            a, b = _sorted(ours[d]), _sorted(ref[d])
            assert a.shape == b.shape, (name, d, a.shape, b.shape)
            # ripser.py works in float32: equal to its rounding
            np.testing.assert_allclose(a, b, atol=1e-6, err_msg=f"{name} H{d} over Z/{coeff}")


def test_a_slightly_asymmetric_matrix_gives_ripser_py_diagrams():
    # L @ L.T is symmetric only up to rounding (3e-15 here); GUDHI's Ripser on the matrix as it
    # came gave the long bar of four tight clusters a death of 1.40 instead of 1.99
    from filtertopo.density import dense_core, maxmin_landmarks
    from filtertopo.shapes import primary_filters

    rng = np.random.default_rng(4)
    F = primary_filters(np.repeat(np.arange(4) * np.pi / 2, 400))
    X = normalize_filters(F + rng.normal(0, 0.04, F.shape)).points
    core = X[dense_core(X, 50, 0.3)[0]]
    L = core[maxmin_landmarks(core, 250, seed=0)[0]].astype(np.float64)
    sq = np.einsum("ij,ij->i", L, L)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * L @ L.T, 0.0))
    np.fill_diagonal(D, 0.0)
    D[np.triu_indices(len(D), 1)] += 1e-15  # asymmetric whatever BLAS did
    ours, _ = _rips_dm(D, maxdim=1, coeff=2)
    ref = _ripser_py(D, 1, 2)
    np.testing.assert_allclose(_sorted(ours[1]), _sorted(ref[1]), atol=1e-6)
    assert np.diff(_sorted(ours[1]), axis=1).max() > 0.5


def test_cocycles_still_come_from_ripser_py():
    t = np.linspace(0, 2 * np.pi, 30, endpoint=False)
    dgms, cocycles = _rips_dm(_dm(np.c_[np.cos(t), np.sin(t)]), maxdim=1, coeff=41, do_cocycles=True)
    assert len(dgms[1]) == 1 and len(cocycles[1]) == 1
    assert ph_engine(do_cocycles=True).startswith("ripser.py")


def test_without_gudhi_ripser_py_gives_the_same_answer(monkeypatch):
    X = normalize_filters(sample_shape("primary", 300, noise=0.05, seed=4).points).points
    with_gudhi = persistence(X, coeff=3, n_landmarks=150)
    monkeypatch.setattr(H, "_gudhi_full", lambda: None)
    assert ph_engine().startswith("ripser.py")
    without = persistence(X, coeff=3, n_landmarks=150)
    for d in (0, 1):
        np.testing.assert_allclose(_sorted(with_gudhi.diagrams[d]), _sorted(without.diagrams[d]), atol=1e-6)


def test_bad_input_still_refused_before_the_engine():
    with pytest.raises(InputError, match="prime"):
        persistence(np.eye(5), coeff=4)


# --- PH in threads beside a speculative circular coordinate (topology._topology) ---------------

def _layer(monkeypatch, X, overlap, **kw):
    import warnings

    import filtertopo.topology as T
    from filtertopo import analyze_points

    monkeypatch.setattr(T, "_OVERLAP_FROM", 300 if overlap else 10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyze_points(X, k=30, p=0.3, n_landmarks=300, **kw)


def test_overlapped_and_sequential_paths_give_the_same_layer(monkeypatch):
    X = sample_shape("primary", 3000, noise=0.05, seed=5).points
    a = _layer(monkeypatch, X, True, coeff=(2, 3))
    b = _layer(monkeypatch, X, False, coeff=(2, 3))
    assert a.verdict == b.verdict == "primary-circle"
    for q in (2, 3):
        for d in (0, 1):
            np.testing.assert_array_equal(a.diagrams_by_coeff[q][d], b.diagrams_by_coeff[q][d])
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.notes == b.notes and a.circular == b.circular


@pytest.mark.parametrize("overlap", [True, False])
def test_a_failing_circular_coordinate_is_a_note_only_where_a_bar_is_significant(monkeypatch, overlap):
    import filtertopo.circular as C

    calls = []

    def broken(*a, **k):
        calls.append(1)
        raise ValueError("no integral lift")

    monkeypatch.setattr(C, "circular_coordinates", broken)
    circle = _layer(monkeypatch, sample_shape("primary", 3000, noise=0.05, seed=6).points, overlap)
    assert circle.verdict == "primary-circle" and circle.theta is None
    assert "no integral lift" in circle.circular.error
    assert any("circular coordinates failed (ValueError: no integral lift)" in n for n in circle.notes)
    noise = _layer(monkeypatch, np.random.default_rng(7).normal(size=(3000, 9)), overlap)
    assert noise.bars.n_significant == 0 and noise.verdict == "none"
    assert noise.circular is None and not any("circular" in n for n in noise.notes)
    # speculative only on the overlapped path: called for the random layer too, and discarded
    assert len(calls) == (2 if overlap else 1)


def test_a_gudhi_whose_private_api_changed_falls_back_to_ripser_py_with_a_warning(monkeypatch):
    def changed(D, max_dimension, max_edge_length, homology_coeff_field):  # noqa: ARG001
        raise TypeError("_full(): incompatible function arguments")

    monkeypatch.setattr(H, "_import_gudhi_full", lambda: changed)
    monkeypatch.setattr(H, "_GUDHI_FAILED", [])
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    D = _dm(np.c_[np.cos(t), np.sin(t)])
    with pytest.warns(RuntimeWarning, match="ripser.py"):
        dgms, _ = _rips_dm(D, maxdim=1, coeff=2)
    np.testing.assert_allclose(_sorted(dgms[1]), _sorted(_ripser_py(D, 1, 2)[1]), atol=1e-6)
    assert ph_engine().startswith("ripser.py") and not H.ph_releases_gil()  # given up once, not per call


# --- early stop: the complex cut below the enclosing radius when that is the whole answer -----

def _four_clusters():
    from filtertopo.shapes import primary_filters

    rng = np.random.default_rng(8)
    F = primary_filters(np.repeat(np.arange(4) * np.pi / 2, 60))
    return normalize_filters(F + rng.normal(0, 0.04, F.shape)).points


def _big_clouds():
    rng = np.random.default_rng(9)
    yield "primary", normalize_filters(sample_shape("primary", 400, noise=0.05, seed=3).points).points
    yield "three_circle", normalize_filters(sample_shape("three_circle", 400, seed=2).points).points
    yield "klein", normalize_filters(sample_shape("klein", 300, seed=1).points).points
    yield "gaussian", rng.normal(size=(300, 9))
    yield "four clusters", _four_clusters()  # the square's loop dies at the enclosing radius


def _spy(monkeypatch):
    """Record the thresholds GUDHI's Ripser is called with."""
    real, seen = H._import_gudhi_full(), []

    def spy(D, max_dimension, max_edge_length, homology_coeff_field):
        seen.append(max_edge_length)
        return real(D, max_dimension=max_dimension, max_edge_length=max_edge_length,
                    homology_coeff_field=homology_coeff_field)

    monkeypatch.setattr(H, "_gudhi_full", lambda: spy)
    return seen


@pytest.mark.parametrize("engine", ["gudhi", "ripser.py"])
@pytest.mark.parametrize("coeff", [2, 3])
def test_early_stop_gives_the_full_diagrams_bar_for_bar(monkeypatch, engine, coeff):
    if engine == "ripser.py":
        monkeypatch.setattr(H, "_gudhi_full", lambda: None)
    for name, X in _big_clouds():
        D = _dm(X)
        cut, _ = _rips_dm(D, maxdim=1, coeff=coeff)
        monkeypatch.setattr(H, "_EARLY_STOP_FROM", 10**9)
        whole, _ = _rips_dm(D, maxdim=1, coeff=coeff)
        monkeypatch.setattr(H, "_EARLY_STOP_FROM", 200)
        for d in (0, 1):
            np.testing.assert_array_equal(_sorted(cut[d]), _sorted(whole[d]), err_msg=f"{name} H{d}")


def test_early_stop_is_taken_on_a_circle_and_given_up_where_a_bar_outlives_the_cut(monkeypatch):
    seen = _spy(monkeypatch)
    X = normalize_filters(sample_shape("primary", 400, noise=0.05, seed=3).points).points
    dgms, _ = _rips_dm(_dm(X), maxdim=1, coeff=2)
    assert len(seen) == 1 and np.diff(_sorted(dgms[1]), axis=1).max() > 1.0  # one cut run, the circle in it
    seen.clear()
    dgms, _ = _rips_dm(_dm(_four_clusters()), maxdim=1, coeff=2)
    assert len(seen) == 2 and seen[0] < seen[1]  # the square's loop is alive at the cut: full complex
    assert np.isfinite(dgms[1]).all()
    seen.clear()
    _rips_dm(_dm(X), maxdim=2, coeff=2)  # H2 may be born late: always the full complex
    assert len(seen) == 1 and seen[0] == pytest.approx(float(_dm(X).astype(np.float32).max(axis=1).min()))


def test_a_loop_born_after_the_cut_is_not_lost(monkeypatch):
    # a 300-degree arc: below its 60-degree gap (chord 1.0) the complex is a path (connected, no
    # H1); the gap closes a loop born at 1.0 that dies at ~sqrt(3). A cut at 0.4 of the enclosing
    # radius shows no bar at all; the edge check sees the gap's edge has no shorter detour
    t = np.deg2rad(np.linspace(0, 300, 250))
    D = _dm(np.c_[np.cos(t), np.sin(t)])
    monkeypatch.setattr(H, "_EARLY_STOP_AT", 0.4)
    seen = _spy(monkeypatch)
    dgms, _ = _rips_dm(D, maxdim=1, coeff=2)
    assert len(seen) == 2
    np.testing.assert_allclose(dgms[1], [[1.0, 1.7362]], atol=1e-4)
    Df = D.astype(np.float32)
    assert not H._h1_stays_trivial(Df, seen[0]) and H._h1_stays_trivial(Df, 0.9 * seen[1])


def test_h1_stays_trivial_needs_a_strictly_shorter_detour():
    tri = _dm([[0, 0], [1, 0], [0.5, np.sqrt(3) / 2]])  # equilateral: the detour is as long
    assert not H._h1_stays_trivial(tri, 0.5)
    square = _dm([[0, 0], [1, 0], [1, 1], [0, 1]])  # diagonals: detour along two sides
    assert H._h1_stays_trivial(square, 1.2) and not H._h1_stays_trivial(square, 1.0)
