"""Vietoris-Rips persistent homology of a dense core, on greedy landmarks.

Two engines, both Bauer's Ripser algorithm (MIT licence), chosen per call:

* diagrams alone: GUDHI's Ripser (``gudhi._ripser_ext`` from GUDHI 3.12, ``gudhi._ripser``
  in 3.11; MIT), a later Ripser with its own optimisations: on the full complex of the
  500-landmark dense core of the benchmark's large layer it takes 1.55 s where ripser.py
  takes 3.25 s (H0-H1 over Z/2, identical bars), and H0-H2 on 500 points 9.0 s and 0.19 GiB
  where ripser.py takes 41 s and 1.4 GiB (``benchmarks/bench_ph_engines.py``, 2-core AMD
  EPYC). It also releases the GIL, so a thread can work beside it;
* cocycles (circular coordinates): ripser.py (Tralie, Saul & Bar-On 2018), the one
  maintained engine that returns them; also the fallback when GUDHI is missing or its
  private call fails (a RuntimeWarning says so).

Both build the Vietoris-Rips filtration up to the enclosing radius (after it every
complex is a cone), so the diagrams are the same. For H0-H1 on 200 or more points the
complex is first cut at 0.9 of that radius, and the cut's diagrams are returned when they
provably are the whole answer (:func:`_early_stop`: connected, no H1 class alive at the cut,
and every longer edge has a shorter detour); otherwise the full complex is computed. On the
benchmark's circles this takes 1.18 s instead of 1.55 s, bar for bar. Large cores are reduced to
``n_landmarks`` greedy max-min landmarks first; the diagrams then lie within twice the
cover radius (bottleneck distance) of the full core's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .density import maxmin_landmarks
from .errors import InputError, check_range

__all__ = ["Persistence", "persistence", "bar_summary", "count_significant", "ph_engine", "ph_releases_gil"]


@dataclass(frozen=True)
class Persistence:
    """Persistence diagrams of one point cloud over one coefficient field.

    Attributes
    ----------
    diagrams : dict of int -> ndarray of shape (m, 2)
        ``(birth, death)`` per homological dimension; an infinite death is ``np.inf``.
    coeff : int
        The prime p of the field Z/p.
    landmarks : ndarray of int
        Indices (into the input) of the points the complex was built on.
    cover_radius : float
        Largest distance from an input point to its nearest landmark (0 when all are used).
    cocycles : tuple or None
        ripser's representative cocycles (indices into ``landmarks``) when asked for.
    """

    diagrams: dict
    coeff: int
    landmarks: np.ndarray
    cover_radius: float
    cocycles: tuple | None = None


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % d for d in range(2, int(q**0.5) + 1))


#: Why GUDHI's Ripser was given up in this process (empty while it works).
_GUDHI_FAILED: list = []


def _gudhi_full():
    """GUDHI's dense-matrix Ripser (``_full``), or None when GUDHI (>= 3.11) is missing or failed."""
    return None if _GUDHI_FAILED else _import_gudhi_full()


@lru_cache(maxsize=None)
def _import_gudhi_full():
    try:
        from gudhi._ripser_ext import _full  # GUDHI >= 3.12 (nanobind)
    except ImportError:
        try:
            from gudhi._ripser import _full  # GUDHI 3.11 (pybind11)
        except ImportError:
            return None
    return _full


def ph_releases_gil() -> bool:
    """True when :func:`persistence` runs in GUDHI, which releases the GIL (threads help)."""
    return _gudhi_full() is not None


def ph_engine(do_cocycles: bool = False) -> str:
    """Name and version of the engine that computes diagrams (``do_cocycles=False``) or cocycles.

    Examples
    --------
    >>> ph_engine(do_cocycles=True).startswith("ripser.py")
    True
    """
    from importlib.metadata import PackageNotFoundError, version

    name, dist = ("gudhi", "gudhi") if not do_cocycles and _gudhi_full() is not None else ("ripser.py", "ripser")
    try:
        return f"{name} {version(dist)}"
    except PackageNotFoundError:  # pragma: no cover - vendored builds
        return name


