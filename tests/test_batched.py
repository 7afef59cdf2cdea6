"""Many models trained as one (gregnb.train.fit_many) against each trained alone by fit (the independent
computation): same seed, same init -> the same weights and histories, to floating-point tolerance, for every
method; a member does not depend on the others in its group; the cache stores members as single runs."""
import dataclasses

import pytest
import torch

from gregnb.data.digits import load_benchmark
from gregnb.data.toy2d import load_toy
from gregnb.experiments import default_model, train_classifier, train_classifiers
from gregnb.losses import propose_margins
from gregnb.models import LipschitzCNN
from gregnb.train import TrainConfig, fit, fit_many
from gregnb.train.batched import group_members
from gregnb.train.stacked import StackedNet, unstack_into


@pytest.fixture(scope="module")
def toy():
    return load_toy("blobs", seed=0, n_train=100, n_aux=200, aux_region="left")


@pytest.fixture(scope="module")
def digits():
    d = load_benchmark(seed=0)
    return dataclasses.replace(d, train_x=d.train_x[:98], train_y=d.train_y[:98], test_x=d.test_x[:60],
                               test_y=d.test_y[:60], aux_x=d.aux_x[:1500])


@pytest.fixture(autouse=True)
def one_thread():
    """One CPU thread, as the findings records are made: with two, the grouped and the single convolutions
    split their sums differently, and a greg+ pick that sits on a near-tie can go the other way (the
    members then differ by more than rounding, legitimately)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _margins(data):
    """Margins inside the initial model's energies, so the GReg masks select some rows and not others."""
    m_in, m_out = propose_margins(default_model(data, 0), data.train_x, data.aux_x)
    return dict(m_in=m_in + 0.05, m_out=m_in + 0.3)


def _configs(data, seeds):
    mg, base = _margins(data), dict(epochs=2, batch_size=32, lr=3e-3)
    kinds = [dict(method="ce"), dict(method="oe", aux_batch_size=48), dict(method="energy", aux_batch_size=48, **mg),
             dict(method="greg", lambda_grad=0.3, aux_batch_size=48, **mg),
             dict(method="greg", convention="reference", aux_batch_size=48, **mg),
             dict(method="greg", penalize="all", aux_batch_size=48, temperature=2.0, **mg),
             dict(method="greg", convention="reference", penalize="all", aux_batch_size=48, **mg),
             dict(method="greg", grad_every=2, aux_batch_size=48, **mg),
             dict(method="oe+grad", lambda_grad=0.5, aux_batch_size=48, **mg),
             dict(method="greg+", candidate_factor=3, **mg),
             dict(method="greg+", candidate_factor=3, sampler="greedy", **mg),
             dict(method="greg+", candidate_factor=3, two_way=False, lambda_grad=0.0, **mg)]
    return [{**base, **k, "seed": s} for k in kinds for s in seeds]


def _close(a, b, rtol):
    scale = max(a.abs().max().item(), 1e-3)
    return (a - b).abs().max().item() <= rtol * scale


@pytest.mark.slow
@pytest.mark.parametrize("name, seeds, rtol", [("toy", (0, 1), 1e-5), ("digits", (0, 1), 1e-3)])
def test_members_match_fit_alone(name, seeds, rtol, request):
    """Stacked CNNs (grouped convolutions) round differently from one CNN, and a GReg mask whose row sits within
    that rounding of its margin can decide the other way: such a member then drifts by up to ~6e-4 of its largest
    weight in two epochs (measured), most by ~1e-6. The toy MLPs are bitwise (tests/test_one_implementation.py)."""
    data = request.getfixturevalue(name)
    configs = _configs(data, seeds)
    alone = []
    for c in configs:
        m = default_model(data, c["seed"])
        alone.append((m, fit(m, data, progress=False, **c)))
    models = [default_model(data, c["seed"]) for c in configs]
    histories = fit_many(models, data, configs, progress=False, stack_images=True)
    assert len(group_members(models, [TrainConfig(**c) for c in configs],
                             torch.device("cpu"), stack_images=True)) < len(configs)  # members really were stacked
    for c, (ma, ha), mb, hb in zip(configs, alone, models, histories):
        what = f"{c['method']} {c}"
        sa, sb = ma.state_dict(), mb.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert _close(sa[k].float(), sb[k].float(), rtol), f"{what}: {k} differs"
        assert set(ha) | {"group_size"} == set(hb), what
        assert hb.config == ha.config, what
        for k in ha:
            if k == "epoch_seconds":
                continue
            exact = k in ("aux_distinct", "candidates", "picks", "lr")  # the same draws and picks, not just close
            for a, b in zip(ha[k], hb[k]):
                assert a == b if exact else abs(a - b) <= rtol * max(abs(a), 1e-2), f"{what}: history {k} {a} vs {b}"


