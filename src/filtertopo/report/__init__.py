"""Reports of analysis results: matplotlib figures and one self-contained HTML file.

Pure functions of results (STYLE.md habit 14): nothing here shows, saves or restyles
behind the caller's back, and the HTML makes no network request. Tracking results
(:mod:`filtertopo.tracking`) are drawn by :mod:`~filtertopo.report.track_figures`; this
package never imports :mod:`filtertopo.training` (tests/test_imports.py).
"""

from .circle import gallery_order, plot_circle
from .figures import (
    CIRCLE_CMAP,
    FILTER_CMAP,
    plot_barcode,
    plot_core_projection,
    plot_diagram,
    plot_filter,
    plot_gallery,
    plot_mapper,
    plot_overview,
    plot_scales,
)
from .html import result_table_html, write_report
from .track_figures import plot_track, plot_track_panel, save_track_figures, track_panels
from .track_html import write_track_report

__all__ = [
    "FILTER_CMAP", "CIRCLE_CMAP", "plot_barcode", "plot_diagram", "plot_filter",
    "plot_core_projection", "plot_gallery", "gallery_order", "plot_circle", "plot_mapper",
    "plot_overview", "plot_scales", "write_report", "result_table_html", "write_track_report",
    "plot_track", "plot_track_panel", "track_panels", "save_track_figures",
]