#: Rips complexes on at least this many points are first computed up to a lower threshold
#: (:func:`_early_stop`); below it the full complex takes milliseconds.
_EARLY_STOP_FROM = 200
#: ... that threshold, as a fraction of the enclosing radius. A round loop of diameter d
#: (the primary circle) dies at sqrt(3)/2 d (the inscribed equilateral triangle) and its
#: enclosing radius is d: 0.9 leaves room for noise. Only speed depends on it (a bar still
#: alive there means the full complex is computed); the complex above 0.9 takes ~30% of the time.
_EARLY_STOP_AT = 0.9


def _h1_stays_trivial(D, t: float) -> bool:
    """True when no H1 class can appear after ``t`` if none is alive at ``t``.

    Sufficient condition, checked on every edge (u, v) of length L >= t: some third point w
    has max(d(u, w), d(v, w)) < L. Then the edge is homologous, through the triangle uvw, to
    the path u-w-v of shorter edges, so every 1-cycle of the complex at L is homologous to one
    of the complex below L; by induction over the edge lengths above t, H1 stays 0 from t on
    (with any coefficients), so no bar is born or dies after t. Costs one pass over the
    long edges (~0.03 s for 500 points).
    """
    n = len(D)
    for u in range(n - 1):
        v = u + 1 + np.flatnonzero(D[u, u + 1:] >= t)
        if len(v) and not (np.maximum(D[u][None, :], D[v]) < D[u, v][:, None]).any(axis=1).all():
            return False
    return True


def _early_stop(run, D, *, maxdim: int, enclosing: float):
    """Diagrams from ``run(threshold)``: up to ``_EARLY_STOP_AT`` of the enclosing radius when
    that is provably the whole answer, else up to the enclosing radius.

    The diagrams of a filtration cut at t are the full ones restricted to the pairs that die by
    t, the others drawn as infinite. So when the cut shows one infinite H0 bar (connected), no
    infinite H1 bar (H1 = 0 at t) and :func:`_h1_stays_trivial` holds, nothing happens after t
    and the cut's diagrams are the full diagrams, bar for bar. H0-H1 only (H2 can be born late);
    on the benchmark's 500-landmark cores this takes 1.18 s instead of 1.55 s
    (``benchmarks/bench_ph_engines.py``).
    """
    if maxdim == 1 and len(D) >= _EARLY_STOP_FROM:
        t = _EARLY_STOP_AT * enclosing
        dgms = run(t)
        if (int(np.isinf(dgms[0][:, 1]).sum()) == 1 and not np.isinf(dgms[1][:, 1]).any()
                and _h1_stays_trivial(D, t)):
            return dgms
    return run(enclosing)


def _mirrored_f32(D):
    """The strict upper triangle of D mirrored, in float32 (what ripser.py reads), and its
    enclosing radius (after it every Rips complex is a cone)."""
    U = np.triu(np.asarray(D, dtype=np.float32), 1)
    S = U + U.T
    return S, float(S.max(axis=1).min())


