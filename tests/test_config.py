"""AnalysisConfig: one validated, hashable, recorded configuration (issue 9 step 1)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from filtertopo import analyze
from filtertopo.cli import main
from filtertopo.config import SCHEMA_VERSION, AnalysisConfig, ShapeRules, VerdictRules
from filtertopo.errors import InputError
from filtertopo.result import TABLE_COLUMNS, AnalysisResult


def test_defaults_frozen_hashable_and_round_trip():
    c = AnalysisConfig()
    assert (c.k, c.p, c.maxdim, c.coeff, c.n_landmarks, c.max_points) == ("auto", 0.3, 1, (2,), 500, 10000)
    with pytest.raises(AttributeError):
        c.p = 0.5
    assert hash(c) == hash(AnalysisConfig()) and c == AnalysisConfig()
    assert AnalysisConfig.from_dict(c.to_dict()) == c
    assert AnalysisConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_key_is_stable_and_changes_with_any_setting():
    c = AnalysisConfig()
    assert c.key() == AnalysisConfig().key() and len(c.key()) == 16
    # the same settings spelled differently have one key
    assert AnalysisConfig(coeff="2,3").key() == AnalysisConfig(coeff=(2, 3)).key()
    assert AnalysisConfig(k=20).key() == AnalysisConfig(k=np.int64(20)).key()
    keys = {c.key(), c.replace(p=0.2).key(), c.replace(seed=1).key(),
            c.replace(verdict=VerdictRules(min_ratio=3.0)).key(), c.replace(shapes={"tol": 0.4}).key()}
    assert len(keys) == 5
    # a key computed in another process is the same (no hash randomisation, no dict order)
    code = "from filtertopo.config import AnalysisConfig; print(AnalysisConfig(p=0.2, coeff=(2, 3)).key())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == AnalysisConfig(p=0.2, coeff=(2, 3)).key()


@pytest.mark.parametrize("kw, words", [
    (dict(p=0), ["p (--p)", "0"]), (dict(k="big"), ["k (--k)", "'big'"]), (dict(coeff=4), ["coeff", "[4]"]),
    (dict(coeff=257), ["127"]), (dict(maxdim=2, n_landmarks=5000), ["--n-landmarks", "GB"]),
    (dict(verdict={"min_ratio": 0.5}), ["min_ratio", "0.5"]), (dict(shapes={"tol": 3}), ["tol", "3"]),
    (dict(circular="yes"), ["circular", "'yes'"]), (dict(seed=-1), ["seed"]),
])
def test_bad_settings_are_named(kw, words):
    with pytest.raises(InputError) as e:
        AnalysisConfig(**kw)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_unknown_settings_are_refused_with_a_suggestion():
    with pytest.raises(InputError, match="'n_landmark' .did you mean 'n_landmarks'"):
        AnalysisConfig.from_dict({"n_landmark": 100})
    with pytest.raises(InputError, match="unknown setting"):
        AnalysisConfig().replace(kk=3)
    with pytest.raises(InputError, match="unknown setting"):
        AnalysisConfig.from_dict({"verdict": {"min_rati": 2}})
    with pytest.raises(InputError, match="'kay'"):
        analyze({"c": np.zeros((4, 4, 3, 3))}, kay=3)


def test_toml_round_trip(tmp_path):
    c = AnalysisConfig(k=40, p=0.25, coeff=(2, 3), max_points=None, verdict=VerdictRules(min_ratio=2.5),
                       shapes=ShapeRules(tol=0.4))
    f = tmp_path / "a.toml"
    f.write_text(c.to_toml())
    assert AnalysisConfig.from_toml(f) == c
    f.write_text("[analysis]\nk = 12\n[analysis.verdict]\nmin_ratio = 3.0\n")
    assert AnalysisConfig.from_toml(f) == AnalysisConfig(k=12, verdict={"min_ratio": 3.0})
    f.write_text("k = [1")
    with pytest.raises(InputError, match="not valid TOML"):
        AnalysisConfig.from_toml(f)


def test_analyze_records_the_config_and_keyword_calls_still_work(tmp_path):
    rng = np.random.default_rng(0)
    kernels = {"conv1": rng.normal(size=(40, 10, 3, 3))}
    a = analyze(kernels, k=20, p=0.25, seed=3, progress=False)
    b = analyze(kernels, AnalysisConfig(k=20, p=0.25, seed=3), progress=False)
    c = analyze(kernels, AnalysisConfig(k=5), k=20, p=0.25, seed=3, progress=False)  # overrides win
    assert a.config == b.config == c.config == AnalysisConfig(k=20, p=0.25, seed=3)
    assert a["conv1"].bars == b["conv1"].bars == c["conv1"].bars
    a.save(tmp_path / "o")
    js = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert js["schema_version"] == SCHEMA_VERSION == 2
    assert js["config"] == a.config.to_dict() and js["config_key"] == a.config.key()
    assert js["inputs"]["layers"] == ["conv1"]
    back = AnalysisResult.load(tmp_path / "o")
    assert back.config == a.config and back.inputs["layers"] == ["conv1"]
    assert list(back.to_frame().columns) == list(TABLE_COLUMNS)


def test_cli_print_config_and_config_file(tmp_path, capsys):
    assert main(["analyze", "x.npz", "--print-config", "--p", "0.2"]) == 0  # no --out, nothing read
    text = capsys.readouterr().out
    f = tmp_path / "c.toml"
    f.write_text(text)
    assert AnalysisConfig.from_toml(f) == AnalysisConfig(p=0.2)
    f.write_text('k = 11\np = 0.4\n[verdict]\nmin_ratio = 2.5\n')
    assert main(["analyze", "x.npz", "--config", str(f), "--p", "0.3", "--print-config"]) == 0
    got = AnalysisConfig.from_toml(_write(tmp_path / "d.toml", capsys.readouterr().out))
    assert got == AnalysisConfig(k=11, p=0.3, verdict={"min_ratio": 2.5})  # the flag given wins
    # patches has its own defaults under the file
    assert main(["patches", "camera", "--print-config"]) == 0
    got = AnalysisConfig.from_toml(_write(tmp_path / "e.toml", capsys.readouterr().out))
    assert (got.k, got.max_points, got.null_draws) == (300, 50000, 3)


def test_cli_config_errors_are_one_line(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text("p = 7\n")
    assert main(["analyze", "x.npz", "--config", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "p (--p)" in err[0] and "c.toml" in err[0]
    assert main(["analyze", "x.npz"]) == 2
    assert "--out is required" in capsys.readouterr().err
    assert main(["analyze", "x.npz", "--config", str(tmp_path / "missing.toml"), "--out", "o"]) == 2


def _write(path, text):
    path.write_text(text)
    return path


def test_results_of_schema_1_still_load(tmp_path):
    # tests/data/schema1: written by filtertopo at commit eb3d734 (before AnalysisConfig), one
    # primary-circle layer with scales and one null draw, one too-few layer
    from pathlib import Path

    res = AnalysisResult.load(Path(__file__).parent / "data" / "schema1")
    conv, tiny = res["conv1"], res["tiny"]
    assert conv.verdict == "primary-circle" and conv.verdict_detail.label == "primary-circle"
    assert conv.bars.n_significant == 1 and conv.bars.h1_top[0] > 0.4 > 10 * conv.bars.h1_top[1]
    assert conv.shapes.frac_primary > 0.9 and conv.null.null_n_draws == 1
    assert conv.scales.majority == "primary-circle" and len(conv.scales.cells) == 9
    assert conv.circular is not None and conv.theta is not None and any("k=auto" in n for n in conv.notes)
    assert tiny.verdict == "too-few" and any("too-few" in n for n in tiny.notes)
    assert res.config == AnalysisConfig(scales=True, null_draws=1)
    assert res.inputs["layers"] == ["conv1", "tiny"] and "sources" in res.inputs
    res.save(tmp_path / "again")  # written back as schema 2, same table
    back = AnalysisResult.load(tmp_path / "again")
    assert back.to_frame().equals(res.to_frame())
    with pytest.deprecated_call():
        assert conv.extras["verdict"]["label"] == "primary-circle"
    with pytest.deprecated_call():
        assert conv.summary["n_significant"] == 1
    with pytest.deprecated_call():
        assert conv.metrics["frac_primary"] == conv.shapes.frac_primary


def test_train_config_key():
    from filtertopo.training import TrainConfig

    a = TrainConfig()
    assert a.key() == TrainConfig().key() and len(a.key()) == 16
    assert a.replace(lr=0.01).key() != a.key() and a.replace(seed=1).key() != a.key()
    assert a.replace(threads=2, device="auto").key() == a.key()  # how it runs is not what is trained
    assert (TrainConfig(model_kwargs={"width": 2, "a": 1}).key()
            == TrainConfig(model_kwargs={"a": 1, "width": 2}).key())
