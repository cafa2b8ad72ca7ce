"""One contract test over every registered architecture (timm's tests/test_models.py habit)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from filtertopo import analyze, load_kernels, save_kernels  # noqa: E402
from filtertopo.errors import InputError  # noqa: E402
from filtertopo.training import MODELS, conv_kernels, create_model, register_model  # noqa: E402
from filtertopo.training.models import get_spec  # noqa: E402
from filtertopo.weights import kernels_from_module  # noqa: E402

# Keep the big VGGs small in the contract test; the layer structure is what is checked.
SMALL = {"vgg11": {"width": 0.125}, "vgg13": {"width": 0.125}, "vgg16": {"width": 0.125}}
N_CONV = {"mnist_net": 2, "cifar_net": 2, "vgg11": 8, "vgg13": 10, "vgg16": 13}


def check_contract(name, tmp_path, **kwargs):
    spec = get_spec(name)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model(name, **kwargs)
        x = torch.rand(3, *spec.input_shape)
        y = torch.randint(0, spec.num_classes, (3,))
    out = model(x)
    assert tuple(out.shape) == (3, spec.num_classes)
    loss = torch.nn.functional.cross_entropy(out, y)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    kernels = conv_kernels(model)
    assert kernels, "no conv layer exported"
    for k, w in kernels.items():
        assert w.dtype == np.float32 and w.ndim == 4
    # The names the analysis gives a live module agree with the exported names.
    assert list(kernels_from_module(model).kernels) == [k for k, w in kernels.items()
                                                         if w.shape[2] * w.shape[3] >= 2]
    path = save_kernels(tmp_path / f"{name}.npz", kernels)
    back = load_kernels(path)
    assert list(back.kernels) == list(kernels)
    for k in kernels:
        np.testing.assert_array_equal(back.kernels[k], kernels[k])
    res = analyze(path, layers="1", k=5, p=1.0, n_landmarks=50, clamp_k=True, progress=False)
    assert res.layers[0].name == list(kernels)[0]
    assert res.layers[0].n_filters == kernels[list(kernels)[0]].shape[0] * \
        kernels[list(kernels)[0]].shape[1]
    return kernels


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_contract(name, tmp_path):
    kernels = check_contract(name, tmp_path, **SMALL.get(name, {}))
    if name in N_CONV:
        assert list(kernels) == [f"conv{i}" for i in range(1, N_CONV[name] + 1)]


def test_paper_net_shapes():
    k = conv_kernels(create_model("mnist_net"))
    assert k["conv1"].shape == (64, 1, 3, 3) and k["conv2"].shape == (32, 64, 3, 3)
    assert conv_kernels(create_model("cifar_net"))["conv1"].shape == (64, 3, 3, 3)


@pytest.mark.parametrize("name", ["vgg11", "vgg16"])
def test_vgg_small_grayscale_input(name):
    net = create_model(name, width=0.0625, in_channels=1, input_size=28)
    assert tuple(net(torch.zeros(2, 1, 28, 28)).shape) == (2, 10)


def test_register_user_model(tmp_path):
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 5, padding=2),
                                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1))
            self.head = torch.nn.Linear(8, 10)

        def forward(self, x):
            return self.head(self.features(x).flatten(1))

    register_model("tiny_user_net", Tiny, input_shape=(1, 28, 28))
    try:
        kernels = check_contract("tiny_user_net", tmp_path)
        assert list(kernels) == ["features.0"]
        with pytest.raises(InputError, match="already registered"):
            register_model("tiny_user_net", Tiny)
    finally:
        MODELS.pop("tiny_user_net", None)


def test_unknown_model_names_choices():
    with pytest.raises(InputError, match="mnist_net"):
        create_model("resnet9000")
    with pytest.raises(InputError, match="not accepted"):
        create_model("mnist_net", depth=3)
