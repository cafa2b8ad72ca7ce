"""Reference shapes of spatial filters and the distance of filters to them.

The shapes are those of Carlsson et al. (IJCV 2008) and Love et al. (JMLR 2023),
written for any odd kernel size k on the square [-1, 1]^2 split into k x k pixels
(row index i <-> y, column index j <-> x, rows flattened row-major):

* primary circle   P(theta)   = x cos(theta) + y sin(theta),            theta in [0, 2 pi)
* secondary circle S_x(phi)   = x sin(phi) + (2 x^2 - 1) cos(phi)      (and S_y with y)
* three-circle model           = primary u secondary_x u secondary_y (beta_1 = 5)
* Klein bottle     F(t1, t2)  = u sin(t2) + (2 u^2 - 1) cos(t2),  u = x cos(t1) + y sin(t1),
  t1 in [0, pi), t2 in [0, 2 pi); t2 = pi/2 is the primary circle, t1 in {0, pi/2} the
  secondary circles; (t1 + pi, t2) is the point (t1, -t2).

Every filter is mean-centred and scaled to unit Euclidean norm. ``sampling="pixel"``
integrates each function exactly over each pixel (the 3x3 case is the KF formula of
Love et al., "Topological Convolutional Layers for Deep Learning", JMLR 2023); ``sampling="point"`` evaluates it at the pixel centres linspace(-1, 1, k).
The two differ only in the relative scale of the linear and quadratic parts, so the
shapes are the *same sets* of unit vectors and distances agree; only (phi, t2) are
reparametrised.

Distances are chord distances on the unit sphere of zero-mean filters. For fixed t1
the Klein bottle is a great circle in span(u, 2u^2 - 1), so the nearest point and its
distance sqrt(2 - 2 |proj|) are closed form; the search over t1 is a fine grid plus a
bounded ``scipy.optimize.minimize_scalar`` refinement. Primary and secondary circles are
single great circles: closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = [
    "SHAPES", "ShapeSample", "ShapeFit", "kernel_size", "primary_filters",
    "secondary_filters", "klein_filters", "sample_shape", "fit_shapes", "shape_fractions",
    "DEFAULT_TOL", "best_shape",
]

#: Default chord distance for :func:`shape_fractions` (about 29 degrees on the sphere).
#: For isotropic Gaussian 3x3 filters the fraction within 0.5 of the primary circle is about 1.3%.
DEFAULT_TOL = 0.5

#: Names accepted by :func:`sample_shape`.
SHAPES = ("primary", "secondary_x", "secondary_y", "three_circle", "klein")


def kernel_size(kernel_shape) -> int:
    """Validate a kernel shape for shape fitting and return its odd side k >= 3.

    Parameters
    ----------
    kernel_shape : int or tuple of two ints
        ``k`` or ``(kh, kw)``; must be square and odd with k >= 3.

    Examples
    --------
    >>> kernel_size((5, 5))
    5
    """
    ks = (kernel_shape, kernel_shape) if np.isscalar(kernel_shape) else tuple(kernel_shape)
    if len(ks) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in ks):
        raise InputError(f"kernel_shape must be an int k or a pair (kh, kw) of ints; got {kernel_shape!r}.")
    kh, kw = int(ks[0]), int(ks[1])
    if kh != kw or kh < 3 or kh % 2 == 0:
        raise InputError(
            f"kernel_shape must be square and odd with side >= 3 to fit the reference shapes "
            f"(edges and lines need a centre pixel and two sides); got {(kh, kw)}. "
            "Shape columns are left out for such layers; analyse their topology without shapes."
        )
    return kh


def _check_sampling(sampling):
    if sampling not in ("pixel", "point"):
        raise InputError(f"sampling must be 'pixel' or 'point'; got {sampling!r}.")


def _moments(k: int, sampling: str):
    """Per-pixel moments (m0, m1, m2) of the coordinate along one axis, each shape (k,)."""
    if sampling == "point":
        c = np.linspace(-1.0, 1.0, k)
        return np.ones(k), c, c ** 2
    e = np.linspace(-1.0, 1.0, k + 1)
    a, b = e[:-1], e[1:]
    return b - a, (b ** 2 - a ** 2) / 2, (b ** 3 - a ** 3) / 3


def _basis(k: int, sampling: str, theta1):
    """Unnormalised linear and centred quadratic parts L(t1), Q(t1), each (m, k*k)."""
    m0, m1, m2 = _moments(k, sampling)
    t = np.atleast_1d(np.asarray(theta1, dtype=float))
    c, s = np.cos(t)[:, None, None], np.sin(t)[:, None, None]
    # grids indexed [i (y), j (x)]: the pixel integral of x^a y^b is my_b[i] * mx_a[j]
    X1, Y1 = np.outer(m0, m1), np.outer(m1, m0)
    X2, Y2, XY = np.outer(m0, m2), np.outer(m2, m0), np.outer(m1, m1)
    One = np.outer(m0, m0)
    L = c * X1 + s * Y1
    Q = 2 * (c ** 2 * X2 + 2 * c * s * XY + s ** 2 * Y2) - One
    L = L.reshape(len(t), -1)
    Q = Q.reshape(len(t), -1)
    L = L - L.mean(axis=1, keepdims=True)
    Q = Q - Q.mean(axis=1, keepdims=True)
    return L, Q


def _unit(F):
    F = F - F.mean(axis=-1, keepdims=True)
    return F / np.linalg.norm(F, axis=-1, keepdims=True)


def klein_filters(theta1, theta2, k: int = 3, *, sampling: str = "pixel") -> np.ndarray:
    """Klein-bottle filters F(theta1, theta2), mean-centred and unit norm.

    Parameters
    ----------
    theta1, theta2 : array-like of shape (n,)
        Orientation in [0, pi) (any real is accepted) and position on the
        line/edge circle in [0, 2 pi).
    k : int, default=3
        Odd kernel side >= 3.
    sampling : {"pixel", "point"}, default="pixel"

    Returns
    -------
    ndarray of shape (n, k*k)

    Examples
    --------
    >>> bool(np.allclose(klein_filters([0.3], [np.pi / 2]), primary_filters([0.3])))
    True
    """
    _check_sampling(sampling)
    k = kernel_size(k)
    t1 = np.atleast_1d(np.asarray(theta1, dtype=float))
    t2 = np.broadcast_to(np.atleast_1d(np.asarray(theta2, dtype=float)), t1.shape)
    L, Q = _basis(k, sampling, t1)
    return _unit(np.sin(t2)[:, None] * L + np.cos(t2)[:, None] * Q)


def primary_filters(theta, k: int = 3, *, sampling: str = "pixel") -> np.ndarray:
    """Primary-circle filters x cos(theta) + y sin(theta), shape (n, k*k), unit norm.

    Examples
    --------
    >>> (primary_filters([0.0]).reshape(3, 3) * np.sqrt(6)).round(6)[0] + 0.0
    array([-1.,  0.,  1.])
    """
    _check_sampling(sampling)
    k = kernel_size(k)
    L, _ = _basis(k, sampling, np.atleast_1d(np.asarray(theta, dtype=float)))
    return _unit(L)


def secondary_filters(phi, axis: str = "x", k: int = 3, *, sampling: str = "pixel") -> np.ndarray:
    """Secondary-circle filters v sin(phi) + (2 v^2 - 1) cos(phi), v = x or y; (n, k*k)."""
    if axis not in ("x", "y"):
        raise InputError(f"axis must be 'x' or 'y'; got {axis!r}.")
    phi = np.atleast_1d(np.asarray(phi, dtype=float))
    t1 = np.zeros_like(phi) if axis == "x" else np.full_like(phi, np.pi / 2)
    return klein_filters(t1, phi, k, sampling=sampling)


@dataclass(frozen=True)
class ShapeSample:
    """Filters sampled from a reference shape.

    Attributes
    ----------
    points : ndarray of shape (n, k*k)
        Unit-norm, zero-mean filters (noise added before normalising).
    params : ndarray of shape (n, 2)
        (theta1, theta2) on the Klein bottle for every sample (primary: (theta mod pi, ...)).
    component : ndarray of shape (n,)
        Index of the circle in the three-circle model (0 primary, 1 x, 2 y), else 0.
    shape : str
    k : int
    """

    points: np.ndarray
    params: np.ndarray
    component: np.ndarray
    shape: str
    k: int


def sample_shape(shape: str, n: int, *, k: int = 3, sampling: str = "pixel",
                 noise: float = 0.0, seed=0) -> ShapeSample:
    """Sample n filters uniformly in the parameters of a reference shape.

    Parameters
    ----------
    shape : {"primary", "secondary_x", "secondary_y", "three_circle", "klein"}
    n : int
    k : int, default=3
        Odd kernel side >= 3.
    sampling : {"pixel", "point"}, default="pixel"
    noise : float, default=0.0
        Standard deviation of isotropic Gaussian noise added to each unit filter
        before it is mean-centred and normalised again.
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    ShapeSample

    Examples
    --------
    >>> s = sample_shape("klein", 100, k=5, seed=1)
    >>> s.points.shape, np.allclose(np.linalg.norm(s.points, axis=1), 1)
    ((100, 25), True)
    """
    if shape not in SHAPES:
        raise InputError(f"shape must be one of {SHAPES}; got {shape!r}.")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n must be a positive integer; got {n!r}.")
    k = kernel_size(k)
    rng = np.random.default_rng(seed)
    u = rng.uniform(0, 2 * np.pi, n)
    comp = np.zeros(n, dtype=int)
    if shape == "primary":
        t1, t2 = np.mod(u, np.pi), np.where(u < np.pi, np.pi / 2, -np.pi / 2)
    elif shape == "secondary_x":
        t1, t2 = np.zeros(n), u
    elif shape == "secondary_y":
        t1, t2 = np.full(n, np.pi / 2), u
    elif shape == "three_circle":
        comp = rng.integers(0, 3, n)
        t1 = np.where(comp == 0, np.mod(u, np.pi), np.where(comp == 1, 0.0, np.pi / 2))
        t2 = np.where(comp == 0, np.where(u < np.pi, np.pi / 2, -np.pi / 2), u)
    else:
        t1, t2 = rng.uniform(0, np.pi, n), u
    F = klein_filters(t1, t2, k, sampling=sampling)
    if noise:
        F = _unit(F + rng.normal(0.0, noise, F.shape))
    return ShapeSample(points=F, params=np.column_stack([t1, np.mod(t2, 2 * np.pi)]),
                       component=comp, shape=shape, k=k)


@dataclass(frozen=True)
class ShapeFit:
    """Distance of every filter to each reference shape, and its parameters there.

    All distances are chord distances between unit vectors (0 on the shape, at most 2).

    Attributes
    ----------
    dist_primary, theta : ndarray of shape (n,)
        Distance to the primary circle and the angle theta in [0, 2 pi) of the nearest point.
    dist_secondary_x, phi_x, dist_secondary_y, phi_y : ndarray of shape (n,)
        Same for the two secondary circles (phi in [0, 2 pi)).
    dist_three_circle : ndarray of shape (n,)
        Minimum of the three circle distances.
    dist_klein, theta1, theta2 : ndarray of shape (n,)
        Distance to the Klein bottle and (theta1 in [0, pi), theta2 in [0, 2 pi)).
    """

    dist_primary: np.ndarray
    theta: np.ndarray
    dist_secondary_x: np.ndarray
    phi_x: np.ndarray
    dist_secondary_y: np.ndarray
    phi_y: np.ndarray
    dist_three_circle: np.ndarray
    dist_klein: np.ndarray
    theta1: np.ndarray
    theta2: np.ndarray


def _prepare(points, kernel_shape, coords):
    k = kernel_size(kernel_shape)
    X = np.asarray(points, dtype=float)
    if X.ndim != 2:
        raise InputError(f"points must be a 2-D array (n, d); got shape {X.shape}.")
    if coords == "auto":
        coords = "dct" if (k == 3 and X.shape[1] == 8) else "pixel"
    if coords == "dct":
        if k != 3 or X.shape[1] != 8:
            raise InputError(f"coords='dct' needs 3x3 kernels and 8 coordinates per point; got k={k}, d={X.shape[1]}.")
        from .normalize import from_dct
        X = from_dct(X)
    elif coords != "pixel":
        raise InputError(f"coords must be 'auto', 'pixel' or 'dct'; got {coords!r}.")
    if X.shape[1] != k * k:
        raise InputError(
            f"points must have k*k = {k * k} values per filter for kernel_shape {kernel_shape!r}; "
            f"got {X.shape[1]}. Pass the kernel shape the filters were flattened from."
        )
    X = X - X.mean(axis=1, keepdims=True)
    nrm = np.linalg.norm(X, axis=1, keepdims=True)
    return k, X / np.where(nrm > 0, nrm, 1.0)


def _circle_fit(X, L, Q):
    """Nearest point on the great circle through unit(L), unit(Q) (L, Q orthogonal)."""
    nl, nq = np.linalg.norm(L, axis=-1), np.linalg.norm(Q, axis=-1)
    a = X @ (L / nl[..., None]).T if L.ndim == 1 else np.einsum("nd,nd->n", X, L / nl[:, None])
    b = X @ (Q / nq[..., None]).T if Q.ndim == 1 else np.einsum("nd,nd->n", X, Q / nq[:, None])
    r = np.hypot(a, b)
    dist = np.sqrt(np.maximum(2 - 2 * r, 0.0))
    # x_near = (a Lhat + b Qhat)/r = lam (sin t L + cos t Q)  =>  sin t ~ a/|L|, cos t ~ b/|Q|
    return dist, np.mod(np.arctan2(a / nl, b / nq), 2 * np.pi)


def _klein_r(X, k, sampling, t1):
    """|projection| of each row of X onto the circle plane at theta1 (scalar or per row)."""
    L, Q = _basis(k, sampling, t1)
    L = L / np.linalg.norm(L, axis=1, keepdims=True)
    Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    if len(L) == 1:
        return np.hypot(X @ L[0], X @ Q[0])
    return np.hypot(X @ L.T, X @ Q.T)  # (n, grid)


def fit_shapes(points, kernel_shape, *, sampling: str = "pixel", coords: str = "auto",
               n_grid: int = 180, refine: bool = True) -> ShapeFit:
    """Distance of each filter to each reference shape, with its parameters there.

    Parameters
    ----------
    points : array-like of shape (n, k*k) or (n, 8)
        Filters in pixel coordinates (mean-centred and normalised here), or for 3x3
        DCT coordinates (``coords="dct"``, or ``"auto"`` with 8 columns).
    kernel_shape : int or (int, int)
        Odd square kernel, side >= 3; anything else raises InputError.
    sampling : {"pixel", "point"}, default="pixel"
        Parametrisation of phi and theta2 (the distances do not depend on it).
    coords : {"auto", "pixel", "dct"}, default="auto"
    n_grid : int, default=180
        Grid of theta1 over [0, pi) before refinement (1 degree).
    refine : bool, default=True
        Refine theta1 per filter with ``scipy.optimize.minimize_scalar`` (bounded,
        one grid step either side of the best grid point).

    Returns
    -------
    ShapeFit

    Examples
    --------
    >>> f = fit_shapes(primary_filters([1.0]), 3)
    >>> round(float(f.theta[0]), 6), bool(f.dist_primary[0] < 1e-7)
    (1.0, True)
    """
    _check_sampling(sampling)
    k, X = _prepare(points, kernel_shape, coords)
    L0, Q0 = _basis(k, sampling, [0.0, np.pi / 2])
    # primary: great circle through the x- and y-edges; |X edge| = |Y edge| by symmetry
    ax, ay = X @ (L0[0] / np.linalg.norm(L0[0])), X @ (L0[1] / np.linalg.norm(L0[1]))
    dp = np.sqrt(np.maximum(2 - 2 * np.hypot(ax, ay), 0.0))
    theta = np.mod(np.arctan2(ay, ax), 2 * np.pi)
    dsx, phx = _circle_fit(X, L0[0], Q0[0])
    dsy, phy = _circle_fit(X, L0[1], Q0[1])
    # Klein bottle: maximise |projection| over theta1
    grid = np.arange(n_grid) * (np.pi / n_grid)
    R = _klein_r(X, k, sampling, grid) if len(X) else np.zeros((0, n_grid))
    best = grid[np.argmax(R, axis=1)] if len(X) else np.zeros(0)
    if refine and len(X):
        from scipy.optimize import minimize_scalar
        step = np.pi / n_grid
        for n in range(len(X)):
            res = minimize_scalar(lambda t: -_klein_r(X[n:n + 1], k, sampling, t)[0],
                                  bounds=(best[n] - step, best[n] + step), method="bounded",
                                  options={"xatol": 1e-7})
            best[n] = res.x
    t1 = np.mod(best, 2 * np.pi)
    L, Q = _basis(k, sampling, t1)
    dk, t2 = _circle_fit(X, L, Q) if len(X) else (np.zeros(0), np.zeros(0))
    # fold theta1 into [0, pi) with (t1 + pi, t2) == (t1, -t2)
    flip = t1 >= np.pi
    t1 = np.where(flip, t1 - np.pi, t1)
    t2 = np.where(flip, np.mod(-t2, 2 * np.pi), t2)
    # the primary circle lies on the Klein bottle (theta2 = pi/2); keep the exact fit if better
    on_p = dp < dk
    t1 = np.where(on_p, np.mod(theta, np.pi), t1)
    t2 = np.where(on_p, np.where(theta < np.pi, np.pi / 2, 3 * np.pi / 2), t2)
    return ShapeFit(dist_primary=dp, theta=theta, dist_secondary_x=dsx, phi_x=phx,
                    dist_secondary_y=dsy, phi_y=phy,
                    dist_three_circle=np.minimum(dp, np.minimum(dsx, dsy)),
                    dist_klein=np.minimum(dk, dp), theta1=t1, theta2=t2)


def shape_fractions(points, kernel_shape, *, tol: float = DEFAULT_TOL, coords: str = "auto",
                    refine: bool = False, fit=None) -> dict[str, float]:
    """Fraction of filters within chord distance ``tol`` of each reference shape.

    Used for the per-layer table. A filter counts for a shape when its distance to the
    nearest point of the shape (unit-sphere chord, :func:`fit_shapes`) is below ``tol``.
    ``tol = 0.5`` is an angle of about 29 degrees. Reference values for isotropic
    Gaussian 3x3 filters (the null): about 0.014 primary, 0.026 secondary, 0.035
    three-circle, 0.10 Klein bottle; the Klein bottle is a surface, so its null
    fraction is the largest.

    Parameters
    ----------
    points : array-like of shape (n, k*k) or (n, 8)
        Core filters (pixel coordinates, or DCT coordinates of 3x3 patches).
    kernel_shape : int or (int, int)
    tol : float, default=0.5
    coords : {"auto", "pixel", "dct"}, default="auto"
    refine : bool, default=False
        Local refinement of theta1 (slower; the 1-degree grid changes the distance by
        less than 1e-3).
    fit : ShapeFit, optional
        ``fit_shapes(points, kernel_shape, ...)`` already computed (it is the cost).

    Returns
    -------
    dict
        ``frac_primary``, ``frac_secondary`` (either secondary circle),
        ``frac_three_circle``, ``frac_klein``, ``median_dist_primary``, ``median_dist_klein``.
        NaN values when ``points`` is empty.

    Examples
    --------
    >>> shape_fractions(primary_filters(np.linspace(0, 6, 50)), 3)["frac_primary"]
    1.0
    """
    if not (isinstance(tol, (int, float)) and 0 < tol <= 2):
        raise InputError(f"tol must be a chord distance in (0, 2]; got {tol!r}. The default is {DEFAULT_TOL}.")
    if fit is None:
        fit = fit_shapes(points, kernel_shape, coords=coords, refine=refine)
    if len(fit.dist_primary) == 0:
        nan = float("nan")
        return dict.fromkeys(["frac_primary", "frac_secondary", "frac_three_circle", "frac_klein",
                              "median_dist_primary", "median_dist_klein"], nan)
    sec = np.minimum(fit.dist_secondary_x, fit.dist_secondary_y)
    return {
        "frac_primary": float(np.mean(fit.dist_primary < tol)),
        "frac_secondary": float(np.mean(sec < tol)),
        "frac_three_circle": float(np.mean(fit.dist_three_circle < tol)),
        "frac_klein": float(np.mean(fit.dist_klein < tol)),
        "median_dist_primary": float(np.median(fit.dist_primary)),
        "median_dist_klein": float(np.median(fit.dist_klein)),
    }


def best_shape(fractions: dict, *, min_frac: float = 0.9) -> str:
    """The most specific reference shape holding at least ``min_frac`` of the filters.

    Shapes are tried from the smallest to the largest: ``"primary"``, ``"secondary"``,
    ``"three-circle"``, ``"klein"``; ``"none"`` when even the Klein bottle holds fewer.

    Parameters
    ----------
    fractions : dict
        Output of :func:`shape_fractions`.
    min_frac : float, default=0.9

    Examples
    --------
    >>> best_shape({"frac_primary": 0.2, "frac_secondary": 0.1, "frac_three_circle": 0.3,
    ...             "frac_klein": 0.95})
    'klein'
    """
    for key, name in (("frac_primary", "primary"), ("frac_secondary", "secondary"),
                      ("frac_three_circle", "three-circle"), ("frac_klein", "klein")):
        if fractions.get(key, 0.0) >= min_frac:
            return name
    return "none"
