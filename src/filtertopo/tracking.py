"""Topology of the filter space over the course of training (Gabrielsson & Carlsson 2019, §6).

:func:`track` analyses every snapshot of one or more run folders written by
:func:`filtertopo.training.train`. Snapshots of several runs taken at the same
step are pooled layer by layer, as the paper pools networks, and each pooled
step goes through :func:`filtertopo.analyze`. The result is a table with one
row per (step, layer): the longest H1 persistences, the verdict, every column
of the per-layer table (:data:`filtertopo.result.TABLE_COLUMNS`: shape fractions, null margin...),
the mean train/test accuracy of the pooled runs, and how many runs were pooled.
With ``null_draws >= 1`` every step is also compared with matched Gaussian
filters (:func:`filtertopo.nullmodel.null_margin`), so the margin of the longest
H1 bar over chance can be followed against step.

Tracking reads files and analyses them: it needs no torch (the snapshot index is read by
:mod:`filtertopo._snapshots_index`) and draws nothing. The figures are in
:mod:`filtertopo.report.track_figures` (:func:`~filtertopo.report.track_figures.plot_track`,
:func:`~filtertopo.report.track_figures.save_track_figures`, which writes
``track_h1.png`` and the Mapper pictures beside :meth:`TrackResult.save`'s files), and
:func:`filtertopo.report.track_html.write_track_report` puts the curves, the table and
the first and last steps' analyses into one self-contained HTML page. ``filtertopo track``
does all three.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._snapshots_index import read_index
from .errors import InputError

__all__ = ["track", "TrackResult", "check_track_out", "TRACK_FILES"]

#: What a tracking output folder holds beside ``steps/``: :meth:`TrackResult.save` writes
#: the table (``track.csv``, ``track.json``); :func:`filtertopo.report.track_figures.
#: save_track_figures` the curves (``track_h1.png``) and ``mapper_<layer>_step_<n>.png``.
TRACK_FILES = ("track.csv", "track.json", "track_h1.png")


def check_track_out(out, *, force: bool = False, steps=None) -> Path:
    """Refuse, before any work, an output folder :meth:`TrackResult.save` must not write.

    The whole tree is checked: ``out`` must be a folder (or absent); without ``force``
    it must hold no tracking results (:data:`TRACK_FILES`, ``mapper_*_step_*.png``) and
    no ``steps/`` folder with anything in it (an earlier track's, or anyone's, analyses
    are never overwritten silently). With ``force`` those are replaced, but a file
    standing where a folder is written (``steps``, ``steps/step_<n>`` for the given
    ``steps``) is still refused. Nothing is changed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; choose a folder path.")
    if not out.is_dir():
        return out
    steps_dir = out / "steps"
    if steps_dir.exists() and not steps_dir.is_dir():
        raise InputError(f"--out {str(out)!r}: {str(steps_dir)!r} is a file, where track writes "
                         "the folder of per-step analyses; remove or rename it, or choose another "
                         "--out.")
    for step in steps or ():
        d = steps_dir / f"step_{int(step):06d}"
        if d.exists() and not d.is_dir():
            raise InputError(f"--out {str(out)!r}: {str(d)!r} is a file, where track writes "
                             f"step {step}'s analysis; remove or rename it, or choose another --out.")
    if force:
        return out
    existing = [f for f in TRACK_FILES if (out / f).exists()]
    existing += sorted(f.name for f in out.glob("mapper_*_step_*.png"))
    if existing:
        raise InputError(f"--out {str(out)!r} already holds tracking results "
                         f"({', '.join(existing[:6])}); choose another folder or pass --force.")
    if steps_dir.is_dir():
        try:
            held = sorted(e.name for e in steps_dir.iterdir())
        except OSError as exc:
            raise InputError(f"--out {str(out)!r}: {str(steps_dir)!r} cannot be listed "
                             f"({exc.strerror or exc}); choose another --out.") from None
        if held:
            raise InputError(f"--out {str(out)!r} already holds per-step results in steps/ "
                             f"({', '.join(held[:4])}{' ...' if len(held) > 4 else ''}); "
                             "track would overwrite them. Choose another folder or pass --force.")
    return out


