"""From conv kernels to a point cloud of spatial filters (Gabrielsson & Carlsson 2019, §2).

Every ``(out, in)`` slice ``W[o, i]`` of a kernel of shape ``(C_out, C_in, kh, kw)``
is one point of ``R^(kh*kw)``, with its provenance ``(source, out, in)``. Grouped
and depthwise convolutions need nothing special: their weight already holds one
slice per ``(out, in-within-group)`` pair. Kernels of the same layer from several
checkpoints are pooled, as the paper pools 100 networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["FilterSet", "filters_from_kernels"]


@dataclass(frozen=True)
class FilterSet:
    """Spatial filters of one layer, possibly pooled over several checkpoints.

    Attributes
    ----------
    name : str
        Layer name.
    points : ndarray of shape (n_filters, kh * kw)
        Raw filters, flattened row-major (row index <-> y, column index <-> x).
    provenance : ndarray of shape (n_filters, 3), int64
        ``(source, out, in)`` of every filter; ``source`` indexes the checkpoints.
    kernel_shape : tuple of int
        ``(kh, kw)``.
    shapes : tuple of tuple
        The full kernel shape in each source.
    """

    name: str
    points: np.ndarray
    provenance: np.ndarray
    kernel_shape: tuple
    shapes: tuple

    def __len__(self) -> int:
        return len(self.points)


def filters_from_kernels(name: str, kernels) -> FilterSet:
    """Pool the ``(out, in)`` slices of one layer's kernels from several sources.

    Parameters
    ----------
    name : str
    kernels : sequence of ndarray of shape (C_out, C_in, kh, kw)
        One kernel per source (checkpoint); all must share ``(kh, kw)``.

    Examples
    --------
    >>> import numpy as np
    >>> fs = filters_from_kernels("conv1", [np.zeros((4, 2, 3, 3)), np.ones((1, 2, 3, 3))])
    >>> fs.points.shape, fs.provenance[-1].tolist()
    ((10, 9), [1, 0, 1])
    """
    kernels = [np.asarray(w) for w in kernels]
    if not kernels:
        raise InputError(f"layer {name!r}: no kernels to pool.")
    ks = {tuple(w.shape[2:]) for w in kernels}
    if len(ks) != 1 or any(w.ndim != 4 for w in kernels):
        raise InputError(
            f"layer {name!r}: kernels to pool must all be 4-D with the same spatial size; got shapes "
            f"{[w.shape for w in kernels]}. Pool only checkpoints of the same architecture."
        )
    pts, prov = [], []
    for s, w in enumerate(kernels):
        o, i, kh, kw = w.shape
        pts.append(w.reshape(o * i, kh * kw).astype(np.float64))
        oo, ii = np.meshgrid(np.arange(o), np.arange(i), indexing="ij")
        prov.append(np.stack([np.full(o * i, s), oo.ravel(), ii.ravel()], axis=1))
    return FilterSet(name, np.concatenate(pts), np.concatenate(prov).astype(np.int64),
                     ks.pop(), tuple(tuple(w.shape) for w in kernels))
