"""One job runner: run ``fn(job)`` for each job, in this process, a process pool or any executor.

:func:`map_jobs` is what layer analysis and the training of several seeds use. It takes
any :class:`concurrent.futures.Executor`, so a Dask cluster plugs in through
``Client.get_executor()`` without filtertopo importing Dask. Results come back in input
order whatever runs them; ``on_result`` sees each as it finishes, and :func:`iter_jobs`
yields them in the order they finish (a sweep records each run as it completes). Nothing heavy is imported here: threadpoolctl and tqdm are
imported when used.
"""

from __future__ import annotations

import contextlib
import os
import sys

from .errors import InputError, check_range

__all__ = ["map_jobs", "iter_jobs", "resolve_n_jobs", "limit_blas_threads"]

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
             blas_threads=1, progress=None, desc="jobs", unit="job", postfix=None,
             on_submit=None, on_result=None, max_in_flight=None) -> list:
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
    on_submit : callable, optional
        ``on_submit(index)``, called in this process just before job ``index`` is handed
        to a worker (or, in the in-process loop, run here). With ``max_in_flight`` it
        tells which jobs are running right now.
    on_result : callable, optional
        ``on_result(index, result)``, called in this process as each job finishes, in
        the order they finish (input order in the in-process loop), before
        ``map_jobs`` returns: record progress as it happens. If it raises, the jobs
        stop as when a job fails, and its exception propagates.
    max_in_flight : int, optional
        With workers: at most this many jobs submitted and not yet finished at once
        (the next is submitted as one finishes). Default: all at once. Use the number
        of workers to make ``on_submit`` mean "started".

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

    See Also
    --------
    iter_jobs : the same, yielding ``(index, result)`` as jobs finish, without keeping
        the results.

    Examples
    --------
    >>> map_jobs(abs, [-3, 1, -2], progress=False)
    [3, 1, 2]
    >>> seen = []
    >>> map_jobs(abs, [-3, 1], progress=False, on_result=lambda i, r: seen.append((i, r)))
    [3, 1]
    >>> seen
    [(0, 3), (1, 1)]
    """
    if on_result is not None and not callable(on_result):
        raise InputError(f"on_result must be a callable on_result(index, result); got {on_result!r}.")
    gen = iter_jobs(fn, jobs, executor=executor, n_jobs=n_jobs, cost=cost, initializer=initializer,
                    mp_context=mp_context, blas_threads=blas_threads, progress=progress, desc=desc,
                    unit=unit, postfix=postfix, on_submit=on_submit, max_in_flight=max_in_flight)
    results = [None] * gen.n_jobs
    with contextlib.closing(gen):  # a failing on_result cancels the rest and shuts the pool
        for i, res in gen:
            results[i] = res
            if on_result is not None:
                on_result(i, res)
    return results


class _JobIterator:
    """The generator of :func:`iter_jobs`, with the number of jobs (``n_jobs``)."""

    def __init__(self, gen, n):
        self._gen, self.n_jobs = gen, n

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._gen)

    def close(self):
        self._gen.close()


def iter_jobs(fn, jobs, *, executor=None, n_jobs=1, cost=None, initializer=None, mp_context=None,
              blas_threads=1, progress=None, desc="jobs", unit="job", postfix=None,
              on_submit=None, max_in_flight=None):
    """Run ``fn(job)`` for every job, yielding ``(index, result)`` as each one finishes.

    The parameters are those of :func:`map_jobs`. Results are not kept, so a long run
    with large results (a sweep's run folders) holds only the ones not yet consumed.
    Arguments are checked at the call, before the first job; the jobs run as the
    iterator is consumed. Closing it early (``close()``, or leaving a ``with
    contextlib.closing(...)`` block) cancels the jobs not yet started and, for a pool
    made for this call, waits for the running ones and shuts it.

    Examples
    --------
    >>> list(iter_jobs(abs, [-3, 1], progress=False))
    [(0, 3), (1, 1)]
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
    if max_in_flight is not None:
        check_range("max_in_flight", max_in_flight, low=1, integer=True,
                    fix="e.g. the number of workers, or None for all at once.")
    if on_submit is not None and not callable(on_submit):
        raise InputError(f"on_submit must be a callable on_submit(index); got {on_submit!r}.")
    gen = _iter_jobs(fn, jobs, executor, n, cost, initializer, mp_context, blas_threads, progress,
                     desc, unit, postfix, on_submit, max_in_flight)
    return _JobIterator(gen, len(jobs))


def _iter_jobs(fn, jobs, executor, n, cost, initializer, mp_context, blas_threads, progress,
               desc, unit, postfix, on_submit, window):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not _show(progress), file=sys.stderr)
    try:
        if executor is None and (n == 1 or len(jobs) <= 1):
            if initializer is not None and jobs:
                initializer()
            for i, job in enumerate(jobs):
                if postfix is not None:
                    bar.set_postfix_str(postfix(job))
                if on_submit is not None:
                    on_submit(i)
                res = fn(job)
                bar.update()
                yield i, res
            return
        order = list(range(len(jobs)))
        if cost is not None:
            order.sort(key=lambda i: -cost[i])  # stable: ties keep input order
        if executor is not None:
            yield from _collect(executor, fn, jobs, order, bar, postfix, on_submit, window)
            return
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
            yield from _collect(pool, fn, jobs, order, bar, postfix, on_submit, window)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def _collect(executor, fn, jobs, order, bar, postfix, on_submit, window):
    """Submit ``jobs`` in ``order`` (at most ``window`` unfinished at once), yield
    ``(index, result)`` as they finish."""
    from concurrent.futures import FIRST_COMPLETED, wait

    futures = {}
    todo = iter(order)
    limit = len(order) if window is None else int(window)

    def submit_more():
        while len(futures) < limit:
            i = next(todo, None)
            if i is None:
                return
            if on_submit is not None:
                on_submit(i)
            futures[executor.submit(fn, jobs[i])] = i

    try:
        submit_more()
        while futures:
            done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: futures[f]):
                i = futures[fut]
                res = fut.result()  # the first failure raises here
                del futures[fut]
                if postfix is not None:
                    bar.set_postfix_str(postfix(jobs[i]), refresh=False)
                bar.update()
                submit_more()  # keep the workers busy while the caller handles the result
                yield i, res
    except BaseException:  # a failure, or the consumer closed the iterator (GeneratorExit)
        for fut in futures:
            fut.cancel()
        raise
