"""Known answers of the study statistics (filtertopo.study.stats) on synthetic data."""

import itertools
import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from filtertopo.errors import InputError
from filtertopo.study.stats import (bootstrap_counts, check_grid, cmi_score, granulated_kendall, grouped_cv,
                                    kendall, missing_cells, partial_kendall, tau_table)


def _grid(axes):
    return [dict(zip(axes, v)) for v in itertools.product(*axes.values())]


AXES = {"lr": [0.01, 0.02, 0.05, 0.1], "width": [16, 32, 64], "seed": [0, 1, 2]}


@pytest.fixture
def grid():
    design = _grid(AXES)
    lr = np.array([d["lr"] for d in design])
    width = np.array([d["width"] for d in design], dtype=float)
    rng = np.random.default_rng(0)
    target = np.log(lr) + np.log2(width) + rng.normal(0, 0.05, len(design))  # rises along both axes
    return design, lr, width, target


# ----------------------------------------------------------------------------- tau

def test_feature_equal_to_target_has_tau_1_and_a_degenerate_interval():
    y = np.random.default_rng(1).normal(size=50)
    r = kendall(y, y, n_boot=500)
    assert (r.tau, r.low, r.high, r.n) == (1.0, 1.0, 1.0, 50) and r.p_value < 1e-10
    assert kendall(y, np.exp(y), n_boot=0).tau == 1.0  # rank statistic: any increasing map
    assert kendall(y, -y, n_boot=100).tau == -1.0


def test_independent_feature_has_tau_near_0_and_an_interval_covering_0():
    rng = np.random.default_rng(2)
    r = kendall(rng.normal(size=200), rng.normal(size=200), n_boot=1000)
    assert abs(r.tau) < 0.1 and r.low < 0 < r.high and 0.1 < r.high - r.low < 0.3
    # coverage over repeated experiments: a 95% interval covers 0 in about 95% of them
    covered = [(lambda t: t.low <= 0 <= t.high)(kendall(rng.normal(size=60), rng.normal(size=60), n_boot=400,
                                                        seed=s)) for s in range(60)]
    assert np.mean(covered) >= 0.85


