"""``filtertopo patches IMAGE... --out DIR``: natural-image 3x3 patches through the pipeline."""

from __future__ import annotations

from . import add_analysis_options, analysis_config, check_out, print_table


def add_parser(sub):
    from ..patches import PATCH_DEFAULTS

    p = sub.add_parser(
        "patches", help="analyse high-contrast 3x3 patches of natural images (Carlsson et al. 2008)",
        description="Random 3x3 patches of log intensity, the top 20%% by D-norm contrast per image, "
                    "in DCT coordinates on S^7, then the dense core X(k, p) and persistent homology, "
                    "as one layer named 'patches'. IMAGE is a file (PNG, JPEG, PGM/PPM, TIFF) or a "
                    "bundled name (camera, astronaut, coffee, chelsea, ..., china, flower); "
                    "'natural' means all bundled photographs, 'nature' those without man-made objects. "
                    "Writes DIR/layers.csv, "
                    "DIR/analysis.json and DIR/points.npz.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or bundled image names")
    add_analysis_options(p, **PATCH_DEFAULTS)
    p.add_argument("--n-per-image", type=int, default=5000,
                   help="patches drawn per image before the contrast cut (default 5000)")
    p.add_argument("--top", type=float, default=0.2,
                   help="fraction of highest-contrast patches kept per image (default 0.2)")
    p.add_argument("--null-draws", type=int, default=None,
                   help="draws of uniform points on S^7 for the null margin (default 3; 0 skips)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..patches import analyze_patches

    check_out(args)
    result = analyze_patches(args.images, analysis_config(args), n_per_image=args.n_per_image, top=args.top)
    out = result.save(args.out, force=args.force)
    print_table(result)
    lay = result["patches"]
    if lay.shapes is not None:
        print(f"near the primary circle: {lay.shapes.frac_primary:.2f} of the core"
              + (f"; longest H1 / null max: {lay.null.h1_ratio_null_max:.2f}" if lay.null is not None else ""))
    print(f"wrote {out}/layers.csv, analysis.json, points.npz")
    return 0
