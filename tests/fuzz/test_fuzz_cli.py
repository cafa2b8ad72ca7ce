"""Property tests over the CLI argument space (issue 12): whatever the values of the flags, the
CLI exits 0 or 2 (argparse's usage error included) with no traceback, and an exit 2 prints an
`error:` line (exactly one for train / track / patches).

- `analyze`: the analysis flags, in this process.
- `train`, `track`, `patches`: _fuzz_cli_impl.py, in a subprocess under RLIMIT_AS (3 GiB) and a
  timeout: training flags, model kwargs and --config files over a tiny data set; corrupt and
  hand-edited index.csv / run.json; images and patch flags.

FILTERTOPO_FUZZ_EXAMPLES=N runs N examples of each; FILTERTOPO_FUZZ_RANDOM=1 draws new ones;
FILTERTOPO_FUZZ_STRICT=1 also fails an error message that spans several lines."""

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from filtertopo.cli import main  # noqa: E402

N = int(os.environ.get("FILTERTOPO_FUZZ_EXAMPLES", "25"))

ints = st.one_of(st.integers(-5, 700), st.sampled_from([0, 1, 2, 3, 2**31, 2**64, -(2**70)]))
value = st.one_of(ints.map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.sampled_from(["auto", "", "nan", "2,3", "2,4", "1e400", "abc", "127", "131"]))
FLAGS = ["--k", "--p", "--coeff", "--seed", "--maxdim", "--n-landmarks", "--max-points"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("fz") / "m.npz"
    np.savez(path, conv1=np.random.default_rng(0).normal(size=(12, 5, 3, 3)))
    return str(path)


@settings(max_examples=N, deadline=None, derandomize=os.environ.get("FILTERTOPO_FUZZ_RANDOM") != "1",
          suppress_health_check=list(HealthCheck))
@given(args=st.dictionaries(st.sampled_from(FLAGS), value, max_size=4))
def test_analyze_flags_never_traceback(ckpt, tmp_path_factory, capsys, args):
    out = tmp_path_factory.mktemp("o")
    argv = ["analyze", ckpt, "--out", str(out), "--force", "--jobs", "1", "--no-circular"]
    for flag, v in args.items():
        argv += [f"{flag}={v}"]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse refuses a value it cannot parse: usage error, exit 2
        rc = e.code
    err = capsys.readouterr().err
    assert rc in (0, 2), (argv, rc, err)
    assert "Traceback" not in err
    if rc == 2:
        assert "error" in err


# --------------------------------------------------------------------------------------------
# train / track / patches (issue 12): Hypothesis in a subprocess under RLIMIT_AS and a timeout,
# see _fuzz_cli_impl.py. FILTERTOPO_FUZZ_EXAMPLES=N sets the examples of each verb too.

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

#: Examples per verb in the default run (each trains or analyses for real: 0.3 to 1.5 s).
VERB_EXAMPLES = {"train": 12, "track": 6, "patches": 15}
VERB_NEEDS = {"train": ["torch"], "track": ["torch"], "patches": ["skimage", "PIL", "tifffile"]}
IMPL = Path(__file__).with_name("_fuzz_cli_impl.py")


@pytest.mark.parametrize("verb", sorted(VERB_EXAMPLES))
def test_fuzz_verb_exits_0_or_2_with_one_error_line(verb):
    for mod in VERB_NEEDS[verb]:
        pytest.importorskip(mod)
    raw = os.environ.get("FILTERTOPO_FUZZ_EXAMPLES", "").strip()
    n = int(raw) if raw else VERB_EXAMPLES[verb]

    def limit():
        import resource

        cap = 3 * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "Agg"}
    try:
        r = subprocess.run([sys.executable, str(IMPL), verb, str(n)], capture_output=True, text=True,
                           timeout=120 + 20 * n, preexec_fn=limit, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"fuzzing {verb} hung past {e.timeout} s:\n{(e.stdout or b'')[-3000:]!r}")
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"fuzzing {verb} failed (rc {r.returncode}):\n{out[-6000:]}"
    assert f"FUZZ {verb}: {n} examples" in out, out[-3000:]


@pytest.mark.parametrize("extra, needle", [
    (["--threads", str(2**31)], "--threads"),          # ValueError traceback in torch.set_num_threads
    (["--threads", "4096"], "--threads"),              # out of memory (exit 1) or libgomp aborting
    (["--seeds", str(2**32)], "--seeds"),              # range(0, 2**32) of seeds: out of memory (exit 1)
    (["--lr", "1e300"], "'lr'"),                       # RuntimeError traceback in the first SGD step
    (["--weight-decay", "1e39"], "'weight_decay'"),
    (["--model", "vgg11", "--model-kwarg", "width=1e300"], "width"),   # torch's 40-line C++ trace
    (["--model-kwarg", "widths=[20000,20000]"], "MAX_MODEL_BYTES")])   # 14 GB of weights
def test_train_inputs_the_fuzz_found_are_one_error_line(tmp_path, capsys, extra, needle):
    pytest.importorskip("torch")
    rc = main(["train", "--out", str(tmp_path / "run"), "--dataset", "digits", "--n-train", "32", "--epochs", "1",
               "--eval-samples", "16", "--threads", "1", "--no-progress", *extra])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("warning:")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in lines[0]
    assert not (tmp_path / "run" / "run.json").exists()
