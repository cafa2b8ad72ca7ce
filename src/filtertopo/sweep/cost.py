"""What a sweep costs before it runs: the models built once each, their FLOPs counted, and
optionally the training speed measured here.

:func:`check_models` builds every distinct architecture of a grid on the CPU (so a bad
``model_kwargs`` value or a layer selector that matches nothing is an InputError before
any run starts) and counts the FLOPs of one forward pass with hooks on the convolution and
linear layers (2 x multiply-adds; activations, pooling and the loss are not counted).
:func:`run_cost` turns that into the FLOPs of a run: training = 3 x forward (the usual
estimate: the backward pass costs about twice the forward) over ``n_train x epochs``
images, plus the forward passes of the evaluations (the test set after every epoch,
``eval_samples`` train and test images at every snapshot). :func:`calibrate` times a few
training steps of each architecture on random data, with the threads a worker uses, and
gives the achieved GFLOP/s, which :func:`estimate_seconds` applies to the counted FLOPs.
Neither counts the analysis nor the start-up of worker processes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["ModelInfo", "RunCost", "check_models", "run_cost", "calibrate", "estimate_seconds",
           "DATASET_SIZES"]

#: (train, test) images of the data sets whose size is known without loading them
#: (test_fraction 0.2 for the offline ones, as :func:`filtertopo.training.load_dataset`).
DATASET_SIZES = {"mnist_subset": (4000, 1000), "digits": (1438, 359), "mnist": (60000, 10000),
                 "cifar10": (50000, 10000), "svhn": (73257, 26032)}


@dataclass(frozen=True)
class ModelInfo:
    """One distinct architecture of a grid.

    Attributes
    ----------
    model : str
    model_kwargs : dict
    input_shape : tuple of int
    forward_flops : float
        FLOPs of one forward pass of one image (conv and linear layers).
    conv_layers : tuple of str
        The names of its conv kernels.
    layers : tuple of str
        The ones the spec's layer selector chooses.
    """

    model: str
    model_kwargs: dict
    input_shape: tuple
    forward_flops: float
    conv_layers: tuple
    layers: tuple


@dataclass(frozen=True)
class RunCost:
    """Counted cost of one run (None where a data set's size is not known before loading)."""

    steps: int | None
    snapshots: int | None
    train_flops: float | None
    eval_flops: float | None

    @property
    def flops(self):
        return None if self.train_flops is None else self.train_flops + self.eval_flops


def _arch_key(cfg) -> str:
    return json.dumps([cfg.model, cfg.model_kwargs], sort_keys=True, default=str)


def check_models(spec, runs) -> dict:
    """Build each distinct architecture of ``runs`` once; return ``{arch key: ModelInfo}``.

    Raises InputError naming the axis values when a model cannot be built or run on its
    input, or when the spec's ``[analysis] layers`` selects no conv layer of it.
    """
    import torch

    from ..pipeline import select_layers
    from ..training.loop import _input_shape
    from ..training.models import conv_kernels, create_model

    where = f"sweep spec {spec.source!r}" if spec.source else "sweep spec"
    out = {}
    for run in runs:
        key = _arch_key(run.config)
        if key in out:
            continue
        cfg = run.config
        what = f"model {cfg.model!r} with model_kwargs {json.dumps(cfg.model_kwargs, sort_keys=True)}"
        mk = {a: v for a, v in run.varied.items() if a.startswith("model_kwargs") or a == "model"}
        if mk:
            what += f" (from the axis value(s) {', '.join(f'{a} = {json.dumps(v)}' for a, v in mk.items())})"
        try:
            shape = _input_shape(cfg)
            with torch.random.fork_rng(devices=[]):
                model = create_model(cfg.model, **cfg.model_kwargs)
            flops = _forward_flops(model, shape)
        except InputError as e:
            raise InputError(f"{where}: {what} cannot be built: {e} An axis is a list of values: one "
                             "list-valued value is written [[64, 32]].") from None
        except Exception as e:  # torch refusing the input shape
            raise InputError(f"{where}: {what} cannot process {shape} inputs ({type(e).__name__}: {e}). "
                             "Check model_kwargs in_channels / input_size.") from None
        names = tuple(conv_kernels(model))
        try:
            chosen = tuple(select_layers(names, spec.layers))
        except InputError as e:
            raise InputError(f"{where}: [analysis] layers = {json.dumps(spec.layers)} for {what}: {e}") from None
        out[key] = ModelInfo(cfg.model, dict(cfg.model_kwargs), shape, flops, names, chosen)
    return out


def _forward_flops(model, shape) -> float:
    import torch
    from torch import nn

    total = [0.0]

    def conv(mod, inp, outp):
        kh, kw = mod.kernel_size
        total[0] += 2.0 * outp.numel() * (mod.in_channels // mod.groups) * kh * kw

    def linear(mod, inp, outp):
        total[0] += 2.0 * outp.numel() * mod.in_features

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(linear))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *shape)))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return total[0]


