"""Drop-in priors: put a filter bank into a named conv of any ``torch.nn.Module``."""

from __future__ import annotations

import inspect
import math

import numpy as np

from ..errors import InputError
from .banks import BANKS, check_bank_name, make_bank

__all__ = ["apply"]

_COUNTED = ("circle", "secondary", "gabor", "random_orthonormal", "dct")


def _most_square(n):
    a = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return a, n // a


def _klein_fix(target, n1, n2, raw):
    """'use n1=.., n2=..' for ``target`` filters, keeping a given n1 or n2 when it divides."""
    tail = " with raw_pixel=True" if raw else ""
    if target < 1:
        return "no Klein grid fits"
    if n1 is not None and target % n1 == 0:
        return f"use n1={n1}, n2={target // n1}{tail}"
    if n2 is not None and target % n2 == 0:
        return f"use n1={target // n2}, n2={n2}{tail}"
    a, b = _most_square(target)
    if a == 1:
        return (f"{target} is prime, so the only grid is n1=1, n2={target} (one orientation); "
                f"change the layer's width to a product such as {target - 1 if target > 2 else 4}"
                f" or {target + 1}")
    return f"use n1={a}, n2={b}{tail}" if a != b else f"use n1=n2={a}{tail}"


def _layer_text(name, conv):
    g = conv.groups
    txt = f"{name} has {conv.out_channels} output channels"
    return txt + (f" in {g} groups ({conv.out_channels // g} per group)" if g > 1 else "")


