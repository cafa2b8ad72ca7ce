"""Loading conv kernels from checkpoints, safely.

Formats, tried by content (magic bytes) before extension: ``.npz``, safetensors,
PyTorch checkpoints (``torch.load(weights_only=True)``; plain state_dict and the
usual nestings ``{"state_dict": ...}``, ``{"model": ...}``, Lightning), a live
``torch.nn.Module``, ONNX (``Conv`` initializers) and Keras ``.h5`` / ``.keras``
(HWIO -> OIHW). Nothing is ever unpickled unless the caller opts in with
``allow_pickle=True``.

A conv kernel is a 4-D floating tensor ``(C_out, C_in, kh, kw)`` with
``kh * kw >= 2``. Everything else is listed in :attr:`KernelBundle.skipped` with
the reason.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from .errors import InputError

__all__ = ["KernelBundle", "Skipped", "load_kernels", "kernels_from_module", "save_kernels",
           "as_bundle"]

_META_KEY = "__metadata__"
_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module",
                 "ema", "model_ema", "params", "weights")


@dataclass(frozen=True)
class Skipped:
    """A tensor that is not analysed, and why."""

    name: str
    shape: tuple
    reason: str


@dataclass(frozen=True)
class KernelBundle:
    """Conv kernels of one model, keyed by layer name, in OIHW float32 layout.

    Attributes
    ----------
    source : str
        Where the kernels came from (a path, or a description of an object).
    format : str
        ``"npz"``, ``"safetensors"``, ``"torch"``, ``"onnx"``, ``"keras"``, ``"module"`` or ``"arrays"``.
    kernels : dict of str -> ndarray of shape (C_out, C_in, kh, kw)
    skipped : tuple of Skipped
    metadata : dict
    """

    source: str
    format: str
    kernels: dict
    skipped: tuple = ()
    metadata: dict = field(default_factory=dict)

    def describe(self):
        """Rows ``(name, shape, n_filters, status)`` for every tensor, kernels first."""
        rows = [(n, tuple(w.shape), int(w.shape[0] * w.shape[1]), "analysed")
                for n, w in self.kernels.items()]
        rows += [(s.name, s.shape, 0, "skipped: " + s.reason) for s in self.skipped]
        return rows


def _layer_name(key: str) -> str:
    for suffix in (".weight", "/kernel:0", "/kernel", ".kernel", "/vars/0"):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def _classify(name, arr, *, layout="OIHW"):
    """Return (kernel OIHW float32 or None, Skipped or None)."""
    shape = tuple(int(s) for s in np.shape(arr))
    if not np.issubdtype(np.asarray(arr).dtype, np.floating):
        return None, Skipped(name, shape, f"not a float tensor (dtype {np.asarray(arr).dtype})")
    if len(shape) != 4:
        low = name.lower()
        if len(shape) == 1:
            what = "bias or normalisation parameter (1-D)"
            if any(t in low for t in ("bn", "norm", "running_", "batch")):
                what = "normalisation parameter (1-D)"
        elif len(shape) == 2:
            what = "linear layer (2-D)"
        elif len(shape) == 3:
            what = "1-D convolution (3-D tensor)"
        elif len(shape) == 5:
            what = "3-D convolution (5-D tensor)"
        else:
            what = f"{len(shape)}-D tensor"
        return None, Skipped(name, shape, what)
    arr = np.asarray(arr, dtype=np.float32)
    if layout == "HWIO":
        arr = np.transpose(arr, (3, 2, 0, 1))
    elif layout == "HWIM":  # Keras depthwise: (kh, kw, in, multiplier)
        kh, kw, cin, mult = arr.shape
        arr = np.transpose(arr, (2, 3, 0, 1)).reshape(cin * mult, 1, kh, kw)
    kh, kw = arr.shape[2], arr.shape[3]
    if kh * kw < 2:
        return None, Skipped(name, tuple(arr.shape), "1x1 convolution (no spatial extent)")
    if arr.shape[0] * arr.shape[1] == 0:
        return None, Skipped(name, tuple(arr.shape), "empty tensor")
    return np.ascontiguousarray(arr), None


def _bundle_from_items(items, source, fmt, metadata=None, layouts=None):
    kernels, skipped = {}, []
    for key, arr in items:
        layout = (layouts or {}).get(key, "OIHW")
        w, s = _classify(key, arr, layout=layout)
        if w is not None:
            name = _layer_name(key)
            if name in kernels:
                name = key
            kernels[name] = w
        else:
            skipped.append(s)
    return KernelBundle(str(source), fmt, kernels, tuple(skipped), dict(metadata or {}))


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    ext = path.suffix.lower()
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile as e:
            raise InputError(f"{path}: looks like a zip archive but cannot be read ({e}); "
                             "the file is probably truncated or corrupt. Re-export it.") from None
        if any(n.endswith("model.weights.h5") for n in names):
            return "keras"
        if any(n.endswith(".npy") for n in names) and not any(n.endswith(".pkl") for n in names):
            return "npz"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        raise InputError(f"{path}: a zip archive that is neither .npz, a PyTorch checkpoint nor a "
                         f".keras file (entries: {names[:5]}).")
    if len(head) >= 9 and ext != ".onnx":
        n = int.from_bytes(head[:8], "little")
        if 2 <= n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if ext == ".onnx":
        return "onnx"
    if head[:1] == b"\x80" or ext in (".pt", ".pth", ".ckpt", ".bin", ".tar"):
        return "torch"
    if ext == ".npz":
        return "npz"
    if ext == ".safetensors":
        return "safetensors"
    raise InputError(
        f"{path}: unknown checkpoint format (extension {ext or 'none'!r}, first bytes {head[:8]!r}). "
        "Supported: .npz, .safetensors, PyTorch .pt/.pth/.ckpt, .onnx, Keras .h5/.keras."
    )


def load_kernels(path, *, allow_pickle: bool = False) -> KernelBundle:
    """Load the conv kernels of one checkpoint file.

    Parameters
    ----------
    path : str or path-like
    allow_pickle : bool, default=False
        Allow full (code-running) unpickling of PyTorch checkpoints that are not
        plain tensors. Only for files you trust; a warning is issued.

    Returns
    -------
    KernelBundle
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {str(path)!r} does not exist. Check the path.")
    if path.is_dir():
        raise InputError(f"checkpoint {str(path)!r} is a folder; pass a file (.npz, .safetensors, .pt, .onnx, .h5).")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint {str(path)!r} is empty (0 bytes). Re-export it.")
    fmt = _sniff(path)
    try:
        loader = {"npz": _load_npz, "safetensors": _load_safetensors, "torch": _load_torch,
                  "onnx": _load_onnx, "keras": _load_keras}[fmt]
        return loader(path, allow_pickle=allow_pickle)
    except InputError:
        raise
    except ImportError as e:
        raise InputError(f"{path}: reading {fmt} files needs an optional dependency ({e}). "
                         f"Install it: pip install 'filtertopo[{fmt}]'.") from None
    except Exception as e:  # corrupt or truncated files surface as many exception types
        raise InputError(f"{path}: cannot read as {fmt} ({type(e).__name__}: {e}). "
                         "The file may be truncated or corrupt; re-export it.") from None


