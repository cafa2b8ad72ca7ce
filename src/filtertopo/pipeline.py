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

#: Defaults of the paper (PAPER.md §2) and of this implementation.
DEFAULTS = dict(k=200, p=0.3, maxdim=1, coeff=2, seed=0, n_landmarks=500, max_points=10000)


def _coeffs(coeff) -> tuple:
    if isinstance(coeff, str):
        try:
            coeff = [int(c) for c in coeff.replace(" ", "").split(",") if c]
        except ValueError:
            raise InputError(f"coeff must be a prime or a comma-separated list of primes such as '2,3'; "
                             f"got {coeff!r}.") from None
    if isinstance(coeff, (int, np.integer)) and not isinstance(coeff, bool):
        coeff = (int(coeff),)
    coeff = tuple(coeff)
    if not coeff:
        raise InputError("coeff must name at least one prime, e.g. 2 or '2,3'.")
    return coeff


def _validate(k, p, maxdim, coeff, n_landmarks, max_points) -> tuple:
    """Check the pipeline parameters; return the coefficient fields."""
    from .homology import _is_prime

    check_range("k", k, low=1, integer=True, fix="k is the neighbour for the density estimate, e.g. 200.")
    check_range("p", p, low=0, high=1, low_inclusive=False, fix="p is the fraction kept, e.g. 0.3.")
    check_range("maxdim", maxdim, low=0, high=3, integer=True, fix="use 1 (H0, H1) or 2 (adds H2).")
    check_range("n_landmarks", n_landmarks, low=2, integer=True, fix="e.g. 500.")
    if max_points is not None:
        check_range("max_points", max_points, low=2, integer=True, fix="e.g. 10000.")
    coeffs = _coeffs(coeff)
    bad = [q for q in coeffs if not _is_prime(q)]
    if bad:
        raise InputError(f"coeff must be primes (fields Z/p); got {bad}. Use 2, 3 or '2,3'.")
    return coeffs


def _progress(progress):
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def analyze_points(points, *, name: str = "points", k: int = 200, p: float = 0.3, maxdim: int = 1,
                   coeff=2, seed: int = 0, n_landmarks: int = 500, max_points: int | None = 10000,
                   normalize: bool = True, kernel_shape=None, provenance=None, shape=None,
                   clamp_k: bool = False, circular: bool = True, null_draws: int = 0,
                   init_kernels=None) -> LayerResult:
    """Analyse one point cloud of filters: normalise, dense core, persistent homology.

    Parameters
    ----------
    points : array-like of shape (n, d)
        Raw flattened filters (``normalize=True``) or points already on a sphere.
    name : str, default="points"
    k : int, default=200
        Neighbour used for the density estimate rho_k.
    p : float in (0, 1], default=0.3
        Fraction of densest points kept (the core X(k, p)).
    maxdim : int, default=1
    coeff : int or sequence of int or str, default=2
        Prime field(s); ``(2, 3)`` or ``"2,3"`` computes both, the first is primary.
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
        ``(kh, kw)`` for filters.
    provenance : ndarray of shape (n, 3), optional
        ``(source, out, in)`` per point; defaults to ``(0, i, 0)``.
    shape : tuple, optional
        Kernel shape recorded in the result.
    clamp_k : bool, default=False
        When the cloud has no more than k points, use ``k = n - 1`` with a warning
        instead of raising.
    circular : bool, default=True
        When H1 has a significant bar, compute a circle-valued coordinate of every
        core point from it (DREiMac), stored as ``theta``.
    null_draws : int, default=0
        Run the same pipeline on this many sets of matched Gaussian filters and add
        the margin of the longest H1 bar over them to ``metrics`` (see
        :func:`filtertopo.nullmodel.null_margin`). Costs ``null_draws`` more runs.
    init_kernels : ndarray, optional
        The same layer at initialisation, OIHW; a second null (needs ``null_draws >= 1``).

    Returns
    -------
    LayerResult
    """
    coeffs = _validate(k, p, maxdim, coeff, n_landmarks, max_points)
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
    if normalize:
        norm = normalize_filters(X)
        X, prov, n_dropped = norm.points, prov[norm.kept], norm.n_dropped
        if len(X) == 0:
            raise InputError(f"layer {name!r}: all {n_filters} filters are constant (zero after "
                             "mean-centring), so none can be normalised. Exclude the layer with --layers.")
        if n_dropped > 0.5 * n_filters:
            warnings.warn(f"layer {name!r}: {n_dropped} of {n_filters} filters are (near-)constant and "
                          "were dropped; is the layer pruned or untrained?", UserWarning, stacklevel=2)
    else:
        n_dropped = 0
    rng = np.random.default_rng(seed)
    if max_points is not None and len(X) > max_points:
        sub = np.sort(rng.choice(len(X), size=max_points, replace=False))
        X, prov = X[sub], prov[sub]
    n_used = len(X)
    if k >= n_used:
        if not clamp_k or n_used < 3:
            raise InputError(
                f"layer {name!r} has {n_used} usable filters, but k={k} needs at least {k + 1}. "
                f"Lower k (e.g. --k {max(1, n_used // 4)}), pool more checkpoints, leave the layer out "
                "with --layers, or pass --clamp-k to use k = n - 1 for small layers."
            )
        warnings.warn(f"layer {name!r}: k={k} >= {n_used} filters; using k={n_used - 1}.",
                      UserWarning, stacklevel=2)
        k = n_used - 1
    core_idx, _ = dense_core(X, k, p)
    core = X[core_idx]
    lm = (maxmin_landmarks(core, n_landmarks, seed=seed) if len(core) > n_landmarks
          else (np.arange(len(core)), 0.0))  # one complex for every coefficient field
    by_coeff = {}
    for q in coeffs:
        P = persistence(core, maxdim=maxdim, coeff=q, seed=seed, landmarks=lm)
        by_coeff[q] = P.diagrams
    diagrams = by_coeff[coeffs[0]]
    summary = bar_summary(diagrams)
    summary["cover_radius"] = float(P.cover_radius)
    extras, metrics, theta = {}, {}, None
    if circular and summary.get("n_significant", 0) >= 1 and len(core) >= 10:
        from .circular import circular_coordinates

        try:
            cc = circular_coordinates(core, n_landmarks=min(200, len(core)), seed=seed)
        except InputError as e:  # e.g. the landmark subsample shows no loop: keep the layer, say why
            extras["circular"] = {"error": str(e)}
        else:
            theta = cc.theta.astype(np.float32)
            extras["circular"] = {"bar": list(cc.bar), "n_landmarks": cc.n_landmarks, "prime": cc.prime}
    from .verdict import layer_verdict

    verdict = layer_verdict(by_coeff, core, theta=theta)
    extras["verdict"] = verdict.to_dict()
    if kernel_shape is not None and _fits_shapes(kernel_shape):
        from .shapes import shape_fractions

        metrics.update(shape_fractions(core, kernel_shape))
    if null_draws and normalize:
        from .nullmodel import null_margin

        metrics.update(null_margin(
            points_raw, kernel_shape if kernel_shape is not None else (1, X.shape[1]), k=k, p=p,
            n_draws=null_draws, seed=seed, observed=summary["h1_max"], init_kernels=init_kernels,
            n_landmarks=n_landmarks, max_points=max_points, coeff=coeffs[0], clamp_k=clamp_k,
            circular=False))
    return LayerResult(
        name=name, shape=tuple(shape) if shape is not None else tuple(kernel_shape or (X.shape[1],)),
        kernel_shape=None if kernel_shape is None else tuple(kernel_shape),
        n_filters=n_filters, n_dropped=n_dropped, n_used=n_used, n_core=len(core), k=int(k), p=float(p),
        seed=int(seed), coeff=coeffs, diagrams=diagrams, diagrams_by_coeff=by_coeff, summary=summary,
        verdict=verdict.label, core=core.astype(np.float32), provenance=prov[core_idx], metrics=metrics,
        extras=extras, theta=theta,
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
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as ex:
            # largest layers first balances the workers; results come back in depth order
            order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][1]))
            futs = {i: ex.submit(_layer_job, *jobs[i], 1) for i in order}
            for i in order:
                futs[i].add_done_callback(lambda f: bar.update())
            return [futs[i].result() for i in range(len(jobs))]
    finally:
        bar.close()


