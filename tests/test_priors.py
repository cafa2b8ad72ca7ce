"""Topological priors (issue 11): filter banks, their known answers, fixed / masked layers, apply()."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from filtertopo import analyze_points
from filtertopo.errors import InputError
from filtertopo.normalize import DCT_BASIS
from filtertopo.priors import (BANKS, CIRCLE_MAX_DISTANCE, KLEIN_MAX_DISTANCE, circle_bank, circle_distance,
                               connection_mask, dct_bank, gabor_bank, klein_bank, klein_distance,
                               klein_filter_values, klein_grid, make_bank, random_orthonormal_bank,
                               secondary_bank)
from filtertopo.shapes import klein_filters, primary_filters, secondary_filters

# ---------------------------------------------------------------- banks (numpy only)

ALL_BANKS = {
    "circle": lambda k, raw: circle_bank(16, k, raw_pixel=raw),
    "circle_sampled": lambda k, raw: circle_bank(16, k, form="sampled", raw_pixel=raw),
    "klein": lambda k, raw: klein_bank(4, 4, k, raw_pixel=raw),
    "klein_authors": lambda k, raw: klein_bank(4, 4, k, variant="authors", raw_pixel=raw),
    "klein_sampled": lambda k, raw: klein_bank(3, 5, k, form="sampled", raw_pixel=raw),
    "secondary": lambda k, raw: secondary_bank(8, "y", k, raw_pixel=raw),
    "gabor": lambda k, raw: gabor_bank(16, k, raw_pixel=raw),
    "dct": lambda k, raw: dct_bank(k, raw_pixel=raw),
    "random_orthonormal": lambda k, raw: random_orthonormal_bank(16, k, seed=3, raw_pixel=raw),
}


@pytest.mark.parametrize("name", sorted(ALL_BANKS))
@pytest.mark.parametrize("k", [3, 5, 7])
def test_banks_are_mean_zero_unit_norm_float32(name, k):
    b = ALL_BANKS[name](k, False)
    assert b.dtype == np.float32 and b.ndim == 3 and b.shape[1:] == (k, k)
    F = b.reshape(len(b), -1).astype(np.float64)
    np.testing.assert_allclose(F.mean(axis=1), 0, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(F, axis=1), 1, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ALL_BANKS))
def test_raw_pixel_channel_is_the_centre_pixel_appended_last(name):
    plain, raw = ALL_BANKS[name](5, False), ALL_BANKS[name](5, True)
    assert len(raw) == len(plain) + 1
    np.testing.assert_array_equal(raw[:-1], plain)
    centre = np.zeros((5, 5), np.float32)
    centre[2, 2] = 1
    np.testing.assert_array_equal(raw[-1], centre)  # unit norm, not mean-zero: it passes the image


def test_registry_names_and_make_bank():
    assert set(BANKS) == {"circle", "klein", "secondary", "gabor", "dct", "random_orthonormal"}
    for name in BANKS:
        b = make_bank(name, 4 if name == "klein" else 8, 3)
        assert b.shape == (4 if name == "klein" else 8, 3, 3), name
    np.testing.assert_array_equal(make_bank("klein", 16), klein_bank(4, 4))
    np.testing.assert_array_equal(make_bank("klein", n1=2, n2=8), klein_bank(2, 8))
    np.testing.assert_array_equal(make_bank("klein", 32, n1=4), klein_bank(4, 8))
    assert make_bank("dct").shape == (8, 3, 3)


def test_make_bank_errors_suggest_the_fix():
    with pytest.raises(InputError, match=r"got 'circel'\. Did you mean 'circle'\?"):
        make_bank("circel", 16)
    with pytest.raises(InputError, match=r"n=32 is not a square.*n1=4, n2=8"):
        make_bank("klein", 32)
    with pytest.raises(InputError, match=r"n must be at most k\*k - 1 = 8.*got n=9"):
        make_bank("dct", 9)
    with pytest.raises(InputError, match="needs n"):
        make_bank("gabor")


@pytest.mark.parametrize("k", [4, 2, 1, 0, -3, 3.0, True])
def test_even_or_bad_k_names_k(k):
    with pytest.raises(InputError, match=r"^k must be an odd integer >= 3"):
        circle_bank(8, k)
    with pytest.raises(InputError, match=r"^k must be an odd integer >= 3"):
        klein_bank(2, 2, k)


def test_circle_bank_angles_and_forms():
    b = circle_bank(16)
    np.testing.assert_allclose(b[0] * np.sqrt(6), [[-1, 0, 1]] * 3, atol=1e-6)
    np.testing.assert_allclose(b[4] * np.sqrt(6), [[-1] * 3, [0] * 3, [1] * 3], atol=1e-6)  # theta = pi/2
    np.testing.assert_allclose(b.reshape(16, 9), primary_filters(2 * np.pi * np.arange(16) / 16), atol=1e-6)
    np.testing.assert_allclose(circle_bank(16, 5), circle_bank(16, 5, form="sampled"), atol=1e-6)  # linear


def test_klein_bank_grid_order_and_paper_formula():
    b = klein_bank(4, 8).reshape(32, 9)
    g = klein_grid(4, 8)
    np.testing.assert_allclose(g[9], [np.pi / 4, np.pi / 4])  # row a * n2 + b = (1, 1)
    np.testing.assert_allclose(b, klein_filters(g[:, 0], g[:, 1]), atol=1e-6)
    # PAPER.md section 4: KF[i, j] = cos t2 (-100/243 + 32/81 u^2) + sin t2 (8/27) u, c in {-1, 0, 1}
    c = np.array([-1.0, 0.0, 1.0])
    for (t1, t2), f in zip(g, b):
        u = c[None, :] * np.cos(t1) + c[:, None] * np.sin(t1)
        kf = np.cos(t2) * (-100 / 243 + 32 / 81 * u ** 2) + np.sin(t2) * 8 / 27 * u
        kf = (kf - kf.mean()).ravel()
        np.testing.assert_allclose(f, kf / np.linalg.norm(kf), atol=1e-6)
    # theta2 = pi/2 is the primary circle, theta1 = 0 the secondary circle along x
    edge = np.isclose(g[:, 1], np.pi / 2)
    assert edge.sum() == 4
    np.testing.assert_allclose(b[edge], primary_filters(g[edge, 0]), atol=1e-6)
    np.testing.assert_allclose(b[:8], secondary_filters(g[:8, 1], "x"), atol=1e-6)
    np.testing.assert_allclose(secondary_bank(8, "x").reshape(8, 9), b[:8], atol=1e-6)


def test_authors_variant_differs_as_documented():
    pub = klein_filter_values([np.pi / 4], [0.0])[0]
    auth = klein_filter_values([np.pi / 4], [0.0], variant="authors")[0]

    def odd_fraction(f):  # share of the squared norm that changes sign under a 180-degree turn
        return float(np.sum(((f - f[::-1]) / 2) ** 2))

    # (pi/4, 0): the published filter is a pure line (even); the authors' carries an edge term
    assert odd_fraction(pub) < 1e-20
    assert odd_fraction(auth) == pytest.approx(0.6495, abs=1e-3)
    assert float(pub @ auth) == pytest.approx(0.5920, abs=1e-3)
    # the documented identity: 2 F' = F + 4 cos t2 (cos t1 + sin t1 - 1) u' + const
    from filtertopo.shapes import _basis
    rng = np.random.default_rng(0)
    t1, t2 = rng.uniform(0, np.pi, 20), rng.uniform(0, 2 * np.pi, 20)
    for k in (3, 5):
        L, Q = _basis(k, "pixel", t1)
        F = np.sin(t2)[:, None] * L + np.cos(t2)[:, None] * Q
        F = F + (4 * np.cos(t2) * (np.cos(t1) + np.sin(t1) - 1))[:, None] * L
        F /= np.linalg.norm(F, axis=1, keepdims=True)
        np.testing.assert_allclose(klein_filter_values(t1, t2, k, variant="authors"), F, atol=1e-12)
    # equal on the secondary circles (t1 = 0, pi/2) and the primary circle (t2 = pi/2, 3 pi/2)
    g = klein_grid(8, 8)
    same = np.isin(g[:, 0], [0, np.pi / 2]) | np.isin(g[:, 1], [np.pi / 2, 3 * np.pi / 2])
    d = np.linalg.norm(klein_bank(8, 8).reshape(64, 9) - klein_bank(8, 8, variant="authors").reshape(64, 9),
                       axis=1)
    assert same.sum() == 28 and d[same].max() < 1e-6 and d[~same].min() > 0.05
    # the Klein-bottle gluing (t1 + pi, t2) ~ (t1, -t2) holds for the published formula only
    for t in (0.0, 0.5, 1.0):
        a = klein_filter_values([np.pi - 1e-9, 0.0], [t, -t])
        b = klein_filter_values([np.pi - 1e-9, 0.0], [t, -t], variant="authors")
        assert np.linalg.norm(a[0] - a[1]) < 1e-6
        assert np.linalg.norm(b[0] - b[1]) > 1.0
    with pytest.raises(InputError, match="variant must be 'published'"):
        klein_bank(4, 4, variant="author")


def test_dct_bank_is_the_3x3_dct_basis_and_orthonormal_for_any_k():
    E = DCT_BASIS / np.linalg.norm(DCT_BASIS, axis=1, keepdims=True)
    np.testing.assert_allclose(dct_bank(3).reshape(8, 9), E, atol=1e-7)
    B = dct_bank(5).reshape(24, 25).astype(np.float64)
    np.testing.assert_allclose(B @ B.T, np.eye(24), atol=1e-6)
    np.testing.assert_array_equal(dct_bank(3, n=4), dct_bank(3)[:4])


def test_random_orthonormal_bank():
    b = random_orthonormal_bank(17, 3, seed=5).reshape(17, 9).astype(np.float64)
    np.testing.assert_allclose(b[:8] @ b[:8].T, np.eye(8), atol=1e-6)
    np.testing.assert_allclose(b[8:16] @ b[8:16].T, np.eye(8), atol=1e-6)
    np.testing.assert_array_equal(random_orthonormal_bank(17, 3, seed=5), random_orthonormal_bank(17, 3, seed=5))
    assert not np.allclose(random_orthonormal_bank(8, 3, seed=1), random_orthonormal_bank(8, 3, seed=2))
    with pytest.raises(InputError, match="seed"):
        random_orthonormal_bank(8, 3, seed=-1)


def test_gabor_bank_even_and_odd():
    b = gabor_bank(16, 5)
    even, odd = b[0::2], b[1::2]
    np.testing.assert_allclose(even, even[:, ::-1, ::-1], atol=1e-6)   # lines
    np.testing.assert_allclose(odd, -odd[:, ::-1, ::-1], atol=1e-6)    # edges
    assert gabor_bank(7).shape == (7, 3, 3)
    with pytest.raises(InputError, match="sigma must be a positive"):
        gabor_bank(8, sigma=0)


def test_importing_priors_does_not_import_torch():
    code = ("import sys, filtertopo.priors as p; p.make_bank('klein', 16); p.connection_mask("
            "'klein', 16, 16, threshold=1.0); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- known answers


def _bars(diagram):
    return np.sort(diagram[:, 1] - diagram[:, 0])[::-1]


@pytest.fixture(scope="module")
def klein_bank_layer():
    # 16 x 32 grid: theta1 and theta2 both in steps of pi/16. The bare grid has degenerate
    # ties (equal-length edges everywhere); noise 0.01 breaks them. 200 maxmin landmarks.
    X = klein_bank(16, 32).reshape(-1, 9).astype(np.float64)
    X = X + np.random.default_rng(0).normal(0, 0.01, X.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyze_points(X, coeff=(2, 3), maxdim=2, k=10, p=1.0, n_landmarks=200, seed=0,
                              circular=False)


def test_klein_bank_has_the_klein_bottle_signature(klein_bank_layer):
    r = klein_bank_layer
    assert r.verdict == "klein-bottle"
    z2, z3 = r.diagrams_by_coeff[2], r.diagrams_by_coeff[3]
    h1_2, h2_2, h1_3, h2_3 = _bars(z2[1]), _bars(z2[2]), _bars(z3[1]), _bars(z3[2])
    # Z/2: two long H1 bars and one long H2 bar; Z/3: one H1 bar and no H2 bar (Betti 1,2,1 vs 1,1,0)
    assert h1_2[1] > 0.5 and h1_2[2] < 0.5 * h1_2[1]
    assert h2_2[0] > 0.5 and h2_2[1] < 0.5 * h2_2[0]
    assert h1_3[0] > 0.5 and h1_3[1] < 0.5 * h1_3[0]
    assert h2_3[0] < 0.5 * h2_2[0]


@pytest.mark.parametrize("k", [3, 5])
def test_circle_bank_is_the_primary_circle(k):
    X = circle_bank(64, k).reshape(64, -1).astype(np.float64)
    X = X + np.random.default_rng(1).normal(0, 0.05, X.shape)
    r = analyze_points(X, seed=0)
    assert r.verdict == "primary-circle"
    top = r.summary["h1_top"]
    assert top[0] > 1.0 and (len(top) < 2 or top[1] < 0.1 * top[0])


# ---------------------------------------------------------------- masks (numpy only)


def test_circle_metric_and_mask_against_a_loop():
    d = circle_distance([0.1], [2 * np.pi - 0.1, np.pi + 0.1])
    np.testing.assert_allclose(d, [[0.2, np.pi]], atol=1e-12)
    for n_out, n_in, th in ((8, 8, np.pi / 4), (16, 12, 0.6), (6, 17, 1.0)):
        m = connection_mask("circle", n_out, n_in, threshold=th)
        assert m.shape == (n_out, n_in, 3, 3) and m.dtype == np.float32
        for i in range(n_out):  # slow twin
            for k in range(n_in):
                a, b = 2 * np.pi * i / n_out, 2 * np.pi * k / n_in
                gap = abs(a - b) % (2 * np.pi)
                want = min(gap, 2 * np.pi - gap) <= th + 1e-9
                assert (m[i, k] == want).all(), (n_out, n_in, i, k)


def test_klein_metric_is_the_l2_distance_of_the_functions():
    rng = np.random.default_rng(4)
    P = np.c_[rng.uniform(0, np.pi, 4), rng.uniform(0, 2 * np.pi, 4)]
    Q = np.c_[rng.uniform(0, np.pi, 3), rng.uniform(0, 2 * np.pi, 3)]
    s = (np.arange(800) + 0.5) / 400 - 1  # midpoint rule on [-1, 1]^2, the slow twin
    X, Y = np.meshgrid(s, s)

    def f(t1, t2):
        u = X * np.cos(t1) + Y * np.sin(t1)
        return np.sin(t2) * u + np.cos(t2) * (2 * u ** 2 - 1)

    brute = np.array([[np.sqrt(np.mean((f(*a) - f(*b)) ** 2) * 4) for b in Q] for a in P])
    np.testing.assert_allclose(klein_distance(P, Q), brute, atol=1e-4)
    # identification (t1 + pi, t2) ~ (t1, -t2), and the documented diameter
    assert klein_distance([[0.3, 1.0]], [[0.3 + np.pi, -1.0]])[0, 0] < 1e-7
    assert klein_distance([[np.pi / 4, 0.0]], [[np.pi / 4, np.pi]])[0, 0] == pytest.approx(KLEIN_MAX_DISTANCE)
    D = klein_distance(klein_grid(8, 8), klein_grid(8, 8))
    assert D.max() <= KLEIN_MAX_DISTANCE + 1e-9


def test_klein_mask_connects_grid_neighbours():
    g = klein_grid(4, 4)
    m = connection_mask("klein", 16, 16, threshold=1.3)[:, :, 0, 0]
    np.testing.assert_array_equal(m, klein_distance(g, g) <= 1.3 + 1e-9)
    assert np.all(np.diag(m) == 1) and 0 < m.mean() < 0.5
    m2 = connection_mask("klein", 32, 16, threshold=1.3, out_grid=(4, 8))
    assert m2.shape == (32, 16, 3, 3)


def test_spatial_variant_masks_taps_of_each_output():
    m = connection_mask("circle", 9, 5, threshold=1.0, variant="spatial")
    assert (m == m[:, :1]).all()                         # the same for every input slice
    taps = m[:, 0].reshape(9, 9)                          # output i vs tap t, both at 2 pi j / 9
    np.testing.assert_array_equal(taps, circle_distance(2 * np.pi * np.arange(9) / 9,
                                                        2 * np.pi * np.arange(9) / 9) <= 1.0)
    mk = connection_mask("klein", 9, 4, threshold=1.5, variant="spatial")
    np.testing.assert_array_equal(mk[:, 0].reshape(9, 9), klein_distance(klein_grid(3, 3), klein_grid(3, 3)) <= 1.5)


@pytest.mark.parametrize("space,bad", [("circle", 0), ("circle", -0.1), ("circle", 3.2), ("circle", float("nan")),
                                       ("klein", 3.5), ("klein", 0.0), ("circle", "wide")])
def test_threshold_out_of_range(space, bad):
    with pytest.raises(InputError, match=r"^threshold must .*For example threshold="):
        connection_mask(space, 16, 16, threshold=bad)


def test_threshold_rules_and_grids():
    connection_mask("circle", 8, 8, threshold=CIRCLE_MAX_DISTANCE)   # the largest distance: all connected
    with pytest.raises(InputError, match=r"threshold=0.1 leaves output channels without any input.*>= 0.785398"):
        connection_mask("circle", 16, 4, threshold=0.1)
    with pytest.raises(InputError, match=r"in_channels=12 is not a square.*in_grid=\(n1, n2\).*\(3, 4\)"):
        connection_mask("klein", 16, 12, threshold=1.0)
    with pytest.raises(InputError, match=r"out_grid=\(3, 3\) must have n1 \* n2 = out_channels = 16"):
        connection_mask("klein", 16, 16, threshold=1.0, out_grid=(3, 3))
    with pytest.raises(InputError, match="space must be"):
        connection_mask("torus", 16, 16, threshold=1.0)
    with pytest.raises(InputError, match="variant must be"):
        connection_mask("circle", 16, 16, threshold=1.0, variant="taps")
    with pytest.raises(InputError, match="kernel_size must be an odd integer"):
        connection_mask("circle", 16, 16, 4, threshold=1.0)


# ---------------------------------------------------------------- torch layers

torch = pytest.importorskip("torch")
nn = torch.nn

from filtertopo.priors import apply  # noqa: E402
from filtertopo.priors.layers import (CircleConv2d, CircleOneLayer, KleinConv2d, KleinOneLayer,  # noqa: E402
                                      PriorConv2d, TopologicalMaskConv2d)
from filtertopo.weights import kernels_from_module  # noqa: E402


def _optimisers(params):
    params = list(params)
    return [torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1),
            torch.optim.Adam(params, lr=0.05, weight_decay=0.1),
            torch.optim.AdamW(params, lr=0.05, weight_decay=0.1)]


def _train(model, opt, steps=3, c_in=1):
    torch.manual_seed(0)
    for _ in range(steps):
        opt.zero_grad()
        out = model(torch.randn(4, c_in, 9, 9))
        (out ** 2).mean().backward()
        opt.step()


def test_fixed_layer_weight_is_a_buffer_that_never_moves():
    for idx in range(3):
        torch.manual_seed(idx)
        layer = KleinConv2d(1, 4, 4, mode="fixed")
        layer.requires_grad_(True)
        assert "weight" in dict(layer.named_buffers()) and "weight" not in dict(layer.named_parameters())
        assert [n for n, _ in layer.named_parameters()] == ["bias"]
        before_w, before_b = layer.weight.clone(), layer.bias.detach().clone()
        opt = _optimisers(layer.parameters())[idx]
        _train(layer, opt)
        torch.testing.assert_close(layer.weight, before_w, rtol=0, atol=0)
        np.testing.assert_array_equal(layer.weight[:, 0].numpy(), klein_bank(4, 4))
        assert not torch.equal(layer.bias, before_b)          # the bias trains
        assert not any(p is layer.weight for g in opt.param_groups for p in g["params"])


def test_init_layer_starts_at_the_bank_and_trains():
    layer = CircleConv2d(1, 16, mode="init", raw_pixel=True)
    assert isinstance(layer.weight, nn.Parameter)
    np.testing.assert_array_equal(layer.weight.detach()[:, 0].numpy(), circle_bank(16, raw_pixel=True))
    before = layer.weight.detach().clone()
    _train(layer, torch.optim.SGD(layer.parameters(), lr=0.5))
    assert not torch.equal(layer.weight.detach(), before)
    layer.reset_parameters()  # back to the bank, not to Kaiming noise
    np.testing.assert_array_equal(layer.weight.detach()[:, 0].numpy(), circle_bank(16, raw_pixel=True))


def test_fixed_layer_state_dict_round_trip():
    a = nn.Sequential(CircleConv2d(1, 8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    sd = a.state_dict()
    assert "0.weight" in sd and "0.bias" in sd
    b = nn.Sequential(CircleConv2d(1, 8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    with torch.no_grad():
        b[0].weight.zero_()
    b.load_state_dict(sd)
    for key, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], v, rtol=0, atol=0)
    assert "weight" in dict(b[0].named_buffers())


def test_multi_channel_input_shared_and_depthwise():
    shared = CircleConv2d(3, 8, bias=False)
    assert shared.weight.shape == (8, 3, 3, 3)
    np.testing.assert_allclose(shared.weight[:, 1].numpy(), circle_bank(8) / 3, atol=1e-7)
    grey = torch.randn(2, 1, 7, 7)   # the bank applied to the mean of the channels: a grey image is unchanged
    torch.testing.assert_close(shared(grey.repeat(1, 3, 1, 1)), CircleConv2d(1, 8, bias=False)(grey),
                               atol=1e-5, rtol=0)
    dw = KleinConv2d(3, 2, 4, channels="depthwise", bias=False)
    assert dw.groups == 3 and dw.weight.shape == (24, 1, 3, 3)
    np.testing.assert_array_equal(dw.weight[8:16, 0].numpy(), klein_bank(2, 4))
    with pytest.raises(InputError, match="channels must be 'shared'"):
        CircleConv2d(3, 8, channels="all")
    with pytest.raises(InputError, match="mode must be 'fixed'"):
        CircleConv2d(1, 8, mode="frozen")


def test_kernels_from_module_exports_prior_layers():
    net = nn.Sequential(KleinConv2d(1, 4, 4), nn.ReLU(), CircleOneLayer(16, 16, threshold=1.0),
                        nn.ReLU(), CircleConv2d(16, 8, mode="init"))
    kb = kernels_from_module(net)
    assert list(kb.kernels) == ["0", "2", "4"]
    np.testing.assert_array_equal(kb.kernels["0"][:, 0], klein_bank(4, 4))        # the fixed buffer
    np.testing.assert_array_equal(kb.kernels["2"], net[2].weight.detach().numpy())  # the masked weight
    assert (kb.kernels["2"][net[2].mask.numpy() == 0] == 0).all()


def _masked_layers():
    return [CircleOneLayer(8, 8, threshold=np.pi / 4),
            KleinOneLayer(16, 16, threshold=1.3),
            CircleOneLayer(6, 12, threshold=0.8, variant="spatial"),
            TopologicalMaskConv2d(16, 32, 3, space="klein", threshold=1.3, out_grid=(4, 8))]


@pytest.mark.parametrize("idx", range(4))
def test_masked_entries_get_no_gradient_and_never_move(idx):
    for opt_i in range(3):
        torch.manual_seed(opt_i)
        layer = _masked_layers()[idx]
        mask = layer.mask.clone()
        off = mask == 0
        assert off.any() and (~off).any()
        orig = layer.parametrizations.weight.original
        assert (orig.detach()[off] == 0).all() and (layer.weight.detach()[off] == 0).all()
        layer(torch.randn(2, layer.in_channels, 7, 7)).pow(2).mean().backward()
        assert (orig.grad[off] == 0).all() and (orig.grad[~off] != 0).any()
        before = orig.detach().clone()
        _train(layer, _optimisers(layer.parameters())[opt_i], c_in=layer.in_channels)
        assert (orig.detach()[off] == 0).all() and (layer.weight.detach()[off] == 0).all()
        assert not torch.equal(orig.detach()[~off], before[~off])


def test_mask_is_kept_after_load_state_dict():
    layer = KleinOneLayer(16, 16, threshold=1.3)
    off = layer.mask == 0
    sd = layer.state_dict()
    assert set(sd) == {"bias", "parametrizations.weight.original"}  # the mask is rebuilt, not loaded
    sd["parametrizations.weight.original"] = torch.randn_like(sd["parametrizations.weight.original"]) + 5
    layer.load_state_dict(sd)
    assert (layer.weight.detach()[off] == 0).all()
    assert (layer.parametrizations.weight.original.detach()[off] == 0).all()     # re-zeroed by the hook
    torch.testing.assert_close(layer.weight.detach()[~off], sd["parametrizations.weight.original"][~off])
    # inside a bigger model too, and the masked entries stay at zero under weight decay afterwards
    net = nn.Sequential(KleinConv2d(1, 4, 4), KleinOneLayer(16, 16, threshold=1.3))
    big = net.state_dict()
    big["1.parametrizations.weight.original"] = torch.ones_like(big["1.parametrizations.weight.original"])
    net.load_state_dict(big)
    assert (net[1].weight.detach()[off] == 0).all()
    _train(net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.5))
    assert (net[1].parametrizations.weight.original.detach()[off] == 0).all()


def test_masked_layer_forward_uses_the_mask():
    layer = CircleOneLayer(8, 8, threshold=np.pi / 4, bias=False)
    x = torch.zeros(1, 8, 5, 5)
    x[0, 4] = torch.randn(5, 5)             # only input slice 4 (angle pi) is non-zero
    y = layer(x)
    far = layer.mask[:, 4, 0, 0] == 0       # outputs not connected to slice 4
    assert far.sum() == 5 and (y[0, far] == 0).all() and (y[0, ~far] != 0).any()


# ---------------------------------------------------------------- apply()


class UserNet(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(width, 16, 3, padding="same"))
        self.even = nn.Conv2d(3, 8, 4)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(n, type(m)) for n, m in model.named_modules()])


def _unchanged(model, snap):
    sd, mods = snap
    now = model.state_dict()
    assert list(now) == list(sd)
    assert all(torch.equal(now[k], sd[k]) for k in sd)
    assert [(n, type(m)) for n, m in model.named_modules()] == mods


def test_apply_fixed_replaces_the_conv_keeping_its_settings():
    torch.manual_seed(0)
    net = UserNet()
    old = net.features[0]
    bias = old.bias.detach().clone()
    out = apply(net, "klein", layer="features.0", n1=4, n2=8)
    assert out is net
    new = net.features[0]
    assert isinstance(new, PriorConv2d) and new.mode == "fixed" and new.prior == "klein"
    assert (new.in_channels, new.out_channels, new.stride, new.padding) == (3, 32, (2, 2), (1, 1))
    torch.testing.assert_close(new.bias.detach(), bias)
    np.testing.assert_allclose(new.weight[:, 2].numpy(), klein_bank(4, 8) / 3, atol=1e-7)
    assert all(p is not new.weight for p in net.parameters())
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert "features.0" in kernels_from_module(net).kernels


def test_apply_init_copies_the_bank_into_the_weight():
    net = UserNet(width=16)
    conv = net.features[0]
    apply(net, "circle", layer="features.0", mode="init", raw_pixel=True, n=15)
    assert net.features[0] is conv and isinstance(conv.weight, nn.Parameter)
    np.testing.assert_allclose(conv.weight.detach()[:, 0].numpy(), circle_bank(15, raw_pixel=True) / 3, atol=1e-7)
    apply(net, "klein", layer="features.0", mode="init")      # 16 = 4 x 4, sized from the layer
    np.testing.assert_allclose(conv.weight.detach()[:, 1].numpy(), klein_bank(4, 4) / 3, atol=1e-7)


def test_apply_to_a_registry_model_and_a_depthwise_conv():
    from filtertopo.training import create_model

    net = create_model("mnist_net")
    apply(net, "klein", layer="conv1")                         # 64 = 8 x 8, the KF grid of Love et al.
    assert isinstance(net.conv1, PriorConv2d)
    out = net(torch.rand(3, 1, 28, 28))
    nn.functional.cross_entropy(out, torch.tensor([0, 1, 2])).backward()
    assert all(p.grad is not None for p in net.parameters())
    from filtertopo import analyze

    circ = apply(create_model("mnist_net"), "circle", layer="conv1")   # analyze() sees the buffer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyze(circ, layers="1", progress=False)
    assert res.layers[0].name == "conv1" and res.layers[0].verdict == "primary-circle"
    dw = nn.Sequential(nn.Conv2d(3, 24, 5, groups=3, padding=2))
    apply(dw, "gabor", layer="0")
    assert dw[0].groups == 3 and dw[0].weight.shape == (24, 1, 5, 5)
    np.testing.assert_allclose(dw[0].weight[8:16, 0].numpy(), gabor_bank(8, 5), atol=1e-7)


@pytest.mark.parametrize("kwargs,message", [
    (dict(prior="kelin", layer="features.0"), r"got 'kelin'\. Did you mean 'klein'\?"),
    (dict(prior="klein", layer="features.9"), r"layer 'features.9' does not exist.*\['features.0', "
                                              r"'features.2', 'even'\]"),
    (dict(prior="klein", layer="head"), r"layer 'head' is a Linear, not an nn.Conv2d.*\['features.0'"),
    (dict(prior="circle", layer="even"), r"even has a 4x4 kernel; a prior bank needs an odd square kernel"),
    (dict(prior="klein", layer="features.0", n1=4, n2=4),
     r"^features.0 has 32 output channels; klein with n1=n2=4 gives 16: use n1=4, n2=8\.$"),
    (dict(prior="klein", layer="features.0", n1=5), r"klein with only n1=5 does not fit: use n1=4, n2=8"),
    (dict(prior="circle", layer="features.0", n=16, raw_pixel=True),
     r"circle with n=16 and raw_pixel=True gives 17: use n=31 with raw_pixel=True"),
    (dict(prior="dct", layer="features.0"), r"the dct bank of 3x3 filters has at most 8 filters"),
    (dict(prior="circle", layer="features.0", colour=True), r"unknown option for prior 'circle'"),
    (dict(prior="circle", layer="features.0", k=5), r"k=5 does not match features.0's 3x3 kernel"),
    (dict(prior="circle", layer="features.0", mode="frozen"), r"mode must be 'fixed'"),
    (dict(prior=np.zeros((16, 3, 3)), layer="features.0"), r"the bank has 16 filters: give 32 filters"),
])
def test_apply_errors_leave_the_model_unchanged(kwargs, message):
    net = UserNet()
    snap = _snapshot(net)
    with pytest.raises(InputError, match=message):
        apply(net, **kwargs)
    _unchanged(net, snap)


def test_apply_klein_without_a_square_width_says_which_grid():
    net = UserNet(width=24)
    with pytest.raises(InputError, match=r"24 filters: use n1=4, n2=6"):
        apply(net, "klein", layer="features.0")
    net = UserNet(width=13)
    with pytest.raises(InputError, match=r"13 is prime"):
        apply(net, "klein", layer="features.0")
