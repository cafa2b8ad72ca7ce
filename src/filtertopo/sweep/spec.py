"""Sweep specs: one TOML file names a complete grid of training runs and how to analyse them.

A spec is a base :class:`~filtertopo.training.TrainConfig` (``[train]``), axes to vary
(``[axes]``: any TrainConfig key that changes what is trained, ``model_kwargs.<name>``
entries, and ``seed``, or ``seeds = N`` at the top), the snapshots to take and analyse
(``[snapshots]``) and one :class:`~filtertopo.config.AnalysisConfig` with a layer
selector (``[analysis]``)::

    name = "tiny"
    seeds = 2                       # the axis seed = [0, 1]; or [axes] seed = [0, 7]

    [train]                         # TrainConfig keys (filtertopo train --help)
    dataset = "digits"
    n_train = 200
    epochs = 1

    [axes]                          # every combination is one run
    lr = [0.02, 0.05]
    "model_kwargs.widths" = [[32, 16], [64, 32]]

    [snapshots]
    every = 4                       # TrainConfig.snapshot_every (batches); 0: none
    analyze = [0]                   # snapshot steps analysed besides the final kernels; "all"

    [analysis]                      # AnalysisConfig settings, plus the layer selector
    layers = "conv1"
    n_landmarks = 100

:func:`load_spec` reads and validates a file (every problem is an InputError naming the
key, the rule, the value and the fix, with "did you mean" for a misspelt key);
:meth:`SweepSpec.expand` gives the grid, in axis order with the seed varying fastest.
Each run's id is :meth:`TrainConfig.key` of its resolved config, so one training run has
one id whatever spec, machine or device it comes from.
"""

from __future__ import annotations

import difflib
import itertools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..config import AnalysisConfig, config_key
from ..errors import InputError

__all__ = ["SweepSpec", "PlannedRun", "load_spec", "parse_spec", "SPEC_KEYS", "SPEC_MAX_BYTES"]

#: The top-level keys of a spec.
SPEC_KEYS = ("name", "description", "seeds", "train", "axes", "snapshots", "analysis")
_SNAPSHOT_KEYS = ("every", "analyze")
#: The largest spec file read.
SPEC_MAX_BYTES = 1 << 20
_FLOAT_KEYS = ("lr", "momentum", "weight_decay")


def _train_config():
    from ..training.loop import TrainConfig

    return TrainConfig


