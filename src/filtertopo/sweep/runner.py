"""The sweep driver: plan, open the store, run every run not done, record each as it finishes.

:func:`run_sweep` is what ``filtertopo sweep run`` calls. Jobs go through
:func:`filtertopo.jobs.iter_jobs`: in this process (``workers=1``), on a process pool made
for the sweep (``workers=N``: forked from a fork server that imported torch and the pipeline
once, one BLAS and one torch thread each), or
on any executor passed in (a Dask ``Client.get_executor()``). At most ``max_in_flight``
runs are handed out at once, so ``running`` in the index means a worker has it; each
result is written (run folder, then index) as it arrives.

Faults: a run's own failure is recorded as ``failed`` and the sweep goes on. A worker
process that dies (``BrokenProcessPool``; Dask's ``KilledWorker``) marks the runs it may
have held ``failed`` (phase ``worker``), a fresh pool takes the rest, and after three
such deaths the sweep stops. Ctrl-C puts the runs in flight back to ``pending``. A full
disk stops the sweep with the index consistent. In every case the runs already done are
kept and the same command resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .spec import SweepSpec, load_spec

__all__ = ["run_sweep", "SweepOutcome", "plan_sweep", "MAX_WORKER_DEATHS"]

#: Worker deaths after which a sweep stops instead of starting a fresh pool.
MAX_WORKER_DEATHS = 3


@dataclass(frozen=True)
class SweepOutcome:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    out : Path
    counts : dict
        Runs per status in the index at the end.
    ran : int
        Runs finished (done or failed) by this call.
    skipped_done, skipped_failed : int
        Runs done before this call, and failed ones not retried (no ``retry_failed``).
    failures : tuple of (id, error)
        Runs failed at the end.
    seconds : float
    recovered : tuple
        Index changes made when the folder was opened (see ``SweepStore.reconcile``).
    stopped : str or None
        Why the sweep stopped before running everything (worker deaths), else None.
    """

    out: Path
    counts: dict
    ran: int
    skipped_done: int
    skipped_failed: int
    failures: tuple
    seconds: float
    recovered: tuple = ()
    stopped: str | None = None
    problems: tuple = field(default=())


def plan_sweep(spec, *, device=None, threads=None) -> tuple:
    """``(spec, runs, infos)``: the spec loaded, its grid with ``device``/``threads`` set on every
    run (neither changes a run's id), and the architectures built once each (InputError for any
    that cannot be built or has no selected layer)."""
    from .cost import check_models

    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    runs = spec.expand()
    if device is not None or threads is not None:
        from dataclasses import replace

        changes = {}
        if device is not None:
            changes["device"] = device
        if threads is not None and spec.base.threads is None:
            changes["threads"] = threads
        try:
            runs = tuple(replace(r, config=r.config.replace(**changes)) for r in runs)
        except InputError as e:
            raise InputError(f"--device {device!r}: {e}") from None
    infos = check_models(spec, runs)
    return spec, runs, infos


def _pool_context():
    """Start method of a local pool: a fork server that imported torch and the pipeline once
    (workers start at once, no thread pool is inherited, no file descriptor of the driver
    either, so its lock dies with it); spawn where there is no fork server."""
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["filtertopo.sweep._preload"])
        return ctx
    return mp.get_context("spawn")


