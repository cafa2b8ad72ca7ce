"""One configuration for an analysis: :class:`AnalysisConfig`, recorded whole with every result.

Every parameter that changes what an analysis finds lives here, including the verdict and
shape rules (:class:`VerdictRules`, :class:`ShapeRules`). Configs are frozen, validated when
built, hashable, and have a stable :meth:`AnalysisConfig.key` (the digest of their canonical
JSON), so a study can name each analysis by its settings. What is not a setting but an input
(the checkpoints, the layer selection, ``allow_pickle``) or a way of running (``n_jobs``,
``progress``, an executor) is passed to :func:`filtertopo.analyze` beside the config.

    >>> from filtertopo.config import AnalysisConfig
    >>> cfg = AnalysisConfig(p=0.2, coeff=(2, 3))
    >>> cfg.k, cfg.p, cfg.coeff, len(cfg.key())
    ('auto', 0.2, (2, 3), 16)
    >>> AnalysisConfig.from_dict(cfg.to_dict()) == cfg
    True

Files: :meth:`AnalysisConfig.from_toml` reads a TOML file (top-level keys, tables
``[verdict]`` and ``[shapes]``; or the same under an ``[analysis]`` table), and
:meth:`AnalysisConfig.to_toml` writes one (``filtertopo analyze --print-config``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .errors import InputError, check_range

__all__ = ["AnalysisConfig", "VerdictRules", "ShapeRules", "SCHEMA_VERSION", "config_key",
           "MIN_FILTERS", "MIN_CORE", "MAX_COEFF", "MAX_PH_BYTES"]

#: Version of the layout of ``analysis.json`` (2: the config is an :class:`AnalysisConfig`
#: and the inputs are a separate record; 1, unversioned: one dict of both).
SCHEMA_VERSION = 2
#: Layers with fewer usable filters than this get the verdict ``"too-few"``.
MIN_FILTERS = 30
#: The dense core keeps at least this many filters (p is raised for small layers).
MIN_CORE = 60
#: Bounds of :func:`filtertopo.topology.auto_k`.
K_MIN, K_MAX = 5, 300
#: Largest coefficient prime: ripser.py packs coefficients in 7 bits; 131 already allocates > 16 GB.
MAX_COEFF = 127
#: Memory budget of one persistent-homology call (bytes), env FILTERTOPO_MAX_PH_BYTES.
MAX_PH_BYTES = 4 * 1024**3
#: Bytes per simplex of the top dimension that ripser.py keeps (measured: 500 landmarks,
#: maxdim 2 = C(500, 3) triangles -> 1.70 GB peak). GUDHI, which computes the diagrams when
#: installed, needed 0.16 GiB there (random points): the check stays ripser.py's, the fallback's.
_PH_BYTES_PER_SIMPLEX = 82


def config_key(d: dict) -> str:
    """Stable 16-hex-digit key of a JSON-able dict: sha256 of its canonical JSON.

    Canonical: keys sorted, no whitespace, floats by ``repr``. Equal settings give equal
    keys across processes, machines and Python versions.

    >>> config_key({"b": 1, "a": [2, 3]}) == config_key({"a": [2, 3], "b": 1})
    True
    """
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False, default=json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def json_default(o):
    """``json.dumps(default=...)`` for numpy scalars, tuples, sets and paths (what configs hold)."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _number(name, v, *, low=None, high=None, low_inclusive=True, fix=""):
    check_range(name, v, low=low, high=high, low_inclusive=low_inclusive, fix=fix)
    return float(v)


@dataclass(frozen=True)
class VerdictRules:
    """Thresholds of :func:`filtertopo.verdict.layer_verdict` (its module docstring says why).

    Attributes
    ----------
    min_persistence, min_ratio : float, default=0.15, 2.0
        An H1 (or H2) bar is significant when at least ``min_persistence`` long (chord
        distance) and ``min_ratio`` times the next one. Also sets the table's
        ``n_h1_significant``.
    cluster_ratio : float, default=2.0
        Gap ratio among finite H0 bars that marks clusters.
    max_angle_gap : float, default=pi/8
        Empty arcs (radians) wider than this count as gaps between clusters.
    max_empty : float, default=0.75
        Fraction of the circle that 3 or more gaps must cover to make ``"clusters"``.
    max_arc : float, default=2*pi/3
        One empty arc wider than this makes the loop an ``"arc"``.
    field_ratio : float, default=1.5
        Z/2-only classes must be this much longer over Z/2 than over Z/3 (Klein bottle).
    min_agreement : float, default=0.8
        Agreement of circular coordinate and edge angle for ``"primary-circle"`` when a
        circular coordinate is given to the verdict.
    min_frac_primary : float, default=0.5
        Fraction of the core near the primary circle for ``"primary-circle"``.
    """

    min_persistence: float = 0.15
    min_ratio: float = 2.0
    cluster_ratio: float = 2.0
    max_angle_gap: float = math.pi / 8
    max_empty: float = 0.75
    max_arc: float = 2 * math.pi / 3
    field_ratio: float = 1.5
    min_agreement: float = 0.8
    min_frac_primary: float = 0.5

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            where = f"verdict.{f.name}"
            if f.name in ("min_ratio", "cluster_ratio", "field_ratio"):
                v = _number(where, v, low=1, fix="a ratio >= 1, e.g. 2.")
            elif f.name in ("max_angle_gap", "max_arc"):
                v = _number(where, v, low=0, high=2 * math.pi, low_inclusive=False, fix="an angle in radians.")
            elif f.name == "min_persistence":
                v = _number(where, v, low=0, high=2, fix="a chord length, e.g. 0.15.")
            else:
                v = _number(where, v, low=0, high=1, fix="a fraction in [0, 1].")
            object.__setattr__(self, f.name, v)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def significance(self) -> dict:
        """The bar-significance rule as keywords of :func:`filtertopo.homology.count_significant`."""
        return dict(min_persistence=self.min_persistence, min_ratio=self.min_ratio)


