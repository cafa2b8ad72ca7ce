"""Topological priors: circle and Klein-bottle filter banks, and layers built on them.

The banks (:mod:`filtertopo.priors.banks`) and channel masks (:mod:`filtertopo.priors.masks`)
need only numpy; ``import filtertopo.priors`` never imports torch. The torch layers live in
:mod:`filtertopo.priors.layers` (``from filtertopo.priors.layers import CircleConv2d``), and
:func:`apply` puts a bank into a conv of any ``torch.nn.Module``; both import torch when used.
Sources: Carlsson & Gabrielsson, arXiv 1811.01122; Love, Filippenko, Maroulas & Carlsson,
JMLR 24 (2023). See ``docs/priors.md``.
"""

from ._apply import apply
from .banks import (BANKS, circle_bank, dct_bank, gabor_bank, klein_bank, klein_filter_values,
                    klein_grid, make_bank, random_orthonormal_bank, raw_pixel_filter, secondary_bank)
from .masks import (CIRCLE_MAX_DISTANCE, KLEIN_MAX_DISTANCE, channel_points, circle_distance,
                    connection_mask, klein_distance, shuffled_mask)
from ._apply import KOL_THRESHOLD, PRIOR_NAMES, RECIPES, check_prior_name, tiled_dct_bank

__all__ = [
    "apply", "BANKS", "make_bank", "circle_bank", "klein_bank", "secondary_bank", "gabor_bank",
    "dct_bank", "random_orthonormal_bank", "klein_grid", "klein_filter_values", "raw_pixel_filter",
    "connection_mask", "channel_points", "circle_distance", "klein_distance",
    "CIRCLE_MAX_DISTANCE", "KLEIN_MAX_DISTANCE", "shuffled_mask", "PRIOR_NAMES", "RECIPES",
    "KOL_THRESHOLD", "check_prior_name", "tiled_dct_bank",
]

_LAYERS = ("CircleConv2d", "KleinConv2d", "TopologicalMaskConv2d", "CircleOneLayer", "KleinOneLayer")


def __getattr__(name):
    # the torch layers, imported on first use so that this package stays torch-free
    if name in _LAYERS:
        from . import layers

        return getattr(layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
