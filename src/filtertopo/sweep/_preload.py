"""Imported once by the fork server of a local sweep pool, so that its workers start with torch,
the trainer and the analysis already imported (forked from it: no per-worker import).

Nothing here runs a torch operation: the server's OpenMP thread pool is never started, so the
forked workers may use any number of threads.
"""

import torch  # noqa: F401
import torch.optim  # noqa: F401

from .. import pipeline  # noqa: F401
from ..training import data, loop  # noqa: F401
from . import worker  # noqa: F401

try:  # what the first optimizer step and the offline data sets import lazily
    import sklearn.datasets  # noqa: F401
    import torch._dynamo  # noqa: F401
except Exception:  # pragma: no cover - only a speed-up
    pass
