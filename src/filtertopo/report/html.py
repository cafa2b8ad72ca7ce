"""One self-contained ``report.html`` for an :class:`~filtertopo.result.AnalysisResult`.

Everything is inline: styles, a small hand-written script (pan, zoom, hover and click on
the Mapper graphs), figures as base64 PNG, Mapper nodes as base64 PNG ``<image>``
elements, member filters as base64 int8 data drawn client-side on ``<canvas>``.
Filter pixels (Mapper nodes, galleries) are coloured in bulk with the colour map's lookup
table and written as PNG with zlib (:mod:`._raster`); matplotlib draws only the plots
with axes (barcode, diagram, projection, circle, overview). A
Content-Security-Policy ``default-src 'none'`` forbids any network request, so the file
opens offline and cannot phone home (STYLE.md habit 14; KeplerMapper's CDN-loaded d3 is
the counter-example).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np

from . import _raster as R
from . import circle as C
from . import figures as F

__all__ = ["write_report", "render_report", "result_table_html", "mapper_svg"]

_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'")


def _fig_b64(fig, dpi=72) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64, alt, cls="fig", extra=""):
    return (f'<img class="{cls}" alt="{html.escape(alt)}"{extra} '
            f'src="data:image/png;base64,{b64}">')


#: Tooltips of the table's columns (header ``title``); unknown columns get none.
COLUMN_HELP = {
    "n_filters": "filters in the layer (all sources)",
    "n_dropped": "(near-)constant filters dropped before normalising",
    "n_used": "filters analysed (after subsampling to max_points)",
    "n_core": "filters in the dense core X(k, p)",
    "h1_1": "longest H1 bar (persistence, chord distance)",
    "h1_2": "second longest H1 bar", "h1_3": "third longest H1 bar",
    "h1_gap_ratio": "ratio of the longest H1 bars at the chosen count",
    "n_h1_significant": "significant H1 bars (largest multiplicative gap)",
    "h0_max": "longest finite H0 bar",
    "frac_primary": "fraction of core filters within tol of the primary circle",
    "frac_secondary": "fraction within tol of a secondary circle",
    "frac_three_circle": "fraction within tol of the three-circle model",
    "frac_klein": "fraction within tol of the Klein bottle",
    "median_dist_primary": "median distance to the primary circle",
    "median_dist_klein": "median distance to the Klein bottle",
    "h1_observed": "longest H1 bar compared with the null model",
    "null_h1_mean": "mean longest H1 bar of matched Gaussian filters",
    "null_h1_std": "standard deviation of the null's longest H1 bar",
    "null_h1_max": "largest longest-H1 bar over the null draws",
    "h1_margin_z": "(observed - null mean) / null std",
    "h1_ratio_null_max": "observed / largest null bar (>1: above every draw)",
    "null_frac_circle": "fraction of null draws called 'circle'",
    "null_n_draws": "null-model draws",
}


def _decimals(col: str) -> int:
    """Decimals shown for a float column: 2 for ratios and z-scores, else 3."""
    return 2 if ("ratio" in col or col.endswith("_z")) else 3


def _cell(value, col) -> str:
    if value is None or isinstance(value, str) or isinstance(value, (bool, np.bool_)):
        return "" if value is None else html.escape(str(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):d}"
    x = float(value)
    if math.isnan(x):
        return ""
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == int(x) and (col.startswith(("n_", "null_n")) or abs(x) >= 1e4):
        return f"{int(x):d}"
    return f"{x:.{_decimals(col)}f}"


def result_table_html(result) -> str:
    """The per-layer table (``result.to_frame()``) as an HTML ``<table>`` (for notebooks too).

    Floats are rounded (3 decimals; 2 for ratios and z-scores), counts shown as integers,
    missing values blank and infinities as ``∞``; headers carry a tooltip
    (:data:`COLUMN_HELP`). New metric columns appear automatically.
    """
    df = result.to_frame()
    cols = list(df.columns)
    head = "".join(
        f'<th title="{html.escape(COLUMN_HELP[c])}">{html.escape(str(c))}</th>' if c in COLUMN_HELP
        else f"<th>{html.escape(str(c))}</th>" for c in cols)
    rows = []
    for rec in df.itertuples(index=False, name=None):
        cells = "".join(
            f'<td class="{"txt" if isinstance(v, str) else "num"}">{_cell(v, c)}</td>'
            for v, c in zip(rec, cols))
        rows.append(f"<tr>{cells}</tr>")
    return (f'<table class="dataframe layers"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _verdict_html(layer) -> str:
    """The layer's verdict with its reasons, as a ``<details>`` block."""
    reasons = [str(r) for r in layer.reasons]
    items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons) or "<li>no reasons recorded</li>"
    return (f'<details class="verdict" data-verdict="{html.escape(str(layer.verdict))}">'
            f"<summary>verdict <b>{html.escape(str(layer.verdict))}</b>"
            f" &middot; {len(reasons)} reason{'s' if len(reasons) != 1 else ''}</summary>"
            f"<ul>{items}</ul></details>")


