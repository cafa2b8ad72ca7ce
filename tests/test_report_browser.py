"""report.html rendered in headless Debian chromium, as a person would open it.

Checks: no console message at all (uncaught exceptions, CSP violations, failed loads;
the report itself logs nothing), no network request initiated by the page (chromium's NetLog), a screenshot that is
not blank, and one ``mapper-node`` image per Mapper node of the first layer in the DOM.
Skipped when chromium is absent, except under ``CI=true`` where it must run.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _report_fixture import small_result  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError("CI=true but chromium is not installed: apt-get install -y chromium")
    pytest.skip("chromium not installed (apt-get install chromium)", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]


def chromium(url, *extra, tmp):
    """Run chromium once on ``url``; return (stdout, console lines, page network URLs)."""
    net = Path(tmp) / f"net{len(list(Path(tmp).glob('net*')))}.json"
    with tempfile.TemporaryDirectory() as profile:
        p = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                            f"--log-net-log={net}", *extra, url],
                           capture_output=True, text=True, timeout=120)
    console = [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln]
    return p.stdout, console, page_requests(net)


def page_requests(netlog):
    """URLs of requests started by a page (chromium's own update/account pings have
    initiator 'not an origin' and are ignored)."""
    if not netlog.exists():
        return []
    d = json.loads(netlog.read_text())
    start = d["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in d["events"] if e["type"] == start
            and "url" in e.get("params", {})
            and e["params"].get("initiator") != "not an origin"]


def console_errors(lines):
    # chromium's stderr log does not carry the console level, and the report logs nothing:
    # any console message (console.*, uncaught exception, CSP violation) counts as an error
    return list(lines)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from filtertopo.report import write_report

    result = small_result()
    path = write_report(result, tmp_path_factory.mktemp("rep") / "report.html")
    return result, path


def test_detectors_work(tmp_path):
    """Positive control: a page with a script error and an external image is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><img src="http://127.0.0.1:9/x.png">'
                   '<script>console.error("boom"); undefinedFn();</script>')
    _, console, net = chromium(bad.as_uri(), "--dump-dom", tmp=tmp_path)
    assert len(console_errors(console)) >= 2
    assert net == ["http://127.0.0.1:9/x.png"]


def test_loads_offline_without_errors_and_nodes_in_dom(report, tmp_path):
    from filtertopo.mapper import mapper_graph

    result, path = report
    dom, console, net = chromium(path.as_uri(), "--dump-dom", tmp=tmp_path)
    assert console_errors(console) == []
    assert net == []
    svg = re.search(r'<svg class="mapper" id="mapper-0".*?</svg>', dom, flags=re.S).group(0)
    n_nodes = mapper_graph(result.layers[0].core).n_nodes
    assert len(re.findall(r'<image class="mapper-node"', svg)) == n_nodes > 10


def test_click_node_shows_its_filters(report, tmp_path):
    result, path = report
    dom, console, net = chromium(path.as_uri() + "#node-0-3", "--dump-dom", tmp=tmp_path)
    assert console_errors(console) == [] and net == []
    info = re.search(r'<div class="info" id="info-0">(.*?)</div></div>', dom, flags=re.S).group(1)
    assert "node 3" in info
    assert ("mean θ" in info) == (result.layers[0].theta is not None)
    assert info.count("<canvas") >= 1
    assert 'class="node sel" data-id="3"' in dom


def test_screenshot_not_blank(report, tmp_path):
    from PIL import Image

    _, path = report
    shot = tmp_path / "shot.png"
    _, console, net = chromium(path.as_uri(), f"--screenshot={shot}", "--window-size=1200,1600",
                               tmp=tmp_path)
    assert console_errors(console) == [] and net == []
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert img.std() > 10  # not a blank page
    nonwhite = (img.sum(axis=2) < 700).mean()
    assert nonwhite > 0.02
