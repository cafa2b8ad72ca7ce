"""Property test over the CLI argument space of `filtertopo analyze` (issue 12): whatever the
values of the analysis flags, the CLI exits 0 or 2 (argparse's usage error included) with no
traceback, and an exit 2 prints an `error:` line. FILTERTOPO_FUZZ_EXAMPLES=N runs longer."""

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
