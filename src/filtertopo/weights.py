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
import math
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from .errors import InputError, check_regular_file, env_limit

__all__ = ["KernelBundle", "Skipped", "load_kernels", "kernels_from_module", "save_kernels",
           "as_bundle", "MAX_TENSOR_BYTES", "max_tensor_bytes"]

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
    """Conv kernels of one model, keyed by layer name, in OIHW layout.

    Kernels are float32, except float64 kernels whose values would overflow or
    underflow in float32 (e.g. 1e300 or 1e-300): those stay float64.

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


#: The largest conv kernel filtertopo reads into memory, in bytes as converted (float32, or
#: float64 for float64 values that do not fit float32): 256 MiB, i.e. 67 M values or 7.4 M
#: 3x3 filters, 28 times the largest kernel of VGG / ResNet (512 x 512 x 3 x 3, 9.4 MB).
#: A layer that size already needs about 3 GB further on (every filter is held in float64
#: several times before subsampling). The declared size (shape x dtype) is checked *before*
#: reading, so a small file that declares a huge tensor (an HDF5 fill value, a stride-0 torch
#: view, an ``.npy`` header) is refused at once. Raise it with the environment variable
#: ``FILTERTOPO_MAX_TENSOR_BYTES`` (an integer number of bytes). Tensors that are not
#: analysed (linear layers, biases, ...) are listed without being read where the format
#: allows (``.npz``, safetensors, HDF5, ONNX).
MAX_TENSOR_BYTES = 256 * 2**20
#: The weights file inside a ``.keras`` archive is read into memory: at most this many
#: times :data:`MAX_TENSOR_BYTES` (1 GiB with the default), by its declared size.
KERAS_ARCHIVE_FACTOR = 4


def max_tensor_bytes() -> int:
    """:data:`MAX_TENSOR_BYTES`, or the value of ``FILTERTOPO_MAX_TENSOR_BYTES`` when set."""
    return env_limit("FILTERTOPO_MAX_TENSOR_BYTES", MAX_TENSOR_BYTES)


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def _bytes_both(n: int) -> str:
    return f"{n} bytes" + (f" ({_fmt_bytes(n)})" if n >= 1024 else "")


class _Lazy:
    """A tensor described by its header (shape, dtype) and read only when it is analysed."""

    __slots__ = ("shape", "dtype", "is_float", "out_itemsize", "_read")

    def __init__(self, shape, dtype, is_float, read, out_itemsize=4):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = str(dtype)
        self.is_float = bool(is_float)
        self.out_itemsize = int(out_itemsize)
        self._read = read

    def read(self):
        return self._read()


def _layer_name(key: str) -> str:
    for suffix in (".weight", "/kernel:0", "/kernel", ".kernel", "/vars/0"):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def _skip_reason(name, shape):
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
    return what


def _oihw_shape(shape, layout):
    if layout == "HWIO":
        return (shape[3], shape[2], shape[0], shape[1])
    if layout == "HWIM":
        return (shape[2] * shape[3], 1, shape[0], shape[1])
    return tuple(shape)


def _check_budget(source, name, shape, itemsize):
    limit = max_tensor_bytes()
    n = math.prod(int(s) for s in shape) * int(itemsize)
    if n > limit:
        raise InputError(
            f"{source}: tensor {name!r} declares shape {tuple(shape)}, {_bytes_both(n)} in memory, "
            f"over the limit MAX_TENSOR_BYTES = {_bytes_both(limit)}. A small file that "
            "declares a huge tensor is corrupt or hostile. If the file is genuine, raise the limit with the "
            f"environment variable FILTERTOPO_MAX_TENSOR_BYTES={n} (bytes), memory permitting."
        )


def _fits_float32(a) -> bool:
    """Whether casting the float64 array ``a`` to float32 keeps every finite value finite and normal."""
    finite = np.isfinite(a)
    mag = np.abs(np.where(finite, a, 0.0))
    if mag.size == 0:
        return True
    f32 = np.finfo(np.float32)
    return not (mag.max() > f32.max or ((mag > 0) & (mag < f32.smallest_normal)).any())


def _as_float(arr):
    """float32, or float64 when float64 values would overflow or underflow in float32 (T05, T06)."""
    a = np.asarray(arr)
    if a.dtype == np.float32:
        return a
    if a.dtype.itemsize >= 8 and np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64, copy=False)
        return a.astype(np.float32) if _fits_float32(a) else a
    return a.astype(np.float32)


def _classify(name, arr, *, layout="OIHW", source="<arrays>"):
    """Return (kernel OIHW float32/float64 or None, Skipped or None).

    ``arr`` is an array or a :class:`_Lazy`; a lazy tensor is read only if it is a conv
    kernel, after its declared size passed :data:`MAX_TENSOR_BYTES`.
    """
    if isinstance(arr, _Lazy):
        shape, is_float, dtype = arr.shape, arr.is_float, arr.dtype
    else:
        a = np.asarray(arr)
        shape, is_float, dtype = tuple(int(s) for s in a.shape), np.issubdtype(a.dtype, np.floating), a.dtype
    if not is_float:
        return None, Skipped(name, shape, f"not a float tensor (dtype {dtype})")
    if len(shape) != 4:
        return None, Skipped(name, shape, _skip_reason(name, shape))
    oihw = _oihw_shape(shape, layout)
    if oihw[2] * oihw[3] < 2:
        return None, Skipped(name, oihw, "1x1 convolution (no spatial extent)")
    if oihw[0] * oihw[1] == 0:
        return None, Skipped(name, oihw, "empty tensor")
    if isinstance(arr, _Lazy):
        _check_budget(source, name, shape, arr.out_itemsize)
        arr = arr.read()
    arr = _as_float(arr)
    if tuple(arr.shape) != shape:
        raise InputError(f"{source}: tensor {name!r} declares shape {shape} but holds {tuple(arr.shape)}; "
                         "the file is corrupt. Re-export it.")
    if layout == "HWIO":
        arr = np.transpose(arr, (3, 2, 0, 1))
    elif layout == "HWIM":  # Keras depthwise: (kh, kw, in, multiplier)
        kh, kw, cin, mult = arr.shape
        arr = np.transpose(arr, (2, 3, 0, 1)).reshape(cin * mult, 1, kh, kw)
    return np.ascontiguousarray(arr), None


def _bundle_from_items(items, source, fmt, metadata=None, layouts=None):
    kernels, skipped = {}, []
    for key, arr in items:
        layout = (layouts or {}).get(key, "OIHW")
        w, s = _classify(key, arr, layout=layout, source=source)
        if w is not None:
            name = _layer_name(key)
            if name in kernels:
                name = key
            kernels[name] = w
        else:
            skipped.append(s)
    return KernelBundle(str(source), fmt, kernels, tuple(skipped), dict(metadata or {}))


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _sniff(path: Path, size: int) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise InputError(f"checkpoint {str(path)!r} cannot be read ({e.strerror or e}). "
                         "Check its permissions (chmod u+r) and that it is a regular file.") from None
    ext = path.suffix.lower()
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
            raise InputError(f"{path}: looks like a zip archive but cannot be read ({e}); "
                             "the file is probably truncated or corrupt. Re-export it.") from None
        if any(n.endswith("model.weights.h5") for n in names):
            return "keras"
        if any(n.endswith(".npy") for n in names) and not any(n.endswith(".pkl") for n in names):
            return "npz"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"  # by content, whatever the extension (W05: a torch zip named .safetensors)
        raise InputError(f"{path}: a zip archive that is neither .npz, a PyTorch checkpoint nor a "
                         f".keras file (entries: {names[:5]}).")
    if len(head) >= 9 and ext != ".onnx" and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= size - 8:
            return "safetensors"
        if n >= 2 and (ext == ".safetensors" or head[:1] != b"\x80"):
            raise InputError(
                f"{path}: starts like a safetensors file, but its header-length field says {n} bytes and the "
                f"file has only {size}; the file is truncated or corrupt. Re-export it.")
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

    The format is recognised by content (magic bytes) first, then by extension. Conv
    kernels larger than :data:`MAX_TENSOR_BYTES` (by their declared size) are refused
    before they are read. HDF5 datasets stored outside the file (external raw storage,
    external links, virtual datasets) are refused.

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
    check_regular_file(path, "checkpoint")
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise InputError(f"checkpoint {str(path)!r} cannot be accessed ({e.strerror or e}).") from None
    if size == 0:
        raise InputError(f"checkpoint {str(path)!r} is empty (0 bytes). Re-export it.")
    fmt = _sniff(path, size)
    try:
        loader = {"npz": _load_npz, "safetensors": _load_safetensors, "torch": _load_torch,
                  "onnx": _load_onnx, "keras": _load_keras}[fmt]
        return loader(path, allow_pickle=allow_pickle)
    except InputError:
        raise
    except ImportError as e:
        raise InputError(f"{path}: reading {fmt} files needs an optional dependency ({e}). "
                         f"Install it: pip install 'filtertopo[{fmt}]'.") from None
    except MemoryError:
        raise InputError(f"{path}: not enough memory to read it as {fmt}. The file may declare more data "
                         "than it holds (corrupt); otherwise free memory or lower "
                         "FILTERTOPO_MAX_TENSOR_BYTES to refuse such tensors early.") from None
    except RecursionError:
        raise InputError(f"{path}: cannot read as {fmt}: nested too deeply. The file is corrupt or "
                         "not a checkpoint.") from None
    except Exception as e:  # corrupt or truncated files surface as many exception types
        raise InputError(f"{path}: cannot read as {fmt} ({type(e).__name__}: {str(e)[:300]}). "
                         "The file may be truncated or corrupt; re-export it.") from None


def _npy_header(fh):
    """(shape, fortran_order, dtype) of the ``.npy`` stream ``fh``, or None if it is not one."""
    fmt = np.lib.format
    magic = fh.read(6)
    if magic != b"\x93NUMPY":
        return None
    major, minor = fh.read(2)
    if (major, minor) == (1, 0):
        return fmt.read_array_header_1_0(fh)
    if (major, minor) == (2, 0):
        return fmt.read_array_header_2_0(fh)
    if hasattr(fmt, "_read_array_header"):
        return fmt._read_array_header(fh, version=(major, minor))
    raise ValueError(f"unsupported .npy format version {major}.{minor}")


def _load_npz(path, allow_pickle=False):
    meta, items = {}, []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.is_dir():
                continue
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with z.open(info) as fh:
                hdr = _npy_header(fh)
                header_len = fh.tell() if hdr is not None else 0
            if hdr is None:
                items.append((key, _Lazy((), "bytes (not an .npy array)", False, None)))
                continue
            shape, _, dtype = hdr
            if dtype.hasobject:
                if key == _META_KEY:
                    raise InputError(f"{path}: {_META_KEY} holds a pickled object; filtertopo never unpickles "
                                     "it. Re-save the metadata as text (save_kernels does).")
                items.append((key, _Lazy(shape, f"{dtype} (pickled Python objects, never loaded)", False, None)))
                continue
            declared = math.prod(int(s) for s in shape) * dtype.itemsize
            if declared > info.file_size - header_len:
                raise InputError(
                    f"{path}: array {key!r} declares shape {tuple(shape)} ({_fmt_bytes(declared)}) but its "
                    f"member holds only {info.file_size - header_len} bytes of data; the file is truncated or "
                    "corrupt. Re-export it.")

            def read(info=info):
                with z.open(info) as fh:
                    return np.lib.format.read_array(fh, allow_pickle=False)

            if key == _META_KEY:
                if declared > 16 * 2**20:
                    raise InputError(f"{path}: {_META_KEY} is {_fmt_bytes(declared)}; metadata over 16 MiB is "
                                     "refused. Re-save it.")
                meta = json.loads(str(read()))
                continue
            is_float = np.issubdtype(dtype, np.floating)
            items.append((key, _Lazy(shape, dtype, is_float, read, 8 if dtype.itemsize >= 8 else 4)))
        return _bundle_from_items(items, path, "npz", meta)


_ST_FLOAT = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E4M3FN": 1,
             "F8_E5M2FNUZ": 1, "F8_E4M3FNUZ": 1}


def _load_safetensors(path, allow_pickle=False):
    from safetensors import safe_open

    items = []
    with safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata() or {})
        for key in f.keys():
            sl = f.get_slice(key)
            shape, dtype = tuple(sl.get_shape()), str(sl.get_dtype())

            def read(key=key):
                try:
                    return f.get_tensor(key)
                except (TypeError, ValueError) as e:  # bf16 / fp8 need torch
                    with safe_open(str(path), framework="pt") as g:
                        t = g.get_tensor(key)
                    return t.double().numpy() if t.dtype.itemsize >= 8 else t.float().numpy()

            items.append((key, _Lazy(shape, dtype, dtype in _ST_FLOAT, read,
                                     8 if _ST_FLOAT.get(dtype, 4) >= 8 else 4)))
        if "filtertopo" in meta:
            meta = json.loads(meta["filtertopo"])
        return _bundle_from_items(items, path, "safetensors", meta)


def _torch_lazy(name, t):
    """A torch tensor as a :class:`_Lazy`: nothing is converted (or densified) until it is analysed."""
    import torch

    is_float = bool(t.is_floating_point()) and not t.is_quantized
    wide = t.dtype == torch.float64

    def read():
        x = t.detach()
        if x.device.type == "meta":
            raise InputError(f"tensor {name!r} is on the meta device: it has a shape but no values. "
                             "Save the real weights (model.to('cpu').state_dict()).")
        if x.layout != torch.strided:
            x = x.to_dense()
        x = x.cpu()
        return x.numpy() if wide else x.float().numpy()

    return _Lazy(tuple(t.shape), t.dtype, is_float, read, 8 if wide else 4)


_CONV_WEIGHT_LEAVES = ("weight", "weight_g", "weight_v", "weight_orig", "weight_u")


def _effective_conv_weights(module) -> dict:
    """{module name: the weight tensor each conv computes with} (``module.weight``: for a
    parametrised conv the computed weight, a buffer or a parameter alike), detached."""
    import torch
    from torch import nn

    convs = {}
    with torch.no_grad():
        for name, m in module.named_modules():
            if isinstance(m, nn.modules.conv._ConvNd):
                w = getattr(m, "weight", None)
                if isinstance(w, torch.Tensor):
                    convs[name] = w.detach()
    return convs


def conv_weights(module) -> dict:
    """The effective weight of every 2-D conv of a live module, keyed by module name, as OIHW
    float32 numpy copies (1x1 convs included; :func:`kernels_from_module` analyses and lists).

    The one module-to-kernels extractor: training snapshots, the monitor and
    :func:`kernels_from_module` all read the weights through it.
    """
    import torch

    return {name: w.to("cpu", torch.float32).numpy().copy()
            for name, w in _effective_conv_weights(module).items() if w.ndim == 4}


def _module_items(module):
    """(key, tensor) pairs of a live module, with the *effective* weight of every conv.

    A conv parametrised with ``torch.nn.utils.parametrize`` (weight norm, spectral norm,
    orthogonal, pruning masks ...) keeps ``parametrizations.weight.original`` (or
    ``weight_g`` / ``weight_v`` / ``weight_orig``) in its state_dict; the weight the
    layer computes with is ``module.weight``. That one is read, once, under the
    ``<conv>.weight`` key, in state_dict order; the raw parametrisation tensors are left out.
    """
    convs = _effective_conv_weights(module)

    def owner(key):
        parts = key.split(".")
        for i in range(len(parts) - 1, -1, -1):
            own, rest = ".".join(parts[:i]), parts[i:]
            if own in convs and ((len(rest) == 1 and rest[0] in _CONV_WEIGHT_LEAVES)
                                 or rest[:2] == ["parametrizations", "weight"]):
                return own
        return None

    items, done = [], set()
    for key, v in module.state_dict().items():
        own = owner(key)
        if own is None:
            items.append((key, v))
        elif own not in done:
            done.add(own)
            items.append((f"{own}.weight" if own else "weight", convs[own]))
    items += [(f"{own}.weight" if own else "weight", w) for own, w in convs.items() if own not in done]
    return items


def _flatten_state(obj, prefix=""):
    """Yield (dotted key, tensor-or-array) pairs from nested dicts/lists of tensors."""
    import torch

    if isinstance(obj, torch.nn.Module):
        for k, v in _module_items(obj):
            yield f"{prefix}{k}", v
    elif isinstance(obj, (torch.Tensor, np.ndarray)):
        yield prefix.rstrip("."), obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _flatten_state(v, f"{prefix}{k}.")


def _pick_state(obj):
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj
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


_PICKLE_SCAN_BYTES = 64 * 2**20
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _torch_reason(msg: str) -> str:
    """The informative line of torch's weights-only error (not its boilerplate)."""
    skip = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch 2.6")
    lines = [ln.strip() for ln in msg.splitlines()]
    lines = [ln for ln in lines if ln and not any(ln.startswith(s) or s in ln for s in skip)]
    return (lines[0] if lines else msg.strip())[:200]


