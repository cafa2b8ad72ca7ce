"""Deprecated: tracking moved to :mod:`filtertopo.tracking` (no torch), its figures to
:mod:`filtertopo.report.track_figures`. This module re-exports the tracking names for one
release and warns on import.

The figure functions (``plot_track``, ``plot_track_panel``, ``track_panels``,
``TRACK_PANELS``) are not re-exported: ``filtertopo.training`` never imports
``filtertopo.report``. Asking for one here raises an ImportError naming its new place
(an ImportError, not an AttributeError, so ``from ... import plot_track`` shows it).
"""

from __future__ import annotations

import inspect
import sys
import types
import warnings

from ..tracking import TRACK_FILES, TrackResult, check_track_out, track

__all__ = ["track", "TrackResult", "check_track_out", "TRACK_FILES"]

warnings.warn("filtertopo.training.track is deprecated: import track and TrackResult from "
              "filtertopo.tracking, and plot_track from filtertopo.report.track_figures.",
              DeprecationWarning, stacklevel=2)

_MOVED_TO_REPORT = {"plot_track", "plot_track_panel", "track_panels", "TRACK_PANELS"}


def __getattr__(name):
    if name in _MOVED_TO_REPORT:
        raise ImportError(f"{name} moved to filtertopo.report.track_figures (tracking needs no "
                             f"figures, and filtertopo.training does not import report): "
                             f"from filtertopo.report.track_figures import {name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Importing this submodule makes Python bind it as ``filtertopo.training.track``,
    where the package had bound the function :func:`filtertopo.tracking.track`; calling
    the module still tracks, so ``from filtertopo.training import track; track(...)``
    keeps working whatever was imported before."""

    def __call__(self, *args, **kwargs):
        return track(*args, **kwargs)


__signature__ = inspect.signature(track)  # inspect.signature(the module) is track's
sys.modules[__name__].__class__ = _CallableModule