def _hint(name, choices) -> str:
    m = difflib.get_close_matches(name, list(choices), 1, 0.6)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _show(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict, str, bool, type(None))) else repr(v)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep's grid.

    Attributes
    ----------
    position : int
        Place in the grid (axis order, seed fastest).
    id : str
        ``config.key()``: 16 hex digits naming what is trained.
    config : TrainConfig
    varied : dict
        The value of each axis for this run, by axis name (``"lr"``, ``"model_kwargs.widths"``,
        ``"seed"``).
    """

    position: int
    id: str
    config: object
    varied: dict


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec (see the module docstring for the file format).

    Attributes
    ----------
    name : str
    base : TrainConfig
        The ``[train]`` table (snapshot_every from ``[snapshots] every``).
    axes : tuple of (str, tuple)
        ``(axis name, values)`` in file order; the seed axis last.
    snapshot_steps : "all" or tuple of int
        Snapshot steps analysed besides the final kernels.
    analysis : AnalysisConfig
    layers : str, list or None
        Layer selector of :func:`filtertopo.pipeline.select_layers` (None: every conv layer).
    description : str
    source : str
        The file it was read from ("" when built from a dict).
    text : str
        The file's text (copied into the sweep folder).
    """

    name: str
    base: object
    axes: tuple
    snapshot_steps: object = ()
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    layers: object = None
    description: str = ""
    source: str = ""
    text: str = ""

    def expand(self) -> tuple:
        """The complete grid as a tuple of :class:`PlannedRun`; duplicate runs are an InputError."""
        names = [a for a, _ in self.axes]
        runs, seen = [], {}
        for pos, values in enumerate(itertools.product(*[v for _, v in self.axes])):
            varied = dict(zip(names, values))
            cfg = _apply(self.base, varied, where=self._where)
            rid = cfg.key()
            if rid in seen:
                raise InputError(
                    f"{self._where}: runs {seen[rid][0]} {_show(seen[rid][1])} and {pos} {_show(varied)} are "
                    f"the same training run (id {rid}): the rule is one run per distinct training config. "
                    "Remove the repeated value, or the axis over a key that does not change what is "
                    "trained.")
            seen[rid] = (pos, varied)
            runs.append(PlannedRun(pos, rid, cfg, varied))
        return tuple(runs)

    @property
    def _where(self) -> str:
        return f"sweep spec {self.source!r}" if self.source else "sweep spec"

    def key(self) -> str:
        """Stable 16-hex-digit digest of what the sweep computes: its run ids (sorted), the
        analysis config, the layer selector and the snapshot steps. Two specs with the same
        key fill the same output folder."""
        return config_key({"runs": sorted(r.id for r in self.expand()),
                           "analysis": self.analysis.key(), "layers": self.layers,
                           "snapshot_steps": self.snapshot_steps})

    def to_dict(self) -> dict:
        """JSON-able description (recorded in the sweep folder)."""
        return {"name": self.name, "description": self.description, "source": self.source,
                "base": self.base.to_dict(), "axes": {a: list(v) for a, v in self.axes},
                "snapshot_steps": self.snapshot_steps if isinstance(self.snapshot_steps, str)
                else list(self.snapshot_steps),
                "analysis": self.analysis.to_dict(), "layers": self.layers}


def _apply(base, varied: dict, *, where: str):
    """``base`` with the axis values of one run; InputError naming the axis and value."""
    changes, kwargs = {}, dict(base.model_kwargs)
    if "model_kwargs" in varied:
        kwargs = dict(varied["model_kwargs"])
    for axis, value in varied.items():
        if axis.startswith("model_kwargs."):
            kwargs[axis.split(".", 1)[1]] = value
        elif axis != "model_kwargs":
            changes[axis] = float(value) if axis in _FLOAT_KEYS and _is_int(value) else value
    changes["model_kwargs"] = kwargs
    try:
        return base.replace(**changes)
    except InputError as e:
        shown = ", ".join(f"{a} = {_show(v)}" for a, v in varied.items())
        raise InputError(f"{where}: the run with {shown}: {e}") from None
    except TypeError as e:  # dataclasses.replace with a bad value type the validator missed
        raise InputError(f"{where}: {e}") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def load_spec(path) -> SweepSpec:
    """Read and validate a sweep spec TOML file.

    Raises
    ------
    InputError
        The file is missing, not UTF-8 TOML, or any key or value breaks a rule.
    """
    import tomllib

    from .._snapshots_index import read_regular_file

    fix = "Pass a sweep spec TOML file like examples/sweep_tiny.toml."
    raw = read_regular_file(path, param="sweep spec", max_bytes=SPEC_MAX_BYTES, fix=fix)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"sweep spec {str(path)!r} is not UTF-8 text ({e}). {fix}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"sweep spec {str(path)!r} is not valid TOML: {e}. {fix}") from None
    return parse_spec(data, source=str(path), text=text, default_name=Path(path).stem)


