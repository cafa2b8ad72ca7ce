"""The study's self-contained ``report.html``: headline, scatter plots, every table.

Figures are matplotlib PNGs inlined as base64; a Content-Security-Policy ``default-src
'none'`` forbids any network request, so the file opens offline (STYLE.md habit 14, as
:mod:`filtertopo.report.html`). Figures are drawn on ``Figure`` objects of their own, never
through pyplot's global state.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math

import numpy as np

__all__ = ["render_study_report", "scatter", "forest"]

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_FAMILY_COLOURS = {"topology": "#1f77b4", "baseline": "#ff7f0e", "weightwatcher": "#9467bd",
                   "hyperparameter": "#7f7f7f", "control_init": "#2ca02c", "control_shuffled": "#d62728"}
_MAX_ROWS = 40


def _b64(fig, dpi=80) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64, alt) -> str:
    return f'<img class="fig" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def scatter(x, y, *, xlabel: str, ylabel: str, colour=None, colour_label: str = "", title: str = "", ax=None):
    """A scatter of one feature against one target, coloured by an axis; returns ``ax``."""
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(3.6, 3.0)).add_subplot(111)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if colour is not None:
        labels = [str(c) for c in colour]
        uniq = sorted(set(labels))
        cmap = {u: f"C{i % 10}" for i, u in enumerate(uniq)}
        for u in uniq:
            m = np.array([lab == u for lab in labels])
            ax.scatter(x[m], y[m], s=14, alpha=0.8, color=cmap[u], label=u)
        if 1 < len(uniq) <= 8:
            ax.legend(fontsize=6, title=colour_label or None, title_fontsize=6, loc="best", frameon=False)
    else:
        ax.scatter(x, y, s=14, alpha=0.8)
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=6)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    if title:
        ax.set_title(title, fontsize=7)
    return ax


def forest(tau, target: str, *, top: int = 20, ax=None):
    """Kendall tau with its interval of the ``top`` features by |tau| for one target; returns ``ax``."""
    sub = tau[tau["target"] == target].dropna(subset=["tau"])
    sub = sub.reindex(sub["tau"].abs().sort_values(ascending=False).index)[:top][::-1]
    if ax is None:
        from matplotlib.figure import Figure

        h = 0.8 + 0.2 * max(len(sub), 1)
        fig = Figure(figsize=(6.5, h))
        fig.subplots_adjust(left=0.42, right=0.97, bottom=0.55 / h, top=1 - 0.15 / h)
        ax = fig.add_subplot(111)
    ys = np.arange(len(sub))
    colours = [_FAMILY_COLOURS.get(f, "k") for f in sub["family"]]
    lo = (sub["tau"] - sub["low"]).clip(lower=0).fillna(0)
    hi = (sub["high"] - sub["tau"]).clip(lower=0).fillna(0)
    ax.errorbar(sub["tau"], ys, xerr=[lo, hi], fmt="none", ecolor="#999", lw=1)
    ax.scatter(sub["tau"], ys, c=colours, s=16, zorder=3)
    ax.axvline(0, color="#444", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels(sub["feature"], fontsize=6)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f"Kendall tau with {target} (95% bootstrap interval)", fontsize=7)
    ax.tick_params(axis="x", labelsize=6)
    return ax


def _fmt(v, col="") -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        x = float(v)
        if math.isnan(x):
            return ""
        if col in ("n", "n_features", "n_splits"):
            return str(int(x))
        if col == "p_value":
            return f"{x:.2g}"
        return f"{x:.3f}"
    return html.escape(str(v))


def _table(df, *, sort_abs: str | None = None, limit: int = _MAX_ROWS, cls="t") -> str:
    if df is None or not len(df):
        return "<p class='cap'>(empty)</p>"
    d = df
    if sort_abs and sort_abs in d:
        d = d.reindex(d[sort_abs].abs().sort_values(ascending=False).index)
    more = len(d) - limit
    d = d[:limit]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in d.columns)
    rows = []
    for rec in d.itertuples(index=False, name=None):
        cells = []
        for v, c in zip(rec, d.columns):
            cls_ = "txt" if isinstance(v, str) else "num"
            cells.append(f'<td class="{cls_}">{_fmt(v, c)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    tail = f"<p class='cap'>{more} more rows in the CSV file.</p>" if more > 0 else ""
    return f"<div class='tablewrap'><table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{tail}"


def _ci(lo, hi) -> str:
    if lo is None or hi is None or not all(math.isfinite(float(v)) for v in (lo, hi)):
        return ""
    return f" [{float(lo):.2f}, {float(hi):.2f}]"


def _headline(stats) -> str:
    rows = []
    for h in stats.headline:
        cp = h.get("ci_primary") or [None, None]
        tp = "" if h.get("tau_primary") is None else f"{h['tau_primary']:.2f}{_ci(*cp)}"
        ct = h.get("ci_topology") or [None, None]
        cb = h.get("ci_baseline") or [None, None]
        tt = "" if h.get("tau_topology") is None else f"{h['tau_topology']:.2f}{_ci(*ct)}"
        tb = "" if h.get("tau_baseline") is None else f"{h['tau_baseline']:.2f}{_ci(*cb)}"
        rows.append(f"<tr><td class='txt'>{html.escape(h['target'])}</td>"
                    f"<td class='txt'>{html.escape(str(h.get('primary_feature') or ''))}</td><td class='num'>{tp}</td>"
                    f"<td class='txt'>{html.escape(str(h.get('best_topology') or ''))}</td><td class='num'>{tt}</td>"
                    f"<td class='txt'>{html.escape(str(h.get('best_baseline') or ''))}</td><td class='num'>{tb}</td>"
                    f"<td class='num'>{_fmt(h.get('r2_without_topology'))}</td>"
                    f"<td class='num'>{_fmt(h.get('r2_with_topology'))}</td></tr>")
    return ("<div class='tablewrap'><table class='t'><thead><tr><th>target</th><th>named statistic</th>"
            "<th>tau [95% CI]</th><th>best topology feature</th>"
            "<th>tau [95% CI]</th><th>best baseline</th><th>tau [95% CI]</th><th>CV R² hp+baselines</th>"
            "<th>CV R² + topology</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


#: Targets drawn (when present); the tables hold every target.
FIGURE_TARGETS = ("test_acc", "gen_gap", "acc_shifted")


def _figure_targets(stats) -> list:
    picked = [h for h in stats.headline if h["target"] in FIGURE_TARGETS]
    return picked or list(stats.headline[:3])


def _scatters(table, stats) -> str:
    from matplotlib.figure import Figure

    frame = table.frame
    hyper = [a for a in table.axes if a != "seed"]
    colour_axis = hyper[0] if hyper else None
    colour = None if colour_axis is None else [json.loads(v) for v in frame[f"axis:{colour_axis}"]]
    out = []
    for h in _figure_targets(stats):
        t = h["target"]
        picks = []
        if h.get("best_topology"):
            picks.append(h["best_topology"])
            stem = h["best_topology"].split(".", 1)[1]
            for prefix in ("init", "shuf"):
                if f"{prefix}.{stem}" in frame:
                    picks.append(f"{prefix}.{stem}")
        if h.get("best_baseline"):
            picks.append(h["best_baseline"])
        first = next((c for c in frame.columns if c.startswith("topo.") and c.endswith(".h1_1")), None)
        if first and first not in picks:
            picks.insert(0, first)
        if not picks:
            continue
        fig = Figure(figsize=(2.9 * len(picks), 2.7))
        fig.subplots_adjust(left=0.5 / (2.9 * len(picks)), right=0.98, bottom=0.17, top=0.9, wspace=0.35)
        axes = fig.subplots(1, len(picks), squeeze=False)[0]
        tau = stats.tau
        for ax, f in zip(axes, picks):
            m = tau[(tau["feature"] == f) & (tau["target"] == t)]
            title = "" if not len(m) else f"tau {m['tau'].iloc[0]:.2f}{_ci(m['low'].iloc[0], m['high'].iloc[0])}"
            scatter(frame[f], frame[t], xlabel=f, ylabel=t, colour=colour, colour_label=colour_axis or "",
                    title=title, ax=ax)
        out.append(f"<h3>{html.escape(t)}</h3>" + _img(_b64(fig), f"scatter plots for {t}"))
    return "".join(out)


def _forests(stats) -> str:
    out = []
    for h in _figure_targets(stats):
        ax = forest(stats.tau, h["target"])
        out.append(_img(_b64(ax.figure), f"Kendall tau of the strongest features with {h['target']}"))
    return "".join(out)


def render_study_report(table, stats, summary: dict) -> str:
    """The report as one HTML string."""
    axes = "; ".join(f"{html.escape(a)} = {html.escape(json.dumps(v))}" for a, v in table.axes.items()) or "none"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary.get("notes", []))
    dropped = "".join(f"<li>{html.escape(f)}: {html.escape(r)}</li>" for f, r in stats.dropped[:200])
    skipped = "".join(f"<li>{html.escape(p)}: {html.escape(r)}</li>" for p, r in table.skipped[:200])
    legend = " ".join(f"<span style='color:{c}'>&#9679; {html.escape(f)}</span>" for f, c in _FAMILY_COLOURS.items())
    seconds = summary.get("seconds")
    facts = (f"<p class='facts'>{len(table.frame)} runs from <code>{html.escape(str(summary.get('inputs', {}).get('dir', '')))}"
             f"</code> ({html.escape(table.source)}); axes: {axes}; targets: {html.escape(', '.join(table.targets))}; "
             f"{len(table.features)} numeric features"
             + (f"; {seconds:.1f} s" if isinstance(seconds, (int, float)) else "") + ".</p>")
    sections = [
        "<section><h2>Headline</h2><p class='cap'>Per target: the statistic named in advance (the longest H1 bar "
        "of the first analysed layer, Gabrielsson &amp; Carlsson), then the topology feature and the baseline "
        "with the largest |Kendall tau| over all runs (picked after looking, among many: optimistic), with 95% "
        "percentile-bootstrap intervals; and the out-of-fold R² of a ridge predictor, folds grouped by "
        "configuration, without and with the topology features.</p>"
        + _headline(stats) + "</section>",
        "<section><h2>Scatter plots</h2><p class='cap'>Colour: " + html.escape(
            next((a for a in table.axes if a != 'seed'), 'none')) + ". The best topology feature beside its "
        "controls (initial weights, pixel-shuffled filters) and the best baseline.</p>" + _scatters(table, stats)
        + "</section>",
        f"<section><h2>Strongest features</h2><p class='cap'>{legend}</p>{_forests(stats)}</section>",
        "<section><h2>Kendall tau</h2>" + _table(stats.tau, sort_abs="tau") + "</section>",
        "<section><h2>Granulated Kendall coefficient Ψ</h2>" + _table(stats.psi, sort_abs="psi") + "</section>",
        "<section><h2>Conditional mutual information score</h2>" + _table(stats.cmi, sort_abs="cmi") + "</section>",
        "<section><h2>Partial tau given the best baseline</h2>" + _table(stats.partial, sort_abs="partial_tau")
        + "</section>",
        "<section><h2>Cross-validated prediction</h2>" + _table(stats.predict, limit=200) + "</section>",
        "<section><h2>Controls</h2><p class='cap'>Each topology feature of the final filters beside the same "
        "feature of the initial weights and of the pixel-shuffled final filters.</p>"
        + _table(stats.controls, sort_abs="tau_final") + "</section>",
        f"<section><h2>Notes</h2><ul>{notes or '<li>none</li>'}</ul><h3>Features left out</h3>"
        f"<ul>{dropped or '<li>none</li>'}</ul><h3>Runs left out</h3><ul>{skipped or '<li>none</li>'}</ul></section>",
    ]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f"<title>filtertopo study</title><style>{_CSS}</style></head><body>"
            f"<h1>filtertopo study: {html.escape(str(table.meta.get('name', '')))}</h1>{facts}"
            + "".join(sections) + "</body></html>")


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
.tablewrap{overflow-x:auto;max-width:100%}
table.t{border-collapse:collapse;font-size:12px;white-space:nowrap}
table.t td,table.t th{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right}
table.t td.txt{text-align:left}
section{border-top:2px solid #ccc;margin-top:1.5em}
.facts{color:#444}
img.fig{max-width:100%;border:1px solid #eee;margin:4px 0}
.cap{font-size:12px;color:#555}
"""
