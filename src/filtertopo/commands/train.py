"""``filtertopo train --model M --dataset D --epochs E --out RUN``: train CNNs and write run folders."""

from __future__ import annotations

import json

_FLAGS = {  # argparse dest -> TrainConfig key
    "model": "model", "dataset": "dataset", "test_dataset": "test_dataset",
    "data_root": "data_root", "download": "download", "n_train": "n_train",
    "data_seed": "data_seed", "optimizer": "optimizer", "lr": "lr", "momentum": "momentum",
    "weight_decay": "weight_decay", "batch_size": "batch_size", "epochs": "epochs",
    "seed": "seed", "snapshot_every": "snapshot_every", "eval_samples": "eval_samples",
    "threads": "threads", "device": "device", "prior": "prior", "prior_mode": "prior_mode",
    "prior_layer": "prior_layer", "loss": "loss",
}


def add_parser(sub):
    p = sub.add_parser(
        "train", help="train a CNN (or several seeds) and write a run folder",
        description="Seeded, deterministic CPU training. Writes RUN/config.json, metrics.csv, "
                    "kernels.npz, model.pt and, with --snapshot-every N, RUN/snapshots/. "
                    "With --seeds N, trains N copies into RUN/seed_000 ... (pool them with "
                    "`filtertopo analyze RUN/seed_*/kernels.npz` or `filtertopo track RUN`).")
    p.add_argument("--config", help="JSON file of TrainConfig keys (an object, or a run's "
                                     "config.json); flags given override it")
    p.add_argument("--model", help="registered architecture (default mnist_net); see --list")
    p.add_argument("--model-kwarg", action="append", default=[], metavar="KEY=VALUE",
                   help="model factory argument, e.g. width=0.25 (repeatable; JSON values)")
    p.add_argument("--dataset", help="mnist_subset (default), digits, mnist, cifar10, svhn, "
                                     "folder:PATH")
    p.add_argument("--test-dataset", help="evaluate on another data set's test split")
    p.add_argument("--data-root", help="folder with the files of mnist / cifar10 / svhn")
    p.add_argument("--download", action="store_true", default=None,
                   help="allow torchvision to download missing data files")
    p.add_argument("--n-train", type=int, help="use only this many training images")
    p.add_argument("--data-seed", type=int,
                   help="seed of the train/test split (default 0; 0 <= seed < 2**32)")
    p.add_argument("--optimizer", help="sgd (default), adam or adamw")
    p.add_argument("--loss", help="cross_entropy (default) or mse_softmax (MSE between the softmax "
                                  "and the one-hot labels, as in Love et al. 2023)")
    p.add_argument("--lr", type=float, help="learning rate (default 0.05)")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, help="weight decay (default 1e-3)")
    p.add_argument("--batch-size", type=int, help="batch size (default 32)")
    p.add_argument("--epochs", type=int, help="epochs (default 5)")
    p.add_argument("--seed", type=int,
                   help="initialisation / batch-order seed (default 0; 0 <= seed < 2**32)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="train N copies with seeds SEED..SEED+N-1 into RUN/seed_<s> (N <= 10000)")
    p.add_argument("--workers", type=int, default=1,
                   help="with --seeds: networks trained at once in separate processes (default 1)")
    p.add_argument("--snapshot-every", type=int, help="snapshot conv kernels every N batches "
                                                      "(and at step 0 and the end); 0 = none")
    p.add_argument("--eval-samples", type=int, help="images for snapshot accuracies (500)")
    p.add_argument("--threads", type=int, help="torch threads while training (at most 4 x the CPU "
                                                "cores)")
    p.add_argument("--device", help="cpu (default), cuda, cuda:N, mps or auto")
    p.add_argument("--prior", help="topological prior for --prior-layer (docs/priors.md): circle, klein, "
                                   "secondary, gabor, dct, random_orthonormal, circle_raw, dct_tiled, "
                                   "klein_kol, klein_randmask; none (default) for no prior")
    p.add_argument("--prior-mode", help="fixed (default: the bank is never trained) or init (a "
                                        "trainable weight that starts as the bank)")
    p.add_argument("--prior-layer", help="the conv module that gets the prior (default conv1)")
    p.add_argument("--out", help="run folder to write")
    p.add_argument("--force", action="store_true",
                   help="reuse a non-empty run folder: the files train wrote there are replaced, "
                        "other files and folders are kept")
    p.add_argument("--list", action="store_true", help="list registered models and data sets")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bars (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def _kwargs(items):
    from ..errors import InputError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--model-kwarg must be KEY=VALUE; got {item!r}. "
                             "Example: --model-kwarg width=0.25")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


#: The most networks one ``train --seeds N`` trains (the paper pools about 100).
SEEDS_MAX = 10_000

#: The largest --config file read (a TrainConfig is a few hundred bytes).
CONFIG_MAX_BYTES = 1 << 20


def _read_config(name) -> dict:
    """The TrainConfig keys of a --config JSON file (a run's config.json nests them).

    A folder, FIFO or device is refused before it is opened (a FIFO would block).
    """
    from ..errors import InputError
    from ..training.snapshots import read_regular_file

    fix = "Pass a JSON file of TrainConfig keys, e.g. a run's config.json."
    data = read_regular_file(name, param="--config", max_bytes=CONFIG_MAX_BYTES, fix=fix)
    try:
        values = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"--config {name!r} is not UTF-8 text (invalid byte at position "
                         f"{exc.start}). {fix}") from None
    except ValueError as exc:
        raise InputError(f"--config {name!r} is not valid JSON ({exc}). {fix}") from None
    if not isinstance(values, dict):
        raise InputError(f"--config {name!r} must hold a JSON object of TrainConfig keys, e.g. "
                         f'{{"lr": 0.05, "epochs": 5}}; got a JSON {type(values).__name__}.')
    if "config" in values:  # a run's config.json nests the keys under "config"
        values = values["config"]
        if not isinstance(values, dict):
            raise InputError(f"--config {name!r}: the key 'config' must hold a JSON object of "
                             "TrainConfig keys (as in a run's config.json); got "
                             f"{json.dumps(values)[:60]}. Remove it or put the keys there.")
    return dict(values)


