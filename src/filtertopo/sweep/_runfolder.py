"""Run folders of a sweep: written whole by the driver, recognised by their ``sweep_run.json``.

A run folder ``runs/<id>/`` is written into ``runs/.tmp-<id>-*`` and renamed into place once
complete, its record ``sweep_run.json`` (:data:`~filtertopo.sweep.worker.RUN_RECORD`) last,
so a folder without the ``.tmp-`` prefix is always whole. :func:`folder_state` reads what a
folder is (absent, done, failed, damaged, or not this sweep's); :func:`write_run_folder`
writes one; :func:`own_run_folders` lists what ``--force`` may delete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import uuid
from pathlib import Path

from .worker import RUN_RECORD

from .._io import describe_oserror
from ..config import json_default as _plain  # one JSON default for configs and run records
from ..errors import InputError

__all__ = ["folder_state", "write_run_folder", "own_run_folders", "read_record", "StoreError", "TMP_PREFIX",
           "RUN_FORMAT"]

TMP_PREFIX = ".tmp-"
RUN_FORMAT = "filtertopo-sweep-run"


class StoreError(InputError):
    """The sweep folder or its index could not be written (disk full, permissions)."""



def _show(p) -> str:
    return repr(str(p))


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and fsync it (the one place run files are written)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _safe_rel(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts) \
        and rel != RUN_RECORD


def read_record(folder: Path):
    """``sweep_run.json`` of a run folder as a dict; None when absent; "broken" when unreadable."""
    p = folder / RUN_RECORD
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    except OSError:
        return "broken"
    if not stat.S_ISREG(st.st_mode) or st.st_size > 16 * 2**20:
        return "broken"
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return "broken"
    return rec if isinstance(rec, dict) else "broken"


def folder_state(runs_dir: Path, rid: str, sweep_key: str) -> tuple:
    """``(state, record)`` of ``runs/<rid>``: state "absent", "done", "failed", "broken" (ours,
    but files are missing or of another size) or "foreign" (not written by this sweep)."""
    p = runs_dir / rid
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return "absent", None
    if not stat.S_ISDIR(st.st_mode):
        return "foreign", None
    rec = read_record(p)
    if rec is None:
        return "foreign", None
    if rec == "broken":
        return "broken", None
    if rec.get("format") != RUN_FORMAT or rec.get("id") != rid or rec.get("sweep_key") != sweep_key:
        return "foreign", rec
    files = rec.get("files")
    if not isinstance(files, dict) or rec.get("status") not in ("done", "failed"):
        return "broken", rec
    for rel, size in files.items():
        try:
            fst = os.stat(p / rel)
        except OSError:
            return "broken", rec
        if not stat.S_ISREG(fst.st_mode) or fst.st_size != size:
            return "broken", rec
    return rec["status"], rec


def own_run_folders(runs_dir: Path) -> list:
    """Run folders under ``runs/`` written by some sweep (they have a sweep_run.json record),
    and ``.tmp-`` leftovers: what ``--force`` may delete."""
    out = []
    if runs_dir.is_dir() and not runs_dir.is_symlink():
        for entry in os.scandir(runs_dir):
            p = Path(entry.path)
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name.startswith(TMP_PREFIX):
                out.append(p)
                continue
            rec = read_record(p)
            if isinstance(rec, dict) and rec.get("format") == RUN_FORMAT and rec.get("id") == entry.name:
                out.append(p)
    return out


def write_run_folder(out: Path, rid: str, files: dict, record: dict, sweep_key: str) -> None:
    """Write ``out/runs/<rid>/`` whole: the files into ``runs/.tmp-<rid>-*``, ``record`` (plus the
    size of every file) as ``sweep_run.json`` last, fsync, rename into place (an earlier folder
    of this sweep for the run is replaced). StoreError when the disk refuses: the partial folder
    is removed and nothing else changes."""
    runs_dir = Path(out) / "runs"
    final = runs_dir / rid
    state, _ = folder_state(runs_dir, rid, sweep_key)
    if state == "foreign":
        raise StoreError(f"{_show(final)} exists but was not written by this sweep; move it away and run "
                         "the same command again.")
    tmp = runs_dir / f"{TMP_PREFIX}{rid}-{uuid.uuid4().hex[:8]}"
    current = tmp
    try:
        tmp.mkdir(parents=True)
        sizes = {}
        for rel, data in files.items():
            if not _safe_rel(rel):
                raise StoreError(f"run {rid}: the worker returned a bad file name {rel!r}.")
            current = tmp / rel
            current.parent.mkdir(parents=True, exist_ok=True)
            _write_file(current, data)
            sizes[rel] = len(data)
        current = tmp / RUN_RECORD
        _write_file(current, json.dumps({**record, "files": sizes}, indent=1, default=_plain,
                                        allow_nan=False).encode("utf-8"))
        _fsync_dir(tmp)
        if state != "absent":  # our own earlier attempt (failed, or damaged): replaced
            old = runs_dir / f"{TMP_PREFIX}old-{rid}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(runs_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"could not write run {rid} into {_show(out)}: {describe_oserror(e, current)} "
                         "The partial run folder was removed and the index still lists the run as not "
                         "done; run the same command again to resume.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