def test_fast_bootstrap_equals_scipy_on_the_resampled_runs():
    """The slow, obviously correct twin: scipy's tau-b of each resample, a point drawn twice a tie."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    y[[3, 7]] = np.nan
    x[5] = x[6]  # a tie
    C = bootstrap_counts(40, 30, seed=9)
    r = kendall(x, y, n_boot=30, seed=9)
    ok = np.isfinite(y)
    assert r.tau == pytest.approx(kendalltau(x[ok], y[ok]).statistic, abs=1e-12) and r.n == 38
    taus = []
    for c in C:
        idx = np.repeat(np.arange(40), c.astype(int))
        m = np.isfinite(y[idx])
        taus.append(kendalltau(x[idx][m], y[idx][m]).statistic)
    lo, hi = np.quantile(taus, [0.025, 0.975])
    assert (r.low, r.high) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))


def test_tau_table_matches_kendall_pair_by_pair():
    rng = np.random.default_rng(4)
    feats = {"a": rng.normal(size=30), "b": np.where(rng.random(30) < 0.2, np.nan, rng.normal(size=30))}
    targs = {"t": rng.normal(size=30), "u": feats["a"] * 2}
    df = tau_table(feats, targs, n_boot=200, seed=5)
    assert list(df.columns) == ["feature", "target", "tau", "low", "high", "n", "p_value"] and len(df) == 4
    for row in df.itertuples():
        r = kendall(feats[row.feature], targs[row.target], n_boot=200, seed=5)
        assert (row.tau, row.low, row.high, row.n) == (pytest.approx(r.tau), pytest.approx(r.low),
                                                       pytest.approx(r.high), r.n)
    assert df.set_index(["feature", "target"]).loc[("a", "u"), "tau"] == 1.0


# ----------------------------------------------------------------------------- Psi

def test_psi_of_the_target_itself_is_1(grid):
    design, _, _, target = grid
    p = granulated_kendall(target, target, design, AXES)
    assert p.psi == 1.0 and p.per_axis == {"lr": 1.0, "width": 1.0}
    assert p.n_groups == {"lr": 9, "width": 12}  # width x seed groups along lr, lr x seed along width


def test_psi_of_a_feature_tracking_one_axis(grid):
    design, lr, _, target = grid
    rng = np.random.default_rng(5)
    feature = np.log(lr) + rng.normal(0, 0.01, len(lr))  # follows lr only; noise elsewhere
    p = granulated_kendall(feature, target, design, AXES)
    assert p.per_axis["lr"] == 1.0
    assert abs(p.per_axis["width"]) < 0.25
    assert p.psi == pytest.approx((1.0 + p.per_axis["width"]) / 2)
    q = granulated_kendall(np.log(lr), target, design, AXES)  # constant within width groups
    assert q.per_axis["lr"] == 1.0 and math.isnan(q.per_axis["width"]) and q.n_skipped["width"] == 12
    assert q.psi == 1.0  # the mean over the axes where tau is defined


def test_psi_of_a_random_feature_is_near_0(grid):
    design, _, _, target = grid
    vals = [granulated_kendall(np.random.default_rng(s).normal(size=len(target)), target, design, AXES).psi
            for s in range(20)]
    assert abs(np.mean(vals)) < 0.1 and max(abs(v) for v in vals) < 0.5


def test_incomplete_grid_names_the_missing_cells(grid):
    design, _, _, target = grid
    keep = [i for i, d in enumerate(design) if not (d["lr"] == 0.05 and d["width"] == 32 and d["seed"] == 1)]
    d2, t2 = [design[i] for i in keep], target[keep]
    assert missing_cells(d2, AXES) == [{"lr": 0.05, "width": 32, "seed": 1}]
    for fn in (granulated_kendall, cmi_score):
        with pytest.raises(InputError, match=r"1 of 36 cells .*lr=0.05, width=32, seed=1"):
            fn(t2, t2, d2, AXES)
    p = granulated_kendall(t2, t2, d2, AXES, drop_incomplete=True)
    assert p.psi == 1.0 and p.n_groups == {"lr": 8, "width": 11} and p.n_skipped == {"lr": 1, "width": 1}
    assert cmi_score(t2, t2, d2, AXES, drop_incomplete=True).score == 1.0
    check_grid(design, AXES)  # complete: no error
    with pytest.raises(InputError, match="besides 'seed'"):
        granulated_kendall(target[:3], target[:3], [{"seed": s} for s in range(3)], {"seed": [0, 1, 2]})


# ----------------------------------------------------------------------------- CMI

def _cmi_slow(x, y, design, S):
    """The published definition, spelt out with dictionaries over ordered pairs of distinct runs."""
    from collections import Counter

    joint, n = Counter(), len(x)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            u = tuple((design[i][a], design[j][a]) for a in S)
            joint[(u, np.sign(x[i] - x[j]), np.sign(y[i] - y[j]))] += 1
    total = sum(joint.values())
    us = {k[0] for k in joint}
    mi = h = 0.0
    for u in us:
        cells = {k[1:]: v for k, v in joint.items() if k[0] == u}
        nu = sum(cells.values())
        pm, pg = Counter(), Counter()
        for (m, g), v in cells.items():
            pm[m] += v
            pg[g] += v
        mi += nu / total * sum(v / nu * math.log2((v / nu) / (pm[m] / nu * pg[g] / nu)) for (m, g), v in cells.items())
        h -= nu / total * sum(v / nu * math.log2(v / nu) for v in pg.values())
    return mi / h


AXES3 = {"a": [1, 2, 3], "b": [1, 2, 3], "c": [1, 2], "seed": [0, 1]}


def test_cmi_of_a_perfect_feature_is_maximal_and_of_a_random_one_near_0():
    design = _grid(AXES3)
    rng = np.random.default_rng(6)
    g = np.array([d["a"] + 2 * d["b"] - d["c"] for d in design], float) + rng.normal(0, 0.1, len(design))
    perfect = cmi_score(g, g, design, AXES3)
    assert perfect.score == 1.0 and set(perfect.per_set) == {"a|b", "a|c", "b|c"}
    assert cmi_score(np.exp(g), g, design, AXES3).score == 1.0
    rand = [cmi_score(rng.normal(size=len(g)), g, design, AXES3).score for _ in range(10)]
    assert np.mean(rand) < 0.08 and max(rand) < 0.1  # the plug-in estimate's upward bias, 36 runs
    more = dict(AXES3, seed=list(range(8)))  # 144 runs: the bias shrinks about as 1/n
    d8 = _grid(more)
    g8 = np.array([d["a"] + 2 * d["b"] - d["c"] for d in d8], float) + rng.normal(0, 0.1, len(d8))
    rand8 = [cmi_score(rng.normal(size=len(g8)), g8, d8, more).score for _ in range(10)]
    assert np.mean(rand8) < 0.015 and np.mean(rand8) < np.mean(rand) / 3
    # a feature that only follows b carries nothing once b is known: the minimum finds that
    fb = np.array([d["b"] for d in design], float) + rng.normal(0, 0.01, len(design))
    r = cmi_score(fb, g, design, AXES3)
    assert r.score < 0.05 and "b" in r.argmin and r.per_set["a|c"] > 0.3


def test_cmi_equals_the_published_definition_spelt_out():
    design = _grid({"a": [1, 2], "b": [1, 2, 3], "seed": [0, 1]})
    rng = np.random.default_rng(7)
    g = rng.normal(size=len(design))
    x = g + rng.normal(0, 1, len(design))
    x[2] = x[3]  # a tie in the feature: V_mu = 0 is a value of its own
    r = cmi_score(x, g, design, {"a": [1, 2], "b": [1, 2, 3], "seed": [0, 1]})
    for key, v in r.per_set.items():
        assert v == pytest.approx(_cmi_slow(x, g, design, key.split("|")), abs=1e-12)
    assert set(r.per_set) == {"a", "b"}  # two axes: never both at once (only seeds would be left)


# ----------------------------------------------------------------------------- partial tau

def test_partial_tau_removes_a_common_cause():
    rng = np.random.default_rng(8)
    z = rng.normal(size=300)
    x = z + rng.normal(0, 0.3, 300)
    y = z + rng.normal(0, 0.3, 300)
    plain = kendall(x, y, n_boot=0).tau
    assert plain > 0.5
    r = partial_kendall(x, y, z, n_boot=300)
    # much smaller, but not 0: Kendall's partial tau is no measure of conditional independence
    # (x and y are independent given z here; it gives 0.23 for a plain tau of 0.63)
    assert 0 < r.tau < plain / 2 and r.n == 300
    # a feature that adds information beyond z keeps a partial tau well above 0
    w = rng.normal(size=300)
    r2 = partial_kendall(w, w + z, z, n_boot=300)
    assert r2.tau > 0.3 and r2.low > 0.2
    txy, txz, tyz = (kendall(a, b, n_boot=0).tau for a, b in ((w, w + z), (w, z), (w + z, z)))
    assert r2.tau == pytest.approx((txy - txz * tyz) / math.sqrt((1 - txz ** 2) * (1 - tyz ** 2)))


# ----------------------------------------------------------------------------- prediction

def test_grouped_cv_predicts_a_linear_target_and_not_noise():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(120, 4))
    y = X @ [1.0, -2.0, 0.5, 0.0] + rng.normal(0, 0.1, 120)
    groups = np.repeat(np.arange(40), 3)
    good = grouped_cv(X, y, groups)
    assert good["r2"] > 0.95 and good["tau"] > 0.85 and good["n_splits"] == 5 and good["n_features"] == 4
    bad = grouped_cv(rng.normal(size=(120, 4)), y, groups)
    assert bad["r2"] < 0.1


def test_grouped_cv_keeps_a_configuration_out_of_its_own_training_folds():
    """A feature that names the configuration predicts its seeds' target only if that
    configuration's runs leak into the training folds; grouped folds give it nothing."""
    rng = np.random.default_rng(10)
    groups = np.repeat(np.arange(20), 4)
    effect = rng.normal(size=20)
    y = effect[groups] + rng.normal(0, 0.05, 80)
    X = np.eye(20)[groups]  # one-hot of the configuration
    assert grouped_cv(X, y, groups)["r2"] < 0.05
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict

    leaky = cross_val_predict(Ridge(alpha=1e-3), X, y, cv=KFold(5, shuffle=True, random_state=0))
    assert 1 - np.sum((y - leaky) ** 2) / np.sum((y - y.mean()) ** 2) > 0.9  # what the grouping prevents


def test_grouped_cv_with_one_group_or_no_features_returns_nan():
    r = grouped_cv(np.ones((6, 1)), np.arange(6.0), np.zeros(6))
    assert math.isnan(r["r2"]) and r["n_splits"] == 0
    r = grouped_cv(np.full((6, 2), np.nan), np.arange(6.0), np.arange(6))
    assert math.isnan(r["r2"])
