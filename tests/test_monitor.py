"""TopologyMonitor: analysing a live model every N steps from a user's own loop."""

import csv

import pytest

torch = pytest.importorskip("torch")

from filtertopo.errors import InputError  # noqa: E402
from filtertopo.training import TopologyMonitor, create_model  # noqa: E402


def _steps(model, opt, n):
    for _ in range(n):
        opt.zero_grad()
        model(torch.rand(4, 1, 28, 28)).sum().backward()
        opt.step()


def test_monitor_every_n_steps_writes_csv(tmp_path):
    model = create_model("mnist_net")
    mon = TopologyMonitor(model, layers="conv1", every=2, log_dir=tmp_path, n_landmarks=50,
                          tensorboard=False)
    for _ in range(5):
        mon.step()
    assert [r["step"] for r in mon.history_] == [0, 2, 4]
    rows = list(csv.DictReader(open(tmp_path / "monitor.csv")))
    assert [int(r["step"]) for r in rows] == [0, 2, 4]
    assert {"layer", "h1_1", "verdict", "seconds", "n_core"} <= set(rows[0])
    assert rows[0]["layer"] == "conv1"


def test_monitor_as_optimizer_hook(tmp_path):
    model = create_model("mnist_net")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TopologyMonitor(model, layers="conv1,conv2", every=3, log_dir=tmp_path,
                         n_landmarks=50, max_points=500) as mon:
        handle = mon.attach(opt)
        _steps(model, opt, 4)
        handle.remove()
        _steps(model, opt, 3)
    assert [(r["step"], r["layer"]) for r in mon.history_] == [
        (0, "conv1"), (0, "conv2"), (3, "conv1"), (3, "conv2")]
    assert mon.step_ == 4


def test_monitor_bad_input():
    with pytest.raises(InputError, match="every"):
        TopologyMonitor(create_model("mnist_net"), every=0).step()
    with pytest.raises(InputError, match="no nn.Conv2d"):
        TopologyMonitor(torch.nn.Linear(3, 2), tensorboard=False).step()
    with pytest.raises(InputError, match="matches no conv layer"):
        TopologyMonitor(create_model("mnist_net"), layers="fc1", tensorboard=False).step()


def test_tensorboard_required_but_missing(tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed")
    except Exception:
        pass
    with pytest.raises(InputError, match="pip install tensorboard"):
        TopologyMonitor(create_model("mnist_net"), log_dir=tmp_path, tensorboard=True).step()