def _sizes(cfg):
    tr = DATASET_SIZES.get(cfg.dataset, (None, None))[0]
    te = DATASET_SIZES.get(cfg.test_dataset or cfg.dataset, (None, None))[1]
    if cfg.n_train is not None:
        tr = cfg.n_train if tr is None else min(tr, cfg.n_train)
    return tr, te


def run_cost(cfg, info: ModelInfo) -> RunCost:
    """The counted FLOPs of training ``cfg`` (a TrainConfig) on the architecture ``info``."""
    n_tr, n_te = _sizes(cfg)
    if n_tr is None or n_te is None:
        return RunCost(None, None, None, None)
    f = info.forward_flops
    steps = math.ceil(n_tr / cfg.batch_size) * cfg.epochs
    snaps = 0
    if cfg.snapshot_every:
        snaps = 1 + steps // cfg.snapshot_every + (1 if steps % cfg.snapshot_every else 0)
    train = 3.0 * f * n_tr * cfg.epochs
    evals = f * n_te * cfg.epochs + snaps * f * (min(cfg.eval_samples, n_tr) + min(cfg.eval_samples, n_te))
    return RunCost(steps, snaps, train, evals)


def calibrate(runs, infos: dict, *, threads: int = 1, seconds: float = 0.3) -> dict:
    """Measured training GFLOP/s of each distinct (architecture, batch size, optimizer).

    A few steps on random images (after one untimed step), on the CPU with ``threads``
    torch threads (what one worker uses). Returns ``{(arch key, batch_size, optimizer):
    GFLOP/s}``.
    """
    import torch
    import torch.nn.functional as F

    from ..training.loop import _make_optimizer
    from ..training.models import create_model

    out = {}
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for run in runs:
            cfg = run.config
            key = (_arch_key(cfg), cfg.batch_size, cfg.optimizer)
            if key in out:
                continue
            info = infos[key[0]]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = create_model(cfg.model, **cfg.model_kwargs)
                x = torch.rand((cfg.batch_size, *info.input_shape))
                n_out = model(x[:1]).shape[1]
                y = torch.randint(0, n_out, (cfg.batch_size,))
            opt = _make_optimizer(cfg, model.parameters())

            def step():
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()

            step()
            n, t0 = 0, time.perf_counter()
            while n < 3 or (time.perf_counter() - t0 < seconds and n < 50):
                step()
                n += 1
            dt = time.perf_counter() - t0
            out[key] = 3.0 * info.forward_flops * cfg.batch_size * n / dt / 1e9
    finally:
        torch.set_num_threads(old)
    return out


def estimate_seconds(cfg, cost: RunCost, rates: dict):
    """Seconds of one run at the measured rate of its architecture (None when unknown)."""
    rate = rates.get((_arch_key(cfg), cfg.batch_size, cfg.optimizer))
    if rate is None or cost.flops is None:
        return None
    return cost.flops / (rate * 1e9)
