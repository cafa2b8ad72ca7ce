"""CLI verbs, one module each: ``add_parser(subparsers)`` and ``run(args) -> int``."""


def k_arg(text):
    """--k: 'auto' or an integer (checked by the pipeline, so the message names the rule)."""
    text = str(text).strip()
    if text.lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1; got {text!r}") from None


def add_analysis_options(p, *, k="auto", p_default=0.3):
    """Options shared by every verb that runs the pipeline."""
    p.add_argument("--k", type=k_arg, default=k,
                   help=f"neighbour for the density estimate: 'auto' (from the layer size) or an integer "
                        f"(default {k})")
    p.add_argument("--scales", action="store_true",
                   help="also run every layer over a 3x3 grid of (k, p) and report the majority verdict "
                        "and its support")
    p.add_argument("--p", type=float, default=p_default,
                   help=f"fraction of densest filters kept (default {p_default})")
    p.add_argument("--seed", type=int, default=0, help="seed for subsampling and landmarks (default 0)")
    p.add_argument("--maxdim", type=int, default=1, help="highest homology dimension (default 1)")
    p.add_argument("--coeff", default="2", help="prime field(s), e.g. 2 or 2,3 (default 2)")
    p.add_argument("--n-landmarks", type=int, default=500, help="landmarks for homology (default 500)")
    p.add_argument("--max-points", type=int, default=10000,
                   help="subsample layers with more filters (default 10000)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite results already in --out")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show progress bars (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def check_out(args):
    """Refuse early (before any work) when --out already holds results."""
    from ..result import check_output_dir

    check_output_dir(args.out, force=args.force)


def print_table(result):
    import pandas as pd

    df = result.to_frame()
    cols = [c for c in ["layer", "shape", "n_filters", "n_used", "n_core", "k", "p", "h1_1", "h1_2",
                        "h1_gap_ratio", "verdict", "scale_verdict", "scale_support", "frac_primary",
                        "h1_ratio_null_max"] if c in df.columns]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3):
        print(df[cols].to_string(index=False))
