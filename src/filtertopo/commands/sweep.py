"""``filtertopo sweep plan|run|status``: a grid of training runs from one TOML spec."""

from __future__ import annotations

import contextlib
import json
import sys

#: Seconds to wait for a Dask scheduler to answer (--connect-timeout).
CONNECT_TIMEOUT = 5.0


def add_parser(sub):
    p = sub.add_parser(
        "sweep", help="plan, run and inspect a sweep of training runs (a TOML spec)",
        description="A sweep spec (TOML) names a base training config, axes to vary, snapshots and "
                    "an analysis config; it expands to a complete grid of runs. See docs/studies.md "
                    "and examples/sweep_tiny.toml.")
    verbs = p.add_subparsers(dest="sweep_verb", metavar="ACTION")
    verbs.required = True

    plan = verbs.add_parser("plan", help="print the runs of a spec and their cost",
                            description="Print every run (id and the axis values) and the cost: FLOPs "
                                        "counted from the models; with --calibrate also the training "
                                        "time measured by a few steps here.")
    plan.add_argument("spec", metavar="SPEC", help="sweep spec TOML file")
    plan.add_argument("--calibrate", action="store_true",
                      help="time a few training steps of each architecture here (a second or so each) "
                           "and estimate the training time")
    plan.add_argument("--workers", type=int, default=1, help="workers to divide the estimate by (default 1)")
    plan.add_argument("--limit", type=int, default=None, metavar="N", help="print only the first N runs")
    plan.set_defaults(func=run_plan)

    run = verbs.add_parser("run", help="train and analyse every run not done yet into --out",
                           description="Train each run into OUT/runs/<id>/ and analyse its final kernels "
                                       "(and the chosen snapshots) into OUT/runs/<id>/analysis/. The index "
                                       "OUT/index.sqlite records each run as it finishes; running the same "
                                       "command again resumes.")
    run.add_argument("spec", metavar="SPEC", help="sweep spec TOML file")
    run.add_argument("--out", required=True, help="the sweep folder")
    run.add_argument("--workers", type=int, default=1,
                     help="local worker processes (default 1: runs one by one in this process)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on a Dask distributed cluster (pip install 'filtertopo[dask]')")
    where.add_argument("--dask-local", type=int, metavar="N",
                       help="start a local Dask cluster of N single-threaded worker processes on 127.0.0.1 "
                            "(no dashboard)")
    run.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT, metavar="S",
                     help=f"seconds to wait for --scheduler to answer (default {CONNECT_TIMEOUT:g})")
    run.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                     help="training device of every run (default: the spec's, cpu); not part of run ids")
    run.add_argument("--retry-failed", action="store_true", help="run the failed runs again")
    run.add_argument("--scratch", metavar="DIR", default=None,
                     help="where each worker trains before the driver copies the run into --out (default: "
                          "the worker's temporary folder, TMPDIR); must exist on every worker")
    run.add_argument("--force", action="store_true",
                     help="start over in a folder that holds another sweep (deletes that sweep's index and "
                          "run folders only), or use a non-empty folder that holds no sweep")
    run.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="progress bar (default: only on a terminal)")
    run.add_argument("--no-progress", dest="progress", action="store_false")
    run.set_defaults(func=run_run)

    status = verbs.add_parser("status", help="runs per status of a sweep folder, failures, consistency",
                              description="Read OUT/index.sqlite (read-only): runs per status, the failed "
                                          "runs with their errors, and whether the index and the run folders "
                                          "agree.")
    status.add_argument("out", metavar="DIR", help="the sweep folder")
    status.add_argument("--json", action="store_true", help="print the runs as JSON lines")
    status.set_defaults(func=run_status)


def _fmt(v) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else str(v)


def _flops(x) -> str:
    for unit, f in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if x >= f:
            return f"{x / f:.3g} {unit}"
    return f"{x:.3g} FLOP"


def _seconds(s) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 120 else f"{s:.1f} s"