@dataclass(frozen=True)
class TrackResult:
    """What :func:`track` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (step, layer): ``step, epoch, n_runs, train_acc, test_acc,
        test_acc_std`` then the columns of :meth:`AnalysisResult.to_frame`
        (``layer, n_filters, n_core, h1_1, h1_2, h1_3, h1_gap_ratio, verdict``, metrics
        such as ``frac_primary`` and, with ``null_draws``, ``null_h1_mean``,
        ``null_h1_max``, ``h1_margin_z``, ``h1_ratio_null_max``, ``null_frac_circle``).
    missing : tuple of str
        What was missing or inconsistent in the run folders.
    runs : tuple of str
    config : dict
        The analysis parameters.
    results : dict of int -> AnalysisResult
        The full analysis of each step.
    mapper : dict of (int, str) -> MapperGraph
        Mapper graphs of the dense core at the ``mapper_steps``.
    """

    table: object
    missing: tuple
    runs: tuple
    config: dict
    results: dict = field(default_factory=dict, repr=False)
    mapper: dict = field(default_factory=dict, repr=False)

    def save(self, out_dir, *, force: bool = False, steps_detail: bool = True,
             figures=None) -> Path:
        """Write ``track.csv``, ``track.json`` and, with ``steps_detail``, each step's
        analysis under ``steps/step_<n>/`` (six-digit step, readable by
        :meth:`AnalysisResult.load`). No figure is drawn: the curves (``track_h1.png``)
        and the Mapper pictures are :func:`filtertopo.report.track_figures.
        save_track_figures`'s (``filtertopo track`` calls both).

        The whole output tree is checked first (:func:`check_track_out`): without
        ``force``, a folder holding tracking results or anything under ``steps/`` is
        refused before a file is written.

        ``figures`` is accepted for one release and ignored, with a DeprecationWarning:
        it used to draw ``track_h1.png`` and the Mapper pictures here."""
        if figures is not None:
            warnings.warn("TrackResult.save(figures=...) is ignored: saving no longer draws "
                          "figures. Call filtertopo.report.track_figures.save_track_figures("
                          "result, out_dir) for track_h1.png and the Mapper pictures.",
                          DeprecationWarning, stacklevel=2)
        out = check_track_out(out_dir, force=force,
                              steps=list(self.results) if steps_detail else None)
        out.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(out / "track.csv", index=False)
        doc = {"runs": list(self.runs), "config": self.config, "missing": list(self.missing),
               "rows": json.loads(self.table.to_json(orient="records"))}
        (out / "track.json").write_text(json.dumps(doc, indent=1))
        if steps_detail:
            for step, res in self.results.items():
                res.save(out / "steps" / f"step_{step:06d}", force=force)
        return out


def _check_layers(snap, layers, step):
    """Resolve the layer selector on one snapshot (cheap) before any analysis."""
    from .pipeline import select_layers
    from .weights import load_kernels

    if layers is None:
        return
    try:
        bundle = load_kernels(snap.path)
    except InputError as exc:
        raise InputError(f"step {step}: {exc}") from None
    select_layers(list(bundle.kernels), layers)


#: Tracking's settings where they differ from :class:`~filtertopo.config.AnalysisConfig`'s:
#: a pooled early step may have fewer filters than an integer k.
TRACK_DEFAULTS = dict(clamp_k=True)


