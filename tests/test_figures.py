"""Figures: read back the artists' data (not pixels); no global state touched."""

from types import SimpleNamespace

from filtertopo.result import BarSummary

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.offsetbox import AnnotationBbox

from filtertopo.errors import InputError
from filtertopo.mapper import mapper_graph
from filtertopo.report import (CIRCLE_CMAP, FILTER_CMAP, gallery_order, plot_barcode,
                               plot_circle, plot_core_projection, plot_diagram, plot_filter,
                               plot_gallery, plot_mapper, plot_overview)
from filtertopo.report._raster import filter_mosaic, filters_rgba, png_bytes
from filtertopo.report.circle import circle_picks, gallery_pick
from filtertopo.report.figures import node_colors

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
                              n_core=len(X), bars=BarSummary(h1_top=(0.9, 0.1))) for i in range(5)]
    fig = plot_overview(SimpleNamespace(layers=layers), ncols=3)
    assert [a.get_label() for a in fig.axes] == [f"conv{i}" for i in range(5)]
    assert "circle" in fig.axes[0].get_title()


def layer_with_theta(n=300, seed=0, shift=1.0):
    """A primary-circle layer whose circular coordinate is the true angle plus a shift."""
    X, th = circle(n, seed)
    return SimpleNamespace(name="conv1", core=X.astype(np.float32), kernel_shape=(3, 3),
                           verdict="circle", theta=np.mod(th + shift, 2 * np.pi).astype(np.float32))


def circle_boxes(ax):
    return {int(a.get_gid().rsplit("-", 1)[1]): a for a in ax.artists
            if isinstance(a, AnnotationBbox) and (a.get_gid() or "").startswith("circle-filter-")}


def test_circle_thumbnails_sit_at_theta():
    layer = layer_with_theta()
    ax = plot_circle(layer, n=16)
    boxes = circle_boxes(ax)
    assert 12 <= len(boxes) <= 16  # one per non-empty arc
    theta = layer.theta.astype(np.float64)
    for i, box in boxes.items():
        np.testing.assert_allclose(box.xy, (np.cos(theta[i]), np.sin(theta[i])), atol=1e-6)
        # the thumbnail is that filter, in the house colour map
        np.testing.assert_allclose(box.offsetbox.get_data(), layer.core[i].reshape(3, 3), rtol=1e-6)
        assert box.offsetbox.image.get_cmap().name == FILTER_CMAP
    # the arcs are covered in order: angles of the thumbnails increase around the circle
    ang = np.sort(theta[list(boxes)])
    assert np.all(np.diff(ang) > 2 * np.pi / 16 / 4)
    dots = [c for c in ax.collections if isinstance(c, PathCollection)][0]
    assert len(dots.get_offsets()) == len(layer.core)
    assert dots.get_cmap().name == CIRCLE_CMAP and dots.norm.vmax == pytest.approx(2 * np.pi)


def test_circle_picks_are_typical_members_of_their_arc():
    layer = layer_with_theta(shift=0.0)
    theta = layer.theta.astype(np.float64)
    picks = circle_picks(theta, layer.core, 8)
    width = 2 * np.pi / 8
    for j, i in enumerate(picks):
        d = np.abs(np.angle(np.exp(1j * (theta[i] - j * width))))
        assert d <= width / 2 + 1e-9  # in arc j
        members = np.flatnonzero(np.abs(np.angle(np.exp(1j * (theta - j * width)))) < width / 2)
        mean = layer.core[members].astype(np.float64).mean(0)
        assert layer.core[i] @ mean >= (layer.core[members] @ mean).max() - 1e-5


def test_circle_needs_theta():
    layer = layer_with_theta()
    no = SimpleNamespace(**{**vars(layer), "theta": None, "verdict": "none"})
    with pytest.raises(InputError, match=r"theta.*None.*circular=True"):
        plot_circle(no)
    bad = SimpleNamespace(**{**vars(layer), "theta": layer.theta[:-1]})
    with pytest.raises(InputError, match="one angle per core filter"):
        plot_circle(bad)
    with pytest.raises(InputError, match="n must be"):
        plot_circle(layer, n=0)


def test_circle_returns_given_axes():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    assert plot_circle(layer_with_theta(), ax=ax, n=4) is ax


def test_gallery_order_follows_theta():
    layer = layer_with_theta(shift=2.5)
    order, label = gallery_order(layer.core, layer.theta)
    np.testing.assert_array_equal(order, np.argsort(layer.theta, kind="stable"))
    assert "circular coordinate" in label
    fig = plot_gallery(layer.core, order, n=12, ncols=6, title=f"ordered by {label}")
    shown = [int(a.get_label()) for a in fig.axes]
    np.testing.assert_array_equal(shown, gallery_pick(order, 12))
    assert np.all(np.diff(layer.theta[shown]) > 0)
    assert "circular coordinate" in fig.get_suptitle()