def _bank_for(prior, conv, name, k, bank_kw):
    """The bank for ``conv``, sized from it when the user gives no size; InputError if it cannot fit."""
    per_group = conv.out_channels // conv.groups
    kw = dict(bank_kw)
    raw = bool(kw.get("raw_pixel", False))
    target = per_group - raw
    where = _layer_text(name, conv)
    if prior == "klein":
        n1, n2 = kw.pop("n1", None), kw.pop("n2", None)
        if n1 is None and n2 is None:
            r = math.isqrt(max(target, 0))
            if target < 1 or r * r != target:
                raise InputError(f"{where}; prior 'klein' needs the grid n1 x n2 of its "
                                 f"{target} filters{' (+1 raw pixel)' if raw else ''}: "
                                 f"{_klein_fix(target, None, None, raw)}.")
            n1 = n2 = r
        elif n1 is None or n2 is None:
            g = n1 if n2 is None else n2
            if target < 1 or not isinstance(g, int) or g < 1 or target % g:
                raise InputError(f"{where}; klein with only {'n1' if n2 is None else 'n2'}={g!r} does not "
                                 f"fit: {_klein_fix(target, n1, n2, raw)}.")
            n1, n2 = (g, target // g) if n2 is None else (target // g, g)
        size = (n1 * n2 if isinstance(n1, int) and isinstance(n2, int) else None)
        if size is not None and size + raw != per_group:
            grid = f"n1=n2={n1}" if n1 == n2 else f"n1={n1}, n2={n2}"
            raise InputError(f"{where}; klein with {grid}{' and raw_pixel=True' if raw else ''} gives "
                             f"{size + raw}: {_klein_fix(target, n1, n2, raw)}.")
        kw.update(n1=n1, n2=n2)
        n = None
    else:
        n = kw.pop("n", None)
        if prior == "dct":
            top = k * k - 1
            if n is None and target > top:
                raise InputError(f"{where}; the dct bank of {k}x{k} filters has at most {top} filters"
                                 f"{' (+1 raw pixel)' if raw else ''}, so it cannot fill them: use a conv "
                                 f"with {top + raw} output channels per group, or 'random_orthonormal' / "
                                 f"'gabor' for {per_group}.")
        if n is None:
            n = target
        if isinstance(n, int) and not isinstance(n, bool) and n + raw != per_group:
            fix = f"use n={target}" + (" with raw_pixel=True" if raw else "") if target >= 1 else \
                "use raw_pixel=False"
            raise InputError(f"{where}; {prior} with n={n}{' and raw_pixel=True' if raw else ''} gives "
                             f"{n + raw}: {fix}.")
        if target < 1:
            raise InputError(f"{where}; with raw_pixel=True no filter is left for the {prior} bank: "
                             "use raw_pixel=False.")
    try:
        return make_bank(prior, n, k, **kw)
    except TypeError as e:
        accepted = [p for p in inspect.signature(BANKS[prior]).parameters if p not in ("k", "n", "n1", "n2")]
        raise InputError(f"unknown option for prior {prior!r} ({e}); it accepts {accepted} "
                         f"(the size comes from the layer).") from None


def _convs(model):
    from torch import nn

    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def apply(model, prior, *, layer: str, mode: str = "fixed", **bank_kw):
    """Replace (``fixed``) or initialise (``init``) the conv ``layer`` of ``model`` with a bank.

    Parameters
    ----------
    model : torch.nn.Module
        The user's own network, changed in place (and returned).
    prior : str or array-like of shape (n, k, k)
        A name of :data:`filtertopo.priors.BANKS` (``"circle"``, ``"klein"``, ...) or a bank.
    layer : str
        Module name of an ``nn.Conv2d`` (``model.named_modules()``), e.g. ``"conv1"`` or
        ``"features.0"``. Its kernel must be square and odd (3x3, 5x5, ...).
    mode : {"fixed", "init"}, default="fixed"
        ``"fixed"``: the conv is replaced by a :class:`~filtertopo.priors.layers.PriorConv2d`
        with the same in/out channels, stride, padding, dilation, groups, padding mode, device
        and dtype, whose weight is a buffer (never trained); its bias keeps the old values and
        stays trainable. ``"init"``: the bank is copied into the conv's weight, which stays a
        trainable Parameter.
    **bank_kw
        Options of the bank (``n``, ``n1``, ``n2``, ``raw_pixel``, ``variant``, ``form``,
        ``axis``, ``seed``, ...). Sizes left out are taken from the layer: each group of
        ``out_channels / groups`` outputs gets the whole bank (see
        :func:`~filtertopo.priors.layers.bank_weight`), so the bank size must equal that.

    Returns
    -------
    torch.nn.Module
        ``model``.

    Raises
    ------
    InputError
        Unknown prior, missing or non-conv layer (the message lists the conv layers), a kernel
        that is not odd and square, channel counts that do not fit the bank (the message says
        what would), a bad mode. The model is left unchanged when anything is raised.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential()
    >>> net.add_module("conv1", torch.nn.Conv2d(1, 16, 3))
    >>> apply(net, "klein", layer="conv1").conv1.mode
    'fixed'
    """
    import torch
    from torch import nn
    from torch.nn.utils import parametrize

    from .layers import PriorConv2d, _check_mode, bank_weight

    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    mode = _check_mode(mode)
    if isinstance(prior, str):
        prior = check_bank_name(prior)
    if not isinstance(layer, str):
        raise InputError(f"layer must be a module name (str), e.g. layer='conv1'; got {layer!r}. "
                         f"The conv layers of this model: {_convs(model)}.")
    modules = dict(model.named_modules())
    conv = modules.get(layer)
    if not isinstance(conv, nn.Conv2d):
        what = "does not exist" if conv is None else f"is a {type(conv).__name__}, not an nn.Conv2d"
        raise InputError(f"layer {layer!r} {what} in this {type(model).__name__}; the priors replace a 2-D "
                         f"convolution. The conv layers of this model: {_convs(model) or 'none'}.")
    kh, kw = conv.kernel_size
    if kh != kw or kh < 3 or kh % 2 == 0:
        raise InputError(f"{layer} has a {kh}x{kw} kernel; a prior bank needs an odd square kernel "
                         f"(3x3, 5x5, ...): edges and lines need a centre pixel. Choose another layer, "
                         f"or give it kernel_size=3.")
    if "k" in bank_kw:
        if bank_kw["k"] != kh:
            raise InputError(f"k={bank_kw['k']!r} does not match {layer}'s {kh}x{kw} kernel; leave k out "
                             f"(it is taken from the layer).")
        bank_kw = {key: v for key, v in bank_kw.items() if key != "k"}
    if isinstance(prior, str):
        bank = _bank_for(prior, conv, layer, kh, bank_kw)
        name = prior
    else:
        if bank_kw:
            raise InputError(f"options {sorted(bank_kw)} apply to a named prior, not to a bank array.")
        bank = np.asarray(prior, dtype=np.float32)
        if bank.ndim != 3 or bank.shape[1:] != (kh, kw):
            raise InputError(f"prior array must have shape (n, {kh}, {kw}) for {layer}; got {bank.shape}.")
        if len(bank) * conv.groups != conv.out_channels:
            raise InputError(f"{_layer_text(layer, conv)}; the bank has {len(bank)} filters: give "
                             f"{conv.out_channels // conv.groups} filters.")
        name = "bank"
    weight = bank_weight(bank, conv.in_channels, conv.groups)
    assert weight.shape == tuple(conv.weight.shape)  # by construction; not user input
    if mode == "init":
        if parametrize.is_parametrized(conv, "weight") or not isinstance(conv.weight, nn.Parameter):
            raise InputError(f"{layer}'s weight is not a plain trainable Parameter (it is parametrised, or "
                             f"a fixed prior); mode='init' writes into a plain weight. Use mode='fixed', "
                             f"or remove the parametrisation first.")
        with torch.no_grad():
            conv.weight.copy_(torch.as_tensor(weight, dtype=conv.weight.dtype))
        return model
    if layer == "":
        raise InputError("layer='' is the model itself; mode='fixed' replaces a submodule. Wrap the conv "
                         "in an nn.Sequential, or use mode='init'.")
    w = conv.weight
    new = PriorConv2d(conv.in_channels, bank, mode="fixed", groups=conv.groups, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None,
                      padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype, prior=name)
    if conv.bias is not None:
        with torch.no_grad():
            new.bias.copy_(conv.bias.detach())
    new.train(conv.training)
    parent_name, _, attr = layer.rpartition(".")
    setattr(modules[parent_name], attr, new)
    return model
