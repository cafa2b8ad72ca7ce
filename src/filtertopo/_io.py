"""Output files and folders, the same way everywhere in filtertopo.

One rule for output folders and files, checked *before* any work
(:func:`check_output_dir`, :func:`check_output_file`); one atomic file write
(:func:`atomic_write`); and one atomic save of a whole results folder
(:func:`save_folder`) with a ``manifest.json`` that :func:`verify_folder`
checks when the folder is read back, so that an interrupted save, a full disk
or two concurrent writers never leave a folder that loads as a mix of two runs.

A results folder written by :func:`save_folder` holds

- the result files (e.g. ``layers.csv``, ``analysis.json``, ``points.npz``);
- ``manifest.json``: ``{"format": "filtertopo-results", "manifest_version": 1, "run_id": <uuid4>,
  "filtertopo_version": ..., "created": <UTC ISO time>, "files": {name: {"sha256": ..., "size": ...}}}``;
- ``.filtertopo.lock``: an empty lock file (``fcntl.flock``) held by the process that writes.

The save writes every file into a fresh hidden folder ``.filtertopo-tmp-*`` inside the target
(same file system, so renames are atomic), fsyncs them, writes the manifest there last, then
renames the manifest and the files into place. Until the last rename the manifest and the
files disagree, so a reader sees "incomplete or mixed" and never a silent mix. A result file
of a previous run that the new run does not write (``report.html`` after ``--force`` without
``--report``) is renamed to ``<name>.stale``; files that are not result files are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

from .errors import InputError

__all__ = ["MANIFEST", "LOCK_NAME", "check_output_dir", "check_output_file", "atomic_write",
           "output_lock", "save_folder", "read_manifest", "verify_folder", "describe_oserror"]

MANIFEST = "manifest.json"
LOCK_NAME = ".filtertopo.lock"
TMP_PREFIX = ".filtertopo-tmp-"
FORMAT = "filtertopo-results"
_NAME_MAX = 255
_PATH_MAX = 4096
_MANIFEST_MAX_BYTES = 4 * 1024 * 1024


# --------------------------------------------------------------------------- messages

def _show(path) -> str:
    """A path for a message: quoted, shortened when very long."""
    s = str(path)
    if len(s) > 120:
        s = f"{s[:60]}...{s[-40:]} ({len(os.fsencode(s))} bytes)"
    return repr(s)


def describe_oserror(e: OSError, path=None) -> str:
    """One line for an OSError: the path, the system's reason and a fix."""
    name = e.filename if e.filename is not None else path
    where = _show(name) if name is not None else "a file"
    reason = e.strerror or str(e)
    code = errno.errorcode.get(e.errno, "") if e.errno else ""
    fix = {
        errno.ENOSPC: "Free disk space or choose an --out on another disk.",
        errno.EFBIG: "The file size limit (ulimit -f) or the file system's limit was reached; raise it, "
                     "free space or choose an --out on another disk.",
        errno.EDQUOT: "Your disk quota is exhausted; free space or choose an --out on another disk.",
        errno.EACCES: "Check the permissions or choose a folder you can write to.",
        errno.EPERM: "Check the permissions or choose a folder you can write to.",
        errno.EROFS: "The file system is read-only; choose an --out on a writable disk.",
        errno.ENAMETOOLONG: "Use a shorter path (each name at most 255 bytes).",
        errno.EISDIR: "A folder stands where a file is expected; remove it or choose another path.",
        errno.ENOTDIR: "A file stands where a folder is expected; choose another path.",
    }.get(e.errno, "")
    return f"{where}: {reason}{f' ({code})' if code else ''}. {fix}".strip()


# --------------------------------------------------------------------------- checks

