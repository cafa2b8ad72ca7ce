"""Seeded, deterministic CPU training of the CNNs studied by Gabrielsson & Carlsson (2019).

``train(config, run_dir)`` writes a run folder::

    run_dir/config.json     resolved TrainConfig + versions + input shape
    run_dir/run.json        status ("running" -> "complete"), timings, final accuracies
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

import csv
import dataclasses
import json
import re
import platform
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError, check_range
from .data import DATASETS, Transform, load_dataset
from .models import conv_kernels, create_model, get_spec, list_models
from .snapshots import SnapshotWriter, save_kernel_file

__all__ = ["TrainConfig", "train", "train_seeds", "evaluate", "OPTIMIZERS"]

OPTIMIZERS = ("sgd", "adam", "adamw")


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
        across the copies of a pooled study so they share one test set.
    optimizer : {"sgd", "adam", "adamw"}
    lr, momentum, weight_decay : float
        Defaults (SGD, 0.05, 0.9, 1e-3) are the recipe under which the pooled first
        layer of the MNIST net showed the primary circle most clearly here; weight
        decay shrinks the random part of the initial filters (docs/training.md).
    batch_size, epochs : int
    seed : int
        Initialisation and batch-order seed.
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

    def __post_init__(self):
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
        for key, low in (("lr", 0.0), ("batch_size", 1), ("epochs", 0), ("snapshot_every", 0),
                         ("eval_samples", 1), ("momentum", 0.0), ("weight_decay", 0.0)):
            v = getattr(self, key)
            if v < low or (key == "lr" and v == 0):
                rule = "> 0" if key == "lr" else f">= {low}"
                raise InputError(f"config key {key!r} must be {rule}; got {v!r}.")
        for key in ("n_train", "threads"):
            v = getattr(self, key)
            if v is not None and v < 1:
                raise InputError(f"config key {key!r} must be >= 1 or None; got {v!r}.")
        if not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", self.device):
            raise InputError(f"config key 'device' must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'; "
                             f"got {self.device!r}.")


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


def train(config: TrainConfig | dict, run_dir, *, force: bool = False,
          progress: bool | None = None) -> Path:
    """Train one network and write its run folder.

    Parameters
    ----------
    config : TrainConfig or dict
    run_dir : path
        Created if needed; must be empty unless ``force``.
    force : bool
        Reuse a non-empty folder (its snapshots are replaced).
    progress : bool, optional
        tqdm bar; default on only when stderr is a terminal.

    Returns
    -------
    Path
        ``run_dir``.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"run folder {str(run_dir)!r} is a file; choose a folder path.")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not force:
        raise InputError(f"run folder {str(run_dir)!r} is not empty; choose a new --out or "
                         "pass --force (force=True) to overwrite it.")
    run_dir.mkdir(parents=True, exist_ok=True)
    if force:
        for old in list((run_dir / "snapshots").glob("*")) if (run_dir / "snapshots").is_dir() \
                else []:
            old.unlink()
    shape = _input_shape(config)
    transform = Transform(channels=shape[0], size=shape[1])
    train_set, test_set = load_dataset(config.dataset, root=config.data_root,
                                       download=config.download, seed=config.data_seed)
    if config.test_dataset is not None:
        _, test_set = load_dataset(config.test_dataset, root=config.data_root,
                                   download=config.download, seed=config.data_seed)
    train_set = train_set.subset(config.n_train, seed=config.data_seed)
    eval_train = train_set.subset(config.eval_samples, seed=config.data_seed + 1)
    eval_test = test_set.subset(config.eval_samples, seed=config.data_seed + 1)
    record = {"config": config.to_dict(), "input_shape": list(shape),
              "n_train": len(train_set), "n_test": len(test_set),
              "train_set": train_set.name, "test_set": test_set.name, "env": _env()}
    (run_dir / "config.json").write_text(json.dumps(record, indent=2))
    started = time.time()
    status = {"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (run_dir / "run.json").write_text(json.dumps(status, indent=2))

    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = create_model(config.model, **config.model_kwargs)
        device = resolve_device(config.device)
        model = model.to(device)
        gen = torch.Generator().manual_seed(config.seed)
        optimizer = _make_optimizer(config, model.parameters())
        writer = SnapshotWriter(run_dir) if config.snapshot_every else None
        steps_per_epoch = -(-len(train_set) // config.batch_size)
        total = steps_per_epoch * config.epochs

        def snapshot(step, loss):
            writer.write(conv_kernels(model), step=step, epoch=step / steps_per_epoch,
                         train_acc=evaluate(model, eval_train, transform),
                         test_acc=evaluate(model, eval_test, transform), train_loss=loss)

        if writer:
            snapshot(0, float("nan"))
        from tqdm.auto import tqdm

        bar = tqdm(total=total, disable=not _show(progress), desc=f"train seed {config.seed}",
                   leave=False)
        step, last_snap, rows = 0, 0, []
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
                    loss = F.cross_entropy(logits, y)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    loss_sum += loss.item() * len(y)
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(y)
                    bar.update(1)
                    if writer and step % config.snapshot_every == 0:
                        snapshot(step, loss_sum / seen)
                        last_snap = step
                test_acc = evaluate(model, test_set, transform)
                row = [epoch, step, loss_sum / max(seen, 1), correct / max(seen, 1), test_acc,
                       time.time() - started]
                out.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
                fh.flush()
                rows.append(row)
                bar.set_postfix(loss=f"{row[2]:.3f}", test_acc=f"{test_acc:.3f}")
            bar.close()
        if writer and last_snap != step:
            snapshot(step, rows[-1][2] if rows else float("nan"))
        final = {"step": step, "epoch": config.epochs,
                 "train_acc": rows[-1][3] if rows else evaluate(model, eval_train, transform),
                 "test_acc": rows[-1][4] if rows else evaluate(model, eval_test, transform)}
        save_kernel_file(run_dir / "kernels.npz", conv_kernels(model),
                         metadata={**final, "model": config.model, "seed": config.seed})
        torch.save(model.state_dict(), run_dir / "model.pt")
    finally:
        torch.set_num_threads(threads)
    status.update(status="complete", seconds=round(time.time() - started, 3), device=str(device), **final)
    (run_dir / "run.json").write_text(json.dumps(status, indent=2))
    return run_dir


def _train_job(config_dict, run_dir, force):
    return train(TrainConfig.from_dict(config_dict), run_dir, force=force, progress=False)


def train_seeds(config: TrainConfig | dict, out_root, seeds, *, force: bool = False,
                progress: bool | None = None, workers: int = 1) -> list[Path]:
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

    Returns
    -------
    list of Path
        The run folders, in the order of ``seeds``.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    check_range("workers", workers, low=1, integer=True, fix="Use 1 or the number of cores.")
    from tqdm.auto import tqdm

    seeds = [int(s) for s in seeds]
    jobs = [(config.replace(seed=s), Path(out_root) / f"seed_{s:03d}") for s in seeds]
    bar = tqdm(total=len(jobs), desc="networks", disable=not _show(progress))
    if workers == 1 or len(jobs) == 1:
        runs = []
        for cfg, run_dir in jobs:
            runs.append(train(cfg, run_dir, force=force, progress=False))
            bar.update(1)
        bar.close()
        return runs
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_train_job, cfg.replace(threads=cfg.threads or 1).to_dict(),
                               str(run_dir), force): run_dir for cfg, run_dir in jobs}
        for fut in as_completed(futures):
            fut.result()  # re-raise a worker's error here
            bar.update(1)
    bar.close()
    return [run_dir for _, run_dir in jobs]
