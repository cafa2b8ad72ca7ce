"""One self-contained ``report.html`` for an :class:`~filtertopo.result.AnalysisResult`.

Everything is inline: styles, a small hand-written script (pan, zoom, hover and click on
the Mapper graphs), figures as base64 PNG, Mapper nodes as base64 PNG ``<image>``
elements, member filters as base64 int8 data drawn client-side on ``<canvas>``. A
Content-Security-Policy ``default-src 'none'`` forbids any network request, so the file
opens offline and cannot phone home (STYLE.md habit 14; KeplerMapper's CDN-loaded d3 is
the counter-example).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from . import figures as F

__all__ = ["write_report", "render_report", "result_table_html", "mapper_svg"]

_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'")


def _png_b64(rgba: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fig_b64(fig, dpi=72) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64, alt, cls="fig"):
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def result_table_html(result) -> str:
    """The per-layer table (``result.to_frame()``) as an HTML ``<table>`` (for notebooks too)."""
    df = result.to_frame()
    return df.to_html(index=False, border=0, classes="layers", na_rep="",
                      float_format=lambda x: f"{x:.4g}")


def _lut_hex() -> list:
    """The filter colour map as 256 hex colours, so the browser draws filters identically."""
    import matplotlib

    cm = matplotlib.colormaps[F.FILTER_CMAP]
    return ["%02x%02x%02x" % tuple(int(round(255 * c)) for c in cm(i / 255)[:3])
            for i in range(256)]


def _quantise(P: np.ndarray) -> str:
    """Filters as int8 scaled to their own max |value| (the drawing scale), base64."""
    m = np.abs(P).max(axis=1, keepdims=True)
    m[m == 0] = 1
    return base64.b64encode((P / m * 127).round().astype(np.int8).tobytes()).decode("ascii")


def mapper_svg(graph, core, *, layer_index, kernel_shape=None, width=900, height=560,
               node_px=18, members_per_node=12, color=None, seed=0):
    """Interactive SVG of a Mapper graph (nodes as mean-filter images) and its JSON data.

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
    cols = F.node_colors(graph, color) if graph.n_nodes else np.zeros((0, 4))
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
    for v in range(graph.n_nodes):
        c = "#%02x%02x%02x" % tuple(int(255 * x) for x in cols[v, :3])
        png = _png_b64(F.filter_rgba(means[v], kernel_shape))
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
    return "".join(parts), data


