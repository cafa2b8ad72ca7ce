"""One job runner: run ``fn(job)`` for each job, in this process, a process pool or any executor.

:func:`map_jobs` is what layer analysis and the training of several seeds use. It takes
any :class:`concurrent.futures.Executor`, so a Dask cluster plugs in through
``Client.get_executor()`` without filtertopo importing Dask. Results come back in input
order whatever runs them. Nothing heavy is imported here: threadpoolctl and tqdm are
imported when used.
"""

from __future__ import annotations

import os
import sys

from .errors import InputError, check_range

__all__ = ["map_jobs", "resolve_n_jobs", "limit_blas_threads"]

#: Variables read by OpenBLAS, MKL and OpenMP when they are loaded (libraries a worker loads later).
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def resolve_n_jobs(n_jobs) -> int:
    """The number of processes ``n_jobs`` asks for: None -> 1, -1 -> every core, k >= 1 -> k.

    Raises InputError naming ``n_jobs`` for anything else (0, -2, 1.5, True ...).

    Examples
    --------
    >>> resolve_n_jobs(None), resolve_n_jobs(3)
    (1, 3)
    """
    if n_jobs is None:
        return 1
    fix = "Use None or 1 (this process), a number of processes, or -1 for every core."
    check_range("n_jobs", n_jobs, low=-1, integer=True, fix=fix)
    if n_jobs == 0:
        raise InputError(f"n_jobs must not be 0. {fix}")
    return (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)


def limit_blas_threads(n: int) -> None:
    """Limit this process's BLAS / OpenMP thread pools to ``n`` threads, for good.

    Libraries already loaded are limited through threadpoolctl; ones loaded later read
    ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``, which are set
    too. Meant for worker processes, e.g. an executor of your own:
    ``ProcessPoolExecutor(initializer=limit_blas_threads, initargs=(1,))``. For a
    limit that is undone afterwards use ``threadpoolctl.threadpool_limits`` as a context
    manager.
    """
    check_range("n (BLAS threads)", n, low=1, integer=True, fix="e.g. 1.")
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)  # applies at once and stays until restored (never, here)


def _start_worker(blas_threads, initializer):
    if blas_threads is not None:
        limit_blas_threads(blas_threads)
    if initializer is not None:
        initializer()


def _default_context():
    import multiprocessing as mp

    # fork is cheap (workers inherit imports and the initializer's work) but only safe on
    # Linux: macOS system libraries are not fork-safe and Windows has no fork.
    if sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods():
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _show(progress) -> bool:
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def map_jobs(fn, jobs, *, executor=None, n_jobs=1, cost=None, initializer=None, mp_context=None,
             blas_threads=1, progress=None, desc="jobs", unit="job", postfix=None) -> list:
    """Run ``fn(job)`` for every job and return the results in the order of ``jobs``.

    Parameters
    ----------
    fn : callable
        Called with one argument, the job (pack several into a tuple and unpack them in
        ``fn``). Runs in other processes unless ``n_jobs`` is 1: it and the jobs must
        then pickle, so ``fn`` is a module-level function, not a lambda.
    jobs : iterable
    executor : concurrent.futures.Executor, optional
        Submit the jobs to it, e.g. a ``ProcessPoolExecutor`` or a Dask
        ``Client.get_executor()``. It is not shut down (the caller owns it), ``n_jobs``,
        ``initializer``, ``mp_context`` and ``blas_threads`` are not used, and its
        workers' threads are the caller's business (see :func:`limit_blas_threads`).
    n_jobs : int or None, default=1
        Without ``executor``: None or 1 runs the jobs here, one after the other, nothing
        pickled; k > 1 runs them on ``min(k, len(jobs))`` worker processes of a pool
        made for this call and closed at its end (a single job runs here); -1 uses
        every core.
    cost : sequence of float, optional
        One number per job: the largest are submitted first, which balances the workers
        when job sizes differ. Only the order of submission changes, never the results
        or their order; the in-process loop runs in input order.
    initializer : callable, optional
        Preparation every process that runs jobs needs, called without arguments before
        the first job: in this process for the in-process loop and for forked workers
        (which inherit what it did, e.g. imports), in each worker with spawn. Not called
        for an ``executor``.
    mp_context : str or multiprocessing context, optional
        Start method of the pool's workers: ``"fork"``, ``"spawn"`` or ``"forkserver"``.
        Default fork on Linux, spawn elsewhere. Code whose parent holds thread pools
        that do not survive a fork (torch) passes ``"spawn"``.
    blas_threads : int or None, default=1
        BLAS / OpenMP threads of each worker of the pool (n workers x all cores would
        oversubscribe the machine); None leaves them alone. The in-process loop is not
        limited.
    progress : bool or None
        tqdm bar on stderr; None shows it only when stderr is a terminal.
    desc, unit : str
        The bar's label and unit.
    postfix : callable, optional
        ``postfix(job) -> str`` shown on the bar: the running job in this process, the
        last finished one with workers.

    Returns
    -------
    list
        ``[fn(job) for job in jobs]``, whichever way they ran.

    Raises
    ------
    Exception
        The exception of the first job to fail, of its own type (the first in input
        order here; the first to finish failing with workers, with the worker's
        traceback as ``__cause__``). Jobs not yet started are cancelled; running ones
        finish and their results are dropped.

    Examples
    --------
    >>> map_jobs(abs, [-3, 1, -2], progress=False)
    [3, 1, 2]
    """
    jobs = list(jobs)
    if cost is not None:
        cost = list(cost)
        if len(cost) != len(jobs):
            raise InputError(f"cost must give one number per job; got {len(cost)} for "
                             f"{len(jobs)} jobs.")
    n = 1 if executor is not None else resolve_n_jobs(n_jobs)
    if blas_threads is not None:
        check_range("blas_threads", blas_threads, low=1, integer=True, fix="e.g. 1, or None.")
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not _show(progress), file=sys.stderr)
    try:
        if executor is None and (n == 1 or len(jobs) <= 1):
            if initializer is not None and jobs:
                initializer()
            out = []
            for job in jobs:
                if postfix is not None:
                    bar.set_postfix_str(postfix(job))
                out.append(fn(job))
                bar.update()
            return out
        order = list(range(len(jobs)))
        if cost is not None:
            order.sort(key=lambda i: -cost[i])  # stable: ties keep input order
        if executor is not None:
            return _collect(executor, fn, jobs, order, bar, postfix)
        from concurrent.futures import ProcessPoolExecutor

        ctx = _default_context() if mp_context is None else mp_context
        if isinstance(ctx, str):
            import multiprocessing as mp

            ctx = mp.get_context(ctx)
        forked = ctx.get_start_method() == "fork"
        if forked and initializer is not None:
            initializer()  # once, here: the forked workers inherit it
        pool = ProcessPoolExecutor(max_workers=min(n, len(jobs)), mp_context=ctx,
                                   initializer=_start_worker,
                                   initargs=(blas_threads, None if forked else initializer))
        try:
            return _collect(pool, fn, jobs, order, bar, postfix)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def _collect(executor, fn, jobs, order, bar, postfix):
    """Submit ``jobs`` in ``order``, follow them as they finish, return results in input order."""
    from concurrent.futures import as_completed

    futures = {}
    try:
        for i in order:
            futures[executor.submit(fn, jobs[i])] = i
        for fut in as_completed(futures):
            fut.result()  # the first failure raises here
            if postfix is not None:
                bar.set_postfix_str(postfix(jobs[futures[fut]]), refresh=False)
            bar.update()
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    results = [None] * len(jobs)
    for fut, i in futures.items():
        results[i] = fut.result()
    return results
