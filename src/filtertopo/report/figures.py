"""Matplotlib figures of filter spaces: barcodes, diagrams, filters, projections, Mapper graphs.

One drawing convention for filters everywhere (figures and HTML): a diverging colour map
(``FILTER_CMAP``, red positive, blue negative) with the scale symmetric about zero, so
white is zero. Circle-valued quantities (the circular coordinate ``theta`` of
:mod:`filtertopo.circular`) use the cyclic map ``CIRCLE_CMAP`` on ``[0, 2 pi)``. Every
function takes ``ax=None`` (or ``fig=None`` for multi-panel figures), returns what it drew
on, and never changes global style, shows or saves (persim's ``visuals.py`` habit).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._common import (_TWO_PI, CIRCLE_CMAP, _new_ax, _new_fig, _thumb, filter_image,
                      gallery_pick, projection)
from ._raster import FILTER_CMAP, filter_cmap, filters_rgba

__all__ = [
    "FILTER_CMAP", "CIRCLE_CMAP", "filter_image", "filter_rgba", "plot_barcode",
    "plot_diagram", "plot_filter", "plot_core_projection", "plot_gallery", "plot_mapper",
    "plot_overview", "plot_scales", "mapper_layout", "node_colors", "projection",
]

_DIM_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def filter_rgba(f, kernel_shape=None) -> np.ndarray:
    """RGBA image (uint8, shape (kh, kw, 4)) of a filter in the house convention.

    See :func:`filtertopo.report._raster.filters_rgba` for many filters at once.
    """
    return filters_rgba(filter_image(f, kernel_shape)[None])[0]


def _inf_cap(diagrams):
    finite = [d[np.isfinite(d)] for d in diagrams.values() if len(d)]
    vals = np.concatenate(finite) if finite else np.zeros(1)
    hi = float(vals.max()) if vals.size else 1.0
    return hi * 1.1 if hi > 0 else 1.0


def _as_diagrams(diagrams):
    return {int(k): np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in diagrams.items()}


def plot_barcode(diagrams, ax=None, *, dims=None, max_bars=50):
    """Persistence barcode: one horizontal bar per interval, longest first, per dimension.

    Parameters
    ----------
    diagrams : dict of int -> ndarray of shape (m, 2)
        Birth-death pairs per homology dimension; ``inf`` deaths are drawn to the right
        edge with an arrow head.
    ax : matplotlib Axes, optional
    dims : sequence of int, optional
        Dimensions to draw (default: all).
    max_bars : int, default=50
        Longest bars kept per dimension.

    Returns
    -------
    Axes
        One ``LineCollection`` per dimension, labelled ``"H<dim>"``.
    """
    from matplotlib.collections import LineCollection

    ax = _new_ax(ax)
    dg = _as_diagrams(diagrams)
    cap = _inf_cap(dg)
    y = 0
    for dim in sorted(dg) if dims is None else dims:
        d = dg.get(dim, np.zeros((0, 2)))
        life = np.where(np.isfinite(d[:, 1]), d[:, 1], np.inf) - d[:, 0]
        d = d[np.argsort(-life, kind="stable")][:max_bars]
        if not len(d):
            continue
        death = np.where(np.isfinite(d[:, 1]), d[:, 1], cap)
        ys = y + np.arange(len(d))
        segs = np.stack([np.c_[d[:, 0], ys], np.c_[death, ys]], axis=1)
        ax.add_collection(LineCollection(segs, colors=_DIM_COLORS[dim % 4], linewidths=2,
                                         label=f"H{dim}"))
        inf = ~np.isfinite(d[:, 1])
        if inf.any():
            ax.plot(np.full(inf.sum(), cap), ys[inf], ">", color=_DIM_COLORS[dim % 4], ms=4)
        y += len(d) + 1
    ax.set_xlim(0, cap * 1.03)
    ax.set_ylim(-1, max(y, 1))
    ax.set_yticks([])
    ax.set_xlabel("scale")
    if y:
        ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_diagram(diagrams, ax=None, *, dims=None):
    """Persistence diagram: birth vs death per dimension, diagonal, ``inf`` on a top line.

    Returns
    -------
    Axes
        One scatter (``PathCollection``) per dimension, labelled ``"H<dim>"``.
    """
    ax = _new_ax(ax)
    dg = _as_diagrams(diagrams)
    cap = _inf_cap(dg)
    ax.plot([0, cap], [0, cap], color="0.6", lw=1)
    ax.axhline(cap, color="0.8", ls="--", lw=1)
    for dim in sorted(dg) if dims is None else dims:
        d = dg.get(dim, np.zeros((0, 2)))
        death = np.where(np.isfinite(d[:, 1]), d[:, 1], cap)
        ax.scatter(d[:, 0], death, s=12, color=_DIM_COLORS[dim % 4], label=f"H{dim}")
    ax.set_xlabel("birth")
    ax.set_ylabel("death")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_filter(filter, ax=None, *, kernel_shape=None, title=None):
    """One filter as an image: ``FILTER_CMAP`` with limits ``±max|filter|``.

    Examples
    --------
    >>> ax = plot_filter(np.array([-1., 0, 1] * 3))
    >>> ax.images[0].norm.vmin, ax.images[0].norm.vmax
    (-1.0, 1.0)
    """
    ax = _new_ax(ax)
    img = filter_image(filter, kernel_shape)
    m = float(np.abs(img).max()) or 1.0
    ax.imshow(img, cmap=filter_cmap(), vmin=-m, vmax=m, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize="small")
    return ax


def plot_core_projection(core, ax=None, *, basis="auto", color=None, n_thumbnails=12,
                         kernel_shape=None, zoom=4.0, circular=False):
    """Core points on a plane with a few filter thumbnails around it.

    Parameters
    ----------
    core : ndarray of shape (n, d)
    basis : {"auto", "dct", "pca"}, default="auto"
        ``"auto"``: the DCT (e1, e2) plane for 3x3 filters (the primary circle is its unit
        circle), else the first two principal components.
    color : ndarray of shape (n,), optional
        Per-point values for the scatter colour (e.g. a circular coordinate).
    circular : bool, default=False
        ``color`` holds angles in radians: drawn with ``CIRCLE_CMAP`` on ``[0, 2 pi)``.
    n_thumbnails : int, default=12
        Thumbnails of the points nearest to evenly spaced angles around the centre.

    Returns
    -------
    Axes
    """
    ax = _new_ax(ax)
    core = np.asarray(core, dtype=np.float64)
    P, labels = projection(core, basis)
    if color is None:
        ax.scatter(P[:, 0], P[:, 1], s=3, c="0.4", alpha=0.5, linewidths=0)
    else:
        c = np.asarray(color, dtype=np.float64).ravel()
        if c.shape != (len(P),):
            raise InputError(f"color must have one value per core point ({len(P)}); got shape "
                             f"{np.shape(color)}. Pass e.g. the layer's own theta, or None.")
        c = np.mod(c, _TWO_PI) if circular else c
        ax.scatter(P[:, 0], P[:, 1], s=3, c=c, alpha=0.5, linewidths=0,
                   cmap=filter_cmap(CIRCLE_CMAP if circular else "viridis"),
                   **(dict(vmin=0.0, vmax=_TWO_PI) if circular else {}))
    if n_thumbnails and len(P):
        ang = np.arctan2(P[:, 1], P[:, 0])
        r = np.hypot(P[:, 0], P[:, 1])
        rmax = float(r.max()) or 1.0
        seen = set()
        for a in np.linspace(-np.pi, np.pi, n_thumbnails, endpoint=False):
            d = np.abs(np.angle(np.exp(1j * (ang - a)))) - 1e-3 * r
            i = int(np.argmin(d))
            if i in seen:
                continue
            seen.add(i)
            _thumb(ax, core[i], (1.35 * rmax * np.cos(a), 1.35 * rmax * np.sin(a)),
                   kernel_shape, zoom)
        lim = 1.6 * rmax
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    return ax


def plot_gallery(core, order=None, *, n=48, ncols=12, kernel_shape=None, fig=None, title=None):
    """Grid of filters in a given order (e.g. from :func:`~filtertopo.report.circle.gallery_order`).

    Parameters
    ----------
    core : ndarray of shape (n_points, d)
    order : ndarray of int, optional
        Point indices in display order (default: as given); ``n`` of them, evenly spaced
        along the order, are drawn left to right, top to bottom.
    n : int, default=48
    ncols : int, default=12
    title : str, optional
        Figure title, e.g. ``"ordered by " + label`` with ``label`` from
        :func:`filtertopo.report.circle.gallery_order`.

    Returns
    -------
    Figure
        One Axes per drawn filter, each with its point index as ``ax.get_label()``.
    """
    core = np.asarray(core, dtype=np.float64)
    order = np.arange(len(core)) if order is None else np.asarray(order, dtype=np.int64)
    pick = gallery_pick(order, n)
    nrows = max(1, -(-len(pick) // ncols))
    fig = _new_fig(fig, (ncols * 0.6, nrows * 0.6 + (0.3 if title else 0)))
    for k, i in enumerate(pick):
        ax = fig.add_subplot(nrows, ncols, k + 1, label=str(int(i)))
        plot_filter(core[i], ax=ax, kernel_shape=kernel_shape)
    if title:
        fig.suptitle(title, fontsize="small")
    return fig


def mapper_layout(graph, *, seed=0) -> np.ndarray:
    """Node positions, shape (n_nodes, 2): mean lens of each node for a 2-D lens, else a
    seeded spring layout (networkx)."""
    if graph.n_nodes == 0:
        return np.zeros((0, 2))
    if graph.lens.shape[1] >= 2:
        return graph.node_mean(graph.lens[:, :2])
    import networkx as nx

    pos = nx.spring_layout(graph.to_networkx(), seed=seed)
    return np.array([pos[v] for v in range(graph.n_nodes)])


def node_colors(graph, values=None, cmap=None, *, circular=False):
    """RGBA border colour per node from per-point ``values`` (default: the first lens).

    Parameters
    ----------
    graph : MapperGraph
    values : ndarray of shape (n_points,), optional
        Per-point values; default the first lens.
    cmap : str, optional
        Default ``"viridis"`` over the nodes' range, or ``CIRCLE_CMAP`` when circular.
    circular : bool, default=False
        ``values`` are angles in radians: each node gets the circular mean of its
        members' angles (:meth:`MapperGraph.node_circular_mean`) on a cyclic map over
        ``[0, 2 pi)``, so nodes either side of ``0 = 2 pi`` get the same colour.

    Returns
    -------
    ndarray of shape (n_nodes, 4), float
    """
    cm = filter_cmap(cmap or (CIRCLE_CMAP if circular else "viridis"))
    if circular:
        if values is None:
            raise InputError("node_colors(circular=True) needs values, the per-point angles "
                             "in radians; got None. Pass e.g. layer.theta of the graph's points.")
        return cm(graph.node_circular_mean(values) / _TWO_PI)
    v = graph.node_mean(graph.lens[:, 0] if values is None else values)
    lo, hi = float(v.min()) if len(v) else 0.0, float(v.max()) if len(v) else 1.0
    return cm((v - lo) / ((hi - lo) or 1.0))


def plot_mapper(graph, core, ax=None, *, color=None, kernel_shape=None, zoom=2.0,
                max_nodes=400, seed=0, circular=False):
    """Mapper graph with each node drawn as its mean filter, border coloured by ``color``.

    Parameters
    ----------
    graph : MapperGraph
    core : ndarray of shape (n_points, d)
        The points the graph was built from.
    color : ndarray of shape (n_points,), optional
        Per-point values averaged per node for the border colour (lens, density or
        circular coordinate); default the first lens.
    circular : bool, default=False
        ``color`` holds angles (e.g. ``layer.theta``): borders show each node's circular
        mean on the cyclic ``CIRCLE_CMAP``.
    max_nodes : int, default=400
        Largest nodes drawn as images beyond this count (the rest as dots).

    Returns
    -------
    Axes
        Edges as one ``LineCollection``; one ``AnnotationBbox`` per image node
        (``gid="mapper-node-<id>"``).
    """
    from matplotlib.collections import LineCollection

    ax = _new_ax(ax)
    pos = mapper_layout(graph, seed=seed)
    means = graph.node_mean(core)
    cols = node_colors(graph, color, circular=circular)
    if len(graph.edges):
        ax.add_collection(LineCollection(pos[graph.edges], colors="0.6", linewidths=0.8,
                                         zorder=0))
    big = np.argsort(-graph.sizes, kind="stable")[:max_nodes]
    rest = np.setdiff1d(np.arange(graph.n_nodes), big)
    if len(rest):
        ax.scatter(pos[rest, 0], pos[rest, 1], s=6, c=cols[rest])
    for v in big:
        box = _thumb(ax, means[v], pos[v], kernel_shape, zoom, edgecolor=cols[v])
        box.set_gid(f"mapper-node-{v}")
    if len(pos):
        pad = 0.08 * float(np.ptp(pos, axis=0).max() or 1.0)
        ax.set_xlim(pos[:, 0].min() - pad, pos[:, 0].max() + pad)
        ax.set_ylim(pos[:, 1].min() - pad, pos[:, 1].max() + pad)
    ax.set_xticks([])
    ax.set_yticks([])
    what = "first lens" if color is None else ("circular mean of θ" if circular else "mean of color")
    ax.set_title(f"Mapper: {graph.n_nodes} nodes, {len(graph.edges)} edges; border: {what}",
                 fontsize="small")
    return ax


def plot_overview(result, *, fig=None, ncols=4, basis="auto", n_thumbnails=8):
    """Whole-model overview: one panel per layer in depth order (the paper's VGG16 figure).

    Each panel is the layer's core projection (:func:`plot_core_projection`), points
    coloured by the circular coordinate where the layer has one, titled with the layer
    name, core size, verdict and the two longest H1 bars.

    Parameters
    ----------
    result : AnalysisResult
        Anything with ``.layers``, each with ``name``, ``core``, ``kernel_shape``,
        ``verdict``, ``n_core`` and ``summary``.

    Returns
    -------
    Figure
        One Axes per layer, ``ax.get_label()`` the layer name.
    """
    layers = list(result.layers)
    ncols = max(1, min(ncols, len(layers)))
    nrows = max(1, -(-len(layers) // ncols))
    fig = _new_fig(fig, (3.2 * ncols, 3.2 * nrows))
    for k, layer in enumerate(layers):
        ax = fig.add_subplot(nrows, ncols, k + 1, label=layer.name)
        ks = tuple(layer.kernel_shape) if layer.kernel_shape else None
        theta = getattr(layer, "theta", None)
        if theta is not None and np.shape(theta) != (len(layer.core),):
            theta = None  # a stale theta: draw without it rather than fail the overview
        if len(layer.core):
            plot_core_projection(layer.core, ax=ax, basis=basis, n_thumbnails=n_thumbnails,
                                 kernel_shape=ks, zoom=3.0, color=theta,
                                 circular=theta is not None)
        top = list(layer.bars.h1_top)[:2]
        bars = ", ".join(f"{t:.2f}" for t in top)
        ax.set_title(f"{k + 1}. {layer.name} ({layer.n_core} pts)\n{layer.verdict}"
                     + (f"; H1 {bars}" if bars else ""), fontsize="small")
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(labelsize="x-small")
    return fig


def plot_scales(layer, ax=None):
    """The multi-scale verdict: longest H1 bar over the (k, p) grid, each cell labelled.

    Parameters
    ----------
    layer : LayerResult
        Analysed with ``scales=True`` (``layer.scales``, a :class:`~filtertopo.result.ScaleGrid`).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    sc = getattr(layer, "scales", None)
    if sc is None or not sc.cells:
        raise InputError(f"layer {getattr(layer, 'name', '?')!r} has no scale grid; analyse with scales=True "
                         "(--scales).")
    ax = _new_ax(ax)  # a Figure of its own, not pyplot's: nothing opened behind the caller's back
    cells = sc.cells
    ks = sorted({c.k for c in cells})
    ps = sorted({c.p for c in cells})
    Z = np.full((len(ps), len(ks)), np.nan)
    for c in cells:
        Z[ps.index(c.p), ks.index(c.k)] = c.h1_1
    im = ax.imshow(Z, origin="lower", cmap="Greens", vmin=0, vmax=max(1.0, np.nanmax(Z)), aspect="auto")
    for c in cells:
        ax.text(ks.index(c.k), ps.index(c.p), f"{c.verdict}\n{c.h1_1:.2f}", ha="center",
                va="center", fontsize=7)
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_yticks(range(len(ps)), [f"{p:g}" for p in ps])
    ax.set_xlabel("k")
    ax.set_ylabel("p")
    ax.set_title(f"{sc.majority} in {sc.support:.0%} of the grid", fontsize=9)
    ax.figure.colorbar(im, ax=ax, label="longest H1 bar")
    return ax
