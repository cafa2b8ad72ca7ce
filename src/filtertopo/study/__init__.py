"""Studies of many trained networks: what their filters' topology says about generalisation.

- :mod:`~filtertopo.study.shifted`: shifted test sets built offline (:func:`load_shifted`,
  :data:`SHIFTED`, :func:`evaluate_shifted`);
- :mod:`~filtertopo.study.compare`: distances between the diagrams of two networks
  (:func:`compare`);
- :mod:`~filtertopo.study.features`: per-run topology features, baselines and controls;
- :mod:`~filtertopo.study.stats`: Kendall tau with bootstrap intervals, the granulated
  Kendall coefficient, the conditional-mutual-information score, partial tau and grouped
  cross-validated prediction (docs/studies_stats.md);
- :mod:`~filtertopo.study.run`: ``filtertopo study DIR --out STUDY`` end to end.

Nothing here imports torch at module level; ``import filtertopo`` never imports this package.
"""

from .shifted import SHIFTED, ShiftedData, evaluate_shifted, generalisation_gap, load_shifted

__all__ = ["SHIFTED", "ShiftedData", "load_shifted", "evaluate_shifted", "generalisation_gap"]