def _load_npz(path, allow_pickle=False):
    with np.load(path, allow_pickle=False) as z:
        meta = {}
        items = []
        for key in z.files:
            if key == _META_KEY:
                meta = json.loads(str(z[key]))
                continue
            items.append((key, z[key]))
    return _bundle_from_items(items, path, "npz", meta)


def _load_safetensors(path, allow_pickle=False):
    from safetensors import safe_open

    items, meta = [], {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            for key in f.keys():
                items.append((key, f.get_tensor(key)))
    except (TypeError, ValueError) as e:
        if "bfloat16" not in str(e).lower() and "bf16" not in str(e).lower():
            raise
        with safe_open(str(path), framework="pt") as f:  # bf16 needs torch
            meta = dict(f.metadata() or {})
            for key in f.keys():
                items.append((key, f.get_tensor(key).float().numpy()))
    if "filtertopo" in meta:
        meta = json.loads(meta["filtertopo"])
    return _bundle_from_items(items, path, "safetensors", meta)


def _flatten_state(obj, prefix=""):
    """Yield (dotted key, tensor-or-array) pairs from nested dicts/lists of tensors."""
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        yield prefix.rstrip("."), obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _flatten_state(v, f"{prefix}{k}.")


def _pick_state(obj):
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        for key in _NESTING_KEYS:
            sub = obj.get(key)
            if isinstance(sub, (Mapping, torch.nn.Module)):
                sub = _pick_state(sub)
                if any(True for _ in _flatten_state(sub)):
                    return sub
    return obj


def _strip_prefix(items):
    keys = [k for k, _ in items]
    for pre in ("module.", "model.", "_orig_mod.", "net."):
        if keys and all(k.startswith(pre) for k in keys):
            items = [(k[len(pre):], v) for k, v in items]
            keys = [k for k, _ in items]
    return items


def _load_torch(path, allow_pickle=False):
    try:
        import torch
    except ImportError as e:
        raise ImportError("torch") from e
    import pickle

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not allow_pickle:
            raise InputError(
                f"{path}: this PyTorch checkpoint holds objects other than tensors, and loading it "
                f"would run code from the file ({str(e).splitlines()[0][:200]}). filtertopo refuses by "
                "default. If you trust the file, pass --allow-pickle (Python: allow_pickle=True), or "
                "re-save it as a plain state_dict / safetensors."
            ) from None
        warnings.warn(f"{path}: unpickling with weights_only=False because allow_pickle=True; "
                      "this runs code from the file.", UserWarning, stacklevel=3)
        obj = torch.load(path, map_location="cpu", weights_only=False)
    state = _pick_state(obj)
    items = [(k, v.detach().float().cpu().numpy() if isinstance(v, torch.Tensor) and v.is_floating_point()
              else (v.cpu().numpy() if isinstance(v, torch.Tensor) else v))
             for k, v in _flatten_state(state)]
    if not items:
        raise InputError(f"{path}: the checkpoint holds no tensors (top-level type "
                         f"{type(obj).__name__}). Save model.state_dict().")
    return _bundle_from_items(_strip_prefix(items), path, "torch")


def _load_onnx(path, allow_pickle=False):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    conv_weights = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] in inits:
            conv_weights[node.input[1]] = node.name or node.input[1]
    items, skipped = [], []
    for name, t in inits.items():
        arr = numpy_helper.to_array(t)
        if name in conv_weights:
            items.append((name, arr))
        else:
            skipped.append(Skipped(name, tuple(arr.shape), "not the weight of a Conv node"))
    b = _bundle_from_items(items, path, "onnx")
    return KernelBundle(b.source, b.format, b.kernels, b.skipped + tuple(skipped), b.metadata)