def parse_spec(data: dict, *, source: str = "", text: str = "", default_name: str = "sweep") -> SweepSpec:
    """Validate the tables of a spec (the parsed TOML) into a :class:`SweepSpec`."""
    TrainConfig = _train_config()
    where = f"sweep spec {source!r}" if source else "sweep spec"
    if not isinstance(data, dict):
        raise InputError(f"{where} must be a table of {', '.join(SPEC_KEYS)}; got {type(data).__name__}.")
    train_keys = [f.name for f in fields(TrainConfig)]
    for key in data:
        if key not in SPEC_KEYS:
            extra = (f"; {key!r} is a training setting: put it under [train], or vary it under [axes]"
                     if key in train_keys else _hint(key, SPEC_KEYS))
            raise InputError(f"{where}: unknown key {key!r}{extra}. The keys of a spec are "
                             f"{', '.join(SPEC_KEYS)}.")
    name = data.get("name", default_name)
    description = data.get("description", "")
    for key, v in (("name", name), ("description", description)):
        if not isinstance(v, str):
            raise InputError(f"{where}: {key} must be a string; got {_show(v)}. Write {key} = \"...\".")
    base = _table(data, "train", where)
    axes_t = _table(data, "axes", where)
    snaps = _table(data, "snapshots", where)
    analysis_t = dict(_table(data, "analysis", where))

    # [train]
    for key in base:
        if key not in train_keys:
            raise InputError(f"{where}: [train] has the unknown key {key!r}{_hint(key, train_keys)}; "
                             f"the training settings are {', '.join(train_keys)}.")
    base = {k: (float(v) if k in _FLOAT_KEYS and _is_int(v) else v) for k, v in base.items()}

    # [snapshots]
    for key in snaps:
        if key not in _SNAPSHOT_KEYS and key != "analyse":
            raise InputError(f"{where}: [snapshots] has the unknown key {key!r}"
                             f"{_hint(key, _SNAPSHOT_KEYS)}; its keys are every (batches between "
                             "snapshots) and analyze (steps to analyse).")
    if "analyse" in snaps and "analyze" in snaps:
        raise InputError(f"{where}: [snapshots] gives both analyze and analyse; keep one.")
    if "every" in snaps:
        if "snapshot_every" in base:
            raise InputError(f"{where}: the snapshot interval is given twice, as [snapshots] every and "
                             "[train] snapshot_every; keep one.")
        base["snapshot_every"] = snaps["every"]
    steps = _steps(snaps.get("analyze", snaps.get("analyse", [])), where)

    try:
        base_cfg = TrainConfig.from_dict(base)
    except InputError as e:
        raise InputError(f"{where}: [train]: {e}") from None
    except TypeError as e:
        raise InputError(f"{where}: [train]: {e}") from None

    # [axes] and seeds
    axes = _axes(axes_t, base, base_cfg, where, train_keys)
    if "seeds" in data:
        if "seed" in dict(axes):
            raise InputError(f"{where}: the seeds are given twice, as seeds and as [axes] seed; keep one.")
        if "seed" in base:
            raise InputError(f"{where}: seeds varies the seed, so [train] must not set seed "
                             f"(it has seed = {_show(base['seed'])}); remove one of them.")
        axes.append(("seed", _seeds(data["seeds"], where)))
    elif "seed" in dict(axes):  # the seed axis last, so runs of one configuration are adjacent
        axes = [a for a in axes if a[0] != "seed"] + [a for a in axes if a[0] == "seed"]

    snap_values = dict(axes).get("snapshot_every", (base_cfg.snapshot_every,))
    if steps:
        if any(v == 0 for v in snap_values):
            raise InputError(f"{where}: [snapshots] analyze = {_show(_steps_shown(steps))} needs snapshots, "
                             "but the snapshot interval is 0. Set [snapshots] every = N (batches "
                             "between snapshots), or remove analyze.")
        if steps != "all":
            for every in snap_values:
                bad = [s for s in steps if s % every]
                if bad:
                    raise InputError(f"{where}: [snapshots] analyze lists step(s) {bad}, which are not "
                                     f"multiples of the snapshot interval {every} (snapshots are taken "
                                     f"at step 0, every {every} batches and at the end). Use multiples "
                                     f"of {every}, or \"all\".")

    # [analysis]
    layers = analysis_t.pop("layers", None)
    if layers is not None:
        ok = isinstance(layers, str) and layers.strip() or (
            isinstance(layers, list) and layers and all(isinstance(x, (str, int)) and not isinstance(x, bool)
                                                        for x in layers))
        if not ok:
            raise InputError(f"{where}: [analysis] layers must be a selector: a string like \"conv1\" or "
                             f"\"conv*\", or a list of names or 1-based depths; got {_show(layers)}.")
    try:
        analysis = AnalysisConfig.from_dict(analysis_t)
    except InputError as e:
        msg = str(e).removeprefix("config: ")
        raise InputError(f"{where}: [analysis]: {msg} (the [analysis] table takes the settings of "
                         "`filtertopo analyze --print-config`, plus layers)") from None
    spec = SweepSpec(name=name, base=base_cfg, axes=tuple((a, tuple(v)) for a, v in axes),
                     snapshot_steps=steps, analysis=analysis, layers=layers,
                     description=description, source=source, text=text)
    spec.expand()  # every run valid, no duplicates
    return spec


