"""Topology of the filter space over the course of training (Gabrielsson & Carlsson 2019, §6).

:func:`track` analyses every snapshot of one or more run folders written by
:func:`filtertopo.training.train`. Snapshots of several runs taken at the same
step are pooled layer by layer, as the paper pools networks, and each pooled
step goes through :func:`filtertopo.analyze`. The result is a table with one
row per (step, layer): the longest H1 persistences, the verdict, every column
the core puts in ``LayerResult.metrics`` (shape fractions, null-model margin...),
the mean train/test accuracy of the pooled runs, and how many runs were pooled.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .snapshots import read_index

__all__ = ["track", "TrackResult", "plot_track", "TRACK_FILES"]

TRACK_FILES = ("track.csv", "track.json", "track_h1.png")


@dataclass(frozen=True)
class TrackResult:
    """What :func:`track` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (step, layer): ``step, epoch, n_runs, train_acc, test_acc,
        test_acc_std`` then the columns of :meth:`AnalysisResult.to_frame`
        (``layer, n_filters, n_core, h1_1, h1_2, h1_3, h1_gap_ratio, verdict``, metrics).
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

    def save(self, out_dir, *, force: bool = False, figures: bool = True,
             steps_detail: bool = True) -> Path:
        """Write ``track.csv``, ``track.json``, ``track_h1.png`` (one panel per layer)
        and, with ``steps_detail``, each step's analysis under ``steps/step_<n>/``."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {str(out)!r} is a file; choose a folder path.")
        existing = [f for f in TRACK_FILES if (out / f).exists()]
        if existing and not force:
            raise InputError(f"--out {str(out)!r} already holds tracking results "
                             f"({', '.join(existing)}); choose another folder or pass --force.")
        out.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(out / "track.csv", index=False)
        doc = {"runs": list(self.runs), "config": self.config, "missing": list(self.missing),
               "rows": json.loads(self.table.to_json(orient="records"))}
        (out / "track.json").write_text(json.dumps(doc, indent=1))
        if steps_detail:
            for step, res in self.results.items():
                res.save(out / "steps" / f"step_{step:06d}", force=True)
        if figures and len(self.table):
            import matplotlib

            matplotlib.use("Agg", force=False) if not _has_display() else None
            import matplotlib.pyplot as plt

            fig = plot_track(self.table)
            fig.savefig(out / "track_h1.png", dpi=120, bbox_inches="tight")
            plt.close(fig)
            if self.mapper:
                from ..report.figures import plot_mapper

                for (step, layer), graph in self.mapper.items():
                    lr = self.results[step][layer]
                    fig, ax = plt.subplots(figsize=(6, 6))
                    plot_mapper(graph, lr.core, ax=ax, kernel_shape=lr.kernel_shape)
                    ax.set_title(f"{layer}, step {step}: " + ax.get_title())
                    fig.savefig(out / f"mapper_{layer}_step_{step:06d}.png", dpi=100,
                                bbox_inches="tight")
                    plt.close(fig)
        return out


def _has_display():
    import matplotlib

    return matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo")


_EXTRA_PLOT = ("frac_primary", "circle", "null", "margin")


def plot_track(table, layers=None, axes=None):
    """Longest H1 persistences (and metrics such as circle fraction / null margin
    when present) against step, one column of panels per layer.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`TrackResult.table`.
    layers : list of str, optional
    axes : array of Axes, optional
        Shape (2, n_layers); created when None.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(table["layer"])) if layers is None else list(layers)
    extra = [c for c in table.columns if any(t in c for t in _EXTRA_PLOT)
             and np.issubdtype(table[c].dtype, np.number)]
    if axes is None:
        fig, axes = plt.subplots(2, len(layers), figsize=(4.5 * len(layers), 6.5),
                                 squeeze=False, sharex="col")
    else:
        axes = np.asarray(axes).reshape(2, -1)
        fig = axes[0, 0].figure
    for j, name in enumerate(layers):
        t = table[table["layer"] == name].sort_values("step")
        ax = axes[0, j]
        for c, style in (("h1_1", "-o"), ("h1_2", "--"), ("h1_3", ":")):
            if c in t:
                ax.plot(t["step"], t[c], style, ms=3, label=c.replace("h1_", "H1 bar "))
        for _, r in t.iterrows():
            if r["verdict"] == "circle":
                ax.annotate("c", (r["step"], r["h1_1"]), fontsize=7, ha="center",
                            va="bottom", color="tab:green")
        ax.set_title(f"{name}  (c = circle verdict)")
        ax.set_ylabel("H1 persistence")
        ax.legend(fontsize=7)
        ax = axes[1, j]
        if "test_acc" in t and t["test_acc"].notna().any():
            ax.plot(t["step"], t["test_acc"], "-", color="k", label="test acc")
        for c in extra:
            ax.plot(t["step"], t[c], "-", label=c)
        ax.set_xlabel("step")
        ax.set_ylabel("accuracy / metric")
        ax.legend(fontsize=7)
    return fig


