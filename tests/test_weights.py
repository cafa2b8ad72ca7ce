"""Loading kernels from every supported format, and refusing unsafe or broken files."""

import json
import os

import numpy as np
import pytest

from filtertopo.errors import InputError
from filtertopo.weights import as_bundle, kernels_from_module, load_kernels, save_kernels

torch = pytest.importorskip("torch")


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, groups=4), torch.nn.Conv2d(8, 4, 1),
        torch.nn.Flatten(), torch.nn.Linear(4, 2),
    )


def _check(bundle, net):
    sd = net.state_dict()
    assert list(bundle.kernels) == ["0", "3"]
    np.testing.assert_allclose(bundle.kernels["0"], sd["0.weight"].numpy())
    assert bundle.kernels["3"].shape == (8, 2, 3, 3)  # grouped conv: (out, in-within-group)
    reasons = {s.name: s.reason for s in bundle.skipped}
    assert "1x1" in reasons["4.weight"]
    assert "linear" in reasons["6.weight"]
    assert "1-D" in reasons["1.running_mean"]


def test_module_and_state_dict_nestings(tmp_path):
    net = _net()
    _check(kernels_from_module(net), net)
    for i, obj in enumerate([net.state_dict(), {"state_dict": net.state_dict(), "epoch": 3},
                             {"model": net.state_dict()},
                             {"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                              "optimizer_states": [], "lr_schedulers": []}]):
        path = tmp_path / f"ckpt{i}.pt"
        torch.save(obj, path)
        _check(load_kernels(path), net)


def test_npz_round_trip_with_metadata(tmp_path):
    w = np.random.default_rng(0).normal(size=(4, 3, 5, 5)).astype(np.float32)
    path = save_kernels(tmp_path / "k.npz", {"conv1": w}, {"step": 7})
    b = load_kernels(path)
    np.testing.assert_array_equal(b.kernels["conv1"], w)
    assert b.metadata == {"step": 7} and b.format == "npz"
    with pytest.raises(InputError, match="already exists"):
        save_kernels(path, {"conv1": w})


def test_safetensors(tmp_path):
    from safetensors.numpy import save_file

    w = np.ones((2, 2, 3, 3), np.float32) * np.arange(9).reshape(3, 3)
    save_file({"features.0.weight": w, "features.0.bias": np.zeros(2, np.float32)}, tmp_path / "m.safetensors")
    b = load_kernels(tmp_path / "m.safetensors")
    assert list(b.kernels) == ["features.0"] and b.format == "safetensors"


def test_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1).normal(size=(6, 1, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "conv1.weight"], ["y"], name="conv1")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 6, 6])],
        [numpy_helper.from_array(w, "conv1.weight"), numpy_helper.from_array(np.ones((3, 3), np.float32), "other")],
    )
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    b = load_kernels(tmp_path / "m.onnx")
    np.testing.assert_allclose(b.kernels["conv1"], w)
    assert any(s.name == "other" for s in b.skipped)


def test_keras_h5_hwio_to_oihw(tmp_path):
    h5py = pytest.importorskip("h5py")
    w = np.random.default_rng(2).normal(size=(3, 3, 2, 5)).astype(np.float32)  # HWIO
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["model_weights/conv2d/conv2d/kernel:0"] = w
        f["model_weights/conv2d/conv2d/bias:0"] = np.zeros(5, np.float32)
        f["model_weights/dense/dense/kernel:0"] = np.zeros((4, 2), np.float32)
    b = load_kernels(tmp_path / "m.h5")
    (name, k), = b.kernels.items()
    assert k.shape == (5, 2, 3, 3)
    np.testing.assert_allclose(k[4, 1], w[:, :, 1, 4])


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_malicious_pickle_is_not_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"conv.weight": torch.zeros(2, 2, 3, 3), "x": _Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="allow-pickle"):
        load_kernels(tmp_path / "evil.pt")
    assert not marker.exists()


def test_allow_pickle_loads_full_module_with_warning(tmp_path):
    net = _net()
    torch.save(net, tmp_path / "full.pt")
    with pytest.raises(InputError, match="allow-pickle"):
        load_kernels(tmp_path / "full.pt")
    with pytest.warns(UserWarning, match="weights_only=False"):
        _check(load_kernels(tmp_path / "full.pt", allow_pickle=True), net)


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"hello world, not a checkpoint", "unknown checkpoint format"),
])
def test_garbage_files(tmp_path, content, match):
    p = tmp_path / "x.dat"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_kernels(p)


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".safetensors"])
def test_truncated_files(tmp_path, suffix):
    w = np.ones((2, 2, 3, 3), np.float32)
    p = tmp_path / f"m{suffix}"
    if suffix == ".npz":
        save_kernels(p, {"c": w})
    elif suffix == ".pt":
        torch.save({"c.weight": torch.from_numpy(w)}, p)
    else:
        from safetensors.numpy import save_file
        save_file({"c.weight": w}, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt|cannot be read"):
        load_kernels(p)


def test_missing_and_bad_source(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_kernels(tmp_path / "nope.pt")
    with pytest.raises(InputError, match="source must be"):
        as_bundle(42)


def test_keras3_zip_with_depthwise(tmp_path):
    h5py = pytest.importorskip("h5py")
    import io
    import zipfile

    conv = np.random.default_rng(3).normal(size=(3, 3, 2, 4)).astype(np.float32)   # HWIO
    dw = np.random.default_rng(4).normal(size=(5, 5, 4, 2)).astype(np.float32)     # HW, in, multiplier
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f["layers/conv2d/vars/0"] = conv
        f["layers/conv2d/vars/1"] = np.zeros(4, np.float32)
        f["layers/depthwise_conv2d/vars/0"] = dw
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", buf.getvalue())
    b = load_kernels(tmp_path / "m.keras")
    assert b.format == "keras"
    assert b.kernels["layers/conv2d"].shape == (4, 2, 3, 3)
    np.testing.assert_allclose(b.kernels["layers/conv2d"][1, 0], conv[:, :, 0, 1])
    k = b.kernels["layers/depthwise_conv2d"]
    assert k.shape == (8, 1, 5, 5)  # one slice per (channel, multiplier)
    np.testing.assert_allclose(k[3, 0], dw[:, :, 1, 1])  # channel 1, multiplier 1 -> out 1*2+1
