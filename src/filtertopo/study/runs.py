"""Finding the runs of a study: a sweep folder, or any folder of training run folders.

A **sweep folder** (``filtertopo sweep run SPEC --out DIR``, docs/studies.md) holds
``DIR/sweep.json`` (the spec, with its axes) and ``DIR/runs/<id>/``, each finished run with
``sweep_run.json`` (status and the axis values of the run, ``varied``), ``config.json``,
``run.json``, ``kernels.npz``, ``snapshots/`` and ``analysis/final/`` (plus
``analysis/step_000000/`` ... when the spec analyses snapshots). Only runs whose record says
``done`` are read; the grid's axes come from the spec, so the cells of failed runs are known.

**Any other folder** is searched (to a depth of 3) for run folders written by
``filtertopo train`` (``config.json`` and ``run.json`` with status ``complete``) that hold an
analysis: ``analysis/analysis.json`` or ``analysis/final/analysis.json``. The axes are the
config keys whose values differ between the runs (``model_kwargs`` entries as
``model_kwargs.<name>``); ``seed`` is the replicate axis.

This module reads JSON files only (no torch, no SQLite, nothing of :mod:`filtertopo.sweep`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

__all__ = ["RunFolder", "StudyRuns", "find_runs", "SEED_AXIS", "cell_key"]

#: The replicate axis: held fixed in the groups of Psi, never a conditioning variable, left out
#: of the configuration that cross-validation groups by.
SEED_AXIS = "seed"
_MAX_JSON = 64 * 2**20
_SKIP_KEYS = ("data_root", "download", "threads", "device")  # where a run executes, not what


@dataclass(frozen=True)
class RunFolder:
    """One run of a study.

    Attributes
    ----------
    id : str
    path : Path
    config : dict
        The run's TrainConfig as a dict (``config.json``'s ``config``).
    record : dict
        ``run.json`` (status, final accuracies).
    varied : dict
        The run's value on every axis of the study (``seed`` included).
    analysis : Path
        The analysis folder of the final kernels.
    init_analysis : Path or None
        An analysis folder of the step-0 snapshot, when the run has one.
    """

    id: str
    path: Path
    config: dict
    record: dict
    varied: dict
    analysis: Path
    init_analysis: Path | None = None


@dataclass(frozen=True)
class StudyRuns:
    """The runs found in a study folder, and the grid they fill.

    Attributes
    ----------
    runs : tuple of RunFolder
    axes : dict of str -> tuple
        Every axis with its values in grid order (``seed`` included when it varies).
    source : str
        ``"sweep"`` or ``"folders"``.
    skipped : tuple of (str, str)
        ``(path, reason)`` of folders that were not used.
    """

    runs: tuple
    axes: dict
    source: str
    skipped: tuple = ()
    meta: dict = field(default_factory=dict)


def cell_key(value) -> str:
    """A hashable, printable form of an axis value (lists of widths included)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _read_json(path: Path):
    from .._snapshots_index import read_regular_file

    raw = read_regular_file(path, param="run file", max_bytes=_MAX_JSON)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}).") from None


def _analysis_of(run: Path):
    for cand in (run / "analysis" / "final", run / "analysis"):
        if (cand / "analysis.json").is_file():
            return cand
    return None


def _init_analysis_of(run: Path):
    cand = run / "analysis" / "step_000000"
    return cand if (cand / "analysis.json").is_file() else None


def _flatten(config: dict) -> dict:
    out = {}
    for k, v in config.items():
        if k in _SKIP_KEYS:
            continue
        if k == "model_kwargs" and isinstance(v, dict):
            for kk, vv in v.items():
                out[f"model_kwargs.{kk}"] = vv
        else:
            out[k] = v
    return out


