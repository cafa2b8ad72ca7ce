"""How far apart are the filter topologies of two networks: per shared layer, the bottleneck
and Wasserstein distances between their persistence diagrams, and their verdicts side by side.

Distances are persim's (Saul & Tralie, scikit-tda): the **bottleneck** distance (L-infinity
ground metric, the largest shift a best matching needs) and the **1-Wasserstein** distance
(the sum of Euclidean shifts of a best matching, a point may go to the diagonal), between the
diagrams of the primary coefficient field. Both diagrams live on the same scale: points are
mean-centred unit filters and persistence is in chord distance (README "What is computed").

Infinite bars are dropped before the distances. Vietoris-Rips H0 of a connected cloud has one
infinite bar born at 0 in each diagram (the matched pair would contribute nothing), and H1 has
none (ripser runs to the end of the filtration), so dropping them loses no information here;
the counts of dropped bars are in ``n_inf_a``/``n_inf_b`` columns should a diagram of another
source hold more.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["compare", "as_result", "diagram_distances", "COMPARE_COLUMNS"]

#: The columns of :func:`compare`'s table, in order, whatever the inputs.
COMPARE_COLUMNS = (
    "layer", "h1_bottleneck", "h1_wasserstein", "h0_bottleneck", "h0_wasserstein",
    "verdict_a", "verdict_b", "same_verdict", "h1_1_a", "h1_1_b", "h1_2_a", "h1_2_b",
    "n_core_a", "n_core_b", "k_a", "k_b", "p_a", "p_b", "n_inf_a", "n_inf_b",
)


def _finite(d) -> tuple:
    d = np.asarray(d, dtype=np.float64).reshape(-1, 2)
    keep = np.isfinite(d[:, 1])
    return d[keep], int((~keep).sum())


def diagram_distances(a, b) -> tuple:
    """``(bottleneck, wasserstein, n_inf_a, n_inf_b)`` of two diagrams of shape (m, 2), infinite
    bars dropped (counted). Two empty diagrams are at distance 0.

    Examples
    --------
    >>> import numpy as np
    >>> bn, w, _, _ = diagram_distances(np.array([[0.0, 1.0]]), np.array([[0.0, 1.5]]))
    >>> round(bn, 3), round(w, 3)
    (0.5, 0.5)
    """
    try:
        import persim
    except ImportError:
        raise InputError("comparing diagrams needs the optional package persim, which is not installed. "
                         "Install it: pip install persim") from None

    da, ia = _finite(a)
    db, ib = _finite(b)
    if len(da) == 0 and len(db) == 0:
        return 0.0, 0.0, ia, ib
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # persim warns about what we already dropped
        bn = float(persim.bottleneck(da, db))
        w = float(persim.wasserstein(da, db))
    return bn, w, ia, ib


def as_result(source, *, config=None, layers=None, label: str = "input"):
    """An :class:`~filtertopo.result.AnalysisResult` from what :func:`compare` accepts.

    ``source`` is an AnalysisResult (used as it is); an analysis folder (holds
    ``analysis.json``: :meth:`AnalysisResult.load`); a run folder (holds ``kernels.npz``,
    analysed with ``config``); or anything :func:`filtertopo.analyze` reads (a checkpoint
    file, a mapping of layer name to OIHW kernels, a KernelBundle, a module).
    """
    from ..pipeline import analyze
    from ..result import AnalysisResult

    if isinstance(source, AnalysisResult):
        return source
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            if (p / "analysis.json").exists():
                return AnalysisResult.load(p)
            if (p / "kernels.npz").is_file():
                return analyze(str(p / "kernels.npz"), config, layers=layers, progress=False)
            raise InputError(f"{label} {str(p)!r} is a folder with neither analysis.json (an analysis folder, "
                             "`filtertopo analyze --out`) nor kernels.npz (a run folder, `filtertopo train "
                             "--out`); pass one of those or a checkpoint file.")
        if not p.exists():
            raise InputError(f"{label} {str(p)!r} does not exist; pass a checkpoint file, a run folder or an "
                             "analysis folder.")
    return analyze(source, config, layers=layers, progress=False)


def _top(layer, i) -> float:
    top = layer.bars.h1_top
    return float(top[i]) if len(top) > i else 0.0


def compare(a, b, *, layers=None, config=None):
    """Distances between the diagrams of two networks, layer by shared layer.

    Parameters
    ----------
    a, b : path, AnalysisResult, mapping or KernelBundle
        Checkpoints, run folders (their ``kernels.npz`` is analysed with ``config``) or
        analysis folders (:meth:`AnalysisResult.load`), or results in memory.
    layers : str or list of str, optional
        Selector over the shared layers (names, globs, 1-based depths:
        :func:`filtertopo.pipeline.select_layers`); all shared layers by default.
    config : AnalysisConfig, dict or None
        Settings for inputs that must be analysed (the defaults when None). A warning is
        given when the two results were made with different settings: their diagrams are
        then not on the same footing (k and p change the dense core).

    Returns
    -------
    pandas.DataFrame
        One row per shared layer, the columns :data:`COMPARE_COLUMNS`: H1 and H0 bottleneck
        and Wasserstein distances, both verdicts and whether they agree, the two longest H1
        bars, the core sizes and the k and p used on each side, and the infinite bars dropped.
        ``df.attrs`` holds ``only_a`` and ``only_b`` (layers one side lacks) and the two
        config keys.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> k = {"conv1": rng.normal(size=(40, 3, 3, 3))}
    >>> df = compare(k, k)
    >>> float(df.loc[0, "h1_bottleneck"]), bool(df.loc[0, "same_verdict"])
    (0.0, True)
    """
    import pandas as pd

    from ..pipeline import resolve_config, select_layers

    cfg = resolve_config(config)
    ra = as_result(a, config=cfg, label="A")
    rb = as_result(b, config=cfg, label="B")
    names_a = [layer.name for layer in ra.layers]
    names_b = {layer.name for layer in rb.layers}
    shared = [n for n in names_a if n in names_b]
    if not shared:
        raise InputError(f"A and B share no analysed layer: A has {names_a[:10]}, B has {sorted(names_b)[:10]}. "
                         "Compare networks of the same architecture, or analyses of the same layers.")
    chosen = select_layers(shared, layers)
    if ra.config.key() != rb.config.key():
        warnings.warn(f"A and B were analysed with different settings (config keys {ra.config.key()} and "
                      f"{rb.config.key()}); their diagrams are not on the same footing. Re-analyse both with "
                      "one config (e.g. pass their run folders or checkpoints).", UserWarning, stacklevel=2)
    rows = []
    for name in chosen:
        la, lb = ra[name], rb[name]
        row = {"layer": name}
        n_inf = [0, 0]
        for dim in (1, 0):
            da = la.diagrams.get(dim, np.zeros((0, 2)))
            db = lb.diagrams.get(dim, np.zeros((0, 2)))
            bn, w, ia, ib = diagram_distances(da, db)
            row[f"h{dim}_bottleneck"], row[f"h{dim}_wasserstein"] = bn, w
            n_inf[0] += ia
            n_inf[1] += ib
        row.update(verdict_a=la.verdict, verdict_b=lb.verdict, same_verdict=la.verdict == lb.verdict,
                   h1_1_a=_top(la, 0), h1_1_b=_top(lb, 0), h1_2_a=_top(la, 1), h1_2_b=_top(lb, 1),
                   n_core_a=la.n_core, n_core_b=lb.n_core, k_a=la.k, k_b=lb.k, p_a=la.p, p_b=lb.p,
                   n_inf_a=n_inf[0], n_inf_b=n_inf[1])
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
    df.attrs.update(only_a=[n for n in names_a if n not in names_b],
                    only_b=sorted(n for n in names_b if n not in set(names_a)),
                    config_a=ra.config.key(), config_b=rb.config.key())
    return df
