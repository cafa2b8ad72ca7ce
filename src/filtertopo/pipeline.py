"""The analysis pipeline: checkpoints in, :class:`~filtertopo.result.AnalysisResult` out.

weights -> filters -> (per layer) the topology core of :mod:`filtertopo.topology`, plus the
null model -> results. Settings come from one :class:`~filtertopo.config.AnalysisConfig`.
"""

from __future__ import annotations

import fnmatch
import os
import warnings

import numpy as np

from .config import (K_MAX, K_MIN, MAX_COEFF, MAX_PH_BYTES, MIN_CORE, MIN_FILTERS,  # noqa: F401 - re-exported
                     AnalysisConfig, check_ph_memory)
from .errors import InputError, check_range
from .filters import FilterSet, filters_from_kernels
from .result import AnalysisResult, LayerResult, NullMargin
from .topology import analyse_cloud, auto_k, scale_grid  # noqa: F401 - re-exported
from .weights import as_bundle

__all__ = ["analyze", "analyze_points", "select_layers", "resolve_config", "DEFAULTS"]

#: The default settings (the paper's and this implementation's, README "What is computed"): ``AnalysisConfig().to_dict()``.
DEFAULTS = AnalysisConfig().to_dict()

_SETTINGS = frozenset(AnalysisConfig.__dataclass_fields__)


def resolve_config(config=None, **overrides) -> AnalysisConfig:
    """An :class:`AnalysisConfig` from a config (or dict, or None for the defaults) and
    keyword overrides (``k=``, ``p=``, ...); unknown names are an InputError naming them."""
    if config is None:
        config = AnalysisConfig()
    elif isinstance(config, dict):
        config = AnalysisConfig.from_dict(config)
    elif not isinstance(config, AnalysisConfig):
        raise InputError(f"config must be an AnalysisConfig, a dict of its settings or None; "
                         f"got {type(config).__name__}.")
    return config.replace(**overrides) if overrides else config


def _validate(k="auto", p=0.3, maxdim=1, coeff=2, n_landmarks=500, max_points=10000, seed=0) -> tuple:
    """Check the pipeline parameters before any work; return the coefficient fields."""
    return AnalysisConfig(k=k, p=p, maxdim=maxdim, coeff=coeff, n_landmarks=n_landmarks,
                          max_points=max_points, seed=seed).coeff


def analyze_points(points, config: AnalysisConfig | dict | None = None, *, name: str = "points",
                   normalize: bool = True, kernel_shape=None, provenance=None, shape=None,
                   init_kernels=None, **overrides) -> LayerResult:
    """Analyse one point cloud of filters: normalise, dense core, persistent homology, verdict.

    Parameters
    ----------
    points : array-like of shape (n, d)
        Raw flattened filters (``normalize=True``) or points already on a sphere
        (``normalize=False``, e.g. 3x3 patches in DCT coordinates on S^7).
    config : AnalysisConfig, dict or None
        The settings (None: the defaults); keyword ``overrides`` change single settings.
    name : str, default="points"
    normalize : bool, default=True
        Mean-centre and L2-normalise each filter, dropping constant ones.
    kernel_shape : tuple, optional
        ``(kh, kw)`` for filters; with ``normalize=True`` and d = s*s for an odd s >= 3
        it defaults to ``(s, s)``. With ``normalize=False``, 8 coordinates and ``(3, 3)``
        the points are read as DCT coordinates of 3x3 patches.
    provenance : ndarray of shape (n, 3), optional
        ``(source, out, in)`` per point; defaults to ``(0, i, 0)``.
    shape : tuple, optional
        Kernel shape recorded in the result.
    init_kernels : ndarray, optional
        The same layer at initialisation, OIHW; a second null (needs ``null_draws >= 1``).
    **overrides
        Settings of :class:`~filtertopo.config.AnalysisConfig`, e.g. ``k="auto"``
        (the density neighbour, from the layer size by :func:`auto_k`; the k used is
        ``LayerResult.k``), ``p=0.3`` (fraction kept; raised to keep ``min_core`` filters,
        the p used is ``LayerResult.p``), ``maxdim=1``, ``coeff=2`` (prime field(s) up to
        :data:`MAX_COEFF`; ``(2, 3)`` or ``"2,3"``, the first is primary), ``seed=0``,
        ``n_landmarks=500``, ``max_points=10000`` (larger clouds are subsampled first),
        ``clamp_k=False`` (an integer k >= n uses k = n - 1 instead of ``"too-few"``),
        ``circular=True`` (circle-valued coordinate ``theta`` of a looped core),
        ``null_draws=0`` (matched Gaussian null draws: ``LayerResult.null``),
        ``scales=False`` (the (k, p) grid of :func:`scale_grid`: ``LayerResult.scales``),
        ``min_core=60``, ``min_filters=30``, ``verdict=`` and ``shapes=`` rules.

    Returns
    -------
    LayerResult
        A layer with fewer than ``min_filters`` usable filters (or fewer than an integer
        k + 1) is returned with the verdict ``"too-few"`` and the reason in ``notes``;
        nothing is raised for it.
    """
    cfg = resolve_config(config, **overrides)
    check_ph_memory(cfg.n_landmarks, cfg.maxdim)  # this machine's headroom, before any work
    layer = analyse_cloud(points, cfg, name=name, normalize=normalize, kernel_shape=kernel_shape,
                          provenance=provenance, shape=shape)
    if cfg.null_draws and layer.verdict != "too-few":
        dct = not normalize and layer.kernel_shape == (3, 3) and np.shape(points)[-1] == 8
        if normalize or dct:
            layer = _with_null(layer, points, cfg, init_kernels=init_kernels, dct=dct)
    return layer


