"""Typed results of an analysis, and their files (``layers.csv``, ``analysis.json``, ``points.npz``)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["LayerResult", "AnalysisResult", "OUTPUT_FILES", "TABLE_COLUMNS", "check_output_dir", "Counts",
           "BarSummary", "CircularInfo", "ShapeFractions", "NullMargin", "ScaleCell", "ScaleGrid"]

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


def _f(v) -> float:
    """A float, NaN for None (JSON null)."""
    return float("nan") if v is None else float(v)


class _Part:
    """A typed, frozen part of a layer's result: ``to_dict`` / ``from_dict`` round-trip JSON."""

    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict):
        if not isinstance(d, dict):
            raise TypeError(f"{cls.__name__} must be a JSON object; got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _jsonable(v):
    if isinstance(v, _Part):
        return v.to_dict()
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


@dataclass(frozen=True)
class Counts(_Part):
    """Filters in the layer (all sources), dropped as (near-)constant, analysed (after the
    ``max_points`` subsample) and in the dense core."""

    n_filters: int
    n_dropped: int
    n_used: int
    n_core: int


@dataclass(frozen=True)
class BarSummary(_Part):
    """The bars of the primary field's diagrams (:func:`filtertopo.homology.bar_summary`).

    ``h1_top`` longest finite H1 persistences (chord distance), longest first (up to 10);
    ``h1_gap_ratio`` = l1 / l2; ``n_significant`` H1 bars by the verdict rules' significance
    test; ``h0_max`` longest finite H0 bar; ``h2_top``/``h2_max``/``n_significant_h2`` only
    with maxdim >= 2 (else empty / NaN / -1); ``cover_radius`` of the landmarks (0 when every
    core point is a landmark).
    """

    h1_top: tuple = ()
    h1_max: float = 0.0
    h1_gap_ratio: float = 0.0
    n_significant: int = 0
    h0_max: float = 0.0
    h2_top: tuple = ()
    h2_max: float = float("nan")
    n_significant_h2: int = -1
    cover_radius: float = 0.0

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("h1_top", tuple(float(x) for x in self.h1_top))
        set_("h2_top", tuple(float(x) for x in self.h2_top))
        for name in ("h1_max", "h1_gap_ratio", "h0_max", "h2_max", "cover_radius"):
            set_(name, _f(getattr(self, name)))
        set_("n_significant", int(self.n_significant))
        set_("n_significant_h2", int(self.n_significant_h2))

    @classmethod
    def from_summary(cls, d: dict) -> "BarSummary":
        """From the dict of :func:`filtertopo.homology.bar_summary` (plus ``cover_radius``)."""
        return cls.from_dict(d)

    def to_summary(self) -> dict:
        """The dict :func:`filtertopo.homology.bar_summary` returns (H2 keys only when computed)."""
        d = self.to_dict()
        if self.n_significant_h2 < 0:
            for key in ("h2_top", "h2_max", "n_significant_h2"):
                d.pop(key)
        return d


@dataclass(frozen=True)
class CircularInfo(_Part):
    """How the circular coordinate ``theta`` was found: the H1 bar (birth, death) it came from,
    the landmarks and field of its cocycle; or ``error`` when it could not be computed."""

    bar: tuple | None = None
    n_landmarks: int | None = None
    prime: int | None = None
    error: str | None = None

    def __post_init__(self):
        if self.bar is not None:
            object.__setattr__(self, "bar", tuple(float(b) for b in self.bar))


class _FloatPart(_Part):
    """A part whose every field is a float (None, JSON null, read as NaN)."""

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _f(getattr(self, f.name)))


@dataclass(frozen=True)
class ShapeFractions(_FloatPart):
    """Fractions of the core within ``shapes.tol`` of each reference shape
    (:func:`filtertopo.shapes.shape_fractions`) and median chord distances."""

    frac_primary: float = float("nan")
    frac_secondary: float = float("nan")
    frac_three_circle: float = float("nan")
    frac_klein: float = float("nan")
    median_dist_primary: float = float("nan")
    median_dist_klein: float = float("nan")


@dataclass(frozen=True)
class NullMargin(_FloatPart):
    """Longest H1 bar against matched random filters (:func:`filtertopo.nullmodel.null_margin`);
    ``init_h1``/``h1_ratio_init`` against the network at initialisation (NaN without it)."""

    h1_observed: float = float("nan")
    null_h1_mean: float = float("nan")
    null_h1_std: float = float("nan")
    null_h1_max: float = float("nan")
    h1_margin_z: float = float("nan")
    h1_ratio_null_max: float = float("nan")
    null_frac_circle: float = float("nan")
    null_n_draws: float = float("nan")
    init_h1: float = float("nan")
    h1_ratio_init: float = float("nan")


