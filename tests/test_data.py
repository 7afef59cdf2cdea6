import hashlib

import numpy as np
import pytest
import torch

from gregnb.data import digits as digits_mod
from gregnb.data.toy2d import MIN_DIST, load_toy


def test_toy_deterministic_and_shaped():
    a, b = load_toy("blobs", seed=3), load_toy("blobs", seed=3)
    c = load_toy("blobs", seed=4)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.aux_x, b.aux_x)
    assert all(torch.equal(a.ood[k], b.ood[k]) for k in a.ood)
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_x.shape == (600, 2) and a.train_x.dtype == torch.float32
    assert set(a.train_y.tolist()) == {0, 1, 2}
    assert set(a.ood) == {"uniform", "ring", "near", "far"}


def test_toy_pool_size_does_not_change_id_data():
    a, b = load_toy("moons", seed=1, n_aux=100), load_toy("moons", seed=1, n_aux=3000)
    assert torch.equal(a.train_x, b.train_x) and len(b.aux_x) == 3000


def test_toy_ood_kept_off_id_data():
    t = load_toy("moons", seed=0)
    for name, x in t.ood.items():
        d = torch.cdist(x, t.train_x).min()
        assert d >= MIN_DIST - 1e-5, name


def test_toy_left_region_and_errors():
    t = load_toy("blobs", aux_region="left")
    assert (t.aux_x[:, 0] <= 0).all()
    with pytest.raises(ValueError, match="unknown toy set"):
        load_toy("spirals")
    with pytest.raises(ValueError, match="n_aux"):
        load_toy("blobs", n_aux=0)


def test_digits_sizes_and_ranges(digits):
    assert digits.train_x.shape == (1347, 1, 8, 8) and digits.test_x.shape == (450, 1, 8, 8)
    assert len(digits.aux_x) >= 20_000
    assert len(digits.ood) >= 4 and all(len(v) >= 500 for v in digits.ood.values())
    for part in [digits.train_x, digits.test_x, digits.aux_x, *digits.ood.values()]:
        assert part.dtype == torch.float32 and part.min() >= 0 and part.max() <= 1
        assert part.shape[1:] == (1, 8, 8)
    # stratified split: every class keeps its share (within one image) in the test set
    counts = torch.bincount(digits.test_y, minlength=10).numpy()
    total = counts + torch.bincount(digits.train_y, minlength=10).numpy()
    assert np.all(np.abs(counts - 0.25 * total) <= 1)


def _hashes(x: torch.Tensor) -> set[str]:
    q = (x.numpy() * 255).round().astype(np.uint8).reshape(len(x), -1)
    return {hashlib.sha1(row.tobytes()).hexdigest() for row in q}


def test_digits_pool_and_test_sets_are_disjoint(digits):
    ood_sources = {s for srcs in digits_mod.OOD_SOURCES.values() for s in srcs}
    assert not set(digits_mod.AUX_SOURCES) & ood_sources
    # no photo file or font file is shared (compare the file part of each source)
    aux_files = {s.split("/")[-1] for s in digits_mod.AUX_SOURCES}
    assert not aux_files & {s.split("/")[-1] for s in ood_sources}
    pool = _hashes(digits.aux_x)
    blank = hashlib.sha1(np.zeros(64, np.uint8).tobytes()).hexdigest()
    for name, x in digits.ood.items():
        shared = (pool & _hashes(x)) - {blank}
        assert not shared, f"{name} shares {len(shared)} images with the pool"
    # no ID digit appears in the pool
    assert not (pool & _hashes(digits.train_x))


@pytest.mark.slow
def test_digits_deterministic_and_cached(tmp_path):
    a = digits_mod.load_benchmark(0, root=tmp_path)
    path = tmp_path / f"digits_v{digits_mod.GENERATOR_VERSION}_seed0.npz"
    assert path.exists()
    b = digits_mod.load_benchmark(0, root=tmp_path)  # from the cache
    c = digits_mod.load_benchmark(0, cache=False)  # rebuilt from scratch
    for x, y in [(a.aux_x, b.aux_x), (a.aux_x, c.aux_x), (a.train_x, c.train_x)]:
        assert torch.equal(x, y)
    assert all(torch.equal(a.ood[k], c.ood[k]) for k in a.ood)


@pytest.mark.slow
def test_digits_stale_cache_is_rebuilt(tmp_path, monkeypatch):
    path = tmp_path / f"digits_v{digits_mod.GENERATOR_VERSION}_seed1.npz"
    np.savez(path, generator_version=digits_mod.GENERATOR_VERSION - 1, train_x=np.zeros((1, 1, 8, 8)))
    calls = []
    real = digits_mod.build_arrays
    monkeypatch.setattr(digits_mod, "build_arrays", lambda seed: calls.append(seed) or real(seed))
    b = digits_mod.load_benchmark(1, root=tmp_path)
    assert calls == [1] and len(b.train_x) == 1347
    with np.load(path) as z:
        assert int(z["generator_version"]) == digits_mod.GENERATOR_VERSION


def test_digits_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        digits_mod.load_benchmark(-1)


def test_shape_outliers_draw_the_pools_kind_of_shapes():
    from gregnb.data.digits import shape_outliers

    a, b = shape_outliers(50, seed=0), shape_outliers(50, seed=0)
    assert a.shape == (50, 1, 8, 8) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, shape_outliers(50, seed=1))
    assert 0.0 <= a.min() and a.max() <= 1.0 and (a.flatten(1).amax(1) > 0).all()   # every image has ink
    with pytest.raises(ValueError, match="n must be"):
        shape_outliers(0)
