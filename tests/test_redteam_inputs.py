"""Regression tests for the bad-input classes of the second red-team report (REDTEAM-2.md).

One test per failing class, named after its id, on real bytes written here (adapted
from the report's appendix fixture scripts). What each must do:

- X07   HDF5 data stored outside the checkpoint (external raw storage, external links,
        virtual datasets), in ``.h5`` and inside ``.keras``: refused, naming the dataset.
- M02   a tiny file declaring a huge tensor (HDF5 fill value, torch stride-0 view, ``.npy``
        header): refused *before* reading, naming MAX_TENSOR_BYTES, the size and the fix.
- F04   an unreadable checkpoint: InputError, not PermissionError.
- O08   a checkpoint path that is too long: InputError, not OSError(ENAMETOOLONG).
- F08c  corrupt bytes routed to torch: called corrupt; only a real code-running pickle
        mentions --allow-pickle.
- W05   a valid torch zip named ``.safetensors``: loaded (sniffed by content).
- T05   finite float64 filters scaled by 1e300: not "NaN or Inf"; same result as unscaled.
- T06   filters scaled by 1e-40 (float32 denormals) or 1e-300: not "all constant"; same result.
- S04b  decompression bombs under PIL's own limit (144 Mpx PNG of 140 KB; tiled TIFF):
        refused from the header, before decoding, in bounded memory.
- S10b  ``--n-per-image 500000000``: range-checked, the message names --n-per-image.
- K11   a FIFO as a patches image (or a checkpoint): refused at once, no hang.
- issue 9, step 8: a conv parametrised with torch.nn.utils.parametrize is read through
  its effective ``module.weight``.

Memory caps run in subprocesses under ``RLIMIT_AS``, so the suite stays safe on a small
machine; FIFO tests run in subprocesses with a timeout, so a regression fails instead of
hanging.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import zipfile
import zlib

import numpy as np
import pytest

from filtertopo.errors import InputError, check_regular_file
from filtertopo.weights import MAX_TENSOR_BYTES, load_kernels

GOOD = np.random.default_rng(0).normal(size=(64, 4, 3, 3)).astype(np.float32)
SECRET = b"TOPSECRET-abcdefghijklmnopqrstuvwxyz0123456789\n" * 60   # 2880 bytes > 3*3*1*64*4


def _run_limited(body: str, *, mem_gb: float = 1.5, timeout: float = 120, env=None, cwd=None):
    """Run ``body`` in a fresh Python under RLIMIT_AS; return its 'RESULT ...' line."""
    code = "from filtertopo.errors import InputError\ntry:\n" + textwrap.indent(textwrap.dedent(body), "    ") + \
        "\n    print('RESULT OK')\nexcept InputError as e:\n    print('RESULT InputError:', e)\n"

    def limit():
        import resource

        cap = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                       preexec_fn=limit, env={**os.environ, **(env or {})}, cwd=cwd)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")]
    assert lines, f"no result (rc {r.returncode}): {r.stderr[-2000:]}"
    return lines[-1]


# --------------------------------------------------------------------------------------------- X07

def _write_external_h5(path, target, name="conv1/kernel:0"):
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset(name, shape=(3, 3, 1, 64), dtype="<f4", external=[(str(target), 0, 3 * 3 * 64 * 4)])


def test_x07_hdf5_external_storage_refused(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    fx = tmp_path / "fx"
    fx.mkdir()
    # absolute path to a file outside the checkpoint
    _write_external_h5(fx / "ext_secret.h5", secret)
    with pytest.raises(InputError, match=r"'conv1/kernel:0' uses external raw storage.*secret\.txt") as e:
        load_kernels(fx / "ext_secret.h5")
    assert "TOPSECRET" not in str(e.value)
    # relative path, resolved against the working folder: refused from any folder
    _write_external_h5(fx / "ext_rel.h5", "../secret.txt")
    monkeypatch.chdir(fx)
    with pytest.raises(InputError, match="external raw storage"):
        load_kernels("ext_rel.h5")
    monkeypatch.chdir(tmp_path)
    # the same inside a .keras archive (model.weights.h5)
    inner = tmp_path / "inner.h5"
    _write_external_h5(inner, secret, name="layers/conv2d/vars/0")
    with zipfile.ZipFile(fx / "ext_secret.keras", "w") as z:
        z.writestr("model.weights.h5", inner.read_bytes())
    with pytest.raises(InputError, match=r"'layers/conv2d/vars/0' uses external raw storage"):
        load_kernels(fx / "ext_secret.keras")
    # an external dataset next to a good one still refuses the file (never half-read)
    with h5py.File(fx / "mixed.h5", "w") as f:
        f["model_weights/conv0/kernel:0"] = np.transpose(GOOD, (2, 3, 1, 0))
        f.create_dataset("model_weights/zz/bias:0", shape=(64,), dtype="<f4", external=[(str(secret), 0, 256)])
    with pytest.raises(InputError, match="'model_weights/zz/bias:0' uses external raw storage"):
        load_kernels(fx / "mixed.h5")
    # external links and virtual datasets also read other files
    with h5py.File(tmp_path / "good.h5", "w") as f:
        f["model_weights/conv1/kernel:0"] = np.transpose(GOOD, (2, 3, 1, 0))
    with h5py.File(fx / "extlink.h5", "w") as f:
        f["conv1"] = h5py.ExternalLink(str(tmp_path / "good.h5"), "/model_weights/conv1")
        f["loop"] = h5py.SoftLink("/loop")
    with pytest.raises(InputError, match="'conv1' is an external link"):
        load_kernels(fx / "extlink.h5")
    layout = h5py.VirtualLayout(shape=(3, 3, 4, 64), dtype="f4")
    layout[:] = h5py.VirtualSource(str(tmp_path / "good.h5"), "model_weights/conv1/kernel:0", shape=(3, 3, 4, 64))
    with h5py.File(fx / "virtual.h5", "w") as f:
        f.create_virtual_dataset("conv1/kernel:0", layout)
    with pytest.raises(InputError, match="'conv1/kernel:0' is a virtual dataset"):
        load_kernels(fx / "virtual.h5")
    # control: an ordinary file with a soft-link loop loads
    with h5py.File(fx / "ok.h5", "w") as f:
        f["model_weights/conv1/kernel:0"] = np.transpose(GOOD, (2, 3, 1, 0))
        f["loop"] = h5py.SoftLink("/loop")
    np.testing.assert_array_equal(load_kernels(fx / "ok.h5").kernels["model_weights/conv1"], GOOD)


# --------------------------------------------------------------------------------------------- M02

def test_m02_declared_huge_tensors_refused_before_reading(tmp_path):
    h5py = pytest.importorskip("h5py")
    # the report's 2.4 KB file declaring 460 MB through its fill value, and one declaring 36.9 GB
    with h5py.File(tmp_path / "declared_460mb.h5", "w") as f:
        f.create_dataset("conv1/kernel:0", shape=(3, 3, 64, 200_000), dtype="<f4", chunks=(3, 3, 64, 1024),
                         fillvalue=0.5)
    with h5py.File(tmp_path / "declared_huge.h5", "w") as f:
        f.create_dataset("conv1/kernel:0", shape=(3, 3, 1024, 1_000_000), dtype="<f4",
                         chunks=(3, 3, 64, 1024), fillvalue=0.5)
    assert os.path.getsize(tmp_path / "declared_460mb.h5") < 10_000
    # an .npy header declaring 10M x 64 x 3 x 3 float32 in a few hundred bytes
    hdr = repr({"descr": "<f4", "fortran_order": False, "shape": (10_000_000, 64, 3, 3)}).encode()
    pad = 64 - ((10 + len(hdr) + 1) % 64)
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr) + pad + 1) + hdr + b" " * pad + b"\n" + b"\x00" * 64
    with zipfile.ZipFile(tmp_path / "declared_huge.npz", "w") as z:
        z.writestr("conv1.npy", npy)
    for name, size in [("declared_460mb.h5", 460_800_000), ("declared_huge.h5", 36_864_000_000)]:
        # 1 GiB of address space: reading the data (or a MemoryError path) would not fit
        res = _run_limited(f"from filtertopo.weights import load_kernels\nload_kernels({str(tmp_path / name)!r})",
                           mem_gb=1.0)
        assert res.startswith("RESULT InputError:"), res
        assert "'conv1/kernel:0'" in res and "MAX_TENSOR_BYTES" in res and str(size) in res
        assert f"FILTERTOPO_MAX_TENSOR_BYTES={size}" in res  # the fix, with the value that would pass
    res = _run_limited(f"from filtertopo.weights import load_kernels\nload_kernels({str(tmp_path / 'declared_huge.npz')!r})",
                       mem_gb=1.0)
    assert res.startswith("RESULT InputError:") and ("truncated or corrupt" in res or "MAX_TENSOR_BYTES" in res), res
    # the limit is documented and overridable; the override applies to every format
    assert MAX_TENSOR_BYTES == 256 * 2**20
    np.savez(tmp_path / "small.npz", conv1=GOOD)
    res = _run_limited(f"from filtertopo.weights import load_kernels\nload_kernels({str(tmp_path / 'small.npz')!r})",
                       env={"FILTERTOPO_MAX_TENSOR_BYTES": "1000"})
    assert "MAX_TENSOR_BYTES = 1000 bytes" in res and str(GOOD.nbytes) in res, res
    res = _run_limited(f"from filtertopo.weights import load_kernels\nload_kernels({str(tmp_path / 'declared_460mb.h5')!r})",
                       env={"FILTERTOPO_MAX_TENSOR_BYTES": "100"})
    assert "MAX_TENSOR_BYTES = 100 bytes" in res


def test_m02_torch_stride0_view_and_safetensors_checked(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.numpy import save_file

    # 23 GB declared by a 1-element storage expanded to 10M x 64 x 3 x 3 (report M01)
    torch.save({"conv1.weight": torch.randn(1).expand(10_000_000, 64, 3, 3)}, tmp_path / "expand_huge.pt")
    res = _run_limited(f"from filtertopo.weights import load_kernels\nload_kernels({str(tmp_path / 'expand_huge.pt')!r})",
                       mem_gb=3.0)
    assert res.startswith("RESULT InputError:") and "MAX_TENSOR_BYTES" in res and "23040000000" in res, res
    # a moderate view (92 MB materialised) is under the limit and still loads
    torch.save({"conv1.weight": torch.randn(1, 1, 3, 3).expand(40_000, 64, 3, 3)}, tmp_path / "expand_mid.pt")
    assert load_kernels(tmp_path / "expand_mid.pt").kernels["conv1"].shape == (40_000, 64, 3, 3)
    save_file({"conv1.weight": GOOD}, tmp_path / "m.safetensors")
    res = _run_limited(f"from filtertopo.weights import load_kernels\nload_kernels({str(tmp_path / 'm.safetensors')!r})",
                       env={"FILTERTOPO_MAX_TENSOR_BYTES": "4096"})
    assert "'conv1.weight'" in res and "MAX_TENSOR_BYTES = 4096 bytes (4 KiB)" in res, res


def test_m02_non_conv_tensors_are_listed_without_being_read(tmp_path):
    h5py = pytest.importorskip("h5py")
    # a declared-huge *dense* layer is not analysed, so it is listed, never read
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["model_weights/conv1/kernel:0"] = np.transpose(GOOD, (2, 3, 1, 0))
        f.create_dataset("model_weights/dense/kernel:0", shape=(200_000, 200_000), dtype="<f4",
                         chunks=(1024, 1024), fillvalue=1.0)
    res = _run_limited(textwrap.dedent(f"""
        from filtertopo.weights import load_kernels
        b = load_kernels({str(tmp_path / 'm.h5')!r})
        print('RESULT', sorted(b.kernels), [(s.name, s.shape, s.reason) for s in b.skipped])
        raise SystemExit
    """), mem_gb=1.0)
    assert "['model_weights/conv1']" in res and "linear layer" in res, res


# ------------------------------------------------------------------------------------- F04 / O08

def test_f04_unreadable_checkpoint_is_input_error(tmp_path):
    np.savez(tmp_path / "base.npz", conv1=GOOD)
    if os.geteuid() != 0:
        p = tmp_path / "unread.npz"
        shutil.copy(tmp_path / "base.npz", p)
        p.chmod(0)
        try:
            with pytest.raises(InputError, match="not readable: permission denied"):
                load_kernels(p)
        finally:
            p.chmod(0o644)
        return
    # root reads everything: check as user 'nobody' (65534), in a folder it may enter
    d = tempfile.mkdtemp(prefix="ft_f04_")
    try:
        os.chmod(d, 0o755)
        p = os.path.join(d, "unread.npz")
        shutil.copy(tmp_path / "base.npz", p)
        os.chmod(p, 0)
        locked = os.path.join(d, "locked")
        os.mkdir(locked, 0o700)
        shutil.copy(tmp_path / "base.npz", os.path.join(locked, "in_locked_dir.npz"))
        # import as root (the interpreter may live in root's home), then drop to nobody
        drop = ("import os, zipfile, numpy\nfrom filtertopo.weights import load_kernels\n"
                "os.setgid(65534)\nos.setuid(65534)\n")
        res = _run_limited(drop + f"load_kernels({p!r})", cwd=d)
        assert res.startswith("RESULT InputError:") and "permission denied" in res and "unread.npz" in res, res
        assert "chmod" in res
        res = _run_limited(drop + f"load_kernels({os.path.join(locked, 'in_locked_dir.npz')!r})", cwd=d)
        assert res.startswith("RESULT InputError:") and "permission denied on a folder" in res, res
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_o08_checkpoint_path_too_long(tmp_path):
    long_name = tmp_path / ("y" * 300 + ".npz")
    with pytest.raises(InputError, match="too long"):
        load_kernels(long_name)
    with pytest.raises(InputError, match="too long"):
        check_regular_file(str(tmp_path) + "/" + "d/" * 3000 + "x.npz", "checkpoint")


def test_k11_fifo_checkpoint_and_devices_refused(tmp_path):
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    res = _run_limited(f"from filtertopo.weights import load_kernels\nload_kernels({str(fifo)!r})", timeout=30)
    assert "is a FIFO (named pipe), not a regular file" in res, res
    with pytest.raises(InputError, match="character device"):
        load_kernels("/dev/zero")
    with pytest.raises(InputError, match="is a folder"):
        load_kernels(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_kernels(tmp_path / "nope.pt")
    with pytest.raises(InputError, match="not a valid path"):
        load_kernels(str(tmp_path / "nul\0byte.pt"))
    (tmp_path / "dangling.pt").symlink_to(tmp_path / "nowhere.pt")
    with pytest.raises(InputError, match="broken symbolic link"):
        load_kernels(tmp_path / "dangling.pt")


# -------------------------------------------------------------------------------------------- F08c

def test_f08c_corrupt_bytes_are_called_corrupt_not_pickle(tmp_path):
    pytest.importorskip("torch")
    cases = {
        "garbage.bin": b"\x00" * 100,                                         # the report's case
        "hdr_huge.bin": struct.pack("<Q", 2**62) + b'{"a":1}' + b"\x00" * 100,  # 2^62 safetensors length
        "random.pt": b"\x80" + np.random.default_rng(1).bytes(400),           # a pickle-like lead byte
        "half_pickle.pt": b"\x80\x02}q\x00(X\x01\x00",                          # a pickle cut short
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as e:
            load_kernels(tmp_path / name)
        msg = str(e.value)
        assert "allow-pickle" not in msg and "run code" not in msg, (name, msg)
        assert "corrupt" in msg, (name, msg)
        assert name in msg
    with pytest.raises(InputError, match="header-length field says 4611686018427387904 bytes"):
        load_kernels(tmp_path / "hdr_huge.bin")


class _EvilSystem:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_f08c_real_code_pickles_still_mention_allow_pickle(tmp_path):
    import pickle

    torch = pytest.importorskip("torch")
    marker = tmp_path / "PWNED"
    torch.save({"conv1.weight": torch.from_numpy(GOOD), "x": _EvilSystem(marker)}, tmp_path / "evil_zip.pt")
    torch.save({"conv1.weight": torch.from_numpy(GOOD), "x": _EvilSystem(marker)}, tmp_path / "evil_legacy.pt",
               _use_new_zipfile_serialization=False)
    raw = pickle.dumps(_EvilSystem(marker), protocol=2)
    raw4 = pickle.dumps(_EvilSystem(marker), protocol=4)   # STACK_GLOBAL instead of GLOBAL
    for name, data in [("evil_raw.pt", raw), ("evil_raw.bin", raw), ("evil_raw", raw), ("evil_p4.pt", raw4)]:
        (tmp_path / name).write_bytes(data)
    # the __setstate__ trick of the report (BUILD on OrderedDict), inside a torch zip
    binuni = lambda s: b"X" + struct.pack("<I", len(s.encode())) + s.encode()  # noqa: E731
    p = (b"\x80\x02ccollections\nOrderedDict\n)R}" + binuni("__setstate__") + b"cbuiltins\nexec\nsb"
         + binuni(f"open('{marker}','w').write('x')") + b"b.")
    with zipfile.ZipFile(tmp_path / "evil_setstate.pt", "w") as z:
        z.writestr("archive/data.pkl", p)
        z.writestr("archive/version", "3\n")
    for name in ["evil_zip.pt", "evil_legacy.pt", "evil_raw.pt", "evil_raw.bin", "evil_raw", "evil_p4.pt",
                 "evil_setstate.pt"]:
        with pytest.raises(InputError, match="allow-pickle") as e:
            load_kernels(tmp_path / name)
        assert "would run code" in str(e.value), name
    assert not marker.exists()


# --------------------------------------------------------------------------------------------- W05

def test_w05_torch_zip_named_safetensors_is_loaded(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"conv1.weight": torch.from_numpy(GOOD), "conv1.bias": torch.zeros(64)}, tmp_path / "good.pt")
    for ext in (".safetensors", ".npz", ".h5", ".onnx", ""):
        p = tmp_path / f"pt_as{ext}"
        shutil.copy(tmp_path / "good.pt", p)
        b = load_kernels(p)
        assert b.format == "torch", ext
        np.testing.assert_array_equal(b.kernels["conv1"], GOOD)


# ----------------------------------------------------------------------------------------- T05/T06

def _analyse(kernels):
    import warnings

    from filtertopo.pipeline import analyze

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyze(kernels, k=10, progress=False, circular=False).layers[0]


def test_t05_huge_float64_filters_are_not_nan_or_inf(tmp_path):
    ref = _analyse({"conv1": GOOD})
    np.savez(tmp_path / "huge64.npz", conv1=GOOD.astype(np.float64) * 1e300)
    b = load_kernels(tmp_path / "huge64.npz")
    assert b.kernels["conv1"].dtype == np.float64 and np.isfinite(b.kernels["conv1"]).all()
    for src in (b, {"conv1": GOOD.astype(np.float64) * 1e300}, {"conv1": GOOD.astype(np.float64) * 2.5e307}):
        lay = _analyse(src)
        assert lay.n_dropped == 0 and lay.n_core == ref.n_core
        np.testing.assert_array_equal(lay.provenance, ref.provenance)
        np.testing.assert_allclose(lay.core, ref.core, atol=1e-6)
        assert lay.verdict == ref.verdict
    # ordinary float32 and float64 kernels that fit float32 keep the documented float32 layout
    assert load_kernels(tmp_path / "huge64.npz").kernels["conv1"].shape == (64, 4, 3, 3)
    np.savez(tmp_path / "f64.npz", conv1=GOOD.astype(np.float64))
    assert load_kernels(tmp_path / "f64.npz").kernels["conv1"].dtype == np.float32
    # save_kernels (the training/analysis seam) does not turn them into inf either
    from filtertopo.weights import save_kernels

    p = save_kernels(tmp_path / "saved.npz", {"conv1": GOOD.astype(np.float64) * 1e300})
    assert np.isfinite(load_kernels(p).kernels["conv1"]).all()


def test_t06_tiny_filters_are_not_called_constant(tmp_path):
    from filtertopo.normalize import normalize_filters

    ref = _analyse({"conv1": GOOD})
    np.savez(tmp_path / "denorm.npz", conv1=(GOOD * 1e-40).astype(np.float32))   # float32 denormals
    np.savez(tmp_path / "tiny64.npz", conv1=GOOD.astype(np.float64) * 1e-300)
    for src, atol in [(str(tmp_path / "denorm.npz"), 1e-4), (str(tmp_path / "tiny64.npz"), 1e-6),
                      ({"conv1": GOOD.astype(np.float64) * 1e-40}, 1e-6)]:
        lay = _analyse(src)
        assert lay.n_dropped == 0, src
        np.testing.assert_array_equal(lay.provenance, ref.provenance)
        np.testing.assert_allclose(lay.core, ref.core, atol=atol)
    # float64 denormals (1e-320) keep only ~4 digits: still analysed, the same core filters
    lay = _analyse({"conv1": GOOD.astype(np.float64) * 1e-320})
    assert lay.n_dropped == 0 and set(map(tuple, lay.provenance)) == set(map(tuple, ref.provenance))
    # scale invariance of the normalisation itself, across 600 orders of magnitude
    X = GOOD.reshape(-1, 9).astype(np.float64)
    base = normalize_filters(X).points
    for s in (1e-300, 1e-40, 1e-12, 1.0, 1e12, 1e300):
        np.testing.assert_allclose(normalize_filters(X * s).points, base, atol=1e-12)
    # constant filters are still dropped, at any scale, and a zero filter too
    Y = np.vstack([X[:5], np.full((3, 9), 7.0), np.zeros((1, 9))])
    for s in (1e-300, 1.0, 1e300):
        out = normalize_filters(Y * s)
        assert out.n_dropped == 4 and out.kept.tolist() == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------------- S04b / S10b / K11

def _png(w, h, idat):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_s04b_decompression_bombs_under_pil_limit_refused(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("PIL")
    w = h = 12000  # 144 Mpx: above PIL's warning (89 Mpx), below its error (179 Mpx); ~140 KB
    co = zlib.compressobj(9)
    row0, row = b"\x00" + b"\xff" * w, b"\x00" * (w + 1)
    idat = b"".join(co.compress(row0 if i % 1000 == 0 else row) for i in range(h)) + co.flush()
    (tmp_path / "bomb_144mpx.png").write_bytes(_png(w, h, idat))
    assert os.path.getsize(tmp_path / "bomb_144mpx.png") < 200_000
    bombs = ["bomb_144mpx.png"]
    try:
        import tifffile
    except ImportError:
        tifffile = None
    if tifffile is not None:  # a tiled, compressed TIFF of 64 Mpx written tile by tile (a few MB of memory)
        tile = np.zeros((1024, 1024), np.uint8)
        tifffile.imwrite(tmp_path / "bomb.tif", (tile for _ in range(64)), shape=(8192, 8192), dtype=np.uint8,
                         tile=(1024, 1024), compression="zlib")
        bombs.append("bomb.tif")
    for name in bombs:
        res = _run_limited(f"from filtertopo.patches import load_image\nload_image({str(tmp_path / name)!r})",
                           mem_gb=1.5, timeout=60)
        assert res.startswith("RESULT InputError:"), res
        assert name in res and "MAX_IMAGE_PIXELS = 50000000" in res and "FILTERTOPO_MAX_IMAGE_PIXELS" in res, res
    assert "144000000 pixels (12000 x 12000)" in res if len(bombs) == 1 else True
    # the header-only bomb of 10^10 pixels (PIL's own guard) gets the same message
    (tmp_path / "bomb_header.png").write_bytes(_png(100000, 100000, zlib.compress(b"\x00" * 1000)))
    with pytest.raises(InputError, match=r"10000000000 pixels.*MAX_IMAGE_PIXELS"):
        from filtertopo.patches import load_image
        load_image(str(tmp_path / "bomb_header.png"))


def test_s04b_image_limit_is_overridable(tmp_path, monkeypatch):
    pytest.importorskip("skimage")
    from PIL import Image

    from filtertopo.patches import MAX_IMAGE_PIXELS, load_image

    assert MAX_IMAGE_PIXELS == 50_000_000
    Image.fromarray((np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    assert load_image(str(tmp_path / "a.png"))[1].shape == (40, 50)
    monkeypatch.setenv("FILTERTOPO_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(InputError, match=r"2000 pixels \(50 x 40\), over the limit MAX_IMAGE_PIXELS = 1000"):
        load_image(str(tmp_path / "a.png"))


def test_s10b_n_per_image_range_checked(tmp_path, capsys):
    pytest.importorskip("skimage")
    from filtertopo.patches import MAX_PATCHES_PER_IMAGE, sample_patches

    res = _run_limited("from filtertopo.patches import sample_patches\nsample_patches('camera', n_per_image=500_000_000)",
                       mem_gb=1.5, timeout=60)
    assert "--n-per-image" in res and "500000000" in res and str(MAX_PATCHES_PER_IMAGE) in res, res
    assert "FILTERTOPO_MAX_PATCHES_PER_IMAGE" in res
    with pytest.raises(InputError, match=r"--n-per-image.*13 images.*MAX_PATCHES = 10000000"):
        sample_patches("natural", n_per_image=1_000_000)
    with pytest.raises(InputError, match="--n-per-image"):
        sample_patches("camera", n_per_image=0)
    # the CLI: exit 2 with one error line, no traceback, no memory advice
    from filtertopo.cli import main

    rc = main(["patches", "camera", "--out", str(tmp_path / "o"), "--k", "10", "--null-draws", "0",
               "--no-progress", "--n-per-image", "500000000"])
    err = capsys.readouterr().err
    assert rc == 2 and "--n-per-image" in err and "Traceback" not in err and "out of memory" not in err


def test_k11_fifo_image_refused(tmp_path):
    pytest.importorskip("skimage")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    res = _run_limited(f"from filtertopo.patches import load_image\nload_image({str(fifo)!r})", timeout=30)
    assert "fifo.png" in res and "is a FIFO (named pipe), not a regular file" in res, res
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    from filtertopo.patches import load_image

    with pytest.raises(InputError, match="too long"):
        load_image(str(tmp_path / ("z" * 300 + ".png")))
    with pytest.raises(InputError, match="is a folder"):
        load_image(str(tmp_path))


def test_p12_patches_seed_range_checked():
    pytest.importorskip("skimage")
    from filtertopo.patches import sample_patches

    for bad in (-1, 2**64, 1.5):
        with pytest.raises(InputError, match=r"seed \(--seed\) must be an integer in \[0, 2\*\*64 - 1\]"):
            sample_patches("camera", n_per_image=50, seed=bad)
    assert len(sample_patches("camera", n_per_image=50, seed=2**64 - 1).points) == 10


# ------------------------------------------------------------------------------------- issue 9 step 8

def test_issue9_parametrized_conv_reads_effective_weight(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.nn.utils import parametrize

    from filtertopo.weights import as_bundle, kernels_from_module

    class Negate(nn.Module):
        def forward(self, x):
            return -x

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Conv2d(4, 4, 3))
    parametrize.register_parametrization(net[0], "weight", Negate())
    nn.utils.parametrizations.weight_norm(net[2])
    with torch.no_grad():
        net[2].parametrizations.weight.original0.mul_(3.0)   # g: the effective weight is 3x v/|v|*|v|
    assert "0.parametrizations.weight.original" in net.state_dict()
    for b in (kernels_from_module(net), as_bundle(net)):
        assert list(b.kernels) == ["0", "2", "3"]
        for i in (0, 2, 3):
            np.testing.assert_allclose(b.kernels[str(i)], net[i].weight.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(b.kernels["0"], -net[0].parametrizations.weight.original.detach().numpy())
        assert not any("parametrizations" in s.name for s in b.skipped)
        assert not any("parametrizations" in k for k in b.kernels)
    # a pickled parametrised module cannot be saved (torch refuses); its state_dict keeps only the
    # raw parametrisation tensors, so a file cannot give the effective weight: only a live module can.
