"""report.html: self-contained (no external URL), one mapper-node image per node, CLI verb."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _report_fixture import small_result  # noqa: E402


@pytest.fixture(scope="module")
def result():
    return small_result()


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


def test_table_and_figures(report, result):
    _, text = report
    assert '<table border="0" class="dataframe layers">' in text or 'class="dataframe layers"' in text
    for layer in result.layers:
        assert layer.name in text
    assert text.count('class="fig"') == 3 * len(result.layers) + 1  # + overview


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
