"""Real pretrained models (weights shipped inside PyPI wheels, see tests/data/README.md),
analysed end to end with the defaults. The verdicts are what the tool finds, asserted only
where they follow from the shapes: the run succeeds on every layer, small first layers are
analysed (never refused), and k is chosen from each layer's size."""

import json
from pathlib import Path

import pytest

from filtertopo.cli import main
from filtertopo.pipeline import MIN_FILTERS, auto_k

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["facenet_pnet", "facenet_rnet", "facenet_onet", "nudenet_320n_first8"])
def test_real_model_analysed_with_defaults(name, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["analyze", str(DATA / f"{name}.npz"), "--out", str(out), "--jobs", "1"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" not in err
    layers = json.loads((out / "analysis.json").read_text())["layers"]
    assert layers
    for lay in layers:
        if lay["n_used"] < MIN_FILTERS:
            assert lay["verdict"] == "too-few"
        else:
            assert lay["k"] == auto_k(lay["n_used"]) and lay["verdict"] != "too-few"


def test_pooled_mtcnn_first_layers_are_the_primary_circle(tmp_path):
    # 210 first-layer filters of three face detectors (MTCNN p/r/o-net): one long bar, the core
    # near the primary circle (found: h1 0.39 vs 0.02, frac_primary 0.97, 8 of 9 scales agree)
    out = tmp_path / "o"
    paths = [str(DATA / f"facenet_{m}.npz") for m in ("pnet", "rnet", "onet")]
    assert main(["analyze", *paths, "--layers", "conv1", "--out", str(out), "--scales", "--jobs", "1"]) == 0
    lay = json.loads((out / "analysis.json").read_text())["layers"][0]
    assert lay["n_filters"] == 210 and lay["verdict"] == "primary-circle"
    assert lay["scales"]["support"] >= 0.5
