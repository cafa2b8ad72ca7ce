"""Seeded, deterministic CPU training of the CNNs studied by Gabrielsson & Carlsson (2019).

``train(config, run_dir)`` writes a run folder::

    run_dir/config.json     resolved TrainConfig + versions + input shape
    run_dir/run.json        status: "running" -> "complete", or "failed" (with error type and
                            message) / "interrupted" (Ctrl-C, SIGTERM); timings, final accuracies
    run_dir/metrics.csv     one row per epoch: epoch, step, train_loss, train_acc, test_acc, seconds
    run_dir/kernels.npz     final conv kernels keyed by layer name (OIHW float32)
    run_dir/model.pt        final state_dict (torch.save, loadable with weights_only=True)
    run_dir/snapshots/      step_000000.npz ... + index.csv (when snapshot_every > 0)

Determinism: the model is initialised under ``torch.random.fork_rng`` seeded with
``seed`` (the caller's global RNG state is restored afterwards), batches are
drawn from a private ``torch.Generator``, and the thread count is fixed while
training. The same config on the same machine gives bit-identical weights.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import difflib
import json
import math
import os
import re
import signal
import stat
import threading
import platform
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, check_range
from .data import DATASETS, Transform, load_dataset
from .models import conv_kernels, create_model, get_spec, list_models
from .snapshots import SnapshotWriter, save_kernel_file

__all__ = ["TrainConfig", "train", "train_seeds", "evaluate", "OPTIMIZERS", "LOSSES", "PRIOR_MODES",
           "SEED_MAX", "RUN_FILES", "TrainingDiverged", "TrainingInterrupted", "build_model",
           "loss_function"]

OPTIMIZERS = ("sgd", "adam", "adamw")

#: ``TrainConfig.loss``: ``"cross_entropy"`` (the default) or ``"mse_softmax"``, the mean
#: squared error between the softmax of the logits and the one-hot labels, averaged over the
#: batch and the classes (the loss of Love et al. 2023's experiments).
LOSSES = ("cross_entropy", "mse_softmax")

#: ``TrainConfig.prior_mode``: the bank is fixed (a buffer, never trained) or the initial weight.
PRIOR_MODES = ("fixed", "init")

#: Fields left out of :meth:`TrainConfig.key` while they hold these values, so that every run id
#: from before they existed stays the same (``prior_mode`` / ``prior_layer`` only matter with
#: a prior).
_KEY_DEFAULTS = {"loss": "cross_entropy"}
_PRIOR_FIELDS = ("prior", "prior_mode", "prior_layer")

#: Largest accepted ``seed`` / ``data_seed``: seeds are integers in ``[0, 2**32 - 1]``, the
#: range that numpy (``default_rng``) and torch (``manual_seed``) both accept.
SEED_MAX = 2**32 - 1

#: The files :func:`train` writes at the top of a run folder (``--force`` replaces only
#: these and the snapshot files; any other file or folder is left alone).
RUN_FILES = ("config.json", "run.json", "metrics.csv", "kernels.npz", "model.pt")

_FLAG = {"lr": "--lr", "momentum": "--momentum", "weight_decay": "--weight-decay",
         "batch_size": "--batch-size", "epochs": "--epochs", "snapshot_every": "--snapshot-every",
         "eval_samples": "--eval-samples", "n_train": "--n-train", "threads": "--threads",
         "seed": "--seed", "data_seed": "--data-seed", "prior": "--prior",
         "prior_mode": "--prior-mode", "prior_layer": "--prior-layer", "loss": "--loss"}
_EXAMPLE = {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.001, "batch_size": 32, "epochs": 5,
            "snapshot_every": 10, "eval_samples": 500, "n_train": 1000, "threads": 1,
            "in_channels": 1, "input_size": 28, "num_classes": 10}


class TrainingDiverged(InputError):
    """The loss or the weights became NaN or infinite during training (lower the learning rate)."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM arrived while training (raised by the handler :func:`train` installs)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; saved as ``config.json``.

    Parameters
    ----------
    model : str
        Registry name (``filtertopo.training.list_models()``).
    model_kwargs : dict
        Passed to the model factory (e.g. ``{"width": 0.25}`` for VGG).
    dataset : str
        ``"mnist_subset"``, ``"digits"``, ``"mnist"``, ``"cifar10"``, ``"svhn"`` or
        ``"folder:<path>"``.
    test_dataset : str, optional
        Evaluate on another set's test split (cross-data-set accuracy); images
        are converted to the model's channels and size.
    data_root : str, optional
        Local folder of the files of mnist / cifar10 / svhn.
    download : bool
        Allow torchvision to download missing files.
    n_train : int, optional
        Use only this many training images (seeded subset).
    data_seed : int
        Seed of the offline sets' train/test split and of subsets; keep it fixed
        across the copies of a pooled study so they share one test set. An integer in
        ``[0, 2**32 - 1]`` (:data:`SEED_MAX`), like ``seed``.
    optimizer : {"sgd", "adam", "adamw"}
    lr, momentum, weight_decay : float
        Finite; ``lr > 0``, ``momentum, weight_decay >= 0`` (NaN and inf are refused).
        Defaults (SGD, 0.05, 0.9, 1e-3) are the recipe under which the pooled first
        layer of the MNIST net showed the primary circle most clearly here; weight
        decay shrinks the random part of the initial filters (docs/training.md).
    batch_size, epochs : int
    seed : int
        Initialisation and batch-order seed, an integer in ``[0, 2**32 - 1]``: the range
        that numpy and torch both accept (``--seed``).
    snapshot_every : int
        Snapshot the conv kernels every this many batches, and at step 0 and at
        the end; 0 writes no snapshots.
    eval_samples : int
        Images used for the train/test accuracy recorded with each snapshot.
    threads : int, optional
        ``torch.set_num_threads`` during training (restored afterwards).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (CUDA when available).
        The model is always initialised on the CPU, so a seed gives the same initial
        weights on every device; bit-identical training is only promised on the CPU.
    prior : str, optional
        A topological prior put into ``prior_layer`` of the freshly built model by
        :func:`filtertopo.priors.apply`: a name of :data:`filtertopo.priors.PRIOR_NAMES`
        (``"circle"``, ``"klein"``, ``"klein_kol"``, ``"circle_raw"``, ``"gabor"``, ...;
        ``--prior``). None (default) for none; the string ``"none"`` (any case) is read as
        None, because TOML (a sweep spec's axis ``prior = ["none", "klein"]``) has no null.
    prior_mode : {"fixed", "init"}, default="fixed"
        ``"fixed"``: the bank is a buffer, never trained (not in the optimiser); ``"init"``:
        the layer's trainable weight starts as the bank (``--prior-mode``).
    prior_layer : str, default="conv1"
        Module name of the conv that gets the prior (``--prior-layer``).
    loss : {"cross_entropy", "mse_softmax"}, default="cross_entropy"
        :data:`LOSSES` (``--loss``).

    Notes
    -----
    :meth:`key` leaves out ``prior``, ``prior_mode`` and ``prior_layer`` when ``prior`` is
    None, and ``loss`` when it is ``"cross_entropy"``: a config that uses none of them has the
    id it had before these fields existed.
    """

    model: str = "mnist_net"
    model_kwargs: dict = field(default_factory=dict)
    dataset: str = "mnist_subset"
    test_dataset: typing.Optional[str] = None
    data_root: typing.Optional[str] = None
    download: bool = False
    n_train: typing.Optional[int] = None
    data_seed: int = 0
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-3
    batch_size: int = 32
    epochs: int = 5
    seed: int = 0
    snapshot_every: int = 0
    eval_samples: int = 500
    threads: typing.Optional[int] = None
    device: str = "cpu"
    prior: typing.Optional[str] = None
    prior_mode: str = "fixed"
    prior_layer: str = "conv1"
    loss: str = "cross_entropy"

    def __post_init__(self):
        if isinstance(self.prior, str) and self.prior.strip().lower() == "none":
            object.__setattr__(self, "prior", None)  # TOML has no null: "none" spells no prior
        self.validate()

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict (e.g. a saved ``config.json``); unknown keys are errors."""
        if not isinstance(values, dict):
            raise InputError(f"config must be a dict; got {type(values).__name__}.")
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in allowed:
                raise InputError(f"unknown config key {key!r}; allowed keys: {allowed}.")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    #: Fields that say where or how a run executes, not what is trained: left out of :meth:`key`.
    KEY_EXCLUDES = ("data_root", "download", "threads", "device")

    def key(self) -> str:
        """Stable 16-hex-digit id of what is trained: the sha256 of the canonical JSON of
        :meth:`to_dict` without :attr:`KEY_EXCLUDES` (so one run has one id on a laptop and
        on a cluster), and without the prior fields when ``prior`` is None and ``loss`` when it
        is ``"cross_entropy"`` (so run ids from before those fields existed are unchanged).
        Same function as :meth:`filtertopo.config.AnalysisConfig.key`."""
        from ..config import config_key

        d = {k: v for k, v in self.to_dict().items() if k not in self.KEY_EXCLUDES}
        if d["prior"] is None:  # unused: every run id from before the priors stays the same
            for k in _PRIOR_FIELDS:
                d.pop(k)
        for k, default in _KEY_DEFAULTS.items():
            if d[k] == default:
                d.pop(k)
        return config_key(d)

    def validate(self):
        """Check every field's type and range; raise InputError naming the key."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            want = hints[f.name]
            optional = typing.get_origin(want) is typing.Union
            base = [a for a in typing.get_args(want) if a is not type(None)][0] if optional \
                else want
            if value is None and optional:
                continue
            ok = isinstance(value, base) and not (base in (int, float) and
                                                  isinstance(value, bool))
            if base is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                kind = base.__name__ + (" or None" if optional else "")
                raise InputError(f"config key {f.name!r} must be {kind}; got "
                                 f"{value!r} ({type(value).__name__}).")
        if self.model not in list_models():
            raise InputError(f"config key 'model' must be one of {list_models()}; "
                             f"got {self.model!r}.")
        for key in ("dataset", "test_dataset"):
            v = getattr(self, key)
            if v is not None and v not in DATASETS and not v.startswith("folder:"):
                raise InputError(f"config key {key!r} must be one of {list(DATASETS)} or "
                                 f"'folder:<path>'; got {v!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"config key 'optimizer' must be one of {list(OPTIMIZERS)}; "
                             f"got {self.optimizer!r}.")
        for key, low, strict in (("lr", 0.0, True), ("momentum", 0.0, False),
                                 ("weight_decay", 0.0, False)):
            v = getattr(self, key)
            rule = f"> {low:g}" if strict else f">= {low:g}"
            try:  # NaN and +-inf are refused: the upper bound inf is exclusive
                check_range(f"config key {key!r}", v, low=low, low_inclusive=not strict,
                            high=math.inf, high_inclusive=False)
            except InputError:
                raise InputError(f"config key {key!r} must be {rule} and finite; got {v!r}. "
                                 f"Set {_FLAG[key]} (or the config key) to a finite number, e.g. "
                                 f"{_EXAMPLE[key]}.") from None
            if v > FLOAT32_MAX:  # torch's optimisers apply them in float32: RuntimeError mid-step
                raise InputError(f"config key {key!r} ({_FLAG[key]}) must be at most {FLOAT32_MAX!r} "
                                 f"(torch applies it in float32); got {v!r}. Use e.g. "
                                 f"{_FLAG[key]} {_EXAMPLE[key]}.")
        for key, low in (("batch_size", 1), ("epochs", 0), ("snapshot_every", 0),
                         ("eval_samples", 1), ("n_train", 1), ("threads", 1)):
            v = getattr(self, key)
            if v is None:
                continue
            try:
                check_range(f"config key {key!r}", v, low=low, integer=True)
            except InputError:
                raise InputError(f"config key {key!r} must be >= {low}" +
                                 (" or None" if key in ("n_train", "threads") else "") +
                                 f"; got {v!r}. Set {_FLAG[key]} (or the config key) to e.g. "
                                 f"{_EXAMPLE[key]}.") from None
        for key in ("seed", "data_seed"):
            v = getattr(self, key)
            try:
                check_range(f"config key {key!r}", v, low=0, high=SEED_MAX, integer=True)
            except InputError:
                raise InputError(f"config key {key!r} must be an integer in [0, {SEED_MAX}] "
                                 f"(0 <= seed < 2**32, the range numpy and torch both accept); "
                                 f"got {v!r}. Set {_FLAG[key]} (or the config key) to e.g. 0."
                                 ) from None
        for key, value in self.model_kwargs.items():
            if not isinstance(key, str) or not key:
                raise InputError(f"config key 'model_kwargs' must map names to values; got the "
                                 f"key {key!r}. Use --model-kwarg NAME=VALUE.")
        for key in ("in_channels", "input_size", "num_classes"):
            if key in self.model_kwargs:
                v = self.model_kwargs[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise InputError(f"model_kwargs[{key!r}] (--model-kwarg {key}=...) must be "
                                     f"an integer >= 1; got {v!r}. Example: --model-kwarg "
                                     f"{key}={_EXAMPLE[key]}.")
        if not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", self.device):
            raise InputError(f"config key 'device' must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'; "
                             f"got {self.device!r}.")
        self._validate_prior()
        if self.loss not in LOSSES:
            close = difflib.get_close_matches(self.loss.lower(), LOSSES, 1, 0.4)
            raise InputError(f"config key 'loss' (--loss) must be one of {list(LOSSES)}; got {self.loss!r}."
                             + (f" Did you mean {close[0]!r}?" if close else ""))

    def _validate_prior(self):
        from ..priors import PRIOR_NAMES  # numpy only

        if self.prior is not None and self.prior not in PRIOR_NAMES:
            close = difflib.get_close_matches(self.prior.lower(), PRIOR_NAMES, 1, 0.5)
            raise InputError(f"config key 'prior' (--prior) must be one of {list(PRIOR_NAMES)}, or None "
                             f"(\"none\") for no prior; got {self.prior!r}." +
                             (f" Did you mean {close[0]!r}?" if close else ""))
        if self.prior_mode not in PRIOR_MODES:
            raise InputError(f"config key 'prior_mode' (--prior-mode) must be 'fixed' (the bank, never "
                             f"trained) or 'init' (a trainable weight that starts as the bank); got "
                             f"{self.prior_mode!r}.")
        if not self.prior_layer.strip():
            raise InputError("config key 'prior_layer' (--prior-layer) must name a conv module of the "
                             "model, e.g. 'conv1'; got ''.")


#: The largest float32: torch's optimizers apply lr and weight decay in float32.
FLOAT32_MAX = 3.4028234663852886e38
#: ``threads`` may be at most this many times the CPU cores this process may use.
THREADS_PER_CORE_MAX = 4


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads):
    """Refuse a thread count this machine should not start (checked where the run trains).

    ``torch.set_num_threads(N)`` starts N OpenMP threads, each with its own stack: 4096 of them
    ran out of memory under a 4 GB address-space limit (exit 1), 2**31 is a ValueError, and
    more threads than cores never train faster.
    """
    if threads is None:
        return
    cores = _cores()
    cap = THREADS_PER_CORE_MAX * cores
    if threads > cap:
        raise InputError(f"--threads (config key 'threads') must be at most {cap} ({THREADS_PER_CORE_MAX} x "
                         f"the {cores} CPU core(s) this process may use); got {threads}. torch would start "
                         f"that many threads. Use --threads {cores} or fewer.")


def resolve_device(name: str) -> "torch.device":
    """The torch device for a ``TrainConfig.device`` string; InputError if it is not available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"config key 'device' is {name!r}, but this torch build sees no CUDA GPU "
                         f"(torch {torch.__version__}). Use device='cpu' or 'auto'.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("config key 'device' is 'mps', but MPS is not available. Use 'cpu' or 'auto'.")
    return torch.device(name)


def _input_shape(config):
    spec = get_spec(config.model)
    c, h, w = spec.input_shape
    kw = {**spec.defaults, **config.model_kwargs}
    c = kw.get("in_channels", c)
    h = w = kw.get("input_size", h)
    return (int(c), int(h), int(w))


def build_model(config: "TrainConfig") -> "torch.nn.Module":
    """The freshly initialised model of a run: ``create_model`` and then the prior, if any.

    Both happen under ``torch.random.fork_rng`` seeded with ``config.seed`` (the caller's
    global RNG state is restored), and :func:`filtertopo.priors.apply` draws nothing more
    from it (``klein_randmask`` draws its mask seed last), so every layer the prior leaves
    alone has the initial weights of the same config without the prior.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_model(config.model, **config.model_kwargs)
        if config.prior is not None:
            from ..priors import apply

            try:
                apply(model, config.prior, layer=config.prior_layer, mode=config.prior_mode)
            except InputError as exc:
                raise InputError(f"config keys prior={config.prior!r}, prior_layer="
                                 f"{config.prior_layer!r} (--prior, --prior-layer) do not fit model "
                                 f"{config.model!r}: {exc}") from None
    return model


def loss_function(name: str):
    """``loss(logits, labels) -> scalar tensor`` for a name of :data:`LOSSES`."""
    if name == "cross_entropy":
        return F.cross_entropy
    if name == "mse_softmax":
        def mse_softmax(logits, y):
            target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
            return F.mse_loss(torch.softmax(logits, dim=1), target)
        return mse_softmax
    raise InputError(f"loss must be one of {list(LOSSES)}; got {name!r}.")


def evaluate(model, data, transform=None, batch_size: int = 500) -> float:
    """Accuracy of ``model`` on ``data`` (an :class:`ImageData`), in eval mode."""
    if len(data) == 0:
        return float("nan")
    was = model.training
    model.eval()
    correct = 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for x, y in data.batches(batch_size, transform):
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    model.train(was)
    return correct / len(data)


def _make_optimizer(config, params):
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def _env():
    import numpy

    try:
        from importlib.metadata import version
        ft = version("filtertopo")
    except Exception:
        ft = "unknown"
    return {"filtertopo": ft, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "machine": platform.platform(),
            "processor": platform.processor() or platform.machine()}


def _show(progress):
    return sys.stderr.isatty() if progress is None else bool(progress)


def _is_ours_in_snapshots(name: str) -> bool:
    """Names :class:`SnapshotWriter` writes in ``snapshots/`` (files --force may replace)."""
    return name == "index.csv" or re.fullmatch(r"\.?step_\d+\.npz(\..*\.npz)?", name) is not None


def _lstat(path: Path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"run folder entry {str(path)!r} cannot be inspected "
                         f"({exc.strerror or exc}); choose another --out.") from None


def _kind(mode) -> str:
    return "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) \
        else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or \
        stat.S_ISBLK(mode) else "not a regular file"


def check_run_dir(run_dir, *, force: bool = False) -> Path:
    """Refuse, before any work, a run folder :func:`train` cannot write.

    A file, a non-empty folder (unless ``force``), and a folder, FIFO or other
    non-regular entry where ``train`` writes a file (``run.json``, ``snapshots/index.csv``,
    ``snapshots/step_*.npz`` ...) are refused with InputError. Nothing is changed.
    """
    run_dir = Path(run_dir)
    st = _lstat(run_dir)
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(run_dir)
        except OSError:
            raise InputError(f"run folder {str(run_dir)!r} is a symbolic link to a missing "
                             "target; remove the link or choose another --out.") from None
    if st is None:
        return run_dir
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"run folder {str(run_dir)!r} is a file, not a folder; choose a folder "
                         "path for --out.")
    try:
        entries = list(run_dir.iterdir())
    except OSError as exc:
        raise InputError(f"run folder {str(run_dir)!r} cannot be listed ({exc.strerror or exc}); "
                         "check its permissions or choose another --out.") from None
    if entries and not force:
        raise InputError(f"run folder {str(run_dir)!r} is not empty; choose a new --out or "
                         "pass --force (force=True) to overwrite it.")
    for name in RUN_FILES:
        est = _lstat(run_dir / name)
        if est is not None and not (stat.S_ISREG(est.st_mode) or stat.S_ISLNK(est.st_mode)):
            raise InputError(f"{str(run_dir / name)!r} is {_kind(est.st_mode)}, where train writes "
                             f"the file {name}; remove or rename it, or choose another --out.")
    snaps = run_dir / "snapshots"
    est = _lstat(snaps)
    if est is not None:
        if not stat.S_ISDIR(est.st_mode):
            raise InputError(f"{str(snaps)!r} is not a folder, where train writes its snapshots; "
                             "remove or rename it, or choose another --out.")
        try:
            inner = list(snaps.iterdir())
        except OSError as exc:
            raise InputError(f"{str(snaps)!r} cannot be listed ({exc.strerror or exc}); check "
                             "its permissions or choose another --out.") from None
        for e in inner:
            est = _lstat(e)
            if est is not None and _is_ours_in_snapshots(e.name) and \
                    not (stat.S_ISREG(est.st_mode) or stat.S_ISLNK(est.st_mode)):
                raise InputError(f"{str(e)!r} is {_kind(est.st_mode)}, where train writes a "
                                 "snapshot file; remove or rename it, or choose another --out.")
    return run_dir


def _clear_run_dir(run_dir: Path):
    """Remove the files an earlier ``train`` wrote (only those; folders are never removed)."""
    import warnings

    victims = [run_dir / n for n in RUN_FILES]
    snaps = run_dir / "snapshots"
    if snaps.is_dir():
        for e in sorted(snaps.iterdir()):
            if _is_ours_in_snapshots(e.name):
                victims.append(e)
            else:
                warnings.warn(f"{e} is not a snapshot file written by filtertopo train; "
                              "left in place")
    for v in victims:
        st = _lstat(v)
        if st is not None and (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            v.unlink()


def _write_json(path: Path, obj: dict):
    """Write ``obj`` atomically (tmp file + rename); NaN becomes null."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in obj.items()}
    from .._io import atomic_write

    text = json.dumps(clean, indent=2)
    atomic_write(path, lambda tmp: tmp.write_text(text), flag="run file")


@contextlib.contextmanager
def _sigterm_raises():
    """While training, SIGTERM raises :class:`TrainingInterrupted` (the old handler is restored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise TrainingInterrupted(f"received {signal.Signals(signum).name}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


def _check_finite(model, step: int, config):
    for name, prm in model.named_parameters():
        if not bool(torch.isfinite(prm).all()):
            raise TrainingDiverged(
                f"training diverged at step {step}: parameter {name!r} holds NaN or infinite "
                f"values (lr {config.lr:g}, optimizer {config.optimizer}). Lower --lr, or use "
                "--optimizer adam with --lr 0.001.")


def _dry_run(model, config, shape, transform, sets):
    """Forward two training images on the CPU (eval mode, no RNG use) before any file is written,
    so that a model_kwargs / data mismatch is an InputError naming the cause, not a traceback
    from the middle of training. Returns the number of outputs."""
    train_set = sets[0]
    x = train_set.images[:2]
    try:
        x = transform(x)
    except InputError as exc:
        raise InputError(f"data set {config.dataset!r} ({train_set.shape[0]}-channel images) "
                         f"cannot be fed to model {config.model!r} with in_channels "
                         f"{shape[0]}: {exc}") from None
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"model {config.model!r} with model_kwargs {config.model_kwargs!r} "
                         f"cannot process {tuple(x.shape[1:])} inputs ({type(exc).__name__}: "
                         f"{exc}). Check --model-kwarg in_channels / input_size.") from None
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(x):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"model {config.model!r} must return logits of shape (batch, classes); "
                         f"got {got} for a batch of {len(x)}.")
    n_labels = 1 + max(int(d.labels.max()) for d in sets if len(d))
    if out.shape[1] < n_labels:
        raise InputError(f"model {config.model!r} has {out.shape[1]} outputs, but data set "
                         f"{config.dataset!r} has labels 0..{n_labels - 1}; set --model-kwarg "
                         f"num_classes={n_labels} (or more).")
    return int(out.shape[1])


def train(config: TrainConfig | dict, run_dir, *, force: bool = False,
          progress: bool | None = None) -> Path:
    """Train one network and write its run folder.

    Everything that can be checked is checked before any file is written: the
    config, the run folder, the device, the data set and the model (built and run
    on two images). ``run.json`` then says ``"running"`` and, at the end,
    ``"complete"``; ``"failed"`` (with ``error: {type, message}``) when training
    raises, including :class:`TrainingDiverged` when the loss or weights become
    NaN / infinite; ``"interrupted"`` on Ctrl-C or SIGTERM (a SIGTERM handler that
    raises :class:`TrainingInterrupted` is installed while training, in the main
    thread, and the old one restored afterwards). The exception is re-raised.

    Parameters
    ----------
    config : TrainConfig or dict
    run_dir : path
        Created if needed; must be empty unless ``force``.
    force : bool
        Reuse a non-empty folder: the files an earlier run wrote (:data:`RUN_FILES`,
        ``snapshots/index.csv`` and ``snapshots/step_*``) are removed first; other
        files and folders are left alone.
    progress : bool, optional
        tqdm bar; default on only when stderr is a terminal.

    Returns
    -------
    Path
        ``run_dir``.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    elif not isinstance(config, TrainConfig):
        raise InputError(f"config must be a TrainConfig or a dict; got {type(config).__name__}.")
    check_threads(config.threads)  # this machine's cores, before anything is written
    run_dir = check_run_dir(run_dir, force=force)
    device = resolve_device(config.device)
    shape = _input_shape(config)
    transform = Transform(channels=shape[0], size=shape[1])
    model = build_model(config)  # before the data: a bad model_kwarg or prior fails at once
    train_set, test_set = load_dataset(config.dataset, root=config.data_root,
                                       download=config.download, seed=config.data_seed)
    if config.test_dataset is not None:
        _, test_set = load_dataset(config.test_dataset, root=config.data_root,
                                   download=config.download, seed=config.data_seed)
    if len(train_set) == 0:
        raise InputError(f"data set {config.dataset!r} has no training images; use a larger "
                         "data set or a smaller test fraction.")
    train_set = train_set.subset(config.n_train, seed=config.data_seed)
    eval_train = train_set.subset(config.eval_samples, seed=config.data_seed + 1)
    eval_test = test_set.subset(config.eval_samples, seed=config.data_seed + 1)
    _dry_run(model, config, shape, transform,
             [train_set] + ([test_set] if config.test_dataset is None else []))
    # all checks passed: only now is anything written
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if force:
            _clear_run_dir(run_dir)
        record = {"config": config.to_dict(), "input_shape": list(shape),
                  "n_train": len(train_set), "n_test": len(test_set),
                  "train_set": train_set.name, "test_set": test_set.name, "env": _env()}
        (run_dir / "config.json").write_text(json.dumps(record, indent=2))
        started = time.time()
        status = {"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "pid": os.getpid()}
        _write_json(run_dir / "run.json", status)
    except OSError as exc:
        raise InputError(f"run folder {str(run_dir)!r} cannot be written "
                         f"({exc.strerror or exc}: {exc.filename}); check the permissions and "
                         "free space, or choose another --out.") from None

    threads = torch.get_num_threads()
    progress_state = {"step": 0}
    try:
        with _sigterm_raises():
            if config.threads:
                torch.set_num_threads(config.threads)
            final = _fit(model, config, run_dir, device, transform, train_set, test_set,
                         eval_train, eval_test, started, progress, progress_state)
            status.update(status="complete", seconds=round(time.time() - started, 3),
                          device=str(device), **final)
            _write_json(run_dir / "run.json", status)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (TrainingInterrupted)
        status.update(status="interrupted", step=progress_state["step"],
                      seconds=round(time.time() - started, 3),
                      signal="SIGTERM" if isinstance(exc, TrainingInterrupted) else "SIGINT")
        with contextlib.suppress(Exception):
            _write_json(run_dir / "run.json", status)
        raise
    except BaseException as exc:
        status.update(status="failed", step=progress_state["step"],
                      seconds=round(time.time() - started, 3),
                      error={"type": type(exc).__name__, "message": str(exc)})
        with contextlib.suppress(Exception):
            _write_json(run_dir / "run.json", status)
        raise
    finally:
        torch.set_num_threads(threads)
    return run_dir


def _fit(model, config, run_dir, device, transform, train_set, test_set, eval_train, eval_test,
         started, progress, state) -> dict:
    """The training loop proper; returns the final record for run.json."""
    model = model.to(device)
    gen = torch.Generator().manual_seed(config.seed)
    optimizer = _make_optimizer(config, model.parameters())
    loss_fn = loss_function(config.loss)
    writer = SnapshotWriter(run_dir) if config.snapshot_every else None
    steps_per_epoch = -(-len(train_set) // config.batch_size)
    total = steps_per_epoch * config.epochs

    def snapshot(step, loss):
        _check_finite(model, step, config)
        writer.write(conv_kernels(model), step=step, epoch=step / steps_per_epoch,
                     train_acc=evaluate(model, eval_train, transform),
                     test_acc=evaluate(model, eval_test, transform), train_loss=loss)

    if writer:
        snapshot(0, float("nan"))
    from tqdm.auto import tqdm

    bar = tqdm(total=total, disable=not _show(progress), desc=f"train seed {config.seed}",
               leave=False)
    step, last_snap, rows = 0, 0, []
    try:
        with open(run_dir / "metrics.csv", "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["epoch", "step", "train_loss", "train_acc", "test_acc", "seconds"])
            model.train()
            for epoch in range(1, config.epochs + 1):
                loss_sum, correct, seen = 0.0, 0, 0
                for x, y in train_set.batches(config.batch_size, transform, gen):
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    optimizer.zero_grad(set_to_none=True)
                    logits = model(x)
                    loss = loss_fn(logits, y)
                    value = loss.item()
                    if not math.isfinite(value):
                        raise TrainingDiverged(
                            f"training diverged at step {step + 1} (epoch {epoch}): the loss is "
                            f"{value} (lr {config.lr:g}, optimizer {config.optimizer}). Lower "
                            "--lr, or use --optimizer adam with --lr 0.001.")
                    loss.backward()
                    optimizer.step()
                    step += 1
                    state["step"] = step
                    loss_sum += value * len(y)
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(y)
                    bar.update(1)
                    if writer and step % config.snapshot_every == 0:
                        snapshot(step, loss_sum / seen)
                        last_snap = step
                _check_finite(model, step, config)
                test_acc = evaluate(model, test_set, transform)
                row = [epoch, step, loss_sum / max(seen, 1), correct / max(seen, 1), test_acc,
                       time.time() - started]
                out.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
                fh.flush()
                rows.append(row)
                bar.set_postfix(loss=f"{row[2]:.3f}", test_acc=f"{test_acc:.3f}")
    finally:
        bar.close()
    _check_finite(model, step, config)
    if writer and last_snap != step:
        snapshot(step, rows[-1][2] if rows else float("nan"))
    final = {"step": step, "epoch": config.epochs,
             "train_acc": rows[-1][3] if rows else evaluate(model, eval_train, transform),
             "test_acc": rows[-1][4] if rows else evaluate(model, eval_test, transform)}
    save_kernel_file(run_dir / "kernels.npz", conv_kernels(model),
                     metadata={**final, "model": config.model, "seed": config.seed})
    torch.save(model.state_dict(), run_dir / "model.pt")
    return final


def _train_job(job):
    config, run_dir, force = job  # config: a TrainConfig here, its dict in a worker
    return train(config, run_dir, force=force, progress=False)


def train_seeds(config: TrainConfig | dict, out_root, seeds, *, force: bool = False,
                progress: bool | None = None, workers: int = 1, executor=None) -> list[Path]:
    """Train one copy per seed into ``out_root/seed_<seed>`` (the paper pools copies).

    Parameters
    ----------
    config : TrainConfig or dict
        ``seed`` is replaced by each of ``seeds``.
    out_root : path
    seeds : iterable of int
    force : bool
        Overwrite non-empty run folders.
    progress : bool, optional
        Bar over networks; default only on a terminal.
    workers : int
        Train this many networks at once in separate processes (spawned), each
        with ``config.threads`` threads (1 when unset). With ``config.threads``
        set, results are bit-identical to ``workers=1``.
    executor : concurrent.futures.Executor, optional
        Train on it instead (``workers`` is then not used), e.g. a Dask
        ``Client.get_executor()``; each network gets ``config.threads`` threads (1 when
        unset). It is not shut down. See :func:`filtertopo.jobs.map_jobs`.

    Returns
    -------
    list of Path
        The run folders, in the order of ``seeds``.
    """
    from ..jobs import map_jobs

    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    check_range("workers", workers, low=1, integer=True, fix="Use 1 or the number of cores.")
    seeds = list(seeds)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s <= SEED_MAX:
            raise InputError(f"seeds must be integers in [0, {SEED_MAX}] (--seed S --seeds N "
                             f"trains seeds S..S+N-1); got {s!r}. Lower --seed or --seeds.")
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct (each is trained into seed_<s>); got {seeds}.")
    out_root = Path(out_root)
    if out_root.exists() and not out_root.is_dir():
        raise InputError(f"--out {str(out_root)!r} is a file, not a folder; choose a folder path.")
    jobs = [(config.replace(seed=s), out_root / f"seed_{s:03d}") for s in seeds]
    for _, run_dir in jobs:  # before any network is trained
        check_run_dir(run_dir, force=force)
    if executor is None and (workers == 1 or len(jobs) == 1):  # here, with this process's threads
        tasks = [(cfg, run_dir, force) for cfg, run_dir in jobs]
    else:  # several networks at once: one thread each unless config.threads says otherwise
        tasks = [(cfg.replace(threads=cfg.threads or 1).to_dict(), str(run_dir), force)
                 for cfg, run_dir in jobs]
    map_jobs(_train_job, tasks, executor=executor, n_jobs=workers, mp_context="spawn",
             blas_threads=None, progress=progress, desc="networks", unit="it")
    return [run_dir for _, run_dir in jobs]
