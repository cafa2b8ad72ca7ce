"""Training loop, configuration, data sets and snapshots (tiny runs, a few seconds each)."""

import csv
import gzip
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from filtertopo import load_kernels  # noqa: E402
from filtertopo.cli import main  # noqa: E402
from filtertopo.errors import InputError  # noqa: E402
from filtertopo.training import (ImageData, TrainConfig, Transform, image_folder,  # noqa: E402
                                 load_dataset, read_index, train)

TINY = dict(dataset="digits", n_train=64, batch_size=16, epochs=1, eval_samples=32, threads=1)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    state = torch.get_rng_state()
    a = train(dict(TINY, seed=3, snapshot_every=2), root / "a")
    b = train(dict(TINY, seed=3, snapshot_every=2), root / "b")
    c = train(dict(TINY, seed=4), root / "c")
    assert torch.equal(state, torch.get_rng_state()), "train() changed the global RNG"
    return a, b, c


def test_same_seed_same_weights(tiny_runs):
    a, b, c = (load_kernels(r / "kernels.npz").kernels for r in tiny_runs)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["conv1"], c["conv1"])


def test_run_folder_contents(tiny_runs):
    a = tiny_runs[0]
    for f in ("config.json", "run.json", "metrics.csv", "kernels.npz", "model.pt"):
        assert (a / f).is_file(), f
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["config"]["seed"] == 3 and cfg["input_shape"] == [1, 28, 28]
    assert json.loads((a / "run.json").read_text())["status"] == "complete"
    rows = list(csv.DictReader(open(a / "metrics.csv")))
    assert len(rows) == 1 and rows[0]["step"] == "4"
    state = torch.load(a / "model.pt", weights_only=True)
    np.testing.assert_array_equal(state["conv1.weight"].numpy(),
                                  load_kernels(a / "kernels.npz").kernels["conv1"])


def test_snapshots_written_and_indexed(tiny_runs):
    a = tiny_runs[0]
    snaps, problems = read_index(a)
    assert problems == []
    assert [s.step for s in snaps] == [0, 2, 4]  # step 0, every 2 batches; 64/16 = 4 steps
    assert snaps[-1].epoch == 1.0 and 0 <= snaps[-1].test_acc <= 1
    first = load_kernels(snaps[0].path)
    assert set(first.kernels) == {"conv1", "conv2"}
    assert first.kernels["conv1"].shape == (64, 1, 3, 3)
    last = load_kernels(snaps[-1].path).kernels["conv1"]
    np.testing.assert_array_equal(last, load_kernels(a / "kernels.npz").kernels["conv1"])
    assert not np.array_equal(first.kernels["conv1"], last)
    assert not list((a / "snapshots").glob("*.tmp*"))


@pytest.mark.parametrize("values, match", [
    ({"learning_rate": 0.1}, "unknown config key 'learning_rate'; allowed keys: .*'lr'"),
    ({"lr": "fast"}, "'lr' must be float"),
    ({"epochs": 2.5}, "'epochs' must be int"),
    ({"epochs": True}, "'epochs' must be int"),
    ({"optimizer": "rmsprop"}, "'optimizer' must be one of \\['sgd', 'adam', 'adamw'\\]"),
    ({"model": "resnet"}, "'model' must be one of .*mnist_net"),
    ({"dataset": "imagenet"}, "'dataset' must be one of .*mnist_subset"),
    ({"lr": 0}, "'lr' must be > 0"),
    ({"batch_size": 0}, "'batch_size' must be >= 1"),
    ({"model_kwargs": [1]}, "'model_kwargs' must be dict"),
])
def test_config_validation(values, match):
    with pytest.raises(InputError, match=match):
        TrainConfig.from_dict(values)