@dataclass(frozen=True)
class ShapeRules:
    """Rules of :func:`filtertopo.shapes.shape_fractions`.

    Attributes
    ----------
    tol : float, default=0.5
        A filter is near a reference shape when its chord distance to the shape's nearest
        point is below ``tol`` (0.5 is an angle of about 29 degrees).
    """

    tol: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "tol", _number("shapes.tol", self.tol, low=0, high=2, low_inclusive=False,
                                                fix="a chord distance, e.g. 0.5."))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_NESTED = {"verdict": VerdictRules, "shapes": ShapeRules}


@dataclass(frozen=True)
class AnalysisConfig:
    """Every setting of an analysis (the paper's defaults, README "What is computed"; see :func:`filtertopo.analyze_points`).

    Attributes
    ----------
    k : int or "auto", default="auto"
        Density neighbour; "auto" is :func:`filtertopo.pipeline.auto_k` of the layer size.
    p : float in (0, 1], default=0.3
        Fraction of densest filters kept.
    maxdim : int, default=1
    coeff : tuple of int, default=(2,)
        Prime fields up to :data:`MAX_COEFF`; the first is primary. ``2``, ``"2,3"`` accepted.
    seed : int, default=0
    n_landmarks : int, default=500
    max_points : int or None, default=10000
    clamp_k : bool, default=False
    circular : bool, default=True
    null_draws : int, default=0
    scales : bool, default=False
    min_core : int, default=60
    min_filters : int, default=30
        Fewer usable filters give the verdict ``"too-few"``.
    verdict : VerdictRules
    shapes : ShapeRules
    """

    k: int | str = "auto"
    p: float = 0.3
    maxdim: int = 1
    coeff: tuple = (2,)
    seed: int = 0
    n_landmarks: int = 500
    max_points: int | None = 10000
    clamp_k: bool = False
    circular: bool = True
    null_draws: int = 0
    scales: bool = False
    min_core: int = MIN_CORE
    min_filters: int = MIN_FILTERS
    verdict: VerdictRules = field(default_factory=VerdictRules)
    shapes: ShapeRules = field(default_factory=ShapeRules)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        for name, cls in _NESTED.items():
            v = getattr(self, name)
            if isinstance(v, dict):
                set_(name, _from_dict(cls, v, where=name))
            elif not isinstance(v, cls):
                raise InputError(f"{name} must be a {cls.__name__} or a dict of its fields; got {v!r}.")
        k = self.k
        if isinstance(k, str) and k.strip().lower() == "auto":
            set_("k", "auto")
        elif isinstance(k, str):
            raise InputError(f"k (--k) must be 'auto' or an integer >= 1; got {k!r}.")
        else:
            check_range("k (--k)", k, low=1, integer=True,
                        fix="k is the neighbour of the density estimate; 'auto' picks it from the layer size.")
            set_("k", int(k))
        check_range("p (--p)", self.p, low=0, high=1, low_inclusive=False, fix="p is the fraction kept, e.g. 0.3.")
        set_("p", float(self.p))
        check_range("maxdim (--maxdim)", self.maxdim, low=0, high=3, integer=True,
                    fix="use 1 (H0, H1) or 2 (adds H2).")
        check_range("n_landmarks (--n-landmarks)", self.n_landmarks, low=2, high=100_000, integer=True,
                    fix="e.g. 500.")
        mp = self.max_points
        if isinstance(mp, str) and mp.strip().lower() == "none":
            mp = None
        if mp is not None:
            check_range("max_points (--max-points)", mp, low=2, high=10**8, integer=True, fix="e.g. 10000.")
            mp = int(mp)
        set_("max_points", mp)
        from .errors import check_seed

        check_seed("seed (--seed)", self.seed, allow_generator=False)
        set_("seed", int(self.seed))
        check_range("min_core", self.min_core, low=0, integer=True, fix="e.g. 50; 0 keeps p as given.")
        check_range("min_filters", self.min_filters, low=2, integer=True, fix="e.g. 30.")
        check_range("null_draws (--null-draws)", self.null_draws, low=0, high=1000, integer=True,
                    fix="e.g. 3; 0 skips the null model.")
        for name in ("maxdim", "n_landmarks", "min_core", "min_filters", "null_draws"):
            set_(name, int(getattr(self, name)))
        for name in ("clamp_k", "circular", "scales"):
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                raise InputError(f"{name} must be true or false; got {v!r}.")
            set_(name, bool(v))
        set_("coeff", _check_coeffs(self.coeff))
        _check_ph_memory(self.n_landmarks, self.maxdim)

    def __getitem__(self, name):
        """Deprecated dict-style access (results of schema 1 had a dict config)."""
        import warnings

        warnings.warn("config[name] is deprecated; use config.name (AnalysisConfig attributes).",
                      DeprecationWarning, stacklevel=2)
        return self.to_dict()[name]

    def get(self, name, default=None):
        """Deprecated dict-style access; see :meth:`__getitem__`."""
        try:
            return self[name]
        except KeyError:
            return default

    # -- conversions -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict of every field (nested rules as dicts)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["coeff"] = list(self.coeff)
        d["verdict"], d["shapes"] = self.verdict.to_dict(), self.shapes.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, *, strict: bool = True) -> "AnalysisConfig":
        """Build from :meth:`to_dict` output. Unknown keys are an InputError naming them
        (``strict=False`` ignores them, e.g. the inputs in files of schema version 1)."""
        return _from_dict(cls, d, where="config", strict=strict)

    def replace(self, **changes) -> "AnalysisConfig":
        """A copy with some fields changed (validated); unknown names are an InputError."""
        return _from_dict(type(self), {**self.to_dict(), **_unknown_checked(type(self), changes, "config")},
                          where="config")

    def key(self) -> str:
        """Stable 16-hex-digit digest of the canonical JSON of :meth:`to_dict`."""
        return config_key(self.to_dict())

    @classmethod
    def from_toml(cls, path, *, base: dict | None = None, overrides: dict | None = None) -> "AnalysisConfig":
        """Read a TOML file: top-level keys and ``[verdict]``/``[shapes]`` tables, or all of it
        under ``[analysis]``. ``base`` settings lie under the file's, ``overrides`` (e.g. the
        flags given on the command line) over them."""
        data = read_toml(path)
        merged = _merge(_merge(dict(base or {}), data), overrides or {})
        return _from_dict(cls, merged, where=f"config file {str(path)!r}")

    def to_toml(self) -> str:
        """TOML text that :meth:`from_toml` reads back to an equal config."""
        lines = ["# filtertopo analysis config (filtertopo analyze --config FILE)"]
        d = self.to_dict()
        for k, v in d.items():
            if k not in _NESTED:
                lines.append(f"{k} = {_toml_value(v)}")
        for k in _NESTED:
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in d[k].items()]
        return "\n".join(lines) + "\n"


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, v in b.items():
        if key in _NESTED and isinstance(v, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **v}
        else:
            out[key] = v
    return out


