"""Shifted test sets built offline (filtertopo.study.shifted): shapes, ranges, determinism, no
network, the held-out split, and accuracies of a trained and an untrained net."""

import socket

import numpy as np
import pytest

from filtertopo.errors import InputError
from filtertopo.study.shifted import (NOISE_STD, SHIFTED, evaluate_shifted, generalisation_gap, load_shifted,
                                      mnist_subset_test)


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails (tests/conftest.py has no such fixture; test_patches.py has its own)."""
    def refuse(*a, **k):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", list(SHIFTED))
def test_every_shifted_set_meets_the_contract(name, no_network):
    images, labels = load_shifted(name, n=64, seed=3)
    assert images.shape == (64, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (64,) and labels.dtype == np.int64
    assert images.min() >= 0 and images.max() <= 1 and np.isfinite(images).all()
    assert set(np.unique(labels)) <= set(range(10)) and len(np.unique(labels)) >= 5
    assert images.std() > 0.05  # not blank
    again = load_shifted(name, n=64, seed=3)
    np.testing.assert_array_equal(images, again.images)
    np.testing.assert_array_equal(labels, again.labels)
    images[0, 0, 0, 0] = 0.5  # the caller's copy: the cached set is not changed
    assert load_shifted(name, n=64, seed=3).images[0, 0, 0, 0] == again.images[0, 0, 0, 0]
    other = load_shifted(name, n=64, seed=4)
    assert not np.array_equal(other.images, again.images)  # another seed, another subset
    assert SHIFTED[name].name == name and SHIFTED[name].description


def test_full_sets_have_every_source_digit():
    assert load_shifted("inverted").images.shape == (1000, 1, 28, 28)
    x, y = load_shifted("digits28")
    assert x.shape == (1797, 1, 28, 28) and np.bincount(y).min() >= 170


def test_transformations_do_what_they_say():
    clean, labels = mnist_subset_test(0)
    inv, ylab = load_shifted("inverted")
    np.testing.assert_array_equal(ylab, labels)
    np.testing.assert_allclose(inv[:, 0], 1 - clean, atol=1e-6)
    noisy, _ = load_shifted("noisy")
    # on the black background the noise is clipped at 0: mean of max(0, N(0, s^2)) = s / sqrt(2 pi)
    bg = noisy[:, 0][clean == 0]
    assert abs(bg.mean() - NOISE_STD / np.sqrt(2 * np.pi)) < 0.005
    assert abs((bg > 0).mean() - 0.5) < 0.01
    rot, _ = load_shifted("rotated")
    assert np.abs(rot[:, 0] - clean).mean() > 0.05
    # rotation keeps the ink (up to interpolation): the total intensity barely changes
    np.testing.assert_allclose(rot[:, 0].sum((1, 2)), clean.sum((1, 2)), rtol=0.1)
    tex, _ = load_shifted("textured")
    assert (tex[:, 0][clean < 0.01]).mean() > 0.1  # the background is a photograph, not black
    d28, _ = load_shifted("digits28")
    from scipy import ndimage

    com = np.array([ndimage.center_of_mass(a) for a in d28[:200, 0]])
    np.testing.assert_allclose(com.mean(0), [14, 14], atol=0.3)  # centred like MNIST

    def placement(a):  # how often ink reaches the outer 3 pixels, and the mean height of the ink
        ink = a > 0.05
        edge = ink[:, :3].any((1, 2)) | ink[:, -3:].any((1, 2)) | ink[:, :, :3].any((1, 2)) | ink[:, :, -3:].any((1, 2))
        rows = ink.any(2)
        return edge.mean(), np.mean([np.ptp(np.flatnonzero(r)) + 1 for r in rows if r.any()])

    (e_m, h_m), (e_d, h_d) = placement(clean), placement(d28[:, 0])
    assert abs(e_m - e_d) < 0.1 and abs(h_m - h_d) < 1.5  # MNIST: 0.34 and 19.7 rows; digits28: 0.37, 20.9


def test_mnist_sets_hold_out_the_training_test_split():
    torch = pytest.importorskip("torch")
    from filtertopo.training import load_dataset

    for data_seed in (0, 5):
        _, test = load_dataset("mnist_subset", seed=data_seed)
        x, y = mnist_subset_test(data_seed)
        np.testing.assert_array_equal(y, test.labels.numpy())
        np.testing.assert_allclose(x, test.images[:, 0].to(torch.float32).numpy() / 255, atol=1e-6)


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match="did you mean 'rotated'"):
        load_shifted("rotate")
    with pytest.raises(InputError, match="n <= 1000"):
        load_shifted("noisy", n=5000)
    with pytest.raises(InputError, match="seed"):
        load_shifted("noisy", seed=-1)
    with pytest.raises(InputError, match="must be a torch.nn.Module"):
        evaluate_shifted(object(), ["noisy"])


def test_gap_helper():
    assert generalisation_gap(1.0, 0.75) == 0.25
    np.testing.assert_allclose(generalisation_gap([1.0, 0.9], [0.5, np.nan]), [0.5, np.nan])


def test_untrained_and_trained_nets_give_accuracies_in_0_1(tmp_path, no_network):
    torch = pytest.importorskip("torch")
    from filtertopo.training import TrainConfig, create_model, train

    net = create_model("mnist_net", widths=[8, 8], hidden=16)
    accs = evaluate_shifted(net, n=100)
    assert list(accs) == list(SHIFTED) and all(0 <= a <= 1 for a in accs.values())
    assert net.training  # the mode is restored
    # a small net trained for 250 steps: well above chance on held-out digits, and the shifts hurt
    cfg = TrainConfig(model="mnist_net", model_kwargs={"widths": [8, 8], "hidden": 32}, n_train=2000, epochs=4,
                      batch_size=32, optimizer="adam", lr=3e-3, weight_decay=0.0, eval_samples=100, threads=1)
    run = train(cfg, tmp_path / "run", progress=False)
    net = create_model("mnist_net", widths=[8, 8], hidden=32)
    net.load_state_dict(torch.load(run / "model.pt", weights_only=True))
    clean = evaluate_shifted_clean(net)
    accs = evaluate_shifted(net)
    assert clean > 0.8
    assert all(0 <= a <= 1 for a in accs.values())
    assert accs["inverted"] < clean - 0.3 and accs["noisy"] < clean and accs["rotated"] < clean
    three = evaluate_shifted(_Grey(net), ["noisy"], channels=3)
    assert three["noisy"] == accs["noisy"]


def evaluate_shifted_clean(net):
    import torch

    x, y = mnist_subset_test(0)
    with torch.no_grad():
        pred = net.eval()(torch.tensor(x[:, None])).argmax(1).numpy()
    return float((pred == y).mean())


class _Grey:
    """A colour-input wrapper: averages 3 identical channels back to 1."""

    def __init__(self, net):
        self.net = net
        self.training = False

    def parameters(self):
        return self.net.parameters()

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def __call__(self, x):
        assert x.shape[1] == 3
        return self.net(x.mean(1, keepdim=True))