@dataclass(frozen=True)
class ScaleCell(_Part):
    """One (k, p) cell of the multi-scale grid: its verdict and two longest H1 bars."""

    k: int
    p: float
    verdict: str
    h1_1: float = 0.0
    h1_2: float = 0.0


@dataclass(frozen=True)
class ScaleGrid(_Part):
    """The verdict over the (k, p) grid of :func:`filtertopo.topology.scale_grid`: every
    cell, the majority verdict and its support (fraction of cells agreeing)."""

    cells: tuple
    majority: str
    support: float

    def __post_init__(self):
        object.__setattr__(self, "cells", tuple(c if isinstance(c, ScaleCell) else ScaleCell.from_dict(c)
                                                for c in self.cells))
        object.__setattr__(self, "support", float(self.support))


#: The per-layer table's columns, in order; :meth:`LayerResult.to_row` always gives all of them
#: (NaN or "" for a part that was not computed), whatever the flags.
TABLE_COLUMNS = (
    "layer", "shape", "n_filters", "n_dropped", "n_used", "n_core", "k", "p",
    "h1_1", "h1_2", "h1_3", "h1_gap_ratio", "n_h1_significant", "h0_max", "h2_1", "h1_1_z2", "h1_1_z3",
    "verdict", "scale_verdict", "scale_support",
    *(f.name for f in fields(ShapeFractions)), *(f.name for f in fields(NullMargin)),
)


