"""Watch the topology of conv filters from inside a user's own training loop.

:class:`TopologyMonitor` analyses chosen layers of a live model every ``every``
steps with :func:`filtertopo.analyze` (Gabrielsson & Carlsson 2019: the
primary circle appears in the first layer during training) and logs the
longest H1 persistences and the verdict: to ``log_dir/monitor.csv`` always,
and to TensorBoard when the ``tensorboard`` package is installed.

Call it yourself (``monitor.step()`` after ``optimizer.step()``) or attach it
as an optimizer step hook (``monitor.attach(optimizer)``). The cost of one
analysis is measured by ``benchmarks/bench_monitor.py`` (docs/training.md).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from ..errors import InputError, check_range
from .models import conv_kernels

__all__ = ["TopologyMonitor", "MONITOR_FIELDS", "MONITOR_DEFAULTS"]

#: The monitor's settings where they differ from :class:`~filtertopo.config.AnalysisConfig`'s.
MONITOR_DEFAULTS = dict(n_landmarks=200, max_points=5000, clamp_k=True)

MONITOR_FIELDS = ("step", "layer", "n_filters", "n_core", "k", "p", "h1_1", "h1_2", "h1_3",
                  "h1_gap_ratio", "verdict", "seconds")


class TopologyMonitor:
    """Analyse chosen conv layers of ``model`` every ``every`` steps.

    Parameters
    ----------
    model : torch.nn.Module
    layers : str or list of str, optional
        Selector as in :func:`filtertopo.analyze` (names like ``"conv1"``, globs,
        1-based depths); default ``"1"``, the first conv layer.
    every : int
        Analyse when the step count is a multiple of ``every`` (step 0 included).
    log_dir : path, optional
        Folder of ``monitor.csv`` (and TensorBoard events); None keeps the rows
        in memory only.
    config : AnalysisConfig, dict or None
        The settings of every analysis; None: the defaults with :data:`MONITOR_DEFAULTS`
        (200 landmarks, at most 5,000 filters, ``clamp_k=True``: cheap enough to run often).
        ``k="auto"`` chooses k from each layer's size (one network's layer has far fewer
        filters than the paper's pools).
    k, p, n_landmarks, max_points, seed : optional
        Single settings that override ``config``.
    tensorboard : bool, optional
        None: log to TensorBoard when ``torch.utils.tensorboard`` works; False: never;
        True: required (InputError if unavailable).

    Attributes
    ----------
    history_ : list of dict
        One row per (analysed step, layer).
    step_ : int
        Steps counted so far.

    Examples
    --------
    >>> from filtertopo.training import create_model
    >>> mon = TopologyMonitor(create_model("mnist_net"), every=10, tensorboard=False)
    >>> rows = mon.step()           # step 0 is analysed
    >>> rows[0]["layer"], mon.step_
    ('conv1', 1)
    """

    def __init__(self, model, layers="1", every: int = 100, log_dir=None, *, config=None,
                 k=None, p=None, n_landmarks=None, max_points=None, seed=None,
                 tensorboard: bool | None = None):
        from ..pipeline import resolve_config

        given = {key: v for key, v in dict(k=k, p=p, n_landmarks=n_landmarks, max_points=max_points,
                                           seed=seed).items() if v is not None}
        #: The :class:`~filtertopo.config.AnalysisConfig` of every analysis.
        self.config = resolve_config(MONITOR_DEFAULTS if config is None else config, **given)
        self.model = model
        self.layers = layers
        self.every = every
        self.log_dir = log_dir
        self.tensorboard = tensorboard
        self.history_ = []
        self.step_ = 0
        self._writer = None
        self._csv = None
        self._started = False

    def _start(self):
        check_range("every", self.every, low=1, integer=True,
                    fix="Analyse every N optimiser steps, e.g. every=100.")
        if self.log_dir is not None:
            path = Path(self.log_dir)
            path.mkdir(parents=True, exist_ok=True)
            self._csv = path / "monitor.csv"
            self._fields = None
        if self.tensorboard is not False and self.log_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception as exc:
                if self.tensorboard:
                    raise InputError(f"tensorboard=True but TensorBoard is unavailable ({exc}); "
                                     "`pip install tensorboard` or pass tensorboard=None.") from exc
            else:
                self._writer = SummaryWriter(str(self.log_dir))
        self._started = True

    def step(self, step: int | None = None) -> list[dict] | None:
        """Count one step (or set it) and analyse when due.

        Returns
        -------
        list of dict or None
            The rows logged at this step, or None when nothing was due.
        """
        if not self._started:
            self._start()
        current = self.step_ if step is None else int(step)
        self.step_ = current + 1
        if current % self.every:
            return None
        return self.analyze_now(current)

    __call__ = step

    def analyze_now(self, step: int | None = None) -> list[dict]:
        """Analyse the chosen layers now and log one row per layer."""
        from ..pipeline import analyze, select_layers

        if not self._started:
            self._start()
        step = self.step_ if step is None else int(step)
        kernels = conv_kernels(self.model)
        if not kernels:
            raise InputError(f"model {type(self.model).__name__} has no nn.Conv2d layer to monitor.")
        names = select_layers(list(kernels), self.layers)
        rows = []
        for name in names:
            t0 = time.perf_counter()
            res = analyze({name: kernels[name]}, self.config, progress=False)
            row = {"step": step, **res.to_frame().iloc[0].to_dict()}
            row["seconds"] = time.perf_counter() - t0
            row = {**{f: row.get(f) for f in MONITOR_FIELDS}, **{c: v for c, v in row.items()
                                                                 if c not in MONITOR_FIELDS}}
            rows.append(row)
            self._log(row)
        self.history_.extend(rows)
        return rows

    def _log(self, row):
        if self._csv is not None:
            if self._fields is None:
                self._fields = list(row)
                new = not self._csv.exists() or self._csv.stat().st_size == 0
                if not new:
                    with open(self._csv, newline="") as fh:
                        self._fields = next(csv.reader(fh), self._fields)
                if new:
                    with open(self._csv, "w", newline="") as fh:
                        csv.writer(fh).writerow(self._fields)
            with open(self._csv, "a", newline="") as fh:
                csv.DictWriter(fh, self._fields, extrasaction="ignore").writerow(row)
        if self._writer is not None:
            for key in ("h1_1", "h1_2", "h1_3", "h1_gap_ratio", "n_core", "seconds"):
                self._writer.add_scalar(f"filtertopo/{row['layer']}/{key}", float(row[key]),
                                        row["step"])
            self._writer.add_scalar(f"filtertopo/{row['layer']}/is_circle",
                                    float(row["verdict"] in ("circle", "primary-circle")), row["step"])

    def attach(self, optimizer):
        """Call :meth:`step` after every ``optimizer.step()``; returns the hook handle
        (``handle.remove()`` detaches it)."""
        return optimizer.register_step_post_hook(lambda opt, args, kwargs: self.step())

    def close(self):
        """Flush and close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
