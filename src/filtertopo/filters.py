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
    # Preallocated, filled per source: no per-source float64 copies or meshgrids to concatenate,
    # so peak memory is the result (8 * (kh*kw + 3) bytes per filter) plus one source's kernel.
    # float64 keeps values a float32 cast would overflow (1e300) or flush to zero (1e-300).
    kh, kw = ks.pop()
    n = sum(int(w.shape[0]) * int(w.shape[1]) for w in kernels)
    pts = np.empty((n, kh * kw), dtype=np.float64)
    prov = np.empty((n, 3), dtype=np.int64)
    at = 0
    for s, w in enumerate(kernels):
        o, i = int(w.shape[0]), int(w.shape[1])
        m = o * i
        pts[at:at + m] = w.reshape(m, kh * kw)
        prov[at:at + m, 0] = s
        prov[at:at + m, 1] = np.repeat(np.arange(o, dtype=np.int64), i)
        prov[at:at + m, 2] = np.tile(np.arange(i, dtype=np.int64), o)
        at += m
    return FilterSet(name, pts, prov, (kh, kw), tuple(tuple(w.shape) for w in kernels))
