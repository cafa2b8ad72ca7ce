"""The result store of a sweep: one folder per run and a SQLite index, written only by the driver.

Layout of a sweep folder::

    DIR/index.sqlite        the index (SQLite, WAL): tables meta, runs, events
    DIR/sweep.json          the resolved spec and its key (for readers without SQLite)
    DIR/spec.toml           the spec file as given
    DIR/runs/<id>/          one finished run: config.json, run.json, metrics.csv, kernels.npz,
                            model.pt, snapshots/, analysis/final/, analysis/step_000000/ ...,
                            and sweep_run.json, written last
    DIR/.filtertopo.lock    held by the driver while it runs

Only the driver writes here: workers return a run's files as bytes
(:func:`filtertopo.sweep.worker.run_job`), the driver writes them into ``runs/.tmp-<id>-*``,
writes ``sweep_run.json`` last, renames the folder into place, and only then marks the run
``done`` (or ``failed``) in the index, in one transaction. So at any moment, whatever
killed the driver or filled the disk:

- a run folder without ``.tmp-`` is complete (it has its ``sweep_run.json``);
- the index never says ``done`` for a run whose folder is not there;
- the one gap (the folder renamed, the index not yet updated) is closed at the next open by
  :meth:`SweepStore.reconcile`, which trusts the folders: ``done`` folders become ``done``
  rows, rows left ``running`` by a dead driver become ``pending``, ``.tmp-`` leftovers are
  removed.

Statuses: ``pending`` (to run), ``running`` (handed to a worker and not back yet),
``done``, ``failed`` (with the error and the phase: ``train``, ``analysis`` or ``worker``,
when the process running it died). The ``events`` table logs every change.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

from .._io import LOCK_NAME, atomic_write, check_output_dir, describe_oserror, output_lock
from ..errors import InputError
from ._runfolder import (RUN_FORMAT, TMP_PREFIX, StoreError, _plain, folder_state, own_run_folders, read_record,
                         write_run_folder)
from .worker import RUN_RECORD

__all__ = ["SweepStore", "StoreError", "open_store", "check_sweep_dir", "read_index", "verify_store",
           "INDEX", "SWEEP_JSON", "SPEC_COPY", "RUNS", "STATUSES", "FORMAT"]

INDEX = "index.sqlite"
SWEEP_JSON = "sweep.json"
SPEC_COPY = "spec.toml"
RUNS = "runs"
FORMAT = "filtertopo-sweep"
VERSION = 1
STATUSES = ("pending", "running", "done", "failed")
_OWN_FILES = (INDEX, f"{INDEX}-wal", f"{INDEX}-shm", f"{INDEX}-journal", SWEEP_JSON, SPEC_COPY)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    varied TEXT NOT NULL,
    config TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    error_phase TEXT,
    worker TEXT,
    submitted REAL,
    finished REAL,
    seconds REAL,
    train_acc REAL,
    test_acc REAL,
    updated REAL NOT NULL
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    run_id TEXT,
    event TEXT NOT NULL,
    detail TEXT
);
"""


def _show(p) -> str:
    return repr(str(p))


# --------------------------------------------------------------------------- checks (no writes)