def _lut_hex() -> list:
    """The filter colour map as 256 hex colours, so the browser draws filters identically."""
    return ["%02x%02x%02x" % tuple(int(c) for c in row[:3]) for row in R.lut()]


def _quantise(P: np.ndarray) -> str:
    """Filters as int8 scaled to their own max |value| (the drawing scale), base64."""
    m = np.abs(P).max(axis=1, keepdims=True)
    m[m == 0] = 1
    return base64.b64encode((P / m * 127).round().astype(np.int8).tobytes()).decode("ascii")


def mapper_svg(graph, core, *, layer_index, kernel_shape=None, width=900, height=560,
               node_px=18, members_per_node=12, color=None, circular=False, seed=0):
    """Interactive SVG of a Mapper graph (nodes as mean-filter images) and its JSON data.

    Parameters
    ----------
    color : ndarray of shape (n_points,), optional
        Per-point values for the node borders (default: the first lens).
    circular : bool, default=False
        ``color`` holds angles: borders show each node's circular mean on
        ``CIRCLE_CMAP``, and the data carry it as ``"theta"`` for the tooltip.

    Returns
    -------
    svg : str
        ``<svg>`` with one ``<image class="mapper-node">`` per node.
    data : dict
        JSON-able node data for the page script: sizes, degree, sampled members, filters.
    """
    pos = F.mapper_layout(graph, seed=seed)
    if len(pos):
        lo, span = pos.min(axis=0), np.ptp(pos, axis=0)
        span[span == 0] = 1
        m = 2 * node_px
        xy = np.c_[m + (pos[:, 0] - lo[0]) / span[0] * (width - 2 * m),
                   height - m - (pos[:, 1] - lo[1]) / span[1] * (height - 2 * m)]
    else:
        xy = np.zeros((0, 2))
    means = graph.node_mean(core) if graph.n_nodes else np.zeros((0, core.shape[1]))
    cols = F.node_colors(graph, color, circular=circular) if graph.n_nodes else np.zeros((0, 4))
    sizes = graph.sizes
    deg = np.bincount(graph.edges.ravel(), minlength=graph.n_nodes) if len(graph.edges) \
        else np.zeros(graph.n_nodes, int)
    rng = np.random.default_rng(seed)
    members, used = [], {}
    for mem in graph.nodes:
        pick = mem if len(mem) <= members_per_node else np.sort(
            rng.choice(mem, members_per_node, replace=False))
        members.append([used.setdefault(int(i), len(used)) for i in pick])
    pts = np.asarray(core, dtype=np.float64)[list(used)] if used else np.zeros((0, core.shape[1]))
    ks = list(kernel_shape) if kernel_shape else list(F.filter_image(core[0]).shape)

    d = " ".join(f"M{xy[u, 0]:.1f} {xy[u, 1]:.1f}L{xy[v, 0]:.1f} {xy[v, 1]:.1f}"
                 for u, v in graph.edges)
    parts = [f'<svg class="mapper" id="mapper-{layer_index}" data-layer="{layer_index}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             '<g class="viewport">', f'<path class="edges" d="{d}"/>']
    h = node_px / 2
    imgs = R.filters_rgba(means, kernel_shape, alpha=False) if graph.n_nodes else []
    cache = {}  # identical node images share one encoding
    for v in range(graph.n_nodes):
        c = "#%02x%02x%02x" % tuple(int(255 * x) for x in cols[v, :3])
        key = imgs[v].tobytes()
        png = cache.get(key) or cache.setdefault(key, R.png_b64(imgs[v]))
        parts.append(
            f'<g class="node" data-id="{v}" transform="translate({xy[v, 0]:.1f},{xy[v, 1]:.1f})">'
            f'<rect x="{-h - 2}" y="{-h - 2}" width="{node_px + 4}" height="{node_px + 4}" '
            f'fill="{c}"/><image class="mapper-node" x="{-h}" y="{-h}" width="{node_px}" '
            f'height="{node_px}" preserveAspectRatio="none" '
            f'href="data:image/png;base64,{png}"/></g>')
    parts.append("</g></svg>")
    data = {"sizes": sizes.tolist(), "degree": deg.tolist(),
            "cover": graph.cover_index.tolist(), "members": members,
            "shape": ks, "filters": _quantise(pts) if len(pts) else "",
            "n_edges": int(len(graph.edges)), "n_points": graph.n_points,
            "betti": list(graph.betti()) if graph.n_nodes <= 3000 else None,
            "params": graph.params}
    if circular and color is not None and graph.n_nodes:
        data["theta"] = np.round(graph.node_circular_mean(color), 3).tolist()
    return "".join(parts), data


def _legend(circular: bool) -> str:
    """What the Mapper node borders show, with a colour bar."""
    if circular:
        bar = R.png_b64(R.colormap_bar(F.CIRCLE_CMAP))
        return ('<div class="legend" data-color="theta">Border colour: <b>circular mean of θ</b>, '
                "the node's filters' circular coordinate (longest H1 bar, DREiMac) "
                f'<span class="bar">0 {_img(bar, "cyclic colour bar", "cbar")} 2π</span>'
                " (cyclic: 0 = 2π)</div>")
    bar = R.png_b64(R.colormap_bar("viridis"))
    return ('<div class="legend" data-color="lens">Border colour: <b>first lens</b> (PC 1 of the '
            "variance-normalised core), mean over the node's filters "
            f'<span class="bar">low {_img(bar, "colour bar", "cbar")} high</span>'
            " (no circular coordinate for this layer)</div>")


def _theta(layer, n):
    """The layer's circular coordinate as float64 (n,), or None when absent or mismatched."""
    theta = getattr(layer, "theta", None)
    if theta is None:
        return None
    theta = np.asarray(theta, dtype=np.float64).ravel()
    if theta.shape == (n,) and np.all(np.isfinite(theta)):
        return theta
    warnings.warn(f"layer {layer.name!r}: theta has shape {theta.shape} or non-finite values, "
                  f"but the core has {n} points; drawing it without the circular coordinate. "
                  "Re-run the analysis to get a matching theta.", UserWarning, stacklevel=3)
    return None


def _gallery_html(core, theta, ks, name, n=36, ncols=12):
    """Gallery of core filters in loop order as one PNG mosaic (no matplotlib)."""
    order, label = C.gallery_order(core, theta)
    pick = C.gallery_pick(order, n)
    kh = ks[0] if ks else int(round(np.sqrt(core.shape[1])))
    mosaic = R.filter_mosaic(core[pick], ks, ncols=ncols, scale=max(2, round(36 / kh)), pad=3)
    why = ("the longest H1 bar's circle-valued coordinate (DREiMac)" if theta is not None
           else "no circular coordinate for this layer (no significant H1 bar)")
    return ('<div class="gallery"><p class="cap"><b>Core filters ordered by '
            f"{html.escape(label)}</b>: {len(pick)} of {len(core)}, evenly spaced along the "
            f"order, left to right and top to bottom; {why}.</p>"
            + _img(R.png_b64(mosaic), f"filters of {name} ordered by {label}", "fig gallery",
                   f' data-order="{" ".join(map(str, pick.tolist()))}"'
                   f' data-by="{"theta" if theta is not None else "angle"}"')
            + "</div>")


def _layer_section(i, layer, mapper_kwargs, mapper_max_points, timings):
    from ..mapper import mapper_graph

    ks = tuple(layer.kernel_shape) if layer.kernel_shape else None
    core = np.asarray(layer.core, dtype=np.float64)
    theta = _theta(layer, len(core))
    out = [f'<section class="layer" id="layer-{i}"><h2>{i + 1}. {html.escape(layer.name)}'
           f' <small>{html.escape(str(layer.verdict))}</small></h2>']
    facts = {"shape": "x".join(map(str, layer.shape)), "filters": layer.n_filters,
             "dropped": layer.n_dropped, "used": layer.n_used, "core": layer.n_core,
             "k": layer.k, "p": layer.p}
    out.append("<p class='facts'>" + " &middot; ".join(
        f"{k} <b>{html.escape(str(v))}</b>" for k, v in facts.items()) + "</p>")
    out.append(_verdict_html(layer))
    notes = [str(n) for n in layer.notes]
    if notes:
        out.append("<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    if layer.scales is not None and layer.scales.cells:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 3.2))
        fig.subplots_adjust(left=0.12, right=0.95, bottom=0.16, top=0.9)
        F.plot_scales(layer, ax=fig.add_subplot())
        out.append(_img(_fig_b64(fig), f"verdict over the (k, p) grid of {layer.name}", "fig scales"))
    if len(core) < 3:
        out.append("<p>Too few core points for figures or Mapper.</p></section>")
        return "".join(out), None
    from matplotlib.figure import Figure

    t = time.perf_counter()
    # fixed margins instead of constrained layout: the layout pass measured every tick
    # label and thumbnail of every figure and cost more than drawing them
    fig = Figure(figsize=(8, 3))
    a, b = fig.subplots(1, 2, gridspec_kw=dict(left=0.03, right=0.99, bottom=0.15, top=0.97,
                                                wspace=0.2))
    F.plot_barcode(layer.diagrams, ax=a)
    F.plot_diagram(layer.diagrams, ax=b)
    figs = [_img(_fig_b64(fig), f"barcode and diagram of {layer.name}")]
    if theta is not None:
        # projection coloured by theta beside the filters placed on the circle
        fig = Figure(figsize=(8, 4))
        a, b = fig.subplots(1, 2, gridspec_kw=dict(left=0.1, right=0.99, bottom=0.11, top=0.93,
                                                    wspace=0.15))
        F.plot_core_projection(core, ax=a, kernel_shape=ks, color=theta, circular=True)
        C.plot_circle(layer, ax=b, n=24)
        figs.append(_img(_fig_b64(fig), f"core projection and filters on the circle of "
                         f"{layer.name}", "fig circle"))
    else:
        fig = Figure(figsize=(4, 4))
        fig.subplots_adjust(left=0.19, right=0.97, bottom=0.11, top=0.97)
        F.plot_core_projection(core, ax=fig.add_subplot(), kernel_shape=ks)
        figs.append(_img(_fig_b64(fig), f"core projection of {layer.name}"))
    timings["figures"] += time.perf_counter() - t
    t = time.perf_counter()
    gallery = _gallery_html(core, theta, ks, layer.name)
    timings["gallery"] += time.perf_counter() - t

    t = time.perf_counter()
    rng = np.random.default_rng(layer.seed)
    sub = np.sort(rng.choice(len(core), mapper_max_points, replace=False)) \
        if len(core) > mapper_max_points else np.arange(len(core))
    graph = mapper_graph(core[sub], **mapper_kwargs)
    timings["mapper"] += time.perf_counter() - t
    t = time.perf_counter()
    svg, data = mapper_svg(graph, core[sub], layer_index=i, kernel_shape=ks, seed=layer.seed,
                           color=None if theta is None else theta[sub],
                           circular=theta is not None)
    timings["svg"] += time.perf_counter() - t
    bt = data["betti"]
    out.append(
        f'<div class="mapperbox"><div class="mapperhead">Mapper of {len(sub)} core filters: '
        f'{graph.n_nodes} nodes, {len(graph.edges)} edges'
        + (f", nerve Betti (b0, b1) = ({bt[0]}, {bt[1]})" if bt else "")
        + ' &middot; drag to pan, wheel to zoom, click a node</div>'
        + svg + _legend(theta is not None)
        + f'<div class="info" id="info-{i}">Click a node to see its filters.</div></div>')
    out.append('<div class="figs">' + "".join(figs) + "</div>")
    out.append(gallery)
    out.append("</section>")
    return "".join(out), data


def render_report(result, *, mapper_kwargs=None, mapper_max_points=3000, overview=True,
                  title="filtertopo report") -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    timings = {"figures": 0.0, "gallery": 0.0, "mapper": 0.0, "svg": 0.0}
    mk = dict(mapper_kwargs or {})
    sections, datas = [], []
    for i, layer in enumerate(result.layers):
        s, d = _layer_section(i, layer, mk, mapper_max_points, timings)
        sections.append(s)
        datas.append(d)
    ov = ""
    if overview and len(result.layers):
        t = time.perf_counter()
        ncols = max(1, min(4, len(result.layers)))
        nrows = -(-len(result.layers) // ncols)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3.2 * ncols, 3.4 * nrows))
        fig.subplots_adjust(left=0.04, right=0.99, bottom=0.02, top=1 - 0.45 / (3.4 * nrows),
                            wspace=0.22, hspace=0.45 * 3.2 / 3.4)
        ov = ('<section id="overview"><h2>Overview, layers in depth order</h2>'
              + _img(_fig_b64(F.plot_overview(result, fig=fig, ncols=ncols)),
                     "overview of all layers") + "</section>")
        timings["figures"] += time.perf_counter() - t
    toc = " ".join(f'<a href="#layer-{i}">{html.escape(l.name)}</a>'
                   for i, l in enumerate(result.layers))
    cfg = html.escape(json.dumps(result.config, indent=1, default=str))
    payload = json.dumps({"layers": datas, "lut": _lut_hex()}, separators=(",", ":"))
    payload = payload.replace("</", "<\\/")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{toc}</nav>"
        f"<section id='table'><h2>Layers</h2><div class='tablewrap'>{result_table_html(result)}</div>"
        f"<details><summary>configuration</summary><pre>{cfg}</pre></details></section>"
        f"{ov}{''.join(sections)}"
        "<div id='tip'></div>"
        f'<script id="report-data" type="application/json">{payload}</script>'
        f"<script>{_JS}</script>"
        f"<!-- seconds: {', '.join(f'{k} {v:.2f}' for k, v in timings.items())} -->"
        "</body></html>")


def write_report(result, path, *, mapper_kwargs=None, mapper_max_points=3000,
                 overview=True) -> Path:
    """Write one self-contained ``report.html`` for an analysis result.

    The file holds the per-layer table, barcode and persistence diagram, core projection
    with filter thumbnails, a gallery of core filters, an overview of all layers, and an
    interactive Mapper graph per layer whose nodes are drawn as their mean filter (pan,
    zoom, hover, click for member filters and counts). No network request is made when
    it opens. An existing file is replaced (atomically); the CLI refuses without --force.

    Parameters
    ----------
    result : AnalysisResult
    path : str or Path
    mapper_kwargs : dict, optional
        Passed to :func:`filtertopo.mapper.mapper_graph` (default: resolution from the core size; ``n_intervals="paper"`` for the paper's 30).
    mapper_max_points : int, default=3000
        Layers with larger cores are subsampled (seeded by the layer's seed) for Mapper.
    overview : bool, default=True
        Include the whole-model overview figure.

    Returns
    -------
    Path
        The written file.
    """
    from .._io import atomic_write

    path = Path(path)
    if path.is_dir():
        from ..errors import InputError

        raise InputError(f"report path {str(path)!r} is a folder; give a file path, e.g. "
                         f"{str(path / 'report.html')!r}.")
    text = render_report(result, mapper_kwargs=mapper_kwargs,
                         mapper_max_points=mapper_max_points, overview=overview)
    # a unique temporary name in the same folder, fsynced, renamed over the file
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), flag="report")
    return path


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
nav a{margin-right:.8em}
.tablewrap{overflow-x:auto;max-width:100%}
table.layers{border-collapse:collapse;font-size:12px;white-space:nowrap}
table.layers td,table.layers th{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right}
table.layers td.txt{text-align:left}
table.layers th[title]{text-decoration:underline dotted;cursor:help}
table.layers td:first-child,table.layers th:first-child{position:sticky;left:0;background:#fff}
details.verdict{margin:.3em 0 .8em;font-size:13px}
details.verdict summary{cursor:pointer}
details.verdict ul{margin:.3em 0;padding-left:1.4em;color:#333}
.legend{font-size:12px;padding:4px;border-top:1px solid #eee}
img.cbar{height:10px;width:160px;vertical-align:middle;margin:0 4px}
.gallery img.gallery{image-rendering:pixelated}
section.layer{border-top:2px solid #ccc;margin-top:1.5em}
h2 small{color:#666;font-weight:normal}
.facts{color:#444}
.figs{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
img.fig{max-width:100%;border:1px solid #eee}
.mapperbox{border:1px solid #ccc;display:inline-block;max-width:100%}
.mapperhead{font-size:12px;padding:4px;background:#f6f6f6}
svg.mapper{width:900px;max-width:100%;height:560px;cursor:grab;background:#fff;display:block}
svg.mapper .edges{stroke:#999;stroke-width:1;fill:none}
svg.mapper image{image-rendering:pixelated}
svg.mapper .node{cursor:pointer}
svg.mapper .node.sel rect{stroke:#000;stroke-width:2}
.info{font-size:12px;padding:4px;min-height:3em}
.info canvas{width:36px;height:36px;margin:2px;image-rendering:pixelated;border:1px solid #ccc}
#tip{position:fixed;display:none;background:#333;color:#fff;padding:3px 6px;font-size:12px;
border-radius:3px;pointer-events:none}
.cap{font-size:12px;color:#555}
"""

_JS = r"""
(function(){
"use strict";
var D=JSON.parse(document.getElementById("report-data").textContent);
var lut=D.lut.map(function(h){return [parseInt(h.substr(0,2),16),parseInt(h.substr(2,2),16),parseInt(h.substr(4,2),16)];});
var tip=document.getElementById("tip");
function decode(b64){var s=atob(b64),a=new Int8Array(s.length);for(var i=0;i<s.length;i++){a[i]=(s.charCodeAt(i)<<24)>>24;}return a;}
function drawFilter(q,off,shape){
  var h=shape[0],w=shape[1],c=document.createElement("canvas");c.width=w;c.height=h;
  var ctx=c.getContext("2d"),img=ctx.createImageData(w,h);
  for(var k=0;k<h*w;k++){var v=q[off+k],j=Math.max(0,Math.min(255,Math.round((v/127+1)/2*255))),col=lut[j];
    img.data[4*k]=col[0];img.data[4*k+1]=col[1];img.data[4*k+2]=col[2];img.data[4*k+3]=255;}
  ctx.putImageData(img,0,0);return c;}
Array.prototype.forEach.call(document.querySelectorAll("svg.mapper"),function(svg){
  var li=+svg.getAttribute("data-layer"),L=D.layers[li];if(!L)return;
  var q=L.filters?decode(L.filters):new Int8Array(0),n=L.shape[0]*L.shape[1];
  var vb=svg.viewBox.baseVal,drag=null;
  function pt(e){var r=svg.getBoundingClientRect();return [vb.x+(e.clientX-r.left)/r.width*vb.width,vb.y+(e.clientY-r.top)/r.height*vb.height];}
  svg.addEventListener("wheel",function(e){e.preventDefault();var p=pt(e),f=e.deltaY<0?0.8:1.25;
    vb.x=p[0]-(p[0]-vb.x)*f;vb.y=p[1]-(p[1]-vb.y)*f;vb.width*=f;vb.height*=f;},{passive:false});
  svg.addEventListener("mousedown",function(e){drag=[e.clientX,e.clientY,vb.x,vb.y];svg.style.cursor="grabbing";});
  window.addEventListener("mouseup",function(){drag=null;svg.style.cursor="grab";});
  window.addEventListener("mousemove",function(e){if(!drag)return;var r=svg.getBoundingClientRect();
    vb.x=drag[2]-(e.clientX-drag[0])/r.width*vb.width;vb.y=drag[3]-(e.clientY-drag[1])/r.height*vb.height;});
  var info=document.getElementById("info-"+li);
  Array.prototype.forEach.call(svg.querySelectorAll(".node"),function(g){
    var id=+g.getAttribute("data-id");
    g.addEventListener("mouseenter",function(e){tip.style.display="block";
      tip.textContent="node "+id+": "+L.sizes[id]+" filters, degree "+L.degree[id]+(L.theta?", mean \u03b8 "+L.theta[id].toFixed(2):"");});
    g.addEventListener("mousemove",function(e){tip.style.left=(e.clientX+12)+"px";tip.style.top=(e.clientY+12)+"px";});
    g.addEventListener("mouseleave",function(){tip.style.display="none";});
    g.addEventListener("click",function(e){e.stopPropagation();
      Array.prototype.forEach.call(svg.querySelectorAll(".node.sel"),function(s){s.classList.remove("sel");});
      g.classList.add("sel");info.textContent="";
      var t=document.createElement("div");
      t.textContent="node "+id+" (cover element "+L.cover[id]+"): "+L.sizes[id]+" filters, "+L.degree[id]+" neighbours"+(L.theta?", mean \u03b8 "+L.theta[id].toFixed(2):"")+"; "+L.members[id].length+" shown:";
      info.appendChild(t);
      L.members[id].forEach(function(m){info.appendChild(drawFilter(q,m*n,L.shape));});});
  });
});
// report.html#node-<layer>-<id> opens with that node selected (shareable links; tests)
var m=/^#node-(\d+)-(\d+)$/.exec(location.hash);
if(m){var g=document.querySelector("#mapper-"+m[1]+' .node[data-id="'+m[2]+'"]');
  if(g){g.dispatchEvent(new MouseEvent("click",{bubbles:true}));g.scrollIntoView();}}
})();
"""
