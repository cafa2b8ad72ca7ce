"""The topology core: one point cloud in, one :class:`~filtertopo.result.LayerResult` out.

normalise -> (subsample) -> dense core X(k, p) -> landmarks -> persistent homology -> bar
summary -> circular coordinates -> shape fractions -> verdict (-> multi-scale grid).

Every path calls it: :func:`filtertopo.analyze_points` (and so every layer of
:func:`filtertopo.analyze`), the null model (:mod:`filtertopo.nullmodel`, on random filters)
and natural image patches (:mod:`filtertopo.patches`, on DCT coordinates). It imports no other
orchestration module: the null model lives one level up, in :mod:`filtertopo.pipeline`.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .config import K_MAX, K_MIN, AnalysisConfig
from .density import dense_core, maxmin_landmarks
from .errors import InputError
from .homology import bar_summary, persistence, ph_releases_gil
from .normalize import normalize_filters
from .result import BarSummary, CircularInfo, LayerResult, ScaleCell, ScaleGrid, ShapeFractions

__all__ = ["auto_k", "scale_grid", "analyse_cloud"]


def auto_k(n: int) -> int:
    """The density neighbour k chosen from the number of filters ``n`` (``k="auto"``).

    ``k = clip(round(0.18 * n ** 0.8), 5, 300)``, and at most ``n - 1``.

    The exponent 4/5 is the rate of the mean-square-optimal k of a k-nearest-neighbour
    density estimate on a one-dimensional structure (bias ~ (k/n)^2, variance ~ 1/k, so
    k ~ n^(4/(d+4)) with d = 1): the loops this tool looks for are one-dimensional. The
    constant 0.18 reproduces the paper's k = 200 for 6,400 pooled filters; the cap 300 is
    Carlsson et al.'s k for 50,000 patches (a larger k only smooths more); the floor 5 keeps
    rho_k from being a single noisy distance. It gives k = 5 at 30 filters, 19 at 338 (the
    range 17-30 where seven real first layers pooled show their circle), 200 at 6,400 and
    285 at the default ``max_points`` of 10,000.

    Examples
    --------
    >>> [auto_k(n) for n in (30, 338, 6400, 10000, 50000)]
    [5, 19, 200, 285, 300]
    """
    n = int(n)
    k = int(min(K_MAX, max(K_MIN, round(0.18 * n ** 0.8))))
    return max(1, min(k, n - 1))


def scale_grid(k: int, p: float, n: int) -> list:
    """The (k, p) grid of the multi-scale verdict: k/2, k, 2k times 2p/3, p, 5p/3.

    k is clipped to [2, n - 1] and p to (0, 1]; duplicates are dropped.
    """
    ks = sorted({int(min(max(2, round(k * f)), n - 1)) for f in (0.5, 1.0, 2.0)})
    ps = sorted({round(min(1.0, p * f), 3) for f in (2 / 3, 1.0, 5 / 3)})
    return [(kk, pp) for kk in ks for pp in ps]


def _note(notes, stage, err):
    notes.append(f"{stage} failed ({type(err).__name__}: {err}); the layer's other results stand")


def _fits_shapes(kernel_shape) -> bool:
    from .shapes import kernel_size

    try:
        kernel_size(kernel_shape)
    except InputError:
        return False
    return True


#: Persistent homology on at least this many landmarks runs in threads beside the circular
#: coordinate (below it PH takes < 0.2 s and a thread is not worth it).
_OVERLAP_FROM = 300


def _try_circular(core, n_landmarks, seed):
    """The circular coordinate of the longest H1 bar, or the exception that stopped it."""
    try:
        from .circular import circular_coordinates

        return circular_coordinates(core, n_landmarks=n_landmarks, seed=seed)
    except Exception as e:  # noqa: BLE001 - turned into a note on the layer by the caller
        return e


def _topology(X, *, k, p, cfg: AnalysisConfig, coeffs, maxdim, n_landmarks, kernel_shape, circular, notes,
              cc_landmarks=200) -> dict:
    """dense core -> landmarks -> PH -> bars -> circular coordinate -> shapes -> verdict."""
    from .verdict import layer_verdict

    rules = cfg.verdict
    core_idx, _ = dense_core(X, k, p)
    core = X[core_idx]
    lm = (maxmin_landmarks(core, n_landmarks, seed=cfg.seed) if len(core) > n_landmarks
          else (np.arange(len(core)), 0.0))  # one complex for every coefficient field
    want_cc = circular and len(core) >= 10
    cc_landmarks = min(cc_landmarks, len(core))

    def ph(q):
        return persistence(core, maxdim=maxdim, coeff=q, seed=cfg.seed, landmarks=lm)

    cc = None
    if len(lm[0]) >= _OVERLAP_FROM and ph_releases_gil():
        # persistent homology in threads (one per field; GUDHI releases the GIL), and meanwhile
        # the circular coordinate here, before PH says whether a bar is significant: on a
        # 500-landmark core PH takes ~1.1 s, the coordinate 0.2-0.6 s (wasted when no bar is)
        with ThreadPoolExecutor(max_workers=len(coeffs), thread_name_prefix="filtertopo-ph") as ex:
            futures = {q: ex.submit(ph, q) for q in coeffs}
            if want_cc:
                cc = _try_circular(core, cc_landmarks, cfg.seed)
            results = {q: f.result() for q, f in futures.items()}
    else:
        results = {q: ph(q) for q in coeffs}
    by_coeff = {q: P.diagrams for q, P in results.items()}
    summary = bar_summary(by_coeff[coeffs[0]], **rules.significance)
    summary["cover_radius"] = float(results[coeffs[0]].cover_radius)
    bars = BarSummary.from_summary(summary)
    theta, circ, shapes, edge_theta = None, None, None, None
    if want_cc and bars.n_significant >= 1:
        cc = cc or _try_circular(core, cc_landmarks, cfg.seed)
        if isinstance(cc, Exception):  # e.g. no integral lift: keep the layer, say why
            circ = CircularInfo(error=f"{type(cc).__name__}: {cc}")
            _note(notes, "circular coordinates", cc)
        else:
            theta = cc.theta.astype(np.float32)
            circ = CircularInfo(bar=tuple(cc.bar), n_landmarks=int(cc.n_landmarks), prime=int(cc.prime))
    if kernel_shape is not None and _fits_shapes(kernel_shape):
        try:
            from .shapes import fit_shapes, shape_fractions

            # once: the fractions and the edge angle. refine=False (shape_fractions' own default):
            # the edge angle is closed form either way; the per-filter theta1 refinement (a Python
            # loop, ~2 s per 3,000 filters) moves only the Klein distance, by < 1.3e-3
            fit = fit_shapes(core, kernel_shape, refine=False)
            shapes = ShapeFractions.from_dict(shape_fractions(core, kernel_shape, fit=fit, tol=cfg.shapes.tol))
            edge_theta = fit.theta
        except Exception as e:  # noqa: BLE001
            _note(notes, "shape fit", e)
    rule_kw = rules.to_dict()
    try:
        # the gap tests read the edge angle of primary-circle cores and the PCA angle of other
        # loops: DREiMac's coordinate on a small, clumped dense core is distorted (agreement with
        # the edge angle 0.57-0.63 on clean primary-circle cores of 60-120 filters)
        verdict = layer_verdict(by_coeff, core, theta=None, edge_theta=edge_theta,
                                frac_primary=None if shapes is None else shapes.frac_primary, **rule_kw)
    except Exception as e:  # noqa: BLE001
        _note(notes, "verdict", e)
        verdict = layer_verdict(by_coeff, None, **rule_kw)
    return dict(core_idx=core_idx, core=core, by_coeff=by_coeff, bars=bars, theta=theta, circular=circ,
                shapes=shapes, verdict=verdict)


def _scales(X, *, k, cfg: AnalysisConfig, coeffs, kernel_shape, notes):
    """Verdict over the (k, p) grid (fewer landmarks): cells, majority and its support."""
    from collections import Counter

    cells = []
    for kk, pp in scale_grid(k, cfg.p, len(X)):
        pe = max(pp, min(1.0, cfg.min_core / len(X)))
        try:
            t = _topology(X, k=kk, p=pe, cfg=cfg, coeffs=coeffs[:1], maxdim=1, n_landmarks=min(200, cfg.n_landmarks),
                          kernel_shape=kernel_shape, circular=True, notes=[], cc_landmarks=100)
        except Exception as e:  # noqa: BLE001
            _note(notes, f"scale k={kk}, p={pp}", e)
            continue
        top = t["bars"].h1_top
        cells.append(ScaleCell(k=int(kk), p=float(pp), verdict=t["verdict"].label,
                               h1_1=float(top[0]) if top else 0.0, h1_2=float(top[1]) if len(top) > 1 else 0.0))
    if not cells:
        return None
    counts = Counter(c.verdict for c in cells)
    label, m = max(counts.items(), key=lambda kv: (kv[1], kv[0] == "none"))
    return ScaleGrid(cells=tuple(cells), majority=label, support=m / len(cells))


def _too_few(name, reason, *, n_filters, n_dropped, n_used, k, p, seed, coeffs, shape, kernel_shape,
             dim, notes):
    from .verdict import Verdict

    empty = {d: np.zeros((0, 2)) for d in (0, 1)}
    v = Verdict("too-few", 0, int(coeffs[0]), (), 0.0, None, None, None, None, None, (reason,))
    return LayerResult(
        name=name, shape=tuple(shape), kernel_shape=None if kernel_shape is None else tuple(kernel_shape),
        n_filters=n_filters, n_dropped=n_dropped, n_used=n_used, n_core=0, k=int(k), p=float(p),
        seed=int(seed), coeff=coeffs, diagrams=empty, diagrams_by_coeff={q: dict(empty) for q in coeffs},
        bars=BarSummary(), verdict="too-few", core=np.zeros((0, dim), np.float32),
        provenance=np.zeros((0, 3), np.int64), verdict_detail=v, notes=tuple(notes) + (reason,))


def prepare(points, *, name: str, normalize: bool, provenance=None, max_points=None, seed=0):
    """Check, normalise and subsample a cloud: (X, provenance, n_filters, n_dropped, notes)."""
    X = np.asarray(points)
    if X.dtype.kind not in "biuf" or not normalize:
        X = np.asarray(X, dtype=np.float64)  # raw filters keep their dtype: normalised in row blocks
    if X.ndim != 2:
        raise InputError(f"layer {name!r}: points must be 2-D (n, d); got shape {X.shape}.")
    n_filters = len(X)
    prov = (np.stack([np.zeros(n_filters), np.arange(n_filters), np.zeros(n_filters)], 1).astype(np.int64)
            if provenance is None else np.asarray(provenance, dtype=np.int64))
    bad = 0
    if X.dtype.kind == "f":
        step = max(1, (1 << 22) // max(1, X.shape[1]))
        bad = sum(int((~np.isfinite(X[s:s + step])).any(axis=1).sum()) for s in range(0, n_filters, step))
    if bad:
        raise InputError(f"layer {name!r}: {bad} of {n_filters} filters contain NaN or Inf. "
                         "The checkpoint is probably from a diverged run; exclude the layer with --layers.")
    notes = []
    if normalize:
        norm = normalize_filters(X)
        X, prov, n_dropped = norm.points, prov[norm.kept], norm.n_dropped
        if len(X) == 0:
            raise InputError(f"layer {name!r}: all {n_filters} filters are constant (zero after "
                             "mean-centring), so none can be normalised. Exclude the layer with --layers.")
        if n_dropped > 0.5 * n_filters:
            msg = (f"layer {name!r}: {n_dropped} of {n_filters} filters are (near-)constant and "
                   "were dropped; is the layer pruned or untrained?")
            notes.append(msg)
            warnings.warn(msg, UserWarning, stacklevel=3)
    else:
        n_dropped = 0
    rng = np.random.default_rng(seed)
    if max_points is not None and len(X) > max_points:
        sub = np.sort(rng.choice(len(X), size=max_points, replace=False))
        X, prov = X[sub], prov[sub]
    return X, prov, n_filters, n_dropped, notes


def analyse_cloud(points, config: AnalysisConfig, *, name: str = "points", normalize: bool = True,
                  kernel_shape=None, provenance=None, shape=None) -> LayerResult:
    """The topology of one cloud under ``config`` (no null model: see :func:`filtertopo.analyze_points`).

    ``kernel_shape`` defaults to ``(s, s)`` for raw flattened filters of an odd square size
    s >= 3; with it the shape fractions and the primary-circle test apply (8 DCT coordinates
    with ``kernel_shape=(3, 3)`` are read as 3x3 patches).
    """
    cfg = config
    coeffs = cfg.coeff
    X, prov, n_filters, n_dropped, notes = prepare(points, name=name, normalize=normalize,
                                                   provenance=provenance, max_points=cfg.max_points,
                                                   seed=cfg.seed)
    side = int(round(np.sqrt(X.shape[1])))
    if kernel_shape is None and normalize and side >= 3 and side % 2 == 1 and side * side == X.shape[1]:
        kernel_shape = (side, side)  # raw flattened square filters: the shape tests apply
    n_used = len(X)
    shape = tuple(shape) if shape is not None else tuple(kernel_shape or (X.shape[1],))
    few = dict(n_filters=n_filters, n_dropped=n_dropped, n_used=n_used, p=cfg.p, seed=cfg.seed, coeffs=coeffs,
               shape=shape, kernel_shape=kernel_shape, dim=X.shape[1], notes=notes)
    k = cfg.k
    if n_used < cfg.min_filters:
        return _too_few(name, f"too-few: {n_used} usable filters, fewer than the {cfg.min_filters} that a loop "
                        "needs to show in the homology of a dense core (min_filters); pool more networks "
                        "to analyse this layer", k=0 if k == "auto" else k, **few)
    if k == "auto":
        k = auto_k(n_used)
        notes.append(f"k=auto: k={k} for {n_used} filters (0.18 n^0.8 clipped to [{K_MIN}, {K_MAX}])")
    elif k >= n_used:
        if not cfg.clamp_k:
            return _too_few(name, f"too-few: {n_used} usable filters, but k={k} needs at least {k + 1}; "
                            f"use k='auto' (--k auto gives k={auto_k(n_used)}) or pool more networks",
                            k=k, **few)
        warnings.warn(f"layer {name!r}: k={k} >= {n_used} filters; using k={n_used - 1}.",
                      UserWarning, stacklevel=3)
        k = n_used - 1
    p_used = float(cfg.p)
    if cfg.min_core and cfg.p * n_used < cfg.min_core:
        p_used = float(min(1.0, cfg.min_core / n_used))
        notes.append(f"p raised from {cfg.p} to {p_used:.3f} so that the core keeps "
                     f"{min(cfg.min_core, n_used)} filters (min_core={cfg.min_core})")
    t = _topology(X, k=k, p=p_used, cfg=cfg, coeffs=coeffs, maxdim=cfg.maxdim, n_landmarks=cfg.n_landmarks,
                  kernel_shape=kernel_shape, circular=cfg.circular, notes=notes)
    scales = (_scales(X, k=k, cfg=cfg, coeffs=coeffs, kernel_shape=kernel_shape, notes=notes)
              if cfg.scales else None)
    core_idx, core, by_coeff = t["core_idx"], t["core"], t["by_coeff"]
    return LayerResult(
        name=name, shape=shape, kernel_shape=None if kernel_shape is None else tuple(kernel_shape),
        n_filters=n_filters, n_dropped=n_dropped, n_used=n_used, n_core=len(core), k=int(k), p=p_used,
        seed=cfg.seed, coeff=coeffs, diagrams=by_coeff[coeffs[0]], diagrams_by_coeff=by_coeff,
        bars=t["bars"], verdict=t["verdict"].label, core=core.astype(np.float32), provenance=prov[core_idx],
        verdict_detail=t["verdict"], circular=t["circular"], shapes=t["shapes"], scales=scales,
        notes=tuple(notes), theta=t["theta"],
    )
