"""Connection masks of the circle / Klein-bottle one layers (COL, KOL; Love et al., JMLR 2023).

A COL / KOL is a trainable conv layer whose weight W[i, k] (output slice i, input slice k,
a k x k spatial filter) is forced to zero unless the points of slice i and slice k on the
circle or on the Klein bottle are within ``threshold`` of each other.

Points of the channels (the order of :func:`~filtertopo.priors.banks.circle_bank` and
:func:`~filtertopo.priors.banks.klein_bank`, so a COL after a CF layer, or a KOL after a
KF layer, connects filters with nearby parameters):

* circle: channel j of n sits at the angle 2 pi j / n.
* Klein bottle: the channels form an n1 x n2 grid (``grid=(n1, n2)``, n1 * n2 = n; default
  the square grid), channel a * n2 + b at (theta1, theta2) = (pi a / n1, 2 pi b / n2).

Metrics:

* circle: arc length, d(a, b) = min(|a - b| mod 2 pi, 2 pi - |a - b| mod 2 pi), in [0, pi].
* Klein bottle: the L2 distance of the filter functions on [-1, 1]^2,
  d((t1, t2), (s1, s2)) = ( integral over [-1, 1]^2 of (F(t1, t2) - F(s1, s2))^2 dx dy )^(1/2)
  with F(t1, t2)(x, y) = sin(t2) u + cos(t2) (2 u^2 - 1), u = x cos(t1) + y sin(t1) (not
  normalised: the published functions). It respects the identification (t1 + pi, t2) ~
  (t1, -t2). Its largest value is 2 sqrt(44/15) ~ 3.425 (F and -F at theta1 = pi/4);
  nearest neighbours on a 4 x 4 grid are 0.88 to 1.58 apart, on an 8 x 8 grid 0.45 to 0.91. The
  integrand is a polynomial of degree 4 in each variable, so 3-point Gauss-Legendre
  quadrature per axis computes it exactly.

Variants: ``"channels"`` is the published definition above; ``"spatial"`` is our reading of
the authors' code, where the mask restricts the k x k spatial taps of each output channel
instead: tap t = h * k + w (row-major) takes the place of the input slice, with the points of
k*k channels (circle: 2 pi t / k^2; Klein bottle: the k x k grid, tap (h, w) at
(pi h / k, 2 pi w / k)), and the same tap mask applies to every input slice.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError, check_range
from .banks import check_k, klein_grid

__all__ = ["CIRCLE_MAX_DISTANCE", "KLEIN_MAX_DISTANCE", "SPACES", "channel_points", "circle_distance",
           "klein_distance", "connection_mask", "shuffled_mask"]

#: Largest arc-length distance on the circle.
CIRCLE_MAX_DISTANCE = math.pi
#: Largest L2 distance between two Klein-bottle functions on [-1, 1]^2: 2 sqrt(44/15).
KLEIN_MAX_DISTANCE = 2 * math.sqrt(44 / 15)
SPACES = ("circle", "klein")
_MAX = {"circle": CIRCLE_MAX_DISTANCE, "klein": KLEIN_MAX_DISTANCE}

_GL_X = np.array([-math.sqrt(3 / 5), 0.0, math.sqrt(3 / 5)])
_GL_W = np.array([5 / 9, 8 / 9, 5 / 9])


def _check_space(space):
    if space not in SPACES:
        raise InputError(f"space must be 'circle' (COL) or 'klein' (KOL); got {space!r}.")
    return space


def _grid_for(n, grid, what, grid_name):
    """(n1, n2) of the Klein grid of n channels; ``what`` / ``grid_name`` name the parameters."""
    if grid is None:
        r = math.isqrt(n)
        if r * r != n:
            best = max(a for a in range(1, r + 1) if n % a == 0)
            raise InputError(f"{what}={n} is not a square, so its Klein-bottle grid is ambiguous: pass "
                             f"{grid_name}=(n1, n2) with n1 * n2 = {n}, e.g. ({best}, {n // best}).")
        return r, r
    try:
        n1, n2 = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise InputError(f"{grid_name} must be a pair (n1, n2) of integers; got {grid!r}.") from None
    if n1 < 1 or n2 < 1 or n1 * n2 != n:
        raise InputError(f"{grid_name}={tuple(grid)!r} must have n1 * n2 = {what} = {n}; "
                         f"got n1 * n2 = {n1 * n2}.")
    return n1, n2


def channel_points(space: str, n: int, *, grid=None) -> np.ndarray:
    """Points of n channels: angles (n,) on the circle, or (theta1, theta2) rows (n, 2).

    Examples
    --------
    >>> (channel_points("circle", 4) / np.pi).tolist()
    [0.0, 0.5, 1.0, 1.5]
    >>> channel_points("klein", 6, grid=(2, 3)).shape
    (6, 2)
    """
    _check_space(space)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"the number of channels must be a positive integer; got {n!r}.")
    if space == "circle":
        return 2 * np.pi * np.arange(n) / n
    return klein_grid(*_grid_for(int(n), grid, "n", "grid"))


def circle_distance(a, b) -> np.ndarray:
    """Arc-length distances between angles, matrix (len(a), len(b)) in [0, pi].

    Examples
    --------
    >>> float(circle_distance([0.1], [2 * np.pi - 0.1])[0, 0]).__round__(6)
    0.2
    """
    d = np.mod(np.subtract.outer(np.asarray(a, float).ravel(), np.asarray(b, float).ravel()), 2 * np.pi)
    return np.minimum(d, 2 * np.pi - d)


def _klein_vectors(params):
    """Rows v with |v_a - v_b| = the L2([-1, 1]^2) distance of F(params_a), F(params_b)."""
    P = np.atleast_2d(np.asarray(params, dtype=float))
    t1, t2 = P[:, 0][:, None, None], P[:, 1][:, None, None]
    y, x = np.meshgrid(_GL_X, _GL_X, indexing="ij")
    u = x * np.cos(t1) + y * np.sin(t1)
    F = np.sin(t2) * u + np.cos(t2) * (2 * u ** 2 - 1)
    return (F * np.sqrt(np.outer(_GL_W, _GL_W))).reshape(len(P), -1)


def klein_distance(p, q) -> np.ndarray:
    """L2 distances on [-1, 1]^2 between Klein-bottle functions at (theta1, theta2) rows.

    Parameters
    ----------
    p, q : array-like of shape (n, 2), (m, 2)

    Returns
    -------
    ndarray of shape (n, m)

    Examples
    --------
    >>> d = klein_distance([[np.pi / 4, 0.0]], [[np.pi / 4, np.pi], [0.3 + np.pi, -1.0]])
    >>> round(float(d[0, 0]), 4), bool(np.isclose(klein_distance([[0.3, 1.0]], [[0.3 + np.pi, -1.0]])[0, 0], 0))
    (3.4254, True)
    """
    a, b = _klein_vectors(p), _klein_vectors(q)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def _distances(space, pts_out, pts_in):
    return circle_distance(pts_out, pts_in) if space == "circle" else klein_distance(pts_out, pts_in)


def connection_mask(space: str, out_channels: int, in_channels: int, kernel_size: int = 3, *,
                    threshold: float, variant: str = "channels", in_grid=None,
                    out_grid=None) -> np.ndarray:
    """The 0/1 mask of a COL / KOL weight, shape (out_channels, in_channels, k, k), float32.

    Parameters
    ----------
    space : {"circle", "klein"}
    out_channels, in_channels : int
    kernel_size : int, default=3
        Odd side >= 3.
    threshold : float
        Connect two slices when their distance is at most ``threshold``; in (0, pi] on the
        circle (arc length, radians), (0, 2 sqrt(44/15)] on the Klein bottle (L2 metric).
    variant : {"channels", "spatial"}, default="channels"
        ``"channels"``: input slice k to output slice i (published). ``"spatial"``: tap t of
        every input slice to output slice i (our reading of the authors' code).
    in_grid, out_grid : (int, int), optional
        Klein-bottle grids of the input / output channels (default: square).

    Returns
    -------
    ndarray of shape (out_channels, in_channels, k, k)
        Every output channel keeps at least one connection; a threshold that leaves one
        without any raises InputError with the smallest threshold that would not.

    Examples
    --------
    >>> m = connection_mask("circle", 8, 8, threshold=np.pi / 4)
    >>> m.shape, m[0, :, 0, 0].astype(int).tolist()
    ((8, 8, 3, 3), [1, 1, 0, 0, 0, 0, 0, 1])
    """
    _check_space(space)
    k = check_k(kernel_size, "kernel_size")
    for name, v in (("out_channels", out_channels), ("in_channels", in_channels)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name} must be a positive integer; got {v!r}.")
    if variant not in ("channels", "spatial"):
        raise InputError(f"variant must be 'channels' (input slice -> output slice, the published "
                         f"definition) or 'spatial' (the kernel taps of each output channel, the "
                         f"authors' code); got {variant!r}.")
    hi = _MAX[space]
    if space == "circle":
        unit = "an arc length in radians on the circle, at most pi"
    else:
        unit = "an L2 distance of Klein-bottle functions on [-1, 1]^2, at most 2 sqrt(44/15)"
    check_range("threshold", threshold, low=0, high=hi, low_inclusive=False,
                fix=f"The threshold is {unit} ({hi:.4f}, which connects every pair: a plain conv); "
                    f"small values keep only the nearest channels. For example threshold={hi / 4:.3f}.")
    if space == "circle":
        p_out = channel_points("circle", out_channels)
        p_in = channel_points("circle", in_channels if variant == "channels" else k * k)
    else:
        p_out = klein_grid(*_grid_for(int(out_channels), out_grid, "out_channels", "out_grid"))
        p_in = (klein_grid(*_grid_for(int(in_channels), in_grid, "in_channels", "in_grid")) if variant == "channels"
                else klein_grid(k, k))
    D = _distances(space, p_out, p_in)
    # a small tolerance so that a threshold equal to a grid distance keeps that connection
    keep = D <= threshold + 1e-9
    if not keep.any(axis=1).all():
        need = float(D.min(axis=1).max())
        raise InputError(f"threshold={threshold!r} leaves output channels without any input "
                         f"({'slice' if variant == 'channels' else 'tap'}): with these channel counts "
                         f"every output needs threshold >= {need:.6g}. Raise the threshold.")
    if variant == "channels":
        M = np.broadcast_to(keep[:, :, None, None], (out_channels, in_channels, k, k))
    else:
        M = np.broadcast_to(keep.reshape(out_channels, 1, k, k), (out_channels, in_channels, k, k))
    return np.ascontiguousarray(M, dtype=np.float32)


def shuffled_mask(mask, seed) -> np.ndarray:
    """A random mask of the same sparsity as ``mask``: the control of a COL / KOL.

    Each output channel keeps exactly as many connections as it has in ``mask`` (so the
    per-output in-degree, and hence the overall density, are equal), but which ones is drawn
    uniformly at random with ``numpy.random.default_rng(seed)``. For the ``"channels"``
    variant (every input slice wholly connected or not) the draw is over input slices; for
    any other mask it is over the (in, k, k) entries of each output.

    Parameters
    ----------
    mask : array of shape (out, in, k, k)
        0/1, e.g. from :func:`connection_mask`.
    seed : int

    Returns
    -------
    ndarray of shape (out, in, k, k), float32

    Examples
    --------
    >>> m = connection_mask("circle", 8, 8, threshold=np.pi / 4)
    >>> r = shuffled_mask(m, seed=0)
    >>> r.shape, bool(r.sum() == m.sum()), bool((r.sum(axis=(1, 2, 3)) == m.sum(axis=(1, 2, 3))).all())
    ((8, 8, 3, 3), True, True)
    """
    from ..errors import check_seed

    m = np.asarray(mask)
    if m.ndim != 4:
        raise InputError(f"mask must have shape (out, in, k, k); got {m.shape}.")
    if not np.isin(m, (0, 1)).all():
        raise InputError("mask must hold only 0 and 1.")
    rng = np.random.default_rng(check_seed("seed", seed, allow_generator=False))
    out = np.zeros(m.shape, dtype=np.float32)
    whole_slices = (m == m[:, :, :1, :1]).all()
    for i in range(m.shape[0]):
        if whole_slices:
            n_keep = int(m[i, :, 0, 0].sum())
            pick = rng.permutation(m.shape[1])[:n_keep]
            out[i, pick] = 1.0
        else:
            flat = out[i].reshape(-1)
            n_keep = int(m[i].sum())
            flat[rng.permutation(flat.size)[:n_keep]] = 1.0
    return out
