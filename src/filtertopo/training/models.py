"""CNN architectures studied by Gabrielsson & Carlsson (2019, §6), as a plain registry.

Every entry of :data:`MODELS` is a :class:`ModelSpec` whose factory returns an
``nn.Sequential`` built from named layers, so that module names are stable and
short: convolutions are ``conv1``, ``conv2``, ... in order of depth (``conv1``
is the first layer, the one that forms the primary circle), fully connected
layers ``fc1``, ``fc2``, ...  Exported kernels (:func:`conv_kernels`) are keyed
by these module names (``"conv1"``, not ``"conv1.weight"``), OIHW float32: the
format that :func:`filtertopo.weights.save_kernels` writes and the analysis reads.

Users add their own networks with :func:`register_model`; one contract test
(``tests/test_models.py``) runs over every entry.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import InputError

__all__ = [
    "ModelSpec",
    "MODELS",
    "VGG_CONFIGS",
    "register_model",
    "create_model",
    "list_models",
    "MAX_MODEL_BYTES",
    "conv_kernels",
    "paper_net",
    "vgg",
]

# VGG configurations (Simonyan & Zisserman 2015): channel counts, "M" = max-pool.
VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
}


_KWARG_EXAMPLES = {"in_channels": 1, "input_size": 28, "num_classes": 10, "hidden": 64,
                   "widths": "[64,32]"}


def _int_kwarg(name: str, value, low: int) -> int:
    """A model factory's integer keyword argument, or InputError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"model_kwargs[{name!r}] (--model-kwarg {name}=...) must be an integer "
                         f">= {low}; got {value!r}. Example: --model-kwarg "
                         f"{name}={_KWARG_EXAMPLES.get(name, low)}.")
    return int(value)


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry.

    Parameters
    ----------
    factory : callable
        ``factory(**kwargs) -> nn.Module``. Built-in factories accept
        ``in_channels``, ``input_size`` and ``num_classes``.
    input_shape : tuple of int
        Default input ``(C, H, W)`` of the network the factory builds without
        arguments (used by the contract test and by the trainer's checks).
    num_classes : int
        Number of outputs of the default network.
    description : str
        One line for ``list_models``.
    defaults : dict
        Keyword arguments passed to ``factory`` unless overridden.
    """

    factory: Callable[..., nn.Module]
    input_shape: tuple = (1, 28, 28)
    num_classes: int = 10
    description: str = ""
    defaults: dict = field(default_factory=dict)


def paper_net(in_channels: int = 1, input_size: int = 28, num_classes: int = 10,
              widths: tuple = (64, 32), hidden: int = 64) -> nn.Sequential:
    """The MNIST net of the paper: conv 3x3x64 -> max-pool -> conv 3x3x32 -> max-pool
    -> FC 64 -> FC 10, ReLU, 'same' padding.

    Parameters
    ----------
    in_channels : int
        1 for MNIST, 3 for CIFAR-10 / SVHN.
    input_size : int
        Height = width of the input (28 or 32).
    num_classes : int
        Number of outputs.
    widths : tuple of int
        Output channels of the two convolutions.
    hidden : int
        Width of the hidden fully connected layer.

    Examples
    --------
    >>> net = paper_net()
    >>> tuple(net(torch.zeros(2, 1, 28, 28)).shape)
    (2, 10)
    """
    in_channels = _int_kwarg("in_channels", in_channels, 1)
    input_size = _int_kwarg("input_size", input_size, 1)
    num_classes = _int_kwarg("num_classes", num_classes, 1)
    hidden = _int_kwarg("hidden", hidden, 1)
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise InputError(f"model_kwargs['widths'] (--model-kwarg widths=...) must be a list of "
                         f"channel counts; got {widths!r}. Example: --model-kwarg widths=[64,32].")
    widths = tuple(_int_kwarg("widths", w, 1) for w in widths)
    if not widths:
        raise InputError("model_kwargs['widths'] (--model-kwarg widths=...) must name at least "
                         "one conv layer; got []. Example: --model-kwarg widths=[64,32].")
    size = input_size // 2 ** len(widths)
    if size < 1:
        raise InputError(f"model_kwargs['input_size'] (--model-kwarg input_size=...) must be >= "
                         f"{2 ** len(widths)} for {len(widths)} conv layers (one 2x2 max-pool "
                         f"each); got {input_size}. Example: --model-kwarg input_size=28.")
    layers = OrderedDict()
    c = in_channels
    for i, w in enumerate(widths, start=1):
        layers[f"conv{i}"] = nn.Conv2d(c, w, 3, padding=1)
        layers[f"relu{i}"] = nn.ReLU()
        layers[f"pool{i}"] = nn.MaxPool2d(2)
        c = w
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(c * size * size, hidden)
    layers["relu_fc1"] = nn.ReLU()
    layers["fc2"] = nn.Linear(hidden, num_classes)
    return nn.Sequential(layers)


def vgg(config: str = "vgg16", *, width: float = 1.0, in_channels: int = 3,
        input_size: int = 32, num_classes: int = 10, batch_norm: bool = False,
        hidden: int | None = None) -> nn.Sequential:
    """A VGG-style net: 3x3 'same' convolutions named ``conv1`` ... ``conv13``.

    Parameters
    ----------
    config : {"vgg11", "vgg13", "vgg16"}
        Layer configuration (8, 10 or 13 conv layers).
    width : float
        Width multiplier on every channel count (at least 1 channel each).
    in_channels, input_size, num_classes : int
        Input ``(in_channels, input_size, input_size)`` and outputs. A max-pool
        that would shrink the feature map below 1x1 is left out, so small inputs
        (28x28) work with every configuration.
    batch_norm : bool
        Insert ``bn<i>`` after each convolution.
    hidden : int, optional
        Width of the two hidden FC layers; default ``max(16, round(512 * width))``.
    """
    if config not in VGG_CONFIGS:
        raise InputError(f"config must be one of {sorted(VGG_CONFIGS)}; got {config!r}.")
    if isinstance(width, bool) or not isinstance(width, (int, float, np.number)) \
            or not np.isfinite(width) or not width > 0:
        raise InputError(f"model_kwargs['width'] (--model-kwarg width=...) must be a finite "
                         f"number > 0; got {width!r}. Use e.g. 0.25 for a quarter width.")
    in_channels = _int_kwarg("in_channels", in_channels, 1)
    input_size = _int_kwarg("input_size", input_size, 1)
    num_classes = _int_kwarg("num_classes", num_classes, 1)
    if hidden is not None:
        hidden = _int_kwarg("hidden", hidden, 1)
    if not isinstance(batch_norm, bool):
        raise InputError(f"model_kwargs['batch_norm'] (--model-kwarg batch_norm=...) must be "
                         f"true or false; got {batch_norm!r}.")
    layers = OrderedDict()
    c, size, i, j = in_channels, input_size, 0, 0
    for item in VGG_CONFIGS[config]:
        if item == "M":
            if size >= 2:
                j += 1
                layers[f"pool{j}"] = nn.MaxPool2d(2)
                size //= 2
            continue
        i += 1
        w = max(1, int(round(item * width)))
        layers[f"conv{i}"] = nn.Conv2d(c, w, 3, padding=1)
        if batch_norm:
            layers[f"bn{i}"] = nn.BatchNorm2d(w)
        layers[f"relu{i}"] = nn.ReLU()
        c = w
    hidden = hidden or max(16, int(round(512 * width)))
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(c * size * size, hidden)
    layers["relu_fc1"] = nn.ReLU()
    layers["fc2"] = nn.Linear(hidden, hidden)
    layers["relu_fc2"] = nn.ReLU()
    layers["fc3"] = nn.Linear(hidden, num_classes)
    return nn.Sequential(layers)


def _vgg_factory(config):
    def factory(**kwargs):
        return vgg(config, **kwargs)
    factory.__name__ = config
    return factory


MODELS: dict[str, ModelSpec] = {
    "mnist_net": ModelSpec(paper_net, (1, 28, 28), 10,
                           "paper's MNIST net: conv3x3x64-pool-conv3x3x32-pool-FC64-FC10"),
    "cifar_net": ModelSpec(paper_net, (3, 32, 32), 10,
                           "the same net for 3-channel 32x32 input (CIFAR-10, SVHN)",
                           {"in_channels": 3, "input_size": 32}),
}
for _name, _convs in (("vgg11", 8), ("vgg13", 10), ("vgg16", 13)):
    MODELS[_name] = ModelSpec(_vgg_factory(_name), (3, 32, 32), 10,
                              f"VGG-style, {_convs} conv layers; kwargs width, batch_norm, "
                              "in_channels, input_size")


def _prior_net_factory(prior):
    """``paper_net(**kwargs)`` with ``filtertopo.priors.apply(net, prior, layer="conv1",
    mode="fixed")``: the bank sized to conv1's width (the net's other layers are initialised
    exactly as in ``paper_net`` with the same seed; ``apply`` draws no random numbers)."""
    def factory(**kwargs):
        from ..priors import apply

        return apply(paper_net(**kwargs), prior, layer="conv1", mode="fixed")
    factory.__name__ = f"paper_net_{prior}"
    return factory


# Topological priors (Love et al., JMLR 2023; docs/priors.md): the paper's MNIST net with a
# fixed first layer. The same nets are TrainConfig(model="mnist_net", prior=...), which can
# also make the bank an initialisation (prior_mode="init") or use another layer.
for _name, _prior, _text in (
        ("mnist_net_cf", "circle", "conv1 a fixed circle bank (CF): one angle per channel"),
        ("mnist_net_kf", "klein", "conv1 a fixed Klein bank (KF): 8x8 grid for 64 channels"),
        ("mnist_net_kf_kol", "klein_kol", "fixed Klein conv1 (KF) + conv2 masked on the Klein "
                                          "bottle (KOL, published channel definition)")):
    MODELS[_name] = ModelSpec(_prior_net_factory(_prior), (1, 28, 28), 10, f"mnist_net, {_text}")


def register_model(name: str, factory: Callable[..., nn.Module], *,
                   input_shape: tuple = (1, 28, 28), num_classes: int = 10,
                   description: str = "", overwrite: bool = False, **defaults) -> ModelSpec:
    """Add a user's own network to :data:`MODELS`.

    Parameters
    ----------
    name : str
        Registry key, used by ``TrainConfig(model=name)`` and ``--model``.
    factory : callable
        ``factory(**kwargs) -> nn.Module``. Conv layers are exported under their
        module names (``dict(model.named_modules())``).
    input_shape : tuple of int
        Input ``(C, H, W)`` the default network expects.
    num_classes : int
        Number of outputs.
    overwrite : bool
        Replace an existing entry of the same name.
    **defaults
        Keyword arguments always passed to ``factory``.

    Returns
    -------
    ModelSpec
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"name must be a non-empty string; got {name!r}.")
    if not callable(factory):
        raise InputError(f"factory must be callable returning an nn.Module; got {factory!r}.")
    if name in MODELS and not overwrite:
        raise InputError(f"model {name!r} is already registered; pass overwrite=True "
                         "to replace it or choose another name.")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise InputError(f"input_shape must be (C, H, W); got {input_shape!r}.")
    spec = ModelSpec(factory, shape, int(num_classes), description, dict(defaults))
    MODELS[name] = spec
    return spec


