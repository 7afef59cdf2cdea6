"""The digits benchmark's uncovered test OOD sets: sources disjoint from every other part, no image shared
(exactly or nearly) with the pool, the validation set, the ID digits or another test set, and the
earlier parts untouched by their addition."""
import numpy as np
import pytest
import torch

from gregnb.coverage import nearest_distance
from gregnb.data import digits as digits_mod
from gregnb.data import uncovered as unc
from gregnb.data.validation import VAL_SOURCES, digits_validation_ood

NEAR = 0.25  # L2 distance between 8x8 images in [0, 1] below which two images count as the same picture


def _files(sources) -> set[str]:
    return {s.split(":", 1)[1].split("/")[-1] for s in sources}


def test_uncovered_sources_are_disjoint_from_every_other_part():
    used = {"pool": set(digits_mod.AUX_SOURCES),
            **{f"ood/{k}": set(v) for k, v in digits_mod.OOD_SOURCES.items()},
            **{f"validation/{k}": set(v) for k, v in VAL_SOURCES.items()}}
    for name, srcs in unc.UNCOVERED_SOURCES.items():
        for other, osrcs in used.items():
            assert not set(srcs) & osrcs, f"{name} shares a source with {other}"
            assert not _files(srcs) & _files(osrcs), f"{name} shares a file with {other}"
        for other, osrcs in unc.UNCOVERED_SOURCES.items():
            if other != name:
                assert not _files(srcs) & _files(osrcs), f"{name} shares a file with {other}"
    assert set(digits_mod.UNCOVERED_SOURCES) == set(unc.UNCOVERED_SOURCES)
    assert all(f"uncovered/{k}" in digits_mod.SOURCES for k in unc.UNCOVERED_SOURCES)


def test_glyph_lists_hold_no_latin_letter_or_digit_and_every_glyph_is_drawn():
    for chars in (unc.SCRIPT_GLYPHS, unc.SYMBOL_GLYPHS):
        assert not any(c.isascii() or c.isdigit() for c in chars)
    for name, chars in (("scripts", unc.SCRIPT_GLYPHS), ("symbols", unc.SYMBOL_GLYPHS)):
        drawable = set()
        for s in unc.UNCOVERED_SOURCES[name]:
            drawable |= set(unc._has_glyph(unc._font_dir() / s.split(":", 1)[1], chars))
        assert drawable == set(chars), f"{name}: no font draws {sorted(set(chars) - drawable)}"


def test_uncovered_sets_shape_range_and_not_blank(digits):
    assert set(digits.ood_uncovered) == set(unc.UNCOVERED_SOURCES)
    for name, x in digits.ood_uncovered.items():
        assert x.shape == (unc.N_UNCOVERED, 1, 8, 8) and x.dtype == torch.float32, name
        assert x.min() >= 0 and x.max() <= 1, name
        assert (x.flatten(1).std(1) > 0.05).all(), f"{name} holds a blank image"
    assert digits.sizes()["uncovered/scripts"] == unc.N_UNCOVERED


@pytest.mark.slow
def test_no_uncovered_image_occurs_in_another_part(digits):
    others = {"pool": digits.aux_x, "train": digits.train_x, "test": digits.test_x,
              "validation": digits_validation_ood(0), **{f"ood/{k}": v for k, v in digits.ood.items()}}
    for name, x in digits.ood_uncovered.items():
        parts = {**others, **{f"uncovered/{k}": v for k, v in digits.ood_uncovered.items() if k != name}}
        for other, y in parts.items():
            d = nearest_distance(x.flatten(1), y.flatten(1))
            assert d.min() > NEAR, f"an image of {name} is (nearly) an image of {other}: distance {d.min():.3f}"


@pytest.mark.slow
def test_uncovered_sets_deterministic_cached_and_earlier_parts_independent(tmp_path, digits, monkeypatch):
    a = digits_mod.load_benchmark(0, root=tmp_path)
    b = digits_mod.load_benchmark(0, root=tmp_path)  # from the cache
    for k in unc.UNCOVERED_SOURCES:
        assert torch.equal(a.ood_uncovered[k], b.ood_uncovered[k])
        assert torch.equal(a.ood_uncovered[k], digits.ood_uncovered[k])
    # the earlier parts come from their own streams: whatever the new generators draw, they stay bit for bit
    real = unc.build_uncovered
    monkeypatch.setattr(digits_mod, "build_uncovered", lambda streams: real([s.spawn(1)[0] for s in streams], n=8))
    c = digits_mod.load_benchmark(0, cache=False)
    assert len(c.ood_uncovered["text"]) == 8
    for x, y in [(c.train_x, digits.train_x), (c.test_x, digits.test_x), (c.aux_x, digits.aux_x)]:
        assert torch.equal(x, y)
    assert all(torch.equal(c.ood[k], digits.ood[k]) for k in digits.ood)


@pytest.mark.slow
def test_cache_without_the_uncovered_sets_is_rebuilt(tmp_path):
    path = tmp_path / f"digits_v{digits_mod.GENERATOR_VERSION}_seed2.npz"
    z = np.zeros((1, 1, 8, 8), np.float32)
    np.savez(path, generator_version=digits_mod.GENERATOR_VERSION, train_x=z, train_y=np.zeros(1, np.int64),
             test_x=z, test_y=np.zeros(1, np.int64), aux_x=z)
    with pytest.warns(UserWarning, match="rebuilding"):
        b = digits_mod.load_benchmark(2, root=tmp_path)
    assert len(b.train_x) == 1347 and set(b.ood_uncovered) == set(unc.UNCOVERED_SOURCES)


def test_build_uncovered_needs_one_stream_per_set():
    with pytest.raises(ValueError, match="one random stream per set"):
        unc.build_uncovered([np.random.default_rng(0)])
