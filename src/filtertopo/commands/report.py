"""``filtertopo report DIR``: write DIR/report.html from a saved analysis (``analyze --out DIR``)."""

from __future__ import annotations

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
    from ..errors import InputError
    from ..report.html import write_report
    from ..result import AnalysisResult

    out = Path(args.out) if args.out else Path(args.dir) / "report.html"
    if out.exists() and not args.force:
        raise InputError(f"{out} exists; pass --force to overwrite it or --out FILE to write elsewhere.")
    result = AnalysisResult.load(args.dir)
    write_report(result, out, mapper_max_points=args.mapper_max_points)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
