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
_SEP = "::"


def _dgm_to_json(d):
    return [[float(b), None if not math.isfinite(e) else float(e)] for b, e in np.asarray(d).reshape(-1, 2)]


def _dgm_from_json(rows):
    a = np.array([[b, np.inf if e is None else e] for b, e in rows], dtype=np.float64)
    return a.reshape(-1, 2)


def check_output_dir(out_dir, *, force: bool = False) -> Path:
    """Refuse an output folder that is a file or already holds results (unless ``force``)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file, not a folder. Choose a folder path.")
    existing = [f for f in OUTPUT_FILES if (out / f).exists()]
    if existing and not force:
        raise InputError(
            f"--out {str(out)!r} already holds results ({', '.join(existing)}). "
            "Choose another folder or pass --force to overwrite them."
        )
    return out


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
        """Write ``layers.csv``, ``analysis.json`` and ``points.npz`` to ``out_dir``.

        Refuses (InputError) when the folder already holds results, unless ``force``;
        other files in the folder are never touched.
        """
        out = check_output_dir(out_dir, force=force)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for layer in self.layers:
            arrays[f"{layer.name}{_SEP}core"] = np.asarray(layer.core, dtype=np.float32)
            arrays[f"{layer.name}{_SEP}provenance"] = np.asarray(layer.provenance, dtype=np.int64)
            if layer.theta is not None:
                arrays[f"{layer.name}{_SEP}theta"] = np.asarray(layer.theta, dtype=np.float32)
        _atomic(out / "points.npz", lambda p: np.savez_compressed(p, **arrays), suffix=".npz")
        _atomic(out / "analysis.json",
                lambda p: p.write_text(json.dumps(_finite(self.to_json()), indent=1, default=_json_default,
                                                  allow_nan=False)))
        _atomic(out / "layers.csv", lambda p: self.to_frame().to_csv(p, index=False))
        return out

    @classmethod
    def load(cls, out_dir) -> "AnalysisResult":
        """Read a folder written by :meth:`save`."""
        out = Path(out_dir)
        js = out / "analysis.json"
        if not js.is_file():
            raise InputError(f"{str(out)!r} holds no analysis.json; run `filtertopo analyze ... --out {out}` first.")
        try:
            data = json.loads(js.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{js}: not valid JSON ({e}); re-run the analysis.") from None
        arrays = {}
        if (out / "points.npz").is_file():
            with np.load(out / "points.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        layers = tuple(
            LayerResult.from_json(d, arrays.get(f"{d['name']}{_SEP}core"),
                                  arrays.get(f"{d['name']}{_SEP}provenance"),
                                  arrays.get(f"{d['name']}{_SEP}theta"))
            for d in data["layers"]
        )
        return cls(layers, data.get("config", {}), tuple(data.get("skipped", [])))


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


def _atomic(path: Path, write, suffix=""):
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    write(tmp)
    os.replace(tmp, path)


def _version() -> str:
    from . import __version__

    return __version__
