"""A small analysed model (two conv layers) shared by the report tests."""

import numpy as np


def small_result():
    from filtertopo.pipeline import analyze

    rng = np.random.default_rng(0)
    n = 64 * 8
    th = rng.uniform(0, 2 * np.pi, n)
    c = np.array([-1.0, 0, 1])
    P = (np.cos(th)[:, None, None] * c + np.sin(th)[:, None, None] * c[:, None]).reshape(n, 9)
    P = (P + 0.05 * rng.standard_normal(P.shape)) * rng.uniform(0.1, 1, (n, 1))
    kernels = {"conv1.weight": P.reshape(64, 8, 3, 3).astype(np.float32),
               "conv2.weight": rng.normal(size=(16, 8, 5, 5)).astype(np.float32)}
    return analyze(kernels, k=20, p=0.3, max_points=2000, n_landmarks=150)
