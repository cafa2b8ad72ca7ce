"""Train a group of same-architecture networks in one step (issue 10, step 3).

Two paths train a list of :class:`~filtertopo.training.TrainConfig`:

- **one by one**: :func:`filtertopo.training.train` per config (the reference; bit-identical
  to ``filtertopo train``);
- **batched**: the G networks of a group become one :class:`StackedNet`: every conv layer
  is one convolution with ``groups=G`` over ``G * C`` channels, every linear layer one
  batched matmul (``baddbmm``) over ``(G, batch, features)``, batch norm one batch norm over
  ``G * C`` channels. Each network keeps its own initial weights (its ``seed``), its own data
  order (a private ``torch.Generator`` seeded with ``seed``, drawn exactly as
  :func:`~filtertopo.training.train` draws it) and its own optimiser state: the stacked
  parameters ``(G, ...)`` go to one ``torch.optim`` optimiser when the G networks share
  ``lr``, ``momentum`` and ``weight_decay`` -- exact, because SGD (momentum, weight decay),
  Adam and AdamW are elementwise per parameter entry, with a step count all networks share
  -- and otherwise to :class:`GroupOptimizer`, the same formulas with per-network
  hyperparameters.

Same initial weights and data order give the same trained weights on both paths within
float tolerance (``tests/test_batched.py``: only the summation order inside the kernels
differs).

:func:`choose_path` picks the path by a rule measured with ``benchmarks/bench_batched.py``
(``docs/batched.md``): **batched on CUDA**, where a small net leaves the device idle; **one by
one on the CPU** (several networks at once in one-thread worker processes), where a group
step was no faster per network than a single network's step: on the CPU a conv over G*C
channels with groups=G is G small kernels, not a bigger one. ``FILTERTOPO_BATCHED_CPU=1``
turns batching on for the CPU.

What made the CPU fast (measured, docs/batched.md) is efficiency, not batching: one thread
per process, :func:`tune_malloc` (no page faults per step), channels-last activations and
max-pool before ReLU; :class:`StackedNet` does the last two, and the same with G=1 is the
fastest one-by-one step measured here.

:func:`train_group` runs either path and, given run folders, writes the same files as
:func:`~filtertopo.training.train` (``config.json``, ``run.json`` -- with ``"path"`` and
``"group_size"`` -- ``metrics.csv``, ``kernels.npz``, ``model.pt``, ``snapshots/``).

Batched-path differences from the one-by-one loop, all bookkeeping, none in the weights: a
loss that becomes NaN / infinite is detected at the end of its epoch (the network is then
``failed`` with the first bad step; the others train on), not at the step; eval batches
shrink when G is large (accuracies are per image, so unchanged); ReLU followed by max-pool is
computed as max-pool followed by ReLU (the same values and gradients -- ReLU is monotone and
ties go to the same element -- on a quarter of the elements).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .data import Transform, load_dataset
from .models import create_model

__all__ = ["StackedNet", "GroupOptimizer", "TrainedNet", "train_group", "choose_path",
           "plan_groups", "group_key", "stackable", "tune_malloc", "max_group_size",
           "GROUP_FIELDS", "PATHS"]

PATHS = ("auto", "batched", "one_by_one")

#: TrainConfig fields that every network of a batched group shares (:func:`group_key`).
#: ``seed``, ``data_seed``, ``lr``, ``momentum``, ``weight_decay`` and ``snapshot_every`` may
#: differ within a group.
GROUP_FIELDS = ("model", "model_kwargs", "dataset", "test_dataset", "data_root", "download",
                "n_train", "optimizer", "batch_size", "epochs", "eval_samples", "threads",
                "device", "loss", "prior", "prior_mode", "prior_layer")

_ENV_CPU = "FILTERTOPO_BATCHED_CPU"


_MALLOC_TUNED = False


def tune_malloc(limit: int = 1 << 30) -> bool:
    """Keep freed memory in this process instead of handing it back to the OS (glibc only).

    glibc serves large blocks (above a threshold it raises up to 32 MiB) with ``mmap`` and
    unmaps them on free, and trims the heap top above a threshold; every training step of a
    small CNN allocates and frees its activations (12.8 MB for conv1 of the MNIST net at batch
    64), so each step page-faults its memory in again: 12,400 minor faults per step of
    train()'s loop at batch 64, 5,400 for the stacked net, ~0 after this call (measured,
    docs/batched.md). Sets ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to ``limit`` (the same
    as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the environment). The cost:
    the process keeps its peak memory. Process-wide, once; returns whether it applied.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (macOS, Windows, musl without mallopt)
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    ok = bool(mallopt(M_MMAP_THRESHOLD, int(limit)) or mallopt(M_MMAP_THRESHOLD, 32 << 20))
    ok = bool(mallopt(M_TRIM_THRESHOLD, int(limit))) and ok
    _MALLOC_TUNED = ok
    return ok


# --------------------------------------------------------------------------------------
# the stacked network
# --------------------------------------------------------------------------------------

_LAYERS = (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten,
           nn.BatchNorm2d, nn.Identity)


