"""One exception hierarchy for filtertopo.

Every error a user can cause is an :class:`InputError`; its message names the
parameter, the rule, the value received and the fix (the scikit-learn habit).
The CLI prints these without a traceback and exits with status 2.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["FiltertopoError", "InputError", "check_range", "check_regular_file", "check_seed",
           "env_limit"]


class FiltertopoError(Exception):
    """Base class of every exception raised by filtertopo."""


class InputError(FiltertopoError, ValueError):
    """Bad input from the user: a file, a parameter, a selector.

    Parameters
    ----------
    message : str
        What is wrong, the value received, and how to fix it.
    """


def check_range(name, value, *, low=None, high=None, low_inclusive=True,
                high_inclusive=True, integer=False, fix=""):
    """Validate a scalar parameter and return it; raise InputError otherwise.

    Examples
    --------
    >>> check_range("p", 0.3, low=0, high=1, low_inclusive=False)
    0.3
    """
    import numbers

    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        want = "an integer" if integer else "a number"
        raise InputError(f"{name} must be {want}; got {value!r}. {fix}".strip())
    if value != value:  # NaN
        raise InputError(f"{name} must not be NaN. {fix}".strip())
    bad = False
    if low is not None:
        bad |= value < low if low_inclusive else value <= low
    if high is not None:
        bad |= value > high if high_inclusive else value >= high
    if bad:
        lo = "" if low is None else ("[" if low_inclusive else "(") + f"{low}"
        hi = "" if high is None else f"{high}" + ("]" if high_inclusive else ")")
        rule = f"in {lo or '(-inf'}, {hi or 'inf)'}"
        raise InputError(f"{name} must be {rule}; got {value!r}. {fix}".strip())
    return value


def check_regular_file(path, param, *, fix=""):
    """Return ``path`` if it names a readable regular file; raise InputError otherwise.

    Refused, each with its own message: a missing path (or a broken symbolic link), a
    folder, a FIFO / device / socket (reading those can block forever), a file without
    read permission, a name or path too long for the file system (ENAMETOOLONG), and a
    symbolic-link loop. Nothing is opened, so a FIFO cannot make the caller hang.

    Parameters
    ----------
    path : str or path-like
    param : str
        What the path is, for the message, e.g. ``"checkpoint"`` or ``"image"``.
    fix : str, optional
        Appended to the message.

    Examples
    --------
    >>> check_regular_file("/nonexistent/x.npz", "checkpoint")
    Traceback (most recent call last):
    ...
    filtertopo.errors.InputError: checkpoint '/nonexistent/x.npz' does not exist. Check the path.
    """
    spec = os.fspath(path)
    shown = repr(str(spec)) if len(str(spec)) <= 200 else repr(str(spec)[:100] + "..." + str(spec)[-40:])
    tail = f" {fix}" if fix else ""
    try:
        st = os.stat(spec)
    except ValueError as e:  # an embedded NUL byte
        raise InputError(f"{param} {shown} is not a valid path ({e}). Check the path.{tail}") from None
    except FileNotFoundError:
        try:
            os.lstat(spec)
        except OSError:
            raise InputError(f"{param} {shown} does not exist. Check the path.{tail}") from None
        raise InputError(f"{param} {shown} is a broken symbolic link (its target does not exist). "
                         f"Point it at the file or pass the file itself.{tail}") from None
    except NotADirectoryError:
        raise InputError(f"{param} {shown} does not exist: a part of the path before the file name is "
                         f"not a folder. Check the path.{tail}") from None
    except PermissionError:
        raise InputError(f"{param} {shown} cannot be reached: permission denied on a folder of the path. "
                         f"Fix the folder's permissions (chmod +x) or copy the file somewhere readable.{tail}") from None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            longest = max((len(os.fsencode(c)) for c in str(spec).split(os.sep)), default=0)
            raise InputError(f"{param} path is too long for the file system ({len(os.fsencode(spec))} bytes, "
                             f"longest name {longest} bytes; the usual limits are 255 bytes per name and "
                             f"4096 per path): {shown}. Use a shorter name.{tail}") from None
        if e.errno == errno.ELOOP:
            raise InputError(f"{param} {shown} is a loop of symbolic links. Pass the file itself.{tail}") from None
        raise InputError(f"{param} {shown} cannot be accessed ({e.strerror or e}). Check the path.{tail}") from None
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise InputError(f"{param} {shown} is a folder; pass a file.{tail}")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
                else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise InputError(f"{param} {shown} is {kind}, not a regular file; reading it could block forever. "
                         f"Write the data to a regular file and pass that.{tail}")
    if not os.access(spec, os.R_OK):
        raise InputError(f"{param} {shown} is not readable: permission denied. Fix its permissions "
                         f"(chmod u+r) or run as a user who may read it.{tail}")
    return path


#: The largest seed accepted: numpy takes any non-negative integer, torch at most 2**64 - 1.
MAX_SEED = 2**64 - 1


def check_seed(name, value, *, allow_generator=True, allow_none=False, fix=""):
    """Validate a random seed (an integer in [0, 2**64 - 1]) and return it.

    ``numpy.random.default_rng(-1)`` and ``torch.manual_seed(2**70)`` raise
    ValueError / RuntimeError; this says which parameter is wrong instead.

    Parameters
    ----------
    name : str
        Parameter name for the message, e.g. ``"seed (--seed)"``.
    allow_generator : bool, default=True
        Pass a ``numpy.random.Generator`` through unchanged.
    allow_none : bool, default=False

    Examples
    --------
    >>> check_seed("seed", 3)
    3
    """
    import numbers

    import numpy as np

    if value is None and allow_none:
        return value
    if allow_generator and isinstance(value, np.random.Generator):
        return value
    tail = f" {fix}" if fix else " Use e.g. 0."
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer in [0, 2**64 - 1]; got {value!r}.{tail}")
    if not 0 <= int(value) <= MAX_SEED:
        raise InputError(f"{name} must be an integer in [0, 2**64 - 1]; got {value!r}.{tail}")
    return value


def env_limit(var, default):
    """An integer limit: ``default``, or the positive integer in environment variable ``var``.

    Read at call time, so a test or a user can change it without re-importing.

    Examples
    --------
    >>> env_limit("FILTERTOPO_NO_SUCH_LIMIT", 5)
    5
    """
    raw = os.environ.get(var)
    if raw is None or raw.strip() == "":
        return int(default)
    v = None
    try:
        v = int(raw)
    except ValueError:
        try:
            f = float(raw)  # accept 2e9 and the like
        except ValueError:
            f = float("nan")
        if f == f and abs(f) != float("inf") and f == int(f):
            v = int(f)
    if v is None or v < 1:
        raise InputError(f"environment variable {var} must be a positive integer (a limit); got {raw!r}. "
                         f"Unset it to use the default ({default}).")
    return v
