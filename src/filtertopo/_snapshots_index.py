"""Reading a training run's snapshot index, without torch.

A run folder written by :func:`filtertopo.training.train` holds
``snapshots/step_000000.npz`` ... (kernel files, the format :func:`filtertopo.analyze`
reads) and one index, ``snapshots/index.csv``, with a row per snapshot: step, epoch, file,
train_acc, test_acc, train_loss. Writing them needs the model (torch:
:class:`filtertopo.training.snapshots.SnapshotWriter`); reading them does not, so the
reader lives here in the core, where :mod:`filtertopo.tracking` uses it and
:mod:`filtertopo.training.snapshots` re-exports it. Nothing here imports
:mod:`filtertopo.training`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

__all__ = ["Snapshot", "read_index", "read_regular_file", "INDEX_FIELDS", "INDEX_MAX_BYTES"]

INDEX_FIELDS = ("step", "epoch", "file", "train_acc", "test_acc", "train_loss")

#: The largest ``index.csv`` / ``run.json`` read (a row per snapshot is ~60 bytes).
INDEX_MAX_BYTES = 64 * 2**20


def _kind(mode) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


def read_regular_file(path, *, param: str, max_bytes: int, fix: str = "") -> bytes:
    """The bytes of a small regular file; InputError for anything else.

    A missing path, a folder, FIFO, socket or device is refused by
    :func:`filtertopo.errors.check_regular_file` *before* anything is opened; the
    file is then opened non-blocking and checked again (so a FIFO swapped in
    meanwhile cannot hang the process). A file larger than ``max_bytes`` is refused.
    ``param`` names the file in messages (e.g. ``"--config"``).
    """
    from .errors import check_regular_file

    check_regular_file(path, param, fix=fix)
    shown = repr(str(path))
    tail = f" {fix}" if fix else ""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{param} {shown} cannot be read ({exc.strerror or exc}).{tail}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{param} {shown} is {_kind(st.st_mode)}, not a regular file.{tail}")
        if st.st_size > max_bytes:
            raise InputError(f"{param} {shown} is {st.st_size} bytes, more than the {max_bytes} "
                             f"accepted.{tail}")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{param} {shown} cannot be read ({exc.strerror or exc}).{tail}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise InputError(f"{param} {shown} is larger than the {max_bytes} bytes accepted.{tail}")
    return data


@dataclass(frozen=True)
class Snapshot:
    """One row of ``snapshots/index.csv`` with the absolute path of its file."""

    step: int
    epoch: float
    path: Path
    train_acc: float
    test_acc: float
    train_loss: float


def _inside(path: Path, roots) -> bool:
    try:
        real = path.resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(real == r or r in real.parents for r in roots)


def read_index(run_dir) -> tuple[list[Snapshot], list[str]]:
    """Read a run's snapshots, tolerating interrupted runs.

    Returns
    -------
    snapshots : list of Snapshot
        Rows whose file exists, sorted by step, one per step. Without an index (very
        old or broken run) the ``step_*.npz`` files themselves are listed.
    problems : list of str
        What is missing or inconsistent (index rows without file, files without
        row, unreadable rows, duplicated rows, no ``run.json`` completion record).

    Raises
    ------
    InputError
        ``index.csv`` or ``run.json`` is a folder, FIFO or other non-regular file (never
        opened), ``index.csv`` is not UTF-8 CSV text, or a snapshot file (a ``file`` entry
        of the index, or a ``step_*.npz`` link) resolves outside the run folder: such files
        are never opened, and messages never quote their bytes.
    """
    run_dir = Path(run_dir)
    folder = run_dir / "snapshots"
    problems, snaps = [], []
    status = run_dir / "run.json"
    fix = "It should be the file `filtertopo train` wrote; restore or remove it."
    if os.path.lexists(status):
        data = read_regular_file(status, param="run status file", max_bytes=INDEX_MAX_BYTES,
                                 fix=fix)
        try:
            doc = json.loads(data.decode("utf-8"))
            why = None if isinstance(doc, dict) else f"a JSON {type(doc).__name__}, not an object"
        except ValueError:  # includes UnicodeDecodeError
            doc, why = None, "not UTF-8 JSON"
        if why:
            problems.append(f"{run_dir}: run.json is unreadable ({why}); its status is unknown, "
                            "tracking the snapshots found")
        elif doc.get("status") != "complete":
            problems.append(f"{run_dir}: run.json status is {doc.get('status')!r} (interrupted "
                            "or failed run?); tracking the snapshots written so far")
    else:
        problems.append(f"{run_dir}: no run.json (not written by filtertopo train, or "
                        "interrupted before it started)")
    if not folder.is_dir():
        problems.append(f"{run_dir}: no snapshots/ folder; train with snapshot_every > 0")
        return snaps, problems
    roots = {run_dir.resolve(), folder.resolve()}
    index = folder / "index.csv"
    seen_names, by_path, by_step = set(), {}, {}
    has_index = os.path.lexists(index)
    if has_index:
        data = read_regular_file(index, param="snapshot index", max_bytes=INDEX_MAX_BYTES,
                                 fix=fix + " Without it the step_*.npz files are listed.")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{str(index)!r} is not UTF-8 text (invalid byte at position "
                             f"{exc.start}). {fix} Without it the step_*.npz files are "
                             "listed.") from None
        try:
            rows = list(enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2))
        except csv.Error as exc:
            raise InputError(f"{str(index)!r} is not a CSV file ({exc}). {fix}") from None
        for i, row in rows:
            try:
                name = row["file"]
                if not isinstance(name, str) or not name or "\x00" in name:
                    raise ValueError
                snap_step = int(row["step"])
                values = (float(row["epoch"]), float(row["train_acc"]), float(row["test_acc"]),
                          float(row["train_loss"]))
            except (KeyError, TypeError, ValueError):
                problems.append(f"{index} line {i}: unreadable row skipped")
                continue
            path = folder / name
            if Path(name).is_absolute() or not _inside(path, roots):
                raise InputError(
                    f"{str(index)!r} line {i}: the file entry {name[:200]!r} points outside the "
                    f"run folder {str(run_dir)!r}; index.csv may only name snapshot files inside "
                    "it (e.g. step_000010.npz). The file was not read. Fix or remove that line.")
            key = os.path.normcase(os.path.realpath(path))
            if key in by_path:
                problems.append(f"{index} line {i}: {name} is listed again (first on line "
                                f"{by_path[key]}); counted once")
                continue
            if snap_step in by_step:
                problems.append(f"{index} line {i}: step {snap_step} is listed again (first on "
                                f"line {by_step[snap_step]}); the first row is used")
                continue
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is None:
                problems.append(f"{path}: listed in index.csv but missing")
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{path}: listed in index.csv but {_kind(st.st_mode)}; skipped")
                continue
            by_path[key], by_step[snap_step] = i, i
            seen_names.add(path.name)
            snaps.append(Snapshot(snap_step, values[0], path, *values[1:]))
    else:
        problems.append(f"{folder}: no index.csv; steps taken from file names, "
                        "accuracies unknown")
    nan = float("nan")
    for f in sorted(folder.glob("step_*.npz")):
        if f.name in seen_names or ".tmp" in f.name:
            continue
        try:
            step = int(f.stem.split("_")[1])
        except (IndexError, ValueError):
            problems.append(f"{f}: name not step_<number>.npz; skipped")
            continue
        if not _inside(f, roots):
            raise InputError(f"{str(f)!r} is a link to a file outside the run folder "
                             f"{str(run_dir)!r}; snapshots must lie inside it. The file was not "
                             "read. Remove the link or copy the file in.")
        key = os.path.normcase(os.path.realpath(f))
        if key in by_path:
            continue  # the same file under another name, already listed
        try:
            st = os.stat(f)
        except OSError:
            problems.append(f"{f}: cannot be read; skipped")
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{f}: {_kind(st.st_mode)}, not a snapshot file; skipped")
            continue
        if step in by_step:
            problems.append(f"{f}: step {step} is already listed in index.csv; skipped")
            continue
        if has_index:
            problems.append(f"{f}: not in index.csv (interrupted while writing?); included")
        by_path[key], by_step[step] = f.name, f.name
        snaps.append(Snapshot(step, nan, f, nan, nan, nan))
    snaps.sort(key=lambda s: s.step)
    return snaps, problems
