"""Sweeps: a complete grid of training runs from one TOML spec, trained, analysed and stored
so that a killed worker, a killed driver or a full disk loses nothing finished (extra: torch).

Beside the core and using it, like :mod:`filtertopo.training`: ``import filtertopo`` never
imports this package, and this package imports Dask only when a scheduler is asked for
(by the CLI, ``filtertopo sweep run --scheduler`` / ``--dask-local``).

- :mod:`~filtertopo.sweep.spec`: the spec file, :func:`load_spec`, :class:`SweepSpec`;
- :mod:`~filtertopo.sweep.cost`: architectures checked once, FLOPs counted, speed measured;
- :mod:`~filtertopo.sweep.worker`: one run on a worker (:func:`run_job`);
- :mod:`~filtertopo.sweep.store`: run folders and the SQLite index (:func:`open_store`);
- :mod:`~filtertopo.sweep.runner`: the driver, :func:`run_sweep`.

The format, the commands and the store are described in ``docs/studies.md``.
"""

from .runner import SweepOutcome, plan_sweep, run_sweep
from .spec import PlannedRun, SweepSpec, load_spec, parse_spec
from .store import StoreError, open_store, read_index, verify_store

__all__ = ["load_spec", "parse_spec", "SweepSpec", "PlannedRun", "plan_sweep", "run_sweep",
           "SweepOutcome", "open_store", "read_index", "verify_store", "StoreError"]
