"""Reports of analysis results: matplotlib figures and one self-contained HTML file.

Pure functions of results (STYLE.md habit 14): nothing here shows, saves or restyles
behind the caller's back, and the HTML makes no network request.
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
from .track_html import write_track_report

__all__ = [
    "FILTER_CMAP", "CIRCLE_CMAP", "plot_barcode", "plot_diagram", "plot_filter",
    "plot_core_projection", "plot_gallery", "gallery_order", "plot_circle", "plot_mapper",
    "plot_overview", "plot_scales", "write_report", "result_table_html", "write_track_report",
]
