"""``filtertopo track RUN... --out DIR``: topology of every snapshot, runs pooled by step.

Tracking (:mod:`filtertopo.tracking`, no torch) and its figures
(:mod:`filtertopo.report.track_figures`) meet here: the result is saved, then drawn.
"""

from __future__ import annotations

from . import add_analysis_options, analysis_config


def add_parser(sub):
    p = sub.add_parser(
        "track", help="analyse the snapshots of training runs, pooled by step",
        description="Analyse every snapshot of the run folders (written by `filtertopo train "
                    "--snapshot-every N`), pooling runs by step as the paper pools networks. "
                    "A folder holding seed_* runs (train --seeds) stands for all of them. "
                    "Writes DIR/track.csv, track.json, track_h1.png and steps/step_<n>/; "
                    "with --report also DIR/report.html.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    p.add_argument("--layers", default=None, help="layer selector, e.g. conv1 or 1 (default all)")
    p.add_argument("--steps", default=None, help="comma-separated steps (default all)")
    p.add_argument("--mapper-steps", default="",
                   help="comma-separated steps at which to draw Mapper graphs of the core")
    from ..tracking import TRACK_DEFAULTS

    add_analysis_options(p, **TRACK_DEFAULTS)
    p.add_argument("--null-draws", type=int, default=None,
                   help="matched Gaussian null draws per layer and step; adds the null margin "
                        "columns and curve (default 0: off)")
    p.add_argument("--report", action="store_true",
                   help="also write DIR/report.html: table, curves, and the first, last and "
                        "--mapper-steps steps analysed layer by layer")
    p.set_defaults(func=run)


def expand_runs(paths):
    """Run folders, with a parent of ``seed_*`` runs replaced by its runs."""
    from pathlib import Path

    out = []
    for p in map(Path, paths):
        kids = sorted(d for d in p.glob("*") if d.is_dir() and (d / "snapshots").is_dir())
        if p.is_dir() and not (p / "snapshots").is_dir() and not (p / "config.json").exists() \
                and kids:
            out += kids
        else:
            out.append(p)
    return out


def run(args) -> int:
    from pathlib import Path

    import pandas as pd

    from ..errors import InputError
    from ..report.track_figures import save_track_figures
    from ..tracking import track

    def ints(flag, text):
        try:
            return [int(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise InputError(f"{flag} must be comma-separated integers; got {text!r}.") from None

    steps = ints("--steps", args.steps) if args.steps else None
    mapper_steps = ints("--mapper-steps", args.mapper_steps)
    report = Path(args.out) / "report.html"
    if args.report and report.exists() and not args.force:
        # before any work: tracking can take minutes
        raise InputError(f"--out {args.out!r} already holds report.html; choose another "
                         "folder or pass --force to overwrite it.")
    res = track(expand_runs(args.runs), analysis_config(args), layers=args.layers, steps=steps,
                mapper_steps=mapper_steps, progress=args.progress, out=args.out, force=args.force)
    save_track_figures(res, args.out, force=args.force)  # saving the result draws nothing
    if args.report:
        from ..report.track_html import write_track_report

        write_track_report(res, report, force=args.force)
    cols = [c for c in ("step", "epoch", "n_runs", "test_acc", "layer", "n_filters", "n_core",
                        "k", "h1_1", "h1_2", "h1_gap_ratio", "frac_primary", "null_h1_max",
                        "h1_ratio_null_max", "h1_margin_z", "verdict") if c in res.table
            and not res.table[c].isna().all()]
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(res.table[cols].to_string(index=False))
    for m in res.missing:
        print(f"note: {m}")
    print(f"wrote {args.out}/track.csv, track.json, track_h1.png"
          + (", report.html" if args.report else ""))
    return 0
