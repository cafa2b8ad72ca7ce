"""Synthetic checkpoints with known structure, for benchmarks (not shipped data)."""

from __future__ import annotations

import numpy as np

#: VGG16's 13 conv layers: (name, C_out, C_in), 3x3 kernels (1.63 million spatial filters).
VGG16_CONVS = [("features.0", 64, 3), ("features.2", 64, 64), ("features.5", 128, 64),
               ("features.7", 128, 128), ("features.10", 256, 128), ("features.12", 256, 256),
               ("features.14", 256, 256), ("features.17", 512, 256), ("features.19", 512, 512),
               ("features.21", 512, 512), ("features.24", 512, 512), ("features.26", 512, 512),
               ("features.28", 512, 512)]


def primary_circle(n, rng, noise=0.25):
    c = np.array([-1.0, 0.0, 1.0])
    th = rng.uniform(0, 2 * np.pi, n)
    P = (np.cos(th)[:, None, None] * c[None, None, :] + np.sin(th)[:, None, None] * c[None, :, None])
    P = P.reshape(n, 9) / np.sqrt(6)
    return (P + rng.normal(0, noise / 3, (n, 9))) * rng.uniform(0.01, 0.1, (n, 1))


def vgg16_kernels(seed=0, circle_fraction=0.5):
    """13 kernels shaped like VGG16's, a fraction of each on the primary circle, the rest Gaussian."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, co, ci in VGG16_CONVS:
        n = co * ci
        m = int(circle_fraction * n)
        F = np.concatenate([primary_circle(m, rng), rng.normal(0, 0.05, (n - m, 9))])
        out[f"{name}.weight"] = F[rng.permutation(n)].reshape(co, ci, 3, 3).astype(np.float32)
    return out