def _deprecated(old: str, new: str):
    import warnings

    warnings.warn(f"LayerResult.{old} is deprecated and will be removed in the next release; use {new}.",
                  DeprecationWarning, stacklevel=3)


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
        (after subsampling to ``max_points``), and in the dense core (also as ``counts``).
    k : int
        The density neighbour used.
    p : float
        The fraction kept (raised for small layers, see ``notes``).
    seed : int
    coeff : tuple of int
        Coefficient fields; the first is the primary one.
    diagrams : dict of int -> ndarray of shape (m, 2)
        Diagrams over the primary field; an infinite death is ``np.inf``.
    diagrams_by_coeff : dict of int -> dict of int -> ndarray
    bars : BarSummary
    verdict : str
        The label, one of :data:`filtertopo.verdict.LABELS`.
    core : ndarray of shape (n_core, d), float32
        The normalised core points homology was computed on (before landmarks).
    provenance : ndarray of shape (n_core, 3), int64
        ``(source, out, in)`` of each core point.
    verdict_detail : filtertopo.verdict.Verdict or None
        Why: the rules applied with their numbers (``verdict_detail.reasons``).
    circular : CircularInfo or None
        Where ``theta`` came from (None when no loop was found or ``circular=False``).
    shapes : ShapeFractions or None
        None when the points are not square filters.
    null : NullMargin or None
        With ``null_draws >= 1``.
    scales : ScaleGrid or None
        With ``scales=True``.
    notes : tuple of str
        What was adjusted (k chosen, p raised) and what failed, one sentence each.
    theta : ndarray of shape (n_core,) or None
        Circle-valued coordinate of each core point from the longest H1 bar, when the
        layer has a significant loop.
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
    bars: BarSummary
    verdict: str
    core: np.ndarray
    provenance: np.ndarray
    verdict_detail: object = None
    circular: CircularInfo | None = None
    shapes: ShapeFractions | None = None
    null: NullMargin | None = None
    scales: ScaleGrid | None = None
    notes: tuple = ()
    theta: np.ndarray | None = None

    @property
    def counts(self) -> Counts:
        return Counts(self.n_filters, self.n_dropped, self.n_used, self.n_core)

    @property
    def reasons(self) -> tuple:
        """The verdict's reasons (``verdict_detail.reasons``), one sentence per rule."""
        return tuple(self.verdict_detail.reasons) if self.verdict_detail is not None else ()

    # -- deprecated dict views (one release) ------------------------------------------------
    @property
    def summary(self) -> dict:
        """Deprecated: use ``bars``."""
        _deprecated("summary", "LayerResult.bars")
        return self.bars.to_summary()

    @property
    def metrics(self) -> dict:
        """Deprecated: use ``shapes`` and ``null`` (or the columns of ``to_row()``)."""
        _deprecated("metrics", "LayerResult.shapes and LayerResult.null")
        return self._metrics()

    @property
    def extras(self) -> dict:
        """Deprecated: use ``verdict_detail``, ``circular``, ``scales`` and ``notes``."""
        _deprecated("extras", "LayerResult.verdict_detail, .circular, .scales and .notes")
        out = {}
        if self.verdict_detail is not None:
            out["verdict"] = self.verdict_detail.to_dict()
        if self.circular is not None:
            out["circular"] = ({"error": self.circular.error} if self.circular.error else
                               {"bar": list(self.circular.bar or ()), "n_landmarks": self.circular.n_landmarks,
                                "prime": self.circular.prime})
        if self.scales is not None:
            out["scales"] = self.scales.to_dict()
        out["notes"] = list(self.notes)
        return out

    def _metrics(self) -> dict:
        out = {}
        if self.shapes is not None:
            out.update(self.shapes.to_dict())
        if self.null is not None:
            out.update({k: v for k, v in self.null.to_dict().items()
                        if not (k in ("init_h1", "h1_ratio_init") and math.isnan(v))})
        return out

    def _top_other(self, q: int) -> float:
        dg = self.diagrams_by_coeff.get(q)
        if dg is None or 1 not in dg:
            return float("nan")
        life = np.sort((dg[1][:, 1] - dg[1][:, 0])[np.isfinite(dg[1][:, 1])])[::-1]
        return float(life[0]) if len(life) else 0.0

    def to_row(self) -> dict:
        """One row of the per-layer table: exactly :data:`TABLE_COLUMNS`, whatever the flags."""
        top = self.bars.h1_top
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
            "h1_gap_ratio": self.bars.h1_gap_ratio,
            "n_h1_significant": self.bars.n_significant,
            "h0_max": self.bars.h0_max,
            "h2_1": self.bars.h2_max,
            "h1_1_z2": self._top_other(2),
            "h1_1_z3": self._top_other(3),
            "verdict": self.verdict,
            "scale_verdict": self.scales.majority if self.scales is not None else "",
            "scale_support": self.scales.support if self.scales is not None else float("nan"),
        }
        row.update((self.shapes or ShapeFractions()).to_dict())
        row.update((self.null or NullMargin()).to_dict())
        return row

    def to_json(self) -> dict:
        part = lambda v: None if v is None else v.to_dict()  # noqa: E731
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
            "bars": self.bars.to_dict(),
            "verdict": self.verdict,
            "verdict_detail": part(self.verdict_detail),
            "circular": part(self.circular),
            "shapes": part(self.shapes),
            "null": part(self.null),
            "scales": part(self.scales),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, d: dict, core=None, provenance=None, theta=None) -> "LayerResult":
        """From :meth:`to_json` output, or from a layer of schema version 1 (``summary``,
        ``metrics``, ``extras`` dicts)."""
        from .verdict import Verdict

        dim = len(d["kernel_shape"]) if d.get("kernel_shape") else 0
        opt = lambda cls_, v: None if v is None else cls_.from_dict(v)  # noqa: E731
        if "bars" in d:
            parts = dict(bars=BarSummary.from_dict(d["bars"]), verdict_detail=opt(_VerdictPart, d.get("verdict_detail")),
                         circular=opt(CircularInfo, d.get("circular")), shapes=opt(ShapeFractions, d.get("shapes")),
                         null=opt(NullMargin, d.get("null")), scales=opt(ScaleGrid, d.get("scales")),
                         notes=tuple(str(n) for n in d.get("notes", [])))
        else:  # schema 1
            metrics, extras = d.get("metrics", {}), d.get("extras", {})
            shape_keys = {f.name for f in fields(ShapeFractions)}
            null_keys = {f.name for f in fields(NullMargin)}
            parts = dict(
                bars=BarSummary.from_summary(d.get("summary", {})),
                verdict_detail=opt(_VerdictPart, extras.get("verdict")),
                circular=opt(CircularInfo, extras.get("circular")),
                shapes=ShapeFractions.from_dict(metrics) if shape_keys & set(metrics) else None,
                null=NullMargin.from_dict(metrics) if null_keys & set(metrics) else None,
                scales=opt(ScaleGrid, extras.get("scales")),
                notes=tuple(str(n) for n in extras.get("notes", [])))
        if parts["verdict_detail"] is not None and not isinstance(parts["verdict_detail"], Verdict):
            parts["verdict_detail"] = parts["verdict_detail"].to_verdict()
        return cls(
            name=d["name"], shape=tuple(d["shape"]),
            kernel_shape=None if d.get("kernel_shape") is None else tuple(d["kernel_shape"]),
            n_filters=d["n_filters"], n_dropped=d.get("n_dropped", 0), n_used=d.get("n_used", d["n_filters"]),
            n_core=d["n_core"], k=d["k"], p=d["p"], seed=d.get("seed", 0), coeff=tuple(d.get("coeff", [2])),
            diagrams={int(k): _dgm_from_json(v) for k, v in d["diagrams"].items()},
            diagrams_by_coeff={int(q): {int(k): _dgm_from_json(v) for k, v in dg.items()}
                               for q, dg in d.get("diagrams_by_coeff", {}).items()},
            verdict=d.get("verdict", ""),
            core=np.zeros((0, dim)) if core is None else core,
            provenance=np.zeros((0, 3), np.int64) if provenance is None else provenance,
            theta=theta, **parts,
        )