def test_member_is_unaffected_by_its_group(digits):
    """A member's own settings (seed, margins, weights) do not reach the others in its group; settings a group must
    share (here the convention and the penalty's mode) keep members apart."""
    mg = _margins(digits)
    mine = dict(method="greg", epochs=1, batch_size=32, lr=3e-3, aux_batch_size=48, seed=0, **mg)
    other = [dict(mine, seed=1), dict(mine, seed=2, lambda_grad=3.0, lambda_s=0.5, m_in=mg["m_in"] - 1)]
    results = []
    for o in other:
        models = [default_model(digits, 0), default_model(digits, o["seed"])]
        assert len(group_members(models, [TrainConfig(**c) for c in (mine, o)], torch.device("cpu"),
                                 stack_images=True)) == 1
        fit_many(models, digits, [mine, o], progress=False, stack_images=True)
        results.append(models[0].state_dict())
    apart = dict(mine, seed=2, penalize="all", convention="reference")
    assert len(group_members([default_model(digits, 0), default_model(digits, 2)],
                             [TrainConfig(**c) for c in (mine, apart)], torch.device("cpu"), stack_images=True)) == 2
    for k in results[0]:
        assert torch.equal(results[0][k], results[1][k]), k


def test_stack_round_trip_and_grouping(digits, toy):
    models = [default_model(digits, s) for s in (0, 1, 2)]
    net = StackedNet(models)
    x = digits.test_x[:5]
    with torch.no_grad():
        for m in models:
            m.eval()
        net.eval()
        out = net(torch.stack([x] * 3))
        for i, m in enumerate(models):
            torch.testing.assert_close(out[i], m(x), rtol=1e-5, atol=1e-5)
    copies = [default_model(digits, 5) for _ in models]
    unstack_into(net, copies)
    for a, b in zip(models, copies):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(va, vb), k
    with pytest.raises(ValueError, match="one stackable architecture"):
        StackedNet([default_model(digits, 0), default_model(toy, 0)])
    # a model that cannot be stacked trains alone with fit, and gets fit's history
    lip = LipschitzCNN(digits.n_classes)
    (h,) = fit_many([lip], digits, [dict(method="ce", epochs=1, batch_size=32)], progress=False)
    assert "group_size" not in h and len(h["loss"]) == 1
    with pytest.raises(ValueError, match="one config per model"):
        fit_many([lip], digits, [], progress=False)


