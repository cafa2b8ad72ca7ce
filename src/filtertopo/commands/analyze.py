"""``filtertopo analyze PATH... --out DIR``: the per-layer table, diagrams and points."""

from __future__ import annotations

from . import add_analysis_options, analysis_config, check_out, print_table


def add_parser(sub):
    p = sub.add_parser("analyze", help="analyse the conv filters of one or more checkpoints",
                       description="Analyse every conv layer of the checkpoints; several checkpoints "
                                   "are pooled by layer name. Writes DIR/layers.csv, DIR/analysis.json "
                                   "and DIR/points.npz.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="checkpoint files (.npz, .safetensors, .pt/.pth/.ckpt, .onnx, .h5/.keras)")
    p.add_argument("--layers", default=None,
                   help="comma-separated layer names, globs (features.*) or 1-based depths (1,2)")
    add_analysis_options(p)
    p.add_argument("--clamp-k", action="store_true", default=None, help="use k = n-1 for layers with no more than k filters")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow code-running unpickling of trusted PyTorch checkpoints")
    p.add_argument("--null-draws", type=int, default=None,
                   help="matched Gaussian null draws per layer; adds the null margin columns (default 0: off)")
    p.add_argument("--null-init", metavar="PATH", default=None,
                   help="the network at initialisation, as a second null (needs --null-draws >= 1)")
    p.add_argument("--no-circular", dest="circular", action="store_false", default=None,
                   help="skip circular coordinates of looped layers")
    p.add_argument("--jobs", type=int, default=-1,
                   help="layers analysed in parallel processes (default -1: every core)")
    p.add_argument("--report", action="store_true", help="also write DIR/report.html (turns on --scales)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..pipeline import analyze

    check_out(args)
    cfg = analysis_config(args)
    if args.report and not cfg.scales:
        cfg = cfg.replace(scales=True)  # the report shows the scales figure
    result = analyze(args.paths, cfg, layers=args.layers, allow_pickle=args.allow_pickle, n_jobs=args.jobs,
                     null_init=args.null_init, progress=args.progress)
    out = result.save(args.out, force=args.force)
    if getattr(args, "report", False):
        from ..report.html import write_report

        write_report(result, out / "report.html")
    print_table(result)
    print(f"wrote {out}/layers.csv, analysis.json, points.npz" + (", report.html" if args.report else ""))
    return 0
