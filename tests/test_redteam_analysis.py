"""REDTEAM-2 classes of the analysis parameters and the demo (P10f/h/i, P11d, P12, T22, S13,
DM04, DM06): one regression test per class, named after it."""

import json
import subprocess
import sys

import numpy as np
import pytest

from filtertopo.cli import main


@pytest.fixture
def ckpt(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "m.npz"
    np.savez(path, conv1=rng.normal(size=(16, 8, 3, 3)))
    return str(path)


def _err(capsys):
    return capsys.readouterr().err


@pytest.mark.parametrize("q", ["131", "251", "257", "65537", "1000003"])
def test_p10f_large_primes_refused_before_ripser(ckpt, tmp_path, capsys, q):
    assert main(["analyze", ckpt, "--out", str(tmp_path / "o"), "--coeff", q]) == 2
    err = _err(capsys)
    assert "--coeff" in err and "127" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_p10h_p10i_huge_primes_answer_at_once(ckpt, tmp_path, capsys):
    for q in ["1" + "0" * 400 + "1", "1000000000000000000000000000057"]:
        assert main(["analyze", ckpt, "--out", str(tmp_path / "o"), "--coeff", q]) == 2
        assert "127" in _err(capsys)


def test_p11d_maxdim_cost_estimated_and_refused(ckpt, tmp_path, capsys, monkeypatch):
    assert main(["analyze", ckpt, "--out", str(tmp_path / "o"), "--maxdim", "3"]) == 2
    err = _err(capsys)
    assert "GB" in err and "--n-landmarks" in err
    monkeypatch.setenv("FILTERTOPO_MAX_PH_BYTES", str(2 * 1024**3))
    assert main(["analyze", ckpt, "--out", str(tmp_path / "o"), "--maxdim", "2", "--n-landmarks", "600"]) == 2
    assert "FILTERTOPO_MAX_PH_BYTES" in _err(capsys)


@pytest.mark.parametrize("verb", ["analyze", "patches"])
def test_p12_negative_seed_one_error_line(ckpt, tmp_path, capsys, verb):
    src = ckpt if verb == "analyze" else "camera"
    assert main([verb, src, "--out", str(tmp_path / "o"), "--seed", "-1"]) == 2
    err = _err(capsys)
    assert "seed" in err and "Traceback" not in err


def test_t22_one_or_two_filters_are_too_few_not_an_error(tmp_path, capsys):
    np.savez(tmp_path / "t.npz", conv1=np.random.default_rng(0).normal(size=(1, 2, 3, 3)))
    assert main(["analyze", str(tmp_path / "t.npz"), "--out", str(tmp_path / "o")]) == 0
    rows = json.loads((tmp_path / "o" / "analysis.json").read_text())["layers"]
    assert rows[0]["verdict"] == "too-few"
    assert "--clamp-k" not in json.dumps(rows[0]["notes"])


def test_s13_patches_k_larger_than_patches_names_only_patches_flags(tmp_path, capsys):
    assert main(["patches", "camera", "--out", str(tmp_path / "o"), "--n-per-image", "200",
                 "--k", "5000", "--null-draws", "0"]) == 0
    out = capsys.readouterr()
    assert "too-few" in out.out
    notes = json.loads((tmp_path / "o" / "analysis.json").read_text())["layers"][0]["notes"]
    assert any("k='auto'" in n for n in notes)
    assert not any("--layers" in n or "--clamp-k" in n for n in notes)


@pytest.mark.parametrize("extra,match", [(["--k", "0"], "--k"), (["--p", "2"], "--p"),
                                         (["--layers", "nosuch"], "matches no conv layer")])
def test_dm06_demo_parameters_checked_before_training(tmp_path, capsys, extra, match):
    out = tmp_path / "d"
    assert main(["demo", "--out", str(out), "--n-nets", "1", *extra]) == 2
    assert match in _err(capsys)
    assert not (out / "runs").exists()   # nothing trained, so the corrected rerun is not refused


def test_dm04_demo_does_not_overwrite_init_without_force(tmp_path, capsys):
    init = tmp_path / "d" / "init"
    init.mkdir(parents=True)
    (init / "analysis.json").write_text("{}")
    assert main(["demo", "--out", str(tmp_path / "d"), "--n-nets", "1"]) == 2
    assert "--force" in _err(capsys)
    assert (init / "analysis.json").read_text() == "{}"
