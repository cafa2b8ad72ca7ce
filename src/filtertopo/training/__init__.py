"""Training and watching CNNs whose filters filtertopo analyses (extra: torch).

Beside the core and using it: the core never imports this package. The seam is
the kernel file (``.npz`` keyed by layer name, OIHW float32) that training
writes and :func:`filtertopo.analyze` reads.

Layer names: registry models are ``nn.Sequential`` of named layers, so their
conv kernels are exported as ``"conv1"``, ``"conv2"``, ... (first layer =
``"conv1"``); a user's module exports its ``named_modules()`` names.

Tracking the snapshots of a run (:func:`filtertopo.tracking.track`) needs no torch and
lives in the core; ``track`` and ``TrackResult`` are re-exported here. This package never
imports :mod:`filtertopo.report` (tests/test_imports.py): figures of training results are
drawn by the report functions, called by the CLI or the user.
"""

from ..tracking import TrackResult, track  # torch-free; re-exported for compatibility
from .data import DATASETS, ImageData, Transform, image_folder, load_dataset
from .loop import TrainConfig, evaluate, train, train_seeds
from .monitor import TopologyMonitor
from .models import (MODELS, ModelSpec, conv_kernels, create_model, list_models,
                     register_model)
from .snapshots import Snapshot, SnapshotWriter, read_index

__all__ = [
    "MODELS", "ModelSpec", "register_model", "create_model", "list_models", "conv_kernels",
    "DATASETS", "ImageData", "Transform", "load_dataset", "image_folder",
    "TrainConfig", "train", "train_seeds", "evaluate",
    "Snapshot", "SnapshotWriter", "read_index",
    "track", "TrackResult", "TopologyMonitor",
]

