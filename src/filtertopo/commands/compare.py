"""``filtertopo compare A B``: per shared layer, the bottleneck and Wasserstein distances between
the two networks' diagrams and their verdicts side by side (:func:`filtertopo.study.compare.compare`)."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("compare", help="distances between the diagrams of two networks, layer by layer",
                       description="Compare two networks: A and B are checkpoints, run folders (their "
                                   "kernels.npz is analysed) or analysis folders (analyze --out DIR). Prints, "
                                   "per shared layer, the H1 and H0 bottleneck and Wasserstein distances and "
                                   "both verdicts.")
    p.add_argument("a", metavar="A", help="checkpoint file, run folder or analysis folder")
    p.add_argument("b", metavar="B", help="checkpoint file, run folder or analysis folder")
    p.add_argument("--layers", default=None,
                   help="shared layers to compare: names, globs (features.*) or 1-based depths (1,2)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="TOML analysis settings for inputs that must be analysed (default: the defaults)")
    p.add_argument("--out", metavar="FILE.csv", default=None, help="also write the table as CSV")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from .._io import atomic_write, check_output_file
    from ..config import AnalysisConfig
    from ..study.compare import compare

    if args.out:
        check_output_file(args.out, force=args.force)  # before any analysis
    cfg = AnalysisConfig.from_toml(args.config) if args.config else None
    df = compare(args.a, args.b, layers=args.layers, config=cfg)
    with pd.option_context("display.width", 160, "display.max_columns", 12, "display.precision", 4):
        print(df[["layer", "h1_bottleneck", "h1_wasserstein", "h0_bottleneck", "h0_wasserstein",
                  "verdict_a", "verdict_b"]].to_string(index=False))
    for side in ("a", "b"):
        only = df.attrs.get(f"only_{side}") or []
        if only:
            print(f"only in {side.upper()}: {', '.join(only)}")
    if args.out:
        atomic_write(args.out, lambda p: df.to_csv(p, index=False))
        print(f"wrote {args.out}")
    return 0