_EXPECTED = {nn.Conv2d: ({"weight", "bias"}, set()), nn.Linear: ({"weight", "bias"}, set()),
             nn.BatchNorm2d: ({"weight", "bias"},
                              {"running_mean", "running_var", "num_batches_tracked"})}


def stackable(model: nn.Module) -> str | None:
    """None when :class:`StackedNet` can stack ``model``, else the reason it cannot.

    Stackable: an ``nn.Sequential`` of exactly (not subclasses of) ``Conv2d`` (``groups=1``,
    zero padding), ``Linear``, ``ReLU``, ``MaxPool2d``, ``AvgPool2d``, ``BatchNorm2d`` (affine,
    running stats), ``Identity`` and one ``Flatten`` (``start_dim=1``) between the conv and
    the linear part, without parametrizations or hooks, every weight trainable: the plain
    registry models (``mnist_net``, ``cifar_net``, ``vgg*``). A prior's layers (a fixed bank,
    a masked conv) are not, and such networks train one by one.
    """
    import torch.nn.utils.parametrize as parametrize

    if type(model) is not nn.Sequential:
        return f"{type(model).__name__} is not an nn.Sequential"
    flat = False
    for name, m in model.named_children():
        if type(m) not in _LAYERS:
            return f"layer {name!r} is a {type(m).__name__}"
        if parametrize.is_parametrized(m) or m._forward_hooks or m._forward_pre_hooks:
            return f"layer {name!r} has parametrizations or hooks"
        if type(m) in _EXPECTED:
            params, buffers = _EXPECTED[type(m)]
            got_p = {n for n, _ in m.named_parameters(recurse=False)}
            got_b = {n for n, _ in m.named_buffers(recurse=False)}
            if not got_p <= params or got_b != buffers or "weight" not in got_p:
                return f"layer {name!r} holds {sorted(got_p | got_b)}"
            if not all(p.requires_grad for p in m.parameters()):
                return f"layer {name!r} has a frozen parameter"
        if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros"
                                         or isinstance(m.padding, str)):
            return f"conv layer {name!r} has groups={m.groups} / padding {m.padding!r}"
        if isinstance(m, nn.BatchNorm2d) and not (m.affine and m.track_running_stats):
            return f"batch norm {name!r} is not affine with running stats"
        if isinstance(m, nn.Flatten):
            if flat or m.start_dim != 1 or m.end_dim != -1:
                return f"flatten {name!r} is not the one Flatten(start_dim=1)"
            flat = True
        elif isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d)) and flat:
            return f"spatial layer {name!r} after the flatten"
        elif isinstance(m, nn.Linear) and not flat:
            return f"linear layer {name!r} before a flatten"
    return None