def _with_null(layer: LayerResult, points, cfg: AnalysisConfig, *, init_kernels, dct: bool) -> LayerResult:
    import dataclasses

    from .nullmodel import null_margin

    notes = list(layer.notes)
    X = np.asarray(points, dtype=np.float64)
    try:
        margin = null_margin(
            X, (3, 3) if dct else (layer.kernel_shape or (1, X.shape[1])), k=layer.k, p=layer.p,
            n_draws=cfg.null_draws, seed=cfg.seed, observed=layer.bars.h1_max, init_kernels=init_kernels,
            coords="dct" if dct else "pixel", config=cfg)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001
        notes.append(f"null model failed ({type(e).__name__}: {e}); the layer's other results stand")
        return dataclasses.replace(layer, notes=tuple(notes))
    return dataclasses.replace(layer, null=NullMargin.from_dict(margin))


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


def _layer_job(job):
    """Analyse one (name, FilterSet, kw) job; returns (LayerResult, warning messages) so that
    workers' warnings reach the caller. Module level: pool workers unpickle it."""
    name, fs, kw = job
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            res = analyze_points(fs.points, kw["config"], name=name, kernel_shape=fs.kernel_shape,
                                 provenance=fs.provenance, shape=fs.shapes[0], init_kernels=kw.get("init_kernels"))
    except InputError as e:
        msg = str(e)
        raise InputError(msg if repr(name) in msg else f"layer {name!r}: {msg}") from None
    return res, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def _map_layers(jobs, n_jobs, progress, executor=None):
    """``_layer_job`` over ``jobs`` in depth order, on ``n_jobs`` processes or an executor."""
    from .circular import warm_up
    from .jobs import map_jobs

    # largest layers first balances the workers; results come back in depth order.
    # warm_up: forked workers inherit ripser.py, GUDHI and scipy.sparse.linalg already imported.
    return map_jobs(_layer_job, jobs, executor=executor, n_jobs=n_jobs, cost=[len(fs) for _, fs, _ in jobs],
                    initializer=warm_up, blas_threads=1, progress=progress, desc="layers", unit="layer",
                    postfix=lambda job: job[0])


def analyze(sources, config: AnalysisConfig | dict | None = None, *, layers=None, allow_pickle: bool = False,
            null_init=None, n_jobs: int | None = None, executor=None, progress=None,
            **overrides) -> AnalysisResult:
    """Analyse the spatial filters of every conv layer of one or more checkpoints.

    Parameters
    ----------
    sources : path, nn.Module, KernelBundle, mapping of name -> OIHW array, or a list of these
        A list is pooled layer by layer (by layer name), as the paper pools networks.
    config : AnalysisConfig, dict or None
        The settings (None: the defaults); keyword ``overrides`` (``k=``, ``p=``, ``seed=``,
        ``scales=``, ... see :func:`analyze_points`) change single settings. Layers too
        small to analyse get the verdict ``"too-few"`` (one warning) and every other layer
        is analysed.
    layers : str or list of str, optional
        Selector, see :func:`select_layers`.
    null_init : path, nn.Module, mapping or KernelBundle, optional
        The same network at initialisation: a second null model per layer (with
        ``null_draws >= 1``), matched by layer name.
    allow_pickle : bool, default=False
        Allow code-running unpickling of PyTorch checkpoints (trusted files only).
    n_jobs : int or None, default=None
        Layers analysed in parallel worker processes (each with one BLAS thread);
        None or 1 runs in this process, -1 uses every core. Results do not depend on it.
    executor : concurrent.futures.Executor, optional
        Run the layers on it instead (e.g. a Dask ``Client.get_executor()``); not shut down.
    progress : bool or None
        Progress bar on stderr; None shows it only on a terminal.

    Returns
    -------
    AnalysisResult
        ``result.config`` is the resolved :class:`AnalysisConfig`; ``result.inputs`` the
        sources, layers, null_init and n_jobs.

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
    cfg = resolve_config(config, **overrides)  # fail before reading anything
    check_ph_memory(cfg.n_landmarks, cfg.maxdim)  # and this machine's memory headroom
    if null_init is not None and not cfg.null_draws:
        raise InputError("null_init is used by the null model; pass null_draws >= 1 (e.g. --null-draws 3).")
    if n_jobs is None:
        n_jobs = 1
    check_range("n_jobs", n_jobs, low=-1, integer=True, fix="use 1, a number of processes, or -1 for all cores.")
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
    inputs = dict(sources=[b.source for b in bundles], layers=chosen,
                  null_init=None if null_init is None else str(getattr(null_init, "source", null_init)),
                  n_jobs=n_jobs)
    if n_jobs in (0, -1):
        n_jobs = os.cpu_count() or 1
    init = {} if null_init is None else as_bundle(null_init, allow_pickle=allow_pickle).kernels
    jobs = [(name, filters_from_kernels(name, [b.kernels[name] for b in bundles]),
             dict(config=cfg, init_kernels=init.get(name))) for name in chosen]
    results = []
    for res, messages in _map_layers(jobs, max(1, min(n_jobs, len(jobs))), progress, executor):
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
    return AnalysisResult(tuple(results), cfg, tuple(skipped), inputs)
