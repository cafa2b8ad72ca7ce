import numpy as np
import pytest


def primary_circle_filters(n, *, seed=0, noise=0.1, kernel=3):
    """Raw k x k filters on the primary circle with random scale, offset and pixel noise."""
    rng = np.random.default_rng(seed)
    c = np.linspace(-1, 1, kernel)
    th = rng.uniform(0, 2 * np.pi, n)
    P = np.cos(th)[:, None, None] * c[None, None, :] + np.sin(th)[:, None, None] * c[None, :, None]
    P = P.reshape(n, kernel * kernel)
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    P = P + rng.normal(0, noise, P.shape)
    return P * rng.uniform(0.2, 5.0, (n, 1)) + rng.normal(0, 3.0, (n, 1)), th


@pytest.fixture
def circle_filters():
    return primary_circle_filters


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
