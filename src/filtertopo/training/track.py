"""Topology of the filter space over the course of training (Gabrielsson & Carlsson 2019, §6).

:func:`track` analyses every snapshot of one or more run folders written by
:func:`filtertopo.training.train`. Snapshots of several runs taken at the same
step are pooled layer by layer, as the paper pools networks, and each pooled
step goes through :func:`filtertopo.analyze`. The result is a table with one
row per (step, layer): the longest H1 persistences, the verdict, every column
the core puts in ``LayerResult.metrics`` (shape fractions, null-model margin...),
the mean train/test accuracy of the pooled runs, and how many runs were pooled.
With ``null_draws >= 1`` every step is also compared with matched Gaussian
filters (:func:`filtertopo.nullmodel.null_margin`), so the margin of the longest
H1 bar over chance can be followed against step. :func:`plot_track` draws the
curves; :func:`filtertopo.report.track_html.write_track_report` puts them, the
table and the first and last steps' analyses into one self-contained HTML page.
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

__all__ = ["track", "TrackResult", "plot_track", "plot_track_panel", "track_panels",
           "TRACK_FILES", "TRACK_PANELS"]

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

    def save(self, out_dir, *, force: bool = False, figures: bool = True,
             steps_detail: bool = True) -> Path:
        """Write ``track.csv``, ``track.json``, ``track_h1.png`` (:func:`plot_track`),
        ``mapper_<layer>_step_<n>.png`` at the ``mapper_steps`` and, with
        ``steps_detail``, each step's analysis under ``steps/step_<n>/`` (six-digit
        step, readable by :meth:`AnalysisResult.load`).

        The whole output tree is checked first (:func:`check_track_out`): without
        ``force``, a folder holding tracking results or anything under ``steps/`` is
        refused before a file is written."""
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
        if figures and len(self.table):
            from matplotlib.figure import Figure

            plot_track(self.table).savefig(out / "track_h1.png", dpi=120, bbox_inches="tight")
            if self.mapper:
                from ..report.figures import plot_mapper

                for (step, layer), graph in self.mapper.items():
                    lr = self.results[step][layer]
                    ax = Figure(figsize=(6, 6)).add_subplot()
                    plot_mapper(graph, lr.core, ax=ax, kernel_shape=lr.kernel_shape)
                    ax.set_title(f"{layer}, step {step}: " + ax.get_title())
                    ax.figure.savefig(out / f"mapper_{layer}_step_{step:06d}.png", dpi=100,
                                      bbox_inches="tight")
        return out


#: Panels of :func:`plot_track`, top to bottom. "margin" appears only when the table has
#: null-model columns (``track(..., null_draws >= 1)``).
TRACK_PANELS = ("h1", "fractions", "margin", "verdict")
_MARGIN_COLS = ("h1_ratio_null_max", "h1_margin_z")
_VERDICT_COLORS = {"none": "0.55", "primary-circle": "tab:green", "circle": "tab:olive",
                   "arc": "tab:cyan", "clusters": "tab:orange", "three-circle": "tab:blue",
                   "klein-bottle": "tab:purple", "multiple": "tab:red", "too-few": "0.8"}


def _has(t, col) -> bool:
    return col in t and t[col].notna().any()


def track_panels(table) -> tuple:
    """The panels :func:`plot_track` draws for this table (a subset of :data:`TRACK_PANELS`)."""
    margin = any(_has(table, c) for c in _MARGIN_COLS)
    return tuple(p for p in TRACK_PANELS if p != "margin" or margin)


def plot_track_panel(table, layer: str, panel: str, ax=None):
    """One quantity of one layer against step.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`TrackResult.table`.
    layer : str
        A value of the ``layer`` column.
    panel : {"h1", "fractions", "margin", "verdict"}
        ``"h1"``: the three longest H1 persistences (and the null model's mean and
        largest longest bar, dashed grey, when present). ``"fractions"``: the circle
        fraction ``frac_primary`` (fraction of core filters near the primary circle),
        the other shape fractions, ``null_frac_circle`` and the test accuracy.
        ``"margin"``: ``h1_ratio_null_max`` (observed longest bar over the largest
        null bar; above the dashed line at 1 = above every null draw) and, on the
        right axis, ``h1_margin_z`` when finite. ``"verdict"``: the verdict per step.
    ax : matplotlib Axes, optional
        Created (on a new Figure) when None.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if panel not in TRACK_PANELS:
        raise InputError(f"panel must be one of {TRACK_PANELS}; got {panel!r}.")
    t = table[table["layer"] == layer].sort_values("step")
    if t.empty:
        raise InputError(f"layer must be a layer of the table "
                         f"{sorted(set(table['layer']))}; got {layer!r}.")
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(4.5, 2.6), layout="constrained").add_subplot()
    x = t["step"].to_numpy()
    handles = []
    if panel == "h1":
        for c, style in (("h1_1", "-o"), ("h1_2", "--"), ("h1_3", ":")):
            if c in t:
                handles += ax.plot(x, t[c], style, ms=3, label=c.replace("h1_", "H1 bar "))
        for c, style in (("null_h1_mean", ":"), ("null_h1_max", "--")):
            if _has(t, c):
                handles += ax.plot(x, t[c], style, color="0.5", lw=1,
                                   label=c.replace("null_h1_", "null longest bar, "))
        ax.set_ylabel("H1 persistence")
    elif panel == "fractions":
        if _has(t, "frac_primary"):
            handles += ax.plot(x, t["frac_primary"], "-o", ms=3, color="tab:green",
                               label="frac_primary (circle)")
        for c in [c for c in t.columns if c.startswith("frac_") and c != "frac_primary"] \
                + ["null_frac_circle"]:
            if _has(t, c) and np.issubdtype(t[c].dtype, np.number):
                handles += ax.plot(x, t[c], "-", lw=1, alpha=0.7, label=c)
        if _has(t, "test_acc"):
            handles += ax.plot(x, t["test_acc"], "-", color="k", label="test acc")
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("fraction")
    elif panel == "margin":
        if _has(t, "h1_ratio_null_max"):
            handles += ax.plot(x, t["h1_ratio_null_max"], "-o", ms=3, color="tab:red",
                               label="h1_ratio_null_max")
            ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
        ax.set_ylabel("observed / null max")
        z = t["h1_margin_z"].to_numpy(dtype=float) if "h1_margin_z" in t else np.array([])
        if np.isfinite(z).any():
            tw = ax.twinx()
            handles += tw.plot(x, z, "-s", ms=3, color="tab:purple", label="h1_margin_z")
            tw.set_ylabel("z")
        if not handles:
            ax.text(0.5, 0.5, "no null model (null_draws=0)", transform=ax.transAxes,
                    ha="center", va="center", color="0.4")
    else:
        from ..verdict import LABELS

        seen = list(dict.fromkeys(t["verdict"].astype(str)))
        labels = [v for v in LABELS if v in seen or v in ("none", "primary-circle")] \
            + [v for v in seen if v not in LABELS]
        y = [labels.index(v) for v in t["verdict"].astype(str)]
        ax.scatter(x, y, c=[_VERDICT_COLORS.get(v, "k") for v in t["verdict"].astype(str)],
                   s=22, zorder=3)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_ylim(-0.5, len(labels) - 0.5)
        ax.grid(axis="y", color="0.9")
        ax.set_ylabel("verdict")
    if handles:
        ax.legend(handles=handles, fontsize=7)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole batches
    return ax


