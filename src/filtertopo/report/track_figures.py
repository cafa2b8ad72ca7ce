"""Figures of a tracking result (:mod:`filtertopo.tracking`): quantities against step.

:func:`plot_track` draws every panel of :func:`plot_track_panel` (longest H1 persistences,
circle fraction ``frac_primary``, the null-model margin when tracked with ``null_draws``,
the verdict per step), one column per layer; :func:`save_track_figures` writes it as
``track_h1.png`` and the Mapper graphs of the ``mapper_steps`` as
``mapper_<layer>_step_<n>.png`` into the folder :meth:`TrackResult.save
<filtertopo.tracking.TrackResult.save>` wrote, which itself draws nothing. Like the rest
of :mod:`filtertopo.report`, the plot functions return what they drew on and never show,
save or restyle; only :func:`save_track_figures` writes files, and only where asked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["plot_track", "plot_track_panel", "track_panels", "save_track_figures",
           "TRACK_PANELS"]

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


def save_track_figures(track_result, out_dir, *, force: bool = False, dpi: int = 120) -> list:
    """Write the figures of a tracking result beside its tables.

    ``track_h1.png`` (:func:`plot_track` of the table) and, for every Mapper graph in
    ``track_result.mapper`` (the ``mapper_steps``), ``mapper_<layer>_step_<n>.png``
    (:func:`filtertopo.report.figures.plot_mapper` of that step's core). Nothing is drawn
    for an empty table.

    Parameters
    ----------
    track_result : TrackResult
        From :func:`filtertopo.tracking.track`.
    out_dir : path
        Usually the folder :meth:`TrackResult.save` wrote (created if absent).
    force : bool, default=False
        Replace figures already there; without it any of them existing is an InputError,
        raised before anything is written.
    dpi : int, default=120
        Of ``track_h1.png`` (the Mapper pictures use 100).

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"out_dir {str(out)!r} is a file; choose a folder path.")
    table = track_result.table
    if table is None or not len(table):
        return []
    names = ["track_h1.png"] + [f"mapper_{layer}_step_{step:06d}.png"
                                for step, layer in track_result.mapper]
    if not force:
        existing = [n for n in names if (out / n).exists()]
        if existing:
            raise InputError(f"{str(out)!r} already holds {', '.join(existing[:4])}; pass "
                             "force=True (--force) to replace them, or choose another folder.")
    from matplotlib.figure import Figure

    from .figures import plot_mapper

    out.mkdir(parents=True, exist_ok=True)
    written = [out / names[0]]
    plot_track(table).savefig(written[0], dpi=dpi, bbox_inches="tight")
    for (step, layer), graph in track_result.mapper.items():
        lr = track_result.results[step][layer]
        ax = Figure(figsize=(6, 6)).add_subplot()
        plot_mapper(graph, lr.core, ax=ax, kernel_shape=lr.kernel_shape)
        ax.set_title(f"{layer}, step {step}: " + ax.get_title())
        path = out / f"mapper_{layer}_step_{step:06d}.png"
        ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        written.append(path)
    return written