def _sweep_runs(root: Path) -> StudyRuns:
    meta = _read_json(root / "sweep.json")
    spec = meta.get("spec", {}) if isinstance(meta, dict) else {}
    axes = {a: tuple(v) for a, v in (spec.get("axes") or {}).items()}
    runs, skipped = [], []
    runs_dir = root / "runs"
    names = sorted(os.listdir(runs_dir)) if runs_dir.is_dir() else []
    for name in names:
        p = runs_dir / name
        if name.startswith(".") or not p.is_dir():
            continue
        try:
            rec = _read_json(p / "sweep_run.json")
        except InputError as e:
            skipped.append((str(p), f"no readable sweep_run.json ({e})"))
            continue
        if rec.get("status") != "done":
            skipped.append((str(p), f"status {rec.get('status')!r}"))
            continue
        analysis = _analysis_of(p)
        if analysis is None:
            skipped.append((str(p), "no analysis/final/analysis.json"))
            continue
        try:
            cfg = _read_json(p / "config.json").get("config", rec.get("config", {}))
            record = _read_json(p / "run.json")
        except InputError as e:
            skipped.append((str(p), str(e)))
            continue
        runs.append(RunFolder(rec.get("id", name), p, cfg, record, dict(rec.get("varied") or {}), analysis,
                              _init_analysis_of(p)))
    return StudyRuns(tuple(runs), axes, "sweep", tuple(skipped), {"name": spec.get("name", ""),
                                                                   "sweep_key": meta.get("sweep_key")})


def _candidate_dirs(root: Path, depth: int = 3):
    todo = [(root, 0)]
    while todo:
        d, level = todo.pop(0)
        if (d / "config.json").is_file() and (d / "run.json").is_file():
            yield d
            continue
        if level >= depth:
            continue
        try:
            subs = sorted((e for e in os.scandir(d) if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")),
                          key=lambda e: e.name)
        except OSError:
            continue
        todo.extend((Path(e.path), level + 1) for e in subs)


def _folder_runs(root: Path) -> StudyRuns:
    found, skipped = [], []
    for p in _candidate_dirs(root):
        try:
            cfg = _read_json(p / "config.json")
            record = _read_json(p / "run.json")
        except InputError as e:
            skipped.append((str(p), str(e)))
            continue
        if not isinstance(cfg, dict) or not isinstance(cfg.get("config"), dict):
            skipped.append((str(p), "config.json has no 'config' object"))
            continue
        if record.get("status") != "complete":
            skipped.append((str(p), f"run.json status {record.get('status')!r}, not 'complete'"))
            continue
        analysis = _analysis_of(p)
        if analysis is None:
            skipped.append((str(p), "no analysis/ (or analysis/final/) folder with analysis.json"))
            continue
        found.append((p, cfg["config"], record, analysis))
    flat = [_flatten(c) for _, c, _, _ in found]
    keys = sorted({k for f in flat for k in f})
    axes = {}
    for k in keys:
        values = []
        for f in flat:
            v = f.get(k)
            if cell_key(v) not in {cell_key(x) for x in values}:
                values.append(v)
        if len(values) > 1:
            try:
                values = sorted(values)
            except TypeError:
                values = sorted(values, key=cell_key)
            axes[k] = tuple(values)
    if SEED_AXIS in axes:  # the replicate axis last, as in a sweep
        axes[SEED_AXIS] = axes.pop(SEED_AXIS)
    runs = []
    for (p, c, record, analysis), f in zip(found, flat):
        from ..config import config_key

        rid = config_key({k: v for k, v in c.items() if k not in _SKIP_KEYS})
        runs.append(RunFolder(rid, p, c, record, {a: f.get(a) for a in axes}, analysis, _init_analysis_of(p)))
    return StudyRuns(tuple(runs), axes, "folders", tuple(skipped), {"name": root.name})


def find_runs(root) -> StudyRuns:
    """The runs of a sweep folder or of a folder of run folders (see the module docstring).

    Raises
    ------
    InputError
        ``root`` is not a folder, or holds no usable run (the reasons are listed).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"study folder {str(root)!r} is not a folder; pass a sweep folder (`filtertopo sweep run "
                         "--out DIR`) or a folder of run folders.")
    found = _sweep_runs(root) if (root / "sweep.json").is_file() else _folder_runs(root)
    if not found.runs:
        why = "; ".join(f"{p}: {r}" for p, r in found.skipped[:5]) or "no run folder found"
        raise InputError(f"study folder {str(root)!r} holds no finished, analysed run ({why}). A run folder needs "
                         "config.json, run.json (status complete) and an analysis/ folder (`filtertopo analyze "
                         "RUN/kernels.npz --out RUN/analysis`).")
    ids = [r.id for r in found.runs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(f"study folder {str(root)!r} holds the same training run twice (ids {dup[:5]}): the same "
                         "config trained into two folders. Keep one of each.")
    return found