def _lstat(path: Path, flag: str):
    """``os.lstat`` or None when absent; a too-long name is an InputError, not a traceback."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a component is a file; reported by the ancestor check
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise _too_long(path, flag) from None
        raise InputError(f"{flag} {describe_oserror(e, path)}") from None


def _too_long(path, flag) -> InputError:
    return InputError(
        f"{flag} {_show(path)} is too long: each name in a path may have at most {_NAME_MAX} bytes "
        f"and the whole path at most {_PATH_MAX}. Choose a shorter path.")


def _check_length(path: Path, flag: str):
    b = os.fsencode(str(path))
    if len(b) >= _PATH_MAX or any(len(os.fsencode(part)) > _NAME_MAX for part in path.parts):
        raise _too_long(path, flag)


def _nearest_existing(path: Path, flag: str) -> Path:
    """The nearest ancestor of ``path`` (or itself) that exists; it must be a folder."""
    p = Path(os.path.abspath(path))
    while True:
        st = _lstat(p, flag)
        if st is not None:
            if stat.S_ISLNK(st.st_mode):
                try:
                    st = os.stat(p)
                except OSError:
                    raise InputError(
                        f"{flag} {_show(path)}: {_show(p)} is a symbolic link to "
                        f"{_show(os.readlink(p))}, which does not exist. Create the target folder, "
                        "remove the link, or choose another path.") from None
            if not stat.S_ISDIR(st.st_mode):
                raise InputError(f"{flag} {_show(path)}: {_show(p)} is a file, not a folder, so "
                                 f"nothing can be created under it. Choose another path.")
            return p
        if p.parent == p:
            return p
        p = p.parent


def _check_writable(folder: Path, path, flag: str):
    """Create and remove a temporary file in ``folder``; refuse when that is not allowed."""
    why = None
    if not os.access(folder, os.W_OK | os.X_OK):
        why = "permission denied"
    else:
        try:
            fd, tmp = tempfile.mkstemp(prefix=".filtertopo-write-test-", dir=folder)
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                raise _too_long(path, flag) from None
            why = e.strerror or str(e)
        else:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    if why is not None:
        where = "" if Path(os.path.abspath(path)) == folder else f" (in {_show(folder)})"
        raise InputError(f"{flag} {_show(path)} is not writable{where}: {why}. Choose a folder you can "
                         "write to, or change its permissions.")


def check_output_dir(path, *, force: bool, names, flag: str = "--out") -> Path:
    """Refuse an output folder that cannot receive results, before any work is done.

    Refused (:class:`InputError`): a path too long for the file system; a file; a symbolic
    link whose target does not exist; a folder under a file; a folder (or the nearest existing
    folder above it) where a file cannot be created; a folder where one of ``names`` is a folder
    or not a regular file; a folder that already holds one of ``names`` unless ``force``; a folder
    another filtertopo process is writing to right now.

    Parameters
    ----------
    path : str or Path
    force : bool
        Allow replacing existing result files.
    names : iterable of str
        The result file names (including ``manifest.json``).
    flag : str
        How the path is named in messages (the CLI option).

    Returns
    -------
    Path
    """
    out = Path(path)
    _check_length(out, flag)
    st = _lstat(out, flag)
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(out)
        except OSError:
            raise InputError(
                f"{flag} {_show(out)} is a symbolic link to {_show(os.readlink(out))}, which does not "
                "exist. Create the target folder, remove the link, or choose another folder.") from None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{flag} {_show(out)} is a file, not a folder. Choose a folder path.")
    existing = []
    if st is not None:
        for name in names:
            fst = _lstat(out / name, flag)
            if fst is None:
                continue
            if stat.S_ISDIR(fst.st_mode) or not (stat.S_ISREG(fst.st_mode) or stat.S_ISLNK(fst.st_mode)):
                kind = "a folder" if stat.S_ISDIR(fst.st_mode) else "not a regular file"
                raise InputError(f"{flag} {_show(out)}: {name} is {kind}, where filtertopo writes a "
                                 f"result file. Move it away or choose another folder.")
            existing.append(name)
        if existing and not force:
            raise InputError(f"{flag} {_show(out)} already holds results ({', '.join(existing)}). "
                             "Choose another folder or pass --force to overwrite them.")
        holder = _lock_holder(out)
        if holder is not None:
            raise _locked(out, flag, holder)
    _check_writable(_nearest_existing(out, flag), out, flag)
    return out


def check_output_file(path, *, force: bool, flag: str = "--out") -> Path:
    """Refuse an output file path before any work: too long, a folder, not writable, or existing
    without ``force`` (a symbolic link is replaced, never written through)."""
    out = Path(path)
    _check_length(out, flag)
    st = _lstat(out, flag)
    if st is not None:
        if stat.S_ISDIR(st.st_mode) or (stat.S_ISLNK(st.st_mode) and os.path.isdir(out)):
            raise InputError(f"{flag} {_show(out)} is a folder; give a file path, e.g. "
                             f"{_show(out / 'report.html')}.")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise InputError(f"{flag} {_show(out)} is not a regular file. Choose another path.")
        if not force:
            raise InputError(f"{flag} {_show(out)} exists; pass --force to overwrite it or give "
                             "another path.")
    _check_writable(_nearest_existing(out.parent if str(out.parent) else Path("."), flag), out, flag)
    return out


# --------------------------------------------------------------------------- writing

def _fsync_path(path, *, directory=False):
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def atomic_write(path, write_fn, *, flag: str = "--out") -> Path:
    """Write one file atomically: ``write_fn(tmp_path)`` writes a temporary file with a unique
    name in the same folder (same suffix as ``path``, so ``np.savez`` keeps the name), which is
    fsynced and renamed over ``path``. A failure removes the temporary file and leaves any
    existing ``path`` unchanged; an OSError becomes an :class:`InputError` naming the path.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if os.path.isdir(path):
        raise InputError(f"{flag} {_show(path)} is a folder; give a file path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp" + path.suffix, dir=folder)
    except OSError as e:
        raise InputError(f"could not write {flag} {describe_oserror(e, path)}") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise InputError(f"could not write {flag} {describe_oserror(e, path)} "
                             "Any previous file there was left unchanged.") from None
        raise
    _fsync_path(folder, directory=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- locking

_HELD: dict = {}  # realpath -> [fd, count]: the lock is re-entrant within one process


def _lock_holder(folder: Path):
    """The pid (or "?") of another process holding the folder's lock, else None."""
    lock = folder / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    if os.path.realpath(folder) in _HELD:
        return None
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            except OSError:
                return "?"
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _locked(folder, flag, holder) -> InputError:
    who = f" (pid {holder})" if holder not in (None, "?") else ""
    return InputError(f"{flag} {_show(folder)} is being written by another filtertopo process{who}. "
                      "Wait for it to finish, or choose another folder.")


@contextlib.contextmanager
def output_lock(folder, *, flag: str = "--out"):
    """Hold the exclusive writer lock of ``folder`` (created if needed), without waiting.

    A second process asking for the same folder gets an :class:`InputError`; within one
    process the lock is re-entrant.
    """
    folder = Path(folder)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        fcntl = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"could not create {flag} {describe_oserror(e, folder)}") from None
    key = os.path.realpath(folder)
    if fcntl is None:  # pragma: no cover
        yield folder
        return
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield folder
        finally:
            _HELD[key][1] -= 1
        return
    lock = folder / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        raise InputError(f"could not create the lock file {describe_oserror(e, lock)}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{flag} {_show(folder)}: {LOCK_NAME} is not a regular file; remove it.")
        supported = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            except OSError:
                holder = "?"
            raise _locked(folder, flag, holder) from None
        except OSError as e:  # a file system without flock (some network mounts): go on unlocked
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise InputError(f"could not lock {flag} {describe_oserror(e, lock)}") from None
            warnings.warn(f"{flag} {_show(folder)}: the file system does not support locks, so a "
                          "concurrent writer to this folder cannot be detected.", UserWarning,
                          stacklevel=3)
            supported = False
        if not supported:
            yield folder
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        _HELD[key] = [fd, 1]
        try:
            yield folder
        finally:
            del _HELD[key]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- folders

