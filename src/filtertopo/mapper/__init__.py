"""Mapper graphs of filter spaces (Singh, Mémoli & Carlsson 2007; Gabrielsson & Carlsson 2019 §3)."""

from ._graph import MapperGraph, cover_intervals, global_scale, mapper_graph, pca_lens

__all__ = ["MapperGraph", "mapper_graph", "cover_intervals", "global_scale", "pca_lens"]
