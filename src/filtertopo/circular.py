"""Circle-valued coordinates of core filters from the longest H1 bar.

Sparse circular coordinates (Perea, "Sparse circular coordinates via principal
Z-bundles", 2020) as implemented by DREiMac (``dreimac.CircularCoords``, Apache-2.0):
persistent cohomology of a Rips filtration on maxmin landmarks, the cocycle of the
longest H1 bar lifted to integer coefficients, harmonic smoothing, and a partition of
unity that extends the map from the landmarks to every point. This unrolls any circle
in the data, also a "complex circle" that no template of :mod:`filtertopo.shapes`
describes, and lists its filters in order. The coordinate agrees with the template
angle theta on primary-circle data up to a rotation and a reflection.

The computation is DREiMac 0.3's, step by step (same landmarks, same ripser call, same
cover radius, partition of unity, boundary matrix and ``lsqr`` smoothing), written with
numpy/scipy instead of numba functions that DREiMac defines inside its methods and so
compiles again on every call (about 1.7 s per call). DREiMac itself is used only when
the lifted integer cocycle fails the cocycle condition (it then repairs the lift with
an integer program); ``method="dreimac"`` forces it (the reference for the tests).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError

__all__ = ["CircularCoordinates", "circular_coordinates", "circular_agreement", "warm_up"]


@dataclass(frozen=True)
class CircularCoordinates:
    """Circular coordinate of every point for one H1 class.

    Attributes
    ----------
    theta : ndarray of shape (n,)
        Angle in [0, 2 pi) of each input point, in input order.
    order : ndarray of shape (n,)
        Indices that sort the points by ``theta`` (the filters "unrolled").
    bar : tuple of float
        (birth, death) of the H1 bar used, in the units of the input metric.
    cocycle_idx : int
        Rank of the bar by persistence (0 = longest).
    n_landmarks : int
        Landmarks actually used (at most the number of points).
    prime : int
        Field of the persistent cohomology used for the cocycle.
    perc : float
        Fraction of the bar at which the cover radius is chosen.
    standard_range : bool
        False when the bar was too short for the Cech-guaranteed range and DREiMac's
        Rips range was used instead (the coordinate is then less reliable).
    """

    theta: np.ndarray
    order: np.ndarray
    bar: tuple
    cocycle_idx: int
    n_landmarks: int
    prime: int
    perc: float
    standard_range: bool

    def to_json(self) -> dict:
        """JSON-able dict (arrays as lists), e.g. for ``LayerResult.extras``."""
        d = asdict(self)
        d["theta"] = [float(t) for t in self.theta]
        d["order"] = [int(i) for i in self.order]
        d["bar"] = [float(b) for b in self.bar]
        return d


def warm_up() -> None:
    """Import what :func:`circular_coordinates` and :func:`filtertopo.homology.persistence` need.

    Call once in a parent process before forking workers, so that each worker does not pay
    the imports again (ripser.py's and GUDHI's C++ modules, scipy.sparse.linalg). Nothing is
    compiled: this module uses no numba.
    """
    import scipy.sparse  # noqa: F401
    import scipy.sparse.linalg  # noqa: F401

    from .homology import _rips_dm

    t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    circular_coordinates(np.c_[np.cos(t), np.sin(t)], n_landmarks=8)
    _rips_dm(np.zeros((3, 3)), maxdim=1, coeff=2)


def circular_coordinates(points, *, n_landmarks: int = 200, prime: int = 41, perc: float = 0.5,
                         cocycle_idx: int = 0, seed=0, method: str = "fast") -> CircularCoordinates:
    """Circle-valued coordinate of every point from the ``cocycle_idx``-th longest H1 bar.

    Parameters
    ----------
    points : array-like of shape (n, d)
        Core filters (any metric space embedded in R^d; Euclidean distance).
    n_landmarks : int, default=200
        Maxmin landmarks for the persistent cohomology (ripser on 200 / 500 landmarks
        takes about 0.15 / 2.5 s; the extension to the points is linear in n).
    prime : int, default=41
        Prime field for the cocycle (a large prime makes the integer lift safe).
    perc : float, default=0.5
        Position of the cover radius inside the bar, in (0, 1).
    cocycle_idx : int, default=0
        Which H1 class, by decreasing persistence.
    seed : int or numpy.random.Generator, default=0
        Chooses the first landmark (the points are shuffled before the maxmin pass).
    method : {"fast", "dreimac"}, default="fast"
        "fast" is DREiMac's algorithm in numpy/scipy (see the module docstring);
        "dreimac" calls ``dreimac.CircularCoords``.

    Returns
    -------
    CircularCoordinates

    Examples
    --------
    >>> t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    >>> cc = circular_coordinates(np.c_[np.cos(t), np.sin(t)], n_landmarks=50)
    >>> round(circular_agreement(cc.theta, t), 2) >= 0.95
    True
    """
    X = np.asarray(points, dtype=float)
    if X.ndim != 2 or len(X) < 4:
        raise InputError(f"points must be a 2-D array with at least 4 rows; got shape {X.shape}.")
    if not np.all(np.isfinite(X)):
        raise InputError("points contain NaN or Inf; normalise the filters first.")
    if not isinstance(n_landmarks, (int, np.integer)) or n_landmarks < 4:
        raise InputError(f"n_landmarks must be an integer >= 4; got {n_landmarks!r}.")
    if not 0 < perc < 1:
        raise InputError(f"perc must be in (0, 1); got {perc!r}. 0.5 is DREiMac's default.")
    if method not in ("fast", "dreimac"):
        raise InputError(f"method must be 'fast' or 'dreimac'; got {method!r}.")
    n = len(X)
    perm = np.random.default_rng(seed).permutation(n)
    nl = int(min(n_landmarks, n))
    th = None
    if method == "fast":
        fast = _Fast(X[perm], nl, prime)
        dgm = fast.dgm
        _check_idx(dgm, cocycle_idx)
        standard = True
        th = fast.coordinates(perc, cocycle_idx, standard_range=True)
        if th is _TOO_SHORT:  # bar shorter than its birth: only the Rips range is possible
            standard = False
            th = fast.coordinates(perc, cocycle_idx, standard_range=False)
        # None: the integer lift is not a cocycle; DREiMac repairs it (integer program)
    if th is None:
        th, dgm, standard = _dreimac(X[perm], nl, prime, perc, cocycle_idx)
    theta = np.empty(n)
    theta[perm] = np.mod(np.asarray(th, dtype=float), 2 * np.pi)
    b, d = dgm[cocycle_idx]
    return CircularCoordinates(theta=theta, order=np.argsort(theta, kind="stable"),
                               bar=(float(b), float(d)), cocycle_idx=int(cocycle_idx),
                               n_landmarks=nl, prime=int(prime), perc=float(perc),
                               standard_range=standard)


def _check_idx(dgm, cocycle_idx):
    if len(dgm) <= cocycle_idx:
        raise InputError(
            f"cocycle_idx={cocycle_idx} needs at least {cocycle_idx + 1} H1 bars; the landmarks "
            f"show {len(dgm)}. The core has no loop to unroll; check the H1 barcode."
        )


def _dreimac(X, nl, prime, perc, cocycle_idx):
    from dreimac import CircularCoords

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ripser/dreimac chatter (e.g. uncovered points)
        cc = CircularCoords(X, n_landmarks=nl, prime=prime, maxdim=1)
        dgm = cc.dgms_[1]  # public in DREiMac 0.3.0-0.3.2; sorted by decreasing persistence
        _check_idx(dgm, cocycle_idx)
        standard = True
        try:
            th = cc.get_coordinates(perc=perc, cocycle_idx=cocycle_idx, standard_range=True)
        except Exception:  # bar shorter than its birth: only the Rips range is possible
            standard = False
            th = cc.get_coordinates(perc=perc, cocycle_idx=cocycle_idx, standard_range=False)
    return th, dgm, standard


_TOO_SHORT = object()


class _Fast:
    """DREiMac 0.3's ``EMCoords``/``ToroidalCoords``/``CircularCoords`` for one cocycle."""

    def __init__(self, X, nl, prime):
        from .homology import _rips_dm

        n = len(X)
        # ripser's greedy permutation (first point 0, ties to the first maximum)
        idx = np.zeros(nl, dtype=np.int64)
        dla = np.empty((nl, n))  # distance from each landmark to every point
        ds = dla[0] = np.sqrt(np.sum((X - X[0]) ** 2, axis=1))
        ds = ds.copy()
        for i in range(1, nl):
            j = int(np.argmax(ds))
            idx[i] = j
            row = dla[i] = np.sqrt(np.sum((X - X[j]) ** 2, axis=1))
            row[j] = 0.0
            np.minimum(ds, row, out=ds)
        dla[0, 0] = 0.0
        self.dla, self.idx, self.prime = dla, idx, int(prime)
        self.dll = dla[:, idx]
        dgms, cocycles = _rips_dm(self.dll, maxdim=1, coeff=prime, do_cocycles=True)
        dgm = dgms[1]
        order = np.argsort(dgm[:, 0] - dgm[:, 1])  # DREiMac's order: decreasing persistence
        self.dgm = dgm[order]
        self.cocycles = [cocycles[1][i] for i in order]

    def coordinates(self, perc, cocycle_idx, standard_range):
        from scipy import sparse
        from scipy.sparse.linalg import lsqr

        birth, death = self.dgm[cocycle_idx]
        start = 2 * birth if standard_range else birth
        if start > death:
            return _TOO_SHORT
        thr = (1 - perc) * start + perc * death
        r_cover = thr / 2
        nl, D = len(self.idx), self.dll
        # integer lift of the cocycle, as an antisymmetric-by-orientation edge function
        cc = np.array(self.cocycles[cocycle_idx], dtype=np.int64).reshape(-1, 3)
        val = cc[:, 2].copy()
        val[val > (self.prime - 1) / 2] -= self.prime
        a, b = cc[:, 0], cc[:, 1]
        C = np.zeros((nl, nl), dtype=np.int64)  # C[i, j], i < j: value on the edge [i, j]
        C[np.minimum(a, b), np.maximum(a, b)] = np.where(a < b, val, -val)
        A = np.triu(D < thr, 1)  # edges of the Rips complex at thr
        if not _is_cocycle(C, A):
            return None
        ei, ej = np.nonzero(A)
        m = len(ei)
        rows = np.repeat(np.arange(m), 2)
        cols = np.column_stack([ei, ej]).ravel()
        vals = np.tile([1.0, -1.0], m)
        delta0 = sparse.csr_array((vals, (rows, cols)), shape=(m, nl))
        c = C[ei, ej].astype(float)
        integral = lsqr(delta0, c)[0]
        harm = c - delta0 @ integral
        # partition of unity subordinate to the balls of radius r_cover around the landmarks
        U = self.dla < r_cover
        phi = np.where(U, r_cover - self.dla, 0.0)
        denom = phi.sum(axis=0)
        denom[denom == 0] = 1.0
        varphi = phi / denom[None, :]
        ball = np.argmax(U, axis=0)
        T = np.zeros((nl, nl))
        T[ei, ej] = harm  # DREiMac's theta_matrix: the upper triangle only
        class_map = integral[ball] + np.einsum("ij,ji->i", T[ball], varphi)
        return np.mod(2 * np.pi * class_map, 2 * np.pi)


