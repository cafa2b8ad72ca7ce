"""``filtertopo train --model M --dataset D --epochs E --out RUN``: train CNNs and write run folders."""

from __future__ import annotations

import json

_FLAGS = {  # argparse dest -> TrainConfig key
    "model": "model", "dataset": "dataset", "test_dataset": "test_dataset",
    "data_root": "data_root", "download": "download", "n_train": "n_train",
    "data_seed": "data_seed", "optimizer": "optimizer", "lr": "lr", "momentum": "momentum",
    "weight_decay": "weight_decay", "batch_size": "batch_size", "epochs": "epochs",
    "seed": "seed", "snapshot_every": "snapshot_every", "eval_samples": "eval_samples",
    "threads": "threads", "device": "device",
}


def add_parser(sub):
    p = sub.add_parser(
        "train", help="train a CNN (or several seeds) and write a run folder",
        description="Seeded, deterministic CPU training. Writes RUN/config.json, metrics.csv, "
                    "kernels.npz, model.pt and, with --snapshot-every N, RUN/snapshots/. "
                    "With --seeds N, trains N copies into RUN/seed_000 ... (pool them with "
                    "`filtertopo analyze RUN/seed_*/kernels.npz` or `filtertopo track RUN`).")
    p.add_argument("--config", help="JSON file of TrainConfig keys; flags given override it")
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
    p.add_argument("--data-seed", type=int, help="seed of the train/test split (default 0)")
    p.add_argument("--optimizer", help="sgd (default), adam or adamw")
    p.add_argument("--lr", type=float, help="learning rate (default 0.05)")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, help="weight decay (default 1e-3)")
    p.add_argument("--batch-size", type=int, help="batch size (default 32)")
    p.add_argument("--epochs", type=int, help="epochs (default 5)")
    p.add_argument("--seed", type=int, help="initialisation / batch-order seed (default 0)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="train N copies with seeds SEED..SEED+N-1 into RUN/seed_<s>")
    p.add_argument("--workers", type=int, default=1,
                   help="with --seeds: networks trained at once in separate processes (default 1)")
    p.add_argument("--snapshot-every", type=int, help="snapshot conv kernels every N batches "
                                                      "(and at step 0 and the end); 0 = none")
    p.add_argument("--eval-samples", type=int, help="images for snapshot accuracies (500)")
    p.add_argument("--threads", type=int, help="torch threads while training")
    p.add_argument("--device", help="cpu (default), cuda, cuda:N, mps or auto")
    p.add_argument("--out", help="run folder to write")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty run folder")
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


def config_from_args(args):
    """Merge ``--config`` and explicit flags into a validated TrainConfig."""
    from pathlib import Path

    from ..errors import InputError
    from ..training import TrainConfig

    values = {}
    if args.config:
        path = Path(args.config)
        try:
            values = json.loads(path.read_text())
        except OSError as exc:
            raise InputError(f"--config {args.config!r} cannot be read ({exc}).") from None
        except ValueError as exc:
            raise InputError(f"--config {args.config!r} is not valid JSON ({exc}).") from None
        values = values.get("config", values)  # a run's config.json nests it
    for dest, key in _FLAGS.items():
        v = getattr(args, dest, None)
        if v is not None:
            values[key] = v
    if args.model_kwarg:
        values["model_kwargs"] = {**values.get("model_kwargs", {}), **_kwargs(args.model_kwarg)}
    return TrainConfig.from_dict(values)


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
    config = config_from_args(args)
    if args.seeds is not None:
        if args.seeds < 1:
            raise InputError(f"--seeds must be >= 1; got {args.seeds}.")
        runs = train_seeds(config, args.out, range(config.seed, config.seed + args.seeds),
                           force=args.force, progress=args.progress, workers=args.workers)
    else:
        runs = [train(config, args.out, force=args.force, progress=args.progress)]
    for r in runs:
        status = json.loads((r / "run.json").read_text())
        print(f"{r}: test_acc {status['test_acc']:.4f}  train_acc {status['train_acc']:.4f}  "
              f"{status['seconds']:.1f} s")
    return 0