def test_config_round_trip():
    cfg = TrainConfig(lr=0.01, epochs=2, model_kwargs={"hidden": 32})
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_refuses_non_empty_run_dir(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        train(TINY, tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_offline_sets_shuffled_split():
    train_set, test_set = load_dataset("mnist_subset")
    assert (len(train_set), len(test_set)) == (4000, 1000)
    assert train_set.images.dtype == torch.uint8 and train_set.shape == (1, 28, 28)
    assert len(set(test_set.labels[:50].tolist())) > 5  # not sorted by label
    d_train, _ = load_dataset("digits")
    assert d_train.shape == (1, 28, 28)


def test_transform_between_sets():
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    y = Transform(channels=1, size=28)(x)
    assert y.shape == (2, 1, 28, 28) and y.dtype == torch.float32 and 0 <= y.min() <= y.max() <= 1
    assert Transform(channels=3, size=32)(y).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("name, files", [
    ("mnist", "train-images-idx3-ubyte"), ("cifar10", "data_batch_1"),
    ("svhn", "train_32x32.mat")])
def test_missing_files_named(tmp_path, name, files):
    with pytest.raises(InputError, match=files):
        load_dataset(name, root=tmp_path)
    with pytest.raises(InputError, match="root"):
        load_dataset(name)


def _idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_idx_reader(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 6), ("t10k", 4)):
        _idx(raw / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    tr, te = load_dataset("mnist", root=tmp_path)
    assert tr.images.shape == (6, 1, 28, 28) and len(te) == 4
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (9).to_bytes(4, "big") + b"\x01")
    with pytest.raises(InputError, match="truncated"):
        load_dataset("mnist", root=tmp_path)


def test_image_folder(tmp_path):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.fromarray(np.full((40, 30, 3), 60 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    data, classes = image_folder(tmp_path, channels=1, size=28)
    assert classes == ["cat", "dog"] and data.images.shape == (4, 1, 28, 28)
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert isinstance(data, ImageData)
    with pytest.raises(InputError, match="does not exist"):
        image_folder(tmp_path / "nope")


def test_cli_train_and_errors(tmp_path, capsys):
    args = ["train", "--dataset", "digits", "--n-train", "32", "--batch-size", "16",
            "--epochs", "1", "--eval-samples", "16", "--seeds", "2", "--out", str(tmp_path / "r"),
            "--no-progress"]
    assert main(args) == 0
    assert (tmp_path / "r" / "seed_001" / "kernels.npz").is_file()
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epoch": 3}))
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "s")]) == 2
    assert "unknown config key 'epoch'" in capsys.readouterr().err


def test_parallel_seeds_identical(tmp_path, tiny_runs):
    from filtertopo.training import train_seeds

    runs = train_seeds(dict(TINY, snapshot_every=2), tmp_path, [3, 4], workers=2)
    assert [r.name for r in runs] == ["seed_003", "seed_004"]
    a = load_kernels(tiny_runs[0] / "kernels.npz").kernels
    b = load_kernels(runs[0] / "kernels.npz").kernels
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_cli_demo_smoke(tmp_path, capsys):
    """The main job's wiring (untrained nets, so it is quick); the full demo is in docs."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-nets", "2", "--epochs", "0", "--workers", "1",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "conv1" in text and "verdict" in text and "initialisation" in text
    for f in ("layers.csv", "analysis.json", "points.npz", "init/layers.csv"):
        assert (out / f).is_file()
    assert (out / "runs" / "seed_001" / "kernels.npz").is_file()
    assert main(["demo", "--out", str(out), "--n-nets", "1", "--epochs", "0"]) == 2
    assert "already holds results" in capsys.readouterr().err


def test_device_validation_and_auto(tmp_path):
    import torch

    from filtertopo.training.loop import resolve_device

    with pytest.raises(InputError, match="'device' must be"):
        TrainConfig(device="gpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda")
    run = train(TrainConfig(dataset="digits", epochs=1, n_train=64, eval_samples=32, device="auto",
                            threads=1), tmp_path / "r", progress=False)
    assert json.loads((run / "run.json").read_text())["device"] in ("cpu", "cuda:0")
