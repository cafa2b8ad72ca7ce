"""Torch layers of topological priors: fixed or initialised filter banks, and masked convs.

* :class:`PriorConv2d` (and :class:`CircleConv2d`, :class:`KleinConv2d`): an ``nn.Conv2d``
  whose filters are a bank of :mod:`filtertopo.priors.banks` (CF / KF of Love et al., JMLR
  2023; the primary-circle layer of Carlsson & Gabrielsson, arXiv 1811.01122).
  ``mode="fixed"``: the weight is a registered buffer, not a Parameter, so it is in the
  state_dict but never in ``model.parameters()``, never seen by an optimiser (no weight
  decay, no momentum) and unchanged by ``requires_grad_(True)``; the bias, if any, stays a
  trainable Parameter. ``mode="init"``: an ordinary Parameter initialised from the bank.
* :class:`TopologicalMaskConv2d` (and :class:`CircleOneLayer`, :class:`KleinOneLayer`): a
  trainable conv whose weight is multiplied by the 0/1 mask of
  :func:`filtertopo.priors.masks.connection_mask` (COL / KOL) through
  ``torch.nn.utils.parametrize``, so ``layer.weight`` is always the masked, effective weight
  (what :func:`filtertopo.weights.kernels_from_module` and the analysis read).

Input channels (``PriorConv2d(groups=...)``): each group of ``in_channels / groups`` inputs
gets the whole bank of n filters, so ``out_channels = groups * n``, and within a group the
filter of output o on every input slice is ``bank[o] / (in_channels / groups)``: the bank
applied to the *mean* of the group's input channels (for an RGB image and ``groups=1``, to
its grey level). ``channels="depthwise"`` in the named layers is ``groups=in_channels``
(every input channel gets its own copy of the bank). Output channel ``g * n + o`` is bank
filter o of group g.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import InputError
from .banks import circle_bank, klein_bank
from .masks import connection_mask, shuffled_mask

__all__ = ["PriorConv2d", "CircleConv2d", "KleinConv2d", "TopologicalMaskConv2d", "CircleOneLayer",
           "KleinOneLayer", "bank_weight", "MODES"]

MODES = ("fixed", "init")


def _check_mode(mode):
    if mode not in MODES:
        raise InputError(f"mode must be 'fixed' (the bank, never trained: a buffer) or 'init' (a trainable "
                         f"weight initialised from the bank); got {mode!r}.")
    return mode


def _positive(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise InputError(f"{name} must be a positive integer; got {v!r}.")
    return int(v)


def bank_weight(bank, in_channels: int, groups: int = 1) -> np.ndarray:
    """Conv weight (groups * n, in_channels / groups, k, k) that applies ``bank`` per group.

    Output ``g * n + o`` on each of its ``in_channels / groups`` input slices is
    ``bank[o] / (in_channels / groups)``.

    Examples
    --------
    >>> from filtertopo.priors import circle_bank
    >>> bank_weight(circle_bank(4), 3, groups=3).shape
    (12, 1, 3, 3)
    """
    bank = np.asarray(bank, dtype=np.float32)
    if bank.ndim != 3 or bank.shape[1] != bank.shape[2]:
        raise InputError(f"bank must have shape (n, k, k); got {bank.shape}.")
    in_channels, groups = _positive("in_channels", in_channels), _positive("groups", groups)
    if in_channels % groups:
        raise InputError(f"in_channels={in_channels} must be divisible by groups={groups}.")
    ipg = in_channels // groups
    return np.tile(bank[:, None] / ipg, (groups, ipg, 1, 1))


def _groups(channels, in_channels):
    if channels == "shared":
        return 1
    if channels == "depthwise":
        return in_channels
    raise InputError(f"channels must be 'shared' (the bank applied to the mean of the input channels) or "
                     f"'depthwise' (a copy of the bank per input channel); got {channels!r}.")


class PriorConv2d(nn.Conv2d):
    """A conv whose filters are a given bank: fixed (a buffer) or initialised from it.

    Parameters
    ----------
    in_channels : int
    bank : array-like of shape (n, k, k)
        Filters, e.g. from :func:`filtertopo.priors.make_bank`.
    mode : {"fixed", "init"}, default="fixed"
    groups : int, default=1
        ``out_channels = groups * n`` (module docstring).
    stride, padding, dilation, bias, padding_mode, device, dtype
        As ``nn.Conv2d``; ``padding=None`` is k // 2 ('same' at stride 1).
    prior : str, default="bank"
        A name for the repr.

    Attributes
    ----------
    bank : ndarray of shape (n, k, k)
        A copy of the bank (not state: ``reset_parameters`` restores it).
    mode : str
    """

    def __init__(self, in_channels: int, bank, *, mode: str = "fixed", groups: int = 1, stride=1,
                 padding=None, dilation=1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, prior: str = "bank"):
        mode = _check_mode(mode)
        weight = bank_weight(bank, in_channels, groups)
        k = weight.shape[-1]
        super().__init__(in_channels, weight.shape[0], k, stride=stride,
                         padding=k // 2 if padding is None else padding, dilation=dilation,
                         groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype)
        self.mode, self.prior = mode, prior
        self.bank = np.array(bank, dtype=np.float32)
        self._bank_weight = weight
        w = torch.as_tensor(weight, dtype=self.weight.dtype, device=self.weight.device)
        if mode == "fixed":
            del self.weight  # the Parameter made by nn.Conv2d: a fixed bank is state, not a parameter
            self.register_buffer("weight", w.clone())
        else:
            with torch.no_grad():
                self.weight.copy_(w)

    def reset_parameters(self) -> None:
        w = getattr(self, "_bank_weight", None)
        if w is None:  # nn.Conv2d.__init__, before the bank is set
            return super().reset_parameters()
        with torch.no_grad():
            self.weight.copy_(torch.as_tensor(w))
            if self.bias is not None:
                bound = 1 / math.sqrt(self.weight[0].numel())
                nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, prior={self.prior!r}, mode={self.mode!r}"


class CircleConv2d(PriorConv2d):
    """Primary-circle filters at n equally spaced angles (CF; the "(mu16)" layer of 1811.01122).

    Parameters
    ----------
    in_channels : int
    n_angles : int
    kernel_size : int, default=3
    mode : {"fixed", "init"}, default="fixed"
    raw_pixel : bool, default=False
        Add the raw-pixel filter ("(mu16)+"): n_angles + 1 filters.
    form : {"pixel", "sampled"}, default="pixel"
    channels : {"shared", "depthwise"}, default="shared"
        ``out_channels`` is the bank size, or ``in_channels`` times it (module docstring).
    stride, padding, bias, ...
        As :class:`PriorConv2d`.

    Examples
    --------
    >>> layer = CircleConv2d(1, 16, raw_pixel=True)
    >>> layer.out_channels, isinstance(layer.weight, nn.Parameter), len(list(layer.parameters()))
    (17, False, 1)
    """

    def __init__(self, in_channels: int, n_angles: int, kernel_size: int = 3, *, mode: str = "fixed",
                 raw_pixel: bool = False, form: str = "pixel", channels: str = "shared", **conv_kw):
        in_channels = _positive("in_channels", in_channels)
        bank = circle_bank(n_angles, kernel_size, form=form, raw_pixel=raw_pixel)
        super().__init__(in_channels, bank, mode=mode, groups=_groups(channels, in_channels),
                         prior="circle", **conv_kw)


class KleinConv2d(PriorConv2d):
    """Klein-bottle filters on an n1 x n2 grid of (theta1, theta2) (KF of Love et al. 2023).

    Parameters
    ----------
    in_channels : int
    n1, n2 : int
        Grid along theta1 in [0, pi) and theta2 in [0, 2 pi): n1 * n2 filters.
    kernel_size : int, default=3
    mode : {"fixed", "init"}, default="fixed"
    variant : {"published", "authors"}, default="published"
        See :func:`filtertopo.priors.klein_bank`.
    raw_pixel, form, channels, stride, padding, bias, ...
        As :class:`CircleConv2d`.

    Examples
    --------
    >>> KleinConv2d(3, 4, 4, channels="depthwise").weight.shape
    torch.Size([48, 1, 3, 3])
    """

    def __init__(self, in_channels: int, n1: int, n2: int, kernel_size: int = 3, *, mode: str = "fixed",
                 variant: str = "published", raw_pixel: bool = False, form: str = "pixel",
                 channels: str = "shared", **conv_kw):
        in_channels = _positive("in_channels", in_channels)
        bank = klein_bank(n1, n2, kernel_size, variant=variant, form=form, raw_pixel=raw_pixel)
        super().__init__(in_channels, bank, mode=mode, groups=_groups(channels, in_channels),
                         prior="klein", **conv_kw)


class _Mask(nn.Module):
    """weight -> weight * mask; the mask is a non-persistent buffer (rebuilt from the config)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, w):
        return w * self.mask

    def right_inverse(self, w):
        return w * self.mask