def config_from_args(args):
    """Merge ``--config`` and explicit flags into a validated TrainConfig."""
    from ..errors import InputError
    from ..training import TrainConfig

    values = _read_config(args.config) if args.config else {}
    for dest, key in _FLAGS.items():
        v = getattr(args, dest, None)
        if v is not None:
            values[key] = v
    if args.model_kwarg:
        base = values.get("model_kwargs", {})
        if not isinstance(base, dict):
            raise InputError(f"config key 'model_kwargs' must be a JSON object; got {base!r}. "
                             "Fix --config or drop the key.")
        values["model_kwargs"] = {**base, **_kwargs(args.model_kwarg)}
    config = TrainConfig.from_dict(values)
    _check_threads(config.threads)  # this machine's cores (the float32 rule is in TrainConfig)
    return config


def _check_threads(threads):
    # the float32 and thread rules live in training.loop (TrainConfig.validate and train()),
    # so the Python API refuses what the CLI refuses; imported here, not at module level, so
    # that building the parser does not import torch (tests/test_imports.py)
    from ..training.loop import check_threads

    check_threads(threads)


def run(args) -> int:
    from ..errors import InputError
    from ..training import DATASETS, MODELS, train, train_seeds

    if args.list:
        for name in sorted(MODELS):
            print(f"{name:12s} {MODELS[name].input_shape}  {MODELS[name].description}")
        print("data sets:", ", ".join(DATASETS) + ", folder:PATH")
        return 0
    if not args.out:
        raise InputError("--out is required: the run folder to write, e.g. --out runs/mnist_0.")
    if args.seeds is not None and not 1 <= args.seeds <= SEEDS_MAX:
        # range(seed, seed + 2**32) alone would fill the memory, and train 4 billion networks
        raise InputError(f"--seeds must be in [1, {SEEDS_MAX}]; got {args.seeds}. Use e.g. --seeds 3.")
    if args.workers < 1:
        raise InputError(f"--workers must be >= 1; got {args.workers}. Use 1 or the number of "
                         "cores.")
    config = config_from_args(args)
    if args.seeds is not None:
        from ..training.loop import SEED_MAX

        if config.seed + args.seeds - 1 > SEED_MAX:
            raise InputError(f"--seed {config.seed} with --seeds {args.seeds} would train seeds up "
                             f"to {config.seed + args.seeds - 1}; seeds must be in [0, {SEED_MAX}]. "
                             "Lower --seed or --seeds.")
        runs = train_seeds(config, args.out, range(config.seed, config.seed + args.seeds),
                           force=args.force, progress=args.progress, workers=args.workers)
    else:
        runs = [train(config, args.out, force=args.force, progress=args.progress)]
    def num(v):
        return float("nan") if v is None else float(v)

    for r in runs:
        status = json.loads((r / "run.json").read_text())
        print(f"{r}: test_acc {num(status.get('test_acc')):.4f}  "
              f"train_acc {num(status.get('train_acc')):.4f}  {num(status.get('seconds')):.1f} s")
    return 0