def _table(data, key, where) -> dict:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise InputError(f"{where}: {key} must be a table ([{key}] followed by key = value lines); "
                         f"got {_show(v)}.")
    return v


def _steps(v, where):
    if isinstance(v, str):
        low = v.strip().lower()
        if low == "all":
            return "all"
        if low == "none":
            return ()
        raise InputError(f"{where}: [snapshots] analyze must be a list of steps, \"all\" or \"none\"; "
                         f"got {_show(v)}. Example: analyze = [0] (the initial weights).")
    if not isinstance(v, list) or not all(_is_int(s) and s >= 0 for s in v):
        raise InputError(f"{where}: [snapshots] analyze must be a list of steps (integers >= 0), \"all\" "
                         f"or \"none\"; got {_show(v)}. Example: analyze = [0] (the initial weights).")
    if len(set(v)) != len(v):
        raise InputError(f"{where}: [snapshots] analyze lists a step twice: {v}; list each once.")
    return tuple(sorted(v))


def _steps_shown(steps):
    return steps if isinstance(steps, str) else list(steps)


def _seeds(v, where) -> tuple:
    from ..training.loop import SEED_MAX

    if _is_int(v):
        if not 1 <= v <= 100_000:
            raise InputError(f"{where}: seeds must be a number of seeds in [1, 100000] (seeds 0..N-1) or a "
                             f"list of seeds; got {v}. Example: seeds = 4.")
        return tuple(range(v))
    if isinstance(v, list):
        if not v:
            raise InputError(f"{where}: seeds is an empty list; give at least one seed, e.g. seeds = [0] "
                             "or seeds = 4.")
        bad = [s for s in v if not (_is_int(s) and 0 <= s <= SEED_MAX)]
        if bad:
            raise InputError(f"{where}: seeds must be integers in [0, {SEED_MAX}]; got {_show(bad[0])}. "
                             "Example: seeds = [0, 1, 2, 3].")
        dup = sorted({s for s in v if v.count(s) > 1})
        if dup:
            raise InputError(f"{where}: seeds lists {dup} more than once, which would train the same run "
                             "twice; list each seed once.")
        return tuple(v)
    raise InputError(f"{where}: seeds must be a number of seeds (seeds = 4 means 0..3) or a list of "
                     f"seeds; got {_show(v)}.")


def _flatten_axes(axes_t: dict) -> list:
    """``[axes] model_kwargs.width = [...]`` (a dotted key, parsed as a nested table) and
    ``"model_kwargs.width" = [...]`` (a quoted key) both become the axis ``model_kwargs.width``."""
    out = []
    for key, v in axes_t.items():
        if key == "model_kwargs" and isinstance(v, dict):
            out += [(f"model_kwargs.{k}", vv) for k, vv in v.items()]
        else:
            out.append((key, v))
    return out