def _is_cocycle(C, A) -> bool:
    """c[i,j] + c[j,k] - c[i,k] == 0 on every triangle i < j < k of the graph A (upper)."""
    for j in range(1, len(A) - 1):
        I = np.flatnonzero(A[:j, j])
        K = j + 1 + np.flatnonzero(A[j, j + 1:])
        if len(I) == 0 or len(K) == 0:
            continue
        tri = A[np.ix_(I, K)]
        bad = (C[I, j][:, None] + C[j, K][None, :] - C[np.ix_(I, K)]) != 0
        if np.any(bad & tri):
            return False
    return True


def circular_agreement(theta, reference) -> float:
    """Agreement of two circle-valued coordinates up to rotation and reflection.

    Returns ``max(|mean exp(i(theta - ref))|, |mean exp(i(theta + ref))|)``: 1 when
    ``theta = +-reference + const`` exactly, about 0 for unrelated angles.

    Parameters
    ----------
    theta, reference : array-like of shape (n,)
        Angles in radians.

    Examples
    --------
    >>> t = np.linspace(0, 6, 30)
    >>> round(circular_agreement(1.0 - t, t), 6)
    1.0
    """
    a, r = np.asarray(theta, dtype=float), np.asarray(reference, dtype=float)
    if a.shape != r.shape or a.ndim != 1:
        raise InputError(f"theta and reference must be 1-D of the same length; got {a.shape} and {r.shape}.")
    return float(max(abs(np.mean(np.exp(1j * (a - r)))), abs(np.mean(np.exp(1j * (a + r))))))
