"""The analysis pipeline: the one place that knows the stage order.

weights -> filters -> normalise -> (subsample) -> dense core X(k, p)
-> landmarks -> persistent homology -> summary, verdict and metrics.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import warnings

import numpy as np

from .density import dense_core, maxmin_landmarks
from .errors import InputError, check_range
from .filters import FilterSet, filters_from_kernels
from .homology import bar_summary, persistence
from .normalize import normalize_filters
from .result import AnalysisResult, LayerResult
from .weights import as_bundle

__all__ = ["analyze", "analyze_points", "select_layers", "DEFAULTS"]

#: Defaults of the paper (PAPER.md §2) and of this implementation; ``k="auto"`` is :func:`auto_k`.
DEFAULTS = dict(k="auto", p=0.3, maxdim=1, coeff=2, seed=0, n_landmarks=500, max_points=10000)

#: Layers with fewer usable filters than this get the verdict ``"too-few"`` (see :func:`auto_k`).
MIN_FILTERS = 30
#: The dense core keeps at least this many filters (p is raised for small layers).
MIN_CORE = 60
#: Bounds of :func:`auto_k`.
K_MIN, K_MAX = 5, 300
#: Largest coefficient prime: ripser.py packs coefficients in 7 bits; 131 already allocates > 16 GB.
MAX_COEFF = 127
#: Memory budget of one persistent-homology call (bytes), env FILTERTOPO_MAX_PH_BYTES.
MAX_PH_BYTES = 4 * 1024**3
#: Bytes per simplex of the top dimension that ripser.py keeps (measured: 500 landmarks,
#: maxdim 2 = C(500, 3) triangles -> 1.70 GB peak).
_PH_BYTES_PER_SIMPLEX = 82


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


def _is_auto(k) -> bool:
    return isinstance(k, str) and k.strip().lower() == "auto"


def _coeffs(coeff) -> tuple:
    if isinstance(coeff, str):
        try:
            coeff = [int(c) for c in coeff.replace(" ", "").split(",") if c]
        except ValueError:
            raise InputError(f"coeff must be a prime or a comma-separated list of primes such as '2,3'; "
                             f"got {coeff!r}.") from None
    if isinstance(coeff, (int, np.integer)) and not isinstance(coeff, bool):
        coeff = (int(coeff),)
    try:
        coeff = tuple(coeff)
    except TypeError:
        raise InputError(f"coeff must be a prime or a list of primes such as (2, 3); got {coeff!r}.") from None
    if not coeff:
        raise InputError("coeff must name at least one prime, e.g. 2 or '2,3'.")
    return coeff


def _ph_bytes(n: int, maxdim: int) -> int:
    """Estimated peak memory of ripser on ``n`` points up to ``maxdim`` (bytes)."""
    from math import comb

    return int(_PH_BYTES_PER_SIMPLEX * comb(int(n), int(maxdim) + 1))


def _validate(k, p, maxdim, coeff, n_landmarks, max_points, seed=0) -> tuple:
    """Check the pipeline parameters before any work; return the coefficient fields."""
    from .errors import check_seed, env_limit
    from .homology import _is_prime

    if not _is_auto(k):
        if isinstance(k, str):
            raise InputError(f"k (--k) must be 'auto' or an integer >= 1; got {k!r}.")
        check_range("k (--k)", k, low=1, integer=True,
                    fix="k is the neighbour of the density estimate; 'auto' picks it from the layer size.")
    check_range("p (--p)", p, low=0, high=1, low_inclusive=False, fix="p is the fraction kept, e.g. 0.3.")
    check_range("maxdim (--maxdim)", maxdim, low=0, high=3, integer=True, fix="use 1 (H0, H1) or 2 (adds H2).")
    check_range("n_landmarks (--n-landmarks)", n_landmarks, low=2, high=100_000, integer=True, fix="e.g. 500.")
    if max_points is not None:
        check_range("max_points (--max-points)", max_points, low=2, high=10**8, integer=True, fix="e.g. 10000.")
    check_seed("seed (--seed)", seed, allow_generator=False)
    coeffs = _coeffs(coeff)
    for q in coeffs:
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)):
            raise InputError(f"coeff (--coeff) must be primes; got {q!r}. Use 2, 3 or '2,3'.")
    big = [int(q) for q in coeffs if not 2 <= q <= MAX_COEFF]
    if big:
        raise InputError(f"coeff (--coeff) must be primes from 2 to {MAX_COEFF} (ripser.py's coefficient "
                         f"limit; larger ones crash it or never finish); got {big}. Use 2, 3 or '2,3'.")
    bad = [int(q) for q in coeffs if not _is_prime(int(q))]
    if bad:
        raise InputError(f"coeff (--coeff) must be primes (fields Z/p); got {bad}. Use 2, 3 or '2,3'.")
    budget = env_limit("FILTERTOPO_MAX_PH_BYTES", MAX_PH_BYTES)
    need = _ph_bytes(n_landmarks, maxdim)
    if maxdim >= 2 and need > budget:
        from math import comb

        fit = int(n_landmarks)
        while fit > 10 and _ph_bytes(fit, maxdim) > budget:
            fit = int(fit * 0.9)
        raise InputError(
            f"maxdim={maxdim} (--maxdim) on n_landmarks={n_landmarks} (--n-landmarks) needs about "
            f"{need / 1024**3:.1f} GB for ripser ({comb(int(n_landmarks), maxdim + 1):,} simplices of dimension "
            f"{maxdim}), over the budget of {budget / 1024**3:.1f} GB (FILTERTOPO_MAX_PH_BYTES). "
            f"Use --n-landmarks {fit} or fewer, or a lower --maxdim.")
    return coeffs


def _progress(progress):
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def _note(notes, stage, err):
    notes.append(f"{stage} failed ({type(err).__name__}: {err}); the layer's other results stand")


def _topology(X, *, k, p, maxdim, coeffs, seed, n_landmarks, kernel_shape, circular, notes,
              cc_landmarks=200):
    """The topology core shared by every path: dense core -> landmarks -> PH -> verdict.

    ``X`` are normalised points. Returns a dict with the core indices, diagrams, summary,
    theta, shape fractions, verdict and extras.
    """
    from .verdict import layer_verdict

    core_idx, _ = dense_core(X, k, p)
    core = X[core_idx]
    lm = (maxmin_landmarks(core, n_landmarks, seed=seed) if len(core) > n_landmarks
          else (np.arange(len(core)), 0.0))  # one complex for every coefficient field
    by_coeff = {}
    for q in coeffs:
        P = persistence(core, maxdim=maxdim, coeff=q, seed=seed, landmarks=lm)
        by_coeff[q] = P.diagrams
    summary = bar_summary(by_coeff[coeffs[0]])
    summary["cover_radius"] = float(P.cover_radius)
    extras, metrics, theta, edge_theta = {}, {}, None, None
    if circular and summary.get("n_significant", 0) >= 1 and len(core) >= 10:
        try:
            from .circular import circular_coordinates

            cc = circular_coordinates(core, n_landmarks=min(cc_landmarks, len(core)), seed=seed)
        except Exception as e:  # noqa: BLE001 - e.g. no integral lift: keep the layer, say why
            extras["circular"] = {"error": f"{type(e).__name__}: {e}"}
            _note(notes, "circular coordinates", e)
        else:
            theta = cc.theta.astype(np.float32)
            extras["circular"] = {"bar": list(cc.bar), "n_landmarks": cc.n_landmarks, "prime": cc.prime}
    if kernel_shape is not None and _fits_shapes(kernel_shape):
        try:
            from .shapes import fit_shapes, shape_fractions

            fit = fit_shapes(core, kernel_shape)  # once: the fractions and the edge angle
            metrics.update(shape_fractions(core, kernel_shape, fit=fit))
            edge_theta = fit.theta
        except Exception as e:  # noqa: BLE001
            _note(notes, "shape fit", e)
    try:
        # the gap tests read the edge angle of primary-circle cores and the PCA angle of other
        # loops: DREiMac's coordinate on a small, clumped dense core is distorted (agreement with
        # the edge angle 0.57-0.63 on clean primary-circle cores of 60-120 filters)
        verdict = layer_verdict(by_coeff, core, theta=None, edge_theta=edge_theta,
                                frac_primary=metrics.get("frac_primary"))
    except Exception as e:  # noqa: BLE001
        _note(notes, "verdict", e)
        verdict = layer_verdict(by_coeff, None)
    extras["verdict"] = verdict.to_dict()
    return dict(core_idx=core_idx, core=core, by_coeff=by_coeff, summary=summary, theta=theta,
                metrics=metrics, verdict=verdict, extras=extras)


def scale_grid(k: int, p: float, n: int) -> list:
    """The (k, p) grid of the multi-scale verdict: k/2, k, 2k times 2p/3, p, 5p/3.

    k is clipped to [2, n - 1] and p to (0, 1]; duplicates are dropped.
    """
    ks = sorted({int(min(max(2, round(k * f)), n - 1)) for f in (0.5, 1.0, 2.0)})
    ps = sorted({round(min(1.0, p * f), 3) for f in (2 / 3, 1.0, 5 / 3)})
    return [(kk, pp) for kk in ks for pp in ps]


def _scales(X, *, k, p, min_core, seed, kernel_shape, coeffs, notes):
    """Verdict over the (k, p) grid (fewer landmarks): cells, majority and its support."""
    from collections import Counter

    cells = []
    for kk, pp in scale_grid(k, p, len(X)):
        pe = max(pp, min(1.0, min_core / len(X)))
        try:
            t = _topology(X, k=kk, p=pe, maxdim=1, coeffs=coeffs[:1], seed=seed, n_landmarks=200,
                          kernel_shape=kernel_shape, circular=True, notes=[], cc_landmarks=100)
        except Exception as e:  # noqa: BLE001
            _note(notes, f"scale k={kk}, p={pp}", e)
            continue
        top = t["summary"].get("h1_top", [])
        cells.append(dict(k=int(kk), p=float(pp), verdict=t["verdict"].label,
                          h1_1=float(top[0]) if top else 0.0, h1_2=float(top[1]) if len(top) > 1 else 0.0))
    if not cells:
        return None
    counts = Counter(c["verdict"] for c in cells)
    label, m = max(counts.items(), key=lambda kv: (kv[1], kv[0] == "none"))
    return dict(cells=cells, majority=label, support=m / len(cells))


def _too_few(name, reason, *, n_filters, n_dropped, n_used, k, p, seed, coeffs, shape, kernel_shape,
             dim, provenance, notes):
    from .verdict import Verdict

    empty = {d: np.zeros((0, 2)) for d in (0, 1)}
    v = Verdict("too-few", 0, int(coeffs[0]), (), 0.0, None, None, None, None, None, (reason,))
    return LayerResult(
        name=name, shape=tuple(shape), kernel_shape=None if kernel_shape is None else tuple(kernel_shape),
        n_filters=n_filters, n_dropped=n_dropped, n_used=n_used, n_core=0, k=int(k), p=float(p),
        seed=int(seed), coeff=coeffs, diagrams=empty, diagrams_by_coeff={q: dict(empty) for q in coeffs},
        summary={"h1_top": [], "n_significant": 0}, verdict="too-few",
        core=np.zeros((0, dim), np.float32), provenance=np.zeros((0, 3), np.int64),
        extras={"verdict": v.to_dict(), "notes": list(notes) + [reason]})


def analyze_points(points, *, name: str = "points", k="auto", p: float = 0.3, maxdim: int = 1,
                   coeff=2, seed: int = 0, n_landmarks: int = 500, max_points: int | None = 10000,
                   normalize: bool = True, kernel_shape=None, provenance=None, shape=None,
                   clamp_k: bool = False, circular: bool = True, null_draws: int = 0,
                   init_kernels=None, min_core: int = MIN_CORE, scales: bool = False) -> LayerResult:
    """Analyse one point cloud of filters: normalise, dense core, persistent homology.

    Parameters
    ----------
    points : array-like of shape (n, d)
        Raw flattened filters (``normalize=True``) or points already on a sphere.
    name : str, default="points"
    k : int or "auto", default="auto"
        Neighbour used for the density estimate rho_k; "auto" chooses it from the number
        of filters used (:func:`auto_k`). The k used is recorded as ``LayerResult.k``.
    p : float in (0, 1], default=0.3
        Fraction of densest points kept (the core X(k, p)); raised to keep at least
        ``min_core`` filters (the p used is recorded as ``LayerResult.p``).
    maxdim : int, default=1
    coeff : int or sequence of int or str, default=2
        Prime field(s) up to :data:`MAX_COEFF`; ``(2, 3)`` or ``"2,3"`` computes both,
        the first is primary.
    seed : int, default=0
        Seeds the subsample and the first landmark.
    n_landmarks : int, default=500
        Persistent homology runs on this many greedy landmarks of the core.
    max_points : int or None, default=10000
        Clouds larger than this are subsampled uniformly at random first; k then
        refers to the subsample.
    normalize : bool, default=True
        Mean-centre and L2-normalise each filter, dropping constant ones.
    kernel_shape : tuple, optional
        ``(kh, kw)`` for filters; with ``normalize=True`` and d = s*s for an odd s >= 3
        it defaults to ``(s, s)``.
    provenance : ndarray of shape (n, 3), optional
        ``(source, out, in)`` per point; defaults to ``(0, i, 0)``.
    shape : tuple, optional
        Kernel shape recorded in the result.
    clamp_k : bool, default=False
        With an integer k: when the cloud has no more than k points, use ``k = n - 1``
        with a warning instead of the verdict ``"too-few"``.
    circular : bool, default=True
        When H1 has a significant bar, compute a circle-valued coordinate of every
        core point from it (DREiMac), stored as ``theta``.
    null_draws : int, default=0
        Run the same pipeline on this many sets of matched Gaussian filters and add
        the margin of the longest H1 bar over them to ``metrics`` (see
        :func:`filtertopo.nullmodel.null_margin`). Costs ``null_draws`` more runs.
    init_kernels : ndarray, optional
        The same layer at initialisation, OIHW; a second null (needs ``null_draws >= 1``).
    min_core : int, default=60
        Smallest dense core: p is raised to ``min_core / n`` for small layers (a loop
        sampled by a dozen points breaks apart); 0 keeps p as given.
    scales : bool, default=False
        Also run the layer over the (k, p) grid of :func:`scale_grid` (200 landmarks
        each) and record each cell's verdict, the majority verdict and its support.

    Returns
    -------
    LayerResult
        A layer with fewer than :data:`MIN_FILTERS` usable filters (or fewer than an
        integer k + 1) is returned with the verdict ``"too-few"`` and the reason in
        ``extras["notes"]``; nothing is raised for it.
    """
    coeffs = _validate(k, p, maxdim, coeff, n_landmarks, max_points, seed)
    check_range("min_core", min_core, low=0, integer=True, fix="e.g. 50; 0 keeps p as given.")
    X = points_raw = np.asarray(points, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"layer {name!r}: points must be 2-D (n, d); got shape {X.shape}.")
    n_filters = len(X)
    prov = (np.stack([np.zeros(n_filters), np.arange(n_filters), np.zeros(n_filters)], 1).astype(np.int64)
            if provenance is None else np.asarray(provenance, dtype=np.int64))
    if not np.all(np.isfinite(X)):
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise InputError(f"layer {name!r}: {bad} of {n_filters} filters contain NaN or Inf. "
                         "The checkpoint is probably from a diverged run; exclude the layer with --layers.")
    notes = []
    side = int(round(np.sqrt(X.shape[1])))
    if kernel_shape is None and normalize and side >= 3 and side % 2 == 1 and side * side == X.shape[1]:
        kernel_shape = (side, side)  # raw flattened square filters: the shape tests apply
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
            warnings.warn(msg, UserWarning, stacklevel=2)
    else:
        n_dropped = 0
    rng = np.random.default_rng(seed)
    if max_points is not None and len(X) > max_points:
        sub = np.sort(rng.choice(len(X), size=max_points, replace=False))
        X, prov = X[sub], prov[sub]
    n_used = len(X)
    few = dict(n_filters=n_filters, n_dropped=n_dropped, n_used=n_used, p=p, seed=seed, coeffs=coeffs,
               shape=shape if shape is not None else tuple(kernel_shape or (X.shape[1],)),
               kernel_shape=kernel_shape, dim=X.shape[1], provenance=prov, notes=notes)
    if n_used < MIN_FILTERS:
        return _too_few(name, f"too-few: {n_used} usable filters, fewer than the {MIN_FILTERS} that a loop "
                        "needs to show in the homology of a dense core (MIN_FILTERS); pool more networks "
                        "to analyse this layer", k=0 if _is_auto(k) else k, **few)
    if _is_auto(k):
        k = auto_k(n_used)
        notes.append(f"k=auto: k={k} for {n_used} filters (0.18 n^0.8 clipped to [{K_MIN}, {K_MAX}])")
    elif k >= n_used:
        if not clamp_k:
            return _too_few(name, f"too-few: {n_used} usable filters, but k={k} needs at least {k + 1}; "
                            f"use k='auto' (--k auto gives k={auto_k(n_used)}) or pool more networks",
                            k=k, **few)
        warnings.warn(f"layer {name!r}: k={k} >= {n_used} filters; using k={n_used - 1}.",
                      UserWarning, stacklevel=2)
        k = n_used - 1
    p_used = float(p)
    if min_core and p * n_used < min_core:
        p_used = float(min(1.0, min_core / n_used))
        notes.append(f"p raised from {p} to {p_used:.3f} so that the core keeps {min(min_core, n_used)} "
                     f"filters (min_core={min_core})")
    t = _topology(X, k=k, p=p_used, maxdim=maxdim, coeffs=coeffs, seed=seed, n_landmarks=n_landmarks,
                  kernel_shape=kernel_shape, circular=circular, notes=notes)
    core_idx, core, by_coeff, summary = t["core_idx"], t["core"], t["by_coeff"], t["summary"]
    metrics, extras, theta, verdict = t["metrics"], t["extras"], t["theta"], t["verdict"]
    if scales:
        sc = _scales(X, k=k, p=p, min_core=min_core, seed=seed, kernel_shape=kernel_shape, coeffs=coeffs,
                     notes=notes)
        if sc is not None:
            extras["scales"] = sc
    if null_draws and normalize:
        try:
            from .nullmodel import null_margin

            metrics.update(null_margin(
                points_raw, kernel_shape if kernel_shape is not None else (1, X.shape[1]), k=k, p=p_used,
                n_draws=null_draws, seed=seed, observed=summary["h1_max"], init_kernels=init_kernels,
                n_landmarks=n_landmarks, max_points=max_points, coeff=coeffs[0], clamp_k=True,
                circular=False, min_core=0))
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001
            _note(notes, "null model", e)
    extras["notes"] = notes
    return LayerResult(
        name=name, shape=tuple(shape) if shape is not None else tuple(kernel_shape or (X.shape[1],)),
        kernel_shape=None if kernel_shape is None else tuple(kernel_shape),
        n_filters=n_filters, n_dropped=n_dropped, n_used=n_used, n_core=len(core), k=int(k), p=p_used,
        seed=int(seed), coeff=coeffs, diagrams=by_coeff[coeffs[0]], diagrams_by_coeff=by_coeff,
        summary=summary, verdict=verdict.label, core=core.astype(np.float32), provenance=prov[core_idx],
        metrics=metrics, extras=extras, theta=theta,
    )


def _fits_shapes(kernel_shape) -> bool:
    from .shapes import kernel_size

    try:
        kernel_size(kernel_shape)
    except InputError:
        return False
    return True


def select_layers(names, selector):
    """Layer names matched by a selector, in their original order.

    The selector is None (all), or a comma-separated string / list of exact names,
    shell-style globs (``features.*``) or 1-based depth numbers (``1`` = first conv layer).
    """
    names = list(names)
    if selector is None:
        return names
    items = selector.split(",") if isinstance(selector, str) else list(selector)
    items = [str(s).strip() for s in items if str(s).strip()]
    chosen = set()
    for item in items:
        if item.isdigit():
            i = int(item)
            if 1 <= i <= len(names):
                chosen.add(names[i - 1])
            continue
        chosen.update(n for n in names if n == item or fnmatch.fnmatchcase(n, item))
    out = [n for n in names if n in chosen]
    if not out:
        raise InputError(f"--layers {selector!r} matches no conv layer. Available: {names[:20]}"
                         + (" ..." if len(names) > 20 else "")
                         + ". Use exact names, globs like 'features.*', or depths like '1,2'.")
    return out


def _layer_job(name, fs: FilterSet, kw: dict, blas_threads):
    """Analyse one layer; returns (LayerResult, warning messages) so workers' warnings reach the caller."""
    import contextlib

    limit = contextlib.nullcontext()
    if blas_threads is not None:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(blas_threads)
    try:
        with limit, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            res = analyze_points(fs.points, name=name, kernel_shape=fs.kernel_shape,
                                 provenance=fs.provenance, shape=fs.shapes[0], **kw)
    except InputError as e:
        msg = str(e)
        raise InputError(msg if repr(name) in msg else f"layer {name!r}: {msg}") from None
    return res, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def _map_layers(jobs, n_jobs, progress):
    """Run ``_layer_job`` over ``jobs`` (name, FilterSet, kw), in order, on ``n_jobs`` processes."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="layers", unit="layer", disable=not _progress(progress), file=sys.stderr)
    try:
        if n_jobs <= 1 or len(jobs) <= 1:
            out = []
            for name, fs, kw in jobs:
                bar.set_postfix_str(name)
                out.append(_layer_job(name, fs, kw, None))
                bar.update()
            return out
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        if ctx.get_start_method() == "fork":
            from .circular import warm_up

            warm_up()  # forked workers inherit ripser and scipy.sparse.linalg already imported
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as ex:
            # largest layers first balances the workers; results come back in depth order
            order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][1]))
            futs = {i: ex.submit(_layer_job, *jobs[i], 1) for i in order}
            for i in order:
                futs[i].add_done_callback(lambda f: bar.update())
            return [futs[i].result() for i in range(len(jobs))]
    finally:
        bar.close()


def analyze(sources, *, layers=None, k="auto", p: float = 0.3, maxdim: int = 1, coeff=2,
            seed: int = 0, n_landmarks: int = 500, max_points: int | None = 10000,
            allow_pickle: bool = False, clamp_k: bool = False, circular: bool = True,
            null_draws: int = 0, null_init=None, n_jobs: int | None = None,
            progress=None, scales: bool = False, min_core: int = MIN_CORE) -> AnalysisResult:
    """Analyse the spatial filters of every conv layer of one or more checkpoints.

    Parameters
    ----------
    sources : path, nn.Module, KernelBundle, mapping of name -> OIHW array, or a list of these
        A list is pooled layer by layer (by layer name), as the paper pools networks.
    layers : str or list of str, optional
        Selector, see :func:`select_layers`.
    k, p, maxdim, coeff, seed, n_landmarks, max_points, clamp_k, circular, null_draws, scales, min_core
        See :func:`analyze_points`. Layers too small to analyse get the verdict
        ``"too-few"`` (one warning) and every other layer is analysed.
    null_init : path, nn.Module, mapping or KernelBundle, optional
        The same network at initialisation: a second null model per layer (with
        ``null_draws >= 1``), matched by layer name.
    allow_pickle : bool, default=False
        Allow code-running unpickling of PyTorch checkpoints (trusted files only).
    n_jobs : int or None, default=None
        Layers analysed in parallel worker processes (each with one BLAS thread);
        None or 1 runs in this process, -1 uses every core. Results do not depend on it.
    progress : bool or None
        Progress bar on stderr; None shows it only on a terminal.

    Returns
    -------
    AnalysisResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> res = analyze({"conv1": rng.normal(size=(40, 10, 3, 3))}, progress=False)
    >>> res.to_frame()[["layer", "n_filters", "k", "n_core"]].values.tolist()
    [['conv1', 400, 22, 120]]
    """
    if not isinstance(sources, (list, tuple)):
        sources = [sources]
    if not sources:
        raise InputError("no checkpoint given; pass at least one path.")
    _validate(k, p, maxdim, coeff, n_landmarks, max_points, seed)  # fail before reading anything
    check_range("min_core", min_core, low=0, integer=True, fix="e.g. 50; 0 keeps p as given.")
    check_range("null_draws (--null-draws)", null_draws, low=0, high=1000, integer=True,
                fix="e.g. 3; 0 skips the null model.")
    if null_init is not None and not null_draws:
        raise InputError("null_init is used by the null model; pass null_draws >= 1 (e.g. --null-draws 3).")
    bundles = [as_bundle(s, allow_pickle=allow_pickle) for s in sources]
    names = []
    for b in bundles:
        names += [n for n in b.kernels if n not in names]
    if not names:
        skipped = "; ".join(f"{s.name} {s.shape}: {s.reason}" for s in bundles[0].skipped[:8])
        raise InputError(f"{bundles[0].source}: no conv layer found (a conv kernel is a 4-D tensor with "
                         f"spatial size >= 2). Skipped: {skipped or 'nothing'}. "
                         "Run `filtertopo describe PATH` to see the tensors.")
    chosen = select_layers(names, layers)
    missing = {n: [b.source for b in bundles if n not in b.kernels] for n in chosen}
    for n, srcs in missing.items():
        if srcs:
            raise InputError(f"layer {n!r} is missing from {srcs}; pooled checkpoints must share layer "
                             "names. Select common layers with --layers.")
    config = dict(sources=[b.source for b in bundles], layers=chosen, k=k, p=p, maxdim=maxdim,
                  coeff=list(_coeffs(coeff)), seed=seed, n_landmarks=n_landmarks, max_points=max_points,
                  clamp_k=clamp_k, circular=circular, null_draws=null_draws, scales=bool(scales),
                  min_core=min_core,
                  null_init=None if null_init is None else str(getattr(null_init, "source", null_init)),
                  n_jobs=n_jobs)
    if n_jobs is None:
        n_jobs = 1
    check_range("n_jobs", n_jobs, low=-1, integer=True, fix="use 1, a number of processes, or -1 for all cores.")
    if n_jobs in (0, -1):
        n_jobs = os.cpu_count() or 1
    kw = dict(k=k, p=p, maxdim=maxdim, coeff=coeff, seed=seed, n_landmarks=n_landmarks,
              max_points=max_points, normalize=True, clamp_k=clamp_k, circular=circular,
              null_draws=null_draws, scales=bool(scales), min_core=min_core)
    init = {} if null_init is None else as_bundle(null_init, allow_pickle=allow_pickle).kernels
    jobs = [(name, filters_from_kernels(name, [b.kernels[name] for b in bundles]),
             dict(kw, init_kernels=init.get(name))) for name in chosen]
    results = []
    for res, messages in _map_layers(jobs, min(n_jobs, len(jobs)), progress):
        for m in messages:
            warnings.warn(m, UserWarning, stacklevel=2)
        results.append(res)
    few = [r.name for r in results if r.verdict == "too-few"]
    if few:
        warnings.warn(f"{len(few)} of {len(results)} layer(s) too small to analyse, verdict 'too-few': "
                      f"{', '.join(few[:6])}{' ...' if len(few) > 6 else ''} (see the notes of each layer)",
                      UserWarning, stacklevel=2)
    skipped = [dict(source=b.source, name=s.name, shape=list(s.shape), reason=s.reason)
               for b in bundles for s in b.skipped]
    return AnalysisResult(tuple(results), config, tuple(skipped))