def analyze(sources, *, layers=None, k: int = 200, p: float = 0.3, maxdim: int = 1, coeff=2,
            seed: int = 0, n_landmarks: int = 500, max_points: int | None = 10000,
            allow_pickle: bool = False, clamp_k: bool = False, circular: bool = True,
            null_draws: int = 0, null_init=None, n_jobs: int | None = None,
            progress=None) -> AnalysisResult:
    """Analyse the spatial filters of every conv layer of one or more checkpoints.

    Parameters
    ----------
    sources : path, nn.Module, KernelBundle, mapping of name -> OIHW array, or a list of these
        A list is pooled layer by layer (by layer name), as the paper pools networks.
    layers : str or list of str, optional
        Selector, see :func:`select_layers`.
    k, p, maxdim, coeff, seed, n_landmarks, max_points, clamp_k, circular, null_draws
        See :func:`analyze_points`.
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
    >>> res = analyze({"conv1": rng.normal(size=(40, 10, 3, 3))}, k=20, progress=False)
    >>> res.to_frame()[["layer", "n_filters", "n_core"]].values.tolist()
    [['conv1', 400, 120]]
    """
    if not isinstance(sources, (list, tuple)):
        sources = [sources]
    if not sources:
        raise InputError("no checkpoint given; pass at least one path.")
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
                  clamp_k=clamp_k, circular=circular, null_draws=null_draws,
                  null_init=None if null_init is None else str(getattr(null_init, "source", null_init)),
                  n_jobs=n_jobs)
    if n_jobs is None:
        n_jobs = 1
    check_range("n_jobs", n_jobs, low=-1, integer=True, fix="use 1, a number of processes, or -1 for all cores.")
    if n_jobs in (0, -1):
        n_jobs = os.cpu_count() or 1
    kw = dict(k=k, p=p, maxdim=maxdim, coeff=coeff, seed=seed, n_landmarks=n_landmarks,
              max_points=max_points, normalize=True, clamp_k=clamp_k, circular=circular,
              null_draws=null_draws)
    _validate(k, p, maxdim, coeff, n_landmarks, max_points)  # fail before any layer is computed
    check_range("null_draws", null_draws, low=0, integer=True, fix="e.g. 3; 0 skips the null model.")
    init = {} if null_init is None else as_bundle(null_init, allow_pickle=allow_pickle).kernels
    if null_init is not None and not null_draws:
        raise InputError("null_init is used by the null model; pass null_draws >= 1 (e.g. --null-draws 3).")
    jobs = [(name, filters_from_kernels(name, [b.kernels[name] for b in bundles]),
             dict(kw, init_kernels=init.get(name))) for name in chosen]
    results = []
    for res, messages in _map_layers(jobs, min(n_jobs, len(jobs)), progress):
        for m in messages:
            warnings.warn(m, UserWarning, stacklevel=2)
        results.append(res)
    skipped = [dict(source=b.source, name=s.name, shape=list(s.shape), reason=s.reason)
               for b in bundles for s in b.skipped]
    return AnalysisResult(tuple(results), config, tuple(skipped))