def test_cache_stores_members_as_single_runs(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GREGNB_DATA", str(tmp_path))
    m0, h0 = train_classifier(toy, seed=0, epochs=2)  # one model, one file
    capsys.readouterr()
    pairs = train_classifiers(toy, [0, 1], epochs=2)  # seed 0 is loaded from that file; only seed 1 trains
    out = capsys.readouterr().out
    assert out.count("loaded ") == 1 and len(list((tmp_path / "models").glob("*.pt"))) == 2
    assert pairs[0][1] == h0
    for k, v in m0.state_dict().items():
        assert torch.equal(v, pairs[0][0].state_dict()[k])
    pairs_again = train_classifiers(toy, [0, 1], epochs=2)
    assert capsys.readouterr().out.count("loaded ") == 2
    assert pairs_again[1][1] == pairs[1][1]


def test_default_grouping_makes_results_independent_of_the_group(digits, toy):
    """A chapter's numbers must not depend on which models were cached: by default a CNN trains alone (bitwise
    fit's result) and a stacked MLP member is bitwise the same whatever else shares its group."""
    cfg = dict(method="ce", epochs=1, batch_size=32, seed=0)
    alone = default_model(digits, 0)
    fit(alone, digits, progress=False, **cfg)
    many = [default_model(digits, s) for s in (0, 1)]
    fit_many(many, digits, [cfg, dict(cfg, seed=1)], progress=False)
    for k, v in alone.state_dict().items():
        assert torch.equal(v, many[0].state_dict()[k]), k
    mlp = dict(method="energy", epochs=2, batch_size=32, aux_batch_size=48, seed=0, m_in=-5.0, m_out=-1.0)
    results = []
    for others in ([1], [1, 2, 3]):
        models = [default_model(toy, s) for s in (0, *others)]
        fit_many(models, toy, [mlp] + [dict(mlp, seed=s) for s in others], progress=False)
        results.append(models[0].state_dict())
    for k in results[0]:
        assert torch.equal(results[0][k], results[1][k]), k


def _side_by_side_configs(digits):
    mg = _margins(digits)
    base = dict(epochs=2, batch_size=32, lr=3e-3, aux_batch_size=48, **mg)
    return [dict(base, method="greg", lambda_grad=0.3, seed=0), dict(base, method="energy", seed=1),
            dict(base, method="greg+", candidate_factor=3, aux_batch_size=None, seed=2),
            dict(base, method="oe+grad", lambda_grad=0.5, seed=3), dict(base, method="greg", grad_every=2, seed=4)]


@pytest.mark.slow
def test_side_by_side_members_equal_fit_on_one_thread_whatever_the_workers(digits):
    """CNN members train side by side, each on one thread: bitwise fit's weights and history at one thread, for
    any number of workers and whatever the caller's thread count; the caller's thread count and the global RNG
    are left as training one member after the other leaves them."""
    configs = _side_by_side_configs(digits)
    alone = []
    for c in configs:  # the independent computation: fit, one model after the other, one thread (the fixture)
        m = default_model(digits, c["seed"])
        alone.append((m, fit(m, digits, progress=False, **c)))
    expected_rng = torch.randn(3)   # the global generator right after the last member's fit seeded it
    torch.set_num_threads(2)
    for workers in (2, 1, 3):
        models = [default_model(digits, c["seed"]) for c in configs]
        histories = fit_many(models, digits, configs, progress=False, workers=workers)
        assert torch.get_num_threads() == 2, "fit_many must restore the caller's thread count"
        assert torch.equal(torch.randn(3), expected_rng), "the global RNG differs from sequential training's"
        for c, (ma, ha), mb, hb in zip(configs, alone, models, histories):
            for k, v in ma.state_dict().items():
                assert torch.equal(v, mb.state_dict()[k]), f"workers={workers}, {c['method']}: {k} differs"
            assert {k: v for k, v in ha.items() if k != "epoch_seconds"} == \
                   {k: v for k, v in hb.items() if k != "epoch_seconds"}, f"workers={workers}, {c['method']}"


def test_side_by_side_failure_stops_the_others_and_says_which(digits):
    configs = _side_by_side_configs(digits)[:3]
    configs[1] = dict(configs[1], lr=1e30)   # this member's loss becomes non-finite within a few steps
    torch.set_num_threads(2)
    models = [default_model(digits, c["seed"]) for c in configs]
    with pytest.raises((FloatingPointError, ValueError), match="non-finite loss|NaN/inf.*lower the learning rate"):
        fit_many(models, digits, configs, progress=False, workers=2)
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="workers must be at least 1"):
        fit_many([default_model(digits, 0)], digits, configs[:1], progress=False, workers=0)


def test_workers_come_from_the_environment_or_the_thread_count(monkeypatch):
    from gregnb.config import workers
    monkeypatch.delenv("GREGNB_WORKERS", raising=False)
    assert workers() == torch.get_num_threads()
    monkeypatch.setenv("GREGNB_WORKERS", "3")
    assert workers() == 3
    for bad in ("two", "0", "-1", "1.5"):
        monkeypatch.setenv("GREGNB_WORKERS", bad)
        with pytest.raises(ValueError, match="GREGNB_WORKERS must be a whole number"):
            workers()
