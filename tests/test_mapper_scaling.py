"""Mapper at every core size: the "auto" resolution (issue "Mapper that agrees with
homology") and a bounded nerve (red-team Q08). Known answers in the module docstring of
``filtertopo.mapper._graph``."""

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import filtertopo.mapper._graph as graph_mod
from filtertopo.errors import InputError
from filtertopo.mapper import (
    MAX_NERVE_SIMPLICES,
    MapperGraph,
    auto_n_intervals,
    mapper_graph,
)
from filtertopo.shapes import primary_filters, sample_shape


def slow_triangles(g):
    """Twin: every triple of nodes of every point (the old enumeration)."""
    tri = set()
    for vs in g.point_nodes():
        tri.update(itertools.combinations(vs, 3))
    return np.array(sorted(tri), dtype=np.int64).reshape(-1, 3)


def slow_betti(g):
    """Twin: Z/2 ranks of the full nerve's boundary matrices, no reduction of nodes."""
    n, E, T = g.n_nodes, g.edges.tolist(), slow_triangles(g).tolist()

    def rank2(rows):
        rows = [r for r in rows if r]
        rank = 0
        pivots = {}
        for col in rows:
            while col:
                low = col.bit_length() - 1
                if low in pivots:
                    col ^= pivots[low]
                else:
                    pivots[low] = col
                    rank += 1
                    break
        return rank

    r1 = rank2([(1 << u) | (1 << v) for u, v in E])
    eid = {tuple(e): k for k, e in enumerate(E)}
    r2 = rank2([(1 << eid[(a, b)]) | (1 << eid[(a, c)]) | (1 << eid[(b, c)]) for a, b, c in T])
    return n - r1, len(E) - r1 - r2


def circle(n, noise=0.15, seed=0):
    return sample_shape("primary", n, noise=noise, seed=seed).points


@pytest.mark.parametrize("n", [60, 150, 460, 2000, 6000])
def test_auto_resolution_noisy_circle_one_loop(n):
    """One loop with nodes of many filters at every size (at 30 intervals, n = 60..460 gave
    b0 up to 11 or b1 up to 5, with median nodes of 2 to 7 filters)."""
    X = circle(n)
    g = mapper_graph(X)
    r = auto_n_intervals(n)
    assert g.params["n_intervals"] == [r, r] and g.params["n_intervals_rule"] == "auto"
    assert g.betti() == (1, 1)
    assert np.median(g.sizes) >= 3
    assert g.n_nodes <= 10 * r + 100  # a picture, not a cloud: a necklace of ~r cells


@pytest.mark.parametrize("noise", [0.1, 0.2])
@pytest.mark.parametrize("n", [460, 2000, 6000])
def test_auto_resolution_dense_core_one_loop(n, noise):
    """The densest 30% (a circle once each core point has close neighbours all round)."""
    from filtertopo.density import dense_core

    X = circle(int(n / 0.3), noise)
    core, _ = dense_core(X, 10, 0.3)
    g = mapper_graph(X[core])
    assert g.betti() == (1, 1)
    assert np.median(g.sizes) >= 3


def test_auto_rule_numbers():
    assert [auto_n_intervals(n) for n in (2, 60, 150, 460, 2000, 6000, 10**6)] == \
        [6, 6, 7, 12, 20, 20, 20]
    assert auto_n_intervals(460, 0.5) == 8  # sqrt(460 / 30) / 0.5 = 7.8
    assert auto_n_intervals(100, 0.5) == 4  # at least 2 / (1 - 0.5)
    assert auto_n_intervals(460, 2 / 3, 1) == 20  # one lens: 460 / 30 * 3 = 46, capped


def test_paper_resolution_still_available():
    X = circle(300)
    a, b = mapper_graph(X, n_intervals="paper"), mapper_graph(X, n_intervals=30)
    assert a.params["n_intervals"] == b.params["n_intervals"] == [30, 30]
    assert [m.tolist() for m in a.nodes] == [m.tolist() for m in b.nodes]
    assert a.params["n_intervals_rule"] == "paper" and b.params["n_intervals_rule"] == "given"
    with pytest.raises(InputError, match="n_intervals"):
        mapper_graph(X, n_intervals="fine")