class _VerdictPart:
    """Reads a :class:`filtertopo.verdict.Verdict` back from its JSON dict."""

    def __init__(self, d):
        self.d = d

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise TypeError(f"verdict_detail must be a JSON object; got {type(d).__name__}")
        return cls(d)

    def to_verdict(self):
        from .verdict import Verdict

        names = {f.name for f in fields(Verdict)}
        kw = {k: v for k, v in self.d.items() if k in names}
        kw["h1_top"] = tuple(kw.get("h1_top", ()))
        kw["reasons"] = tuple(kw.get("reasons", ()))
        return Verdict(**kw)


@dataclass(frozen=True)
class AnalysisResult:
    """Per-layer results of one analysis, with the configuration that produced them.

    Attributes
    ----------
    layers : tuple of LayerResult
        In depth order.
    config : filtertopo.config.AnalysisConfig
        Every setting; ``config.key()`` names the analysis.
    skipped : tuple of dict
        Tensors not analysed, with the reason.
    inputs : dict
        What was analysed and how it was run: ``sources``, ``layers``, ``null_init``,
        ``n_jobs`` (patches: ``images``, ``n_per_image``, the per-image counts, ...).
    """

    layers: tuple
    config: object = None
    skipped: tuple = ()
    inputs: dict = field(default_factory=dict)

    def __post_init__(self):
        from .config import AnalysisConfig

        if self.config is None:
            object.__setattr__(self, "config", AnalysisConfig())
        elif isinstance(self.config, dict):  # a dict of settings and inputs (schema 1)
            cfg, rest = _split_config(self.config)
            object.__setattr__(self, "config", cfg)
            object.__setattr__(self, "inputs", {**rest, **self.inputs})

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
        from .config import SCHEMA_VERSION

        return {
            "schema_version": SCHEMA_VERSION,
            "filtertopo_version": _version(),
            "config": self.config.to_dict(),
            "config_key": self.config.key(),
            "inputs": self.inputs,
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
        try:
            config, rest = _split_config(data.get("config", {}))
        except InputError as e:
            raise InputError(f"{js}: its config is not valid ({e}). {_rerun(out)}") from None
        inputs = data.get("inputs", {})
        if not isinstance(inputs, dict):
            raise InputError(f"{js}: 'inputs' must be a JSON object; got {type(inputs).__name__}. {_rerun(out)}")
        return cls(layers, config, tuple(data.get("skipped", [])), {**rest, **inputs})


def _split_config(d: dict):
    """(AnalysisConfig, the other keys) of a config dict; schema 1 mixed settings and inputs."""
    from .config import AnalysisConfig

    names = {f.name for f in fields(AnalysisConfig)}
    legacy = {"shape_tol": "shapes"}  # patches of schema 1
    settings = {k: v for k, v in d.items() if k in names}
    if "shape_tol" in d and "shapes" not in d:
        settings["shapes"] = {"tol": d["shape_tol"]}
    rest = {k: v for k, v in d.items() if k not in names and k not in legacy}
    return AnalysisConfig.from_dict(settings), rest


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
    for key in ("summary", "metrics", "extras", "bars"):
        if key in d and not isinstance(d[key], dict):
            raise bad(f"{key!r} must be a JSON object; got {type(d[key]).__name__}")
    for key in ("verdict_detail", "circular", "shapes", "null", "scales"):
        if d.get(key) is not None and not isinstance(d[key], dict):
            raise bad(f"{key!r} must be a JSON object or null; got {type(d[key]).__name__}")
    if "notes" in d and not (isinstance(d["notes"], list) and all(isinstance(n, str) for n in d["notes"])):
        raise bad(f"'notes' must be a list of strings; got {str(d['notes'])[:60]!r}")
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
    from ._version import __version__

    return __version__