def _pickle_globals(path):
    """Globals referenced by the well-formed pickles of a torch checkpoint (pickletools, no unpickling).

    Returns (n_complete, globals): how many pickles parsed completely, and the
    ``module.name`` of every GLOBAL / INST / STACK_GLOBAL in them (``"?"`` where a
    STACK_GLOBAL's operands cannot be resolved statically). A file of zeros or random
    bytes parses as no complete pickle.
    """
    import pickletools

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if i.filename.endswith("data.pkl")]
            if not infos or infos[0].file_size > _PICKLE_SCAN_BYTES:
                return 0, set()
            blobs = [z.read(infos[0])]
    else:
        with open(path, "rb") as f:
            blobs = [f.read(_PICKLE_SCAN_BYTES)]
    n_complete, found = 0, set()
    for blob in blobs:
        buf = io.BytesIO(blob)
        for _ in range(6):  # legacy files: magic, protocol, sys info, object, storage keys
            if buf.tell() >= len(blob):
                break
            seen, strings = set(), []
            try:
                for op, arg, _pos in pickletools.genops(buf):
                    if op.name in ("GLOBAL", "INST"):
                        seen.add(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL":
                        seen.add(".".join(strings[-2:]) if len(strings) >= 2 else "?")
                    elif isinstance(arg, str) and "UNICODE" in op.name:
                        strings.append(arg)
            except Exception:  # not a (complete) pickle: stop here
                break
            n_complete += 1
            found |= seen
    return n_complete, found


def _refused_global(path, err):
    """The global that makes a well-formed pickle unsafe, or None if the bytes are not a valid pickle."""
    try:
        n, found = _pickle_globals(path)
    except Exception:
        return None
    if n == 0 or not found:
        return None
    m = _GLOBAL_RE.search(str(err))
    named = m.group(1) if m else None
    if named and (named in found or "?" in found):
        return named
    torch_safe = ("torch._utils.", "collections.OrderedDict", "torch.FloatStorage", "torch.DoubleStorage",
                  "torch.HalfStorage", "torch.BFloat16Storage", "torch.LongStorage", "torch.IntStorage",
                  "torch.ByteStorage", "torch.BoolStorage", "torch.CharStorage", "torch.ShortStorage",
                  "torch.storage.", "torch._tensor._rebuild", "torch.serialization.", "torch.device",
                  "torch.Size", "torch.float", "torch.bfloat16", "torch.half")
    others = sorted(g for g in found if not g.startswith(torch_safe))
    return others[0] if others else None


def _load_torch(path, allow_pickle=False):
    try:
        import torch
    except ImportError as e:
        raise ImportError("torch") from e
    import pickle

    # A file object, not the path: torch.load would otherwise dispatch on the extension (W05).
    with open(path, "rb") as fh:
        try:
            obj = torch.load(fh, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            glob = _refused_global(path, e)
            if glob is None:
                raise InputError(
                    f"{path}: not a readable PyTorch checkpoint: its bytes are not a valid pickle "
                    f"({_torch_reason(str(e))}). The file is truncated, corrupt, or not a checkpoint; "
                    "re-export it (torch.save(model.state_dict(), path))."
                ) from None
            if not allow_pickle:
                raise InputError(
                    f"{path}: this PyTorch checkpoint holds objects other than tensors (it references "
                    f"{glob!r}), and loading it would run code from the file. filtertopo refuses by "
                    "default. If you trust the file, pass --allow-pickle (Python: allow_pickle=True), or "
                    "re-save it as a plain state_dict / safetensors."
                ) from None
            warnings.warn(f"{path}: unpickling with weights_only=False because allow_pickle=True; "
                          "this runs code from the file.", UserWarning, stacklevel=3)
            fh.seek(0)
            obj = torch.load(fh, map_location="cpu", weights_only=False)
    state = _pick_state(obj)
    items = [(k, _torch_lazy(k, v) if isinstance(v, torch.Tensor) else v) for k, v in _flatten_state(state)]
    if not items:
        raise InputError(f"{path}: the checkpoint holds no tensors (top-level type "
                         f"{type(obj).__name__}). Save model.state_dict().")
    return _bundle_from_items(_strip_prefix(items), path, "torch")


def _load_onnx(path, allow_pickle=False):
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    conv_weights = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] in inits:
            conv_weights[node.input[1]] = node.name or node.input[1]
    items, skipped = [], []
    for name, t in inits.items():
        shape = tuple(int(d) for d in t.dims)
        if name in conv_weights:
            try:
                np_dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
            except Exception:
                np_dtype = np.dtype(np.float32)
            is_float = np.issubdtype(np_dtype, np.floating)
            items.append((name, _Lazy(shape, np_dtype, is_float, lambda t=t: numpy_helper.to_array(t),
                                      8 if np_dtype.itemsize >= 8 else 4)))
        else:
            skipped.append(Skipped(name, shape, "not the weight of a Conv node"))
    b = _bundle_from_items(items, path, "onnx")
    return KernelBundle(b.source, b.format, b.kernels, b.skipped + tuple(skipped), b.metadata)


def _h5_walk(f, source):
    """(name, Dataset) of every dataset reachable by hard links; refuses data stored outside the file.

    X07: HDF5 external raw storage (``dset.external``) makes a dataset's bytes come from any
    file on the machine (a relative name resolves against the working directory); virtual
    datasets and external links also read other files. Any of them anywhere in the file is
    refused. Soft links are internal aliases and are not followed.
    """
    import h5py

    out, seen, stack = [], set(), [("", f)]
    while stack:
        prefix, group = stack.pop()
        for key in sorted(group.keys(), reverse=True):
            name = f"{prefix}{key}"
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise InputError(
                    f"{source}: HDF5 entry {name!r} is an external link to {link.filename!r}:{link.path!r}, "
                    "i.e. data outside this file. filtertopo reads only data stored inside the checkpoint. "
                    "Re-save the model so that its weights are stored in the file.")
            if isinstance(link, h5py.SoftLink):
                continue
            obj = group.get(key)
            if obj is None or obj.id in seen:
                continue
            seen.add(obj.id)
            if isinstance(obj, h5py.Group):
                stack.append((f"{name}/", obj))
            elif isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    raise InputError(
                        f"{source}: HDF5 dataset {name!r} is a virtual dataset, whose data comes from other "
                        "files. filtertopo reads only data stored inside the checkpoint. Re-save the model "
                        "with ordinary datasets.")
                ext = obj.external
                if ext:
                    files = ", ".join(repr(e[0].decode() if isinstance(e[0], bytes) else e[0]) for e in ext[:3])
                    raise InputError(
                        f"{source}: HDF5 dataset {name!r} uses external raw storage: its bytes are read from "
                        f"{files}, outside this file (a relative name resolves against the working folder). "
                        "filtertopo refuses it: that would analyse (and leak into the results) whatever "
                        "file it names. Re-save the model so that the data is stored in the file.")
                layout = obj.id.get_create_plist().get_layout()
                if layout not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
                    raise InputError(f"{source}: HDF5 dataset {name!r} has an unsupported storage layout "
                                     f"({layout}); its data may live outside the file. Re-save the model.")
                out.append((name, obj))
    out.sort(key=lambda t: t[0])
    return out


def _load_keras(path, allow_pickle=False):
    import h5py

    def walk(f):
        items, layouts = [], {}
        for name, d in _h5_walk(f, path):
            dt = d.dtype
            is_float = dt.kind == "f"
            items.append((name, _Lazy(d.shape or (), dt, is_float, lambda d=d: d[()],
                                      8 if dt.itemsize >= 8 else 4)))
            if "depthwise" in name.lower():
                layouts[name] = "HWIM"
            elif len(d.shape or ()) == 4:
                layouts[name] = "HWIO"
        return _bundle_from_items(items, path, "keras", layouts=layouts)

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            inner = [i for i in z.infolist() if i.filename.endswith("model.weights.h5")][0]
            limit = KERAS_ARCHIVE_FACTOR * max_tensor_bytes()
            if inner.file_size > limit:
                raise InputError(
                    f"{path}: its {inner.filename} declares {_fmt_bytes(inner.file_size)} uncompressed, over "
                    f"the limit of {KERAS_ARCHIVE_FACTOR} x MAX_TENSOR_BYTES = {_fmt_bytes(limit)} for the "
                    "weights file read into memory. If the file is genuine, raise the limit with the "
                    f"environment variable FILTERTOPO_MAX_TENSOR_BYTES={-(-inner.file_size // KERAS_ARCHIVE_FACTOR)}.")
            data = io.BytesIO(z.read(inner))
        with h5py.File(data, "r") as f:
            return walk(f)
    with h5py.File(path, "r") as f:
        return walk(f)


def kernels_from_module(module) -> KernelBundle:
    """Conv kernels of a live ``torch.nn.Module``.

    Every conv's *effective* weight ``module.weight`` is read, so convs parametrised
    with ``torch.nn.utils.parametrize`` (or the older weight_norm / spectral_norm
    hooks) give the weight they compute with, not ``parametrizations.weight.original``.
    Other floating tensors of the state_dict are listed as skipped.
    """
    items = [(k, _torch_lazy(k, v)) for k, v in _module_items(module) if v.is_floating_point()]
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


def save_kernels(path, kernels: Mapping, metadata: dict | None = None, *, force: bool = False,
                 overwrite: bool | None = None) -> Path:
    """Write conv kernels keyed by layer name to ``.npz`` (the training/analysis seam).

    Parameters
    ----------
    path : str or path-like
    kernels : mapping of str -> array of shape (C_out, C_in, kh, kw)
        Stored as float32, except float64 kernels whose values float32 cannot hold
        (overflow to inf, or underflow below its normal range), which stay float64.
    metadata : dict, optional
        JSON-serialisable; stored under ``__metadata__`` (as text, no pickle).
    force : bool, default=False
        Replace an existing file (atomically: :func:`filtertopo._io.atomic_write`).
    overwrite : bool, optional
        Deprecated spelling of ``force``.
    """
    if overwrite is not None:
        import warnings

        warnings.warn("save_kernels(overwrite=) is deprecated; use force=.", DeprecationWarning, stacklevel=2)
        force = force or bool(overwrite)
    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path} already exists; pass force=True to replace it.")
    # float32, except float64 values that float32 would turn into inf or 0 (kept as float64)
    arrays = {str(k): _as_float(v) for k, v in kernels.items()}
    if _META_KEY in arrays:
        raise InputError(f"layer name {_META_KEY!r} is reserved.")
    arrays[_META_KEY] = np.array(json.dumps(metadata or {}))
    from ._io import atomic_write

    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays), flag="kernel file")