def test_auto_permutation_invariant():
    X = circle(460)
    a = mapper_graph(X)
    for k in range(3):
        perm = np.random.default_rng(10 + k).permutation(len(X))
        c = mapper_graph(X[perm])
        assert c.params["n_intervals"] == a.params["n_intervals"]
        assert sorted(sorted(perm[m].tolist()) for m in c.nodes) == \
            sorted(m.tolist() for m in a.nodes)


def test_gaussian_and_orientations_documented():
    """What the docstring reports (not forced): random Gaussian filters are not a robust
    loop; four orientations are four components."""
    b1 = [mapper_graph(np.random.default_rng(s).standard_normal((460, 9))).betti()[1]
          for s in range(5)]
    assert sum(b1) <= 2
    th = np.repeat(np.arange(4) * np.pi / 4, 115)
    X = primary_filters(th) + 0.04 * np.random.default_rng(0).standard_normal((460, 9))
    assert mapper_graph(X).betti() == (4, 0)


def test_small_fragments_not_cut_off():
    """cut="auto" leaves no piece of one or two points next to a larger piece of its cell."""
    X = circle(2000)
    g = mapper_graph(X)
    by_cell = {}
    for v, c in enumerate(g.cover_index.tolist()):
        by_cell.setdefault(c, []).append(len(g.nodes[v]))
    assert all(min(s) >= graph_mod.MIN_PIECE for s in by_cell.values() if len(s) > 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_triangles_and_betti_match_slow_twins(seed):
    X = circle(300, 0.1, seed)
    for kw in (dict(n_intervals=30), dict(n_intervals=8, overlap=0.5), dict(cut="gap")):
        g = mapper_graph(X, **kw)
        np.testing.assert_array_equal(g.triangles(), slow_triangles(g))
        assert g.betti() == slow_betti(g)


def test_betti_reduction_handles_nested_and_equal_nodes():
    """Nodes inside others (and duplicates) are dropped without changing the Betti numbers:
    a hollow triangle of three 2-point nodes plus copies and sub-nodes."""
    nodes = (np.array([0, 1]), np.array([1, 2]), np.array([0, 2]), np.array([0, 1]),
             np.array([1]), np.array([2]))
    from filtertopo.mapper._graph import _nerve_edges

    E, w = _nerve_edges(nodes, 3)
    g = MapperGraph(nodes=nodes, edges=E, edge_weights=w, cover_index=np.arange(6),
                    lens=np.zeros((3, 1)))
    assert g.betti() == slow_betti(g) == (1, 1)
    assert g._maximal_nodes().tolist() == [0, 1, 2]


def test_q08_identical_filters_mapper_bounded():
    """Red-team Q08: 3,000 identical 9-d filters made C(900, 3) triangles (GBs). Now one
    node, in a subprocess capped at 1.5 GB of address space, in seconds; and a cover that
    truly puts a point in 900 nodes is refused with the limit, the count and the fix."""
    code = textwrap.dedent("""
        import resource, time
        resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
        import numpy as np
        from filtertopo.errors import InputError
        from filtertopo.mapper import mapper_graph
        X = np.tile(np.random.default_rng(0).normal(size=9), (3000, 1))
        t = time.perf_counter()
        for kw in ({}, {"n_intervals": 30}, {"n_intervals": "paper", "metric": "euclidean"}):
            g = mapper_graph(X, **kw)
            assert g.n_nodes == 1 and g.params["n_intervals"] == [1, 1], g.params
            assert g.betti() == (1, 0) and len(g.triangles()) == 0
        assert time.perf_counter() - t < 60
        Z = np.random.default_rng(0).normal(size=(3000, 9))
        try:
            mapper_graph(Z, n_intervals=30, overlap=0.99)
        except InputError as e:
            msg = str(e)
            assert "MAX_NERVE_SIMPLICES" in msg and "200,000" in msg and "404,550" in msg
            assert "n_intervals" in msg and "overlap" in msg
        else:
            raise AssertionError("no InputError")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_triangle_cap_raises_input_error(monkeypatch):
    X = circle(300, 0.1)
    g = mapper_graph(X, n_intervals=30)
    n_tri = len(g.triangles())
    assert 10 < n_tri < MAX_NERVE_SIMPLICES
    monkeypatch.setattr(graph_mod, "MAX_NERVE_SIMPLICES", 10)
    with pytest.raises(InputError, match=r"MAX_NERVE_SIMPLICES = 10 .*triangles|triangles.*MAX_NERVE"):
        g.triangles()