def plot_track(table, layers=None, axes=None, *, fig=None):
    """Every panel of :func:`plot_track_panel` against step, one column per layer.

    Rows, top to bottom: the longest H1 persistences; the circle fraction
    (``frac_primary``) with the other fractions and test accuracy; the null-model
    margin (only when the table has it); the verdict per step.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`TrackResult.table`.
    layers : list of str, optional
        Default every layer of the table, in order.
    axes : array of Axes, optional
        Shape ``(len(track_panels(table)), n_layers)``; created when None.
    fig : matplotlib Figure, optional
        Where to create the axes (a new Figure when None).

    Returns
    -------
    matplotlib.figure.Figure
    """
    layers = list(dict.fromkeys(table["layer"])) if layers is None else list(layers)
    panels = track_panels(table)
    if axes is None:
        if fig is None:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(4.5 * len(layers), 2.3 * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), len(layers), squeeze=False, sharex="col",
                            gridspec_kw=dict(height_ratios=[0.7 if p == "verdict" else 1
                                                            for p in panels]))
    else:
        axes = np.asarray(axes, dtype=object)
        if axes.size != len(panels) * len(layers):
            raise InputError(f"axes must hold {len(panels)} x {len(layers)} Axes (panels "
                             f"{panels} x layers); got {axes.size}. Pass axes=None to create "
                             "them.")
        axes = axes.reshape(len(panels), len(layers))
        fig = axes[0, 0].figure
    for j, name in enumerate(layers):
        for i, panel in enumerate(panels):
            plot_track_panel(table, name, panel, ax=axes[i, j])
        axes[0, j].set_title(name)
        axes[-1, j].set_xlabel("step")
    return fig


