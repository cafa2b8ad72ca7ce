"""Drop-in priors: put a filter bank into a named conv of any ``torch.nn.Module``.

``apply`` takes a bank of :data:`~filtertopo.priors.BANKS` (one bank in one layer), a bank
array, or a recipe of :data:`RECIPES`; :data:`PRIOR_NAMES` is every name it accepts (and
``TrainConfig.prior``, ``filtertopo train --prior``). The recipes:

* ``"circle_raw"``: the circle bank plus the raw-pixel channel (``raw_pixel=True``), the
  "(mu16)+" layer of Carlsson & Gabrielsson (arXiv 1811.01122) when the layer has 17 outputs;
* ``"dct_tiled"``: the k*k - 1 DCT filters and their negatives, repeated in that order until
  the layer is full (a DCT control with the layer's own count: the plain ``"dct"`` bank holds
  at most k*k - 1 filters). As a fixed layer the repeats differ only by their biases;
* ``"klein_kol"``: the Klein bank in ``layer`` and a KOL (Love et al. 2023: the published
  channel-to-channel definition, :func:`~filtertopo.priors.masks.connection_mask`) in the
  next conv, whose weights are kept (masked): KF + KOL;
* ``"klein_randmask"``: the same, with the KOL mask replaced by a random mask of the same
  sparsity (:func:`~filtertopo.priors.masks.shuffled_mask`): the control of KF + KOL.

Importing this module needs no torch (``TrainConfig`` validates prior names with it);
``apply`` imports torch.
"""

from __future__ import annotations

import difflib
import inspect
import math

import numpy as np

from ..errors import InputError, check_range, check_seed
from .banks import BANKS, dct_bank, make_bank

__all__ = ["apply", "apply_recipe", "RECIPES", "PRIOR_NAMES", "KOL_THRESHOLD", "check_prior_name",
           "tiled_dct_bank"]

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
        A name of :data:`filtertopo.priors.PRIOR_NAMES`: a bank of :data:`filtertopo.priors.BANKS`
        (``"circle"``, ``"klein"``, ...) or a recipe of :data:`filtertopo.priors.RECIPES`
        (``"circle_raw"``, ``"dct_tiled"``, ``"klein_kol"``, ``"klein_randmask"``: see
        :func:`apply_recipe` for their options); or a bank array.
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
        ``model``. Nothing is drawn from torch's global RNG (so the weights of the other layers,
        and what a caller draws next, are those of the same model without the prior), except
        by ``"klein_randmask"`` without ``mask_seed``.

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
        prior = check_prior_name(prior)
        if prior in RECIPES:
            return apply_recipe(model, prior, layer=layer, mode=mode, **bank_kw)
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
    with torch.random.fork_rng(devices=[]):  # its weight is the bank, its bias the old one: no RNG
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


# --------------------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------------------

#: Threshold of the KOL of ``klein_kol`` / ``klein_randmask`` (L2 metric of the Klein-bottle
#: functions, :mod:`filtertopo.priors.masks`). Our choice, not the paper's (which we have not
#: recovered): from the 8 x 8 Klein grid of a 64-channel conv1 to the 4 x 8 grid of a
#: 32-channel conv2 it keeps 10.9% of the slice pairs, 5 to 9 inputs per output.
KOL_THRESHOLD = 1.2

#: Recipe name -> one line (see the module docstring).
RECIPES = {
    "circle_raw": "circle bank + the raw-pixel channel ('(mu16)+' of 1811.01122 at 17 outputs)",
    "dct_tiled": "the DCT filters and their negatives, repeated to fill the layer",
    "klein_kol": "Klein bank in the layer + a KOL (published definition) in the next conv",
    "klein_randmask": "Klein bank in the layer + a random mask of the KOL's sparsity in the next conv",
}

#: Every name ``apply`` (and ``TrainConfig.prior``, ``filtertopo train --prior``) accepts.
PRIOR_NAMES = tuple(BANKS) + tuple(RECIPES)


