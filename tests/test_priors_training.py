"""Priors in training (issue 11, step 3): TrainConfig.prior / prior_mode / prior_layer / loss,
their run ids, train() with a prior, the registry entries, ``train --prior`` and sweep axes.
Tiny runs (digits, 64 images, one epoch): a few seconds in all."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from filtertopo import load_kernels, priors  # noqa: E402
from filtertopo.cli import main  # noqa: E402
from filtertopo.errors import InputError  # noqa: E402
from filtertopo.training import TrainConfig, create_model, train  # noqa: E402
from filtertopo.training.loop import build_model, loss_function  # noqa: E402

TINY = dict(dataset="digits", n_train=64, batch_size=16, epochs=1, eval_samples=32, threads=1)

# Run ids computed by the TrainConfig of commit 39607f9, before the prior and loss fields existed.
OLD_KEYS = [({}, "1d6f6a72293ca5e6"),
            ({"lr": 0.01, "seed": 3, "model": "cifar_net", "dataset": "digits"}, "fe5c2c6b43c26100"),
            ({"model_kwargs": {"widths": [8, 4]}, "n_train": 100, "optimizer": "adam"}, "cd5316414868ef1d")]


# ---------------------------------------------------------------------------------------------
# TrainConfig: fields, key, validation
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, key", OLD_KEYS)
def test_run_ids_without_a_prior_are_unchanged(values, key):
    assert TrainConfig(**values).key() == key
    # prior None: prior_mode / prior_layer do not change what is trained, so not the id
    assert TrainConfig(**values, prior_mode="init", prior_layer="conv2").key() == key
    assert TrainConfig(**values, prior="none").key() == key
    assert TrainConfig(**values, loss="cross_entropy").key() == key


def test_prior_and_loss_change_the_id():
    base = TrainConfig()
    ids = {base.key(), base.replace(prior="klein").key(), base.replace(prior="circle").key(),
           base.replace(prior="klein", prior_mode="init").key(),
           base.replace(prior="klein", prior_layer="conv2").key(),
           base.replace(loss="mse_softmax").key()}
    assert len(ids) == 6


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", " none "])
def test_none_spelling(spelling):
    assert TrainConfig(prior=spelling).prior is None
    assert TrainConfig.from_dict({"prior": spelling}).prior is None
    assert TrainConfig(prior="klein").replace(prior=spelling).prior is None


def test_config_round_trip():
    c = TrainConfig(prior="klein_kol", prior_mode="init", loss="mse_softmax")
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    d = c.to_dict()
    assert (d["prior"], d["prior_mode"], d["prior_layer"], d["loss"]) == \
        ("klein_kol", "init", "conv1", "mse_softmax")
    # a config.json from before these fields existed still loads, with the defaults
    old = {k: v for k, v in TrainConfig().to_dict().items()
           if k not in ("prior", "prior_mode", "prior_layer", "loss")}
    assert TrainConfig.from_dict(old) == TrainConfig()


@pytest.mark.parametrize("changes, match", [
    ({"prior": "kelin"}, r"'prior' \(--prior\) must be one of .*'klein_kol'.*Did you mean 'klein'"),
    ({"prior": "klein_kl"}, r"Did you mean 'klein_kol'"),
    ({"prior": 3}, r"'prior' must be str or None"),
    ({"prior_mode": "frozen"}, r"'prior_mode' \(--prior-mode\) must be 'fixed' .* or 'init'.*'frozen'"),
    ({"prior_layer": ""}, r"'prior_layer' \(--prior-layer\) must name a conv module"),
    ({"prior_layer": None}, r"'prior_layer' must be str"),
    ({"loss": "mse"}, r"'loss' \(--loss\) must be one of \['cross_entropy', 'mse_softmax'\].*"
                      r"Did you mean 'mse_softmax'"),
])
def test_bad_values(changes, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(**changes)


# ---------------------------------------------------------------------------------------------
# build_model: the prior under the run's seed; the other layers as without it
# ---------------------------------------------------------------------------------------------

def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("prior, mode", [("klein", "fixed"), ("klein", "init"), ("circle", "fixed"),
                                         ("gabor", "init"), ("dct_tiled", "fixed"),
                                         ("random_orthonormal", "fixed")])
def test_shared_layers_equal_the_plain_run(prior, mode):
    rng = torch.get_rng_state()
    plain = _state(build_model(TrainConfig(seed=7)))
    with_prior = build_model(TrainConfig(seed=7, prior=prior, prior_mode=mode))
    assert torch.equal(rng, torch.get_rng_state()), "build_model changed the global RNG"
    got = _state(with_prior)
    for name in ("conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                 "conv1.bias"):
        assert torch.equal(plain[name], got[name]), name
    assert not torch.equal(plain["conv1.weight"], got["conv1.weight"])
    assert isinstance(with_prior.conv1, priors.layers.PriorConv2d) == (mode == "fixed")
    assert isinstance(with_prior.conv1.weight, torch.nn.Parameter) == (mode == "init")
    # a different seed changes the shared layers, not the bank
    other = _state(build_model(TrainConfig(seed=8, prior=prior, prior_mode=mode)))
    assert torch.equal(other["conv1.weight"], got["conv1.weight"])
    assert not torch.equal(other["fc1.weight"], got["fc1.weight"])


def test_kol_keeps_the_plain_conv2_masked():
    plain = build_model(TrainConfig(seed=2))
    kol = build_model(TrainConfig(seed=2, prior="klein_kol"))
    rnd = build_model(TrainConfig(seed=2, prior="klein_randmask"))
    for net in (kol, rnd):
        assert torch.equal(net.conv2.weight, plain.conv2.weight * net.conv2.mask)
        assert torch.equal(net.fc1.weight, plain.fc1.weight)
    assert kol.conv2.density == pytest.approx(rnd.conv2.density)
    assert abs(kol.conv2.density - 0.109375) < 1e-9  # KOL_THRESHOLD 1.2, 8x8 -> 4x8 grid
    assert not torch.equal(kol.conv2.mask, rnd.conv2.mask)
    # the random mask: reproducible per seed, another mask for another seed
    again = build_model(TrainConfig(seed=2, prior="klein_randmask"))
    other = build_model(TrainConfig(seed=3, prior="klein_randmask"))
    assert torch.equal(again.conv2.mask, rnd.conv2.mask)
    assert not torch.equal(other.conv2.mask, rnd.conv2.mask)
    assert (rnd.conv2.mask[:, :, 0, 0].sum(1) == kol.conv2.mask[:, :, 0, 0].sum(1)).all()


@pytest.mark.parametrize("kw, match", [
    ({"prior": "klein_kol", "layer": "conv2"}, r"conv2 has 32 output channels.*use n1=4, n2=8"),
    ({"prior": "klein_kol", "layer": "conv2", "n1": 4, "n2": 8}, r"no conv after it"),
    ({"prior": "klein_randmask", "layer": "conv1", "raw_pixel": True}, r"raw_pixel=True"),
    ({"prior": "klein_kol", "layer": "conv1", "mask_seed": 3}, r"mask_seed is an option of 'klein_randmask'"),
    ({"prior": "klein_kol", "layer": "conv1", "threshold": 9.0}, r"threshold"),
    ({"prior": "klein_kol", "layer": "conv1", "next_layer": "fc1"}, r"not another nn.Conv2d"),
    ({"prior": "circle_raw", "layer": "conv1", "raw_pixel": False}, r"always has the raw-pixel"),
    ({"prior": "dct_tiled", "layer": "conv1", "n": 3}, r"dct_tiled takes no options"),
    ({"prior": "klein_kol", "layer": "conv1", "mode": "frozen"}, r"mode must be 'fixed'"),
])
def test_recipe_errors_leave_the_model_unchanged(kw, match):
    net = create_model("mnist_net")
    before = _state(net)
    with pytest.raises(InputError, match=match):
        priors.apply(net, **kw)
    after = _state(net)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert type(net.conv1) is torch.nn.Conv2d and type(net.conv2) is torch.nn.Conv2d


def test_kol_needs_the_conv_that_reads_the_layer():
    net = torch.nn.Sequential()
    net.add_module("conv1", torch.nn.Conv2d(1, 16, 3, padding=1))
    net.add_module("side", torch.nn.Conv2d(1, 8, 3, padding=1))
    with pytest.raises(InputError, match=r"must read all of conv1's 16 outputs.*in_channels 1"):
        priors.apply(net, "klein_kol", layer="conv1")
    assert type(net.conv1) is torch.nn.Conv2d


def test_registry_entries_are_the_prior_configs():
    for entry, prior in (("mnist_net_cf", "circle"), ("mnist_net_kf", "klein"),
                         ("mnist_net_kf_kol", "klein_kol")):
        a = _state(build_model(TrainConfig(model=entry, seed=5)))
        b = _state(build_model(TrainConfig(model="mnist_net", prior=prior, seed=5)))
        assert a.keys() == b.keys(), entry
        for k in a:
            assert torch.equal(a[k], b[k]), (entry, k)
    kf = create_model("mnist_net_kf")
    np.testing.assert_allclose(kf.conv1.weight[:, 0].numpy(), priors.klein_bank(8, 8), atol=0)
    assert create_model("mnist_net_cf", widths=[16, 8]).conv1.out_channels == 16
    with pytest.raises(InputError, match=r"klein.*use n1=4, n2=8"):
        create_model("mnist_net_kf", widths=[32, 16])


def test_prior_that_does_not_fit_fails_before_any_file(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(InputError, match=r"prior='klein', prior_layer='conv1'.*do not fit model "
                                         r"'mnist_net'.*use n1=4, n2=8"):
        train(dict(TINY, prior="klein", model_kwargs={"widths": [32, 16]}), run)
    with pytest.raises(InputError, match=r"layer 'fc1' is a Linear.*\['conv1', 'conv2'\]"):
        train(dict(TINY, prior="circle", prior_layer="fc1"), run)
    with pytest.raises(InputError, match=r"not a plain trainable Parameter"):
        train(dict(TINY, model="mnist_net_kf", prior="klein", prior_mode="init"), run)
    assert not run.exists()


# ---------------------------------------------------------------------------------------------
# train(): a fixed prior does not move, is exported, and is recorded
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prior_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("prior_runs")
    cfg = dict(TINY, seed=1, optimizer="adamw", lr=0.01, weight_decay=0.1)
    return {name: train(dict(cfg, **changes), root / name) for name, changes in (
        ("fixed", {"prior": "klein"}), ("init", {"prior": "klein", "prior_mode": "init"}),
        ("kol", {"prior": "klein_kol"}), ("mse", {"prior": "circle", "loss": "mse_softmax"}))}


def test_fixed_prior_is_not_trained(prior_runs):
    run = prior_runs["fixed"]
    bank = priors.klein_bank(8, 8)[:, None]
    kernels = load_kernels(run / "kernels.npz").kernels
    assert list(kernels) == ["conv1", "conv2"]  # analyze / track see the prior layer
    np.testing.assert_array_equal(kernels["conv1"], bank)
    state = torch.load(run / "model.pt", weights_only=True)
    np.testing.assert_array_equal(state["conv1.weight"].numpy(), bank)  # a buffer, saved
    init = build_model(TrainConfig.from_dict(json.loads((run / "config.json").read_text())["config"]))
    assert not torch.equal(state["conv1.bias"], init.conv1.bias.detach())  # the bias trained
    assert not torch.equal(state["conv2.weight"], init.conv2.weight.detach())
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "complete"


def test_fixed_prior_weight_is_not_in_the_optimiser():
    model = build_model(TrainConfig(prior="klein"))
    params = {id(p) for p in model.parameters()}
    assert id(model.conv1.weight) not in params and id(model.conv1.bias) in params


def test_init_prior_trains(prior_runs):
    kernels = load_kernels(prior_runs["init"] / "kernels.npz").kernels
    bank = priors.klein_bank(8, 8)[:, None]
    assert not np.array_equal(kernels["conv1"], bank)
    assert np.abs(kernels["conv1"] - bank).max() < 0.5  # it started there


def test_kol_run_keeps_its_mask(prior_runs):
    run = prior_runs["kol"]
    kernels = load_kernels(run / "kernels.npz").kernels
    model = build_model(TrainConfig(prior="klein_kol"))
    mask = model.conv2.mask.numpy()
    assert (kernels["conv2"][mask == 0] == 0).all()
    assert (kernels["conv2"][mask == 1] != 0).mean() > 0.99
    np.testing.assert_array_equal(kernels["conv1"], priors.klein_bank(8, 8)[:, None])


def test_config_json_records_the_prior(prior_runs):
    rec = json.loads((prior_runs["mse"] / "config.json").read_text())["config"]
    assert (rec["prior"], rec["prior_mode"], rec["prior_layer"], rec["loss"]) == \
        ("circle", "fixed", "conv1", "mse_softmax")
    metrics = (prior_runs["mse"] / "metrics.csv").read_text().splitlines()
    loss = float(metrics[1].split(",")[2])
    assert 0 < loss < 0.2  # an MSE of probabilities (cross-entropy would be near log 10 = 2.3)


def test_mse_softmax_loss():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    p = torch.softmax(logits, 1)
    onehot = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    expect = ((p - onehot) ** 2).mean()
    assert torch.allclose(loss_function("mse_softmax")(logits, y), expect)
    assert loss_function("cross_entropy") is torch.nn.functional.cross_entropy


# ---------------------------------------------------------------------------------------------
# CLI and sweeps
# ---------------------------------------------------------------------------------------------

def test_cli_prior_flags(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["train", "--dataset", "digits", "--n-train", "32", "--batch-size", "16", "--epochs", "1",
               "--eval-samples", "16", "--threads", "1", "--prior", "circle", "--prior-mode", "init",
               "--loss", "mse_softmax", "--out", str(out), "--no-progress"])
    assert rc == 0
    rec = json.loads((out / "config.json").read_text())["config"]
    assert (rec["prior"], rec["prior_mode"], rec["loss"]) == ("circle", "init", "mse_softmax")
    # --prior none overrides a --config with a prior
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"prior": "klein", "dataset": "digits", "n_train": 32, "epochs": 1,
                               "eval_samples": 16, "threads": 1}))
    rc = main(["train", "--config", str(cfg), "--prior", "none", "--out", str(tmp_path / "none"),
               "--no-progress"])
    assert rc == 0
    assert json.loads((tmp_path / "none" / "config.json").read_text())["config"]["prior"] is None
    capsys.readouterr()
    rc = main(["train", "--prior", "kelin", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "Did you mean 'klein'" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_sweep_axis_prior_with_none():
    from filtertopo.sweep.spec import parse_spec

    spec = parse_spec({"name": "p", "seeds": 2,
                       "train": dict(TINY),
                       "axes": {"prior": ["none", "klein", "klein_kol"], "prior_mode": ["fixed"]}})
    runs = spec.expand()
    assert len(runs) == 6
    plain = TrainConfig(**TINY, seed=0)
    assert runs[0].config.prior is None and runs[0].id == plain.key()
    assert [r.config.prior for r in runs[::2]] == [None, "klein", "klein_kol"]
    with pytest.raises(InputError, match="same training run"):
        # prior none x two modes: the same run twice (prior_mode only matters with a prior)
        parse_spec({"name": "p", "train": dict(TINY),
                    "axes": {"prior": ["none", "klein"], "prior_mode": ["fixed", "init"]}}).expand()
    with pytest.raises(InputError, match=r"prior.*Did you mean 'circle'"):
        parse_spec({"name": "p", "train": dict(TINY), "axes": {"prior": ["none", "cirlce"]}})


# ---------------------------------------------------------------------------------------------
# benchmarks/bench_priors.py: its arms build, its statistics on known answers
# ---------------------------------------------------------------------------------------------

def _bench():
    import importlib.util
    import sys
    from pathlib import Path

    if "bench_priors" in sys.modules:
        return sys.modules["bench_priors"]

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_priors.py"
    spec = importlib.util.spec_from_file_location("bench_priors", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_priors", mod)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules["bench_priors"])
    return sys.modules["bench_priors"]


def test_bench_every_arm_builds():
    b = _bench()
    plan = b.Plan()
    for arm in b.ARMS:
        for regime in b.REGIMES:
            for reverse in (False, True):
                cfg = b.arm_config(arm, regime, 0, 1e-3, plan, reverse=reverse)
                assert cfg.loss == ("mse_softmax" if regime == "published" else "cross_entropy")
        model = build_model(b.arm_config(arm, "fair", 0, 1e-3, plan))
        assert tuple(model(torch.zeros(2, 1, 28, 28)).shape) == (2, 10), arm
    assert b.arm_config("plain", "published", 0, None, plan).lr == 1e-5
    assert b.arm_config("plain", "published", 0, None, plan).epochs == 2  # 4,000 of 3,500 images
    pairs = b.comparisons(plan.arms)
    assert ("kf_kol", "kf_randmask") in pairs and ("c1811", "plain_w17") in pairs
    assert len(pairs) == len(b.ARMS) - 1 + 2


def test_bench_statistics():
    b = _bench()
    np.testing.assert_allclose(b.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(b.holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])
    m = b.run_metrics([(0, 0.1), (100, 0.5), (200, 0.92), (300, 0.96)], 300)
    assert m["acc_250"] == pytest.approx(0.94) and np.isnan(m["acc_1000"])
    assert m["img_to_90"] == pytest.approx(100 + 100 * 0.4 / 0.42) and m["img_to_90_reached"]
    assert m["img_to_95"] == pytest.approx(275)
    assert m["auc"] == pytest.approx(195 / 300)
    never = b.run_metrics([(0, 0.1), (100, 0.5)], 100)
    assert never["img_to_90"] == 100 and not never["img_to_90_reached"]  # censored at the budget
    r = b.paired_bootstrap([0.1, 0.12, 0.08, 0.11, 0.09, 0.1, 0.13, 0.07, 0.1, 0.1], 2000)
    assert r["n"] == 10 and r["ci_lo"] > 0.08 and r["ci_hi"] < 0.12 and r["p"] < 0.001
    r = b.paired_bootstrap([0.1, -0.1, 0.05, -0.05, 0.0, 0.02, -0.02, 0.01, -0.01, 0.0], 2000)
    assert r["ci_lo"] < 0 < r["ci_hi"] and r["p"] > 0.5