def read_index(out) -> dict:
    """The ``meta`` table of ``out/index.sqlite`` (read-only), or None when there is none or
    it is empty. A file that is not a sweep index is an InputError."""
    path = Path(out) / INDEX
    if not os.path.lexists(path):
        return None
    if not os.path.isfile(path):
        raise InputError(f"{_show(path)} is not a regular file, where a sweep keeps its index; move it "
                         "away or choose another --out.")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as e:
        raise InputError(f"{_show(path)} cannot be opened as a sweep index ({e}).") from None
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return None  # created, then the driver died before the first commit
        if "meta" not in tables or "runs" not in tables:
            raise InputError(f"{_show(path)} is an SQLite file but not a filtertopo sweep index (tables "
                             f"{sorted(tables)}); move it away or choose another --out.")
        meta = dict(con.execute("SELECT key, value FROM meta"))
        meta["counts"] = dict(con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
    except sqlite3.DatabaseError as e:
        raise InputError(f"{_show(path)} is not a readable sweep index ({e}); move it away or choose "
                         "another --out.") from None
    finally:
        con.close()
    if meta.get("format") != FORMAT:
        raise InputError(f"{_show(path)} is not a filtertopo sweep index (format {meta.get('format')!r}); "
                         "move it away or choose another --out.")
    return meta


def check_sweep_dir(out, sweep_key: str, *, force: bool = False) -> str:
    """Decide what ``sweep run --out DIR`` does with ``DIR``, before anything is written.

    Returns "new" (absent, empty, or a non-sweep folder with ``force``), "resume" (a sweep
    of the same spec) or "replace" (another sweep, with ``force``). Refused with
    InputError: a file, an unwritable path, a folder another driver is writing, another
    sweep without ``force``, a non-empty folder that holds no sweep without ``force``.
    """
    out = Path(out)
    check_output_dir(out, force=True, names=(INDEX, SWEEP_JSON, SPEC_COPY), flag="--out")
    if not out.exists():
        return "new"
    meta = read_index(out)
    if meta is None:
        entries = [e for e in os.listdir(out) if e not in (LOCK_NAME, INDEX)]
        if entries and not force:
            raise InputError(f"--out {_show(out)} is not empty and holds no sweep (no {INDEX}); the rule is "
                             "a new or empty folder per sweep. Choose another --out, or pass --force to add "
                             "the sweep beside its files (none of them is deleted).")
        return "new"
    if meta.get("sweep_key") == sweep_key:
        return "resume"
    if not force:
        c = meta.get("counts", {})
        raise InputError(
            f"--out {_show(out)} holds another sweep ({meta.get('name')!r}, key {meta.get('sweep_key')}, "
            f"{sum(c.values())} runs, {c.get('done', 0)} done) made from a different spec than this one "
            f"(key {sweep_key}): its runs, analysis settings, layers or snapshot steps differ. Choose "
            "another --out, or pass --force to start over (it deletes that sweep's index and run folders, "
            "nothing else).")
    return "replace"


# --------------------------------------------------------------------------- the store

class SweepStore:
    """A sweep folder opened by the driver (see :func:`open_store`); not for workers."""

    def __init__(self, out: Path, con: sqlite3.Connection, sweep_key: str):
        self.out = Path(out)
        self.runs_dir = self.out / RUNS
        self.index_path = self.out / INDEX
        self.sweep_key = sweep_key
        self._con = con
        self.recovered = ()  # what reconcile() changed when the folder was opened

    # -- index --------------------------------------------------------------------------
    def _tx(self, statements):
        """Run ``[(sql, params), ...]`` in one transaction; StoreError (rolled back) on failure."""
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                con.execute(sql, params)
            con.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                if con.in_transaction:
                    con.execute("ROLLBACK")
            full = "full" in str(e).lower() or getattr(e, "sqlite_errorcode", None) == 13
            fix = ("Free disk space (or choose an --out on another disk) and run the same command again "
                   "to resume" if full else "Check the disk and the folder's permissions, then run the "
                   "same command again to resume")
            raise StoreError(f"the sweep index {_show(self.index_path)} could not be updated ({e}); the "
                             f"update was rolled back, so the index is consistent. {fix}.") from None

    def _event(self, rid, event, detail=None):
        return ("INSERT INTO events (time, run_id, event, detail) VALUES (?, ?, ?, ?)",
                (time.time(), rid, event, detail))

    def rows(self) -> list:
        """Every run of the index as a dict, in grid order."""
        cur = self._con.execute("SELECT * FROM runs ORDER BY position")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    def counts(self) -> dict:
        c = dict(self._con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
        return {s: c.get(s, 0) for s in STATUSES}

    def ids(self, status) -> list:
        return [r[0] for r in self._con.execute("SELECT id FROM runs WHERE status = ? ORDER BY position",
                                                (status,))]

    def mark_running(self, rid: str) -> None:
        now = time.time()
        self._tx([("UPDATE runs SET status='running', attempts=attempts+1, submitted=?, updated=? WHERE id=?",
                   (now, now, rid)), self._event(rid, "running")])

    def mark_pending(self, rids, why: str) -> None:
        rids = list(rids)
        if rids:
            now = time.time()
            self._tx([("UPDATE runs SET status='pending', updated=? WHERE id=?", (now, r)) for r in rids]
                     + [self._event(r, "pending", why) for r in rids])

    def mark_failed(self, rids, error: str, phase: str) -> None:
        rids = list(rids)
        if rids:
            now = time.time()
            self._tx([("UPDATE runs SET status='failed', error=?, error_phase=?, finished=?, updated=? WHERE id=?",
                       (error, phase, now, now, r)) for r in rids]
                     + [self._event(r, "failed", f"{phase}: {error}") for r in rids])

    # -- run folders --------------------------------------------------------------------
    def save_result(self, result: dict, *, varied: dict, config: dict, extra: dict) -> None:
        """Write a finished run's folder (atomically, record last), then its index row.

        ``result`` is what :func:`filtertopo.sweep.worker.run_job` returned. Raises
        StoreError when the disk refuses: the partial folder is removed and the index is
        left as it was (the run is not marked done).
        """
        rid, status = result["id"], result["status"]
        error = result.get("error")
        record = {"format": RUN_FORMAT, "version": VERSION, "id": rid, "sweep_key": self.sweep_key,
                  "status": status, "varied": varied, "config": config, **extra,
                  "summary": result.get("summary", {}),
                  "error": None if error is None else {k: error.get(k) for k in ("type", "message", "phase",
                                                                                 "traceback")},
                  "worker": result.get("worker"), "seconds": result.get("seconds"),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_run_folder(self.out, rid, result.get("files", {}), record, self.sweep_key)
        summ = result.get("summary", {})
        now = time.time()
        err = None if error is None else f"{error.get('type')}: {error.get('message')}"
        self._tx([("UPDATE runs SET status=?, error=?, error_phase=?, worker=?, finished=?, seconds=?, "
                   "train_acc=?, test_acc=?, updated=? WHERE id=?",
                   (status, err, None if error is None else error.get("phase"), result.get("worker"), now,
                    result.get("seconds"), _num(summ.get("train_acc")), _num(summ.get("test_acc")), now, rid)),
                  self._event(rid, status, err)])

    # -- consistency --------------------------------------------------------------------
    def reconcile(self) -> list:
        """Make the index agree with the run folders (the driver holds the lock).

        Removes ``runs/.tmp-*`` leftovers; a complete folder makes its run ``done`` (or
        ``failed``); a ``done`` or ``running`` row without its folder becomes ``pending``; a
        folder of ours that is damaged makes its run ``pending`` (it is rewritten when the run
        finishes). Returns the changes as ``(id, old status, new status, why)``. A folder at
        ``runs/<id>`` that this sweep did not write is an InputError (nothing is changed).
        """
        if self.runs_dir.is_dir():
            for entry in os.scandir(self.runs_dir):
                if entry.name.startswith(TMP_PREFIX) and entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
        rows = self.rows()
        states = {r["id"]: folder_state(self.runs_dir, r["id"], self.sweep_key) for r in rows}
        foreign = [rid for rid, (s, _) in states.items() if s == "foreign"]
        if foreign:
            raise InputError(f"--out {_show(self.out)}: {len(foreign)} run folder(s) were not written by this "
                             f"sweep: {', '.join(f'{RUNS}/{r}' for r in foreign[:5])}"
                             f"{' ...' if len(foreign) > 5 else ''} (no {RUN_RECORD} of this sweep). Move them "
                             "away and run the same command again.")
        changes, stmts, now = [], [], time.time()
        for r in rows:
            rid, old = r["id"], r["status"]
            state, rec = states[rid]
            new, why = old, None
            if state == "absent" and old in ("done", "running"):
                new, why = "pending", ("its run folder is missing" if old == "done"
                                       else "the driver stopped while it was running")
            elif state == "broken":
                new, why = "pending", "its run folder is incomplete or damaged"
            elif state in ("done", "failed") and old != state:
                new, why = state, "its run folder is complete (the driver stopped before recording it)"
            if new == old:
                continue
            changes.append((rid, old, new, why))
            if new in ("done", "failed"):
                summ, err = rec.get("summary") or {}, rec.get("error")
                stmts.append(("UPDATE runs SET status=?, error=?, error_phase=?, worker=?, seconds=?, "
                              "train_acc=?, test_acc=?, finished=COALESCE(finished, ?), updated=? WHERE id=?",
                              (new, None if not err else f"{err.get('type')}: {err.get('message')}",
                               None if not err else err.get("phase"), rec.get("worker"), rec.get("seconds"),
                               _num(summ.get("train_acc")), _num(summ.get("test_acc")), now, now, rid)))
            else:
                stmts.append(("UPDATE runs SET status=?, updated=? WHERE id=?", (new, now, rid)))
            stmts.append(self._event(rid, f"recovered {new}", why))
        if stmts:
            self._tx(stmts)
        return changes

    def verify(self) -> list:
        """Problems where the index and the folders disagree (empty: they match)."""
        return verify_store(self.out, con=self._con, sweep_key=self.sweep_key)


def _num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def verify_store(out, *, con=None, sweep_key=None) -> list:
    """Compare a sweep's index with its run folders; return the disagreements as sentences.

    Every ``done`` row must have a complete folder of this sweep, every complete folder a
    ``done`` (or ``failed``) row; a ``failed`` row has a failed folder, or none when its worker
    died; no run may be listed twice and no ``.tmp-`` leftover may remain.
    """
    out = Path(out)
    own = con is None
    if own:
        meta = read_index(out)
        if meta is None:
            return [f"{_show(out)} holds no sweep index"]
        sweep_key = meta["sweep_key"]
        con = sqlite3.connect(f"file:{out / INDEX}?mode=ro", uri=True, timeout=5)
    try:
        rows = list(con.execute("SELECT id, status FROM runs ORDER BY position"))
    finally:
        if own:
            con.close()
    problems = []
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        problems.append("the index lists a run twice")
    runs_dir = out / RUNS
    for rid, status in rows:
        state, _ = folder_state(runs_dir, rid, sweep_key)
        if status == "done" and state != "done":
            problems.append(f"run {rid} is done in the index but its folder is {state}")
        elif status == "failed" and state not in ("failed", "absent"):  # absent: its worker died
            problems.append(f"run {rid} is failed in the index but its folder is {state}")
        elif status in ("pending", "running") and state in ("done", "failed"):
            problems.append(f"run {rid} is {status} in the index but its folder is {state}")
    if runs_dir.is_dir():
        listed = set(ids)
        for entry in os.scandir(runs_dir):
            if entry.name.startswith(TMP_PREFIX):
                problems.append(f"{RUNS}/{entry.name} is a leftover of an interrupted write")
            elif entry.name not in listed and read_record(Path(entry.path)) not in (None, "broken") \
                    and (read_record(Path(entry.path)) or {}).get("sweep_key") == sweep_key:
                problems.append(f"{RUNS}/{entry.name} is a run folder of this sweep missing from the index")
    return problems


# --------------------------------------------------------------------------- opening

def _connect(path: Path) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(path, isolation_level=None, timeout=30)
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        con.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error as e:
        raise StoreError(f"the sweep index {_show(path)} cannot be opened ({e}). Check the disk and the "
                         "folder's permissions, or choose another --out.") from None
    if str(mode).lower() != "wal":
        import warnings

        warnings.warn(f"{_show(path)}: SQLite could not use WAL mode here (journal mode {mode!r}; a network "
                      "file system?); the index still works, only the driver writes it.", UserWarning,
                      stacklevel=3)
    return con


@contextlib.contextmanager
def open_store(out, spec, runs, *, force: bool = False):
    """Open (creating, resuming or, with ``force``, replacing) the sweep folder ``out``.

    Holds the folder's lock while open, so a second driver on the same folder gets an
    InputError. Creates the index with every run ``pending``; on a resume, reconciles it
    with the folders (:meth:`SweepStore.reconcile`). Yields the :class:`SweepStore`.
    """
    out = Path(out)
    key = spec.key()
    check_sweep_dir(out, key, force=force)  # before creating anything
    with output_lock(out, flag="--out"):
        mode = check_sweep_dir(out, key, force=force)  # again, under the lock
        runs_dir = out / RUNS
        if mode == "replace":
            victims = [out / n for n in _OWN_FILES if os.path.lexists(out / n)] + own_run_folders(runs_dir)
            for v in victims:
                try:
                    shutil.rmtree(v) if v.is_dir() and not v.is_symlink() else v.unlink()
                except OSError as e:
                    raise StoreError(f"--force could not remove the old sweep's {describe_oserror(e, v)}") from None
            mode = "new"
        if mode == "new":
            clash = [r.id for r in runs if os.path.lexists(runs_dir / r.id)]
            if clash:
                raise InputError(f"--out {_show(out)}: {RUNS}/{clash[0]} already exists"
                                 f"{f' (and {len(clash) - 1} more)' if len(clash) > 1 else ''} and was not "
                                 "written by this sweep; move it away or choose another --out.")
            for name in (INDEX, f"{INDEX}-wal", f"{INDEX}-shm", f"{INDEX}-journal"):
                with contextlib.suppress(FileNotFoundError):  # an empty index from a start that died
                    (out / name).unlink()
        con = _connect(out / INDEX)
        store = SweepStore(out, con, key)
        try:
            if mode == "new":
                _create(store, spec, runs)
            else:
                _check_runs(store, runs)
            _write_side_files(store, spec)
            store.recovered = tuple(store.reconcile())
            yield store
        finally:
            con.close()


def _create(store: SweepStore, spec, runs) -> None:
    from .. import __version__

    now = time.time()
    meta = {"format": FORMAT, "version": str(VERSION), "sweep_key": store.sweep_key, "name": spec.name,
            "spec": json.dumps(spec.to_dict(), default=_plain, sort_keys=True), "n_runs": str(len(runs)),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "filtertopo_version": __version__}
    con = store._con
    try:
        con.executescript(_SCHEMA)
    except sqlite3.Error as e:
        raise StoreError(f"the sweep index {_show(store.index_path)} cannot be created ({e}). Check the "
                         "disk and the folder's permissions, or choose another --out.") from None
    stmts = [("INSERT INTO meta (key, value) VALUES (?, ?)", (k, v)) for k, v in meta.items()]
    stmts += [("INSERT INTO runs (id, position, status, varied, config, updated) VALUES (?, ?, 'pending', ?, ?, ?)",
               (r.id, r.position, json.dumps(r.varied, default=_plain), json.dumps(r.config.to_dict(), default=_plain),
                now)) for r in runs]
    stmts.append(store._event(None, "created", f"{len(runs)} runs"))
    store._tx(stmts)


def _check_runs(store: SweepStore, runs) -> None:
    have = {r["id"] for r in store.rows()}
    want = {r.id for r in runs}
    if have != want:  # same key means same ids; a mismatch is a damaged index
        raise InputError(f"the sweep index {_show(store.index_path)} lists other runs than its spec "
                         f"({len(have ^ want)} differ); it was edited or damaged. Pass --force to start over.")


def _write_side_files(store: SweepStore, spec) -> None:
    text = json.dumps({"format": FORMAT, "version": VERSION, "sweep_key": store.sweep_key,
                       "spec": spec.to_dict()}, indent=1, default=_plain)
    try:
        store.runs_dir.mkdir(exist_ok=True)
        for name, body in ((SWEEP_JSON, text), (SPEC_COPY, spec.text)):
            if body and not os.path.lexists(store.out / name):
                atomic_write(store.out / name, lambda p, b=body: p.write_text(b, encoding="utf-8"))
    except InputError as e:
        raise StoreError(str(e)) from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(f"could not write {describe_oserror(e)}") from None
        raise StoreError(f"could not write the sweep folder: {describe_oserror(e)}") from None