def track(run_dirs, *, layers=None, k: int = 200, p: float = 0.3, coeff=2, seed: int = 0,
          n_landmarks: int = 500, max_points: int | None = 20000, steps=None,
          mapper_steps=(), clamp_k: bool = True, progress: bool | None = None, out=None,
          force: bool = False) -> TrackResult:
    """Analyse every snapshot of the runs, pooling runs by step.

    Parameters
    ----------
    run_dirs : path or list of paths
        Run folders from :func:`filtertopo.training.train` (with ``snapshot_every > 0``).
        Incomplete or interrupted runs are tracked as far as they go; what is
        missing is listed in :attr:`TrackResult.missing`.
    layers : str or list, optional
        Layer selector (``"conv1"``, ``"1"``, globs); default all conv layers.
    k, p, coeff, seed, n_landmarks, max_points
        Passed to :func:`filtertopo.analyze`.
    steps : list of int, optional
        Only these steps (default every step present in any run).
    mapper_steps : list of int
        Also build Mapper graphs of each layer's dense core at these steps (columns
        ``mapper_b0``, ``mapper_b1``: components and loops of the graph; figures
        ``mapper_<layer>_step_<n>.png`` when saved).
    clamp_k : bool
        Use ``k = n - 1`` where a pooled step has no more than ``k`` filters.
    progress : bool, optional
        Progress bar over steps; default only on a terminal.
    out : path, optional
        Also :meth:`TrackResult.save` there.
    force : bool
        Overwrite tracking results already in ``out``.

    Returns
    -------
    TrackResult
    """
    import sys

    import pandas as pd
    from tqdm.auto import tqdm

    from ..pipeline import analyze

    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise InputError("run_dirs is empty; pass at least one run folder.")
    if out is not None:
        existing = [f for f in TRACK_FILES if (Path(out) / f).exists()]
        if existing and not force:
            raise InputError(f"--out {str(out)!r} already holds tracking results "
                             f"({', '.join(existing)}); choose another folder or pass --force.")
    missing, by_step = [], defaultdict(list)
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
            res = analyze([str(s.path) for s in snaps], layers=layers, k=k, p=p, coeff=coeff,
                          seed=seed, n_landmarks=n_landmarks, max_points=max_points,
                          clamp_k=clamp_k, progress=False)
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
                from ..mapper import mapper_graph

                g = mapper_graph(res[layer_row["layer"]].core)
                graphs[(step, layer_row["layer"])] = g
                layer_row["mapper_b0"], layer_row["mapper_b1"] = map(int, g.betti())
            rows.append({**head, **layer_row})
    table = pd.DataFrame(rows)
    config = dict(layers=layers, k=k, p=p, coeff=coeff, seed=seed, n_landmarks=n_landmarks,
                  max_points=max_points, clamp_k=clamp_k, steps=chosen, mapper_steps=mapper_steps)
    result = TrackResult(table, tuple(missing), tuple(str(r) for r in run_dirs), config, results,
                         graphs)
    if out is not None:
        result.save(out, force=force)
    return result
