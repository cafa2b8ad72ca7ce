"""GPU path check (run on a CUDA machine): train, monitor and analyse on the GPU.

1. The same seed gives the same initial weights on the CPU and on CUDA.
2. The paper's MNIST net trains on CUDA (snapshots, metrics, kernels on disk).
3. The TopologyMonitor analyses a model that lives on the GPU and logs to TensorBoard.
4. The pooled first layers of the CUDA-trained nets are tracked over training.
Prints timings against the CPU for one epoch, measured in the same run.

    python benchmarks/gpu_check.py OUT_DIR [--nets 8] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from filtertopo import load_kernels
from filtertopo.training import TopologyMonitor, TrainConfig, create_model, track, train


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--nets", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--device", default="cuda", help="cpu only for a dry run of this script")
    args = ap.parse_args()
    out = Path(args.out)
    dev_ = args.device
    if dev_ == "cuda":
        assert torch.cuda.is_available(), "no CUDA device"
        print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)

    base = TrainConfig(model="mnist_net", dataset="mnist_subset", epochs=0, snapshot_every=125, threads=4)
    a = train(base.replace(device="cpu"), out / "init_cpu", progress=False)
    b = train(base.replace(device=dev_), out / "init_cuda", progress=False)
    ka = load_kernels(a / "snapshots" / "step_000000.npz").kernels
    kb = load_kernels(b / "snapshots" / "step_000000.npz").kernels
    same = all(np.array_equal(ka[n], kb[n]) for n in ka)
    print(f"1. initial weights identical on cpu and cuda: {same}")

    timing = {}
    for dev in ("cpu", dev_):
        t = time.perf_counter()
        train(base.replace(device=dev, epochs=1, snapshot_every=0), out / f"epoch_{dev}", progress=False, force=True)
        timing[dev] = time.perf_counter() - t
    print(f"   one epoch: cpu {timing['cpu']:.1f} s, {dev_} {timing[dev_]:.1f} s, "
          f"ratio {timing['cpu'] / timing[dev_]:.1f}x")

    t = time.perf_counter()
    runs = []
    for s in range(args.nets):
        runs.append(train(base.replace(device=dev_, epochs=args.epochs, seed=s), out / "runs" / f"seed_{s:03d}",
                          progress=False))
    accs = [json.loads((r / "run.json").read_text())["test_acc"] for r in runs]
    devs = {json.loads((r / "run.json").read_text())["device"] for r in runs}
    print(f"2. trained {args.nets} nets x {args.epochs} epochs on {devs} in {time.perf_counter() - t:.1f} s; "
          f"test accuracy {np.mean(accs):.3f} (min {min(accs):.3f})")

    model = create_model("mnist_net").to(dev_)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    mon = TopologyMonitor(model, every=50, log_dir=out / "monitor", tensorboard=None)
    mon.attach(opt)
    x = torch.randn(64, 1, 28, 28, device=dev_)
    y = torch.randint(0, 10, (64,), device=dev_)
    for _ in range(101):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    events = list((out / "monitor").glob("events.out.tfevents*"))
    print(f"3. monitor on a cuda model: {len(mon.history_)} rows, tensorboard files {len(events)}, "
          f"csv {(out / 'monitor' / 'monitor.csv').exists()}")

    t = time.perf_counter()
    tr = track(runs, layers="conv1", k=min(200, 64 * args.nets // 5), p=0.3, progress=False,
               out=out / "track", force=True)
    table = tr.table if hasattr(tr, "table") else tr
    print(f"4. tracked {len(runs)} runs in {time.perf_counter() - t:.1f} s")
    print(table.to_string() if hasattr(table, "to_string") else table)


if __name__ == "__main__":
    main()
