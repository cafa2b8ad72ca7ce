"""Command-line interface: thin verbs over the Python API.

Each verb lives in ``filtertopo.commands.<verb>`` with ``add_parser(subparsers)``
and ``run(args) -> int``. Errors the user can fix (:class:`InputError`) are
printed as one ``error:`` line with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .errors import FiltertopoError

__all__ = ["main"]

_VERBS = ["analyze", "describe", "demo", "patches", "report", "train", "track"]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="filtertopo",
        description="Topology of the spatial filters of convolutional layers "
                    "(Gabrielsson & Carlsson 2019).",
    )
    parser.add_argument("--version", action="version", version=f"filtertopo {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True
    for verb in _VERBS:
        try:
            mod = importlib.import_module(f"filtertopo.commands.{verb}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("filtertopo.commands"):
                continue  # verb not built yet
            raise
        mod.add_parser(sub)
    return parser


#: Optional dependencies and the extra that installs each.
_EXTRAS = {"torch": "torch", "mlxtend": "train", "onnx": "onnx", "h5py": "keras", "skimage": "images",
           "PIL": "images", "torchvision": None, "tensorboard": None}


def _showwarning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _showwarning
    try:
        return int(args.func(args) or 0)
    except FiltertopoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in _EXTRAS:
            raise
        extra = _EXTRAS[top]
        fix = f"pip install 'filtertopo[{extra}]'" if extra else f"pip install {top}"
        print(f"error: this command needs the optional package {top!r}, which is not installed. "
              f"Install it: {fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; lower --max-points or analyse fewer layers (--layers).", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