def _axes(axes_t, base: dict, base_cfg, where, train_keys) -> list:
    TrainConfig = type(base_cfg)
    excluded = TrainConfig.KEY_EXCLUDES
    allowed = [k for k in train_keys if k not in excluded]
    axes, names = [], set()
    for axis, values in _flatten_axes(axes_t):
        label = f"[axes] {axis}"
        if axis in names:
            raise InputError(f"{where}: {label} is given twice; keep one list of values.")
        names.add(axis)
        if axis.startswith("model_kwargs."):
            entry = axis.split(".", 1)[1]
            if not entry or "." in entry:
                raise InputError(f"{where}: {label}: a model_kwargs axis names one factory argument, "
                                 f"e.g. \"model_kwargs.widths\"; got the name {axis!r}.")
            if entry in base.get("model_kwargs", {}):
                raise InputError(f"{where}: model_kwargs {entry!r} is both in [train] model_kwargs and in "
                                 "[axes]; remove it from one of them.")
        elif axis in excluded:
            raise InputError(f"{where}: {label}: {axis!r} says where or how a run executes, not what is "
                             f"trained, so it is not part of the run id and cannot be an axis (the runs "
                             f"would be duplicates). Set it in [train]" +
                             (" or with --device" if axis == "device" else "") + ".")
        elif axis not in allowed:
            extra = "" if _hint(axis, allowed + ["seed"]) else ("; a model factory argument is an axis "
                                                                f"\"model_kwargs.{axis}\"")
            raise InputError(f"{where}: {label}: unknown key {axis!r}{_hint(axis, allowed)}{extra}. Axes "
                             f"are training settings ({', '.join(allowed)}) or \"model_kwargs.NAME\".")
        elif axis in base:
            raise InputError(f"{where}: {axis!r} is both in [train] ({axis} = {_show(base[axis])}) and in "
                             "[axes]; remove it from one of them.")
        if axis == "model_kwargs" and any(a.startswith("model_kwargs.") for a in names):
            raise InputError(f"{where}: [axes] has both model_kwargs and model_kwargs.NAME axes; use one form.")
        if axis.startswith("model_kwargs.") and "model_kwargs" in names:
            raise InputError(f"{where}: [axes] has both model_kwargs and model_kwargs.NAME axes; use one form.")
        if not isinstance(values, list):
            raise InputError(f"{where}: {label} must be a list of values; got {_show(values)}. Write "
                             f"{axis} = [{_show(values)}] for one value, or move it to [train].")
        if not values:
            raise InputError(f"{where}: {label} is empty; the rule is at least one value per axis "
                             f"(an empty axis makes an empty grid). Give values, e.g. {axis} = "
                             f"[{_example(axis)}], or remove the axis.")
        shown = [json.dumps(v, sort_keys=True) for v in values]
        for j, s in enumerate(shown):
            if s in shown[:j] or (axis in _FLOAT_KEYS and any(_num_eq(values[j], values[i]) for i in range(j))):
                raise InputError(f"{where}: {label} lists the value {s} twice, which would train the same "
                                 "runs twice; list each value once.")
        for j, value in enumerate(values):  # each value alone, so the message names it
            if axis == "model_kwargs" and not isinstance(value, dict):
                raise InputError(f"{where}: {label}[{j}] must be a table of factory arguments, e.g. "
                                 f"{{widths = [64, 32]}}; got {_show(value)}.")
            _apply(base_cfg, {axis: value}, where=f"{where}: {label}[{j}] = {_show(value)}")
        axes.append((axis, tuple(float(v) if axis in _FLOAT_KEYS and _is_int(v) else v for v in values)))
    return axes


def _num_eq(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _example(axis) -> str:
    return {"lr": "0.01, 0.05", "batch_size": "32, 64", "weight_decay": "0.0, 0.001", "epochs": "1, 2",
            "optimizer": '"sgd", "adam"', "n_train": "500, 1000", "seed": "0, 1"}.get(
        axis, "[32, 16], [64, 32]" if axis == "model_kwargs.widths" else "...")
