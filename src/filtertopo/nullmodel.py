"""Null model: how far a layer's topology stands above chance.

The same pipeline (:func:`filtertopo.pipeline.analyze_points`, same k, p, landmarks and
field) is run on matched random filters: as many i.i.d. isotropic Gaussian filters of the
same kernel shape as the layer has, over ``n_draws`` independent seeds. Isotropic Gaussian
filters, once mean-centred and normalised, are uniform on the sphere of zero-mean filters,
the "no structure" reference of Gabrielsson & Carlsson (2019), who contrast trained
filters with those at random initialisation. The user may also give the kernels of the
network at initialisation as a second null. The statistic compared is the persistence of
the longest finite H1 bar of the dense core (README, "What is computed").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["NullDistribution", "null_distribution", "null_margin"]


@dataclass(frozen=True)
class NullDistribution:
    """Longest-H1 persistence of matched random filters over several draws.

    Attributes
    ----------
    h1_max : ndarray of shape (n_draws,)
        Longest finite H1 persistence of each draw's dense core.
    labels : tuple of str
        The verdict label of each draw (:func:`filtertopo.verdict.layer_verdict`).
    n_filters : int
    dim : int
        Values per random filter.
    seeds : tuple of int
    """

    h1_max: np.ndarray
    labels: tuple
    n_filters: int
    dim: int
    seeds: tuple

    def margin(self, observed: float) -> dict[str, float]:
        """Margin of an observed longest-H1 persistence over this null (see :func:`null_margin`)."""
        v = self.h1_max
        mean, sd, mx = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, float(np.max(v))
        return {
            "h1_observed": float(observed),
            "null_h1_mean": mean,
            "null_h1_std": sd,
            "null_h1_max": mx,
            "h1_margin_z": float((observed - mean) / sd) if sd > 0 else float("nan"),
            "h1_ratio_null_max": float(observed / mx) if mx > 0 else float("inf"),
            "null_frac_circle": float(np.mean([lab in ("circle", "primary-circle") for lab in self.labels])),
            "null_n_draws": float(len(v)),
        }


def _longest_h1(layer) -> float:
    return float(layer.bars.h1_max)


def _config(config, k, p, kw):
    """The null's settings: the layer's, at its k and p, one field, no circle or grid."""
    from .config import AnalysisConfig

    base = AnalysisConfig() if config is None else config
    kw = dict(kw)
    coeff = kw.pop("coeff", base.coeff)
    coeff = (coeff,) if isinstance(coeff, (int, np.integer)) else tuple(coeff)
    settings = dict(k=k, p=p, maxdim=1, coeff=coeff[:1], null_draws=0, circular=False, scales=False,
                    clamp_k=True, min_core=0)
    settings.update(kw)
    return base.replace(**settings)


def _run(X, cfg, *, normalize, kernel_shape, seed, name):
    from .topology import analyse_cloud

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyse_cloud(X, cfg.replace(seed=seed), name=name, normalize=normalize,
                             kernel_shape=kernel_shape)


def _dim(kernel_shape, coords) -> int:
    if coords == "dct":
        return 8
    if coords != "pixel":
        raise InputError(f"coords must be 'pixel' or 'dct'; got {coords!r}.")
    ks = (kernel_shape, kernel_shape) if np.isscalar(kernel_shape) else tuple(kernel_shape)
    if len(ks) != 2 or min(ks) < 1 or ks[0] * ks[1] < 2:
        raise InputError(f"kernel_shape must be (kh, kw) with kh*kw >= 2; got {kernel_shape!r}.")
    return int(ks[0] * ks[1])


def null_distribution(n_filters: int, kernel_shape, *, k: int, p: float, n_draws: int = 5, seed=0,
                      coords: str = "pixel", config=None, **kw) -> NullDistribution:
    """Run the pipeline on ``n_draws`` sets of matched isotropic Gaussian filters.

    Parameters
    ----------
    n_filters : int
        Filters per draw (the layer's count).
    kernel_shape : int or (int, int)
    k, p : int, float
        Dense-core parameters, as for the layer.
    n_draws : int, default=5
    seed : int, default=0
        Draw i uses the i-th child of ``numpy.random.SeedSequence(seed)``.
    coords : {"pixel", "dct"}, default="pixel"
        "dct": Gaussian points of R^8 scaled to the unit sphere S^7 (the null of 3x3
        patches in DCT coordinates), analysed with ``normalize=False``.
    config : AnalysisConfig, optional
        The layer's settings (landmarks, subsample, rules); each draw runs the topology core
        (:func:`filtertopo.topology.analyse_cloud`) at ``k``, ``p``, the first field, H1,
        without circular coordinates, with ``clamp_k=True`` and ``min_core=0``.
    **kw
        Settings that override those (n_landmarks, coeff, max_points, ...).

    Returns
    -------
    NullDistribution
    """
    d = _dim(kernel_shape, coords)
    if not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise InputError(f"n_draws must be a positive integer; got {n_draws!r}. Use e.g. 5.")
    if not isinstance(n_filters, (int, np.integer)) or n_filters < 3:
        raise InputError(f"n_filters must be an integer >= 3; got {n_filters!r}.")
    cfg = _config(config, k, p, kw)
    children = np.random.SeedSequence(seed).spawn(n_draws)
    vals, labels, seeds = [], [], []
    for i, ss in enumerate(children):
        rng = np.random.default_rng(ss)
        G = rng.normal(size=(int(n_filters), d))
        if coords == "dct":
            G /= np.linalg.norm(G, axis=1, keepdims=True)
        s = int(ss.generate_state(1)[0] % (2**31))
        lay = _run(G, cfg, normalize=coords == "pixel", kernel_shape=None if coords == "dct" else kernel_shape,
                   seed=s, name=f"null{i}")
        vals.append(_longest_h1(lay))
        labels.append(lay.verdict)
        seeds.append(s)
    return NullDistribution(np.asarray(vals), tuple(labels), int(n_filters), d, tuple(seeds))


def null_margin(points_raw, kernel_shape, *, k: int, p: float, n_draws: int = 5, seed=0,
                observed: float | None = None, init_kernels=None, coords: str = "pixel",
                config=None, **kw) -> dict[str, float]:
    """Longest-H1 persistence of a layer against matched random filters.

    Parameters
    ----------
    points_raw : array-like of shape (n, kh*kw) (or (n, 8) with ``coords="dct"``)
        The layer's filters as given to the pipeline.
    kernel_shape : int or (int, int)
    k, p : int, float
        The layer's dense-core parameters.
    n_draws : int, default=5
    seed : int, default=0
    observed : float, optional
        The layer's longest finite H1 persistence if already computed; otherwise the
        pipeline is run on ``points_raw``.
    init_kernels : array-like, optional
        Kernels of the same layer at initialisation, OIHW (4-D) or flattened (m, kh*kw);
        analysed as a second null.
    coords : {"pixel", "dct"}, default="pixel"
    config, **kw
        As for :func:`null_distribution`.

    Returns
    -------
    dict of str -> float
        ``h1_observed``, ``null_h1_mean``, ``null_h1_std``, ``null_h1_max``, ``h1_margin_z``
        (``(observed - mean) / std``, NaN with one draw), ``h1_ratio_null_max``
        (observed / max of the null), ``null_frac_circle`` (draws called "circle"),
        ``null_n_draws``; with ``init_kernels`` also ``init_h1`` and ``h1_ratio_init``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> m = null_margin(rng.normal(size=(300, 9)), (3, 3), k=20, p=0.3, n_draws=2, n_landmarks=80)
    >>> sorted(m)[:3]
    ['h1_margin_z', 'h1_observed', 'h1_ratio_null_max']
    """
    X = np.asarray(points_raw, dtype=float)
    d = _dim(kernel_shape, coords)
    if X.ndim != 2 or X.shape[1] != d:
        raise InputError(f"points_raw must have shape (n, {d}) for kernel_shape {kernel_shape!r} "
                         f"and coords={coords!r}; got {X.shape}.")
    ks = None if coords == "dct" else kernel_shape
    cfg = _config(config, k, p, kw)
    if observed is None:
        observed = _longest_h1(_run(X, cfg, normalize=coords == "pixel", kernel_shape=ks, seed=seed,
                                    name="observed"))
    out = null_distribution(len(X), kernel_shape, k=k, p=p, n_draws=n_draws, seed=seed,
                            coords=coords, config=cfg).margin(observed)
    if init_kernels is not None:
        W = np.asarray(init_kernels, dtype=float)
        W = W.reshape(-1, W.shape[-2] * W.shape[-1]) if W.ndim == 4 else W
        if W.ndim != 2 or W.shape[1] != d:
            raise InputError(f"init_kernels must be OIHW with spatial size {kernel_shape!r} or (m, {d}); "
                             f"got shape {np.shape(init_kernels)}.")
        h = _longest_h1(_run(W, cfg, normalize=True, kernel_shape=ks, seed=seed, name="init"))
        out["init_h1"] = h
        out["h1_ratio_init"] = float(observed / h) if h > 0 else float("inf")
    return out
