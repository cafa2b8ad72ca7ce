"""Snapshots of conv kernels during training (Gabrielsson & Carlsson 2019, §6:
the structure of the filter space appears and changes over the course of training).

A run folder holds ``snapshots/step_000000.npz`` ... (the kernel format the
analysis reads, keyed by layer name, OIHW float32, with step/epoch/accuracy
metadata when :mod:`filtertopo.weights` provides ``save_kernels``) and one index,
``snapshots/index.csv``, with a row per snapshot: step, epoch, file, train_acc,
test_acc, train_loss. The index is appended and flushed after each file is
complete, so an interrupted run leaves a consistent prefix.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["Snapshot", "SnapshotWriter", "read_index", "save_kernel_file", "INDEX_FIELDS"]

INDEX_FIELDS = ("step", "epoch", "file", "train_acc", "test_acc", "train_loss")


def save_kernel_file(path, kernels: Mapping[str, np.ndarray], metadata: dict | None = None):
    """Write kernels with :func:`filtertopo.weights.save_kernels` (atomic, overwrites)."""
    from ..weights import save_kernels

    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in kernels.items()}
    meta = {k: (None if isinstance(v, float) and v != v else v)
            for k, v in (metadata or {}).items()}  # NaN is not JSON
    return save_kernels(Path(path), arrays, metadata=meta, overwrite=True)


@dataclass(frozen=True)
class Snapshot:
    """One row of ``snapshots/index.csv`` with the absolute path of its file."""

    step: int
    epoch: float
    path: Path
    train_acc: float
    test_acc: float
    train_loss: float


class SnapshotWriter:
    """Append snapshots of a model's conv kernels to ``run_dir/snapshots``.

    Parameters
    ----------
    run_dir : path
        Run folder; ``snapshots/`` is created inside.
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / "snapshots"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index = self.folder / "index.csv"
        if not self.index.exists():
            with open(self.index, "w", newline="") as fh:
                csv.writer(fh).writerow(INDEX_FIELDS)

    def write(self, kernels: Mapping[str, np.ndarray], *, step: int, epoch: float,
              train_acc: float = float("nan"), test_acc: float = float("nan"),
              train_loss: float = float("nan")) -> Snapshot:
        """Save ``kernels`` as ``step_{step:06d}.npz`` and append the index row."""
        name = f"step_{int(step):06d}.npz"
        meta = {"step": int(step), "epoch": float(epoch), "train_acc": float(train_acc),
                "test_acc": float(test_acc), "train_loss": float(train_loss)}
        save_kernel_file(self.folder / name, kernels, metadata=meta)
        with open(self.index, "a", newline="") as fh:
            csv.writer(fh).writerow([int(step), f"{epoch:.6g}", name, f"{train_acc:.6g}",
                                     f"{test_acc:.6g}", f"{train_loss:.6g}"])
        return Snapshot(int(step), float(epoch), self.folder / name, float(train_acc),
                        float(test_acc), float(train_loss))


def read_index(run_dir) -> tuple[list[Snapshot], list[str]]:
    """Read a run's snapshots, tolerating interrupted runs.

    Returns
    -------
    snapshots : list of Snapshot
        Rows whose file exists, sorted by step. Without an index (very old or
        broken run) the ``step_*.npz`` files themselves are listed.
    problems : list of str
        What is missing or inconsistent (index rows without file, files without
        row, unreadable rows, no ``run.json`` completion record).
    """
    run_dir = Path(run_dir)
    folder = run_dir / "snapshots"
    problems, snaps = [], []
    status = run_dir / "run.json"
    if status.exists():
        try:
            state = json.loads(status.read_text()).get("status")
        except ValueError:
            state = "unreadable"
        if state != "complete":
            problems.append(f"{run_dir}: run.json status is {state!r} (interrupted run?); "
                            "tracking the snapshots written so far")
    else:
        problems.append(f"{run_dir}: no run.json (not written by filtertopo train, or "
                        "interrupted before it started)")
    if not folder.is_dir():
        problems.append(f"{run_dir}: no snapshots/ folder; train with snapshot_every > 0")
        return snaps, problems
    seen = set()
    if (folder / "index.csv").exists():
        with open(folder / "index.csv", newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    path = folder / row["file"]
                    snap = Snapshot(int(row["step"]), float(row["epoch"]), path,
                                    float(row["train_acc"]), float(row["test_acc"]),
                                    float(row["train_loss"]))
                except (KeyError, TypeError, ValueError):
                    problems.append(f"{folder / 'index.csv'} line {i}: unreadable row skipped")
                    continue
                if not path.is_file():
                    problems.append(f"{path}: listed in index.csv but missing")
                    continue
                seen.add(path.name)
                snaps.append(snap)
    else:
        problems.append(f"{folder}: no index.csv; steps taken from file names, "
                        "accuracies unknown")
    nan = float("nan")
    for f in sorted(folder.glob("step_*.npz")):
        if f.name in seen or ".tmp" in f.name:
            continue
        try:
            step = int(f.stem.split("_")[1])
        except (IndexError, ValueError):
            problems.append(f"{f}: name not step_<number>.npz; skipped")
            continue
        if (folder / "index.csv").exists():
            problems.append(f"{f}: not in index.csv (interrupted while writing?); included")
        snaps.append(Snapshot(step, nan, f, nan, nan, nan))
    snaps.sort(key=lambda s: s.step)
    return snaps, problems