def _is_worker_death(e: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(e, BrokenProcessPool) or type(e).__name__ == "KilledWorker"


def run_sweep(spec, out, *, workers: int = 1, executor=None, max_in_flight: int | None = None,
              device: str | None = None, retry_failed: bool = False, force: bool = False,
              scratch=None, progress: bool | None = None, log=None) -> SweepOutcome:
    """Run every run of a sweep spec that is not done yet into ``out``.

    Parameters
    ----------
    spec : path or SweepSpec
    out : path
        The sweep folder (see :mod:`filtertopo.sweep.store`). A folder of the same spec
        resumes; another sweep's folder is refused unless ``force`` (start over: only that
        sweep's index and run folders are deleted).
    workers : int, default=1
        1: runs one after the other in this process; N: a pool of N spawned processes.
        Not used with ``executor``.
    executor : concurrent.futures.Executor, optional
        E.g. a Dask ``Client.get_executor()``; not shut down.
    max_in_flight : int, optional
        Runs handed out at once; default ``workers`` (with an executor: 2).
    device : str, optional
        ``TrainConfig.device`` of every run ("cpu", "cuda", "auto"); not part of run ids.
    retry_failed : bool
        Run the failed runs again (else they are skipped and reported).
    force : bool
        Start over in a folder that holds another sweep.
    scratch : path, optional
        Where each worker makes the private folder it trains in (default: its machine's
        temporary folder, ``TMPDIR``); must exist on the worker. Nothing is left there
        unless the worker is killed.
    progress : bool or None
        Progress bar on stderr (None: only on a terminal).
    log : callable, optional
        ``log(str)`` for one-line status messages.

    Returns
    -------
    SweepOutcome
    """
    from ..errors import check_range
    from ..jobs import iter_jobs
    from .cost import _arch_key, run_cost
    from .store import StoreError, open_store
    from .worker import run_job, train_group_job

    say = log or (lambda s: None)
    check_range("workers", workers, low=1, integer=True, fix="Use 1 (this process) or the number of cores.")
    parallel = executor is not None or workers > 1
    spec, runs, infos = plan_sweep(spec, device=device, threads=1 if parallel else None)
    if executor is None:  # runs here: a device this machine lacks is refused before anything starts
        from ..training.loop import resolve_device

        for dev in sorted({r.config.device for r in runs}):
            try:
                resolve_device(dev)
            except InputError as e:
                raise InputError(f"--device {dev} (the training device of every run): {e}") from None
    if max_in_flight is None:
        max_in_flight = workers if executor is None else 2
    by_id = {r.id: r for r in runs}
    t0 = time.time()
    analysis = spec.analysis.to_dict()
    steps = spec.snapshot_steps if isinstance(spec.snapshot_steps, str) else list(spec.snapshot_steps)
    extra = {"analysis_key": spec.analysis.key(), "layers": spec.layers, "snapshot_steps": steps}
    with open_store(out, spec, runs, force=force) as store:
        recovered = store.recovered
        for rid, old, new, why in recovered:
            say(f"run {rid}: {old} -> {new} ({why})")
        counts0 = store.counts()
        done0 = counts0["done"]
        if retry_failed:
            store.mark_pending(store.ids("failed"), "retry (--retry-failed)")
        skipped_failed = store.counts()["failed"]
        todo = store.ids("pending")
        say(f"sweep {spec.name!r} -> {out}: {len(runs)} runs: {done0} done, {skipped_failed} failed"
            f"{' (not retried: pass --retry-failed)' if skipped_failed else ''}, {len(todo)} to run"
            + (f" on {workers} worker processes" if executor is None and workers > 1 else ""))
        ran, deaths, stopped = 0, 0, None
        batched = executor is None and _batched_here(todo, by_id)
        while todo:
            in_flight = set()

            def record(res):
                nonlocal ran
                r = by_id[res["id"]]
                store.save_result(res, varied=r.varied, config=r.config.to_dict(), extra=extra)
                in_flight.discard(res["id"])
                ran += 1
                if res["status"] == "failed":
                    e = res["error"]
                    say(f"run {res['id']} failed ({e['phase']}): {e['type']}: {e['message']}")

            try:
                for ids in _groups(todo, by_id, batched):
                    jobs = [{"id": rid, "config": by_id[rid].config.to_dict(), "analysis": analysis,
                             "layers": spec.layers, "steps": steps,
                             "scratch": None if scratch is None else str(scratch)} for rid in ids]
                    marked = set()
                    if batched:  # train the group here in one batched step, analyse its runs on the pool
                        for rid in ids:
                            store.mark_running(rid)
                            in_flight.add(rid)
                            marked.add(rid)
                        say(f"training {len(ids)} runs as one batched group "
                            f"({by_id[ids[0]].config.model}, {by_id[ids[0]].config.device})")
                        trained = train_group_job({"ids": ids, "configs": [j["config"] for j in jobs],
                                                   "device": by_id[ids[0]].config.device,
                                                   "scratch": None if scratch is None else str(scratch)})
                        keep = []
                        for job, res in zip(jobs, trained):
                            if res["status"] == "failed":
                                record(res)
                            else:
                                job["trained"] = res["files"]
                                keep.append(job)
                        jobs = keep
                    if not jobs:
                        continue
                    cost = [run_cost(by_id[j["id"]].config, infos[_arch_key(by_id[j["id"]].config)]).flops
                            or 0.0 for j in jobs]

                    def submitted(i, jobs=jobs, marked=marked):
                        if jobs[i]["id"] not in marked:
                            store.mark_running(jobs[i]["id"])
                        in_flight.add(jobs[i]["id"])

                    it = iter_jobs(run_job, jobs, executor=executor, n_jobs=workers, cost=cost,
                                   mp_context=_pool_context(), blas_threads=1, progress=progress,
                                   desc="runs", unit="run", on_submit=submitted, max_in_flight=max_in_flight)
                    try:
                        for _, res in it:
                            record(res)
                    finally:
                        it.close()
            except BaseException as e:
                lost = sorted(in_flight, key=lambda rid: by_id[rid].position)
                if _is_worker_death(e):
                    deaths += 1
                    msg = (f"the worker process running it died ({type(e).__name__}: {e}); the runs in "
                           f"flight with it ({len(lost)}) were stopped too")
                    store.mark_failed(lost, msg, "worker")
                    say(f"a worker died ({type(e).__name__}); {len(lost)} run(s) in flight marked failed: "
                        f"{', '.join(lost)}")
                    todo = store.ids("pending")
                    if deaths >= MAX_WORKER_DEATHS:
                        stopped = (f"{deaths} worker processes died; the sweep stopped with {len(todo)} runs "
                                   "still pending")
                        break
                    continue
                with _suppress_store_errors():  # best effort: a dead driver's rows are fixed on resume
                    store.mark_pending(lost, f"stopped: {type(e).__name__}")
                if isinstance(e, (KeyboardInterrupt, StoreError, InputError)):
                    raise
                c = store.counts()
                raise InputError(f"the sweep stopped: {type(e).__name__}: {e}. {c['done']} of {len(runs)} runs "
                                 f"are done and kept; the {len(lost)} in flight are pending again. Run the same "
                                 "command again to resume.") from e
            todo = []
        counts = store.counts()
        failures = tuple((r["id"], r["error"]) for r in store.rows() if r["status"] == "failed")
        problems = tuple(store.verify())
    return SweepOutcome(Path(out), counts, ran, done0, skipped_failed, failures, round(time.time() - t0, 3),
                        recovered, stopped, problems)


def _batched_here(todo, by_id) -> bool:
    """Whether this driver trains the pending runs in batched groups
    (:func:`filtertopo.training.batched.choose_path`: on CUDA, or on the CPU with
    ``FILTERTOPO_BATCHED_CPU=1``); the runs are then analysed on the worker pool."""
    if len(todo) < 2:
        return False
    from ..training.batched import choose_path

    configs = [by_id[rid].config for rid in todo]
    if len({c.device for c in configs}) != 1:
        return False
    return choose_path(configs) == "batched"


def _groups(todo, by_id, batched):
    """The pending runs in the order they run: one list (not batched), or the batched groups
    of :func:`filtertopo.training.batched.plan_groups` (same architecture and data; at most
    what one step holds in memory)."""
    if not batched:
        return [list(todo)]
    from ..training.batched import plan_groups

    idx = plan_groups([by_id[rid].config for rid in todo])
    return [[todo[i] for i in g] for g in idx]


class _suppress_store_errors:
    def __enter__(self):
        return self

    def __exit__(self, typ, val, tb):
        from .store import StoreError

        return typ is not None and issubclass(typ, StoreError)
