"""Training and watching CNNs whose filters filtertopo analyses (extra: torch).

Beside the core and using it: the core never imports this package. The seam is
the kernel file (``.npz`` keyed by layer name, OIHW float32) that training
writes and :func:`filtertopo.analyze` reads.

Layer names: registry models are ``nn.Sequential`` of named layers, so their
conv kernels are exported as ``"conv1"``, ``"conv2"``, ... (first layer =
``"conv1"``); a user's module exports its ``named_modules()`` names.
"""

from .data import DATASETS, ImageData, Transform, image_folder, load_dataset
from .loop import TrainConfig, evaluate, train, train_seeds
from .monitor import TopologyMonitor
from .models import (MODELS, ModelSpec, conv_kernels, create_model, list_models,
                     register_model)
from .snapshots import Snapshot, SnapshotWriter, read_index
from .track import TrackResult, track  # rebinds the name `track` from submodule to function

__all__ = [
    "MODELS", "ModelSpec", "register_model", "create_model", "list_models", "conv_kernels",
    "DATASETS", "ImageData", "Transform", "load_dataset", "image_folder",
    "TrainConfig", "train", "train_seeds", "evaluate",
    "Snapshot", "SnapshotWriter", "read_index",
    "track", "TrackResult", "TopologyMonitor",
]