def run_plan(args) -> int:
    from ..errors import InputError
    from ..sweep.cost import _arch_key, calibrate, estimate_seconds, run_cost
    from ..sweep.runner import plan_sweep

    if args.workers < 1:
        raise InputError(f"--workers must be >= 1; got {args.workers}. Use 1 or the number of cores.")
    spec, runs, infos = plan_sweep(args.spec)
    axes = [a for a, _ in spec.axes]
    rows = [[r.id] + [_fmt(r.varied[a]) for a in axes] for r in runs]
    head = ["id"] + axes
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    shape = " x ".join(f"{len(v)} {a}" for a, v in spec.axes) or "no axes"
    print(f"sweep {spec.name!r} ({spec.source}): {len(runs)} runs = {shape}; sweep key {spec.key()}")
    steps = spec.snapshot_steps
    print(f"analysis {spec.analysis.key()} of the final kernels"
          + (f" and snapshot steps {steps if isinstance(steps, str) else list(steps)}" if steps else "")
          + f", layers {spec.layers or 'all'}")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    shown = rows if args.limit is None else rows[:max(0, args.limit)]
    for row in shown:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    if len(shown) < len(rows):
        print(f"... {len(rows) - len(shown)} more (--limit)")
    costs = [run_cost(r.config, infos[_arch_key(r.config)]) for r in runs]
    known = [c for c in costs if c.flops is not None]
    train = sum(c.train_flops for c in known)
    evals = sum(c.eval_flops for c in known)
    print(f"cost, counted (not measured): {_flops(train + evals)} for {len(known)} runs: training "
          f"{_flops(train)} (3 x the forward FLOPs of the conv and linear layers, per image and epoch), "
          f"evaluation {_flops(evals)}; the analysis and worker start-up are not counted")
    if len(known) < len(costs):
        print(f"  {len(costs) - len(known)} runs not counted: their data set's size is not known before "
              "loading it (set n_train)")
    if args.calibrate:
        threads = spec.base.threads or 1
        rates = calibrate(runs, infos, threads=threads)
        for (arch, bs, opt), rate in rates.items():
            model, kw = json.loads(arch)
            print(f"measured here: {model} {_fmt(kw)} batch {bs} {opt}: {rate:.1f} GFLOP/s of training "
                  f"on {threads} thread(s) (random images, a few steps)")
        secs = [estimate_seconds(r.config, c, rates) for r, c in zip(runs, costs)]
        total = sum(s for s in secs if s is not None)
        print(f"estimated training time: {_seconds(total)} on one worker, {_seconds(total / args.workers)} on "
              f"{args.workers} worker(s) (counted FLOPs at the measured rates; analysis and start-up not "
              "included)")
    return 0


