"""Snapshots of conv kernels during training (Gabrielsson & Carlsson 2019, §6:
the structure of the filter space appears and changes over the course of training).

A run folder holds ``snapshots/step_000000.npz`` ... (the kernel format the
analysis reads, keyed by layer name, OIHW float32, with step/epoch/accuracy
metadata when :mod:`filtertopo.weights` provides ``save_kernels``) and one index,
``snapshots/index.csv``, with a row per snapshot: step, epoch, file, train_acc,
test_acc, train_loss. The index is appended and flushed after each file is
complete, so an interrupted run leaves a consistent prefix.

This module writes them. Reading them needs no torch: :class:`Snapshot`,
:func:`read_index` and :func:`read_regular_file` live in :mod:`filtertopo._snapshots_index`
(the core) and are re-exported here, so tracking never imports this package.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

import numpy as np

from .._snapshots_index import (INDEX_FIELDS, INDEX_MAX_BYTES, Snapshot, read_index,
                                read_regular_file)

__all__ = ["Snapshot", "SnapshotWriter", "read_index", "save_kernel_file", "INDEX_FIELDS",
           "read_regular_file", "INDEX_MAX_BYTES"]


def save_kernel_file(path, kernels: Mapping[str, np.ndarray], metadata: dict | None = None):
    """Write kernels with :func:`filtertopo.weights.save_kernels` (atomic, overwrites)."""
    from ..weights import save_kernels

    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in kernels.items()}
    meta = {k: (None if isinstance(v, float) and v != v else v)
            for k, v in (metadata or {}).items()}  # NaN is not JSON
    return save_kernels(Path(path), arrays, metadata=meta, force=True)


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