class TopologicalMaskConv2d(nn.Conv2d):
    """A conv whose connections are localised on the circle or the Klein bottle (COL / KOL).

    The weight is ``original * mask`` (``torch.nn.utils.parametrize``), so the forward pass
    and ``layer.weight`` are always masked, and masked entries get zero gradient. The masked
    entries of ``original`` are zeroed at construction and after every ``load_state_dict``
    (a post-hook), so they stay exactly zero under SGD with momentum and weight decay, Adam
    and AdamW. The mask is rebuilt from the arguments and is not in the state_dict: loading
    a state_dict cannot change it. (Pickling the whole module is not supported by parametrize;
    save its state_dict.)

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int, default=3
        Odd, >= 3.
    space : {"circle", "klein"}
    threshold : float
        Largest distance of two connected slices: arc length in (0, pi] on the circle,
        L2 distance of the Klein-bottle functions in (0, 2 sqrt(44/15)] on the Klein
        bottle (:mod:`filtertopo.priors.masks`).
    variant : {"channels", "spatial"}, default="channels"
        ``"channels"``: input slice k reaches output slice i only when their points are
        within ``threshold`` (the published definition). ``"spatial"``: the kernel taps of
        each output channel are masked instead (our reading of the authors' code).
    in_grid, out_grid : (int, int), optional
        Klein-bottle grids of the input / output channels (default: square).
    shuffle_seed : int, optional
        None (default): the COL / KOL mask. An integer: the control of equal sparsity instead,
        :func:`~filtertopo.priors.masks.shuffled_mask` of that mask with this seed (each
        output keeps as many inputs, chosen at random). Rebuilt from the arguments like the
        mask itself.
    stride, padding, dilation, bias, padding_mode, device, dtype
        As ``nn.Conv2d``; ``padding=None`` is k // 2.

    Attributes
    ----------
    mask : torch.Tensor of shape (out_channels, in_channels, k, k)

    Examples
    --------
    >>> col = TopologicalMaskConv2d(8, 8, space="circle", threshold=np.pi / 4)
    >>> bool((col.weight[0, 4] == 0).all()), int(col.mask[0, :, 0, 0].sum())
    (True, 3)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, space: str,
                 threshold: float, variant: str = "channels", in_grid=None, out_grid=None,
                 shuffle_seed=None, stride=1, padding=None, dilation=1, bias: bool = True,
                 padding_mode: str = "zeros", device=None, dtype=None):
        mask = connection_mask(space, out_channels, in_channels, kernel_size, threshold=threshold,
                               variant=variant, in_grid=in_grid, out_grid=out_grid)
        if shuffle_seed is not None:
            mask = shuffled_mask(mask, shuffle_seed)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2 if padding is None else padding, dilation=dilation,
                         bias=bias, padding_mode=padding_mode, device=device, dtype=dtype)
        self.space, self.threshold, self.variant = space, float(threshold), variant
        self.shuffle_seed = shuffle_seed
        m = torch.as_tensor(mask, dtype=self.weight.dtype, device=self.weight.device)
        with torch.no_grad():
            self.weight.mul_(m)
        parametrize.register_parametrization(self, "weight", _Mask(m))
        self.register_load_state_dict_post_hook(_rezero_masked)

    @property
    def mask(self) -> torch.Tensor:
        return self.parametrizations.weight[0].mask

    @property
    def density(self) -> float:
        """Fraction of the weight entries that are connected."""
        return float(self.mask.mean())

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, space={self.space!r}, threshold={self.threshold:.4g}, "
                f"variant={self.variant!r}, density={self.density:.3f}" +
                ("" if self.shuffle_seed is None else f", shuffled (seed {self.shuffle_seed})"))


def _rezero_masked(module, incompatible_keys):
    with torch.no_grad():
        module.parametrizations.weight.original.mul_(module.mask)


class CircleOneLayer(TopologicalMaskConv2d):
    """COL: :class:`TopologicalMaskConv2d` with ``space="circle"``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, threshold: float,
                 **kw):
        super().__init__(in_channels, out_channels, kernel_size, space="circle", threshold=threshold, **kw)


class KleinOneLayer(TopologicalMaskConv2d):
    """KOL: :class:`TopologicalMaskConv2d` with ``space="klein"``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, threshold: float,
                 **kw):
        super().__init__(in_channels, out_channels, kernel_size, space="klein", threshold=threshold, **kw)
