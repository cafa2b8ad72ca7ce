"""Helpers shared by the figure modules of :mod:`filtertopo.report` (``figures``,
``circle``, ``html``, ``track_figures``), so that none of them imports another for them.

Private: the public names (``CIRCLE_CMAP``, ``filter_image``, ``projection``,
``gallery_pick``) are re-exported by :mod:`~filtertopo.report.figures` and
:mod:`~filtertopo.report.circle`, where they are documented.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._raster import filter_cmap

__all__ = ["CIRCLE_CMAP", "filter_image", "projection", "gallery_pick"]

#: Cyclic colour map of circle-valued coordinates (theta in [0, 2 pi)).
CIRCLE_CMAP = "twilight"
_TWO_PI = 2 * np.pi


def _new_ax(ax):
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(4, 3.2)).add_subplot()
    return ax


def _new_fig(fig, figsize):
    if fig is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, layout="constrained")
    return fig


def filter_image(f, kernel_shape=None) -> np.ndarray:
    """A flattened filter as a 2-D array of ``kernel_shape`` (square by default)."""
    f = np.asarray(f, dtype=np.float64)
    if f.ndim == 2:
        return f
    if kernel_shape is None:
        k = int(round(np.sqrt(f.size)))
        if k * k != f.size:
            raise InputError(f"filter of {f.size} values is not square; pass kernel_shape=(kh, kw).")
        kernel_shape = (k, k)
    return f.reshape(kernel_shape)


def _thumb(ax, f, xy, kernel_shape, zoom, edgecolor="0.3"):
    from matplotlib.colors import Normalize
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    img = filter_image(f, kernel_shape)
    m = float(np.abs(img).max()) or 1.0
    box = AnnotationBbox(OffsetImage(img, cmap=filter_cmap(), norm=Normalize(-m, m), zoom=zoom,
                                     interpolation="nearest"),
                         xy, frameon=True, pad=0.1,
                         bboxprops=dict(edgecolor=edgecolor, linewidth=1.5))
    ax.add_artist(box)
    return box


def projection(core, basis="auto"):
    """2-D coordinates of core points: DCT (e1, e2) for 3x3 with ``basis="auto"``, else PCA."""
    core = np.asarray(core, dtype=np.float64)
    if basis == "auto":
        basis = "dct" if core.shape[1] == 9 else "pca"
    if basis == "dct":
        from ..normalize import to_dct

        return to_dct(core)[:, :2], ("DCT e1", "DCT e2")
    from ..mapper import pca_lens

    return pca_lens(core, 2), ("PC 1", "PC 2")


def gallery_pick(order, n):
    """``n`` indices evenly spaced along ``order`` (all of them when ``n >= len(order)``)."""
    order = np.asarray(order, dtype=np.int64)
    if not len(order):
        return order
    return order[np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int))]
