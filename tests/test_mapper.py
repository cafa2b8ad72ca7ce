"""Mapper graph: known answers on the primary circle, contract, and twins (kmapper cover)."""

import networkx as nx
import numpy as np
import pytest

from filtertopo.errors import InputError
from filtertopo.mapper import MapperGraph, cover_intervals, mapper_graph


def primary_circle(n, noise, seed):
    """PAPER.md §4: P_theta[i, j] = c_j cos th + c_i sin th, plus noise, mean-centred, unit norm."""
    rng = np.random.default_rng(seed)
    th = rng.uniform(0, 2 * np.pi, n)
    c = np.array([-1.0, 0.0, 1.0])
    P = np.cos(th)[:, None, None] * c[None, None, :] + np.sin(th)[:, None, None] * c[:, None]
    P = P.reshape(n, 9) + noise * rng.standard_normal((n, 9))
    P -= P.mean(axis=1, keepdims=True)
    return P / np.linalg.norm(P, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_primary_circle_one_loop_graph(seed):
    """Interval cover of the first PC with little overlap: the graph itself is one loop."""
    X = primary_circle(800, 0.05, seed)
    g = mapper_graph(X, lens="pca1", n_intervals=10, overlap=0.3, metric="euclidean")
    G = g.to_networkx()
    assert nx.number_connected_components(G) == 1
    assert len(nx.cycle_basis(G)) == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_primary_circle_one_loop_nerve_paper_cover(seed):
    """30 x 30 intervals, overlap 2/3: the 1-skeleton has many triangles, the nerve one loop."""
    X = primary_circle(800, 0.05, seed)
    g = mapper_graph(X, n_intervals="paper", metric="euclidean")
    assert g.params["n_intervals"] == [30, 30]
    assert g.betti() == (1, 1)
    assert len(nx.cycle_basis(g.to_networkx())) > 1  # why betti() exists


def test_primary_circle_paper_defaults_giant_loop():
    """Variance-normalised metric (amplifies the noise of the always-zero centre pixel):
    still one loop, carried by a component holding nearly all points."""
    X = primary_circle(2000, 0.05, 4)
    g = mapper_graph(X, n_intervals="paper")
    G = g.to_networkx()
    big = max(nx.connected_components(G), key=len)
    covered = set().union(*[set(g.nodes[v].tolist()) for v in big])
    assert len(covered) >= 0.99 * len(X)
    assert g.betti()[1] == 1


def test_auto_cut_beats_per_element_gap():
    """Regression: the plain per-element histogram gap splits arcs spuriously (about 3x the
    nodes) and here breaks the loop; the floored "auto" cut keeps it."""
    X = primary_circle(800, 0.05, 0)
    gap = mapper_graph(X, n_intervals=30, metric="euclidean", cut="gap")
    auto = mapper_graph(X, n_intervals=30, metric="euclidean")
    assert gap.n_nodes > 2 * auto.n_nodes
    assert gap.betti() != (1, 1) and auto.betti() == (1, 1)


def test_two_blobs_two_components():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 0.1, (200, 3)), rng.normal(0, 0.1, (200, 3)) + [5, 0, 0]]
    g = mapper_graph(X, lens="pca1", n_intervals=10, overlap=0.5, metric="euclidean")
    assert g.n_components() == 2
    assert g.betti() == (2, 0)


def test_cover_matches_keplermapper():
    km = pytest.importorskip("kmapper")
    rng = np.random.default_rng(0)
    L = rng.normal(size=(300, 2))
    mine = cover_intervals(L, 7, 2 / 3)
    cov = km.Cover(n_cubes=7, perc_overlap=2 / 3)
    data = np.c_[np.arange(len(L)), L]
    centers = cov.fit(data)
    theirs = [np.sort(cov.transform_single(data, c)[:, 0].astype(int)) for c in centers]
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        np.testing.assert_array_equal(a, b)


