"""Typed results of an analysis, and their files (``layers.csv``, ``analysis.json``, ``points.npz``)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["LayerResult", "AnalysisResult", "OUTPUT_FILES", "check_output_dir"]

#: Files an analysis writes; an output folder holding any of them is never overwritten without force.
OUTPUT_FILES = ("layers.csv", "analysis.json", "points.npz", "report.html")
#: Files :meth:`AnalysisResult.save` writes (``manifest.json`` last, listing the others).
SAVED_FILES = ("points.npz", "analysis.json", "layers.csv")
RESULT_NAMES = (*OUTPUT_FILES, "manifest.json")
_SEP = "::"


def _dgm_to_json(d):
    return [[float(b), None if not math.isfinite(e) else float(e)] for b, e in np.asarray(d).reshape(-1, 2)]


def _dgm_from_json(rows):
    a = np.array([[b, np.inf if e is None else e] for b, e in rows], dtype=np.float64)
    return a.reshape(-1, 2)


def check_output_dir(out_dir, *, force: bool = False) -> Path:
    """Refuse, before any work, an output folder that cannot receive an analysis.

    A file, a dangling symbolic link, a path too long for the file system, a folder that
    cannot be written, a result name that is a folder, a folder another process is writing,
    and a folder that already holds results (unless ``force``) are refused with InputError.
    See :func:`filtertopo._io.check_output_dir`.
    """
    from ._io import check_output_dir as _check

    return _check(out_dir, force=force, names=RESULT_NAMES)


@dataclass(frozen=True)
class LayerResult:
    """Everything filtertopo found about one layer (or one pooled point cloud).

    Attributes
    ----------
    name : str
    shape : tuple
        Kernel shape ``(C_out, C_in, kh, kw)`` (of the first source when pooled).
    kernel_shape : tuple or None
        ``(kh, kw)``; None for point clouds that are not filters.
    n_filters, n_dropped, n_used, n_core : int
        Filters in the layer (all sources), dropped as (near-)constant, analysed
        (after subsampling to ``max_points``), and in the dense core.
    k : int
    p : float
    seed : int
    coeff : tuple of int
        Coefficient fields; the first is the primary one.
    diagrams : dict of int -> ndarray of shape (m, 2)
        Diagrams over the primary field; an infinite death is ``np.inf``.
    diagrams_by_coeff : dict of int -> dict of int -> ndarray
    summary : dict
        See :func:`filtertopo.homology.bar_summary`.
    verdict : str
    core : ndarray of shape (n_core, d), float32
        The normalised core points homology was computed on (before landmarks).
    provenance : ndarray of shape (n_core, 3), int64
        ``(source, out, in)`` of each core point.
    metrics : dict of str -> float
        Extra per-layer table columns.
    extras : dict
        JSON-serialisable extras (the verdict's reasons, the circular-coordinate bar, ...).
    theta : ndarray of shape (n_core,) or None
        Circle-valued coordinate of each core point from the longest H1 bar
        (DREiMac), when the layer has a significant loop.
    """

    name: str
    shape: tuple
    kernel_shape: tuple | None
    n_filters: int
    n_dropped: int
    n_used: int
    n_core: int
    k: int
    p: float
    seed: int
    coeff: tuple
    diagrams: dict
    diagrams_by_coeff: dict
    summary: dict
    verdict: str
    core: np.ndarray
    provenance: np.ndarray
    metrics: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    theta: np.ndarray | None = None

    def to_row(self) -> dict:
        """One row of the per-layer table."""
        top = list(self.summary.get("h1_top", []))
        row = {
            "layer": self.name,
            "shape": "x".join(map(str, self.shape)),
            "n_filters": self.n_filters,
            "n_dropped": self.n_dropped,
            "n_used": self.n_used,
            "n_core": self.n_core,
            "k": self.k,
            "p": self.p,
            "h1_1": top[0] if len(top) > 0 else 0.0,
            "h1_2": top[1] if len(top) > 1 else 0.0,
            "h1_3": top[2] if len(top) > 2 else 0.0,
            "h1_gap_ratio": self.summary.get("h1_gap_ratio", 0.0),
            "n_h1_significant": self.summary.get("n_significant", 0),
            "h0_max": self.summary.get("h0_max", 0.0),
            "verdict": self.verdict,
            "scale_verdict": (self.extras.get("scales") or {}).get("majority", ""),
            "scale_support": (self.extras.get("scales") or {}).get("support", float("nan")),
        }
        if "h2_max" in self.summary:
            row["h2_1"] = self.summary["h2_max"]
        for q, dg in self.diagrams_by_coeff.items():
            if q != self.coeff[0] and 1 in dg:
                life = np.sort((dg[1][:, 1] - dg[1][:, 0])[np.isfinite(dg[1][:, 1])])[::-1]
                row[f"h1_1_z{q}"] = float(life[0]) if len(life) else 0.0
        row.update(self.metrics)
        return row

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "shape": [int(s) for s in self.shape],
            "kernel_shape": None if self.kernel_shape is None else [int(s) for s in self.kernel_shape],
            "n_filters": self.n_filters,
            "n_dropped": self.n_dropped,
            "n_used": self.n_used,
            "n_core": self.n_core,
            "k": self.k,
            "p": self.p,
            "seed": self.seed,
            "coeff": list(self.coeff),
            "diagrams": {str(d): _dgm_to_json(v) for d, v in self.diagrams.items()},
            "diagrams_by_coeff": {str(q): {str(d): _dgm_to_json(v) for d, v in dg.items()}
                                  for q, dg in self.diagrams_by_coeff.items()},
            "summary": self.summary,
            "verdict": self.verdict,
            "metrics": self.metrics,
            "extras": self.extras,
        }

    @classmethod
    def from_json(cls, d: dict, core=None, provenance=None, theta=None) -> "LayerResult":
        dim = len(d["kernel_shape"]) if d.get("kernel_shape") else 0
        return cls(
            name=d["name"], shape=tuple(d["shape"]),
            kernel_shape=None if d.get("kernel_shape") is None else tuple(d["kernel_shape"]),
            n_filters=d["n_filters"], n_dropped=d.get("n_dropped", 0), n_used=d.get("n_used", d["n_filters"]),
            n_core=d["n_core"], k=d["k"], p=d["p"], seed=d.get("seed", 0), coeff=tuple(d.get("coeff", [2])),
            diagrams={int(k): _dgm_from_json(v) for k, v in d["diagrams"].items()},
            diagrams_by_coeff={int(q): {int(k): _dgm_from_json(v) for k, v in dg.items()}
                               for q, dg in d.get("diagrams_by_coeff", {}).items()},
            summary=d.get("summary", {}), verdict=d.get("verdict", ""),
            core=np.zeros((0, dim)) if core is None else core,
            provenance=np.zeros((0, 3), np.int64) if provenance is None else provenance,
            metrics=d.get("metrics", {}), extras=d.get("extras", {}), theta=theta,
        )


@dataclass(frozen=True)
class AnalysisResult:
    """Per-layer results of one analysis, with the configuration that produced them.

    Attributes
    ----------
    layers : tuple of LayerResult
        In depth order.
    config : dict
        The resolved parameters (k, p, seed, sources, ...).
    skipped : tuple of dict
        Tensors not analysed, with the reason.
    """

    layers: tuple
    config: dict = field(default_factory=dict)
    skipped: tuple = ()

    def __getitem__(self, name) -> LayerResult:
        if isinstance(name, int):
            return self.layers[name]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers are {[l.name for l in self.layers]}")

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def to_frame(self):
        """The per-layer table, one row per layer, as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame([layer.to_row() for layer in self.layers])

    def _repr_html_(self):
        return self.to_frame()._repr_html_()

    def __repr__(self) -> str:
        names = ", ".join(f"{l.name}: {l.verdict}" for l in self.layers)
        return f"AnalysisResult({len(self.layers)} layers; {names})"

    def to_json(self) -> dict:
        return {
            "filtertopo_version": _version(),
            "config": self.config,
            "layers": [layer.to_json() for layer in self.layers],
            "skipped": list(self.skipped),
        }

    def save(self, out_dir, *, force: bool = False) -> Path:
        """Write ``layers.csv``, ``analysis.json``, ``points.npz`` and ``manifest.json`` to ``out_dir``.

        Refuses (InputError) when the folder already holds results, unless ``force``; other
        files in the folder are never touched. The save is atomic as a whole: the files are
        written into a temporary folder inside ``out_dir`` and moved into place after a
        ``manifest.json`` (run id, version, sha256 and size of each file) that :meth:`load`
        verifies, so an interrupted save or a full disk never leaves a folder that loads as a
        mix of two runs. A ``report.html`` of a previous run is renamed ``report.html.stale``.
        A second process saving into the same folder at the same time gets an InputError.
        """
        from ._io import save_folder

        arrays = {}
        for layer in self.layers:
            arrays[f"{layer.name}{_SEP}core"] = np.asarray(layer.core, dtype=np.float32)
            arrays[f"{layer.name}{_SEP}provenance"] = np.asarray(layer.provenance, dtype=np.int64)
            if layer.theta is not None:
                arrays[f"{layer.name}{_SEP}theta"] = np.asarray(layer.theta, dtype=np.float32)
        text = json.dumps(_finite(self.to_json()), indent=1, default=_json_default, allow_nan=False)
        frame = self.to_frame()
        save_folder(out_dir, {
            "points.npz": lambda p: np.savez_compressed(p, **arrays),
            "analysis.json": lambda p: p.write_text(text, encoding="utf-8"),
            "layers.csv": lambda p: frame.to_csv(p, index=False),
        }, force=force, names=RESULT_NAMES)
        return Path(out_dir)

    @classmethod
    def load(cls, out_dir) -> "AnalysisResult":
        """Read a folder written by :meth:`save`.

        The folder's ``manifest.json`` is verified first: a file missing, of another size or
        another sha256 (an interrupted save, files mixed from two runs, hand edits) is an
        InputError. A folder without a manifest (older filtertopo) loads with a warning. Then
        ``analysis.json`` and ``points.npz`` are checked for shape and type; any problem is an
        InputError naming the file, never a traceback.
        """
        from ._io import verify_folder

        out = Path(out_dir)
        _check_results_folder(out)
        verify_folder(out, required=SAVED_FILES)
        js = out / "analysis.json"
        data = _read_analysis_json(js, out)
        arrays = _read_points(out / "points.npz", out) if os.path.lexists(out / "points.npz") else {}
        layers = tuple(_layer_from_json(js, out, i, d, arrays) for i, d in enumerate(data["layers"]))
        return cls(layers, data.get("config", {}), tuple(data.get("skipped", [])))


def _rerun(out) -> str:
    return f"Re-run `filtertopo analyze ... --out {out} --force` to rewrite it."


def _check_results_folder(out: Path):
    try:
        st_dir = os.stat(out)
    except FileNotFoundError:
        raise InputError(f"results folder {str(out)!r} does not exist; run `filtertopo analyze ... "
                         f"--out {out}` first.") from None
    except OSError as e:
        from ._io import describe_oserror

        raise InputError(f"results folder {describe_oserror(e, out)}") from None
    import stat as _stat

    if not _stat.S_ISDIR(st_dir.st_mode):
        raise InputError(f"results folder {str(out)!r} is a file, not a folder; pass the folder "
                         "written by `filtertopo analyze --out DIR`.")
    js = out / "analysis.json"
    if not os.path.lexists(js):
        raise InputError(f"{str(out)!r} holds no analysis.json; run `filtertopo analyze ... --out {out}` first.")
    _check_result_file(js, out, "analysis.json", " (a folder, FIFO or device)")


def _check_result_file(path: Path, out: Path, label: str, kinds: str) -> None:
    """Refuse a result file that cannot be stat'ed or is not a regular file."""
    import stat as _stat

    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        from ._io import describe_oserror

        raise InputError(f"{label} {describe_oserror(e, path)}") from None
    if not _stat.S_ISREG(mode):
        raise InputError(f"{str(path)!r} is not a regular file{kinds}. {_rerun(out)}")


def _read_analysis_json(js: Path, out: Path) -> dict:
    try:
        raw = js.read_bytes()
    except OSError as e:
        from ._io import describe_oserror

        raise InputError(f"cannot read analysis.json {describe_oserror(e, js)}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"{js}: not UTF-8 text ({e}). {_rerun(out)}") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise InputError(f"{js}: not valid JSON ({e}); re-run the analysis.") from None
    if not isinstance(data, dict):
        raise InputError(f"{js} must hold a JSON object with a 'layers' list; got a JSON "
                         f"{type(data).__name__}. {_rerun(out)}")
    if not isinstance(data.get("layers"), list):
        got = "no 'layers'" if "layers" not in data else f"'layers' of type {type(data['layers']).__name__}"
        raise InputError(f"{js} must hold a 'layers' list; got {got}. {_rerun(out)}")
    if not isinstance(data.get("config", {}), dict):
        raise InputError(f"{js}: 'config' must be a JSON object; got {type(data['config']).__name__}. "
                         f"{_rerun(out)}")
    if not isinstance(data.get("skipped", []), list):
        raise InputError(f"{js}: 'skipped' must be a list; got {type(data['skipped']).__name__}. "
                         f"{_rerun(out)}")
    return data


def _read_points(path: Path, out: Path) -> dict:
    import zipfile
    import zlib

    _check_result_file(path, out, "points.npz", "")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, KeyError, TypeError, zipfile.BadZipFile, zlib.error,
            NotImplementedError) as e:
        raise InputError(f"{path}: not a readable points.npz ({type(e).__name__}: {e}). {_rerun(out)}") from None
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise InputError(f"{path}: array {k!r} has dtype {a.dtype}, not numbers. {_rerun(out)}")
    return arrays


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _layer_from_json(js: Path, out: Path, i: int, d, arrays: dict) -> "LayerResult":
    where = f"{js}: layer {i}"

    def bad(msg):
        return InputError(f"{where}: {msg}. {_rerun(out)}")

    if not isinstance(d, dict):
        raise bad(f"must be a JSON object; got {type(d).__name__}")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise bad("has no 'name' (a non-empty string)" if "name" not in d else f"'name' must be a string; got {name!r}")
    where = f"{js}: layer {i} ({name!r})"
    missing = [key for key in ("shape", "n_filters", "n_core", "k", "p", "diagrams") if key not in d]
    if missing:
        raise bad(f"lacks {', '.join(map(repr, missing))}")
    for key in ("n_filters", "n_core", "k", "n_dropped", "n_used", "seed"):
        if key in d and not (_is_int(d[key]) and d[key] >= 0):
            raise bad(f"{key!r} must be a non-negative integer; got {d[key]!r}")
    if isinstance(d["p"], bool) or not isinstance(d["p"], (int, float)) or not math.isfinite(d["p"]):
        raise bad(f"'p' must be a finite number; got {d['p']!r}")
    if not isinstance(d["shape"], list) or not all(_is_int(s) and s >= 0 for s in d["shape"]):
        raise bad(f"'shape' must be a list of non-negative integers; got {d['shape']!r}")
    ks = d.get("kernel_shape")
    if ks is not None and (not isinstance(ks, list) or not 1 <= len(ks) <= 3
                           or not all(_is_int(s) and s >= 1 for s in ks)):
        raise bad(f"'kernel_shape' must be null or a list like [3, 3] of positive integers; got {ks!r}")
    for key in ("diagrams",) + (("diagrams_by_coeff",) if "diagrams_by_coeff" in d else ()):
        if not isinstance(d[key], dict):
            raise bad(f"{key!r} must be a JSON object; got {type(d[key]).__name__}")
    for key in ("summary", "metrics", "extras"):
        if key in d and not isinstance(d[key], dict):
            raise bad(f"{key!r} must be a JSON object; got {type(d[key]).__name__}")
    core = arrays.get(f"{name}{_SEP}core")
    prov = arrays.get(f"{name}{_SEP}provenance")
    theta = arrays.get(f"{name}{_SEP}theta")
    pts = out / "points.npz"
    if core is not None:
        if core.ndim != 2:
            raise bad(f"its core in {pts} ({name}{_SEP}core) must be 2-D (points x pixels); got shape {core.shape}")
        if ks is not None and core.shape[1] != int(np.prod(ks)):
            raise bad(f"its core points in {pts} have {core.shape[1]} coordinates, but 'kernel_shape' "
                      f"{ks} needs {int(np.prod(ks))}")
        if not np.all(np.isfinite(core)):
            raise bad(f"its core in {pts} holds NaN or infinite values")
        if len(core) != d["n_core"]:
            raise bad(f"'n_core' is {d['n_core']}, but its core in {pts} has {len(core)} points")
    if prov is not None:
        n = len(core) if core is not None else prov.shape[0] if prov.ndim else -1
        if prov.ndim != 2 or prov.shape != (n, 3) or prov.dtype.kind not in "iu":
            raise bad(f"its provenance in {pts} must be integers of shape ({n}, 3); got {prov.dtype} {prov.shape}")
    if theta is not None:
        n = len(core) if core is not None else theta.shape[0] if theta.ndim else -1
        if theta.shape != (n,) or not np.all(np.isfinite(theta)):
            raise bad(f"its circular coordinate in {pts} must be {n} finite numbers; got shape {theta.shape}")
    try:
        layer = LayerResult.from_json(d, core, prov, theta)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        raise bad(f"malformed ({type(e).__name__}: {e})") from None
    for label, dg in [("diagrams", layer.diagrams),
                      *[(f"diagrams_by_coeff[{q}]", v) for q, v in layer.diagrams_by_coeff.items()]]:
        for dim, a in dg.items():
            if not np.all(np.isfinite(a[:, 0])) or np.any(np.isnan(a[:, 1])):
                raise bad(f"{label}[{dim}] holds a non-finite birth or a NaN death")
    return layer


def _finite(o):
    """Replace non-finite floats by None (JSON has no NaN or Infinity)."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (float, np.floating)) and not math.isfinite(float(o)):
        return None
    return o


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, os.PathLike):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _version() -> str:
    from . import __version__

    return __version__
