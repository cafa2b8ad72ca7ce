"""Normalisation of spatial filters (Gabrielsson & Carlsson 2019, §2; Carlsson et al. 2008).

Each filter is mean-centred and divided by its Euclidean norm, so that the
points lie on the unit sphere of zero-mean filters. Filters whose centred norm
is (near) zero cannot be normalised: they are dropped and counted. For 3x3
filters the D-norm (graph Laplacian of the 4-neighbour grid) and the DCT basis
of Lee, Pedersen & Mumford give coordinates on S^7 in R^8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = [
    "Normalized",
    "normalize_filters",
    "DCT_BASIS",
    "d_norm",
    "to_dct",
    "from_dct",
]

_E = [
    np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]]) / np.sqrt(6),
    np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]]) / np.sqrt(6),
    np.array([[1, -2, 1], [1, -2, 1], [1, -2, 1]]) / np.sqrt(54),
    np.array([[1, 1, 1], [-2, -2, -2], [1, 1, 1]]) / np.sqrt(54),
    np.array([[1, 0, -1], [0, 0, 0], [-1, 0, 1]]) / np.sqrt(8),
    np.array([[1, 0, -1], [-2, 0, 2], [1, 0, -1]]) / np.sqrt(48),
    np.array([[1, -2, 1], [0, 0, 0], [-1, 2, -1]]) / np.sqrt(48),
    np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]]) / np.sqrt(216),
]
#: DCT basis of 3x3 patches, shape (8, 9), rows e1..e8 flattened row-major.
#: Orthonormal for the D-norm: ``DCT_BASIS @ D_MATRIX @ DCT_BASIS.T`` is the identity.
DCT_BASIS = np.stack([e.ravel() for e in _E])


def _grid_laplacian(h: int, w: int) -> np.ndarray:
    n = h * w
    D = np.zeros((n, n))
    for i in range(h):
        for j in range(w):
            a = i * w + j
            for di, dj in ((0, 1), (1, 0)):
                ii, jj = i + di, j + dj
                if ii < h and jj < w:
                    b = ii * w + jj
                    D[a, a] += 1
                    D[b, b] += 1
                    D[a, b] -= 1
                    D[b, a] -= 1
    return D


#: Graph Laplacian of the 4-neighbour 3x3 grid: ``x @ D_MATRIX @ x`` is the squared D-norm.
D_MATRIX = _grid_laplacian(3, 3)


@dataclass(frozen=True)
class Normalized:
    """Normalised filters and what was dropped.

    Attributes
    ----------
    points : ndarray of shape (n_kept, d)
        Mean-centred filters of unit Euclidean norm.
    kept : ndarray of shape (n_kept,)
        Indices of the kept filters in the input.
    n_dropped : int
        (Near-)constant filters, see :func:`normalize_filters`.
    """

    points: np.ndarray
    kept: np.ndarray
    n_dropped: int


def normalize_filters(X, *, eps: float = 1e-6) -> Normalized:
    """Mean-centre each row of ``X`` and scale it to unit Euclidean norm.

    Scale invariant down to the last bit: each filter is first divided by its own
    largest absolute value, so 1e300-scaled float64 filters do not overflow and
    denormal (1e-40) or 1e-300-scaled filters are not mistaken for constant ones
    (T05, T06). Multiplying a layer by any positive factor that keeps the values
    finite and non-zero gives the same points.

    Parameters
    ----------
    X : array-like of shape (n_filters, d)
        Flattened spatial filters.
    eps : float, default=1e-6
        A filter is dropped as (near-)constant when its centred norm is at most ``eps``
        times its own largest absolute value (a flat filter plus rounding noise), or
        below ``eps`` times the median centred norm of the layer (a filter that is
        negligible next to the others). Both tests are relative, so neither depends on
        the units of the weights.

    Returns
    -------
    Normalized

    Examples
    --------
    >>> out = normalize_filters([[1., 2., 3., 4.], [5., 5., 5., 5.]])
    >>> out.points.round(3).tolist(), out.n_dropped
    ([[-0.671, -0.224, 0.224, 0.671]], 1)
    >>> bool(np.allclose(normalize_filters([[1e-300, 2e-300, 4e-300]]).points,
    ...                  normalize_filters([[1., 2., 4.]]).points))
    True
    """
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] < 2:
        raise InputError(
            f"filters must be a 2-D array (n_filters, d) with d >= 2; got shape {X.shape}. "
            "Flatten each k x k filter to one row."
        )
    n, d = X.shape
    if n == 0:
        return Normalized(points=np.zeros((0, d)), kept=np.zeros(0, np.int64), n_dropped=0)
    # row blocks of ~4M values: the float64 temporaries stay ~32 MB whatever the layer size
    # (a 200 MB float32 layer of zeros peaked at 1.8 GB with whole-array copies, M05);
    # every operation is per row, so the points are bit-identical to whole-array arithmetic
    step = max(1, (1 << 22) // d)
    amax, rel, bad = np.empty(n), np.empty(n), 0

    def centred(rows):
        B = np.asarray(rows, dtype=np.float64)
        am = np.abs(B).max(axis=1)                     # per-filter scale
        C = B / np.where(am > 0, am, 1.0)[:, None]     # entries in [-1, 1]: no overflow, no underflow
        C -= C.mean(axis=1, keepdims=True)
        return am, C

    for s in range(0, n, step):
        rows = X[s:s + step]
        fin = np.isfinite(rows).all(axis=1) if X.dtype.kind == "f" else np.ones(len(rows), bool)
        bad += int((~fin).sum())
        if bad:
            continue
        am, C = centred(rows)
        amax[s:s + step], rel[s:s + step] = am, np.linalg.norm(C, axis=1)  # centred norm / own max abs
    if bad:
        raise InputError(
            f"filters contain NaN or Inf in {bad} of {n} rows. "
            "Check the checkpoint (a diverged run?) or drop those layers with --layers."
        )
    nonzero = amax > 0
    top = float(amax.max())
    # centred norm relative to the layer's largest value: comparable across filters, in [0, 2 sqrt(d)]
    layer = (amax / top) * rel if top > 0 else np.zeros(n)
    scale = float(np.median(layer))
    keep = nonzero & (rel > eps) & (layer > eps * scale)
    kept = np.flatnonzero(keep)
    pts = np.empty((len(kept), d))
    for s in range(0, len(kept), step):
        idx = kept[s:s + step]
        _, C = centred(X[idx])
        pts[s:s + step] = C / rel[idx, None]
    return Normalized(points=pts, kept=kept, n_dropped=int(n - len(kept)))


def d_norm(X) -> np.ndarray:
    """D-norm of 3x3 patches: sqrt(x^T D x) with D the 4-neighbour grid Laplacian.

    Parameters
    ----------
    X : array-like of shape (n, 9)
    """
    X = np.asarray(X, dtype=np.float64)
    if X.shape[-1] != 9:
        raise InputError(f"the D-norm is defined for 3x3 filters (9 values); got {X.shape[-1]} values per filter.")
    return np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", X, D_MATRIX, X), 0.0))


def to_dct(X) -> np.ndarray:
    """Coordinates of mean-centred 3x3 patches in the DCT basis e1..e8, shape (n, 8).

    The basis is D-orthonormal, so ``v = x D E^T`` and ``x = v E`` for zero-mean
    ``x``; a patch of unit D-norm has coordinates on S^7 (Carlsson et al. 2008).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.shape[-1] != 9:
        raise InputError(f"DCT coordinates are defined for 3x3 filters (9 values); got {X.shape[-1]}.")
    return X @ D_MATRIX @ DCT_BASIS.T


def from_dct(V) -> np.ndarray:
    """Inverse of :func:`to_dct` for zero-mean patches: (n, 8) -> (n, 9)."""
    return np.asarray(V, dtype=np.float64) @ DCT_BASIS