def _layer_section(i, layer, mapper_kwargs, mapper_max_points, timings):
    from ..mapper import mapper_graph

    ks = tuple(layer.kernel_shape) if layer.kernel_shape else None
    core = np.asarray(layer.core, dtype=np.float64)
    out = [f'<section class="layer" id="layer-{i}"><h2>{i + 1}. {html.escape(layer.name)}'
           f' <small>{html.escape(str(layer.verdict))}</small></h2>']
    facts = {"shape": "x".join(map(str, layer.shape)), "filters": layer.n_filters,
             "dropped": layer.n_dropped, "used": layer.n_used, "core": layer.n_core,
             "k": layer.k, "p": layer.p}
    out.append("<p class='facts'>" + " &middot; ".join(
        f"{k} <b>{html.escape(str(v))}</b>" for k, v in facts.items()) + "</p>")
    if len(core) < 3:
        out.append("<p>Too few core points for figures or Mapper.</p></section>")
        return "".join(out), None
    from matplotlib.figure import Figure

    t = time.perf_counter()
    fig = Figure(figsize=(8, 3), layout="constrained")
    a, b = fig.subplots(1, 2)
    F.plot_barcode(layer.diagrams, ax=a)
    F.plot_diagram(layer.diagrams, ax=b)
    figs = [_img(_fig_b64(fig), f"barcode and diagram of {layer.name}")]
    fig = Figure(figsize=(4, 4), layout="constrained")
    F.plot_core_projection(core, ax=fig.add_subplot(), kernel_shape=ks)
    figs.append(_img(_fig_b64(fig), f"core projection of {layer.name}"))
    P, _ = F.projection(core)
    order = np.argsort(np.arctan2(P[:, 1], P[:, 0]), kind="stable")
    fig = F.plot_gallery(core, order, n=36, ncols=12, kernel_shape=ks)
    figs.append(_img(_fig_b64(fig), f"filters of {layer.name} by angle"))
    timings["figures"] += time.perf_counter() - t

    t = time.perf_counter()
    rng = np.random.default_rng(layer.seed)
    sub = np.sort(rng.choice(len(core), mapper_max_points, replace=False)) \
        if len(core) > mapper_max_points else np.arange(len(core))
    graph = mapper_graph(core[sub], **mapper_kwargs)
    svg, data = mapper_svg(graph, core[sub], layer_index=i, kernel_shape=ks, seed=layer.seed)
    timings["mapper"] += time.perf_counter() - t
    bt = data["betti"]
    out.append(
        f'<div class="mapperbox"><div class="mapperhead">Mapper of {len(sub)} core filters: '
        f'{graph.n_nodes} nodes, {len(graph.edges)} edges'
        + (f", nerve Betti (b0, b1) = ({bt[0]}, {bt[1]})" if bt else "")
        + ' &middot; drag to pan, wheel to zoom, click a node</div>'
        + svg + f'<div class="info" id="info-{i}">Click a node to see its filters.</div></div>')
    out.append('<div class="figs">' + "".join(figs[:2]) + "</div>")
    out.append('<div class="figs">' + figs[2]
               + "<p class='cap'>Core filters ordered by angle in the "
               + ("DCT e1/e2" if core.shape[1] == 9 else "PC1/PC2") + " plane.</p></div>")
    out.append("</section>")
    return "".join(out), data


def render_report(result, *, mapper_kwargs=None, mapper_max_points=3000, overview=True,
                  title="filtertopo report") -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    timings = {"figures": 0.0, "mapper": 0.0}
    mk = dict(mapper_kwargs or {})
    sections, datas = [], []
    for i, layer in enumerate(result.layers):
        s, d = _layer_section(i, layer, mk, mapper_max_points, timings)
        sections.append(s)
        datas.append(d)
    ov = ""
    if overview and len(result.layers):
        ov = ('<section id="overview"><h2>Overview, layers in depth order</h2>'
              + _img(_fig_b64(F.plot_overview(result)), "overview of all layers") + "</section>")
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
        f"<section id='table'><h2>Layers</h2>{result_table_html(result)}"
        f"<details><summary>configuration</summary><pre>{cfg}</pre></details></section>"
        f"{ov}{''.join(sections)}"
        "<div id='tip'></div>"
        f'<script id="report-data" type="application/json">{payload}</script>'
        f"<script>{_JS}</script></body></html>")


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
        Passed to :func:`filtertopo.mapper.mapper_graph` (default: the paper's settings).
    mapper_max_points : int, default=3000
        Layers with larger cores are subsampled (seeded by the layer's seed) for Mapper.
    overview : bool, default=True
        Include the whole-model overview figure.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    text = render_report(result, mapper_kwargs=mapper_kwargs,
                         mapper_max_points=mapper_max_points, overview=overview)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
nav a{margin-right:.8em}
table.layers{border-collapse:collapse;font-size:12px}
table.layers td,table.layers th{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right}
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
      tip.textContent="node "+id+": "+L.sizes[id]+" filters, degree "+L.degree[id];});
    g.addEventListener("mousemove",function(e){tip.style.left=(e.clientX+12)+"px";tip.style.top=(e.clientY+12)+"px";});
    g.addEventListener("mouseleave",function(){tip.style.display="none";});
    g.addEventListener("click",function(e){e.stopPropagation();
      Array.prototype.forEach.call(svg.querySelectorAll(".node.sel"),function(s){s.classList.remove("sel");});
      g.classList.add("sel");info.textContent="";
      var t=document.createElement("div");
      t.textContent="node "+id+" (cover element "+L.cover[id]+"): "+L.sizes[id]+" filters, "+L.degree[id]+" neighbours; "+L.members[id].length+" shown:";
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
