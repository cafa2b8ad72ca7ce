"""One sweep run on a worker: train, analyse, and hand the run folder back to the driver.

:func:`run_job` is the function a sweep submits (to this process, a process pool or a Dask
cluster). It trains into a private temporary folder of the worker's machine, analyses the
final kernels (and the chosen snapshots), and returns every file of the run folder as
bytes. It writes nothing in the sweep's folder: the driver alone writes there (the run
folder, then the index), so a worker that dies leaves nothing half-written behind, and the
workers need no shared file system. A run that fails (a bad value found only when
training, a diverged loss, an analysis error) comes back as a ``"failed"`` record with the
error and the files written so far; only the death of the worker itself reaches the driver
as an exception.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import traceback
import warnings
from pathlib import Path

__all__ = ["run_job", "train_group_job", "RUN_RECORD", "ANALYSIS_DIR"]

#: The record the driver writes last into each run folder (its presence marks the folder done).
RUN_RECORD = "sweep_run.json"
#: Analyses of a run: ``analysis/final`` and ``analysis/step_000000`` ...
ANALYSIS_DIR = "analysis"


def _files(root: Path) -> dict:
    """``{relative posix path: bytes}`` of the regular files under ``root`` (lock files left out)."""
    from .._io import LOCK_NAME

    out = {}
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            p = Path(dirpath) / name
            if name == LOCK_NAME or p.is_symlink() or not p.is_file():
                continue
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def _error(e: BaseException, phase: str) -> dict:
    """A run's error record: type, message, phase, the end of the traceback."""
    return {"type": type(e).__name__, "message": str(e), "phase": phase,
            "traceback": "".join(traceback.format_exception(type(e), e, e.__traceback__))[-4000:]}


def _write_files(root: Path, files: dict) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _analyse(kernels: Path, out: Path, job: dict) -> dict:
    from ..pipeline import analyze

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        res = analyze(str(kernels), job["analysis"], layers=job["layers"], n_jobs=1, progress=False)
    res.save(out)
    return {"layers": {layer.name: layer.verdict for layer in res.layers},
            "warnings": [str(w.message) for w in caught if issubclass(w.category, UserWarning)]}


def run_job(job: dict) -> dict:
    """Train and analyse one run; the worker side of :func:`filtertopo.sweep.run_sweep`.

    Parameters
    ----------
    job : dict
        ``id``; ``config`` (a TrainConfig dict, device and threads resolved); ``analysis``
        (an AnalysisConfig dict); ``layers`` (selector or None); ``steps`` (``"all"`` or a
        list of snapshot steps to analyse); ``scratch`` (None or the folder to train in).

    Returns
    -------
    dict
        ``id``, ``status`` (``"done"`` or ``"failed"``), ``error`` (None, or ``type``,
        ``message``, ``phase``: "train" or "analysis"), ``files`` ({relative path: bytes}),
        ``summary`` (final accuracies, step, verdicts per analysis, warnings), ``worker``
        (host:pid), ``seconds``.
    """
    from ..training.loop import TrainConfig, train
    from ..training.snapshots import read_index

    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f"filtertopo-sweep-{job['id']}-", dir=job.get("scratch")))
    run_dir = tmp / "run"
    summary, phase = {}, "train"
    try:
        try:
            cfg = TrainConfig.from_dict(dict(job["config"]))
            if job.get("trained") is not None:  # trained in a batched group (train_group_job)
                _write_files(run_dir, job["trained"])
            else:
                train(cfg, run_dir, progress=False)
            import json

            record = json.loads((run_dir / "run.json").read_text())
            summary.update({k: record.get(k) for k in ("train_acc", "test_acc", "step", "epoch", "seconds",
                                                       "device")})
            phase = "analysis"
            analyses = {"final": _analyse(run_dir / "kernels.npz", run_dir / ANALYSIS_DIR / "final", job)}
            steps = job.get("steps") or ()
            if steps:
                snaps = read_index(run_dir)[0] if (run_dir / "snapshots").is_dir() else []
                have = {s.step: s for s in snaps}
                want = sorted(have) if steps == "all" else list(steps)
                missing = [s for s in want if s not in have]
                for s in want:
                    if s in have:
                        analyses[f"step_{s:06d}"] = _analyse(have[s].path,
                                                             run_dir / ANALYSIS_DIR / f"step_{s:06d}", job)
                if missing:
                    summary["missing_steps"] = missing  # past the end of training
            summary["analyses"] = analyses
            status, error = "done", None
        except Exception as e:  # the run's own failure: recorded, the sweep goes on
            status = "failed"
            error = _error(e, phase)
        files = _files(run_dir) if run_dir.exists() else {}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"id": job["id"], "status": status, "error": error, "files": files, "summary": summary,
            "worker": f"{socket.gethostname()}:{os.getpid()}", "seconds": round(time.time() - started, 3)}


def train_group_job(job: dict) -> list:
    """Train the runs of one batched group (:func:`filtertopo.training.batched.train_group`)
    in private temporary folders and hand their files back; the sweep then analyses each run
    with :func:`run_job` (``job["trained"]``), on its worker pool.

    Parameters
    ----------
    job : dict
        ``ids``, ``configs`` (TrainConfig dicts of one :func:`~filtertopo.training.batched.group_key`),
        ``device``, ``scratch``.

    Returns
    -------
    list of dict
        Per run, in order: ``id``, ``status`` (``"trained"`` or ``"failed"``), ``files``,
        ``error`` (as :func:`run_job`'s, phase ``"train"``), ``seconds`` (the group's
        training time divided by its size), ``worker``.
    """
    from ..training.batched import train_group

    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="filtertopo-sweep-group-", dir=job.get("scratch")))
    worker = f"{socket.gethostname()}:{os.getpid()}"
    ids = list(job["ids"])
    try:
        dirs = [tmp / rid / "run" for rid in ids]
        try:
            nets = train_group(job["configs"], dirs, device=job.get("device"), path="batched")
            errors = [None if net.status == "complete" else
                      {"type": (net.error or {}).get("type", "TrainingError"),
                       "message": (net.error or {}).get("message", "training failed"), "phase": "train",
                       "traceback": ""} for net in nets]
        except Exception as e:  # the whole group failed: every run of it is failed, the sweep goes on
            errors = [_error(e, "train")] * len(ids)
        each = round((time.time() - started) / max(len(ids), 1), 3)
        out = [{"id": rid, "status": "trained" if err is None else "failed", "error": err, "summary": {},
                "files": _files(d) if d.exists() else {}, "worker": worker, "seconds": each}
               for rid, d, err in zip(ids, dirs, errors)]
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
