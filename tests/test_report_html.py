"""report.html: self-contained (no external URL), one mapper-node image per node, CLI verb."""

import html
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _report_fixture import small_result  # noqa: E402


_CACHE = {}


def small_result_cached():
    if "r" not in _CACHE:
        _CACHE["r"] = small_result()
    return _CACHE["r"]


@pytest.fixture(scope="module")
def result():
    return small_result_cached()


@pytest.fixture(scope="module")
def report(result, tmp_path_factory):
    from filtertopo.report import write_report

    path = write_report(result, tmp_path_factory.mktemp("rep") / "report.html")
    return path, path.read_text(encoding="utf-8")


def test_self_contained(report):
    path, text = report
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # every src/href is inline data or an in-page anchor
    refs = re.findall(r'''(?:src|href)\s*=\s*["']([^"']*)["']''', text)
    assert refs
    assert all(r.startswith(("data:", "#")) for r in refs), {r[:40] for r in refs
                                                           if not r.startswith(("data:", "#"))}
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text
    assert "<script src" not in text and "<link" not in text


def test_one_node_image_per_mapper_node(report, result):
    from filtertopo.mapper import mapper_graph

    _, text = report
    svgs = re.findall(r'<svg class="mapper".*?</svg>', text, flags=re.S)
    assert len(svgs) == len(result.layers)
    g = mapper_graph(result.layers[0].core)
    assert svgs[0].count('class="mapper-node"') == g.n_nodes > 10


def sections(text):
    return re.findall(r'<section class="layer" id="layer-\d+">.*?</section>', text, flags=re.S)


def test_table_and_figures(report, result):
    _, text = report
    assert 'class="dataframe layers"' in text
    for layer in result.layers:
        assert layer.name in text
    n_theta = sum(layer.theta is not None for layer in result.layers)
    assert 0 < n_theta < len(result.layers)  # the fixture covers both paths
    # per layer: barcode+diagram, projection (+ circle when theta), gallery; + overview
    assert len(re.findall(r'<img class="fig[ "]', text)) == 3 * len(result.layers) + 1
    assert text.count('class="fig circle"') == n_theta
    for sec, layer in zip(sections(text), result.layers):
        assert ('class="fig circle"' in sec) == (layer.theta is not None)


def test_gallery_in_theta_order(report, result):
    from filtertopo.report.circle import gallery_order, gallery_pick

    _, text = report
    for sec, layer in zip(sections(text), result.layers):
        m = re.search(r'<img class="fig gallery"[^>]*data-order="([\d ]*)" data-by="(\w+)"', sec)
        shown = np.array(m.group(1).split(), dtype=int)
        if layer.theta is not None:
            assert m.group(2) == "theta" and "ordered by circular coordinate θ" in sec
            np.testing.assert_array_equal(shown, gallery_pick(np.argsort(layer.theta, kind="stable"), 36))
            assert np.all(np.diff(layer.theta[shown]) >= 0)
        else:
            assert m.group(2) == "angle" and "ordered by angle in the" in sec
            np.testing.assert_array_equal(shown, gallery_pick(gallery_order(layer.core)[0], 36))


def test_verdict_with_reasons(report, result):
    _, text = report
    for sec, layer in zip(sections(text), result.layers):
        m = re.search(r'<details class="verdict" data-verdict="([\w-]+)"><summary>(.*?)</summary>'
                      r"<ul>(.*?)</ul></details>", sec, flags=re.S)
        assert m.group(1) == layer.verdict and layer.verdict in m.group(2)
        reasons = layer.reasons
        assert reasons and m.group(3).count("<li>") == len(reasons)
        assert html.escape(reasons[0]) in m.group(3)


def test_mapper_border_legend_and_colours(report, result):
    import matplotlib

    from filtertopo.mapper import mapper_graph

    _, text = report
    for i, (sec, layer) in enumerate(zip(sections(text), result.layers)):
        legend = re.search(r'<div class="legend" data-color="(\w+)">', sec).group(1)
        assert legend == ("theta" if layer.theta is not None else "lens")
    # the first layer has theta: each border is the circular mean of its node's theta
    layer = result.layers[0]
    g = mapper_graph(layer.core)
    want = matplotlib.colormaps["twilight"](g.node_circular_mean(layer.theta.astype(float)) / (2 * np.pi))
    fills = re.findall(r'<g class="node" data-id="(\d+)"[^>]*><rect [^>]*fill="#(\w{6})"', sections(text)[0])
    assert len(fills) == g.n_nodes
    for v, hexcol in fills:
        got = np.array([int(hexcol[k:k + 2], 16) for k in (0, 2, 4)])
        assert np.abs(got - 255 * want[int(v), :3]).max() <= 1


def test_table_rounds_metrics():
    from dataclasses import replace

    from filtertopo.report import result_table_html
    from filtertopo.result import AnalysisResult

    base = small_result_cached()
    from filtertopo.result import NullMargin, ShapeFractions

    null = NullMargin(null_h1_mean=0.0812345, null_h1_max=0.1, h1_margin_z=12.34567,
                      h1_ratio_null_max=float("inf"), null_n_draws=3.0)
    layers = tuple(replace(l, shapes=replace(l.shapes or ShapeFractions(), frac_primary=0.123456,
                                             median_dist_klein=float("nan")), null=null)
                   for l in base.layers)
    table = result_table_html(AnalysisResult(layers, base.config))
    head = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", table)
    assert head[0] == "layer" and {"frac_primary", "h1_margin_z", "null_h1_max"} <= set(head)
    row = re.findall(r"<td[^>]*>(.*?)</td>", table)[:len(head)]
    cell = dict(zip(head, row))
    assert cell["frac_primary"] == "0.123" and cell["null_h1_mean"] == "0.081"
    assert cell["h1_margin_z"] == "12.35" and cell["h1_ratio_null_max"] == "∞"
    assert cell["null_n_draws"] == "3" and cell["median_dist_klein"] == ""
    assert cell["n_core"] == str(layers[0].n_core) and cell["verdict"] == layers[0].verdict
    assert cell["p"] == "0.300"
    assert 'title="(observed - null mean) / null std"' in table


def test_cli_report_refuses_overwrite(result, tmp_path, capsys):
    from filtertopo.cli import main

    result.save(tmp_path / "out")
    assert main(["report", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000
    assert main(["report", str(tmp_path / "out")]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "out"), "--force", "--out",
                 str(tmp_path / "r2.html")]) == 0
    assert (tmp_path / "r2.html").exists()


def test_result_table_html(result):
    from filtertopo.report import result_table_html

    html = result_table_html(result)
    assert html.startswith("<table") and result.layers[0].name in html


def test_stale_theta_warns_and_falls_back(result):
    from dataclasses import replace

    from filtertopo.report.html import render_report
    from filtertopo.result import AnalysisResult

    layer = result.layers[0]
    assert layer.theta is not None
    bad = AnalysisResult((replace(layer, theta=layer.theta[:-2]),), result.config)
    with pytest.warns(UserWarning, match="theta has shape"):
        text = render_report(bad, overview=True)
    assert 'data-color="lens"' in text and 'data-by="angle"' in text
    assert 'class="fig circle"' not in text