def _rips_dm(D, *, maxdim: int, coeff: int, do_cocycles: bool = False):
    """Rips persistence of a dense distance matrix: (diagrams list, cocycles list or None).

    Without cocycles and with a zero diagonal, GUDHI's Ripser on the symmetrised float32
    matrix up to the enclosing radius (what ripser.py's own threshold is; see
    :func:`_early_stop` for when less is enough); diagrams in float64, each sorted by
    (birth, death).
    Otherwise calls ripser.py's C++ module directly with the strict upper triangle in float32
    (what ``ripser.ripser(D, distance_matrix=True)`` passes it), which skips importing
    scikit-learn (about 1-2 s per process) and the n x n index grids; falls back to
    ``ripser.ripser`` when the module layout differs.
    """
    D = np.asarray(D)
    n = len(D)
    full = None if do_cocycles or n < 2 or np.any(np.diagonal(D) != 0) else _gudhi_full()
    if full is not None:
        # GUDHI's Ripser reads both triangles, and a product L @ L.T asymmetric by 1e-15 gave it
        # a wrong death (1.40 instead of 1.99 on four tight clusters; ripser.py and GUDHI's
        # simplex tree: 1.99): it gets the strict upper triangle mirrored
        D, enclosing = _mirrored_f32(D)

        def run(threshold):
            res = full(D, max_dimension=int(maxdim), max_edge_length=threshold, homology_coeff_field=int(coeff))
            dgms = []
            for d in range(int(maxdim) + 1):
                dg = np.asarray(res[d], dtype=np.float64).reshape(-1, 2) if d < len(res) else np.zeros((0, 2))
                dgms.append(dg[np.lexsort((dg[:, 1], dg[:, 0]))])
            return dgms

        try:
            return _early_stop(run, D, maxdim=int(maxdim), enclosing=enclosing), None
        except (TypeError, IndexError, ValueError) as e:  # a GUDHI whose private API changed
            _GUDHI_FAILED.append(f"{type(e).__name__}: {e}")
            import warnings

            warnings.warn(f"GUDHI's Ripser could not be called ({_GUDHI_FAILED[0]}); using ripser.py, "
                          "which gives the same diagrams more slowly. Install gudhi>=3.11,<4 to fix.",
                          RuntimeWarning, stacklevel=2)
    try:
        from pyRipser import doRipsFiltrationDM
    except ImportError:  # pragma: no cover - other ripser builds
        doRipsFiltrationDM = None
    if doRipsFiltrationDM is None or n < 2 or np.any(np.diagonal(D) != 0):
        from ripser import ripser

        res = ripser(D, maxdim=int(maxdim), coeff=int(coeff), distance_matrix=True, do_cocycles=do_cocycles)
        return list(res["dgms"]), (list(res["cocycles"]) if do_cocycles else None)
    iu = np.triu_indices(n, 1)
    tri = np.ascontiguousarray(D[iu], dtype=np.float32)

    def run(threshold):
        return doRipsFiltrationDM(tri, int(maxdim), threshold, int(coeff), bool(do_cocycles))

    def diagrams(res):
        return [np.reshape(np.array(d, dtype=np.float64), (-1, 2)) for d in res["births_and_deaths_by_dim"]]

    if not do_cocycles:  # cocycles of the full complex only: a cut one may reduce differently
        S, enclosing = _mirrored_f32(D)
        return _early_stop(lambda t: diagrams(run(t)), S, maxdim=int(maxdim), enclosing=enclosing), None
    res = run(np.inf)
    dgms, cocycles = diagrams(res), []
    for dim, ccs in enumerate(res["cocycles_by_dim"]):
        out = []
        for ccl in ccs:
            ccl = np.reshape(np.array(ccl, dtype=np.int64), (-1, dim + 2))
            ccl[:, -1] = np.mod(ccl[:, -1], coeff)
            out.append(ccl)
        cocycles.append(out)
    return dgms, cocycles