def check_prior_name(name) -> str:
    """Return ``name`` if it is in :data:`PRIOR_NAMES`; InputError with the close match otherwise.

    Examples
    --------
    >>> check_prior_name("klein_kol")
    'klein_kol'
    """
    if isinstance(name, str) and name in PRIOR_NAMES:
        return name
    close = difflib.get_close_matches(str(name).lower(), list(PRIOR_NAMES), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InputError(f"prior must be one of {list(PRIOR_NAMES)}; got {name!r}.{hint}")


def tiled_dct_bank(n: int, k: int = 3) -> np.ndarray:
    """``n`` filters: the k*k - 1 DCT filters of :func:`dct_bank`, then their negatives, repeated.

    Examples
    --------
    >>> b = tiled_dct_bank(20)
    >>> b.shape, bool(np.allclose(b[8], -b[0])), bool(np.allclose(b[16], b[0]))
    ((20, 3, 3), True, True)
    """
    check_range("n", n, low=1, integer=True, fix="the number of filters, e.g. 64.")
    d = dct_bank(k)
    signed = np.concatenate([d, -d])
    return np.ascontiguousarray(signed[np.arange(int(n)) % len(signed)], dtype=np.float32)


def _next_conv(model, layer):
    """The name and module of the first ``nn.Conv2d`` after ``layer`` in ``named_modules`` order."""
    from torch import nn

    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    after = names[names.index(layer) + 1:]
    return (after[0], dict(model.named_modules())[after[0]]) if after else (None, None)


def _klein_grid_of(conv, bank_kw):
    """(n1, n2) of the Klein bank ``apply`` puts into ``conv`` (already checked to fit)."""
    target = conv.out_channels // conv.groups
    n1, n2 = bank_kw.get("n1"), bank_kw.get("n2")
    if n1 is None and n2 is None:
        r = math.isqrt(target)
        return r, r
    if n1 is None:
        return target // n2, n2
    if n2 is None:
        return n1, target // n1
    return n1, n2


def apply_recipe(model, name, *, layer: str, mode: str = "fixed", **kw):
    """Apply the recipe ``name`` of :data:`RECIPES` (called by :func:`filtertopo.priors.apply`).

    Options: ``circle_raw`` and ``dct_tiled`` take the bank options of ``apply``
    (``dct_tiled`` none). ``klein_kol`` / ``klein_randmask`` take the Klein bank's options
    (``n1``, ``n2``, ``variant``, ``form``; not ``raw_pixel``) and ``threshold``
    (default :data:`KOL_THRESHOLD`), ``mask_variant`` (``"channels"``, the published
    definition, or ``"spatial"``), ``next_layer`` (default: the first conv after ``layer``
    in ``model.named_modules()`` order) and, for ``klein_randmask``, ``mask_seed`` (default:
    drawn from torch's global RNG, so that :func:`filtertopo.training.train` gives every
    seed its own mask, reproducibly). The next conv is replaced by a
    :class:`~filtertopo.priors.layers.TopologicalMaskConv2d` that keeps its weights (masked)
    and bias; the RNG is not otherwise used. The model is left unchanged when anything raises.
    """
    import torch
    from torch import nn
    from torch.nn.utils import parametrize

    from .layers import TopologicalMaskConv2d, _check_mode

    mode = _check_mode(mode)
    if name == "circle_raw":
        if "raw_pixel" in kw:
            raise InputError("circle_raw always has the raw-pixel channel; leave raw_pixel out, or use "
                             "prior 'circle' with raw_pixel=... .")
        return apply(model, "circle", layer=layer, mode=mode, raw_pixel=True, **kw)
    # the checks of apply (layer exists, is a conv, odd square kernel): on the layer itself
    modules = dict(model.named_modules()) if isinstance(model, nn.Module) else {}
    if not isinstance(layer, str) or not isinstance(modules.get(layer), nn.Conv2d):
        return apply(model, "klein", layer=layer, mode=mode)  # raises apply's error, model unchanged
    conv = modules[layer]
    if name == "dct_tiled":
        if kw:
            raise InputError(f"dct_tiled takes no options; got {sorted(kw)}.")
        kh, kwid = conv.kernel_size
        if kh != kwid or kh < 3 or kh % 2 == 0:
            return apply(model, "dct", layer=layer, mode=mode)  # apply's kernel error
        apply(model, tiled_dct_bank(conv.out_channels // conv.groups, kh), layer=layer, mode=mode)
        new = dict(model.named_modules())[layer]
        if hasattr(new, "prior"):
            new.prior = "dct_tiled"
        return model

    # klein_kol / klein_randmask
    threshold = kw.pop("threshold", KOL_THRESHOLD)
    mask_variant = kw.pop("mask_variant", "channels")
    next_layer = kw.pop("next_layer", None)
    mask_seed = kw.pop("mask_seed", None)
    if name == "klein_kol" and mask_seed is not None:
        raise InputError("mask_seed is an option of 'klein_randmask' (the random mask); 'klein_kol' "
                         "uses the KOL mask itself. Leave it out.")
    if kw.get("raw_pixel"):
        raise InputError(f"{name} cannot take raw_pixel=True: the raw-pixel channel has no point on the "
                         "Klein bottle, so the KOL cannot place it. Leave raw_pixel out.")
    kh, kwid = conv.kernel_size
    if kh != kwid or kh < 3 or kh % 2 == 0:
        return apply(model, "klein", layer=layer, mode=mode)  # apply's kernel error
    if conv.groups != 1:
        raise InputError(f"{name}: {layer} has groups={conv.groups}; the KOL after it needs one Klein grid "
                         f"over all of {layer}'s outputs (groups=1). Use prior 'klein' for grouped convs.")
    bank_kw = {key: v for key, v in kw.items() if key != "k"}
    _bank_for("klein", conv, layer, kh, bank_kw)  # does the bank fit? (apply's messages)
    in_grid = _klein_grid_of(conv, bank_kw)
    if next_layer is None:
        next_layer, nxt = _next_conv(model, layer)
        if nxt is None:
            raise InputError(f"{name} puts a KOL into the conv after {layer}, but {type(model).__name__} "
                             f"has no conv after it (its conv layers: "
                             f"{[n for n, m in modules.items() if isinstance(m, nn.Conv2d)]}). Use prior "
                             "'klein', or pass next_layer=NAME.")
    else:
        nxt = modules.get(next_layer)
        if not isinstance(nxt, nn.Conv2d) or next_layer == layer:
            raise InputError(f"next_layer {next_layer!r} is not another nn.Conv2d of this model; its conv "
                             f"layers: {[n for n, m in modules.items() if isinstance(m, nn.Conv2d)]}.")
    if nxt.in_channels != conv.out_channels or nxt.groups != 1:
        raise InputError(f"{name}: the KOL layer {next_layer} must read all of {layer}'s "
                         f"{conv.out_channels} outputs (in_channels {conv.out_channels}, groups=1); it has "
                         f"in_channels {nxt.in_channels}, groups {nxt.groups}. Pass next_layer=NAME of the "
                         f"conv that reads {layer}.")
    if parametrize.is_parametrized(nxt) or not isinstance(nxt.weight, nn.Parameter):
        raise InputError(f"{name}: {next_layer}'s weight is not a plain trainable Parameter (it is "
                         "parametrised, or a fixed prior); the KOL replaces a plain conv.")
    nh, nw = nxt.kernel_size
    if nh != nw:
        raise InputError(f"{name}: {next_layer} has a {nh}x{nw} kernel; a KOL needs a square odd kernel.")
    out_grid = _most_square(nxt.out_channels)
    if name == "klein_randmask":
        if mask_seed is None:
            mask_seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        mask_seed = check_seed("mask_seed", mask_seed, allow_generator=False)
    w = nxt.weight
    with torch.random.fork_rng(devices=[]):  # the new conv's own init is overwritten: use no RNG
        kol = TopologicalMaskConv2d(
            nxt.in_channels, nxt.out_channels, nh, space="klein", threshold=threshold,
            variant=mask_variant, in_grid=in_grid, out_grid=out_grid,
            shuffle_seed=mask_seed if name == "klein_randmask" else None, stride=nxt.stride,
            padding=nxt.padding, dilation=nxt.dilation, bias=nxt.bias is not None,
            padding_mode=nxt.padding_mode, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        kol.parametrizations.weight.original.copy_(w.detach() * kol.mask)
        if nxt.bias is not None:
            kol.bias.copy_(nxt.bias.detach())
    kol.train(nxt.training)
    apply(model, "klein", layer=layer, mode=mode, **bank_kw)  # checked above: cannot fail now
    parent, _, attr = next_layer.rpartition(".")
    setattr(dict(model.named_modules())[parent], attr, kol)
    return model
