import os

import pytest
import torch

from gregnb.cache import cached_training
from gregnb.checkpoint import load_checkpoint, save_checkpoint
from gregnb.experiments import default_model
from gregnb.train import fit


def test_checkpoint_roundtrip_is_atomic_and_weights_only(tmp_path):
    path = tmp_path / "sub" / "ck.pt"
    state = {"model": {"w": torch.arange(3.0)}, "history": {"loss": [1.0, 0.5]}}
    save_checkpoint(state, path)
    assert [p.name for p in path.parent.iterdir()] == ["ck.pt"]  # no temporary file left behind
    back = load_checkpoint(path)
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["history"] == state["history"]
    # weights_only refuses arbitrary objects
    torch.save({"f": os.system}, tmp_path / "evil.pt")
    with pytest.raises(Exception):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_cached_training_trains_once_and_reloads(tmp_path, blobs):
    calls = []

    def train(m):
        calls.append(1)
        return fit(m, blobs, epochs=1, progress=False)

    settings = {"method": "ce", "epochs": 1}
    a = default_model(blobs, 0)
    h1 = cached_training(a, blobs, settings, train, folder=tmp_path)
    b = default_model(blobs, 0)  # same initial weights
    h2 = cached_training(b, blobs, settings, train, folder=tmp_path)
    assert len(calls) == 1 and h1["loss"] == h2["loss"]
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    # other settings, or other initial weights, train again
    cached_training(default_model(blobs, 0), blobs, {"method": "ce", "epochs": 2}, train, folder=tmp_path)
    cached_training(default_model(blobs, 1), blobs, settings, train, folder=tmp_path)
    assert len(calls) == 3


def test_a_run_spelled_two_ways_is_trained_once(tmp_path, monkeypatch, capsys):
    """A default given explicitly (lambda_grad=1.0) or left out names the same run: the second call loads it."""
    from gregnb.data.toy2d import load_toy
    from gregnb.experiments import train_classifier

    monkeypatch.setenv("GREGNB_DATA", str(tmp_path))
    toy = load_toy("blobs", seed=0, n_aux=64)
    train_classifier(toy, seed=0, epochs=1)
    assert "loaded" not in capsys.readouterr().out
    train_classifier(toy, seed=0, epochs=1, lambda_grad=1.0, convention="paper")
    assert "loaded" in capsys.readouterr().out
    train_classifier(toy, seed=0, epochs=2)                        # another run still trains
    assert "loaded" not in capsys.readouterr().out
    train_classifier(toy, seed=0, epochs=1, method="energy", m_in=-5.0, m_out=-2.0)   # another method too
    assert "loaded" not in capsys.readouterr().out
    train_classifier(toy, seed=0, epochs=1, method="greg", m_in=-5.0, m_out=-2.0)
    assert "loaded" not in capsys.readouterr().out


def test_cache_keys_hash_the_whole_tensor_not_its_printout(tmp_path, blobs):
    """Issue 37, item 6: a 2000-element tensor prints shortened ("..."), so two settings differing in one element
    got one key and the second call loaded the first model. Keys now hash every byte; a value whose text names a
    memory address (it changes each run) is refused; plain JSON settings keep their keys."""
    import numpy as np

    from gregnb.cache import key_value

    calls = []

    def train(m):
        calls.append(1)
        return {"loss": [float(len(calls))]}

    w = torch.zeros(2000)
    w2 = w.clone()
    w2[1000] = 1.0
    assert str(w) == str(w2)  # the old key's source: the same text
    h1 = cached_training(default_model(blobs, 0), blobs, {"method": "ce", "w": w}, train, folder=tmp_path)
    h2 = cached_training(default_model(blobs, 0), blobs, {"method": "ce", "w": w2}, train, folder=tmp_path)
    h3 = cached_training(default_model(blobs, 0), blobs, {"method": "ce", "w": w2.clone()}, train, folder=tmp_path)
    assert len(calls) == 2 and h1["loss"] == [1.0] and h2["loss"] == h3["loss"] == [2.0]
    a = np.zeros(2000)
    b = a.copy()
    b[7] = 1e-9
    assert key_value(a) != key_value(b) and key_value(a) == key_value(a.copy())
    assert key_value(torch.zeros(3)) != key_value(torch.zeros(3, dtype=torch.float64))  # dtype counts
    assert key_value(torch.tensor(0.5)) != key_value(torch.tensor(0.5000001))  # a 0-d tensor by value, not "0.5000"
    with pytest.raises(TypeError, match="memory address"):
        cached_training(default_model(blobs, 0), blobs, {"method": "ce", "f": lambda: 0}, train, folder=tmp_path)
    # plain JSON settings: the key's source is unchanged (json.dumps never calls key_value for them)
    import hashlib
    import json

    from gregnb.cache import code_fingerprint, data_fingerprint
    from gregnb.cache import _state_fingerprint

    m = default_model(blobs, 0)
    st = {"method": "ce", "epochs": 1, "window": [0, 9], "m_in": -5.0}
    src = json.dumps({"settings": st, "data": data_fingerprint(blobs), "code": code_fingerprint(),
                      "init": _state_fingerprint(m)}, sort_keys=True, default=str)
    cached_training(m, blobs, st, train, folder=tmp_path)
    assert (tmp_path / f"ce-{hashlib.sha256(src.encode()).hexdigest()[:20]}.pt").exists()


def test_a_failing_member_loses_no_finished_work(tmp_path, blobs, monkeypatch):
    """Issue 37, item 3: cached_fit_many with two GReg members and one that diverges (lr=1e30) raises the diverging
    member's error, naming it, after the other two are cached: the next call loads them (no training), with the
    weights fit() gives each, trained alone."""
    import gregnb.cache as cache_mod
    from gregnb.cache import cached_fit_many
    from gregnb.models import MLP

    monkeypatch.setenv("GREGNB_DATA", str(tmp_path))

    def mlp(seed):
        torch.manual_seed(seed)
        return MLP(n_classes=3)

    base = dict(method="greg", epochs=2, batch_size=100, lr=1e-2, m_in=-5.0, m_out=-1.0, progress=False,
                log_grad_norms=False)
    configs = [dict(base, seed=0), dict(base, seed=1), dict(base, seed=2, lr=1e30)]
    with pytest.raises((ValueError, FloatingPointError)) as exc:
        cached_fit_many([mlp(0), mlp(1), mlp(2)], blobs, configs, [dict(c) for c in configs], desc="t")
    note = " ".join(getattr(exc.value, "__notes__", []))
    assert "member 2 of 3 (lr=1e+30, seed=2) failed" in note and "2 member(s) that trained are cached" in note
    assert len(list((tmp_path / "models").glob("greg-*.pt"))) == 2

    def no_training(*a, **k):
        raise AssertionError("a finished member was trained again")

    monkeypatch.setattr(cache_mod, "fit_many", no_training)
    loaded = [mlp(0), mlp(1)]
    histories = cached_fit_many(loaded, blobs, configs[:2], [dict(c) for c in configs[:2]], desc="t")
    for model, cfg, h in zip(loaded, configs, histories):
        alone = mlp(cfg["seed"])
        h_alone = fit(alone, blobs, device="cpu", **cfg)
        assert h["loss"] == pytest.approx(h_alone["loss"], rel=1e-6)  # the history: as fit_many logs it
        for p, q in zip(model.state_dict().values(), alone.state_dict().values()):
            assert torch.equal(p, q)