def track(run_dirs, config=None, *, layers=None, steps=None, mapper_steps=(), progress: bool | None = None,
          out=None, force: bool = False, **overrides) -> TrackResult:
    """Analyse every snapshot of the runs, pooling runs by step.

    Parameters
    ----------
    run_dirs : path or list of paths
        Run folders from :func:`filtertopo.training.train` (with ``snapshot_every > 0``).
        Incomplete or interrupted runs are tracked as far as they go; what is
        missing is listed in :attr:`TrackResult.missing`.
    layers : str or list, optional
        Layer selector (``"conv1"``, ``"1"``, globs); default all conv layers.
    config : AnalysisConfig, dict or None
        The settings of every step's analysis; None: the defaults with
        :data:`TRACK_DEFAULTS` (``clamp_k=True``: use ``k = n - 1`` where a pooled step
        has no more than an integer ``k`` filters). Keyword ``overrides`` (``k=``, ``p=``,
        ``seed=``, ``null_draws=``, ...) change single settings.
    null_draws (a setting) : int, default=0
        Matched Gaussian null draws per layer and step: adds ``null_h1_mean``, ``null_h1_max``,
        ``h1_margin_z``, ``h1_ratio_null_max``, ``null_frac_circle``... to the table
        and a margin panel to :func:`~filtertopo.report.track_figures.plot_track`. Each
        draw costs about one more analysis.
    steps : list of int, optional
        Only these steps (default every step present in any run).
    mapper_steps : list of int
        Also build Mapper graphs of each layer's dense core at these steps (columns
        ``mapper_b0``, ``mapper_b1``: components and loops of the graph, kept in
        :attr:`TrackResult.mapper`; :func:`~filtertopo.report.track_figures.
        save_track_figures` draws them as ``mapper_<layer>_step_<n>.png``).
    progress : bool, optional
        Progress bar over steps; default only on a terminal.
    out : path, optional
        Also :meth:`TrackResult.save` there (tables and per-step analyses, no figures;
        the folder is checked before any snapshot is analysed).
    force : bool
        Overwrite tracking results already in ``out``.

    Returns
    -------
    TrackResult
    """
    import sys

    import pandas as pd
    from tqdm.auto import tqdm

    from .pipeline import analyze

    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise InputError("run_dirs is empty; pass at least one run folder.")
    from .pipeline import resolve_config

    cfg = resolve_config(TRACK_DEFAULTS if config is None else config, **overrides)  # before any file is read
    if out is not None:
        check_track_out(out, force=force)
    missing, by_step = [], defaultdict(list)
    unique, seen_runs = [], {}
    for run in run_dirs:
        key = run.resolve() if run.exists() else run
        if key in seen_runs:
            missing.append(f"{run}: given twice (also as {seen_runs[key]}); tracked once")
            continue
        seen_runs[key] = run
        unique.append(run)
    run_dirs = unique
    for run in run_dirs:
        if not run.is_dir():
            raise InputError(f"run folder {str(run)!r} does not exist; pass folders written by "
                             "`filtertopo train --out RUN`.")
        snaps, problems = read_index(run)
        missing += problems
        if not snaps:
            missing.append(f"{run}: no snapshots to track")
        for s in snaps:
            by_step[s.step].append(s)
    if not by_step:
        raise InputError(f"no snapshots in {[str(r) for r in run_dirs]}: train with "
                         "snapshot_every > 0 (--snapshot-every N). " + "; ".join(missing))
    chosen = sorted(by_step) if steps is None else sorted(int(s) for s in steps)
    absent = [s for s in chosen if s not in by_step]
    if absent:
        raise InputError(f"steps {absent} are not among the snapshot steps "
                         f"{sorted(by_step)}; choose from those.")
    mapper_steps = sorted(int(s) for s in mapper_steps)
    if [s for s in mapper_steps if s not in chosen]:
        raise InputError(f"mapper_steps {mapper_steps} must be among the tracked steps "
                         f"{chosen}.")
    if out is not None:
        check_track_out(out, force=force, steps=chosen)
    _check_layers(by_step[chosen[0]][0], layers, chosen[0])  # a bad --layers fails here, not later
    for s in chosen:
        if len(by_step[s]) < len(run_dirs):
            have = {sn.path.parent.parent for sn in by_step[s]}
            lack = [str(r) for r in run_dirs if r not in have]
            missing.append(f"step {s}: pooled {len(by_step[s])} of {len(run_dirs)} runs "
                           f"(missing from {lack})")
    show = sys.stderr.isatty() if progress is None else bool(progress)
    rows, results, graphs = [], {}, {}
    for step in tqdm(chosen, desc="snapshots", disable=not show):
        snaps = by_step[step]
        try:
            res = analyze([str(s.path) for s in snaps], cfg, layers=layers, progress=False)
        except InputError as exc:
            raise InputError(f"step {step}: {exc}") from None
        results[step] = res
        accs = {key: [getattr(s, key) for s in snaps if not math.isnan(getattr(s, key))]
                for key in ("epoch", "train_acc", "test_acc")}
        head = {"step": step,
                "epoch": float(np.mean(accs["epoch"])) if accs["epoch"] else float("nan"),
                "n_runs": len(snaps),
                "train_acc": float(np.mean(accs["train_acc"])) if accs["train_acc"] else np.nan,
                "test_acc": float(np.mean(accs["test_acc"])) if accs["test_acc"] else np.nan,
                "test_acc_std": float(np.std(accs["test_acc"])) if accs["test_acc"] else np.nan}
        for layer_row in res.to_frame().to_dict(orient="records"):
            if step in mapper_steps:
                from .mapper import mapper_graph

                g = mapper_graph(res[layer_row["layer"]].core)
                graphs[(step, layer_row["layer"])] = g
                layer_row["mapper_b0"], layer_row["mapper_b1"] = map(int, g.betti())
            rows.append({**head, **layer_row})
    table = pd.DataFrame(rows)
    config = dict(cfg.to_dict(), config_key=cfg.key(), layers=layers, steps=chosen,
                  mapper_steps=mapper_steps)
    result = TrackResult(table, tuple(missing), tuple(str(r) for r in run_dirs), config, results,
                         graphs)
    if out is not None:
        result.save(out, force=force)
    return result
