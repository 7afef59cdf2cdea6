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