def persistence(X, *, maxdim: int = 1, coeff: int = 2, n_landmarks: int | None = 500,
                seed: int = 0, do_cocycles: bool = False, landmarks=None) -> Persistence:
    """Rips persistence diagrams of ``X`` in dimensions 0..maxdim over Z/coeff.

    Parameters
    ----------
    X : array-like of shape (n, d)
    maxdim : int, default=1
    coeff : int, default=2
        A prime.
    n_landmarks : int or None, default=500
        Use this many greedy max-min landmarks when ``n`` is larger; None uses all points.
    seed : int, default=0
    do_cocycles : bool, default=False
    landmarks : tuple (idx, cover_radius), optional
        Landmarks already chosen by :func:`~filtertopo.density.maxmin_landmarks` (e.g. to
        compute several coefficient fields on the same complex); overrides ``n_landmarks``.

    Examples
    --------
    >>> t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    >>> P = persistence(np.c_[np.cos(t), np.sin(t)])
    >>> bool(np.ptp(P.diagrams[1][0]) > 1.5)
    True
    """
    X = np.asarray(X, dtype=np.float64)
    check_range("maxdim", maxdim, low=0, high=3, integer=True,
                fix="H2 and above grow fast in cost; use --maxdim 1 or 2.")
    if isinstance(coeff, bool) or not isinstance(coeff, (int, np.integer)) or not _is_prime(int(coeff)):
        raise InputError(f"coeff must be a prime (the field Z/p); got {coeff!r}. Use 2 or 3.")
    if len(X) < 2:
        raise InputError(f"persistence needs at least 2 points; got {len(X)}.")
    if landmarks is not None:
        lm, radius = np.asarray(landmarks[0]), float(landmarks[1])
    elif n_landmarks is not None and len(X) > n_landmarks:
        lm, radius = maxmin_landmarks(X, n_landmarks, seed=seed)
    else:
        lm, radius = np.arange(len(X)), 0.0
    L = X[lm]
    sq = np.einsum("ij,ij->i", L, L)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * L @ L.T, 0.0))
    np.fill_diagonal(D, 0.0)
    res_dgms, res_cocycles = _rips_dm(D, maxdim=int(maxdim), coeff=int(coeff), do_cocycles=do_cocycles)
    dgms = {d: np.asarray(res_dgms[d], dtype=np.float64).reshape(-1, 2) for d in range(maxdim + 1)}
    return Persistence(dgms, int(coeff), lm, radius, tuple(res_cocycles) if do_cocycles else None)


def _lengths(diagram) -> np.ndarray:
    d = np.asarray(diagram, dtype=np.float64).reshape(-1, 2)
    life = d[:, 1] - d[:, 0]
    return np.sort(life[np.isfinite(life)])[::-1]


def count_significant(lengths, *, min_persistence: float = 0.15, min_ratio: float = 2.0,
                      max_bars: int = 10) -> int:
    """Number of bars that stand out: the largest multiplicative gap among the longest bars.

    Bars are sorted longest first, ``l_1 >= l_2 >= ...``. The count is the ``i``
    (``1 <= i <= max_bars``) that maximises ``l_i / l_{i+1}``, provided
    ``l_i >= min_persistence`` and the ratio is at least ``min_ratio``; otherwise 0.
    Persistence is in units of the chord distance on the unit sphere of
    normalised filters (diameter 2).

    Examples
    --------
    >>> count_significant([0.9, 0.85, 0.8, 0.8, 0.75, 0.03, 0.02])
    5
    >>> count_significant([0.12, 0.1, 0.05])
    0
    """
    l = np.sort(np.asarray(lengths, dtype=np.float64))[::-1]
    if len(l) == 0:
        return 0
    top = l[: max_bars + 1]
    nxt = np.append(top[1:], 0.0)
    ratio = top / np.maximum(nxt, 1e-3)
    ratio[top < min_persistence] = 0.0
    ratio = ratio[:max_bars]
    i = int(np.argmax(ratio))
    return i + 1 if ratio[i] >= min_ratio else 0


def bar_summary(diagrams: dict, *, n_top: int = 10, **rule) -> dict:
    """Summary statistics of the H0/H1 (and H2) diagrams.

    Returns a dict with ``h1_top`` (the ``n_top`` longest finite H1 persistences,
    longest first), ``h1_max``, ``h1_gap_ratio`` (``l_1 / l_2``), ``n_significant``
    (see :func:`count_significant`), ``h0_max`` (longest finite H0 bar) and, when
    present, ``h2_max``.
    """
    out = {}
    for dim in sorted(diagrams):
        l = _lengths(diagrams[dim])
        out[f"h{dim}_max"] = float(l[0]) if len(l) else 0.0
        if dim == 1:
            out["h1_top"] = [float(x) for x in l[:n_top]]
            out["h1_gap_ratio"] = float(l[0] / max(l[1], 1e-3)) if len(l) > 1 else (
                float(l[0] / 1e-3) if len(l) else 0.0)
            out["n_significant"] = count_significant(l, **rule)
        if dim == 2:
            out["h2_top"] = [float(x) for x in l[:n_top]]
            out["n_significant_h2"] = count_significant(l, **rule)
    return out
