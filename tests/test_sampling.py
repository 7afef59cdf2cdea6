import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from gregnb.sampling import dos_sample, energy_cluster_sample, get_sampler, greedy_sample, kmeans, random_sample


def planted(n_clusters=5, per=20, dim=8, seed=0):
    """Well-separated clusters on distinct unit directions; energies distinct within each cluster."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:n_clusters] * 10
    labels = torch.arange(n_clusters).repeat_interleave(per)
    feats = centres[labels] + 0.05 * torch.randn(len(labels), dim, generator=g)
    energies = torch.randn(len(labels), generator=g) * 3
    perm = torch.randperm(len(labels), generator=g)
    return feats[perm], energies[perm], labels[perm]


def inertia(x, labels, centres):
    return float(((x - centres[labels]) ** 2).sum())


def test_kmeans_recovers_planted_clusters():
    x, _, truth = planted()
    labels, centres = kmeans(x, 5, generator=torch.Generator().manual_seed(1))
    # the same partition up to renaming: each found cluster is exactly one true cluster
    for c in range(5):
        assert len(set(truth[labels == c].tolist())) == 1
    assert len(set(labels.tolist())) == 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_inertia_close_to_sklearn(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1000, 16)).astype(np.float32)
    ours_labels, ours_centres = kmeans(torch.from_numpy(x), 20, generator=torch.Generator().manual_seed(seed))
    sk = KMeans(20, n_init=3, random_state=seed).fit(x)
    ours = inertia(torch.from_numpy(x), ours_labels, ours_centres)
    assert ours <= 1.05 * sk.inertia_
    # the labels are the nearest centres
    d = torch.cdist(torch.from_numpy(x), ours_centres)
    assert torch.equal(d.argmin(1), ours_labels)


def test_kmeans_handles_empty_clusters_and_duplicates():
    x = torch.tensor([[0.0, 0.0]] * 10 + [[1.0, 1.0]] * 10 + [[5.0, 5.0]])
    labels, centres = kmeans(x, 3, generator=torch.Generator().manual_seed(0))
    assert len(set(labels.tolist())) == 3
    with pytest.raises(ValueError, match="k must be"):
        kmeans(x, 22)
    with pytest.raises(ValueError, match="NaN"):
        kmeans(torch.full((4, 2), float("nan")), 2)


def test_sampler_picks_each_clusters_min_and_max_energy():
    feats, energies, truth = planted(n_clusters=5, per=20)
    idx = energy_cluster_sample(feats, energies, n_clusters=5, two_way=True, generator=torch.Generator().manual_seed(0))
    assert len(idx) == 10 and len(set(idx.tolist())) == 10
    expected = set()
    for c in range(5):
        members = (truth == c).nonzero().squeeze(1)
        expected.add(int(members[energies[members].argmin()]))
        expected.add(int(members[energies[members].argmax()]))
    assert set(idx.tolist()) == expected
    # low picks come first
    lows = idx[:5]
    assert all(energies[i] == energies[truth == truth[i]].min() for i in lows)


def test_one_way_and_several_per_cluster():
    feats, energies, truth = planted(n_clusters=4, per=10)
    idx = energy_cluster_sample(feats, energies, n_per_cluster=3, n_clusters=4, two_way=False)
    assert len(idx) == 12
    for c in range(4):
        members = (truth == c).nonzero().squeeze(1)
        lowest3 = set(members[energies[members].argsort()[:3]].tolist())
        assert lowest3 <= set(idx.tolist())


def test_window_and_random_fill():
    feats, energies, _ = planted(n_clusters=3, per=10)
    order = energies.argsort()
    idx = energy_cluster_sample(feats, energies, n_clusters=3, window=(5, 25), two_way=True)
    allowed = set(order[5:25].tolist())
    assert set(idx.tolist()) <= allowed
    # clusters of one member cannot give two picks each: the rest is filled at random, distinct
    f1 = torch.eye(4) * 5
    e1 = torch.arange(4.0)
    idx = energy_cluster_sample(torch.cat([f1, f1 + 0.01]), torch.cat([e1, e1 + 10]), n_clusters=4,
                                two_way=True, n_select=8, generator=torch.Generator().manual_seed(0))
    assert sorted(idx.tolist()) == list(range(8))


def test_deterministic_given_generator():
    feats = torch.randn(300, 16)
    energies = torch.randn(300)
    a = energy_cluster_sample(feats, energies, n_clusters=20, generator=torch.Generator().manual_seed(5))
    b = energy_cluster_sample(feats, energies, n_clusters=20, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_baselines():
    feats = torch.randn(100, 4)
    energies = torch.randn(100)
    g = greedy_sample(feats, energies, 10)
    assert set(g.tolist()) == set(energies.argsort()[:10].tolist())
    r = random_sample(feats, energies, 10, generator=torch.Generator().manual_seed(0))
    assert len(set(r.tolist())) == 10
    d = dos_sample(feats, energies, 10, n_clusters=10, window=(16, 100))
    assert len(d) == 10 and not set(d.tolist()) & set(energies.argsort()[:16].tolist())
    assert get_sampler("dos") is dos_sample


@pytest.mark.parametrize("kwargs,match", [
    (dict(features=torch.randn(5, 3), energies=torch.randn(4)), "energies must have shape"),
    (dict(features=torch.randn(5), energies=torch.randn(5)), "features must have shape"),
    (dict(features=torch.randn(5, 3), energies=torch.tensor([0.0, 1, 2, 3, float("nan")])), "NaN"),
    (dict(features=torch.randn(5, 3), energies=torch.randn(5), n_clusters=6), "n_clusters"),
])
def test_sampler_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        energy_cluster_sample(**kwargs)
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("smart")