def read_toml(path) -> dict:
    """The settings table of a TOML config file (its ``[analysis]`` table when that is all it has)."""
    import tomllib

    from ._snapshots_index import read_regular_file

    raw = read_regular_file(path, param="config file (--config)", max_bytes=1 << 20,
                            fix="Pass a TOML file like the output of `filtertopo analyze --print-config`.")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"config file (--config) {str(path)!r} is not UTF-8 text ({e}).") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"config file (--config) {str(path)!r} is not valid TOML: {e}. "
                         "Write it like the output of `filtertopo analyze --print-config`.") from None
    if set(data) == {"analysis"} and isinstance(data["analysis"], dict):
        data = data["analysis"]
    return data


def _toml_value(v) -> str:
    if v is None:
        return '"none"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(type(v).__name__)


def _unknown_checked(cls, d: dict, where: str) -> dict:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        import difflib

        hints = [f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, names, 1)) else repr(u)
                 for u in unknown]
        raise InputError(f"{where}: unknown setting(s) {', '.join(hints)}; the settings are "
                         f"{', '.join(sorted(names))}.")
    return d


def _from_dict(cls, d, *, where: str, strict: bool = True):
    if not isinstance(d, dict):
        raise InputError(f"{where} must be a table/dict of settings; got {type(d).__name__}.")
    if strict:
        _unknown_checked(cls, d, where)
    names = {f.name for f in fields(cls)}
    kw = {k: v for k, v in d.items() if k in names}
    for name, sub in _NESTED.items():
        if name in kw and isinstance(kw[name], dict) and cls is AnalysisConfig:
            kw[name] = _from_dict(sub, kw[name], where=f"{where} [{name}]", strict=strict)
    try:
        return cls(**kw)
    except InputError as e:
        if where == "config":
            raise
        raise InputError(f"{where}: {e}") from None


