"""Figures: read back the artists' data (not pixels); no global state touched."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.offsetbox import AnnotationBbox

from filtertopo.mapper import mapper_graph
from filtertopo.report import (FILTER_CMAP, plot_barcode, plot_core_projection, plot_diagram,
                               plot_filter, plot_gallery, plot_mapper, plot_overview)

DGMS = {0: np.array([[0, 0.1], [0, 0.3], [0, np.inf]]), 1: np.array([[0.2, 0.9], [0.3, 0.35]])}


def circle(n=300, seed=0):
    rng = np.random.default_rng(seed)
    th = rng.uniform(0, 2 * np.pi, n)
    c = np.array([-1.0, 0, 1])
    P = (np.cos(th)[:, None, None] * c + np.sin(th)[:, None, None] * c[:, None]).reshape(n, 9)
    P += 0.03 * rng.standard_normal(P.shape)
    P -= P.mean(1, keepdims=True)
    return P / np.linalg.norm(P, axis=1, keepdims=True), th


@pytest.fixture(autouse=True)
def no_global_changes():
    before = dict(matplotlib.rcParams)
    import matplotlib.pyplot as plt

    n = len(plt.get_fignums())
    yield
    assert dict(matplotlib.rcParams) == before
    assert len(plt.get_fignums()) == n  # nothing opened behind the user's back


def test_barcode_bars_match_diagram():
    ax = plot_barcode(DGMS)
    lcs = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [c.get_label() for c in lcs] == ["H0", "H1"]
    h0 = np.array(lcs[0].get_segments())
    assert len(h0) == 3
    cap = ax.get_xlim()[1]
    assert h0[0, 1, 0] > 0.9 and h0[0, 1, 0] <= cap  # inf bar drawn first, to the cap
    h1 = np.array(lcs[1].get_segments())
    np.testing.assert_allclose(h1[:, :, 0], [[0.2, 0.9], [0.3, 0.35]])  # longest first


def test_diagram_points():
    ax = plot_diagram(DGMS)
    sc = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(sc[1].get_offsets(), DGMS[1])
    assert np.isfinite(sc[0].get_offsets()).all()  # inf drawn on the top line


def test_filter_diverging_centred():
    f = np.array([0.0, 0.5, -2.0, 1, 1, 1, 0, 0, 0])
    ax = plot_filter(f)
    im = ax.images[0]
    assert im.get_cmap().name == FILTER_CMAP
    assert im.norm.vmin == -2.0 and im.norm.vmax == 2.0
    np.testing.assert_array_equal(im.get_array(), f.reshape(3, 3))


def test_axes_passed_in_is_returned():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    assert plot_filter(np.arange(9.0), ax=ax) is ax
    assert plot_barcode(DGMS, ax=ax) is ax


def test_core_projection_dct_plane_and_thumbnails():
    X, th = circle()
    ax = plot_core_projection(X, n_thumbnails=8)
    off = np.asarray(ax.collections[0].get_offsets())
    r = np.hypot(off[:, 0], off[:, 1])
    assert np.median(r) > 0.9  # primary circle ~ unit circle of the (e1, e2) plane
    boxes = [a for a in ax.artists if isinstance(a, AnnotationBbox)]
    assert 1 <= len(boxes) <= 8
    assert ax.get_xlabel() == "DCT e1"


def test_gallery_order():
    X, th = circle(100)
    order = np.argsort(th)
    fig = plot_gallery(X, order, n=10, ncols=5)
    labels = [int(a.get_label()) for a in fig.axes]
    assert len(labels) == 10
    assert np.all(np.diff(th[labels]) > 0)


def test_mapper_nodes_are_mean_filters():
    X, th = circle()
    g = mapper_graph(X, n_intervals=8, overlap=0.5)
    ax = plot_mapper(g, X)
    boxes = [a for a in ax.artists if isinstance(a, AnnotationBbox)]
    assert len(boxes) == g.n_nodes
    v = int(boxes[0].get_gid().split("-")[-1])
    np.testing.assert_allclose(boxes[0].offsetbox.get_data(), X[g.nodes[v]].mean(0).reshape(3, 3))
    lc = [c for c in ax.collections if isinstance(c, LineCollection)][0]
    assert len(lc.get_segments()) == len(g.edges)


def test_overview_one_panel_per_layer_in_order():
    X, _ = circle(120)
    layers = [SimpleNamespace(name=f"conv{i}", core=X, kernel_shape=(3, 3), verdict="circle",
                              n_core=len(X), summary={"h1_top": [0.9, 0.1]}) for i in range(5)]
    fig = plot_overview(SimpleNamespace(layers=layers), ncols=3)
    assert [a.get_label() for a in fig.axes] == [f"conv{i}" for i in range(5)]
    assert "circle" in fig.axes[0].get_title()
