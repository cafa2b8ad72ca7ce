"""Property-based fuzzing of the checkpoint loaders (run by test_fuzz_loaders.py in a subprocess).

The property: for any bytes, ``load_kernels`` either returns a KernelBundle of 4-D float
kernels or raises InputError; never another exception, a crash, or a hang. Inputs are
valid files of each format (.npz, safetensors, torch zip and legacy, HDF5 .h5 and .keras)
mutated by truncation, bit flips, overwrites, insertions, header and trailer damage and
a wrong extension, plus structured headers (``.npy`` and safetensors) with random shapes,
dtypes and offsets.

Run directly: ``python tests/fuzz/_fuzz_loaders_impl.py npz 200``. Importing it does nothing.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import tempfile
import zipfile

EXTS = (".npz", ".safetensors", ".pt", ".pth", ".bin", ".h5", ".keras", ".ckpt", "")


def _good():
    import numpy as np

    return np.random.default_rng(0).normal(size=(6, 2, 3, 3)).astype(np.float32)


def seeds(fmt):
    """Valid files of format ``fmt``: list of (extension, bytes)."""
    import numpy as np

    w = _good()
    out = []
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez(buf, conv1=w, bias=np.zeros(6, np.float32), __metadata__=np.array(json.dumps({"step": 1})))
        out.append((".npz", buf.getvalue()))
        buf = io.BytesIO()
        np.savez_compressed(buf, conv1=w.astype(np.float64), conv2=w[:3])
        out.append((".npz", buf.getvalue()))
    elif fmt == "safetensors":
        from safetensors.numpy import save

        out.append((".safetensors", save({"conv1.weight": w, "conv1.bias": np.zeros(6, np.float32)},
                                         metadata={"filtertopo": json.dumps({"step": 1})})))
        out.append((".safetensors", save({"a.weight": w.astype(np.float16), "b.weight": w.astype(np.float64)})))
    elif fmt == "torch":
        import torch

        sd = {"conv1.weight": torch.from_numpy(w), "conv1.bias": torch.zeros(6), "fc.weight": torch.zeros(3, 4)}
        for legacy in (False, True):
            buf = io.BytesIO()
            torch.save(sd, buf, _use_new_zipfile_serialization=not legacy)
            out.append((".pt", buf.getvalue()))
        buf = io.BytesIO()
        torch.save({"state_dict": {"module.c.weight": torch.from_numpy(w).to(torch.bfloat16)}, "epoch": 3}, buf)
        out.append((".ckpt", buf.getvalue()))
    elif fmt == "h5":
        import h5py

        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            f["model_weights/conv1/conv1/kernel:0"] = np.transpose(w, (2, 3, 1, 0))
            f["model_weights/conv1/conv1/bias:0"] = np.zeros(6, np.float32)
            f.create_dataset("model_weights/c2/kernel:0", shape=(3, 3, 2, 4), dtype="<f4", chunks=(3, 3, 2, 2),
                             fillvalue=0.5, compression="gzip")
        out.append((".h5", buf.getvalue()))
        zbuf = io.BytesIO()
        with zipfile.ZipFile(zbuf, "w") as z:
            z.writestr("config.json", "{}")
            z.writestr("model.weights.h5", buf.getvalue())
        out.append((".keras", zbuf.getvalue()))
    else:
        raise SystemExit(f"unknown format {fmt!r}")
    return out


def check(data: bytes, ext: str, folder: str):
    """The property, on one input."""
    import numpy as np

    from filtertopo.errors import InputError
    from filtertopo.weights import KernelBundle, load_kernels

    path = os.path.join(folder, "f" + ext)
    with open(path, "wb") as f:
        f.write(data)
    try:
        b = load_kernels(path)
    except InputError as e:
        assert str(e), "an InputError needs a message"
        return "InputError"
    assert isinstance(b, KernelBundle)
    for name, k in b.kernels.items():
        assert k.ndim == 4 and k.dtype in (np.float32, np.float64), (name, k.shape, k.dtype)
    return "ok"


def _npy(shape, descr, payload: bytes) -> bytes:
    hdr = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    pad = 64 - ((10 + len(hdr) + 1) % 64)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr) + pad + 1) + hdr + b" " * pad + b"\n" + payload


def run(fmt: str, n_examples: int, derandomize: bool = True):
    import warnings

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    warnings.simplefilter("ignore")
    base = seeds(fmt)
    folder = tempfile.mkdtemp(prefix=f"ft_fuzz_{fmt}_")
    tally = {}

    @st.composite
    def mutated(draw):
        ext, blob = draw(st.sampled_from(base))
        op = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "head", "tail", "random", "ext"]))
        b = bytearray(blob)
        if op == "truncate":
            b = b[: draw(st.integers(0, max(0, len(b) - 1)))]
        elif op in ("flip", "head", "tail"):
            lo, hi = 0, len(b) - 1
            if op == "head":
                hi = min(hi, 511)
            elif op == "tail":
                lo = max(0, len(b) - 512)
            for _ in range(draw(st.integers(1, 8))):
                i = draw(st.integers(lo, hi))
                b[i] ^= draw(st.integers(1, 255))
        elif op == "overwrite":
            i = draw(st.integers(0, len(b) - 1))
            chunk = draw(st.binary(min_size=1, max_size=32))
            b[i:i + len(chunk)] = chunk
        elif op == "insert":
            i = draw(st.integers(0, len(b)))
            b[i:i] = draw(st.binary(min_size=1, max_size=64))
        elif op == "random":
            b = bytearray(blob[: draw(st.integers(0, 16))] + draw(st.binary(max_size=2048)))
        elif op == "ext":
            ext = draw(st.sampled_from(EXTS))
        if op != "ext" and draw(st.booleans()):
            ext = draw(st.sampled_from(EXTS))
        return bytes(b), ext

    @st.composite
    def structured(draw):
        """Headers written by hand: random shapes, dtypes, offsets (what a hostile file declares)."""
        shape = draw(st.lists(st.one_of(st.integers(0, 12), st.integers(0, 2**40)), max_size=5))
        payload = draw(st.binary(max_size=512))
        if fmt == "npz":
            descr = draw(st.sampled_from(["<f4", "<f8", ">f4", "<f2", "|O", "<i4", "<c8", "|b1", "<U3", "|V8"]))
            zbuf = io.BytesIO()
            with zipfile.ZipFile(zbuf, "w", compression=draw(st.sampled_from([zipfile.ZIP_STORED,
                                                                               zipfile.ZIP_DEFLATED]))) as z:
                z.writestr("conv1.npy", _npy(shape, descr, payload))
            return zbuf.getvalue(), ".npz"
        if fmt == "safetensors":
            dtype = draw(st.sampled_from(["F32", "F64", "F16", "BF16", "I8", "U8", "BOOL", "F8_E4M3", "X9"]))
            off = draw(st.lists(st.integers(-5, 2**40), min_size=0, max_size=3))
            hdr = {"a.weight": {"dtype": dtype, "shape": shape, "data_offsets": off}}
            if draw(st.booleans()):
                hdr["__metadata__"] = {"filtertopo": draw(st.sampled_from(["{}", "[1]", "{bad", '{"k": 1}']))}
            h = json.dumps(hdr).encode()
            declared = draw(st.sampled_from([len(h), len(h) + 1, max(0, len(h) - 1), 2**62]))
            return struct.pack("<Q", declared) + h + payload, ".safetensors"
        ext, blob = draw(st.sampled_from(base))
        return blob, draw(st.sampled_from(EXTS))

    @settings(max_examples=n_examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(st.one_of(mutated(), structured()))
    def prop(case):
        data, ext = case
        r = check(data, ext, folder)
        tally[r] = tally.get(r, 0) + 1

    import shutil

    try:
        prop()
        # every seed itself must load
        for ext, blob in base:
            assert check(blob, ext, folder) == "ok", (fmt, ext)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"FUZZ {fmt}: {n_examples} examples, outcomes {tally}")


if __name__ == "__main__":
    fmt, n = sys.argv[1], int(sys.argv[2])
    run(fmt, n, derandomize=os.environ.get("FILTERTOPO_FUZZ_RANDOM", "") in ("", "0"))
