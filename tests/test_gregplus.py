"""GReg+ really samples: every recipe and preset scores candidate_factor x the ID batch and trains on a
strict subset of them, of the stated size. Checked by watching the model's forward calls, not by
re-using the code's own arithmetic."""
import numpy as np
import pytest
import torch
from torch import nn

from gregnb.data.base import Benchmark
from gregnb.experiments import FINETUNE_RECIPES, SCRATCH_RECIPES, collect_picks, default_model
from gregnb.models import SmallCNN
from gregnb.presets import get_preset
from gregnb.sampling import energy_cluster_sample, plan_selection, random_sample
from gregnb.train import TrainConfig, fit


class Recorder(nn.Module):
    """Wraps a model and records, for every forward call, (training mode, inputs)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x, return_features=False):
        self.calls.append((self.training, x.detach().clone()))
        return self.inner(x, return_features=return_features)


def one_step_benchmark(batch_size, channels=1, size=8, n_pool=5000, seed=0):
    """Exactly one ID batch (one step per epoch) and a pool large enough for any candidate batch."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, channels, size, size, generator=g)
    y = torch.arange(batch_size) % 10
    pool = torch.rand(n_pool, channels, size, size, generator=g)
    return Benchmark("one-step", x, y, x[:4], y[:4], pool, {"noise": pool[:4]}, 10)


def run_one_step(settings, channels=1):
    settings = {k: v for k, v in settings.items() if k not in ("margins", "method")}
    b = settings["batch_size"]
    data = one_step_benchmark(b, channels)
    torch.manual_seed(0)
    model = Recorder(SmallCNN(10, in_channels=channels, width=4))
    settings.update(epochs=1, progress=False, log_grad_norms=False, m_in=-30.0, m_out=-1.0, lr=1e-3)
    hist = fit(model, data, "greg+", device="cpu", **settings)
    steps = [(training, x) for training, x in model.calls if len(x) != 4]  # drop the 4-image test_acc pass
    (scored_mode, scored), (trained_mode, trained) = steps
    return b, scored_mode, scored, trained_mode, trained, hist


RECIPES = {"chapter digits fine-tune": dict(FINETUNE_RECIPES["digits"], method="greg+"),
           "chapter digits scratch": dict(SCRATCH_RECIPES["digits"], method="greg+"),
           "chapter toy-size batches": dict(FINETUNE_RECIPES["toy"], method="greg+"),
           "preset digits-gregplus": get_preset("digits-gregplus"),
           "preset digits-greg --method greg+": get_preset("digits-greg"),
           "preset greg-finetune --method greg+ --aux-batch-size 128": dict(get_preset("greg-finetune"),
                                                                             aux_batch_size=128),
           "preset gregplus-scratch": get_preset("gregplus-scratch")}


@pytest.mark.parametrize("name", list(RECIPES))
def test_gregplus_scores_six_times_the_batch_and_trains_on_a_strict_subset(name):
    b, scored_mode, scored, trained_mode, trained, hist = run_one_step(RECIPES[name])
    assert not scored_mode and trained_mode, "candidates are scored in eval mode, the step runs in train mode"
    assert len(scored) == 6 * b, f"{name}: scored {len(scored)} candidates for an ID batch of {b}"
    ood = trained[b:]
    assert len(ood) == 2 * b < len(scored), f"{name}: trained on {len(ood)} outliers"  # two-way: 2x the batch
    # every outlier trained on is one of the scored candidates, and no candidate is used twice
    match = (ood.flatten(1)[:, None, :] == scored.flatten(1)[None, :, :]).all(2)
    assert match.any(1).all() and (match.sum(0) <= 1).all()
    assert hist["candidates"] == [6.0 * b] and hist["picks"] == [2.0 * b]
    assert hist["aux_distinct"] == [2.0 * b]


@pytest.mark.parametrize("name, authors", [("greg-finetune", (64, 64)), ("greg-finetune-eq", (64, 64)),
                                           ("gregplus-scratch", (64, 128))])
