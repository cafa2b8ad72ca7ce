"""Per-run features of a study: the topology of the filters, the baselines a sceptical reviewer
asks for, and two controls.

Every feature is a column named ``<prefix>.<layer>.<name>`` (``<prefix>.model.<name>`` for
whole-network ones); the prefix says its family (:data:`FAMILIES`):

- ``topo`` (**topology**, from the run's analysis folder, per analysed layer): ``h1_1`` and
  ``h1_2`` (the two longest H1 bars), ``gap_ratio`` (h1_1 / h1_2), ``n_significant``,
  ``h1_total`` (total finite H1 persistence), ``circle`` (1 when the verdict is
  ``primary-circle`` or ``circle``), ``scale_support`` (support of the majority verdict over
  the (k, p) grid) and ``circle_support`` (fraction of grid cells calling a circle), both
  with ``scales=True``, ``frac_primary``, ``null_z`` and ``null_ratio`` (the null margin, with
  ``null_draws >= 1``), and the bottleneck / Wasserstein distances of the H1 diagram from the
  one of the initial weights (``h1_bottleneck_init``, ``h1_wasserstein_init``,
  :func:`filtertopo.study.compare.compare`); ``verdict`` is kept as text;
- ``base`` (**baselines**, numpy, from ``kernels.npz``, and every weight matrix of
  ``model.pt`` when torch is installed): per layer the Frobenius norm ``fro``, the spectral
  norm ``spec`` of the (C_out, C_in*kh*kw) matrix, ``mean``, ``var`` and the quantiles
  ``q05`` ... ``q95`` of the weights (they predict accuracy strongly on model zoos: Unterthiner
  et al. 2020, "Predicting neural network accuracy from weights"), the distance from
  initialisation ``dist_init`` and ``dist_init_rel`` (conv layers: the step-0 snapshot), and
  over the network ``log_prod_fro``, ``log_prod_spec`` (log products of the norms, Jiang et
  al. 2019), ``fro_sum_sq`` and the total ``dist_init``;
- ``ww`` (**WeightWatcher**, Martin & Mahoney 2021, optional: the ``weightwatcher``
  package): ``alpha``, ``alpha_weighted``, ``log_norm`` per layer it analyses and over the
  network; the layers it skips are reported;
- ``hp`` (**hyperparameters alone**): the axis values of the run (numbers as they are, text
  one-hot, lists of numbers by their sum, e.g. the total width);
- ``init`` and ``shuf`` (**controls**): the topology features of the initial weights (the
  step-0 snapshot) and of the final filters with the pixels of each filter shuffled (same
  weight values, hence the same baselines, no spatial structure).
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["FAMILIES", "TOPOLOGY_NAMES", "family_of", "layer_topology", "topology_features",
           "weight_features", "shuffle_pixels", "state_weights", "weightwatcher_features",
           "hyperparameter_features", "RunFeatures", "run_features", "run_targets", "CIRCLE_LABELS"]

#: Feature prefix -> family.
FAMILIES = {"topo": "topology", "base": "baseline", "ww": "weightwatcher", "hp": "hyperparameter",
            "init": "control_init", "shuf": "control_shuffled"}
#: Numeric topology features per layer (``verdict`` is text).
TOPOLOGY_NAMES = ("h1_1", "h1_2", "gap_ratio", "n_significant", "h1_total", "circle", "scale_support",
                  "circle_support", "frac_primary", "null_z", "null_ratio")
#: Verdicts counted as a circle by the ``circle`` features.
CIRCLE_LABELS = ("primary-circle", "circle")
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def family_of(column: str) -> str | None:
    """The family of a feature column (None for a column that is not a feature)."""
    return FAMILIES.get(column.split(".", 1)[0]) if "." in column else None


# ----------------------------------------------------------------------------- topology

def layer_topology(layer) -> dict:
    """The topology features of one :class:`~filtertopo.result.LayerResult` (unprefixed)."""
    nan = float("nan")
    too_few = layer.verdict == "too-few"
    top = layer.bars.h1_top
    d1 = np.asarray(layer.diagrams.get(1, np.zeros((0, 2))), dtype=np.float64).reshape(-1, 2)
    life = d1[:, 1] - d1[:, 0]
    life = life[np.isfinite(life)]
    out = {
        "h1_1": nan if too_few else (float(top[0]) if len(top) > 0 else 0.0),
        "h1_2": nan if too_few else (float(top[1]) if len(top) > 1 else 0.0),
        "gap_ratio": nan if too_few else float(layer.bars.h1_gap_ratio),
        "n_significant": nan if too_few else float(layer.bars.n_significant),
        "h1_total": nan if too_few else float(life.sum()),
        "circle": nan if too_few else float(layer.verdict in CIRCLE_LABELS),
        "scale_support": nan, "circle_support": nan,
        "frac_primary": nan if layer.shapes is None else float(layer.shapes.frac_primary),
        "null_z": nan if layer.null is None else float(layer.null.h1_margin_z),
        "null_ratio": nan if layer.null is None else float(layer.null.h1_ratio_null_max),
    }
    if layer.scales is not None and layer.scales.cells:
        out["scale_support"] = float(layer.scales.support)
        out["circle_support"] = float(np.mean([c.verdict in CIRCLE_LABELS for c in layer.scales.cells]))
    out["verdict"] = layer.verdict
    return out


def topology_features(result, *, prefix: str = "topo") -> dict:
    """``{prefix.layer.name: value}`` for every layer of an AnalysisResult."""
    out = {}
    for layer in result.layers:
        for k, v in layer_topology(layer).items():
            out[f"{prefix}.{layer.name}.{k}"] = v
    return out


def _init_distances(final, init) -> dict:
    from .compare import compare

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        df = compare(final, init)
    for row in df.itertuples(index=False):
        out[f"topo.{row.layer}.h1_bottleneck_init"] = float(row.h1_bottleneck)
        out[f"topo.{row.layer}.h1_wasserstein_init"] = float(row.h1_wasserstein)
    return out


# ----------------------------------------------------------------------------- weights

def _spectral(m: np.ndarray) -> float:
    """The largest singular value, from the eigenvalues of the smaller Gram matrix (a 64 x 1568
    fc layer: a 64 x 64 eigenproblem instead of an SVD)."""
    if not m.size:
        return float("nan")
    if m.shape[0] > m.shape[1]:
        m = m.T
    return float(np.sqrt(max(np.linalg.eigvalsh(m @ m.T)[-1], 0.0)))


def weight_features(weights: dict, init: dict | None = None, *, prefix: str = "base") -> dict:
    """Norms and simple statistics of weight tensors, and their distance from ``init``.

    Parameters
    ----------
    weights : dict of str -> ndarray
        Layer name -> weight tensor (conv OIHW, or a linear (out, in) matrix).
    init : dict of str -> ndarray, optional
        The same layers at initialisation (layers missing there get NaN distances).

    Returns
    -------
    dict
        ``{prefix.layer.stat: value}`` and ``{prefix.model.stat: value}``.

    Examples
    --------
    >>> import numpy as np
    >>> f = weight_features({"fc": np.eye(3)}, {"fc": np.zeros((3, 3))})
    >>> round(f["base.fc.fro"], 4), f["base.fc.spec"], round(f["base.fc.dist_init"], 4)
    (1.7321, 1.0, 1.7321)
    """
    out = {}
    log_fro, log_spec, fro_sq, dist_sq, init_sq = [], [], 0.0, 0.0, 0.0
    for name, w in weights.items():
        w = np.asarray(w, dtype=np.float64)
        flat = w.reshape(w.shape[0], -1) if w.ndim >= 2 else w.reshape(1, -1)
        fro = float(np.linalg.norm(flat))
        spec = _spectral(flat)
        p = f"{prefix}.{name}."
        out[p + "fro"], out[p + "spec"] = fro, spec
        out[p + "mean"], out[p + "var"] = float(w.mean()), float(w.var())
        for q, v in zip(_QUANTILES, np.quantile(w, _QUANTILES)):
            out[p + f"q{int(round(q * 100)):02d}"] = float(v)
        w0 = None if init is None else init.get(name)
        if w0 is not None and np.shape(w0) == w.shape:
            d = float(np.linalg.norm(w - np.asarray(w0, dtype=np.float64)))
            n0 = float(np.linalg.norm(w0))
            out[p + "dist_init"], out[p + "dist_init_rel"] = d, d / n0 if n0 > 0 else float("nan")
            dist_sq += d * d
            init_sq += n0 * n0
        else:
            out[p + "dist_init"] = out[p + "dist_init_rel"] = float("nan")
        log_fro.append(math.log(fro) if fro > 0 else -math.inf)
        log_spec.append(math.log(spec) if spec > 0 else -math.inf)
        fro_sq += fro * fro
    m = f"{prefix}.model."
    out[m + "log_prod_fro"] = float(np.sum(log_fro)) if log_fro else float("nan")
    out[m + "log_prod_spec"] = float(np.sum(log_spec)) if log_spec else float("nan")
    out[m + "fro_sum_sq"] = fro_sq
    has_init = init_sq > 0
    out[m + "dist_init"] = math.sqrt(dist_sq) if has_init else float("nan")
    out[m + "dist_init_rel"] = math.sqrt(dist_sq / init_sq) if has_init else float("nan")
    return out


def shuffle_pixels(kernels: dict, seed: int = 0) -> dict:
    """The kernels with the kh*kw pixels of every (out, in) filter permuted independently.

    Each filter keeps its values (so its norm, mean and every weight statistic) and loses its
    spatial arrangement. Seeded per layer by ``seed`` and the layer name.
    """
    out = {}
    for name, w in kernels.items():
        w = np.asarray(w)
        rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
        flat = w.reshape(-1, int(np.prod(w.shape[2:])))
        order = np.argsort(rng.random(flat.shape), axis=1)
        out[name] = np.take_along_axis(flat, order, axis=1).reshape(w.shape)
    return out


def state_weights(path) -> dict:
    """Every weight matrix (>= 2-D ``*.weight`` tensor) of a ``model.pt`` state dict, by layer
    name (``conv1``, ``fc1``, ...), as numpy (torch, imported here; ``weights_only=True``)."""
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise InputError(f"{path}: not a readable state dict ({type(e).__name__}: {e}).") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: holds a {type(state).__name__}, not a state dict.")
    out = {}
    for key, t in state.items():
        if key.endswith(".weight") and hasattr(t, "ndim") and t.ndim >= 2:
            out[key[:-len(".weight")]] = t.detach().cpu().numpy()
    return out


def weightwatcher_features(model, *, prefix: str = "ww") -> tuple:
    """WeightWatcher's layer and network metrics (Martin & Mahoney, "Implicit self-regularization
    in deep neural networks", JMLR 22, 2021): ``alpha``, ``alpha_weighted``, ``log_norm``.

    Returns
    -------
    (dict, str)
        The features and a note: which layers it analysed and skipped, or why there are none
        (the package is not installed, or it failed). Never raises for a missing package.
    """
    import contextlib
    import io
    import logging

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints while it is imported
            import weightwatcher as ww
    except ImportError:
        return {}, "weightwatcher is not installed (pip install weightwatcher): its metrics are left out"
    names = [n for n, m in model.named_modules() if hasattr(m, "weight") and getattr(m.weight, "ndim", 0) >= 2]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            logging.getLogger("weightwatcher").setLevel(logging.ERROR)
            watcher = ww.WeightWatcher(model=model)
            details = watcher.analyze()
            summary = watcher.get_summary(details)
    except Exception as e:  # noqa: BLE001 - a third-party failure must not stop the study
        return {}, f"weightwatcher failed ({type(e).__name__}: {e}): its metrics are left out"
    out = {}
    seen = []
    for _, row in details.iterrows():
        name = str(row.get("longname", row.get("name", row.get("layer_id"))))
        seen.append(name)
        for key in ("alpha", "alpha_weighted", "log_norm"):
            if key in row and row[key] is not None:
                out[f"{prefix}.{name}.{key}"] = float(row[key])
    for key in ("alpha", "alpha_weighted", "log_norm"):
        if key in summary:
            out[f"{prefix}.model.{key}"] = float(summary[key])
    skipped = [n for n in names if n not in seen]
    note = f"weightwatcher analysed {seen}" + (f" and skipped {skipped}" if skipped else "")
    return out, note


# ----------------------------------------------------------------------------- hyperparameters

def _encode(axis: str, values: list) -> dict:
    """Columns of one axis: numbers as they are, bools 0/1, lists of numbers by their sum,
    anything else one-hot (``hp.axis=value``)."""
    def num(v):
        if isinstance(v, bool):
            return float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                      for x in v):
            return float(sum(v))
        return None

    nums = [num(v) for v in values]
    if all(x is not None for x in nums):
        return {f"hp.{axis}": nums}
    from .runs import cell_key

    keys = [cell_key(v) for v in values]
    return {f"hp.{axis}={k.strip(chr(34))}": [float(x == k) for x in keys] for k in sorted(set(keys))}


def hyperparameter_features(varied: list, axes) -> dict:
    """``{column: list of floats}``: the encoded axis values of each run (the seed left out)."""
    from .runs import SEED_AXIS

    out = {}
    for axis in axes:
        if axis == SEED_AXIS:
            continue
        out.update(_encode(axis, [v.get(axis) for v in varied]))
    return out


# ----------------------------------------------------------------------------- one run

@dataclass(frozen=True)
class RunFeatures:
    """What :func:`run_features` found for one run: ``values`` (feature or target name ->
    value) and ``notes`` (what could not be computed, and why)."""

    id: str
    values: dict
    notes: tuple = ()


def _last_snapshot(run_dir: Path):
    from .._snapshots_index import read_index

    if not (run_dir / "snapshots" / "index.csv").is_file():
        return None
    try:
        snaps, _ = read_index(run_dir)
    except InputError:
        return None
    return snaps[-1] if snaps else None


def run_targets(run) -> tuple:
    """``(targets, notes)`` of a :class:`~filtertopo.study.runs.RunFolder`: ``test_acc`` (run.json:
    the final model on the whole test split), ``train_acc`` (the final snapshot's accuracy on
    ``eval_samples`` training images when the run has snapshots, else run.json's, the running
    accuracy over the last epoch's batches: then noted), ``gen_gap`` = train_acc - test_acc."""
    from .shifted import generalisation_gap

    notes = []
    rec = run.record
    test = float(rec.get("test_acc", float("nan")) if rec.get("test_acc") is not None else float("nan"))
    train = float(rec.get("train_acc") if rec.get("train_acc") is not None else float("nan"))
    snap = _last_snapshot(run.path)
    if snap is not None and snap.step == rec.get("step") and math.isfinite(snap.train_acc):
        train = float(snap.train_acc)
        source = "final snapshot"
    else:
        source = "running accuracy of the last epoch"
        notes.append("train_acc is run.json's running accuracy over the last epoch (no final snapshot)")
    return {"test_acc": test, "train_acc": train, "gen_gap": generalisation_gap(train, test),
            "train_acc_source": source}, tuple(notes)


def _analyze_quiet(kernels, config, layers):
    from ..pipeline import analyze

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return analyze(kernels, config, layers=layers, progress=False)


def run_features(run, *, controls: bool = True, seed: int = 0, model_measures=None, layers=None) -> RunFeatures:
    """Every feature and target of one run (see the module docstring).

    Parameters
    ----------
    run : RunFolder
    controls : bool, default=True
        Also analyse the initial weights (when the run has no analysis of step 0, its
        ``snapshots/step_000000.npz`` is analysed here with the run's settings) and the
        pixel-shuffled final filters: two more analyses per run.
    seed : int
        Seed of the pixel shuffle.
    model_measures : callable, optional
        ``model_measures(run) -> (values, notes)``: what needs the trained network itself
        (shifted-set accuracies, WeightWatcher), supplied by the caller that can build it.
    layers : str or list, optional
        The analysed layers whose topology (and controls) are used
        (:func:`filtertopo.pipeline.select_layers`); all by default. The weight baselines
        cover every layer whatever it says.
    """
    from ..result import AnalysisResult
    from ..weights import load_kernels

    notes = []
    values, tnotes = run_targets(run)
    notes += tnotes
    final = AnalysisResult.load(run.analysis)
    if layers is not None:
        import dataclasses

        from ..pipeline import select_layers

        keep = set(select_layers([layer.name for layer in final.layers], layers))
        final = dataclasses.replace(final, layers=tuple(layer for layer in final.layers if layer.name in keep))
    layers = [layer.name for layer in final.layers]
    values.update(topology_features(final))
    kernels_path = run.path / "kernels.npz"
    kernels = load_kernels(kernels_path).kernels if kernels_path.is_file() else {}
    if not kernels:
        notes.append("no kernels.npz: no weight baselines, no shuffled control")
    init_path = run.path / "snapshots" / "step_000000.npz"
    init_kernels = load_kernels(init_path).kernels if init_path.is_file() else None
    if init_kernels is None:
        notes.append("no snapshots/step_000000.npz: no distance from initialisation, no initial-weights control")
    weights = dict(kernels)
    if (run.path / "model.pt").is_file():
        try:
            for name, w in state_weights(run.path / "model.pt").items():
                weights.setdefault(name, w)
        except ImportError:
            notes.append("torch is not installed: baselines use the conv kernels only (not model.pt)")
        except InputError as e:
            notes.append(f"model.pt unreadable ({e}): baselines use the conv kernels only")
    if weights:
        values.update(weight_features(weights, init_kernels))
    if controls:
        init = None
        if run.init_analysis is not None:
            init = AnalysisResult.load(run.init_analysis)
        elif init_kernels is not None:
            init = _analyze_quiet(init_kernels, final.config, [n for n in layers if n in init_kernels])
        if init is not None:
            import dataclasses

            init = dataclasses.replace(init, layers=tuple(layer for layer in init.layers if layer.name in layers))
            values.update(topology_features(init, prefix="init"))
            values.update(_init_distances(final, init))
        present = [n for n in layers if n in kernels]
        if present:
            shuffled = _analyze_quiet(shuffle_pixels({n: kernels[n] for n in present}, seed), final.config, present)
            values.update(topology_features(shuffled, prefix="shuf"))
    if model_measures is not None:
        more, mnotes = model_measures(run)
        values.update(more)
        notes += list(mnotes)
    return RunFeatures(run.id, values, tuple(notes))
