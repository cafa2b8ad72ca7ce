"""Filters as pixels: the house colour map as a lookup table, many filters coloured at once,
mosaics, and a minimal PNG encoder.

The report draws thousands of tiny images (a 3x3 mean filter per Mapper node, galleries).
One matplotlib figure, or even one colormap call, per image costs milliseconds; here a
whole stack of filters is coloured with one lookup-table index (the same table matplotlib
uses, so the pixels are identical to ``imshow`` with ``FILTER_CMAP`` and limits
``±max|f|``) and each small PNG is written with :mod:`zlib` directly (tens of
microseconds, a few dozen bytes).
"""

from __future__ import annotations

import base64
import functools
import struct
import zlib

import numpy as np

from ..errors import InputError

__all__ = ["FILTER_CMAP", "filter_cmap", "lut", "filters_rgba", "filter_mosaic",
           "png_bytes", "png_b64", "colormap_bar"]

#: Diverging colour map of every filter image (zero at the centre of the scale).
FILTER_CMAP = "RdBu_r"


@functools.lru_cache(maxsize=None)
def filter_cmap(name: str = FILTER_CMAP):
    """One shared matplotlib ``Colormap`` per name (``colormaps[name]`` copies, and every
    copy rebuilds its table on first use)."""
    import matplotlib

    return matplotlib.colormaps[name]


@functools.lru_cache(maxsize=None)
def lut(name: str = FILTER_CMAP) -> np.ndarray:
    """The colour map as a read-only (N, 4) uint8 table (N = 256 for the house map)."""
    cm = filter_cmap(name)
    table = (cm(np.arange(cm.N)) * 255).round().astype(np.uint8)
    table.setflags(write=False)
    return table


def _lut_index(x: np.ndarray, n: int) -> np.ndarray:
    """matplotlib's float -> table index rule for values in [0, 1]: ``floor(x N)``, 1 -> N-1."""
    return np.clip((np.asarray(x, dtype=np.float64) * n).astype(np.int64), 0, n - 1)


def _square(d, kernel_shape):
    if kernel_shape is not None:
        kh, kw = (int(s) for s in kernel_shape)
        if kh * kw != d:
            raise InputError(f"kernel_shape must multiply to the filter length {d}; got "
                             f"{tuple(kernel_shape)}. Pass the layer's (kh, kw).")
        return kh, kw
    k = int(round(np.sqrt(d)))
    if k * k != d:
        raise InputError(f"kernel_shape is needed for filters of {d} values (not square); "
                         "got None. Pass kernel_shape=(kh, kw).")
    return k, k


def filters_rgba(P, kernel_shape=None, *, scale: int = 1, alpha: bool = True) -> np.ndarray:
    """Colour a stack of filters in the house convention, each on its own ``±max|f|`` scale.

    Parameters
    ----------
    P : array-like of shape (n, d) or (n, kh, kw)
        Flattened or 2-D filters.
    kernel_shape : tuple of int, optional
        ``(kh, kw)`` for flattened filters (default: square).
    scale : int, default=1
        Each filter pixel becomes a ``scale x scale`` block (nearest neighbour).
    alpha : bool, default=True
        RGBA (opaque) when True, RGB when False.

    Returns
    -------
    ndarray of shape (n, kh * scale, kw * scale, 4 or 3), uint8

    Examples
    --------
    >>> filters_rgba(np.array([[-1.0, 0, 1, 0]]))[0, 0, :, :3].tolist()
    [[5, 48, 97], [247, 246, 246]]
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim == 3:
        kh, kw = P.shape[1:]
        P = P.reshape(len(P), -1)
    elif P.ndim == 2:
        kh, kw = _square(P.shape[1], kernel_shape)
    else:
        raise InputError(f"filters must have shape (n, d) or (n, kh, kw); got {P.shape}. "
                         "Stack the filters row-wise.")
    m = np.abs(P).max(axis=1, keepdims=True) if P.size else np.ones((len(P), 1))
    m[m == 0] = 1.0
    table = lut()
    img = table[_lut_index((P / m + 1) / 2, len(table))].reshape(len(P), kh, kw, 4)
    if not alpha:
        img = img[..., :3]
    if scale > 1:
        img = img.repeat(scale, axis=1).repeat(scale, axis=2)
    return np.ascontiguousarray(img)


def filter_mosaic(P, kernel_shape=None, *, ncols: int = 12, scale: int = 8, pad: int = 2,
                  background=(255, 255, 255)) -> np.ndarray:
    """Filters tiled left to right, top to bottom, as one RGB image.

    Parameters
    ----------
    P : array-like of shape (n, d)
    ncols : int, default=12
    scale : int, default=8
        Screen pixels per filter pixel.
    pad : int, default=2
        Background pixels between and around tiles.

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
        Tile ``k`` has its top-left corner at ``(pad + r (th + pad), pad + c (tw + pad))``
        with ``r, c = divmod(k, ncols)`` and ``th, tw`` the scaled tile size.
    """
    tiles = filters_rgba(P, kernel_shape, scale=scale, alpha=False)
    n, th, tw = tiles.shape[:3]
    ncols = max(1, min(int(ncols), n)) if n else 1
    nrows = max(1, -(-n // ncols))
    out = np.empty((pad + nrows * (th + pad), pad + ncols * (tw + pad), 3), dtype=np.uint8)
    out[:] = np.asarray(background, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, ncols)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        out[y:y + th, x:x + tw] = tiles[k]
    return out


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bytes(img: np.ndarray, level: int = 9) -> bytes:
    """A PNG file of an (h, w, 3) RGB or (h, w, 4) RGBA uint8 image (8-bit, no filter).

    Written with :mod:`zlib` directly: for the many tiny images of a report this is
    ~50x faster than PIL's per-image overhead, and the output is a valid PNG.
    """
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise InputError(f"img must have shape (h, w, 3) or (h, w, 4); got {img.shape}. "
                         "Use filters_rgba to colour filters first.")
    h, w, c = img.shape
    raw = np.zeros((h, 1 + w * c), dtype=np.uint8)  # filter byte 0 (None) per row
    raw[:, 1:] = img.reshape(h, w * c)
    head = struct.pack(">IIBBBBB", w, h, 8, 6 if c == 4 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", head)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))


def png_b64(img: np.ndarray) -> str:
    """:func:`png_bytes` as base64 text for a ``data:image/png;base64,`` URI."""
    return base64.b64encode(png_bytes(img)).decode("ascii")


def colormap_bar(name: str, width: int = 160, height: int = 10) -> np.ndarray:
    """A horizontal colour-bar image (RGB uint8) of a colour map, low on the left."""
    table = lut(name)
    row = table[_lut_index(np.linspace(0, 1, width), len(table)), :3]
    return np.ascontiguousarray(np.broadcast_to(row, (height, width, 3)))
