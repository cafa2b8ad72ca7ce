"""``filtertopo describe PATH``: the layers of a checkpoint and what would be skipped."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("describe", help="list the conv layers of a checkpoint and what is skipped")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow code-running unpickling of trusted PyTorch checkpoints")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..weights import load_kernels

    b = load_kernels(args.path, allow_pickle=args.allow_pickle)
    print(f"{b.source} ({b.format}): {len(b.kernels)} conv layers, {len(b.skipped)} tensors skipped")
    rows = b.describe()
    w = max([len(r[0]) for r in rows] + [5])
    print(f"{'name':<{w}}  {'shape':<20} {'filters':>9}  status")
    for name, shape, n, status in rows:
        print(f"{name:<{w}}  {'x'.join(map(str, shape)) or 'scalar':<20} {n:>9}  {status}")
    return 0
