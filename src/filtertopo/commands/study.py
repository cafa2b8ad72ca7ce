"""``filtertopo study DIR --out STUDY``: what the topology of many trained networks says about
their generalisation, beside the baselines and the controls (:mod:`filtertopo.study`).

DIR is a sweep folder (``filtertopo sweep run SPEC --out DIR``) or any folder of run folders
(``filtertopo train --out RUN`` with ``filtertopo analyze RUN/kernels.npz --out RUN/analysis``).
"""

from __future__ import annotations

import functools


def add_parser(sub):
    p = sub.add_parser("study", help="correlate filter topology with generalisation over many runs",
                       description="Join, per run, topology features of the analysed layers with baselines "
                                   "(norms, distance from initialisation, weight statistics, WeightWatcher when "
                                   "installed, the hyperparameters) and generalisation targets (test accuracy, "
                                   "generalisation gap, accuracy on offline shifted test sets); write Kendall tau "
                                   "with bootstrap intervals, the granulated Kendall coefficient, the CMI score, "
                                   "partial tau, a grouped cross-validated predictor, the controls, and a "
                                   "self-contained report.html into --out.")
    p.add_argument("dir", metavar="DIR", help="sweep folder, or a folder of run folders each with an analysis/")
    p.add_argument("--out", required=True, metavar="STUDY", help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite a study already in --out")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 95%% intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the pixel shuffle (default 0)")
    p.add_argument("--layers", default=None,
                   help="analysed layers whose topology and controls are used: names, globs or 1-based depths "
                        "(default: every analysed layer; the controls analyse each twice per run)")
    p.add_argument("--no-controls", dest="controls", action="store_false",
                   help="skip the controls (topology of the initial and of pixel-shuffled weights)")
    p.add_argument("--no-shifted", dest="shifted", action="store_false",
                   help="skip the accuracies on the shifted test sets (they need torch and model.pt)")
    p.add_argument("--shifted-n", type=int, default=1000, metavar="N",
                   help="images per shifted test set (default 1000; at most 1000, 1797 for digits28)")
    p.add_argument("--no-weightwatcher", dest="weightwatcher", action="store_false",
                   help="skip WeightWatcher's metrics even when the package is installed")
    p.add_argument("--drop-incomplete", action="store_true",
                   help="with cells of the grid missing, use only complete groups for Psi and CMI "
                        "(default: refuse, naming the missing cells)")
    p.add_argument("--jobs", type=int, default=1, help="runs processed in parallel processes (default 1)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show progress bars (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def model_measures(run, *, shifted: bool = True, shifted_n: int | None = 1000, weightwatcher: bool = True) -> tuple:
    """What needs the trained network of a run (``model.pt``): accuracy on each shifted test
    set (``acc_<name>``, and their mean ``acc_shifted``; the same images, seed 0, for every
    run) and WeightWatcher's metrics. Returns ``(values, notes)``; never raises for a run
    without ``model.pt``."""
    import torch

    from ..study.features import weightwatcher_features
    from ..study.shifted import SHIFTED, evaluate_shifted
    from ..training.data import Transform
    from ..training.models import create_model, get_spec

    cfg = run.config
    path = run.path / "model.pt"
    if not path.is_file():
        return {}, ("no model.pt: no shifted-set accuracies, no WeightWatcher metrics",)
    notes = []
    kwargs = dict(cfg.get("model_kwargs") or {})
    model = create_model(cfg["model"], **kwargs)
    model.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
    model.eval()
    values = {}
    if shifted:
        spec = get_spec(cfg["model"])
        kw = {**spec.defaults, **kwargs}
        channels = int(kw.get("in_channels", spec.input_shape[0]))
        size = int(kw.get("input_size", spec.input_shape[1]))
        transform = None if (channels, size) == (1, 28) else Transform(channels=channels, size=size)
        names = list(SHIFTED)
        n = {name: (None if shifted_n is None else min(shifted_n, SHIFTED[name].source_size(cfg.get("data_seed", 0))))
             for name in names}
        accs = {}
        for name in names:
            accs.update(evaluate_shifted(model, [name], n=n[name], data_seed=int(cfg.get("data_seed", 0)),
                                         transform=transform))
        values.update({f"acc_{k}": v for k, v in accs.items()})
        values["acc_shifted"] = sum(accs.values()) / len(accs)
        if cfg.get("dataset") == "digits":
            notes.append("trained on 'digits' (scikit-learn's digits): the digits28 set is not unseen data for it")
        elif cfg.get("dataset") != "mnist_subset":
            notes.append(f"trained on {cfg.get('dataset')!r}: the MNIST-based shifted sets hold out mnist_subset's "
                         "test split, which this run's training data may contain")
    if weightwatcher:
        ww, note = weightwatcher_features(model)
        values.update(ww)
        notes.append(note)
    return values, tuple(notes)


def run(args) -> int:
    import importlib.util

    from .._io import check_output_dir
    from ..errors import check_range
    from ..study.run import STUDY_FILES, study

    check_range("--bootstrap", args.bootstrap, low=0, high=100_000, integer=True, fix="e.g. --bootstrap 1000.")
    check_range("--shifted-n", args.shifted_n, low=1, high=1797, integer=True, fix="e.g. --shifted-n 1000.")
    check_range("--jobs", args.jobs, low=1, integer=True, fix="e.g. --jobs 2.")
    check_range("--seed", args.seed, low=0, integer=True, fix="e.g. --seed 0.")
    check_output_dir(args.out, force=args.force, names=(*STUDY_FILES, "manifest.json"))
    measures, extra = None, {}
    has_torch = importlib.util.find_spec("torch") is not None
    if (args.shifted or args.weightwatcher) and has_torch:
        measures = functools.partial(model_measures, shifted=args.shifted, shifted_n=args.shifted_n,
                                     weightwatcher=args.weightwatcher)
    elif args.shifted or args.weightwatcher:
        extra["model_measures"] = "torch is not installed: no shifted-set accuracies, no WeightWatcher metrics"
    table, stats = study(args.dir, args.out, controls=args.controls, model_measures=measures, n_boot=args.bootstrap,
                         seed=args.seed, drop_incomplete=args.drop_incomplete, n_jobs=args.jobs, force=args.force,
                         progress=args.progress, layers=args.layers,
                         inputs={"shifted": args.shifted and has_torch, "shifted_n": args.shifted_n,
                                 "weightwatcher": args.weightwatcher, **extra})
    print(f"{len(table.frame)} runs, {len(table.features)} features, targets {', '.join(table.targets)}")
    for h in stats.headline:
        ci = h.get("ci_primary")
        tp = "" if h.get("tau_primary") is None else (f"{h['primary_feature']} tau {h['tau_primary']:+.2f}"
                                                      + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""))
        tt = "" if h.get("tau_topology") is None else f"{h['best_topology']} tau {h['tau_topology']:+.2f}"
        tb = "" if h.get("tau_baseline") is None else f"{h['best_baseline']} tau {h['tau_baseline']:+.2f}"
        print(f"  {h['target']}: {tp or '-'}; best topology {tt or '-'}; best baseline {tb or '-'}")
    if extra:
        print("note: " + extra["model_measures"])
    print(f"wrote {args.out}/report.html, study.json and the tables (tau, psi, cmi, partial, predict, controls)")
    return 0
