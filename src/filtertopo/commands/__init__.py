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


#: argparse dest -> AnalysisConfig setting, for every flag that sets one.
CONFIG_FLAGS = {"k": "k", "p": "p", "seed": "seed", "maxdim": "maxdim", "coeff": "coeff",
                "n_landmarks": "n_landmarks", "max_points": "max_points", "scales": "scales",
                "clamp_k": "clamp_k", "null_draws": "null_draws", "circular": "circular"}


def add_analysis_options(parser, **defaults):
    """Options shared by every verb that runs the pipeline, plus ``--config``/``--print-config``.

    ``defaults`` are the verb's settings where they differ from :class:`AnalysisConfig`'s
    (e.g. ``k=300`` for patches). Precedence: the verb's defaults, then ``--config FILE``,
    then the flags given. Flags default to None so that given ones can be told apart.
    """
    from ..config import AnalysisConfig

    d = AnalysisConfig(**defaults)
    parser.set_defaults(_analysis_base=dict(defaults))
    parser.add_argument("--config", dest="config", metavar="FILE", default=None,
                   help="TOML file of analysis settings (flags given override it); "
                        "write one with --print-config")
    parser.add_argument("--print-config", action="store_true",
                   help="print the resolved analysis settings as TOML and exit")
    parser.add_argument("--k", type=k_arg, default=None,
                   help=f"neighbour for the density estimate: 'auto' (from the layer size) or an integer "
                        f"(default {d.k})")
    parser.add_argument("--scales", action="store_true", default=None,
                   help="also run every layer over a 3x3 grid of (k, p) and report the majority verdict "
                        "and its support")
    parser.add_argument("--p", type=float, default=None, help=f"fraction of densest filters kept (default {d.p})")
    parser.add_argument("--seed", type=int, default=None, help=f"seed for subsampling and landmarks (default {d.seed})")
    parser.add_argument("--maxdim", type=int, default=None, help=f"highest homology dimension (default {d.maxdim})")
    parser.add_argument("--coeff", default=None,
                   help=f"prime field(s), e.g. 2 or 2,3 (default {','.join(map(str, d.coeff))})")
    parser.add_argument("--n-landmarks", type=int, default=None,
                   help=f"landmarks for homology (default {d.n_landmarks})")
    parser.add_argument("--max-points", type=int, default=None,
                   help=f"subsample layers with more filters (default {d.max_points})")
    parser.add_argument("--out", default=None, help="output folder (required)")
    parser.add_argument("--force", action="store_true", help="overwrite results already in --out")
    parser.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show progress bars (default: only on a terminal)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def analysis_config(args):
    """The :class:`AnalysisConfig` of a parsed command line (see :func:`add_analysis_options`)."""
    from ..config import AnalysisConfig

    cached = getattr(args, "_analysis_config", None)
    if cached is not None:
        return cached
    flags = {key: getattr(args, dest) for dest, key in CONFIG_FLAGS.items()
             if getattr(args, dest, None) is not None}
    base = dict(getattr(args, "_analysis_base", {}) or {})
    if getattr(args, "config", None):
        cfg = AnalysisConfig.from_toml(args.config, base=base, overrides=flags)
    else:
        cfg = AnalysisConfig.from_dict({**base, **flags})
    args._analysis_config = cfg
    return cfg


def resolve_analysis_args(args) -> bool:
    """Resolve the settings of a verb with analysis options, before any work.

    With ``--print-config``: print them as TOML and return True (the verb is not run).
    Otherwise check that ``--out`` was given and write the resolved values back into
    ``args`` (``args.k``, ``args.p``, ...) for the verb to use; return False.
    """
    from ..errors import InputError

    cfg = analysis_config(args)
    if getattr(args, "print_config", False):
        print(cfg.to_toml(), end="")
        return True
    if not getattr(args, "out", None):
        raise InputError("--out is required: the output folder, e.g. --out results.")
    for dest, key in CONFIG_FLAGS.items():
        if hasattr(args, dest):
            setattr(args, dest, getattr(cfg, key))
    return False


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
    # the table has every column; the terminal shows those with a value in some layer
    cols = [c for c in cols if not (df[c].isna().all() or (df[c].astype(str) == "").all())]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3):
        print(df[cols].to_string(index=False))