def _check_coeffs(coeff) -> tuple:
    from .homology import _is_prime

    if isinstance(coeff, str):
        try:
            coeff = [int(c) for c in coeff.replace(" ", "").split(",") if c]
        except ValueError:
            raise InputError(f"coeff (--coeff) must be a prime or a comma-separated list of primes such as "
                             f"'2,3'; got {coeff!r}.") from None
    if isinstance(coeff, (int, np.integer)) and not isinstance(coeff, bool):
        coeff = (int(coeff),)
    try:
        coeff = tuple(coeff)
    except TypeError:
        raise InputError(f"coeff (--coeff) must be a prime or a list of primes such as (2, 3); "
                         f"got {coeff!r}.") from None
    if not coeff:
        raise InputError("coeff (--coeff) must name at least one prime, e.g. 2 or '2,3'.")
    for q in coeff:
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)):
            raise InputError(f"coeff (--coeff) must be primes; got {q!r}. Use 2, 3 or '2,3'.")
    big = [int(q) for q in coeff if not 2 <= q <= MAX_COEFF]
    if big:
        raise InputError(f"coeff (--coeff) must be primes from 2 to {MAX_COEFF} (ripser.py's coefficient "
                         f"limit; larger ones crash it or never finish); got {big}. Use 2, 3 or '2,3'.")
    bad = [int(q) for q in coeff if not _is_prime(int(q))]
    if bad:
        raise InputError(f"coeff (--coeff) must be primes (fields Z/p); got {bad}. Use 2, 3 or '2,3'.")
    return tuple(int(q) for q in coeff)


def ph_bytes(n: int, maxdim: int) -> int:
    """Estimated peak memory of ripser on ``n`` points up to ``maxdim`` (bytes)."""
    from math import comb

    return int(_PH_BYTES_PER_SIMPLEX * comb(int(n), int(maxdim) + 1))


def _machine_headroom():
    """(bytes, what limits them) this process may still allocate: the address-space limit
    (``RLIMIT_AS``, e.g. ``ulimit -v``) minus what it maps now, and the memory available on
    the machine (``MemAvailable``); None where unknown."""
    out = []
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft not in (resource.RLIM_INFINITY, -1):
            with open("/proc/self/status") as fh:
                vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
            out.append((int(0.8 * (soft - vm)), "the address-space limit (ulimit -v) minus what is mapped"))
    except (OSError, ValueError, StopIteration, ImportError):
        pass
    try:
        with open("/proc/meminfo") as fh:
            avail = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
        out.append((avail, "the memory available on this machine"))
    except (OSError, ValueError, StopIteration):
        pass
    return out


def check_ph_memory(n_landmarks: int, maxdim: int, *, machine: bool = True) -> None:
    """Refuse, before any work, a persistent-homology call that would not fit in memory.

    The estimate is 82 bytes per simplex of dimension ``maxdim`` (measured). The budget is
    :data:`MAX_PH_BYTES` (env ``FILTERTOPO_MAX_PH_BYTES``) and, with ``machine=True``, also
    what this process may still allocate here (address-space limit, available memory): ripser
    aborts the process in C++ (``std::bad_alloc``) when it runs out.
    """
    _check_ph_memory(n_landmarks, maxdim, machine=machine)


def _check_ph_memory(n_landmarks: int, maxdim: int, *, machine: bool = False) -> None:
    from math import comb

    from .errors import env_limit

    if maxdim < 2:
        return
    limits = [(env_limit("FILTERTOPO_MAX_PH_BYTES", MAX_PH_BYTES), "the budget (FILTERTOPO_MAX_PH_BYTES)")]
    if machine:
        limits += _machine_headroom()
    budget, why = min(limits, key=lambda t: t[0])
    need = ph_bytes(n_landmarks, maxdim)
    if need > budget:
        fit = int(n_landmarks)
        while fit > 10 and ph_bytes(fit, maxdim) > budget:
            fit = int(fit * 0.9)
        raise InputError(
            f"maxdim={maxdim} (--maxdim) on n_landmarks={n_landmarks} (--n-landmarks) needs about "
            f"{need / 1024**3:.1f} GB for ripser ({comb(int(n_landmarks), maxdim + 1):,} simplices of dimension "
            f"{maxdim}), over {max(budget, 0) / 1024**3:.1f} GB, {why}. "
            f"Use --n-landmarks {fit} or fewer, or a lower --maxdim.")
