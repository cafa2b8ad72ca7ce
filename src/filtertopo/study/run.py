"""``filtertopo study DIR --out STUDY`` end to end: find the runs, compute every feature and
target, run the statistics, write the tables and the report.

:func:`collect` -> :class:`StudyTable` (one row per run) -> :func:`analyse_table` ->
:class:`StudyStats` (the tables) -> :func:`write_study` (CSV, JSON and ``report.html``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .features import family_of, hyperparameter_features, run_features
from .runs import SEED_AXIS, cell_key, find_runs

__all__ = ["StudyTable", "StudyStats", "collect", "analyse_table", "write_study", "study", "STUDY_FILES",
           "BASE_TARGETS"]

#: The files of a study folder (``manifest.json`` is written last, listing them).
STUDY_FILES = ("runs.csv", "features.csv", "tau.csv", "psi.csv", "cmi.csv", "partial.csv", "predict.csv",
               "controls.csv", "study.json", "report.html")
#: Targets every run has (shifted-set accuracies ``acc_<name>`` come with a model).
BASE_TARGETS = ("test_acc", "train_acc", "gen_gap")
#: Feature sets of the cross-validated predictor: name -> families.
FEATURE_SETS = {
    "hyperparameters": ("hyperparameter",),
    "baselines": ("baseline", "weightwatcher"),
    "topology": ("topology",),
    "baselines+topology": ("baseline", "weightwatcher", "topology"),
    "hyperparameters+baselines": ("hyperparameter", "baseline", "weightwatcher"),
    "hyperparameters+baselines+topology": ("hyperparameter", "baseline", "weightwatcher", "topology"),
}


@dataclass(frozen=True)
class StudyTable:
    """One row per run: ids, axis values, targets and features.

    Attributes
    ----------
    frame : pandas.DataFrame
        Columns ``id``, ``path``, one per axis (``axis:<name>``, the value as JSON text),
        ``config`` (the configuration without the seed, for grouping), the targets, then the
        features (``topo.*``, ``base.*``, ``ww.*``, ``hp.*``, ``init.*``, ``shuf.*``).
    axes : dict
        The grid (axis -> values), the seed included.
    targets : tuple of str
    features : tuple of str
        Numeric feature columns (text ones such as verdicts are in the frame, not here).
    design : tuple of dict
        Each run's axis values.
    notes : tuple of str
    source : str
    skipped : tuple
    """

    frame: object
    axes: dict
    targets: tuple
    features: tuple
    design: tuple
    notes: tuple = ()
    source: str = ""
    skipped: tuple = ()
    meta: dict = field(default_factory=dict)


def _feature_job(job):
    run, controls, seed, layers = job
    return run_features(run, controls=controls, seed=seed, layers=layers)


def _measure_job(job):
    fn, run = job
    return fn(run)


def collect(root, *, controls: bool = True, model_measures=None, n_jobs: int = 1, seed: int = 0,
            progress=None, runs=None, layers=None) -> StudyTable:
    """Every feature and target of every run of a study folder.

    Parameters
    ----------
    root : path
        A sweep folder or a folder of run folders (:func:`filtertopo.study.runs.find_runs`).
    controls : bool, default=True
        Topology of the initial and of the pixel-shuffled weights (two analyses per run).
    model_measures : callable, optional
        ``fn(run) -> (values, notes)`` for what needs the trained network (shifted-set
        accuracies, WeightWatcher); picklable when ``n_jobs > 1``.
    n_jobs : int, default=1
        Runs processed in parallel (:func:`filtertopo.jobs.map_jobs`).
    seed : int
        Seed of the pixel shuffle.
    runs : StudyRuns, optional
        Already found runs (skips the search).
    layers : str or list, optional
        Analysed layers whose topology and controls are used (all by default); the controls
        cost two analyses of each per run.
    """
    import pandas as pd

    from ..jobs import map_jobs

    found = find_runs(root) if runs is None else runs
    ctx = "spawn" if "torch" in sys.modules else None  # a torch parent must not fork
    feats = map_jobs(_feature_job, [(r, controls, seed, layers) for r in found.runs], n_jobs=n_jobs, mp_context=ctx,
                     progress=progress, desc="runs (features)", unit="run")
    measured = [None] * len(found.runs)
    if model_measures is not None:
        measured = map_jobs(_measure_job, [(model_measures, r) for r in found.runs], n_jobs=n_jobs,
                            mp_context="spawn", blas_threads=1, progress=progress, desc="runs (models)", unit="run")
    notes = {}
    rows = []
    for run, f, m in zip(found.runs, feats, measured):
        values = dict(f.values)
        run_notes = list(f.notes)
        if m is not None:
            values.update(m[0])
            run_notes += list(m[1])
        for n in run_notes:
            notes.setdefault(n, []).append(run.id)
        row = {"id": run.id, "path": str(run.path)}
        for a in found.axes:
            row[f"axis:{a}"] = cell_key(run.varied.get(a))
        row["config"] = cell_key({a: run.varied.get(a) for a in found.axes if a != SEED_AXIS})
        row.update(values)
        rows.append(row)
    frame = pd.DataFrame(rows)
    hp = hyperparameter_features([r.varied for r in found.runs], found.axes)
    for k, v in hp.items():
        frame[k] = v
    targets = [t for t in BASE_TARGETS if t in frame]
    targets += sorted(c for c in frame.columns if c.startswith("acc_"))
    front = ["id", "path", *[f"axis:{a}" for a in found.axes], "config", *targets]
    feature_cols = [c for c in frame.columns if family_of(c) is not None]
    numeric = [c for c in feature_cols if pd.api.types.is_numeric_dtype(frame[c])]
    rest = [c for c in frame.columns if c not in front and c not in feature_cols]
    frame = frame[front + rest + feature_cols]
    note_list = [f"{n} ({len(ids)} of {len(found.runs)} runs)" for n, ids in notes.items()]
    return StudyTable(frame, dict(found.axes), tuple(targets), tuple(numeric),
                      tuple(r.varied for r in found.runs), tuple(note_list), found.source, found.skipped,
                      dict(found.meta))


@dataclass(frozen=True)
class StudyStats:
    """The study's tables (pandas DataFrames): ``tau`` (every feature with every target),
    ``psi``, ``cmi``, ``partial`` (topology given the best baseline), ``predict`` (grouped CV),
    ``controls`` (each topology feature beside its two controls); ``dropped`` (features left
    out, with the reason), ``notes``, ``headline`` (per target: the best topology feature and
    baseline, the predictor with and without topology)."""

    tau: object
    psi: object
    cmi: object
    partial: object
    predict: object
    controls: object
    dropped: tuple = ()
    notes: tuple = ()
    headline: tuple = ()


def _usable(frame, features) -> tuple:
    keep, dropped = [], []
    for c in features:
        v = np.asarray(frame[c], dtype=np.float64)
        fin = v[np.isfinite(v)]
        if len(fin) < 3:
            dropped.append((c, "fewer than 3 runs with a value"))
        elif np.all(fin == fin[0]):
            dropped.append((c, "the same value in every run"))
        else:
            keep.append(c)
    return keep, dropped


def _control_name(c: str) -> str | None:
    """``topo.L.x`` -> ``L.x`` (the stem the controls share)."""
    return c.split(".", 1)[1] if c.startswith("topo.") else None


def analyse_table(table: StudyTable, *, n_boot: int = 1000, seed: int = 0, drop_incomplete: bool = False,
                  level: float = 0.95) -> StudyStats:
    """Every statistic of :mod:`filtertopo.study.stats` over a :class:`StudyTable`.

    An incomplete grid is an InputError naming the missing cells (Psi and the CMI score need
    every cell), unless ``drop_incomplete``. Psi and CMI are skipped (with a note) when the
    runs vary along no hyperparameter axis.
    """
    import pandas as pd

    from .stats import (bootstrap_counts, check_grid, cmi_score, granulated_kendall, grouped_cv,
                        partial_kendall, tau_table)

    frame = table.frame
    notes = []
    feats, dropped = _usable(frame, table.features)
    targets, bad = _usable(frame, table.targets)
    notes += [f"target {t} left out: {why}" for t, why in bad]
    F = {c: np.asarray(frame[c], dtype=np.float64) for c in feats}
    T = {t: np.asarray(frame[t], dtype=np.float64) for t in targets}
    tau = tau_table(F, T, n_boot=n_boot, seed=seed, level=level)
    tau.insert(1, "family", [family_of(f) for f in tau["feature"]])

    hyper = [a for a in table.axes if a != SEED_AXIS]
    design = list(table.design)
    psi_rows, cmi_rows = [], []
    if hyper:
        if not drop_incomplete:
            check_grid(design, table.axes)
        for f, x in F.items():
            for t, y in T.items():
                p = granulated_kendall(x, y, design, table.axes, drop_incomplete=True)
                psi_rows.append({"feature": f, "family": family_of(f), "target": t, "psi": p.psi,
                                 **{f"psi:{a}": p.per_axis.get(a) for a in hyper}})
                c = cmi_score(x, y, design, table.axes, drop_incomplete=True)
                cmi_rows.append({"feature": f, "family": family_of(f), "target": t, "cmi": c.score,
                                 "argmin": "|".join(c.argmin), **{f"cmi:{k or '(none)'}": v
                                                                 for k, v in c.per_set.items()}})
    else:
        notes.append("the runs vary along no hyperparameter axis (only seeds, or nothing): Psi and the CMI "
                     "score are not computed")
    psi = pd.DataFrame(psi_rows)
    cmi = pd.DataFrame(cmi_rows)

    # the statistic named before looking (Gabrielsson & Carlsson: the longest H1 bar of the first
    # analysed layer): free of the selection that picks the "best" feature out of many
    primary = next((c for c in frame.columns if c.startswith("topo.") and c.endswith(".h1_1")), None)
    n = len(frame)
    C = bootstrap_counts(n, n_boot, seed + 1) if n_boot else None
    part_rows, headline = [], []
    base_fams = ("baseline", "weightwatcher")
    for t, y in T.items():
        sub = tau[(tau["target"] == t)]
        base = sub[sub["family"].isin(base_fams)].dropna(subset=["tau"])
        topo = sub[sub["family"] == "topology"].dropna(subset=["tau"])
        best_base = base.loc[base["tau"].abs().idxmax()] if len(base) else None
        best_topo = topo.loc[topo["tau"].abs().idxmax()] if len(topo) else None
        if best_base is not None:
            z = F[best_base["feature"]]
            for f in topo["feature"]:
                r = partial_kendall(F[f], y, z, n_boot=n_boot, seed=seed + 1, level=level, counts=C)
                part_rows.append({"feature": f, "target": t, "given": best_base["feature"],
                                  "tau": float(topo.loc[topo["feature"] == f, "tau"].iloc[0]),
                                  "partial_tau": r.tau, "low": r.low, "high": r.high, "n": r.n})
        prim = sub[sub["feature"] == primary] if primary else sub.iloc[:0]
        headline.append({"target": t,
                         "primary_feature": primary,
                         "tau_primary": float(prim["tau"].iloc[0]) if len(prim) else None,
                         "ci_primary": [float(prim["low"].iloc[0]), float(prim["high"].iloc[0])] if len(prim) else None,
                         "best_topology": None if best_topo is None else best_topo["feature"],
                         "tau_topology": None if best_topo is None else float(best_topo["tau"]),
                         "ci_topology": None if best_topo is None else [float(best_topo["low"]), float(best_topo["high"])],
                         "best_baseline": None if best_base is None else best_base["feature"],
                         "tau_baseline": None if best_base is None else float(best_base["tau"]),
                         "ci_baseline": None if best_base is None else [float(best_base["low"]), float(best_base["high"])]})
    partial = pd.DataFrame(part_rows, columns=["feature", "target", "given", "tau", "partial_tau", "low", "high",
                                               "n"])

    groups = np.asarray(frame["config"])
    pred_rows = []
    for t, y in T.items():
        for name, fams in FEATURE_SETS.items():
            cols = [c for c in feats if family_of(c) in fams]
            if not cols:
                continue
            r = grouped_cv(np.column_stack([F[c] for c in cols]), y, groups)
            pred_rows.append({"target": t, "features": name, "n_features": r["n_features"], "r2": r["r2"],
                              "tau": r["tau"], "rmse": r["rmse"], "n": r["n"], "n_splits": r["n_splits"]})
    predict = pd.DataFrame(pred_rows, columns=["target", "features", "n_features", "r2", "tau", "rmse", "n",
                                               "n_splits"])
    if len(predict) and (predict["n_splits"] == 0).all():
        notes.append("fewer than 2 configurations: the grouped cross-validated predictor is not computed")
    for h in headline:
        rows = predict[predict["target"] == h["target"]].set_index("features")
        for key, name in (("r2_without_topology", "hyperparameters+baselines"),
                          ("r2_with_topology", "hyperparameters+baselines+topology")):
            h[key] = float(rows.loc[name, "r2"]) if name in rows.index else None

    ctrl_rows = []
    for _, row in tau[tau["family"] == "topology"].iterrows():
        stem = _control_name(row["feature"])
        rec = {"feature": stem, "target": row["target"], "tau_final": row["tau"], "low_final": row["low"],
               "high_final": row["high"]}
        for prefix, label in (("init", "init"), ("shuf", "shuffled")):
            m = tau[(tau["feature"] == f"{prefix}.{stem}") & (tau["target"] == row["target"])]
            rec[f"tau_{label}"] = float(m["tau"].iloc[0]) if len(m) else float("nan")
            rec[f"low_{label}"] = float(m["low"].iloc[0]) if len(m) else float("nan")
            rec[f"high_{label}"] = float(m["high"].iloc[0]) if len(m) else float("nan")
        ctrl_rows.append(rec)
    controls = pd.DataFrame(ctrl_rows)
    return StudyStats(tau, psi, cmi, partial, predict, controls, tuple(dropped), tuple(notes), tuple(headline))


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, Path):
        return str(o)
    return o


def write_study(out, table: StudyTable, stats: StudyStats, *, force: bool = False, inputs: dict | None = None,
                seconds: float | None = None) -> Path:
    """Write the study folder: ``runs.csv`` (the StudyTable), ``features.csv`` (each feature's
    family), ``tau.csv``, ``psi.csv``, ``cmi.csv``, ``partial.csv``, ``predict.csv``,
    ``controls.csv``, ``study.json`` (inputs, grid, headline, notes) and a self-contained
    ``report.html``; atomically, ``manifest.json`` last (:func:`filtertopo._io.save_folder`)."""
    import pandas as pd

    from .._io import save_folder
    from .report import render_study_report

    feats = pd.DataFrame({"feature": list(table.features), "family": [family_of(c) for c in table.features]})
    summary = {
        "format": "filtertopo-study", "version": 1, "inputs": inputs or {}, "source": table.source,
        "n_runs": len(table.frame), "axes": table.axes, "targets": list(table.targets),
        "n_features": len(table.features), "families": sorted({family_of(c) for c in table.features} - {None}),
        "headline": list(stats.headline), "notes": list(table.notes) + list(stats.notes),
        "dropped_features": [list(d) for d in stats.dropped], "skipped_runs": [list(s) for s in table.skipped],
        "seconds": seconds, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = json.dumps(_jsonable(summary), indent=1, allow_nan=False, default=str)
    html = render_study_report(table, stats, summary)
    writers = {
        "runs.csv": lambda p: table.frame.to_csv(p, index=False),
        "features.csv": lambda p: feats.to_csv(p, index=False),
        "tau.csv": lambda p: stats.tau.to_csv(p, index=False),
        "psi.csv": lambda p: stats.psi.to_csv(p, index=False),
        "cmi.csv": lambda p: stats.cmi.to_csv(p, index=False),
        "partial.csv": lambda p: stats.partial.to_csv(p, index=False),
        "predict.csv": lambda p: stats.predict.to_csv(p, index=False),
        "controls.csv": lambda p: stats.controls.to_csv(p, index=False),
        "study.json": lambda p: p.write_text(text, encoding="utf-8"),
        "report.html": lambda p: p.write_text(html, encoding="utf-8"),
    }
    save_folder(out, writers, force=force, names=STUDY_FILES)
    return Path(out)


def study(root, out, *, controls: bool = True, model_measures=None, n_boot: int = 1000, seed: int = 0,
          drop_incomplete: bool = False, n_jobs: int = 1, force: bool = False, progress=None,
          inputs: dict | None = None, layers=None) -> tuple:
    """Find, collect, analyse and write a study; returns ``(StudyTable, StudyStats)``.

    The output folder and the grid are checked before any run is processed.
    """
    from .._io import check_output_dir
    from .stats import check_grid

    started = time.time()
    check_output_dir(out, force=force, names=(*STUDY_FILES, "manifest.json"))
    found = find_runs(root)
    if not drop_incomplete and any(a != SEED_AXIS for a in found.axes):
        check_grid([r.varied for r in found.runs], found.axes)
    table = collect(root, controls=controls, model_measures=model_measures, n_jobs=n_jobs, seed=seed,
                    progress=progress, runs=found, layers=layers)
    stats = analyse_table(table, n_boot=n_boot, seed=seed, drop_incomplete=drop_incomplete)
    info = {"dir": str(root), "controls": controls, "layers": layers, "n_boot": n_boot, "seed": seed,
            "drop_incomplete": drop_incomplete, **(inputs or {})}
    write_study(out, table, stats, force=force, inputs=info, seconds=round(time.time() - started, 2))
    return table, stats

