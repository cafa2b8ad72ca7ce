"""The statistics of a study: how well does a feature of a trained network rank its
generalisation? (docs/studies_stats.md gives each statistic with its source.)

- :func:`kendall` / :func:`tau_table`: Kendall's tau-b (Kendall 1945, ties corrected) of a
  feature with a target over all runs, with a percentile bootstrap 95% interval (runs
  resampled with replacement; Efron & Tibshirani 1993). The bootstrap is exact and fast: with
  ``S_x[i, j] = sign(x_i - x_j)`` and the resample's multiplicities ``c``, the resample's
  tau-b is ``c' (S_x * S_y) c / sqrt(c' |S_x| c * c' |S_y| c)``, the same number scipy gives
  on the resampled data (a point drawn twice is a tie, as there).
- :func:`granulated_kendall`: the granulated Kendall coefficient Psi of Jiang et al., "Fantastic
  generalization measures and where to find them" (ICLR 2020, arXiv 1912.02178, §5): for each
  hyperparameter axis i, tau over the runs that differ only along axis i, averaged over every
  setting of the other axes (psi_i), and Psi = the mean of psi_i over the axes. The seed is a
  replicate: held fixed inside a group like the other axes, never an axis of its own.
- :func:`cmi_score`: the conditional-mutual-information score of the same paper (§6) as used
  to rank the entries of the NeurIPS 2020 competition "Predicting Generalization in Deep
  Learning" (Jiang et al., arXiv 2012.07976, §3): over ordered pairs of distinct runs, V_mu =
  sign(mu_i - mu_j), V_g = sign(g_i - g_j), U_S = the values of the hyperparameters S in both
  runs; score = min over pairs S of axes of I(V_mu; V_g | U_S) / H(V_g | U_S).
- :func:`partial_kendall`: Kendall's partial tau (Kendall 1942) of a feature with a target
  given a third variable (the best baseline), with the same bootstrap.
- :func:`grouped_cv`: a cross-validated ridge predictor of a target from a set of features,
  folds grouped by configuration (scikit-learn ``GroupKFold``: no configuration is in the
  training and the test fold at once, so seeds of one configuration cannot leak).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, check_range

__all__ = ["kendall", "TauCI", "tau_table", "bootstrap_counts", "granulated_kendall", "Psi", "grid_cells",
           "missing_cells", "cmi_score", "CMI", "partial_kendall", "grouped_cv", "check_grid"]


# ----------------------------------------------------------------------------- Kendall tau

def _sign_matrix(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    s = np.sign(x[:, None] - x[None, :])
    return np.nan_to_num(s, nan=0.0)  # a NaN run is in no pair: it drops out of every count


def bootstrap_counts(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` multiplicities of ``n_boot`` resamples of ``n`` runs with replacement."""
    rng = np.random.default_rng([int(seed), 0xB007])
    idx = rng.integers(0, n, size=(n_boot, n))
    out = np.zeros((n_boot, n))
    np.add.at(out, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    return out


def _quad(C: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``c' M c`` for every row c of C."""
    return np.einsum("bi,bi->b", C @ M, C)


def _tau_from(C, Sx, Sy, Ax=None, Ay=None):
    num = _quad(C, Sx * Sy)
    dx = _quad(C, np.abs(Sx) if Ax is None else Ax)
    dy = _quad(C, np.abs(Sy) if Ay is None else Ay)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / np.sqrt(dx * dy)


@dataclass(frozen=True)
class TauCI:
    """Kendall's tau-b with its bootstrap interval: ``tau``, ``low``, ``high`` (the ``level``
    percentile interval), ``n`` (complete runs), ``p_value`` (scipy's, two-sided), ``n_boot``."""

    tau: float
    low: float
    high: float
    n: int
    p_value: float
    n_boot: int
    level: float = 0.95


def kendall(x, y, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95, counts=None) -> TauCI:
    """Kendall's tau-b of ``x`` with ``y`` (runs with a NaN in either left out) and a percentile
    bootstrap interval.

    Parameters
    ----------
    x, y : array-like of shape (n,)
    n_boot : int, default=1000
        Bootstrap resamples (0: no interval).
    seed : int, default=0
    level : float, default=0.95
    counts : ndarray of shape (n_boot, n), optional
        Resample multiplicities (:func:`bootstrap_counts`), to share resamples across calls.

    Examples
    --------
    >>> r = kendall([1, 2, 3, 4, 5], [2, 4, 6, 8, 10], n_boot=200)
    >>> r.tau, r.low, r.high
    (1.0, 1.0, 1.0)
    """
    from scipy.stats import kendalltau

    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise InputError(f"x and y must have the same length; got {len(x)} and {len(y)}.")
    check_range("n_boot", n_boot, low=0, integer=True, fix="e.g. 1000.")
    check_range("level", level, low=0, high=1, low_inclusive=False, high_inclusive=False, fix="e.g. 0.95.")
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    Sx, Sy = _sign_matrix(np.where(ok, x, np.nan)), _sign_matrix(np.where(ok, y, np.nan))
    tau = float(_tau_from(np.ones((1, len(x))), Sx, Sy)[0]) if n >= 2 else float("nan")
    p = float(kendalltau(x[ok], y[ok]).pvalue) if n >= 3 and math.isfinite(tau) else float("nan")
    low = high = float("nan")
    if n_boot and n >= 2:
        C = bootstrap_counts(len(x), n_boot, seed) if counts is None else counts
        taus = _tau_from(C, Sx, Sy)
        low, high = _interval(taus, level)
    if math.isfinite(tau):
        tau = round(tau, 12)
    return TauCI(tau, low, high, n, p, int(n_boot), float(level))


def _interval(samples, level) -> tuple:
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if not len(s):
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(s, [a, 1 - a])
    return float(round(lo, 12)), float(round(hi, 12))


def tau_table(features: dict, targets: dict, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """Kendall tau with bootstrap intervals of every feature with every target.

    Parameters
    ----------
    features, targets : dict of str -> array of shape (n,)
        One value per run, runs in the same order everywhere. All pairs share one set of
        resamples.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature, target, tau, low, high, n, p_value``.
    """
    import pandas as pd

    n = len(next(iter(targets.values()))) if targets else 0
    C = bootstrap_counts(n, n_boot, seed) if n_boot and n else None
    ones = np.ones((1, n))
    tS = {t: _sign_matrix(v) for t, v in targets.items()}
    tA = {t: np.abs(S) for t, S in tS.items()}
    rows = []
    from scipy.stats import kendalltau

    for f, x in features.items():
        x = np.asarray(x, dtype=np.float64)
        Sx = _sign_matrix(x)
        for t, y in targets.items():
            y = np.asarray(y, dtype=np.float64)
            ok = np.isfinite(x) & np.isfinite(y)
            k = int(ok.sum())
            if ok.all():
                Sxx, Syy, Ax, Ay = Sx, tS[t], None, tA[t]
            else:
                Sxx = Sx * ok[:, None] * ok[None, :]
                Syy = tS[t] * ok[:, None] * ok[None, :]
                Ax, Ay = None, None
            tau = float(_tau_from(ones, Sxx, Syy, Ax, Ay)[0]) if k >= 2 else float("nan")
            lo = hi = float("nan")
            if C is not None and k >= 2 and math.isfinite(tau):
                lo, hi = _interval(_tau_from(C, Sxx, Syy, Ax, Ay), level)
            p = float(kendalltau(x[ok], y[ok]).pvalue) if k >= 3 and math.isfinite(tau) else float("nan")
            rows.append({"feature": f, "target": t, "tau": round(tau, 12) if math.isfinite(tau) else tau,
                         "low": lo, "high": hi, "n": k, "p_value": p})
    return pd.DataFrame(rows, columns=["feature", "target", "tau", "low", "high", "n", "p_value"])


# ----------------------------------------------------------------------------- the grid

def _keys(design, axes):
    from .runs import cell_key

    return [tuple(cell_key(row[a]) for a in axes) for row in design]


def grid_cells(axes: dict) -> list:
    """Every cell of the complete grid: tuples of :func:`cell_key` values, axes in order."""
    from .runs import cell_key

    return list(itertools.product(*[[cell_key(v) for v in vals] for vals in axes.values()]))


def missing_cells(design: list, axes: dict) -> list:
    """The cells of the grid ``axes`` that no run of ``design`` (a list of ``{axis: value}``)
    fills, as ``{axis: value}`` dicts."""
    import json

    have = set(_keys(design, list(axes)))
    return [{a: json.loads(k) for a, k in zip(axes, cell)} for cell in grid_cells(axes) if cell not in have]


def check_grid(design: list, axes: dict, *, what: str = "Psi and the CMI score") -> None:
    """InputError naming the missing cells when the runs do not fill the grid ``axes``."""
    miss = missing_cells(design, axes)
    if miss:
        shown = "; ".join(", ".join(f"{a}={v}" for a, v in m.items()) for m in miss[:8])
        more = f" and {len(miss) - 8} more" if len(miss) > 8 else ""
        total = int(np.prod([len(v) for v in axes.values()]))
        raise InputError(f"{what} need a complete grid of runs: {len(miss)} of {total} cells have no finished run "
                         f"({shown}{more}). Finish or re-run them (`filtertopo sweep run SPEC --out DIR "
                         "--retry-failed`), or pass drop_incomplete=True (--drop-incomplete) to use only the "
                         "complete groups.")


# ----------------------------------------------------------------------------- Psi

@dataclass(frozen=True)
class Psi:
    """The granulated Kendall coefficient: ``psi`` (mean over axes), ``per_axis`` ({axis:
    psi_i}), ``n_groups`` ({axis: groups averaged}) and ``n_skipped`` ({axis: groups left out:
    incomplete, or tau undefined because the feature or target is constant in the group})."""

    psi: float
    per_axis: dict
    n_groups: dict = field(default_factory=dict)
    n_skipped: dict = field(default_factory=dict)


def _tau_point(x, y) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(_tau_from(np.ones((1, len(x))), _sign_matrix(np.where(ok, x, np.nan)),
                           _sign_matrix(np.where(ok, y, np.nan)))[0])


def _hyper_axes(axes: dict, replicate) -> list:
    return [a for a in axes if a != replicate]


def granulated_kendall(feature, target, design: list, axes: dict, *, replicate: str | None = "seed",
                       drop_incomplete: bool = False) -> Psi:
    """The granulated Kendall coefficient Psi of Jiang et al. (ICLR 2020, §5).

    Parameters
    ----------
    feature, target : array-like of shape (n,)
    design : list of dict
        Each run's value on every axis of ``axes`` (``RunFolder.varied``).
    axes : dict of str -> sequence
        The grid: every axis with its values (the replicate axis included, if any).
    replicate : str or None, default="seed"
        The axis of repeated runs: held fixed within groups, not an axis of Psi.
    drop_incomplete : bool, default=False
        With a cell of the grid missing, raise InputError naming the missing cells (False) or
        average only the groups that are complete (True).

    Returns
    -------
    Psi
        ``psi_i`` is NaN for an axis with no group where tau is defined.
    """
    x = np.asarray(feature, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if len(x) != len(design) or len(y) != len(design):
        raise InputError(f"feature, target and design must have one entry per run; got {len(x)}, {len(y)}, "
                         f"{len(design)}.")
    hyper = _hyper_axes(axes, replicate)
    if not hyper:
        raise InputError(f"Psi needs at least one hyperparameter axis besides {replicate!r}; the grid has "
                         f"{list(axes)}.")
    if not drop_incomplete:
        check_grid(design, axes)
    keys = _keys(design, list(axes))
    names = list(axes)
    per_axis, n_groups, n_skipped = {}, {}, {}
    for a in hyper:
        i = names.index(a)
        size = len(axes[a])
        groups = {}
        for r, k in enumerate(keys):
            groups.setdefault(k[:i] + k[i + 1:], []).append(r)
        taus, skipped = [], 0
        for members in groups.values():
            if len({keys[r][i] for r in members}) < size:
                skipped += 1
                continue
            t = _tau_point(x[members], y[members])
            if math.isfinite(t):
                taus.append(t)
            else:
                skipped += 1
        per_axis[a] = float(np.mean(taus)) if taus else float("nan")
        n_groups[a], n_skipped[a] = len(taus), skipped
    vals = [v for v in per_axis.values() if math.isfinite(v)]
    return Psi(float(np.mean(vals)) if vals else float("nan"), per_axis, n_groups, n_skipped)


# ----------------------------------------------------------------------------- CMI

@dataclass(frozen=True)
class CMI:
    """The conditional-mutual-information score: ``score`` (the minimum over conditioning sets),
    ``argmin`` (the set that attains it) and ``per_set`` ({"a|b": normalised CMI})."""

    score: float
    argmin: tuple
    per_set: dict


def _codes(design, axes_sel, all_axes):
    """An integer code per run of its values on ``axes_sel`` (and how many codes there are)."""
    from .runs import cell_key

    if not axes_sel:
        return np.zeros(len(design), dtype=np.int64), 1
    values = [[cell_key(v) for v in all_axes[a]] for a in axes_sel]
    code = np.zeros(len(design), dtype=np.int64)
    for a, vals in zip(axes_sel, values):
        pos = {v: j for j, v in enumerate(vals)}
        code = code * len(vals) + np.array([pos.get(cell_key(row[a]), -1) for row in design], dtype=np.int64)
    return code, int(np.prod([len(v) for v in values]))


def _entropy_rows(counts: np.ndarray) -> np.ndarray:
    """Entropy in bits of each row of a (m, k) table of counts (0 for an empty row)."""
    tot = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tot > 0, counts / tot, 0.0)
        return -np.sum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)


def _normalised_cmi(vm, vg, u, n_u) -> float:
    """I(V_mu; V_g | U) / H(V_g | U) from per-pair values (V in {0, 1, 2} = sign + 1)."""
    table = np.bincount((u * 3 + vm) * 3 + vg, minlength=n_u * 9).reshape(n_u, 3, 3).astype(np.float64)
    n_pairs = table.sum(axis=(1, 2))
    keep = n_pairs > 0
    table, n_pairs = table[keep], n_pairs[keep]
    pu = n_pairs / n_pairs.sum()
    h_g = _entropy_rows(table.sum(axis=1))          # H(V_g | U = u)
    h_m = _entropy_rows(table.sum(axis=2))          # H(V_mu | U = u)
    h_joint = _entropy_rows(table.reshape(len(table), 9))
    mi = h_m + h_g - h_joint                         # I(V_mu; V_g | U = u)
    H = float(np.sum(pu * h_g))
    if H <= 0:
        return float("nan")
    return float(max(0.0, np.sum(pu * mi)) / H)


def cmi_score(feature, target, design: list, axes: dict, *, replicate: str | None = "seed",
              drop_incomplete: bool = False, max_set: int = 2) -> CMI:
    """The conditional-mutual-information score of Jiang et al. (ICLR 2020, §6), as the PGDL
    competition ranked its entries (Jiang et al. 2020, arXiv 2012.07976, §3).

    Over ordered pairs (i, j) of distinct runs (both with finite feature and target),
    ``V_mu = sign(mu_i - mu_j)`` and ``V_g = sign(g_i - g_j)`` (ties are a third value, 0);
    for a set S of hyperparameter axes, ``U_S`` is the values of S in run i and in run j.
    The normalised CMI is ``I(V_mu; V_g | U_S) / H(V_g | U_S)``, with the sums over the values
    of U_S weighted by their frequency among the pairs, and the score is its minimum over every
    S of ``max_set`` axes (the competition's pairs). A feature whose sign agrees with the
    target's on every pair scores 1; one independent of the target scores about 0 (the plug-in
    estimate is biased upwards by a little, more so with few pairs per value of U_S).

    A set never holds every hyperparameter axis: conditioned on all of them, the pairs of a
    value of U_S differ only by their seeds, and the score would measure how a feature ranks
    seed noise (the competition conditioned on 2 of 7 or more hyperparameters). So with
    ``max_set`` or fewer axes the sets have one axis fewer than there are (two axes: S = {a}
    and S = {b}; one axis: the unconditional MI). The competition's scoring program
    (``pgdl/scoring_program``) also counts each model paired with itself and averages the
    per-value MI and entropy uniformly; for a complete, balanced grid without replicates the
    weights agree, and self-pairs carry no information, so they are left out here.

    Parameters
    ----------
    feature, target : array-like of shape (n,)
    design : list of dict
    axes : dict of str -> sequence
    replicate : str or None, default="seed"
        Never a conditioning variable.
    drop_incomplete : bool, default=False
        See :func:`granulated_kendall`; without it an incomplete grid is an InputError.
    max_set : int, default=2

    Returns
    -------
    CMI
    """
    x = np.asarray(feature, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if len(x) != len(design) or len(y) != len(design):
        raise InputError(f"feature, target and design must have one entry per run; got {len(x)}, {len(y)}, "
                         f"{len(design)}.")
    if not drop_incomplete:
        check_grid(design, axes)
    hyper = _hyper_axes(axes, replicate)
    size = max(0, min(max_set, len(hyper) - 1))
    sets = list(itertools.combinations(hyper, size))
    ok = np.isfinite(x) & np.isfinite(y)
    idx = np.flatnonzero(ok)
    if len(idx) < 2:
        return CMI(float("nan"), (), {})
    i, j = np.meshgrid(idx, idx, indexing="ij")
    off = i != j
    i, j = i[off], j[off]
    vm = (np.sign(x[i] - x[j]) + 1).astype(np.int64)
    vg = (np.sign(y[i] - y[j]) + 1).astype(np.int64)
    per_set = {}
    for S in sets:
        code, n_codes = _codes(design, S, axes)
        u = code[i] * n_codes + code[j]
        per_set["|".join(S)] = _normalised_cmi(vm, vg, u, n_codes * n_codes)
    finite = {k: v for k, v in per_set.items() if math.isfinite(v)}
    if not finite:
        return CMI(float("nan"), (), per_set)
    best = min(finite, key=finite.get)
    return CMI(finite[best], tuple(best.split("|")) if best else (), per_set)


# ----------------------------------------------------------------------------- partial tau

def partial_kendall(x, y, z, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95, counts=None) -> TauCI:
    """Kendall's partial tau of ``x`` with ``y`` given ``z`` (Kendall 1942):
    ``(t_xy - t_xz t_yz) / sqrt((1 - t_xz^2)(1 - t_yz^2))``, runs with a NaN in any of the three
    left out, with a percentile bootstrap interval (the three taus of each resample).
    ``p_value`` is NaN (there is no simple null distribution).

    Examples
    --------
    >>> round(partial_kendall([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5], [1, 2, 1, 2, 1, 2], n_boot=0).tau, 4)
    0.7143
    """
    x, y, z = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y, z))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    m = ok[:, None] & ok[None, :]
    Sx, Sy, Sz = (_sign_matrix(v) * m for v in (x, y, z))

    def part(C):
        txy, txz, tyz = _tau_from(C, Sx, Sy), _tau_from(C, Sx, Sz), _tau_from(C, Sy, Sz)
        with np.errstate(invalid="ignore", divide="ignore"):
            den = np.sqrt((1 - txz ** 2) * (1 - tyz ** 2))
            return np.where(den > 1e-12, (txy - txz * tyz) / np.where(den > 1e-12, den, 1.0), np.nan)

    n = int(ok.sum())
    tau = float(part(np.ones((1, len(x))))[0]) if n >= 3 else float("nan")
    low = high = float("nan")
    if n_boot and n >= 3 and math.isfinite(tau):
        C = bootstrap_counts(len(x), n_boot, seed) if counts is None else counts
        low, high = _interval(part(C), level)
    return TauCI(round(tau, 12) if math.isfinite(tau) else tau, low, high, n, float("nan"), int(n_boot),
                 float(level))


# ----------------------------------------------------------------------------- prediction

def grouped_cv(X, y, groups, *, n_splits: int = 5) -> dict:
    """Out-of-fold predictions of ``y`` from the columns of ``X`` by ridge regression (median
    imputation, standardisation, ``RidgeCV`` over 13 penalties from 1e-3 to 1e3), folds from
    ``GroupKFold`` over ``groups`` (the configuration of each run).

    Returns
    -------
    dict
        ``r2`` (out-of-fold R^2), ``tau`` (Kendall tau of the out-of-fold predictions with y),
        ``rmse``, ``n`` (runs with a finite y), ``n_features``, ``n_splits`` (used; fewer when
        there are fewer groups), ``predictions`` (array, NaN where y is NaN).
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    groups = np.asarray(groups)
    ok = np.isfinite(y)
    out = {"r2": float("nan"), "tau": float("nan"), "rmse": float("nan"), "n": int(ok.sum()),
           "n_features": int(X.shape[1]) if X.ndim == 2 else 0, "n_splits": 0,
           "predictions": np.full(len(y), np.nan)}
    Xo, yo, go = X[ok], y[ok], groups[ok]
    keep = ~np.all(np.isnan(Xo), axis=0) if Xo.size else np.zeros(0, bool)
    Xo = Xo[:, keep]
    k = min(n_splits, len(np.unique(go)))
    if k < 2 or Xo.shape[1] == 0:
        return out
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    pred = cross_val_predict(model, Xo, yo, groups=go, cv=GroupKFold(n_splits=k))
    ss = float(np.sum((yo - yo.mean()) ** 2))
    out.update(r2=1 - float(np.sum((yo - pred) ** 2)) / ss if ss > 0 else float("nan"),
               tau=_tau_point(pred, yo), rmse=float(np.sqrt(np.mean((yo - pred) ** 2))), n_splits=k)
    out["predictions"][ok] = pred
    return out
