"""One self-contained ``report.html`` for the topology of the filters over training.

The page shows a :class:`~filtertopo.tracking.TrackResult` (Gabrielsson & Carlsson
2019, §6: the structure appears and changes during training): the layer x step table,
the curves against step (longest H1 persistences, circle fraction ``frac_primary``,
null-model margin when tracked with ``null_draws``, verdict per step; drawn by
:func:`filtertopo.report.track_figures.plot_track`) and, for chosen steps (default the first,
the last and the ``mapper_steps``), each layer's full analysis section as in the
analysis report (:mod:`filtertopo.report.html`): verdict with reasons, interactive
Mapper graph with filter images, barcode, diagram, core projection, the filters on the
circle and the gallery.

The per-layer sections, styles, script, table cells and Content-Security-Policy are
those of :mod:`filtertopo.report.html`, reused rather than copied, so both reports look
and behave alike and stay self-contained: inline images and script, no network request.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path

from ..errors import InputError
from . import html as H
from .track_figures import plot_track, track_panels

__all__ = ["write_track_report", "render_track_report", "track_table_html",
           "TRACK_COLUMN_HELP"]

#: Tooltips of the tracking table's columns: the analysis table's and the per-step ones.
TRACK_COLUMN_HELP = {
    **H.COLUMN_HELP,
    "step": "optimiser step (batches seen) when the snapshots were taken",
    "epoch": "mean epoch of the pooled snapshots",
    "n_runs": "runs pooled at this step",
    "train_acc": "mean train accuracy of the pooled runs",
    "test_acc": "mean test accuracy of the pooled runs",
    "test_acc_std": "standard deviation of the test accuracy over the pooled runs",
    "mapper_b0": "connected components of the Mapper graph of the core",
    "mapper_b1": "loops of the Mapper graph of the core",
}

_CSS_TRACK = """
table.track tr.detail td:first-child a{font-weight:bold}
section.step{border-top:3px solid #999;margin-top:2em}
section.step>h2{margin-bottom:.2em}
ul.notes{font-size:13px;color:#a33}
"""


def _cell(value, col) -> str:
    try:
        return H._cell(value, col)
    except (TypeError, ValueError):  # lists or other objects a future metric may hold
        return html.escape(str(value))


def track_table_html(table, detail_steps=()) -> str:
    """The tracking table (one row per step and layer) as an HTML ``<table>``.

    Cells are formatted as in the analysis report (:func:`filtertopo.report.html.
    result_table_html`); headers carry :data:`TRACK_COLUMN_HELP` tooltips; the step of
    a row whose step has a detail section links to it.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`TrackResult.table`.
    detail_steps : iterable of int
        Steps with a section ``#step-<n>`` on the page.

    Returns
    -------
    str
    """
    cols = list(table.columns)
    detail = {int(s) for s in detail_steps}
    head = "".join(
        f'<th title="{html.escape(TRACK_COLUMN_HELP[c])}">{html.escape(str(c))}</th>'
        if c in TRACK_COLUMN_HELP else f"<th>{html.escape(str(c))}</th>" for c in cols)
    rows = []
    for rec in table.itertuples(index=False, name=None):
        row = dict(zip(cols, rec))
        step = int(row["step"])
        cells = []
        for v, c in zip(rec, cols):
            text = _cell(v, c)
            if c == "step" and step in detail:
                text = f'<a href="#step-{step}">{text}</a>'
            cells.append(f'<td class="{"txt" if isinstance(v, str) else "num"}">{text}</td>')
        rows.append(f'<tr class="{"detail" if step in detail else "row"}" data-step="{step}" '
                    f'data-layer="{html.escape(str(row.get("layer", "")))}">'
                    f"{''.join(cells)}</tr>")
    return (f'<table class="dataframe layers track"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _detail_steps(track_result, detail_steps):
    have = sorted(track_result.results)
    if detail_steps is None:
        if not have:  # a TrackResult without the per-step analyses: table and curves only
            return []
        chosen = {have[0], have[-1]} | set(track_result.config.get("mapper_steps") or ())
        return sorted(s for s in chosen if s in track_result.results)
    chosen = sorted({int(s) for s in detail_steps})
    bad = [s for s in chosen if s not in track_result.results]
    if bad:
        raise InputError(f"detail_steps must be tracked steps {have}; got {bad}. "
                         "Choose among those, or None for the first and last step.")
    return chosen


def _curves_html(table) -> str:
    panels = track_panels(table)
    what = {"h1": "the three longest H1 persistences (grey: the null model's mean and "
                  "largest longest bar)",
            "fractions": "the circle fraction <code>frac_primary</code> (core filters near the "
                         "primary circle), the other shape fractions and the test accuracy",
            "margin": "the null-model margin <code>h1_ratio_null_max</code> (observed longest "
                      "bar / largest null bar; above the dashed line = above every null draw) "
                      "and <code>h1_margin_z</code> (right axis, when finite)",
            "verdict": "the verdict of each step"}
    cap = "; ".join(what[p] for p in panels)
    fig = plot_track(table)
    return ('<section id="curves"><h2>Against step</h2>'
            f'<p class="cap">One column per layer; rows, top to bottom: {cap}.</p>'
            + H._img(H._fig_b64(fig, dpi=80), "tracked quantities against step", "fig curves")
            + "</section>")


def _step_head(table, step) -> str:
    t = table[table["step"] == step]
    if t.empty:
        return ""
    r = t.iloc[0]
    facts = {"epoch": r.get("epoch"), "runs pooled": r.get("n_runs"),
             "train acc": r.get("train_acc"), "test acc": r.get("test_acc")}
    return "<p class='facts'>" + " &middot; ".join(
        f"{k} <b>{_cell(v, 'n_runs' if k == 'runs pooled' else k)}</b>"
        for k, v in facts.items() if v is not None) + "</p>"


def render_track_report(track_result, *, detail_steps=None, mapper_kwargs=None,
                        mapper_max_points=3000, title="filtertopo tracking report") -> str:
    """The tracking report as one HTML string (see :func:`write_track_report`)."""
    table = track_result.table
    if table is None or not len(table):
        raise InputError("track_result has an empty table; nothing to report. Track runs "
                         "with snapshots first (filtertopo track RUN --out DIR).")
    table = table.sort_values(["step"], kind="stable")
    steps = _detail_steps(track_result, detail_steps)
    timings = {"figures": 0.0, "gallery": 0.0, "mapper": 0.0, "svg": 0.0, "curves": 0.0}
    t = time.perf_counter()
    curves = _curves_html(table)
    timings["curves"] = time.perf_counter() - t
    mk = dict(mapper_kwargs or {})
    sections, datas = [], []
    for step in steps:
        res = track_result.results[step]
        parts = [f'<section class="step" id="step-{step}"><h2>Step {step}</h2>',
                 _step_head(table, step)]
        for layer in res.layers:
            i = len(datas)  # page-wide index: element ids and the script's data use it
            s, d = H._layer_section(i, layer, mk, mapper_max_points, timings)
            parts.append(s.replace(f"<h2>{i + 1}. ", f"<h2>step {step} &middot; ", 1))
            datas.append(d)
        parts.append("</section>")
        sections.append("".join(parts))
    nav = " ".join(['<a href="#table">table</a>', '<a href="#curves">curves</a>']
                   + [f'<a href="#step-{s}">step {s}</a>' for s in steps])
    layers = list(dict.fromkeys(table["layer"]))
    n_steps = table["step"].nunique()
    runs = "".join(f"<li>{html.escape(str(r))}</li>" for r in track_result.runs)
    notes = ("<details open><summary>notes: what was missing</summary><ul class='notes'>"
             + "".join(f"<li>{html.escape(str(m))}</li>" for m in track_result.missing)
             + "</ul></details>") if track_result.missing else ""
    cfg = html.escape(json.dumps(track_result.config, indent=1, default=str))
    payload = json.dumps({"layers": datas, "lut": H._lut_hex()}, separators=(",", ":"))
    payload = payload.replace("</", "<\\/")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f'<meta http-equiv="Content-Security-Policy" content="{H._CSP}">'
        f"<title>{html.escape(title)}</title><style>{H._CSS}{_CSS_TRACK}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>"
        f"<section id='table'><h2>Layer x step</h2>"
        f"<p>{n_steps} step{'s' if n_steps != 1 else ''} x {len(layers)} "
        f"layer{'s' if len(layers) != 1 else ''} ({html.escape(', '.join(map(str, layers)))}); "
        f"snapshots of {len(track_result.runs)} run{'s' if len(track_result.runs) != 1 else ''} "
        "pooled by step. Steps in bold have a detail section below.</p>"
        f"<div class='tablewrap'>{track_table_html(table, steps)}</div>{notes}"
        f"<details><summary>runs</summary><ul>{runs}</ul></details>"
        f"<details><summary>configuration</summary><pre>{cfg}</pre></details></section>"
        f"{curves}{''.join(sections)}"
        "<div id='tip'></div>"
        f'<script id="report-data" type="application/json">{payload}</script>'
        f"<script>{H._JS}</script>"
        f"<!-- seconds: {', '.join(f'{k} {v:.2f}' for k, v in timings.items())} -->"
        "</body></html>")


def write_track_report(track_result, path, *, force: bool = False, detail_steps=None,
                       mapper_kwargs=None, mapper_max_points: int = 3000) -> Path:
    """Write one self-contained ``report.html`` for a tracking result.

    Parameters
    ----------
    track_result : TrackResult
        From :func:`filtertopo.tracking.track` (holds each step's analysis).
    path : str or Path
        The file to write, e.g. ``DIR/report.html`` beside ``track.csv``.
    force : bool, default=False
        Replace an existing file; without it an existing file is an error.
    detail_steps : iterable of int, optional
        Steps that get the per-layer analysis sections (Mapper graph, gallery, circle,
        barcode). Default: the first and last tracked step and the ``mapper_steps``.
    mapper_kwargs : dict, optional
        Passed to :func:`filtertopo.mapper.mapper_graph` (default: resolution from the core size; ``n_intervals="paper"`` for the paper's 30).
    mapper_max_points : int, default=3000
        Larger cores are subsampled (seeded by the layer's seed) for Mapper.

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    From the command line: ``filtertopo track runs/ --out track/ --null-draws 3 --report``.
    From Python (it needs trained runs, so it is not run as a doctest)::

        from filtertopo.tracking import track
        res = track(["runs/seed_000", "runs/seed_001"], layers="conv1", null_draws=3)
        write_track_report(res, "track/report.html")
    """
    from .._io import atomic_write, check_output_file

    path = check_output_file(path, force=force, flag="path")
    text = render_track_report(track_result, detail_steps=detail_steps,
                               mapper_kwargs=mapper_kwargs,
                               mapper_max_points=mapper_max_points)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), flag="path")