def list_models() -> list[str]:
    """Names of the registered architectures, sorted."""
    return sorted(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name`` (InputError if unknown)."""
    if name not in MODELS:
        raise InputError(f"model must be one of {list_models()}; got {name!r}. "
                         "Register your own with filtertopo.training.register_model.")
    return MODELS[name]


#: The largest model :func:`create_model` builds: bytes of its parameters and buffers.
#: Environment override: ``FILTERTOPO_MAX_MODEL_BYTES``.
MAX_MODEL_BYTES = 2 * 1024**3


def _first_line(exc) -> str:
    """The first line of an exception's text: torch's C++ errors append a whole stack trace."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else ""
    return line if len(line) <= 300 else line[:297] + "..."


def _check_model_size(name, factory, args, kwargs):
    """Build the model on the meta device first (no memory) and refuse it if it is too large.

    ``--model-kwarg widths=[20000,20000]`` would otherwise allocate and initialise 14 GB of
    weights before anything else is checked. A factory that cannot be built on the meta device
    is not checked here.
    """
    from ..errors import env_limit

    try:
        with torch.device("meta"):
            model = factory(**args)
    except InputError:
        raise
    except Exception:  # not buildable on meta (or refusing a value: the real build says so)
        return
    if not isinstance(model, nn.Module):
        return
    tensors = list(model.parameters()) + list(model.buffers())
    n_bytes = sum(t.numel() * t.element_size() for t in tensors)
    limit = env_limit("FILTERTOPO_MAX_MODEL_BYTES", MAX_MODEL_BYTES)
    if n_bytes > limit:
        n_params = sum(t.numel() for t in model.parameters())
        raise InputError(f"model {name!r} with model_kwargs {kwargs!r} would have {n_params:,} parameters "
                         f"({n_bytes / 1024**3:.1f} GiB), over the limit MAX_MODEL_BYTES = {limit} bytes "
                         f"({limit / 1024**3:.1f} GiB). Lower width / widths / hidden / input_size "
                         f"(--model-kwarg), or raise the limit with the environment variable "
                         f"FILTERTOPO_MAX_MODEL_BYTES={n_bytes}, memory permitting.")


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered architecture; ``kwargs`` override the entry's defaults.

    Examples
    --------
    >>> net = create_model("cifar_net")
    >>> tuple(net.conv1.weight.shape)
    (64, 3, 3, 3)
    """
    spec = get_spec(name)
    args = {**spec.defaults, **kwargs}
    _check_model_size(name, spec.factory, args, kwargs)
    try:
        model = spec.factory(**args)
    except InputError:
        raise
    except Exception as exc:  # a user's factory, or torch refusing a value
        raise InputError(f"model_kwargs {kwargs!r} not accepted by model {name!r}: "
                         f"{type(exc).__name__}: {_first_line(exc)}. Built-in models accept in_channels, "
                         "input_size, num_classes (integers >= 1; mnist_net also widths, hidden; "
                         "VGG also width, batch_norm, hidden).") from exc
    if not isinstance(model, nn.Module):
        raise InputError(f"the factory of model {name!r} returned {type(model).__name__}, not a "
                         "torch.nn.Module; fix the factory passed to register_model.")
    return model


def conv_kernels(model: nn.Module) -> dict[str, np.ndarray]:
    """The conv kernels of ``model``, keyed by module name, OIHW float32 copies.

    Every 2-D conv is exported (1x1 convs too; the analysis skips and lists them), with
    the weight it computes with (a parametrised conv's computed weight; a fixed weight
    held as a buffer): :func:`filtertopo.weights.conv_weights`, the one extractor that
    :func:`filtertopo.weights.kernels_from_module` uses too. Names are
    ``model.named_modules()`` names: ``"conv1"`` for registry models, e.g. ``"features.0"``
    for a user's nested module.

    Examples
    --------
    >>> sorted(conv_kernels(create_model("mnist_net")))
    ['conv1', 'conv2']
    """
    from ..weights import conv_weights

    return conv_weights(model)
