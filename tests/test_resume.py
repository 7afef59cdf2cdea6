"""Checkpoints: an interrupted run resumed from OUT/last.pt ends with the same weights as an
uninterrupted one; a non-finite loss keeps the last good checkpoint; the CLI writes what it promises."""
import json
import subprocess
import sys

import pytest
import torch

from gregnb.checkpoint import load_checkpoint
from gregnb.data.digits import load_benchmark
from gregnb.data.base import Benchmark
from gregnb.models import SmallCNN
from gregnb.train import METHODS, fit, register_method


@pytest.fixture(scope="module")
def small_digits():
    d = load_benchmark(0)
    return Benchmark("digits-small", d.train_x[:320], d.train_y[:320], d.test_x[:100], d.test_y[:100],
                     d.aux_x[:2000], {k: v[:100] for k, v in d.ood.items()}, 10)


class Interrupt(Exception):
    pass


def _model():
    torch.manual_seed(0)
    return SmallCNN(width=4)


@pytest.mark.parametrize("method", ["greg", "greg+"])
def test_resume_equals_uninterrupted(method, small_digits, tmp_path):
    kw = dict(epochs=3, batch_size=32, lr=3e-3, m_in=-3.0, m_out=-1.0, progress=False, device="cpu")
    full = _model()
    h_full = fit(full, small_digits, method, checkpoint=tmp_path / "a.pt", **kw)

    def crash(step, logs):
        if step == 15:  # in epoch 2 (10 steps per epoch): the checkpoint of epoch 1 is on disk
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(_model(), small_digits, method, checkpoint=tmp_path / "b.pt", step_hook=crash, **kw)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 1
    resumed = SmallCNN(width=4)  # different initial weights: everything must come from the checkpoint
    h_res = fit(resumed, small_digits, method, checkpoint=tmp_path / "b.pt", resume=True, **kw)
    for p, q in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)
    assert h_res["loss"] == h_full["loss"] and len(h_res["loss"]) == 3


def test_resume_refuses_another_method(small_digits, tmp_path):
    fit(_model(), small_digits, "ce", epochs=1, progress=False, checkpoint=tmp_path / "c.pt")
    with pytest.raises(ValueError, match="written by method 'ce'"):
        fit(_model(), small_digits, "energy", epochs=2, m_in=-3.0, m_out=-1.0, progress=False,
            checkpoint=tmp_path / "c.pt", resume=True)


def test_non_finite_loss_keeps_last_good_checkpoint(small_digits, tmp_path):
    def step(model, x, y, x_aux, cfg, step_index):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        return (loss * float("nan") if step_index >= 12 else loss), {}

    register_method("_nan_later", step, uses_aux=False)
    try:
        with pytest.raises(FloatingPointError, match="last good checkpoint"):
            fit(_model(), small_digits, "_nan_later", epochs=3, batch_size=32, progress=False,
                checkpoint=tmp_path / "d.pt")
    finally:
        METHODS.pop("_nan_later")
    state = load_checkpoint(tmp_path / "d.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_cli_train_resume_and_evaluate(tmp_path):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "gregnb.train", "--dataset", "digits", "--preset", "digits-energy",
            "--out", str(out), "--no-progress", "--batch-size", "128"]
    r = subprocess.run(base + ["--epochs", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1 and "model" in state and state["meta"]["arch"] == "small_cnn"
    r = subprocess.run(base + ["--epochs", "2", "--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["ood"]) == {"letters", "photos", "noise", "inverted"}
    assert set(metrics["mean"]) == {"fpr95", "auroc", "aupr_in", "aupr_out"} and 0 <= metrics["accuracy"] <= 1
    assert len(metrics["history"]["loss"]) == 2
    r = subprocess.run([sys.executable, "-m", "gregnb.evaluate", "--ckpt", str(out / "last.pt"),
                        "--json", str(tmp_path / "eval.json")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((tmp_path / "eval.json").read_text())
    assert again["mean"]["fpr95"] == pytest.approx(metrics["mean"]["fpr95"])  # the saved model, re-evaluated
    assert "letters" in r.stdout


def test_run_or_load_reuses_a_matching_run_and_sets_aside_a_stale_one(tmp_path, capsys):
    """Chapter 06's runs: a finished run with the same settings is loaded, not retrained; one made with other
    settings (here: another epoch count, as when a preset changes) is moved aside, kept, and made again."""
    from gregnb.experiments import run_or_load

    out = tmp_path / "runs" / "ce"
    args = ["--dataset", "digits", "--method", "ce", "--epochs", "1", "--batch-size", "256"]
    first = run_or_load(out, args)
    assert first["settings"]["epochs"] == 1 and len(first["history"]["loss"]) == 1
    mtime = (out / "metrics.json").stat().st_mtime_ns
    assert run_or_load(out, args) == first and (out / "metrics.json").stat().st_mtime_ns == mtime  # loaded
    capsys.readouterr()
    second = run_or_load(out, [*args[:-4], "--epochs", "2", "--batch-size", "256"])
    said = capsys.readouterr().out
    assert "holds a run with other settings (epochs 1, now 2)" in said and "training again" in said
    assert len(second["history"]["loss"]) == 2
    aside = [p for p in out.parent.iterdir() if p.name.startswith("ce-old-")]
    assert len(aside) == 1 and json.loads((aside[0] / "metrics.json").read_text()) == first   # the old run kept
