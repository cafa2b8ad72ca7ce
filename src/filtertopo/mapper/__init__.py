"""Mapper graphs of filter spaces (Singh, Mémoli & Carlsson 2007; Gabrielsson & Carlsson 2019 §3)."""

from ._graph import (
    AUTO_MAX_INTERVALS,
    AUTO_POINTS_PER_CELL,
    MAX_NERVE_SIMPLICES,
    PAPER_N_INTERVALS,
    MapperGraph,
    auto_n_intervals,
    cover_intervals,
    global_scale,
    mapper_graph,
    pca_lens,
)

__all__ = ["MapperGraph", "mapper_graph", "cover_intervals", "global_scale", "pca_lens",
           "auto_n_intervals", "AUTO_MAX_INTERVALS", "AUTO_POINTS_PER_CELL",
           "MAX_NERVE_SIMPLICES", "PAPER_N_INTERVALS"]
