"""filtertopo: the topology of what convolutional layers learn.

Every k x k spatial filter of a conv layer is a point; normalised, reduced to
its densest part, its shape is read with persistent homology and Mapper
(Gabrielsson & Carlsson, "Exposition and Interpretation of the Topology of
Neural Networks", 2019). ``import filtertopo`` never imports torch.
"""

from .errors import FiltertopoError, InputError
from .pipeline import DEFAULTS, analyze, analyze_points
from .result import AnalysisResult, LayerResult
from .weights import KernelBundle, load_kernels, save_kernels

from ._version import __version__

__all__ = [
    "analyze",
    "analyze_points",
    "AnalysisResult",
    "LayerResult",
    "KernelBundle",
    "load_kernels",
    "save_kernels",
    "FiltertopoError",
    "InputError",
    "DEFAULTS",
    "__version__",
]