def _check_layers(snap, layers, step):
    """Resolve the layer selector on one snapshot (cheap) before any analysis."""
    from ..pipeline import select_layers
    from ..weights import load_kernels

    if layers is None:
        return
    try:
        bundle = load_kernels(snap.path)
    except InputError as exc:
        raise InputError(f"step {step}: {exc}") from None
    select_layers(list(bundle.kernels), layers)


def track(run_dirs, *, layers=None, k="auto", p: float = 0.3, maxdim: int = 1, coeff=2,
          seed: int = 0, n_landmarks: int = 500, max_points: int | None = 10000,
          null_draws: int = 0, steps=None, mapper_steps=(), clamp_k: bool = True,
          progress: bool | None = None, out=None, force: bool = False) -> TrackResult:
    """Analyse every snapshot of the runs, pooling runs by step.

    Parameters
    ----------
    run_dirs : path or list of paths
        Run folders from :func:`filtertopo.training.train` (with ``snapshot_every > 0``).
        Incomplete or interrupted runs are tracked as far as they go; what is
        missing is listed in :attr:`TrackResult.missing`.
    layers : str or list, optional
        Layer selector (``"conv1"``, ``"1"``, globs); default all conv layers.
    k, p, maxdim, coeff, seed, n_landmarks, max_points
        Passed to :func:`filtertopo.analyze` (same defaults).
    null_draws : int, default=0
        Matched Gaussian null draws per layer and step, passed to
        :func:`filtertopo.analyze`: adds ``null_h1_mean``, ``null_h1_max``,
        ``h1_margin_z``, ``h1_ratio_null_max``, ``null_frac_circle``... to the table
        and a margin panel to the figure. Each draw costs about one more analysis.
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
    if isinstance(null_draws, bool) or not isinstance(null_draws, (int, np.integer)) \
            or null_draws < 0:
        raise InputError(f"null_draws must be an integer >= 0; got {null_draws!r}. "
                         "Pass e.g. 3 (--null-draws 3), or 0 to skip the null model.")
    from ..errors import check_seed

    check_seed("seed (--seed)", seed, allow_generator=False)  # the rule of analyze
    from ..pipeline import _validate

    _validate(k, p, maxdim, coeff, n_landmarks, max_points)  # before any snapshot is read
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
            res = analyze([str(s.path) for s in snaps], layers=layers, k=k, p=p, maxdim=maxdim,
                          coeff=coeff, seed=seed, n_landmarks=n_landmarks,
                          max_points=max_points, null_draws=int(null_draws), clamp_k=clamp_k,
                          progress=False)
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
    config = dict(layers=layers, k=k, p=p, maxdim=maxdim, coeff=coeff, seed=seed,
                  n_landmarks=n_landmarks, max_points=max_points, null_draws=int(null_draws),
                  clamp_k=clamp_k, steps=chosen, mapper_steps=mapper_steps)
    result = TrackResult(table, tuple(missing), tuple(str(r) for r in run_dirs), config, results,
                         graphs)
    if out is not None:
        result.save(out, force=force)
    return result
