"""Command-line interface: thin verbs over the Python API.

Each verb lives in ``filtertopo.commands.<verb>`` with ``add_parser(subparsers)``
and ``run(args) -> int``. Errors the user can fix (:class:`InputError`) are
printed as one ``error:`` line with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from .errors import FiltertopoError

__all__ = ["main"]

_VERBS = ["analyze", "compare", "describe", "demo", "patches", "report", "study", "sweep", "train", "track"]


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

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
           "PIL": "images", "distributed": "dask", "dask": "dask",
           "persim": "study", "weightwatcher": None, "torchvision": None, "tensorboard": None}


def _showwarning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


#: Memory advice by option (argparse dest): shown only for the verbs that have the option.
_MEMORY_ADVICE = [
    ("max_points", "lower --max-points"),
    ("n_landmarks", "lower --n-landmarks"),
    ("maxdim", "keep --maxdim at 1"),
    ("layers", "analyse fewer layers (--layers)"),
    ("mapper_max_points", "lower --mapper-max-points"),
    ("n_per_image", "take fewer patches per image (--n-per-image)"),
    ("batch_size", "lower --batch-size"),
    ("workers", "run fewer workers (--workers)"),
    ("n_nets", "pool fewer networks (--n-nets)"),
    ("jobs", "run fewer parallel jobs (--jobs)"),
]


def _memory_message(args) -> str:
    verb = getattr(args, "verb", None) or "?"
    advice = [text for dest, text in _MEMORY_ADVICE if hasattr(args, dest)]
    if verb == "describe":
        advice = ["the checkpoint may declare tensors larger than the memory; check that it is the "
                  "file you meant"]
    elif verb == "report":
        advice.append("or re-run the analysis with a smaller --max-points")
    tip = "; ".join(advice) if advice else "free memory or run it on a larger machine"
    return f"error: out of memory while running `filtertopo {verb}`; {tip}."


def _reconfigure_streams():
    """Never fail on a character the terminal's encoding lacks (e.g. PYTHONIOENCODING=latin-1)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError, TypeError):
            pass


def _stdout_closed() -> int:
    """stdout was closed early (``... | head -1``): stop quietly, like other Unix tools."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a command ended by a closed pipe


def _err(text: str):
    try:
        print(text, file=sys.stderr)
    except (OSError, ValueError):
        pass


def main(argv=None) -> int:
    _reconfigure_streams()
    args = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        warnings.showwarning = _showwarning
        if hasattr(args, "_analysis_base"):  # settings resolved (and --out checked) before any work
            from .commands import resolve_analysis_args

            if resolve_analysis_args(args):
                return 0
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return rc
    except BrokenPipeError:
        return _stdout_closed()
    except FiltertopoError as e:
        # one line, always: a message may quote a library's multi-line text (e.g. imageio's hints)
        _err("error: " + " ".join(part.strip() for part in str(e).splitlines() if part.strip()))
        return 2
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in _EXTRAS:
            raise
        extra = _EXTRAS[top]
        fix = f"pip install 'filtertopo[{extra}]'" if extra else f"pip install {top}"
        _err(f"error: this command needs the optional package {top!r}, which is not installed. "
             f"Install it: {fix}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except MemoryError:
        _err(_memory_message(args))
        return 1
    except OSError as e:  # disk full, permission, a path the system refuses: one line, no traceback
        from ._io import describe_oserror

        _err(f"error: {describe_oserror(e)}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