def _sha256(path: Path) -> tuple:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _version() -> str:
    from ._version import __version__

    return __version__


def _clean_leftovers(out: Path, names=()):
    """Remove temporary folders and files of earlier interrupted saves (we hold the lock):
    ``.filtertopo-tmp-*`` folders, write tests, and the temporary files of :func:`atomic_write`
    and of filtertopo 0.1.0 (``.<name>.tmp*``) for the result ``names``."""
    prefixes = tuple(f".{n}." for n in names)
    with contextlib.suppress(OSError):
        for entry in os.scandir(out):
            if entry.name.startswith(TMP_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif ((entry.name.startswith(".filtertopo-write-test-")
                   or (entry.name.startswith(prefixes) and ".tmp" in entry.name))
                  and entry.is_file(follow_symlinks=False)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def save_folder(out_dir, writers: dict, *, force: bool, names, flag: str = "--out",
                stale_names=None) -> dict:
    """Write a whole results folder atomically, with a ``manifest.json`` written last.

    Parameters
    ----------
    out_dir : str or Path
    writers : dict of str -> callable
        ``{file name: write_fn}``; ``write_fn(path)`` writes that file at ``path``
        (a path of the same name in the temporary folder).
    force : bool
        Replace existing result files.
    names : iterable of str
        Every result file name of this kind of folder (refused without ``force``).
    stale_names : iterable of str, optional
        Result files a previous run may have left that this save does not write; an existing
        one is renamed to ``<name>.stale``. Default: ``names`` minus ``writers`` and the manifest.

    Returns
    -------
    dict
        The manifest.
    """
    names = tuple(dict.fromkeys([*names, MANIFEST]))
    out = check_output_dir(out_dir, force=force, names=names, flag=flag)
    if stale_names is None:
        stale_names = [n for n in names if n not in writers and n != MANIFEST]
    with output_lock(out, flag=flag):
        try:
            check_output_dir(out, force=force, names=names, flag=flag)  # again, under the lock
        except InputError as e:
            raise InputError(f"{e} (The folder changed while this process was working: another "
                             "process wrote into it.)") from None
        _clean_leftovers(out, names)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out))
        except OSError as e:
            raise InputError(f"could not write {flag} {describe_oserror(e, out)}") from None
        committing, current = False, tmp
        try:
            files = {}
            for name, write_fn in writers.items():
                p = current = tmp / name
                write_fn(p)
                _fsync_path(p)
                sha, size = _sha256(p)
                files[name] = {"sha256": sha, "size": size}
            manifest = {"format": FORMAT, "manifest_version": 1, "run_id": uuid.uuid4().hex,
                        "filtertopo_version": _version(),
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "files": files}
            mp = current = tmp / MANIFEST
            mp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            _fsync_path(mp)
            _fsync_path(tmp, directory=True)
            # commit: stale files aside, then the manifest, then the files (readers see a
            # mismatch, never a silent mix, until the last rename)
            committing = True
            for name in stale_names:
                p = out / name
                if os.path.lexists(p) and not os.path.isdir(p):
                    os.replace(p, out / f"{name}.stale")
            os.replace(mp, out / MANIFEST)
            for name in writers:
                os.replace(tmp / name, out / name)
            _fsync_path(out, directory=True)
        except OSError as e:
            if committing:
                state = ("The folder is now marked incomplete (its manifest.json does not match); "
                         "re-run with --force.")
            else:
                state = ("Nothing in the folder was changed: results already there are intact, "
                         "and the partial files were removed.")
            shown = out / current.name if current.parent == tmp else current
            raise InputError(f"could not write the results to {flag} {_show(out)}: "
                             f"{describe_oserror(e, shown)} {state}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _incomplete(out: Path, detail: str) -> InputError:
    return InputError(
        f"{_show(out)} is an incomplete or mixed results folder: {detail}. A save was interrupted, or "
        "files were edited or copied from another run. Re-run the analysis into it with --force "
        "(or into a fresh --out).")


def read_manifest(out_dir):
    """The folder's manifest as a dict, or None when it has none. Malformed: InputError."""
    out = Path(out_dir)
    mp = out / MANIFEST
    if _lstat(mp, "results folder") is None:
        return None
    try:
        st = os.stat(mp)
    except OSError as e:
        raise _incomplete(out, f"{MANIFEST} cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _incomplete(out, f"{MANIFEST} is not a regular file")
    if st.st_size > _MANIFEST_MAX_BYTES:
        raise _incomplete(out, f"{MANIFEST} is {st.st_size} bytes, more than a manifest can be")
    try:
        m = json.loads(mp.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _incomplete(out, f"{MANIFEST} is not valid UTF-8 JSON ({e})") from None
    except OSError as e:
        raise InputError(f"cannot read {describe_oserror(e, mp)}") from None
    files = m.get("files") if isinstance(m, dict) else None
    if (not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(files, dict)
            or not all(isinstance(v, dict) and isinstance(v.get("sha256"), str)
                       and isinstance(v.get("size"), int) for v in files.values())):
        raise _incomplete(out, f"{MANIFEST} is not a filtertopo manifest")
    return m


def verify_folder(out_dir, *, required=(), flag: str = "results folder"):
    """Check a results folder against its ``manifest.json``.

    Every file the manifest lists must be a regular file with the listed size and sha256, and
    every name in ``required`` that exists must be listed. Otherwise :class:`InputError`
    ("incomplete or mixed results folder"). A folder without a manifest (written before
    manifests existed) passes with a warning that it cannot be verified; None is returned.
    A folder another process is writing right now is refused.

    Returns
    -------
    dict or None
        The manifest.
    """
    out = Path(out_dir)
    holder = _lock_holder(out)
    if holder is not None:
        raise _locked(out, flag, holder)
    m = read_manifest(out)
    if m is None:
        warnings.warn(f"{str(out)!r} has no {MANIFEST} (written by an older filtertopo, or copied "
                      "without it), so it cannot be verified that its files come from one run. "
                      "Re-run the analysis to get a verifiable folder.", UserWarning, stacklevel=3)
        return None
    files = m["files"]
    for name in required:
        if name not in files and os.path.lexists(out / name):
            raise _incomplete(out, f"{name} is not listed in {MANIFEST} (run {m.get('run_id')})")
    for name, want in files.items():
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise _incomplete(out, f"{MANIFEST} lists a bad file name {name!r}")
        p = out / name
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise _incomplete(out, f"{name} is missing (listed in {MANIFEST} of run {m.get('run_id')})") \
                from None
        except OSError as e:
            raise InputError(f"cannot read {describe_oserror(e, p)}") from None
        if not stat.S_ISREG(st.st_mode):
            raise _incomplete(out, f"{name} is not a regular file")
        if st.st_size != want["size"]:
            raise _incomplete(out, f"{name} has {st.st_size} bytes, but {MANIFEST} of run "
                                   f"{m.get('run_id')} lists {want['size']}")
        try:
            sha, _ = _sha256(p)
        except OSError as e:
            raise InputError(f"cannot read {describe_oserror(e, p)}") from None
        if sha != want["sha256"]:
            raise _incomplete(out, f"{name} does not match its sha256 in {MANIFEST} of run "
                                   f"{m.get('run_id')}")
    return m
