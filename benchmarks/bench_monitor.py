"""Cost of one TopologyMonitor call for typical layer sizes, against one training step.

Run:  PYTHONPATH=src python benchmarks/bench_monitor.py [--repeats 3] [--threads 1]

Prints, per layer size, the median seconds of ``TopologyMonitor.analyze_now`` and
its ratio to the median seconds of one training step of the paper's MNIST net
(batch 32) measured in the same run, plus the machine. The ratio tells how often
monitoring is affordable: a call costing R steps every N steps adds R/N to training.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def _median_time(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-landmarks", type=int, default=200)
    ap.add_argument("--max-points", type=int, default=5000)
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from filtertopo.training import TopologyMonitor, create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = create_model("mnist_net")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))

    def step():
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()

    step()  # warm-up
    t_step = _median_time(step, max(10, args.repeats * 5))
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; torch {torch.__version__}, threads {args.threads}")
    print(f"baseline: one mnist_net training step (batch 32): {t_step * 1e3:.1f} ms")
    print(f"monitor: n_landmarks={args.n_landmarks}, max_points={args.max_points}, "
          "k=min(200, max(5, n/10)), p=0.3; median of "
          f"{args.repeats} calls after a warm-up call\n")
    sizes = [("mnist_net conv1", 64, 1), ("mnist_net conv2", 32, 64), ("vgg conv 64x64", 64, 64),
             ("vgg conv 128x128", 128, 128), ("vgg conv 256x256", 256, 256),
             ("vgg conv 512x512", 512, 512)]
    print(f"{'layer':20s} {'filters':>8s} {'seconds':>8s} {'x step':>8s}")
    warm = True
    for label, cout, cin in sizes:
        model = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3))
        mon = TopologyMonitor(model, layers="1", every=1, n_landmarks=args.n_landmarks,
                              max_points=args.max_points, tensorboard=False)
        if warm:  # first call pays imports and JIT warm-up
            t0 = time.perf_counter()
            mon.analyze_now(0)
            print(f"(first call incl. imports: {time.perf_counter() - t0:.2f} s)")
            warm = False
        mon.analyze_now(0)
        t = _median_time(lambda: mon.analyze_now(0), args.repeats)
        print(f"{label:20s} {cout * cin:8d} {t:8.3f} {t / t_step:8.1f}")


if __name__ == "__main__":
    main()