def _load_keras(path, allow_pickle=False):
    import h5py

    def walk(f):
        items, layouts = [], {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                arr = obj[()]
                items.append((name, arr))
                if "depthwise" in name.lower():
                    layouts[name] = "HWIM"
                elif np.ndim(arr) == 4:
                    layouts[name] = "HWIO"

        f.visititems(visit)
        return items, layouts

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            inner = [n for n in z.namelist() if n.endswith("model.weights.h5")][0]
            data = io.BytesIO(z.read(inner))
        with h5py.File(data, "r") as f:
            items, layouts = walk(f)
    else:
        with h5py.File(path, "r") as f:
            items, layouts = walk(f)
    return _bundle_from_items(items, path, "keras", layouts=layouts)


def kernels_from_module(module) -> KernelBundle:
    """Conv kernels of a live ``torch.nn.Module`` (its ``state_dict``)."""
    items = [(k, v.detach().float().cpu().numpy()) for k, v in module.state_dict().items()
             if v.is_floating_point()]
    return _bundle_from_items(items, f"<{type(module).__name__}>", "module")


def as_bundle(source, *, allow_pickle: bool = False) -> KernelBundle:
    """Turn a path, module, mapping of arrays or bundle into a :class:`KernelBundle`."""
    if isinstance(source, KernelBundle):
        return source
    if isinstance(source, (str, os.PathLike)):
        return load_kernels(source, allow_pickle=allow_pickle)
    if isinstance(source, Mapping):
        return _bundle_from_items([(k, np.asarray(v)) for k, v in source.items()], "<arrays>", "arrays")
    if type(source).__module__.startswith("torch") or hasattr(source, "state_dict"):
        return kernels_from_module(source)
    raise InputError(
        f"source must be a checkpoint path, a torch.nn.Module, a KernelBundle or a mapping of "
        f"layer name -> OIHW array; got {type(source).__name__}."
    )


def save_kernels(path, kernels: Mapping, metadata: dict | None = None, *, overwrite: bool = False) -> Path:
    """Write conv kernels keyed by layer name to ``.npz`` (the training/analysis seam).

    Parameters
    ----------
    path : str or path-like
    kernels : mapping of str -> array of shape (C_out, C_in, kh, kw)
    metadata : dict, optional
        JSON-serialisable; stored under ``__metadata__`` (as text, no pickle).
    overwrite : bool, default=False
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; pass overwrite=True to replace it.")
    arrays = {str(k): np.asarray(v, dtype=np.float32) for k, v in kernels.items()}
    if _META_KEY in arrays:
        raise InputError(f"layer name {_META_KEY!r} is reserved.")
    arrays[_META_KEY] = np.array(json.dumps(metadata or {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path
