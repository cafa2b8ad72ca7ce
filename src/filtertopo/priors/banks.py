"""Filter banks for topological priors: circle, Klein bottle, secondary circles, and controls.

A bank is a float32 array of shape (n, k, k): n spatial filters on a k x k grid
(row index i <-> y, column index j <-> x, the convention of :mod:`filtertopo.shapes`),
each mean-centred and scaled to unit Euclidean norm. They are the fixed first layers of
Carlsson & Gabrielsson, "Topological Approaches to Deep Learning" (arXiv 1811.01122, the
primary-circle layer) and Love, Filippenko, Maroulas & Carlsson, "Topological Convolutional
Layers for Deep Learning" (JMLR 24, 2023: KF, CF), and the controls a benchmark needs
(Gabor, DCT, random orthonormal) with the same counts and norms.

Formulas on the square [-1, 1]^2 (``form="pixel"``: integrated exactly over each of the
k x k pixels; ``form="sampled"``: evaluated at the points linspace(-1, 1, k)):

* primary circle    P(theta)  = x cos(theta) + y sin(theta),  theta_j = 2 pi j / n
* secondary circle  S_x(phi)  = x sin(phi) + (2 x^2 - 1) cos(phi) (S_y with y), phi_j = 2 pi j / n
* Klein bottle      F(t1, t2) = sin(t2) u + cos(t2) (2 u^2 - 1),  u = x cos(t1) + y sin(t1),
  t1 = pi a / n1 (a < n1), t2 = 2 pi b / n2 (b < n2); filter index a * n2 + b (t1-major).

``klein_bank(variant="authors")`` is the formula of the code published with Love et al.:
on [0, 1]^2, F'(t1, t2) = sin(t2) u + cos(t2) ((2u - 1)^2 - 1) with the same u. Writing
x = (x' + 1)/2, y = (y' + 1)/2 and u' = x' cos(t1) + y' sin(t1), 2 F' equals
F(t1, t2) evaluated at (x', y') plus 4 cos(t2) (cos t1 + sin t1 - 1) u' plus a constant:
the two agree exactly on the secondary circles (t1 = 0, pi/2) and on the primary circle
(t2 = pi/2, 3pi/2); elsewhere the authors' filter carries an extra edge term, and the
identification (t1 + pi, t2) ~ (t1, -t2) of the Klein bottle no longer holds.

The optional raw-pixel channel (``raw_pixel=True``, the "+" of the "(mu16)+" layer of
1811.01122) is appended last: 1 at the centre pixel, 0 elsewhere, so the layer also passes
the image itself through. It has unit norm but is *not* mean-zero (it carries the intensity).
"""

from __future__ import annotations

import difflib
import math
import numbers

import numpy as np

from ..errors import InputError
from ..shapes import klein_filters, primary_filters, secondary_filters

__all__ = ["BANKS", "make_bank", "circle_bank", "klein_bank", "secondary_bank", "gabor_bank",
           "dct_bank", "random_orthonormal_bank", "klein_grid", "klein_bank_size",
           "klein_filter_values", "check_k", "check_bank_name", "raw_pixel_filter"]


