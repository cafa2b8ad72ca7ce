"""``filtertopo report DIR``: write DIR/report.html from a saved analysis (``analyze --out DIR``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("report", help="write a self-contained report.html from an analysis folder")
    p.add_argument("dir", metavar="DIR", help="folder written by 'filtertopo analyze --out DIR'")
    p.add_argument("--out", metavar="FILE", default=None, help="output file (default DIR/report.html)")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")
    p.add_argument("--mapper-max-points", type=int, default=3000,
                   help="subsample larger cores for Mapper (default 3000)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .._io import check_output_file, output_lock
    from ..errors import check_range
    from ..report.html import write_report
    from ..result import AnalysisResult

    check_range("--mapper-max-points", args.mapper_max_points, low=1, integer=True,
                fix="Give the largest core size drawn by Mapper, e.g. --mapper-max-points 3000.")
    if not os.path.isdir(args.dir):
        AnalysisResult.load(args.dir)  # says what is wrong with DIR
    out = Path(args.out) if args.out else Path(args.dir) / "report.html"
    flag = "--out" if args.out else "report"
    check_output_file(out, force=args.force, flag=flag)  # before the (slow) rendering
    # writing into the results folder: hold its lock, so that no `analyze --force` replaces the
    # results between reading them and writing their report
    inside = _same_folder(out.parent, Path(args.dir))
    with output_lock(args.dir, flag="DIR") if inside else contextlib.nullcontext():
        result = AnalysisResult.load(args.dir)  # verifies the folder's manifest
        write_report(result, out, mapper_max_points=args.mapper_max_points)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