def test_cifar_presets_train_the_authors_batch(name, authors):
    """The authors' train_sea.py: GReg (--noCluster) trains 64 ID + size_factor_sampled_ood (1) x 64 outliers;
    two-way GReg+ 64 ID + 128 picks. Counted from the rows the model is trained on in one step."""
    settings = get_preset(name)
    method = settings["method"]
    settings = {k: v for k, v in settings.items() if k not in ("margins", "method")}
    b = settings["batch_size"]
    torch.manual_seed(0)
    model = Recorder(SmallCNN(10, in_channels=1, width=4))
    settings.update(epochs=1, progress=False, log_grad_norms=False, m_in=-30.0, m_out=-1.0, lr=1e-3)
    fit(model, one_step_benchmark(b), method, device="cpu", **settings)
    trained = [len(x) for training, x in model.calls if training]
    assert trained == [sum(authors)], f"{name}: trained on {trained} rows per step, the authors on {authors}"


def test_one_way_picks_the_batch_and_aux_batch_size_sets_the_picks():
    b, _, scored, _, trained, _ = run_one_step(dict(batch_size=16, two_way=False, aux_batch_size=None))
    assert len(scored) == 96 and len(trained) - b == 16
    b, _, scored, _, trained, _ = run_one_step(dict(batch_size=16, two_way=False, aux_batch_size=32))
    assert len(scored) == 96 and len(trained) - b == 32


@pytest.mark.parametrize("sampler", ["random", "greedy", "dos", "energy_cluster"])
def test_every_sampler_runs_with_small_batches(sampler):
    b, _, scored, _, trained, hist = run_one_step(dict(batch_size=4, sampler=sampler))
    assert len(scored) == 24 and 0 < len(trained) - b < 24
    assert np.isfinite(hist["loss"]).all()


def test_picks_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="strict subset"):
        TrainConfig(method="greg+", batch_size=64, aux_batch_size=384, m_in=-10, m_out=-5)
    with pytest.raises(ValueError, match="n_clusters"):
        TrainConfig(method="greg+", batch_size=8, n_clusters=60, m_in=-10, m_out=-5)
    with pytest.raises(ValueError, match="window"):
        TrainConfig(method="greg+", batch_size=8, window=(40, 60), m_in=-10, m_out=-5)
    with pytest.raises(ValueError, match="do not fit"):
        plan_selection("energy_cluster", 64, window=(300, 384))  # 84 kept, 128 picks
    with pytest.raises(ValueError, match="no clusters"):
        plan_selection("random", 64, n_clusters=8)


def test_plan_accepts_numpy_integers():
    plan = plan_selection("energy_cluster", np.int64(32), n_clusters=np.int64(8))
    assert (plan.n_candidates, plan.n_picks, plan.n_clusters, plan.n_per_cluster) == (192, 64, 8, 4)


def _features_and_energies(n=384, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16, generator=g), torch.randn(n, generator=g) * 4


def test_two_way_picks_hold_the_extremes_a_random_draw_usually_misses():
    """Each cluster's lowest and highest energies are picked, so the candidates' global minimum and maximum
    always are; a random draw of the same size holds both in about (128/384)^2 = 11% of draws."""
    plan = plan_selection("energy_cluster", 64)
    hits_plan = hits_random = 0
    for seed in range(20):
        f, e = _features_and_energies(seed=seed)
        extremes = {int(e.argmin()), int(e.argmax())}
        gen = torch.Generator().manual_seed(seed)
        hits_plan += extremes <= set(plan.select(f, e, generator=gen).tolist())
        hits_random += extremes <= set(random_sample(f, e, plan.n_picks, generator=gen).tolist())
    assert hits_plan == 20 and hits_random <= 8


def test_changing_k_changes_the_picks():
    f, e = _features_and_energies()
    picks = [set(plan_selection("energy_cluster", 64, n_clusters=k).select(f, e, torch.Generator().manual_seed(0))
                 .tolist()) for k in (4, 16, 64)]
    assert picks[0] != picks[1] != picks[2] != picks[0]


def test_roles_mark_fills_as_fills():
    f, e = _features_and_energies(n=40)
    idx, roles = energy_cluster_sample(f, e, n_clusters=5, two_way=True, n_select=16, return_roles=True,
                                       generator=torch.Generator().manual_seed(0))
    assert roles.tolist() == [0] * 5 + [1] * 5 + [2] * 6
    assert len(set(idx.tolist())) == 16


def test_collect_picks_uses_the_training_regime(blobs):
    model = default_model(blobs, seed=0)
    x, e, pool_idx = collect_picks(model, blobs, n_draws=3, batch_size=16)
    assert len(x) == 3 * 32 and torch.equal(blobs.aux_x[pool_idx], x)
    x1, _, _ = collect_picks(model, blobs, sampler="greedy", n_draws=3, batch_size=16)
    assert len(x1) == 3 * 16