def test_nodes_match_keplermapper_map():
    km = pytest.importorskip("kmapper")
    from sklearn.cluster import DBSCAN

    X = primary_circle(300, 0.05, 0)
    cl = DBSCAN(eps=0.5, min_samples=1)
    g = mapper_graph(X, lens=X[:, :2], n_intervals=6, overlap=0.5, metric="euclidean",
                     clusterer=cl, min_cover_size=1)
    res = km.KeplerMapper(verbose=0).map(X[:, :2], X, clusterer=cl,
                                         cover=km.Cover(n_cubes=6, perc_overlap=0.5))
    mine = sorted(tuple(m.tolist()) for m in g.nodes)
    theirs = sorted(tuple(sorted(v)) for v in res["nodes"].values())
    assert mine == theirs  # kmapper keeps 1-point elements here: DBSCAN min_samples=1
    mine_edges = {frozenset((u, v)) for u, v in g.edges.tolist()}
    key = {tuple(sorted(v)): k for k, v in res["nodes"].items()}
    ids = [key[tuple(m.tolist())] for m in g.nodes]
    theirs_edges = {frozenset((a, b)) for a, bs in res["links"].items() for b in bs}
    assert {frozenset((ids[u], ids[v])) for u, v in map(tuple, mine_edges)} == theirs_edges


def test_contract_and_exports():
    X = primary_circle(300, 0.05, 0)
    g = mapper_graph(X, n_intervals=8, overlap=0.5)
    assert isinstance(g, MapperGraph)
    assert g.lens.shape == (300, 2)
    assert (g.edges[:, 0] < g.edges[:, 1]).all()
    assert set(np.concatenate(g.nodes).tolist()) == set(range(300))
    j = g.to_json()
    import json

    json.dumps(j)
    assert len(j["nodes"]) == g.n_nodes and len(j["edges"]) == len(g.edges)
    G = g.to_networkx()
    assert G.number_of_nodes() == g.n_nodes and G.number_of_edges() == len(g.edges)
    # edges are exactly the pairs of nodes sharing a point (slow twin)
    slow = {(u, v) for u in range(g.n_nodes) for v in range(u + 1, g.n_nodes)
            if np.intersect1d(g.nodes[u], g.nodes[v]).size}
    assert slow == set(map(tuple, g.edges.tolist()))
    assert g.node_mean(X).shape == (g.n_nodes, 9)
    with pytest.raises(AttributeError):
        g.params = {}


def test_deterministic_and_permutation_invariant():
    X = primary_circle(400, 0.05, 0)
    a, b = mapper_graph(X), mapper_graph(X)
    assert [m.tolist() for m in a.nodes] == [m.tolist() for m in b.nodes]
    perm = np.random.default_rng(1).permutation(len(X))
    c = mapper_graph(X[perm])
    assert sorted(sorted(perm[m].tolist()) for m in c.nodes) == \
        sorted(m.tolist() for m in a.nodes)


def test_custom_lens_1d():
    t = np.linspace(0, 2 * np.pi, 300, endpoint=False)
    X = np.c_[np.cos(t), np.sin(t)]
    g = mapper_graph(X, lens=t, n_intervals=10, overlap=0.3)
    assert g.betti() == (1, 0)  # an interval: the angle lens cuts the circle open
    assert g.params["lens"] == "custom"


@pytest.mark.parametrize("kw, word", [
    (dict(overlap=1.0), "overlap"), (dict(n_intervals=0), "n_intervals"),
    (dict(metric="cosine"), "metric"), (dict(lens="tsne"), "lens"),
    (dict(cut=-1.0), "cut"), (dict(lens=np.zeros(3)), "lens"),
])
def test_input_errors_name_parameter(kw, word):
    X = primary_circle(50, 0.05, 0)
    with pytest.raises(InputError, match=word):
        mapper_graph(X, **kw)


def test_input_errors_points():
    with pytest.raises(InputError, match="points"):
        mapper_graph(np.zeros(5))
    with pytest.raises(InputError, match="NaN"):
        mapper_graph(np.full((5, 2), np.nan))