def test_gallery_order_falls_back_to_plane_angle():
    X, th = circle(200)
    order, label = gallery_order(X)
    assert label == "angle in the DCT e1/e2 plane"
    P = np.c_[np.cos(th), np.sin(th)]
    ang = np.arctan2(P[order, 1], P[order, 0])
    # the DCT angle is the true angle up to rotation/reflection: sorted order is cyclic
    steps = np.angle(np.exp(1j * np.diff(ang)))
    assert (np.abs(steps) < 0.3).mean() > 0.95
    assert gallery_order(np.random.default_rng(0).normal(size=(50, 25)))[1] == \
        "angle in the PC1/PC2 plane"
    with pytest.raises(InputError, match="one angle per core point"):
        gallery_order(X, th[:5])


def test_mapper_borders_circular_mean():
    layer = layer_with_theta(shift=0.0)
    theta = layer.theta.astype(np.float64)
    g = mapper_graph(layer.core, n_intervals=8, overlap=0.5)
    cm = matplotlib.colormaps[CIRCLE_CMAP]
    want = np.array([np.mod(np.angle(np.exp(1j * theta[m]).mean()), 2 * np.pi) for m in g.nodes])
    np.testing.assert_allclose(g.node_circular_mean(theta), want, atol=1e-9)
    np.testing.assert_allclose(node_colors(g, theta, circular=True), cm(want / (2 * np.pi)))
    ax = plot_mapper(g, layer.core, color=theta, circular=True)
    boxes = [a for a in ax.artists if isinstance(a, AnnotationBbox)]
    v = int(boxes[0].get_gid().split("-")[-1])
    np.testing.assert_allclose(boxes[0].patch.get_edgecolor(), cm(want[v] / (2 * np.pi)))
    assert "circular mean" in ax.get_title()
    assert "first lens" in plot_mapper(g, layer.core).get_title()
    with pytest.raises(InputError, match="needs values"):
        node_colors(g, None, circular=True)


def test_circular_mean_wraps_around_zero():
    g = mapper_graph(circle(60)[0], n_intervals=2, overlap=0.5)
    theta = np.full(g.n_points, 2 * np.pi - 0.05)
    theta[::2] = 0.05
    m = g.node_circular_mean(theta)
    assert np.all((m <= 0.05 + 1e-9) | (m >= 2 * np.pi - 0.05 - 1e-9))  # near 0, not near pi
    mixed = [v for v, mem in enumerate(g.nodes) if len(np.unique(theta[mem])) == 2]
    assert mixed and np.all(np.abs(g.node_mean(theta)[mixed] - np.pi) < 2.5)  # a linear mean


def test_mapper_permutation_invariant_any_permutation():
    """Regression: lens bits depended on the order of the points, so a point on an interval
    edge switched cover elements under most permutations (20 of 30 failed before)."""
    X, _ = circle(400)
    a = mapper_graph(X)
    for k in range(5):
        perm = np.random.default_rng(100 + k).permutation(len(X))
        c = mapper_graph(X[perm])
        assert sorted(sorted(perm[m].tolist()) for m in c.nodes) == sorted(m.tolist() for m in a.nodes)


def test_filters_rgba_matches_matplotlib():
    """Twin: the bulk lookup-table colouring equals imshow's colour map call."""
    P = np.random.default_rng(0).normal(size=(40, 9))
    P[3] = 0.0  # constant filter: no division by zero
    m = np.abs(P).max(1, keepdims=True)
    m[m == 0] = 1
    want = (matplotlib.colormaps[FILTER_CMAP]((P / m + 1) / 2) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(filters_rgba(P), want.reshape(40, 3, 3, 4))
    big = filters_rgba(P[:2], scale=4, alpha=False)
    assert big.shape == (2, 12, 12, 3)
    np.testing.assert_array_equal(big[:, ::4, ::4], want.reshape(40, 3, 3, 4)[:2, :, :, :3])
    with pytest.raises(InputError, match="kernel_shape"):
        filters_rgba(np.zeros((2, 10)))


def test_png_encoder_round_trip_and_mosaic_tiles():
    import io

    from PIL import Image

    P = np.random.default_rng(1).normal(size=(7, 9))
    mos = filter_mosaic(P, ncols=3, scale=2, pad=1)
    assert mos.shape == (1 + 3 * 7, 1 + 3 * 7, 3)
    tiles = filters_rgba(P, scale=2, alpha=False)
    for k in range(7):
        r, c = divmod(k, 3)
        np.testing.assert_array_equal(mos[1 + 7 * r:7 + 7 * r, 1 + 7 * c:7 + 7 * c], tiles[k])
    assert (mos[-7:, -7:] == 255).all()  # empty slot stays background
    for img in (mos, filters_rgba(P)[0]):
        back = np.asarray(Image.open(io.BytesIO(png_bytes(img))))
        np.testing.assert_array_equal(back, img)


def test_plot_scales_draws_every_cell():
    from filtertopo import analyze_points
    from filtertopo.report.figures import plot_scales
    from filtertopo.shapes import primary_filters

    rng = np.random.default_rng(0)
    X = primary_filters(rng.uniform(0, 2 * np.pi, 300)) + 0.05 * rng.normal(size=(300, 9))
    layer = analyze_points(X, scales=True, n_landmarks=100)
    ax = plot_scales(layer)
    assert len(ax.texts) == len(layer.scales.cells) == 9
    assert layer.scales.majority in ax.get_title()
    with pytest.raises(Exception, match="no scale grid"):
        plot_scales(analyze_points(X, n_landmarks=100))
