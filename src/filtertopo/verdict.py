"""The verdict of one layer: which shape its persistence diagrams describe.

Rules (Gabrielsson & Carlsson 2019, arXiv 1810.03234; Carlsson et al. 2008; README "Verdicts"):

1. **Significant H1 bars** over the primary field (the first key of
   ``diagrams_by_coeff``) are counted by the largest multiplicative gap among the
   longest bars (:func:`filtertopo.homology.count_significant`: a bar must be at least
   ``min_persistence`` long and ``min_ratio`` times the next one). 0 bars: ``"none"``;
   1: a loop; 5: ``"three-circle"``; any other count: ``"multiple"``.
2. **Klein bottle** by the change of coefficients, when Z/2 and Z/3 diagrams with H2 are
   both given: over Z/2 two significant H1 bars, over Z/3 one; the second H1 bar and the
   top H2 bar over Z/2 are each at least ``field_ratio`` times their Z/3 counterparts
   (the classes that only exist with Z/2 coefficients), and the Z/2 H2 bar is at least
   ``min_persistence`` long. Label ``"klein-bottle"``. With only Z/2, two H1 bars plus one
   H2 bar is reported as ``"multiple"`` with a reason suggesting ``coeff=(2, 3)``.
3. **Continuous circle or clusters**: one H1 bar is also produced by a few tight clusters
   placed around a loop (edges at only 4 or 8 orientations). The loop is called a
   ``"circle"`` only when

   * H0 does not split the core into 3 or more clusters: a gap (same rule as 1, ratio
     ``cluster_ratio``) among the finite H0 bars that separates ``n_clusters - 1`` long
     bars from the short ones, and
   * the angle around the loop does not have 3 or more empty arcs wider than
     ``max_angle_gap`` (22.5 degrees, half the spacing of 8 orientations) that together
     cover at least ``max_empty`` (three quarters) of the circle. The angle is ``theta`` when
     given (e.g. the circular coordinate of :mod:`filtertopo.circular`), else the angle
     in the plane of the first two principal components of ``core_points``. A few wide
     arcs covering a small part of the circle are thin stretches of a continuous loop
     (the dense core thins out at rarer orientations, and a small core has random
     gaps); tight clusters leave one arc between every pair of neighbours, and the
     arcs cover most of the circle.

   Otherwise the label is ``"clusters"``. Without ``core_points`` and ``theta`` only
   the H0 test is used.

Persistence is measured in chord distance on the unit sphere of normalised filters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError
from .homology import _lengths, count_significant

__all__ = ["Verdict", "layer_verdict", "angular_gap", "LABELS"]

#: Every label :func:`layer_verdict` can return.
LABELS = ("none", "primary-circle", "circle", "arc", "clusters", "three-circle", "klein-bottle", "multiple",
          "too-few")


@dataclass(frozen=True)
class Verdict:
    """What shape a layer's diagrams show, and why.

    Attributes
    ----------
    label : str
        One of :data:`LABELS`.
    n_significant : int
        Significant H1 bars over the primary field.
    coeff : int
        The primary field.
    h1_top : tuple of float
        Longest finite H1 persistences over the primary field, longest first (up to 6).
    gap_ratio : float
        ``l_n / l_{n+1}`` at the chosen count (``l_1 / l_2`` when no bar is significant).
    n_clusters : int or None
        Clusters found in H0 (1 = connected at small scale); None when not checked.
    angular_gap : float or None
        Widest gap in radians of the angle around the loop; None when not computed.
    n_angle_gaps : int or None
        Empty arcs wider than ``max_angle_gap``; None when not computed.
    continuous : bool or None
        Whether a single loop is a continuous circle; None unless exactly one H1 bar.
    klein : bool or None
        Whether the Z/2-versus-Z/3 Klein-bottle signature holds; None when not testable.
    reasons : tuple of str
        One sentence per rule applied, with its numbers.
    """

    label: str
    n_significant: int
    coeff: int
    h1_top: tuple
    gap_ratio: float
    n_clusters: int | None
    angular_gap: float | None
    n_angle_gaps: int | None
    continuous: bool | None
    klein: bool | None
    reasons: tuple

    def to_dict(self) -> dict:
        """JSON-able dict of all fields."""
        d = asdict(self)
        d["h1_top"], d["reasons"] = list(self.h1_top), list(self.reasons)
        return d


def _nth(lengths, i) -> float:
    return float(lengths[i]) if len(lengths) > i else 0.0


def _gaps(theta) -> np.ndarray:
    t = np.sort(np.mod(np.asarray(theta, dtype=float).ravel(), 2 * np.pi))
    if len(t) == 0:
        return np.array([2 * np.pi])
    return np.diff(np.append(t, t[0] + 2 * np.pi))


def angular_gap(theta) -> float:
    """Widest empty arc, in radians, between sorted angles on the circle.

    Examples
    --------
    >>> round(angular_gap([0.0, np.pi / 2, np.pi, 3 * np.pi / 2]), 4)
    1.5708
    """
    return float(np.max(_gaps(theta)))


def _pca_angle(points) -> np.ndarray:
    X = np.asarray(points, dtype=float)
    X = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    P = X @ vt[:2].T
    return np.arctan2(P[:, 1], P[:, 0])


def _as_by_coeff(diagrams_by_coeff) -> dict:
    if not isinstance(diagrams_by_coeff, dict) or not diagrams_by_coeff:
        raise InputError("diagrams_by_coeff must be a non-empty dict {coeff: {dim: (m, 2) array}}; "
                         f"got {type(diagrams_by_coeff).__name__}.")
    first = next(iter(diagrams_by_coeff.values()))
    if not isinstance(first, dict):  # a single field's {dim: diagram}: assume Z/2
        return {2: diagrams_by_coeff}
    return diagrams_by_coeff


def layer_verdict(diagrams_by_coeff, core_points=None, *, theta=None, edge_theta=None, frac_primary=None,
                  min_persistence: float = 0.15, min_ratio: float = 2.0, cluster_ratio: float = 2.0,
                  max_angle_gap: float = np.pi / 8, max_empty: float = 0.75, max_arc: float = 2 * np.pi / 3,
                  field_ratio: float = 1.5, min_agreement: float = 0.8,
                  min_frac_primary: float = 0.5) -> Verdict:
    """Label a layer from its persistence diagrams (rules in the module docstring).

    Parameters
    ----------
    diagrams_by_coeff : dict of int -> dict of int -> ndarray of shape (m, 2)
        ``{coeff: {dim: diagram}}`` as in ``LayerResult.diagrams_by_coeff``; the first key
        is the primary field. A bare ``{dim: diagram}`` is read as Z/2.
    core_points : ndarray of shape (n_core, d), optional
        The core the diagrams were computed on (for the angular-coverage test).
    theta : ndarray of shape (n_core,), optional
        A circle-valued coordinate of the core (overrides the PCA angle).
    min_persistence, min_ratio : float, default=0.15, 2.0
        Significance rule for H1 (and H2) bars.
    cluster_ratio : float, default=2.0
        Gap ratio in the finite H0 bars that marks clusters.
    max_angle_gap : float, default=pi/8
        Empty arcs (radians) wider than this count as gaps.
    max_empty : float, default=0.75
        Fraction of the circle that 3 or more gaps must cover to make clusters.
    field_ratio : float, default=1.5
        How much longer a Z/2-only class must be over Z/2 than over Z/3.
    edge_theta : ndarray of shape (n_core,), optional
        Edge angle of each core filter (``filtertopo.shapes.fit_shapes(...).theta``).
    frac_primary : float, optional
        Fraction of the core near the primary circle (``shape_fractions``).
    max_arc : float, default=2*pi/3
        A loop whose angle leaves one empty arc wider than this (a third of the circle)
        is an ``"arc"``, not a continuous circle.
    min_agreement, min_frac_primary : float, default=0.8, 0.5
        The primary-circle test: circular coordinate and edge angle agree up to rotation
        and reflection at least this much, and at least this fraction of the core lies
        near the primary circle.

    Returns
    -------
    Verdict

    Examples
    --------
    >>> t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    >>> dg = {0: np.array([[0, 0.1]] * 59 + [[0, np.inf]]), 1: np.array([[0.1, 1.7], [0.2, 0.25]])}
    >>> layer_verdict({2: dg}, np.c_[np.cos(t), np.sin(t)]).label
    'circle'
    """
    by = _as_by_coeff(diagrams_by_coeff)
    prim = next(iter(by))
    dg = by[prim]
    if 1 not in dg:
        raise InputError(f"diagrams over Z/{prim} have no H1 (dimension 1); compute with maxdim >= 1.")
    rule = dict(min_persistence=min_persistence, min_ratio=min_ratio)
    l1 = _lengths(dg[1])
    n = count_significant(l1, **rule)
    gap = _nth(l1, max(n, 1) - 1) / max(_nth(l1, max(n, 1)), 1e-3) if len(l1) else 0.0
    reasons = [f"Z/{prim}: {n} significant H1 bar(s) (top {np.round(l1[:6], 3).tolist()}, "
               f"gap ratio {gap:.2f}; rule: >= {min_persistence} and >= {min_ratio}x the next)"]
    klein = None
    if 2 in by and 3 in by:
        if 2 in by[2] and 2 in by[3]:
            a1, b1 = _lengths(by[2][1]), _lengths(by[3][1])
            a2, b2 = _lengths(by[2][2]), _lengths(by[3][2])
            na, nb = count_significant(a1, **rule), count_significant(b1, **rule)
            klein = bool(na == 2 and nb == 1 and _nth(a2, 0) >= min_persistence
                         and _nth(a2, 0) >= field_ratio * _nth(b2, 0)
                         and _nth(a1, 1) >= field_ratio * _nth(b1, 1))
            reasons.append(
                f"Klein test: Z/2 H1 {na} bar(s), H2 top {_nth(a2, 0):.3f}; Z/3 H1 {nb} bar(s), H2 top "
                f"{_nth(b2, 0):.3f}; second H1 Z/2 {_nth(a1, 1):.3f} vs Z/3 {_nth(b1, 1):.3f} -> "
                + ("Klein-bottle signature" if klein else "no Klein-bottle signature"))
        else:
            reasons.append("Klein test skipped: H2 not computed (use maxdim=2 with coeff=(2, 3))")
    if klein:
        return Verdict("klein-bottle", n, int(prim), tuple(map(float, l1[:6])), float(gap),
                       None, None, None, None, True, tuple(reasons))
    n_clusters = ang = n_gaps = continuous = None
    if n == 0:
        label = "none"
    elif n == 5:
        label = "three-circle"
    elif n != 1:
        label = "multiple"
        l2 = _lengths(dg[2]) if 2 in dg else np.zeros(0)
        if n == 2 and klein is None and _nth(l2, 0) >= max(min_persistence, field_ratio * _nth(l2, 1)):
            reasons.append("two H1 bars and one H2 bar: a torus or a Klein bottle; "
                           "rerun with coeff=(2, 3) and maxdim=2 to tell them apart")
    else:
        l0 = _lengths(dg[0]) if 0 in dg else np.zeros(0)
        n_clusters = 1 + (count_significant(l0, min_persistence=min_persistence, min_ratio=cluster_ratio,
                                            max_bars=min(64, len(l0) - 1)) if len(l0) >= 2 else 0)
        reasons.append(f"H0: {n_clusters} cluster(s) (longest finite H0 bars "
                       f"{np.round(l0[:4], 3).tolist()}; gap rule {cluster_ratio}x)")
        primary, agree = False, None
        if edge_theta is not None and frac_primary is not None:
            fp = float(frac_primary)
            primary = bool(fp >= min_frac_primary)
            if theta is not None and len(theta) == len(edge_theta):
                from .circular import circular_agreement

                agree = circular_agreement(np.asarray(theta, float), np.asarray(edge_theta, float))
            reasons.append(f"primary-circle test: {fp:.0%} of the core near the primary circle (rule >= "
                           f"{min_frac_primary:.0%})" + ("" if agree is None else
                                                          f", circular coordinate vs edge angle agreement "
                                                          f"{agree:.2f}") + " -> "
                           + ("edges: the loop is read by their edge angle" if primary
                              else "not the primary circle"))
        g = None
        if primary:
            g, src = _gaps(edge_theta), "edge angle"
        elif theta is not None:
            g, src = _gaps(theta), "circular coordinate"
        elif core_points is not None and len(core_points) >= 3:
            g, src = _gaps(_pca_angle(core_points)), "angle in the first two principal components"
        empty = 0.0
        if g is not None:
            m = len(g)
            # an arc counts as empty when wider than max_angle_gap and than 3 mean spacings of m
            # uniform points (a uniform sample leaves arcs that wide over about 20% of the circle)
            cut = max(max_angle_gap, 3 * 2 * np.pi / max(m, 1))
            ang, n_gaps = float(g.max()), int(np.sum(g > cut))
            empty = float(g[g > cut].sum() / (2 * np.pi))
            reasons.append(f"{src}: {n_gaps} empty arc(s) wider than {np.degrees(cut):.1f} deg "
                           f"(max of {np.degrees(max_angle_gap):.1f} and 3 mean spacings of {m} points), widest "
                           f"{np.degrees(ang):.1f} deg, covering {empty:.0%} of the circle (clusters leave >= 3 "
                           f"covering >= {max_empty:.0%}; one arc > {np.degrees(max_arc):.0f} deg is a partial loop)")
        clustered = bool(n_clusters >= 3 or (n_gaps is not None and n_gaps >= 3 and empty >= max_empty))
        partial = bool(not clustered and ang is not None and ang > max_arc)
        continuous = not clustered and not partial
        if clustered:
            label = "clusters"
            reasons.append("one H1 bar, but the loop is a few tight clusters, not a continuous circle")
        elif partial:
            label = "arc"
            reasons.append(f"one H1 bar, but the filters leave an empty arc of {np.degrees(ang):.0f} deg: "
                           "they cover part of a loop, not a continuous circle")
        else:
            label = "primary-circle" if primary else "circle"
            reasons.append("a continuous loop of rotating edges: the primary circle" if primary else
                           "a continuous loop that is not the primary circle (a 'complex circle')"
                           if edge_theta is not None else "a continuous loop (primary-circle test not run: "
                           "needs filters with a square odd kernel and a circular coordinate)")
    return Verdict(label, n, int(prim), tuple(map(float, l1[:6])), float(gap), n_clusters,
                   ang, n_gaps, continuous, klein, tuple(reasons))