def _dask_executor(args, stack):
    """``(executor, threads, label)`` for --scheduler / --dask-local; Dask imported only here."""
    from ..errors import InputError

    try:
        import distributed
    except ModuleNotFoundError:
        raise InputError("--scheduler and --dask-local need Dask distributed, which is not installed. "
                         "Install it: pip install 'filtertopo[dask]'") from None
    if args.scheduler is not None:
        addr = args.scheduler.strip()
        if not addr or any(c.isspace() for c in addr):
            raise InputError(f"--scheduler must be an address like tcp://HOST:PORT; got {args.scheduler!r}.")
        if not args.connect_timeout > 0:
            raise InputError(f"--connect-timeout must be > 0 seconds; got {args.connect_timeout}.")
        try:
            client = distributed.Client(addr, timeout=args.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as e:
            raise InputError(f"--scheduler {addr!r}: no Dask scheduler answered within "
                             f"{args.connect_timeout:g} s ({type(e).__name__}: {e}). Start one (`dask scheduler`, "
                             "then `dask worker ADDRESS`), check the address and port, or use --dask-local N."
                             ) from None
        label = f"Dask scheduler {addr}"
    else:
        if args.dask_local < 1:
            raise InputError(f"--dask-local must be >= 1 workers; got {args.dask_local}.")
        cluster = distributed.LocalCluster(n_workers=args.dask_local, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
        stack.callback(cluster.close)
        client = distributed.Client(cluster, set_as_default=False)
        label = f"local Dask cluster of {args.dask_local} workers ({cluster.scheduler_address})"
    stack.callback(client.close)
    threads = sum(client.nthreads().values())
    if not threads:
        print(f"warning: {label} has no workers yet; runs wait until one joins", file=sys.stderr)
    return client.get_executor(pure=False), max(1, threads), label


def run_run(args) -> int:
    from ..errors import InputError
    from ..sweep.runner import plan_sweep, run_sweep
    from ..sweep.store import check_sweep_dir

    if args.workers < 1:
        raise InputError(f"--workers must be >= 1; got {args.workers}. Use 1 (this process) or the number "
                         "of cores.")
    dask = args.scheduler is not None or args.dask_local is not None
    if dask and args.workers != 1:
        raise InputError(f"--workers {args.workers} sizes the local process pool; with --scheduler or "
                         "--dask-local the cluster's workers run the runs. Drop --workers, or use "
                         "--dask-local N for N local Dask workers.")
    spec, _, _ = plan_sweep(args.spec, device=args.device)  # every check before anything is written
    check_sweep_dir(args.out, spec.key(), force=args.force)

    def log(line):
        print(line, file=sys.stderr)

    with contextlib.ExitStack() as stack:
        executor, window = None, None
        if dask:
            executor, window, label = _dask_executor(args, stack)
            log(f"running on the {label}: {window} worker thread(s)")
        out = run_sweep(spec, args.out, workers=args.workers, executor=executor, max_in_flight=window,
                        device=args.device, retry_failed=args.retry_failed, force=args.force,
                        scratch=args.scratch, progress=args.progress, log=log)
    c = out.counts
    total = sum(c.values())
    print(f"sweep {spec.name!r} -> {out.out}: {total} runs: {c['done']} done ({out.ran} run now, "
          f"{out.skipped_done} earlier), {c['failed']} failed, {c['pending']} pending ({out.seconds:.1f} s)")
    if out.problems:
        raise InputError(f"the index and the run folders of {str(out.out)!r} disagree: "
                         f"{'; '.join(out.problems[:3])}. Run the same command again to reconcile them.")
    if c["failed"] or c["pending"] or c["running"]:
        first = "; ".join(f"{rid}: {err}" for rid, err in out.failures[:2])
        why = f"{out.stopped}. " if out.stopped else ""
        retry = "with --retry-failed " if c["failed"] else ""
        raise InputError(f"{why}{c['failed']} of {total} runs failed"
                         + (" (not retried: pass --retry-failed)" if out.skipped_failed and not args.retry_failed
                            else "")
                         + (f", {c['pending']} pending" if c["pending"] else "")
                         + (f"; first: {first[:400]}" if first else "")
                         + f". The {c['done']} done are kept. See `filtertopo sweep status {out.out}`; run the "
                           f"same command {retry}to finish.")
    return 0


def run_status(args) -> int:
    import os
    import sqlite3
    from pathlib import Path

    from .._io import _lock_holder
    from ..errors import InputError
    from ..sweep.store import INDEX, read_index, verify_store

    out = Path(args.out)
    if not out.is_dir():
        raise InputError(f"{str(out)!r} is not a folder; give the --out folder of `filtertopo sweep run`.")
    meta = read_index(out)
    if meta is None:
        raise InputError(f"{str(out)!r} holds no sweep index ({INDEX}); give the --out folder of "
                         "`filtertopo sweep run`.")
    con = sqlite3.connect(f"file:{out / INDEX}?mode=ro", uri=True, timeout=5)
    try:
        cur = con.execute("SELECT * FROM runs ORDER BY position")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur]
    finally:
        con.close()
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    c = meta.get("counts", {})
    holder = _lock_holder(out)
    print(f"sweep {meta.get('name')!r} in {str(out)!r} (key {meta.get('sweep_key')}, created {meta.get('created')}):"
          f" {len(rows)} runs: " + ", ".join(f"{c.get(s, 0)} {s}" for s in ("done", "running", "pending", "failed"))
          + (f"; a driver is running (pid {holder})" if holder else ""))
    for r in rows:
        if r["status"] == "failed":
            err = (r["error"] or "").splitlines()[0] if r["error"] else ""
            print(f"  failed {r['id']} ({r['error_phase']}, {r['attempts']} attempt(s)): {err[:300]}")
    if holder:
        print("the index is being written; consistency not checked")
        return 0
    problems = verify_store(out)
    if problems:
        print(f"the index and the run folders disagree ({len(problems)}): " + "; ".join(problems[:5]))
        print("run `filtertopo sweep run` with the same spec and --out again to reconcile them")
        return 2
    print(f"the index and the {sum(1 for e in os.scandir(out / 'runs')) if (out / 'runs').is_dir() else 0} "
          "run folders agree")
    return 0