def check_k(k, name: str = "k") -> int:
    """Return the odd kernel side ``k >= 3``; raise InputError naming ``name`` otherwise.

    Examples
    --------
    >>> check_k(5)
    5
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise InputError(f"{name} must be an odd integer >= 3 (the kernel side); got {k!r}. Use {name}=3.")
    if k < 3 or k % 2 == 0:
        hint = f"{name}={k + 1 if k >= 3 else 3}" + (f" or {name}={k - 1}" if k > 3 else "")
        raise InputError(f"{name} must be an odd integer >= 3: a filter of the bank needs a centre pixel "
                         f"(edges and lines through the centre); got {name}={k}. Use {hint}.")
    return int(k)


def _check_count(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InputError(f"{name} must be an integer >= {low} (a number of filters); got {value!r}.")
    return int(value)


def _check_form(form):
    if form not in ("pixel", "sampled"):
        raise InputError(f"form must be 'pixel' (each pixel integrated exactly) or 'sampled' (the "
                         f"function evaluated at the pixel centres); got {form!r}.")
    return "pixel" if form == "pixel" else "point"


def raw_pixel_filter(k: int = 3) -> np.ndarray:
    """The raw-pixel filter: 1 at the centre of a k x k grid, 0 elsewhere; shape (k, k).

    Examples
    --------
    >>> raw_pixel_filter(3).astype(int).tolist()
    [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    """
    k = check_k(k)
    out = np.zeros((k, k), dtype=np.float32)
    out[k // 2, k // 2] = 1.0
    return out


def _finish(F, k, raw_pixel):
    """(n, k*k) float64 rows -> float32 (n [+1], k, k), mean-zero unit rows, raw pixel last."""
    F = np.asarray(F, dtype=np.float64)
    F = F - F.mean(axis=1, keepdims=True)
    nrm = np.linalg.norm(F, axis=1, keepdims=True)
    if np.any(nrm < 1e-9):
        raise InputError("the bank has a constant filter for these parameters; change them.")
    out = (F / nrm).reshape(-1, k, k).astype(np.float32)
    if raw_pixel:
        out = np.concatenate([out, raw_pixel_filter(k)[None]], axis=0)
    return out


def circle_bank(n: int, k: int = 3, *, form: str = "pixel", raw_pixel: bool = False) -> np.ndarray:
    """Primary-circle (rotating edge) filters at n equally spaced angles.

    Filter j is P(theta_j) = x cos(theta_j) + y sin(theta_j), theta_j = 2 pi j / n, then
    mean-centred and unit norm (theta and theta + pi are the two polarities of one edge).
    P is linear, so ``form="pixel"`` and ``form="sampled"`` give the same unit filters;
    the form matters for the Klein and secondary banks.

    Parameters
    ----------
    n : int
        Number of angles (16 in 1811.01122).
    k : int, default=3
        Odd kernel side >= 3.
    form : {"pixel", "sampled"}, default="pixel"
    raw_pixel : bool, default=False
        Append the raw-pixel filter (1 at the centre), giving n + 1 filters.

    Returns
    -------
    ndarray of shape (n [+ 1], k, k), float32

    Examples
    --------
    >>> b = circle_bank(16, raw_pixel=True)
    >>> b.shape, ((b[0] * np.sqrt(6)).round(6)[0] + 0.0).tolist()
    ((17, 3, 3), [-1.0, 0.0, 1.0])
    """
    n, k, sampling = _check_count("n", n), check_k(k), _check_form(form)
    return _finish(primary_filters(2 * np.pi * np.arange(n) / n, k, sampling=sampling), k, raw_pixel)


def secondary_bank(n: int, axis: str = "x", k: int = 3, *, form: str = "pixel",
                   raw_pixel: bool = False) -> np.ndarray:
    """Secondary-circle filters v sin(phi_j) + (2 v^2 - 1) cos(phi_j), v = x or y, phi_j = 2 pi j / n.

    Parameters
    ----------
    n : int
    axis : {"x", "y"}, default="x"
        ``"x"``: the lines and edges that vary along x (vertical structures).
    k : int, default=3
    form : {"pixel", "sampled"}, default="pixel"
    raw_pixel : bool, default=False

    Returns
    -------
    ndarray of shape (n [+ 1], k, k), float32

    Examples
    --------
    >>> secondary_bank(8, "y").shape
    (8, 3, 3)
    """
    n, k, sampling = _check_count("n", n), check_k(k), _check_form(form)
    if axis not in ("x", "y"):
        raise InputError(f"axis must be 'x' or 'y' (the secondary circle along x or along y); got {axis!r}.")
    return _finish(secondary_filters(2 * np.pi * np.arange(n) / n, axis, k, sampling=sampling), k, raw_pixel)


def klein_grid(n1: int, n2: int) -> np.ndarray:
    """(theta1, theta2) of the n1 x n2 Klein-bottle grid, shape (n1 * n2, 2), t1-major.

    Row a * n2 + b is (pi a / n1, 2 pi b / n2): theta1 in [0, pi), theta2 in [0, 2 pi).

    Examples
    --------
    >>> (klein_grid(2, 2) / np.pi).tolist()
    [[0.0, 0.0], [0.0, 1.0], [0.5, 0.0], [0.5, 1.0]]
    """
    n1, n2 = _check_count("n1", n1), _check_count("n2", n2)
    a, b = np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij")
    return np.column_stack([np.pi * a.ravel() / n1, 2 * np.pi * b.ravel() / n2])


def _moments01(k, sampling):
    """Pixel moments (m0, m1, m2) of one coordinate on [0, 1] split into k pixels."""
    if sampling == "point":
        c = np.linspace(0.0, 1.0, k)
        return np.ones(k), c, c ** 2
    e = np.linspace(0.0, 1.0, k + 1)
    a, b = e[:-1], e[1:]
    return b - a, (b ** 2 - a ** 2) / 2, (b ** 3 - a ** 3) / 3


def _klein_authors(t1, t2, k, sampling):
    """sin(t2) u + cos(t2) ((2u - 1)^2 - 1) on [0, 1]^2, per pixel; (n, k*k), not normalised."""
    m0, m1, m2 = _moments01(k, sampling)
    c, s = np.cos(t1)[:, None, None], np.sin(t1)[:, None, None]
    X1, Y1 = np.outer(m0, m1), np.outer(m1, m0)
    X2, Y2, XY = np.outer(m0, m2), np.outer(m2, m0), np.outer(m1, m1)
    U = c * X1 + s * Y1
    U2 = c ** 2 * X2 + 2 * c * s * XY + s ** 2 * Y2
    # (2u - 1)^2 - 1 = 4 u^2 - 4 u
    F = np.sin(t2)[:, None, None] * U + np.cos(t2)[:, None, None] * (4 * U2 - 4 * U)
    return F.reshape(len(t1), -1)


def klein_filter_values(theta1, theta2, k: int = 3, *, variant: str = "published",
                        form: str = "pixel") -> np.ndarray:
    """Klein-bottle filters at arbitrary (theta1, theta2), mean-centred and unit norm; (n, k*k) float64.

    ``variant="published"`` is :func:`filtertopo.shapes.klein_filters`; ``"authors"`` the
    [0, 1]^2 formula of the authors' code (module docstring).

    Examples
    --------
    >>> a = klein_filter_values([0.3], [1.0], variant="published")
    >>> b = klein_filter_values([0.3 + np.pi], [-1.0], variant="published")
    >>> bool(np.allclose(a, b))
    True
    """
    k, sampling = check_k(k), _check_form(form)
    t1 = np.atleast_1d(np.asarray(theta1, dtype=float))
    t2 = np.broadcast_to(np.atleast_1d(np.asarray(theta2, dtype=float)), t1.shape)
    if variant == "published":
        return klein_filters(t1, t2, k, sampling=sampling)
    if variant == "authors":
        F = _klein_authors(t1, t2, k, sampling)
        F = F - F.mean(axis=1, keepdims=True)
        return F / np.linalg.norm(F, axis=1, keepdims=True)
    raise InputError(f"variant must be 'published' (Love et al. 2023, 2u^2 - 1 on [-1, 1]^2) or 'authors' "
                     f"(their code: (2u - 1)^2 - 1 on [0, 1]^2); got {variant!r}.")


def klein_bank(n1: int, n2: int, k: int = 3, *, variant: str = "published", form: str = "pixel",
               raw_pixel: bool = False) -> np.ndarray:
    """Klein-bottle filters on an n1 x n2 grid of (theta1, theta2) (the KF layer of Love et al. 2023).

    Filter a * n2 + b is F(pi a / n1, 2 pi b / n2), mean-centred and unit norm, with

        published:  F(t1, t2)  = sin(t2) u + cos(t2) (2 u^2 - 1)          on [-1, 1]^2
        authors:    F'(t1, t2) = sin(t2) u + cos(t2) ((2 u - 1)^2 - 1)    on [0, 1]^2

    u = x cos(t1) + y sin(t1). For 3 x 3 and ``form="pixel"`` the published filter is
    KF[i, j] = cos(t2) (-100/243 + (32/81) u_ij^2) + sin(t2) (8/27) u_ij before
    normalising, u_ij = c_j cos(t1) + c_i sin(t1), c in {-1, 0, 1} (PAPER.md section 4).
    theta2 = pi/2 and 3pi/2 are the primary circle; theta1 = 0 and pi/2 the secondary circles.

    Parameters
    ----------
    n1, n2 : int
        Grid sizes along theta1 in [0, pi) and theta2 in [0, 2 pi) (8 x 8 in Love et al.).
    k : int, default=3
    variant : {"published", "authors"}, default="published"
    form : {"pixel", "sampled"}, default="pixel"
    raw_pixel : bool, default=False

    Returns
    -------
    ndarray of shape (n1 * n2 [+ 1], k, k), float32

    Examples
    --------
    >>> b = klein_bank(4, 4)
    >>> b.shape, bool(np.allclose(b.reshape(16, 9).mean(1), 0, atol=1e-7))
    ((16, 3, 3), True)
    """
    k = check_k(k)
    g = klein_grid(n1, n2)
    return _finish(klein_filter_values(g[:, 0], g[:, 1], k, variant=variant, form=form), k, raw_pixel)


def klein_bank_size(n1: int, n2: int, *, raw_pixel: bool = False) -> int:
    """Number of filters of :func:`klein_bank`."""
    return _check_count("n1", n1) * _check_count("n2", n2) + bool(raw_pixel)


def _gabor(k, theta, psi, wavelength, sigma):
    p = np.arange(k) - (k - 1) / 2
    y, x = np.meshgrid(p, p, indexing="ij")
    xt = x * np.cos(theta) + y * np.sin(theta)
    return np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2)) * np.cos(2 * np.pi * xt / wavelength + psi)


def gabor_bank(n: int, k: int = 3, *, wavelength: float | None = None, sigma: float | None = None,
               raw_pixel: bool = False) -> np.ndarray:
    """Gabor filters: ceil(n/2) orientations in [0, pi), each even then odd, truncated to n.

    g(x, y) = exp(-(x^2 + y^2) / (2 sigma^2)) cos(2 pi x_theta / wavelength + psi), in pixel
    units from the centre, x_theta = x cos(theta) + y sin(theta), psi = 0 (even, a line) and
    -pi/2 (odd, an edge); filter 2j + e has theta = pi j / ceil(n/2). Mean-centred, unit norm.
    On 3 x 3 grids these are close to lines and edges, i.e. near the Klein bottle at
    theta2 in {0, pi/2}: a control for "hand-made sensible filters", not a topology-free one.

    Parameters
    ----------
    n : int
    k : int, default=3
    wavelength : float, optional
        In pixels; default k + 1.
    sigma : float, optional
        Gaussian width in pixels; default (k + 1) / 4.
    raw_pixel : bool, default=False

    Examples
    --------
    >>> gabor_bank(16).shape
    (16, 3, 3)
    """
    n, k = _check_count("n", n), check_k(k)
    wavelength = float(k + 1) if wavelength is None else wavelength
    sigma = (k + 1) / 4 if sigma is None else sigma
    for name, v in (("wavelength", wavelength), ("sigma", sigma)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (v > 0 and math.isfinite(v)):
            raise InputError(f"{name} must be a positive number of pixels; got {v!r}.")
    m = -(-n // 2)
    F = [_gabor(k, np.pi * j / m, psi, wavelength, sigma).ravel()
         for j in range(m) for psi in (0.0, -np.pi / 2)][:n]
    return _finish(np.array(F), k, raw_pixel)


def _dct_rows(k):
    """The k*k - 1 non-constant separable DCT-II filters, (k*k - 1, k*k), in frequency order."""
    j = np.arange(k)
    B = np.cos(np.pi * np.outer(np.arange(k), 2 * j + 1) / (2 * k))  # B[m] = 1-D frequency m
    pairs = [(px, py) for py in range(k) for px in range(k) if px or py]
    pairs.sort(key=lambda q: (q[0] + q[1], min(q), q[1] if min(q) == 0 else q[0]))
    return np.array([np.outer(B[py], B[px]).ravel() for px, py in pairs])


def dct_bank(k: int = 3, *, n: int | None = None, raw_pixel: bool = False) -> np.ndarray:
    """The non-constant DCT basis of k x k patches, unit L2 norm: k*k - 1 filters (8 for 3 x 3).

    Filter (px, py) is cos(pi px (2j + 1) / 2k) cos(pi py (2i + 1) / 2k) at row i, column j,
    ordered by total frequency px + py. For k = 3 these are e1..e8 of Lee, Pedersen & Mumford
    (:data:`filtertopo.normalize.DCT_BASIS`) in that order and sign, rescaled to unit
    Euclidean norm (they are orthogonal for both the Euclidean and the D-norm).

    Parameters
    ----------
    k : int, default=3
    n : int, optional
        Keep the first n (lowest frequencies); at most k*k - 1.
    raw_pixel : bool, default=False

    Examples
    --------
    >>> from filtertopo.normalize import DCT_BASIS
    >>> E = DCT_BASIS / np.linalg.norm(DCT_BASIS, axis=1, keepdims=True)
    >>> bool(np.allclose(dct_bank(3).reshape(8, 9), E, atol=1e-7))
    True
    """
    k = check_k(k)
    rows = _dct_rows(k)
    if n is not None:
        n = _check_count("n", n)
        if n > len(rows):
            raise InputError(f"n must be at most k*k - 1 = {len(rows)} for the DCT bank of {k}x{k} filters "
                             f"(it is a basis); got n={n}. Use n={len(rows)}, a larger k, or "
                             f"random_orthonormal for more filters.")
        rows = rows[:n]
    return _finish(rows, k, raw_pixel)


def random_orthonormal_bank(n: int, k: int = 3, seed=0, *, raw_pixel: bool = False) -> np.ndarray:
    """Random mean-zero filters, orthonormal in blocks of k*k - 1 (Haar-distributed).

    The mean-zero subspace of k x k filters has dimension d = k*k - 1, so at most d filters
    are orthonormal: the bank is ceil(n/d) independent Haar-random orthonormal bases of that
    subspace, concatenated and truncated to n. Every filter has unit norm and mean zero.

    Parameters
    ----------
    n : int
    k : int, default=3
    seed : int or numpy.random.Generator, default=0
    raw_pixel : bool, default=False

    Examples
    --------
    >>> b = random_orthonormal_bank(8, 3, seed=1).reshape(8, 9)
    >>> bool(np.allclose(b @ b.T, np.eye(8), atol=1e-6))
    True
    """
    from ..errors import check_seed

    n, k = _check_count("n", n), check_k(k)
    rng = np.random.default_rng(check_seed("seed", seed))
    E = _dct_rows(k)
    E = E / np.linalg.norm(E, axis=1, keepdims=True)  # orthonormal basis of the mean-zero subspace
    d = len(E)
    blocks = []
    for _ in range(-(-n // d)):
        Q, R = np.linalg.qr(rng.normal(size=(d, d)))
        Q = Q * np.sign(np.diag(R))  # Haar measure on O(d)
        blocks.append(Q.T @ E)
    return _finish(np.concatenate(blocks)[:n], k, raw_pixel)


#: Bank name -> function (the plain-dict registry; :func:`make_bank` dispatches on it).
BANKS = {
    "circle": circle_bank,
    "klein": klein_bank,
    "secondary": secondary_bank,
    "gabor": gabor_bank,
    "dct": dct_bank,
    "random_orthonormal": random_orthonormal_bank,
}


def check_bank_name(name) -> str:
    """Return ``name`` if it is in :data:`BANKS`; raise InputError with a close match otherwise."""
    if isinstance(name, str) and name in BANKS:
        return name
    close = difflib.get_close_matches(str(name).lower(), list(BANKS), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InputError(f"prior must be one of {sorted(BANKS)}; got {name!r}.{hint}")


def _square_root(n):
    r = math.isqrt(n)
    return r if r * r == n else None


def make_bank(name: str, n: int | None = None, k: int = 3, **kw) -> np.ndarray:
    """Build the bank ``name`` of :data:`BANKS` with n filters (before any raw-pixel channel).

    ``klein`` takes ``n1``/``n2`` in ``kw``, or a square n (n1 = n2 = sqrt(n)); ``dct``
    takes n <= k*k - 1 (None: all); the others need n.

    Examples
    --------
    >>> make_bank("klein", 16).shape, make_bank("dct").shape, make_bank("circle", 16, 5).shape
    ((16, 3, 3), (8, 3, 3), (16, 5, 5))
    >>> make_bank("kelin", 16)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    filtertopo.errors.InputError: prior must be one of [...]; got 'kelin'. Did you mean 'klein'?
    """
    name = check_bank_name(name)
    if name == "dct":
        return dct_bank(k, n=n, **kw)
    if name == "klein":
        n1, n2 = kw.pop("n1", None), kw.pop("n2", None)
        if n1 is None and n2 is None:
            if n is None:
                raise InputError("the klein bank needs its grid: pass n1 and n2 (n1 * n2 filters) or a square n.")
            r = _square_root(_check_count("n", n))
            if r is None:
                raise InputError(f"n={n} is not a square, so the klein grid n1 x n2 is ambiguous: pass n1 and "
                                 f"n2 with n1 * n2 = {n}" + _factor_hint(n) + ".")
            n1 = n2 = r
        elif n1 is None or n2 is None:
            given, other = ("n1", "n2") if n2 is None else ("n2", "n1")
            g = _check_count(given, n1 if n2 is None else n2)
            if n is None or _check_count("n", n) % g:
                raise InputError(f"the klein bank needs both n1 and n2; got only {given}={g}"
                                 + ("" if n is None else f", which does not divide n={n}")
                                 + f". Pass {other} as well.")
            n1, n2 = (g, n // g) if n2 is None else (n // g, g)
        elif n is not None and n1 * n2 != n:
            raise InputError(f"n={n} does not match n1 * n2 = {n1} * {n2} = {n1 * n2}; pass one or the other.")
        return klein_bank(n1, n2, k, **kw)
    if n is None:
        raise InputError(f"the {name} bank needs n, the number of filters; e.g. make_bank({name!r}, 16).")
    if name == "secondary":
        return secondary_bank(n, kw.pop("axis", "x"), k, **kw)
    return BANKS[name](n, k, **kw)


def _factor_hint(n):
    """', e.g. n1=4, n2=8' for the most square factorisation of n (n1 <= n2), or ''."""
    best = max((a for a in range(1, math.isqrt(n) + 1) if n % a == 0), default=1)
    return f", e.g. n1={best}, n2={n // best}" if best > 1 else f" (n={n} is prime: only 1 x {n})"