class StackedNet(nn.Module):
    """G copies of one ``nn.Sequential`` architecture as one module (see the module doc).

    Parameters
    ----------
    models : list of nn.Sequential
        Same architecture (checked), each with its own weights; they are copied, not shared.
    channels_last : bool
        Keep conv activations in channels-last memory (faster grouped convs on the CPU).
    pool_first : bool
        Compute ``ReLU -> MaxPool2d`` as ``MaxPool2d -> ReLU``: the same values (ReLU is
        monotone) and the same gradients, on a quarter of the elements.

    Attributes
    ----------
    groups : int
        G.
    names : list of str
        The original ``state_dict`` keys, e.g. ``"conv1.weight"``; :meth:`tensor` gives the
        stacked ``(G, ...)`` parameter or buffer.

    Layouts: conv activations are ``(batch, G * C, H, W)`` (network g owns channels
    ``g*C .. g*C + C - 1``); after the flatten, ``(G, batch, features)``.
    """

    def __init__(self, models, *, channels_last: bool = False, pool_first: bool = True):
        super().__init__()
        models = list(models)
        if not models:
            raise InputError("StackedNet needs at least one model.")
        why = stackable(models[0])
        if why:
            raise InputError(f"cannot stack this model: {why}; train it one by one "
                             "(path='one_by_one').")
        ref = [(n, type(m), _layer_signature(m)) for n, m in models[0].named_children()]
        for i, m in enumerate(models[1:], start=1):
            got = [(n, type(c), _layer_signature(c)) for n, c in m.named_children()]
            if got != ref:
                raise InputError(f"model {i} differs in architecture from model 0; a batched "
                                 "group holds networks of one architecture.")
        self.groups = len(models)
        self.channels_last = bool(channels_last)
        self.pool_first = bool(pool_first)
        self.layers = [(n, m) for n, m in models[0].named_children()]
        self.names = []
        self._key = {}
        states = [m.state_dict() for m in models]
        for name in states[0]:
            t = torch.stack([s[name].detach() for s in states]).clone()
            key = name.replace(".", "__")
            self._key[name] = key
            self.names.append(name)
            if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
                self.register_buffer(key, t)
            else:
                self.register_parameter(key, nn.Parameter(t))
        self._template = models[0]

    def tensor(self, name: str) -> torch.Tensor:
        """The stacked ``(G, ...)`` tensor of the original key ``name``."""
        return getattr(self, self._key[name])

    def stacked_parameters(self) -> list:
        """The stacked parameters in ``state_dict`` order (one per original parameter)."""
        return [self.tensor(n) for n in self.names if isinstance(self.tensor(n), nn.Parameter)]

    def to_grouped(self, x: torch.Tensor) -> torch.Tensor:
        """``(G, batch, C, H, W)`` per-network inputs -> ``(batch, G * C, H, W)``."""
        G, b = x.shape[:2]
        x = x.transpose(0, 1).reshape(b, G * x.shape[2], *x.shape[3:])
        return _channels_last(x) if self.channels_last else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(G, batch, classes)`` of per-network inputs ``(G, batch, C, H, W)``
        (or, already grouped, ``(batch, G * C, H, W)``)."""
        if x.ndim == 5:
            x = self.to_grouped(x)
        G = self.groups
        layers = self.layers
        i = 0
        while i < len(layers):
            name, m = layers[i]
            if (self.pool_first and isinstance(m, nn.ReLU) and i + 1 < len(layers)
                    and isinstance(layers[i + 1][1], nn.MaxPool2d)):
                x = F.relu(self._pool(layers[i + 1][1], x))
                i += 2
                continue
            if isinstance(m, nn.Conv2d):
                w = self.tensor(name + ".weight")
                b = self.tensor(name + ".bias") if m.bias is not None else None
                w = w.reshape(G * w.shape[1], *w.shape[2:])
                if self.channels_last:  # clone: .contiguous() keeps the ambiguous strides of a
                    w = w.clone(memory_format=torch.channels_last)  # (O, 1, k, k) weight
                x = F.conv2d(x, w, None if b is None else b.reshape(-1), m.stride, m.padding,
                             m.dilation, groups=G)
            elif isinstance(m, nn.BatchNorm2d):
                x = self._batch_norm(name, m, x)
            elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                x = self._pool(m, x)
            elif isinstance(m, nn.ReLU):
                x = F.relu(x)
            elif isinstance(m, nn.Flatten):  # (b, G*C, H, W) -> (G, b, C*H*W)
                x = x.reshape(x.shape[0], G, -1).transpose(0, 1).contiguous()
            elif isinstance(m, nn.Linear):
                w = self.tensor(name + ".weight")
                if m.bias is not None:
                    x = torch.baddbmm(self.tensor(name + ".bias").unsqueeze(1), x,
                                      w.transpose(1, 2))
                else:
                    x = torch.bmm(x, w.transpose(1, 2))
            i += 1
        return x

    @staticmethod
    def _pool(m, x):
        if isinstance(m, nn.MaxPool2d):
            return F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation,
                                ceil_mode=m.ceil_mode, return_indices=False)
        return F.avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                            m.count_include_pad, m.divisor_override)

    def _batch_norm(self, name, m, x):
        rm, rv = self.tensor(name + ".running_mean"), self.tensor(name + ".running_var")
        nbt = self.tensor(name + ".num_batches_tracked")
        factor = 0.0 if m.momentum is None else m.momentum
        if self.training:
            nbt.add_(1)
            if m.momentum is None:  # cumulative moving average, as nn.BatchNorm2d
                factor = 1.0 / float(nbt[0])
        return F.batch_norm(x, rm.view(-1), rv.view(-1), self.tensor(name + ".weight").reshape(-1),
                            self.tensor(name + ".bias").reshape(-1), self.training, factor,
                            m.eps)

    def state_dicts(self) -> list[dict]:
        """One ``state_dict`` per network (CPU copies, the original keys)."""
        out = [dict() for _ in range(self.groups)]
        for name in self.names:
            t = self.tensor(name).detach().to("cpu")
            for g in range(self.groups):
                out[g][name] = t[g].clone()
        return out

    def kernels(self, g: int) -> dict[str, np.ndarray]:
        """Conv kernels of network ``g``, keyed by layer name, OIHW float32 (as
        :func:`~filtertopo.training.conv_kernels`)."""
        return {n: self.tensor(n + ".weight")[g].detach().to("cpu", torch.float32).numpy().copy()
                for n, m in self.layers if isinstance(m, nn.Conv2d)}


def _layer_signature(m):
    if isinstance(m, nn.Conv2d):
        return (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                m.bias is not None)
    if isinstance(m, nn.Linear):
        return (m.in_features, m.out_features, m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return (m.num_features, m.eps, m.momentum)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return tuple(sorted((k, str(v)) for k, v in vars(m).items() if not k.startswith("_")
                            and k != "training"))
    return ()


# --------------------------------------------------------------------------------------
# per-network optimiser state
# --------------------------------------------------------------------------------------

class GroupOptimizer:
    """The optimiser of a group: each network's own SGD / Adam / AdamW on stacked parameters.

    When the networks share ``lr``, ``momentum`` and ``weight_decay`` this is the
    ``torch.optim`` optimiser that :func:`~filtertopo.training.train` builds, over the stacked
    ``(G, ...)`` tensors: exact, since these optimisers are elementwise and the step count is
    the same for every network. Otherwise the same formulas (``torch.optim``'s single-tensor
    code, default betas and eps) with per-network ``lr`` / ``momentum`` / ``weight_decay``
    broadcast over each network's slice.
    """

    def __init__(self, params, configs):
        from .loop import _make_optimizer

        self.params = list(params)
        self.configs = list(configs)
        c0 = self.configs[0]
        if any(c.optimizer != c0.optimizer for c in self.configs):
            raise InputError("a batched group shares one optimizer type; got "
                             f"{sorted({c.optimizer for c in self.configs})}.")
        self.kind = c0.optimizer
        fields = ("lr", "weight_decay") + (("momentum",) if self.kind == "sgd" else ())
        self.uniform = all(getattr(c, f) == getattr(c0, f) for c in self.configs for f in fields)
        self.inner = _make_optimizer(c0, self.params) if self.uniform else None
        self.state = {}
        self.steps = 0
        if not self.uniform:
            G = len(self.configs)
            for p in self.params:
                if p.shape[0] != G:
                    raise InputError(f"stacked parameter of shape {tuple(p.shape)} does not hold "
                                     f"{G} networks.")

            def per_net(name):
                return torch.tensor([float(getattr(c, name)) for c in self.configs],
                                    dtype=self.params[0].dtype, device=self.params[0].device)

            self.h = {name: per_net(name) for name in ("lr", "momentum", "weight_decay")}

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _b(self, name, p):
        return self.h[name].view(-1, *([1] * (p.ndim - 1)))

    @torch.no_grad()
    def step(self):
        if self.inner is not None:
            self.inner.step()
            return
        self.steps += 1
        for p in self.params:
            if p.grad is None:
                continue
            grad, st = p.grad, self.state.setdefault(p, {})
            lr, wd = self._b("lr", p), self._b("weight_decay", p)
            if self.kind == "sgd":
                d = grad + wd * p
                mom = self._b("momentum", p)
                if "buf" not in st:
                    st["buf"] = d.clone()
                else:
                    st["buf"].mul_(mom).add_(d)
                d = torch.where(mom != 0, st["buf"], d)
                p.sub_(lr * d)
                continue
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            if self.kind == "adamw":
                p.mul_(1 - lr * wd)
            else:
                grad = grad + wd * p
            if "m" not in st:
                st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
            st["m"].lerp_(grad, 1 - beta1)
            st["v"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bc1 = 1 - beta1 ** self.steps
            bc2_sqrt = (1 - beta2 ** self.steps) ** 0.5
            denom = (st["v"].sqrt() / bc2_sqrt).add_(eps)
            p.sub_((lr / bc1) * st["m"] / denom)


# --------------------------------------------------------------------------------------
# grouping and the rule
# --------------------------------------------------------------------------------------

def _build(config) -> nn.Module:
    """The freshly initialised network of ``config``, as :func:`~filtertopo.training.train`
    builds it (``build_model``: seeded under ``fork_rng``, with the prior if any)."""
    from . import loop

    if hasattr(loop, "build_model"):
        return loop.build_model(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return create_model(config.model, **config.model_kwargs)


def group_key(config) -> str:
    """The part of a config that every network of a batched group shares (:data:`GROUP_FIELDS`)."""
    d = config.to_dict()
    return json.dumps({k: d.get(k) for k in GROUP_FIELDS}, sort_keys=True, default=str)


def _as_configs(configs):
    from .loop import TrainConfig

    out = []
    for c in configs:
        if isinstance(c, dict):
            c = TrainConfig.from_dict(c)
        elif not isinstance(c, TrainConfig):
            raise InputError(f"configs must be TrainConfigs or dicts; got {type(c).__name__}.")
        out.append(c)
    if not out:
        raise InputError("train_group needs at least one config.")
    return out


def _device_of(configs, device):
    from .loop import resolve_device

    if device is None:
        names = {c.device for c in configs}
        if len(names) != 1:
            raise InputError(f"configs name several devices {sorted(names)}; pass device=.")
        device = names.pop()
    return resolve_device(str(device))


def choose_path(configs, device=None) -> str:
    """``"batched"`` or ``"one_by_one"`` for these configs on this device.

    The rule (measurement: ``benchmarks/bench_batched.py``; numbers in ``docs/batched.md``):

    1. one config, no two configs that could share a group (:func:`group_key`), or an
       architecture :class:`StackedNet` cannot stack -> one by one;
    2. CUDA (or MPS) -> batched: a small net leaves the device idle, G nets in one kernel
       fill it;
    3. CPU -> one by one, several networks at once in one-thread worker processes (the
       caller's pool, e.g. ``train_seeds(workers=cores)``). Measured on a 2-core EPYC, 8 nets
       x 10 Adam steps at batch 64: two one-thread processes of G=1 steps 2.75 s, of G=4 groups
       2.75 s (earlier runs: either ahead by up to 15%), one two-thread process of a G=8 group
       5.04 s, G=16 slower still: a grouped convolution on the CPU runs G small kernels, so
       batching saves nothing there. Set ``FILTERTOPO_BATCHED_CPU=1`` to batch on the CPU
       anyway (``0``: never).
    """
    configs = _as_configs(configs)
    dev = _device_of(configs, device)
    if len(configs) < 2:
        return "one_by_one"
    c0 = configs[0]
    if len({group_key(c.replace(device=c0.device)) for c in configs}) == len(configs):
        return "one_by_one"  # no two of them could share a group
    why = stackable(_build(c0))
    if why:
        return "one_by_one"
    if dev.type in ("cuda", "mps"):
        return "batched"
    return "batched" if os.environ.get(_ENV_CPU, "0") == "1" else "one_by_one"


def _per_net_bytes(model, shape, batch_size):
    """Rough training memory of one network: activations (kept for backward, with their
    gradients) x batch, and parameters with gradient and two optimiser states."""
    acts = 0
    x = torch.zeros(1, *shape)
    with torch.no_grad():
        for _, m in model.named_children():
            x = m(x)
            acts += x.numel()
    params = sum(p.numel() for p in model.parameters())
    return 4 * (3 * acts * batch_size + 4 * params)


def max_group_size(config, device) -> int:
    """How many networks of ``config``'s architecture one batched step holds: a memory
    budget (CUDA: 40% of the free device memory; CPU: 2 GiB) over :func:`_per_net_bytes`,
    at most 512."""
    from .loop import _input_shape

    model = _build(config)
    need = _per_net_bytes(model, _input_shape(config), config.batch_size)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = 0.4 * free
    else:
        budget = 2 * 2**30
    return int(max(1, min(512, budget // max(need, 1))))


def plan_groups(configs, device=None, *, max_group: int | None = None) -> list[list[int]]:
    """Indices of ``configs`` in batched groups: same :func:`group_key`, at most
    ``max_group`` (default :func:`max_group_size`) each, in input order."""
    configs = _as_configs(configs)
    dev = _device_of(configs, device)
    by_key: dict[str, list[int]] = {}
    for i, c in enumerate(configs):
        by_key.setdefault(group_key(c.replace(device=configs[0].device)), []).append(i)
    out = []
    for idx in by_key.values():
        cap = max_group or max_group_size(configs[idx[0]], dev)
        out += [idx[i:i + cap] for i in range(0, len(idx), cap)]
    return out


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------

@dataclass
class TrainedNet:
    """One network trained by :func:`train_group`.

    Attributes
    ----------
    config : TrainConfig
    status : str
        ``"complete"`` or ``"failed"`` (``error`` says why; the weights are then those at
        the end of training, possibly NaN).
    state_dict : dict
        Final weights (CPU tensors, the model's own keys).
    final : dict
        ``step``, ``epoch``, ``train_acc``, ``test_acc`` (as ``run.json``).
    rows : list
        metrics.csv rows: epoch, step, train_loss, train_acc, test_acc, seconds.
    run_dir : Path or None
    path : str
        ``"batched"`` or ``"one_by_one"``.
    error : dict or None
    """

    config: object
    status: str
    state_dict: dict
    final: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    run_dir: Path | None = None
    path: str = "batched"
    error: dict | None = None

    @property
    def kernels(self) -> dict[str, np.ndarray]:
        """Conv kernels keyed by layer name, OIHW float32."""
        return {k[:-len(".weight")]: v.to(torch.float32).numpy().copy()
                for k, v in self.state_dict.items() if k.endswith(".weight") and v.ndim == 4}


def train_group(configs, out_dirs=None, *, device=None, path: str = "auto",
                force: bool = False, max_group: int | None = None,
                channels_last: bool | None = None,
                progress: bool | None = None) -> list[TrainedNet]:
    """Train every config, batched in groups or one by one (:func:`choose_path`).

    Parameters
    ----------
    configs : list of TrainConfig or dict
    out_dirs : list of path, optional
        One run folder per config, written as :func:`~filtertopo.training.train` writes it;
        without them nothing is written (the one-by-one path then trains in a temporary
        folder).
    device : str, optional
        Overrides the configs' ``device`` ("cpu", "cuda", "auto", ...).
    path : {"auto", "batched", "one_by_one"}
    force : bool
        Reuse non-empty run folders (as ``train(force=True)``).
    max_group : int, optional
        At most this many networks per batched step (default :func:`max_group_size`).
    channels_last : bool, optional
        Memory layout of the batched path's conv activations; default: channels-last on the
        CPU (faster there), NCHW on CUDA.
    progress : bool, optional

    Returns
    -------
    list of TrainedNet
        In the order of ``configs``. A network whose loss or weights became non-finite is
        ``status="failed"`` on the batched path (the others are trained on); on the
        one-by-one path :func:`~filtertopo.training.train` raises as usual.
    """
    configs = _as_configs(configs)
    if path not in PATHS:
        raise InputError(f"path must be one of {list(PATHS)}; got {path!r}.")
    dev = _device_of(configs, device)
    if device is not None:
        configs = [c.replace(device=str(device)) for c in configs]
    if out_dirs is not None:
        out_dirs = [Path(d) for d in out_dirs]
        if len(out_dirs) != len(configs):
            raise InputError(f"out_dirs must name one folder per config: {len(configs)} "
                             f"configs, {len(out_dirs)} folders.")
        if len(set(map(str, out_dirs))) != len(out_dirs):
            raise InputError("out_dirs must be distinct folders.")
        from .loop import check_run_dir

        for d in out_dirs:
            check_run_dir(d, force=force)
    chosen = choose_path(configs, dev) if path == "auto" else path
    if dev.type == "cpu":
        tune_malloc()
    results: list[TrainedNet | None] = [None] * len(configs)
    if chosen == "one_by_one":
        for i, c in enumerate(configs):
            results[i] = _train_one(c, None if out_dirs is None else out_dirs[i], force,
                                    progress)
        return results
    for idx in plan_groups(configs, dev, max_group=max_group):
        got = _train_stacked([configs[i] for i in idx],
                             None if out_dirs is None else [out_dirs[i] for i in idx],
                             dev, force, progress,
                             dev.type == "cpu" if channels_last is None else channels_last)
        for i, r in zip(idx, got):
            results[i] = r
    return results


def _train_one(config, run_dir, force, progress) -> TrainedNet:
    import tempfile

    from .loop import train

    with contextlib.ExitStack() as stack:
        if run_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "run"
            keep = None
        else:
            keep = run_dir
        train(config, run_dir, force=force, progress=progress)
        state = torch.load(run_dir / "model.pt", weights_only=True)
        status = json.loads((run_dir / "run.json").read_text())
        rows = _read_rows(run_dir / "metrics.csv")
    final = {k: status.get(k) for k in ("step", "epoch", "train_acc", "test_acc")}
    return TrainedNet(config, status["status"], state, final, rows, keep, "one_by_one")


def _read_rows(path):
    import csv

    with open(path, newline="") as fh:
        return [[int(r[0]), int(r[1])] + [float(v) for v in r[2:]]
                for r in list(csv.reader(fh))[1:]]


class _Pools:
    """The data of a group on the device: per distinct data_seed its train set, test set and
    the two eval subsets, transformed once (the transform is per image) and concatenated;
    per network the offsets of its own sets."""

    def __init__(self, configs, transform, device):
        parts_x, parts_y, self.sets = [], [], {}
        first = configs[0]
        n = 0
        for seed in dict.fromkeys(c.data_seed for c in configs):
            tr, te = load_dataset(first.dataset, root=first.data_root, download=first.download,
                                  seed=seed)
            if first.test_dataset is not None:
                _, te = load_dataset(first.test_dataset, root=first.data_root,
                                     download=first.download, seed=seed)
            if len(tr) == 0:
                raise InputError(f"data set {first.dataset!r} has no training images; use a "
                                 "larger data set or a smaller test fraction.")
            tr = tr.subset(first.n_train, seed=seed)
            ev_tr = tr.subset(first.eval_samples, seed=seed + 1)
            ev_te = te.subset(first.eval_samples, seed=seed + 1)
            offs = {}
            for name, d in (("train", tr), ("test", te), ("eval_train", ev_tr),
                            ("eval_test", ev_te)):
                offs[name] = (n, len(d))
                parts_x.append(torch.cat([transform(d.images[i:i + 4096])
                                          for i in range(0, len(d), 4096)])
                               if len(d) else torch.zeros(0, *transform(tr.images[:1]).shape[1:]))
                parts_y.append(d.labels)
                n += len(d)
            self.sets[seed] = (offs, tr, te)
        self.x = torch.cat(parts_x).to(device)
        self.y = torch.cat(parts_y).to(device)
        self.configs = configs
        self.device = device
        lens = {name: {self.sets[c.data_seed][0][name][1] for c in configs}
                for name in ("train", "test", "eval_train", "eval_test")}
        for name, v in lens.items():
            if len(v) != 1:
                raise InputError(f"the {name} sets of this group differ in size {sorted(v)}; "
                                 "train them in separate groups.")
        self.n = {name: v.pop() for name, v in lens.items()}

    def offsets(self, name):
        return torch.tensor([self.sets[c.data_seed][0][name][0] for c in self.configs],
                            dtype=torch.long, device=self.device)


def _evaluate(net, pools, name, cap=8192) -> torch.Tensor:
    """Accuracy (G,) of each network on its own ``name`` set, in eval mode."""
    G, n = net.groups, pools.n[name]
    if n == 0:
        return torch.full((G,), float("nan"))
    off = pools.offsets(name)
    was = net.training
    net.eval()
    correct = torch.zeros(G, dtype=torch.long, device=pools.device)
    step = max(1, min(500, cap // G))
    with torch.inference_mode():
        for i in range(0, n, step):
            j = torch.arange(i, min(n, i + step), device=pools.device)
            idx = off[:, None] + j[None, :]
            logits = net(net.to_grouped(pools.x[idx]))
            correct += (logits.argmax(-1) == pools.y[idx]).sum(1)
    net.train(was)
    return (correct.double() / n).cpu()


def gather(images, labels, idx, channels_last=False):
    """The batches of a step: network g gets ``images[idx[g]]``. Returns ``x`` in the grouped
    layout ``(b, G * C, H, W)`` and ``y`` of shape ``(G, b)``."""
    G, b = idx.shape
    x = images[idx.t()]                                        # (b, G, C, H, W)
    x = x.reshape(b, G * x.shape[2], *x.shape[3:])
    return (_channels_last(x) if channels_last else x), labels[idx]


def _channels_last(x):
    """``x`` with channels-last strides, also when C == 1 (where ``.contiguous`` keeps the
    ambiguous NCHW strides and convolutions then run, and answer, in NCHW)."""
    if x.shape[1] == 1 or x.ndim != 4:
        return x.clone(memory_format=torch.channels_last) if x.ndim == 4 else x
    return x.contiguous(memory_format=torch.channels_last)


def group_losses(logits, y, loss: str = "cross_entropy") -> torch.Tensor:
    """Per-network losses ``(G,)`` of logits ``(G, b, classes)`` and labels ``(G, b)``: each the
    loss :func:`~filtertopo.training.train` computes for that network's batch (``TrainConfig.loss``:
    mean cross-entropy, or ``"mse_softmax"``, the mean squared error of the softmax against
    the one-hot labels over the batch and the classes)."""
    G, b, k = logits.shape
    if loss == "cross_entropy":
        return F.cross_entropy(logits.reshape(G * b, k), y.reshape(-1),
                               reduction="none").view(G, b).mean(1)
    if loss == "mse_softmax":
        target = F.one_hot(y, k).to(logits.dtype)
        return (torch.softmax(logits, dim=2) - target).square().mean((1, 2))
    raise InputError(f"loss must be 'cross_entropy' or 'mse_softmax'; got {loss!r}.")


def stacked_step(net, opt, x, y, loss: str = "cross_entropy"):
    """One training step of every network of ``net``: each network's loss on its own batch
    (:func:`group_losses`), summed over networks (their parameters are disjoint, so each
    gets the gradient of its own loss), backward, optimiser step. Returns the detached logits
    ``(G, b, classes)`` and the losses ``(G,)``."""
    opt.zero_grad()
    logits = net(x)
    losses = group_losses(logits, y, loss)
    losses.sum().backward()
    opt.step()
    return logits.detach(), losses.detach()


def _train_stacked(configs, run_dirs, device, force, progress,
                   channels_last) -> list[TrainedNet]:
    from .loop import (TrainingDiverged, TrainingInterrupted, _dry_run, _env, _input_shape,
                       _sigterm_raises, _write_json)
    from .snapshots import SnapshotWriter, save_kernel_file

    G, c0 = len(configs), configs[0]
    shape = _input_shape(c0)
    transform = Transform(channels=shape[0], size=shape[1])
    models = [_build(c) for c in configs]  # the initial weights of train()
    pools = _Pools(configs, transform, device)
    offs0, tr0, te0 = pools.sets[c0.data_seed]
    _dry_run(models[0], c0, shape, transform, [tr0] + ([te0] if c0.test_dataset is None else []))
    net = StackedNet(models, channels_last=channels_last).to(device)
    opt = GroupOptimizer(net.stacked_parameters(), configs)
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    loss = getattr(c0, "loss", "cross_entropy")
    n, B = pools.n["train"], c0.batch_size
    steps_per_epoch = -(-n // B)
    train_off = pools.offsets("train")
    status = [{"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "pid": os.getpid(), "path": "batched", "group_size": G} for _ in configs]
    writers = [None] * G
    started = time.time()
    if run_dirs is not None:
        from .loop import _clear_run_dir

        try:
            for g, (c, d) in enumerate(zip(configs, run_dirs)):
                d.mkdir(parents=True, exist_ok=True)
                if force:
                    _clear_run_dir(d)
                offs, tr, te = pools.sets[c.data_seed]
                record = {"config": c.to_dict(), "input_shape": list(shape), "n_train": len(tr),
                          "n_test": len(te), "train_set": tr.name, "test_set": te.name,
                          "env": _env()}
                (d / "config.json").write_text(json.dumps(record, indent=2))
                _write_json(d / "run.json", status[g])
                if c.snapshot_every:
                    writers[g] = SnapshotWriter(d)
        except OSError as exc:
            raise InputError(f"run folder cannot be written ({exc.strerror or exc}: "
                             f"{exc.filename}); check the permissions and free space.") from None
    failed: dict[int, dict] = {}
    rows = [[] for _ in configs]
    last_snap = [0] * G

    def finite_params():
        ok = torch.ones(G, dtype=torch.bool, device=device)
        for p in net.stacked_parameters():
            ok &= torch.isfinite(p.detach()).reshape(G, -1).all(1)
        return ok.cpu()

    def fail_nonfinite(step, where):
        ok = finite_params()
        for g in range(G):
            if g not in failed and not ok[g]:
                failed[g] = {"type": TrainingDiverged.__name__,
                             "message": f"training diverged by step {step}: a parameter holds "
                                        f"NaN or infinite values ({where}; lr "
                                        f"{configs[g].lr:g}, optimizer {configs[g].optimizer}). "
                                        "Lower --lr, or use --optimizer adam with --lr 0.001.",
                             "step": step}

    def snapshot(step, losses, which):
        fail_nonfinite(step, "at a snapshot")
        acc_tr = _evaluate(net, pools, "eval_train")
        acc_te = _evaluate(net, pools, "eval_test")
        for g in which:
            if g in failed:
                continue
            writers[g].write(net.kernels(g), step=step, epoch=step / steps_per_epoch,
                             train_acc=float(acc_tr[g]), test_acc=float(acc_te[g]),
                             train_loss=float(losses[g]))
            last_snap[g] = step

    from tqdm.auto import tqdm

    from .loop import _show

    bar = tqdm(total=steps_per_epoch * c0.epochs, disable=not _show(progress),
               desc=f"train {G} nets", leave=False)
    threads = torch.get_num_threads()
    step = 0
    try:
        with _sigterm_raises():
            if c0.threads:
                torch.set_num_threads(c0.threads)
            snap_nets = [g for g in range(G) if writers[g] is not None]
            if snap_nets:
                snapshot(0, [float("nan")] * G, snap_nets)
            net.train()
            for epoch in range(1, c0.epochs + 1):
                order = torch.stack([torch.randperm(n, generator=gen) for gen in gens])
                order = order.to(device) + train_off[:, None]
                loss_sum = torch.zeros(G, dtype=torch.float64, device=device)
                correct = torch.zeros(G, dtype=torch.long, device=device)
                bad_step = torch.zeros(G, dtype=torch.long, device=device)
                seen = 0
                for i in range(0, n, B):
                    x, y = gather(pools.x, pools.y, order[:, i:i + B], net.channels_last)
                    b = y.shape[1]
                    logits, losses = stacked_step(net, opt, x, y, loss)
                    step += 1
                    det = losses.detach()
                    bad_step = torch.where((bad_step == 0) & ~torch.isfinite(det),
                                           torch.full_like(bad_step, step), bad_step)
                    loss_sum += det.double() * b
                    correct += (logits.argmax(-1) == y).sum(1)
                    seen += b
                    bar.update(1)
                    due = [g for g in snap_nets if step % configs[g].snapshot_every == 0]
                    if due:
                        snapshot(step, (loss_sum / seen).tolist(), due)
                for g, s in enumerate(bad_step.tolist()):
                    if s and g not in failed:
                        failed[g] = {"type": TrainingDiverged.__name__,
                                     "message": f"training diverged at step {s} (epoch {epoch}): "
                                                f"the loss is not finite (lr {configs[g].lr:g}, "
                                                f"optimizer {configs[g].optimizer}). Lower --lr, "
                                                "or use --optimizer adam with --lr 0.001.",
                                     "step": s}
                fail_nonfinite(step, f"end of epoch {epoch}")
                test_acc = _evaluate(net, pools, "test")
                mean_loss = (loss_sum / max(seen, 1)).tolist()
                acc = (correct.double() / max(seen, 1)).tolist()
                now = time.time() - started
                for g in range(G):
                    if g in failed:
                        continue
                    rows[g].append([epoch, step, mean_loss[g], acc[g], float(test_acc[g]), now])
                bar.set_postfix(loss=f"{np.nanmean(mean_loss):.3f}")
            fail_nonfinite(step, "end of training")
            for g in snap_nets:
                if g not in failed and last_snap[g] != step:
                    snapshot(step, [r[-1][2] if r else float("nan") for r in rows], [g])
            acc_tr = acc_te = torch.full((G,), float("nan"))
            if c0.epochs == 0:
                acc_tr = _evaluate(net, pools, "eval_train")
                acc_te = _evaluate(net, pools, "eval_test")
    except KeyboardInterrupt as exc:
        for g in range(G):
            status[g].update(status="interrupted", step=step,
                             seconds=round(time.time() - started, 3),
                             signal="SIGTERM" if isinstance(exc, TrainingInterrupted)
                             else "SIGINT")
        _write_status(run_dirs, status, _write_json)
        raise
    except BaseException as exc:
        for g in range(G):
            status[g].update(status="failed", step=step, seconds=round(time.time() - started, 3),
                             error={"type": type(exc).__name__, "message": str(exc)})
        _write_status(run_dirs, status, _write_json)
        raise
    finally:
        bar.close()
        torch.set_num_threads(threads)
    states = net.state_dicts()
    seconds = round(time.time() - started, 3)
    out = []
    for g, c in enumerate(configs):
        r = rows[g]
        final = {"step": step, "epoch": c.epochs,
                 "train_acc": r[-1][3] if r else float(acc_tr[g]),
                 "test_acc": r[-1][4] if r else float(acc_te[g])}
        if g in failed:
            err = {k: v for k, v in failed[g].items() if k != "step"}
            status[g].update(status="failed", step=failed[g]["step"], seconds=seconds, error=err)
            out.append(TrainedNet(c, "failed", states[g], final, r, None, "batched", err))
        else:
            status[g].update(status="complete", seconds=seconds, device=str(device), **final)
            out.append(TrainedNet(c, "complete", states[g], final, r, None, "batched"))
        if run_dirs is not None:
            d = run_dirs[g]
            out[-1].run_dir = d
            _write_rows(d / "metrics.csv", r)
            if g not in failed:
                save_kernel_file(d / "kernels.npz", out[-1].kernels,
                                 metadata={**final, "model": c.model, "seed": c.seed})
                torch.save(states[g], d / "model.pt")
            _write_json(d / "run.json", status[g])
    return out


def _write_status(run_dirs, status, write_json):
    if run_dirs is None:
        return
    for d, s in zip(run_dirs, status):
        with contextlib.suppress(Exception):
            write_json(d / "run.json", s)


def _write_rows(path, rows):
    import csv

    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["epoch", "step", "train_loss", "train_acc", "test_acc", "seconds"])
        for row in rows:
            out.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
