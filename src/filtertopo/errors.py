"""One exception hierarchy for filtertopo.

Every error a user can cause is an :class:`InputError`; its message names the
parameter, the rule, the value received and the fix (the scikit-learn habit).
The CLI prints these without a traceback and exits with status 2.
"""

from __future__ import annotations

__all__ = ["FiltertopoError", "InputError", "check_range"]


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
