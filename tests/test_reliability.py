"""No lost work and no silent wrong answer on bad input: each test is named by the behaviour it protects. A bad
input gets a clear error naming the fix (before any training), or the correct behaviour. Sections: lost work or
wrong settings recorded; silent wrong answers; confusing errors."""
import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import zipfile

import numpy as np
import pytest
import torch

import gregnb.cache as cache_mod
import gregnb.data.digits as digits_mod
from gregnb.cache import cached_training
from gregnb.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from gregnb.data.base import Benchmark
from gregnb.data.cifar import gpu_augment, load_aux_pool, load_cifar, load_image_folder, load_svhn, normalize
from gregnb.evaluate import predict_logits
from gregnb.lipschitz import attack_radius, certified_fraction, input_gradient_norm, local_lipschitz
from gregnb.losses import greg_objective, greg_penalty, propose_margins
from gregnb.models import MLP, SmallCNN
from gregnb.scores import energy
from gregnb.train import TrainConfig, fit, fit_many, main

KW = dict(epochs=2, batch_size=100, lr=1e-2, progress=False, log_grad_norms=False, device="cpu")


def _mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(n_classes=3)


def _bench(blobs, **changes):
    parts = dict(name="b", train_x=blobs.train_x, train_y=blobs.train_y, test_x=blobs.test_x, test_y=blobs.test_y,
                 aux_x=blobs.aux_x, ood=blobs.ood, n_classes=3)
    parts.update(changes)
    return Benchmark(**parts)


def _never_called(step, logs):
    raise AssertionError("training started before the bad input was caught")


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder unwritable: chmod where that binds; as root (which ignores modes), writes there fail."""
    made = []

    def make(folder):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        made.append(folder)
        if os.geteuid() == 0:
            real = tempfile.mkstemp

            def mkstemp(*a, dir=None, **k):
                if dir is not None and os.path.realpath(dir) in {os.path.realpath(f) for f in made}:
                    raise PermissionError(13, "Permission denied", str(dir))
                return real(*a, dir=dir, **k)

            monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        return folder

    yield make
    for f in made:
        f.chmod(0o755)


# ---------------------------------------------------------------- lost work or wrong settings recorded

def test_batch_size_one_is_refused_before_training(blobs, tmp_path):
    with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 2 \(BatchNorm"):
        fit(_mlp(), blobs, **{**KW, "batch_size": 1}, checkpoint=tmp_path / "last.pt", step_hook=_never_called)
    assert not (tmp_path / "last.pt").exists()
    # a 1-sample tail is still skipped, and every epoch records its steps
    data = _bench(blobs, train_x=blobs.train_x[:7], train_y=blobs.train_y[:7])
    steps = []
    h = fit(_mlp(), data, **{**KW, "batch_size": 2}, step_hook=lambda s, logs: steps.append(s))
    assert len(steps) == 6 and len(h["loss"]) == 2 and all(math.isfinite(v) for v in h["loss"])


def test_m_in_without_m_out_is_refused(tmp_path, capsys):
    for extra in (["--method", "greg", "--m-in", "-10"], ["--method", "ce", "--m-in", "-10", "--m-out", "-5"]):
        with pytest.raises(SystemExit) as exc:
            main(["--out", str(tmp_path / "run"), "--no-progress", *extra])
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--m-in and --m-out go together" in err and "does not use them" in err
    assert not (tmp_path / "run").exists()


def test_existing_out_is_not_overwritten_without_a_flag(blobs, tmp_path, capsys):
    out = tmp_path / "run"
    save_checkpoint({"model": {}, "epoch": 1}, out / "last.pt")
    before = (out / "last.pt").read_bytes()
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and (out / "last.pt").read_bytes() == before
    # the same at fit's level; overwrite=True starts over
    with pytest.raises(FileExistsError, match="resume=True.*overwrite=True"):
        fit(_mlp(), blobs, **KW, checkpoint=out / "last.pt", step_hook=_never_called)
    assert (out / "last.pt").read_bytes() == before
    fit(_mlp(), blobs, **KW, checkpoint=out / "last.pt", overwrite=True)
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_resume_refuses_changed_settings_and_records_what_ran(blobs, tmp_path, capsys):
    ck = tmp_path / "last.pt"
    fit(_mlp(), blobs, **KW, checkpoint=ck)
    for change, listed in ((dict(lr=5e-2), "lr: 0.01 in the checkpoint, 0.05 now"),
                           (dict(batch_size=50), "batch_size: 100 in the checkpoint, 50 now"),
                           (dict(epochs=1), "a finished run cannot be shortened")):
        with pytest.raises(ValueError, match="cannot resume") as exc:
            fit(_mlp(), blobs, **{**KW, **change}, checkpoint=ck, resume=True, step_hook=_never_called)
        assert listed in str(exc.value)
    assert load_checkpoint(ck)["config"]["lr"] == 0.01  # untouched
    # growing epochs on a finished run: allowed, said aloud, recorded
    h = fit(_mlp(), blobs, **{**KW, "epochs": 4}, checkpoint=ck, resume=True)
    assert "rebuilt for 4 epochs" in capsys.readouterr().out
    state = load_checkpoint(ck)
    assert state["epoch"] == 4 and state["config"]["epochs"] == 4 and len(h["loss"]) == 4
    assert state["extensions"] == h.extensions == [{"at_epoch": 2, "from_epochs": 2, "to_epochs": 4}]
    assert h["lr"][2] > h["lr"][1]  # the cosine schedule really restarted
    # growing epochs on an unfinished run mixes two schedules: refused
    ck2 = tmp_path / "b.pt"

    def crash(step, logs):
        if step == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_mlp(), blobs, **{**KW, "epochs": 3}, checkpoint=ck2, step_hook=crash)
    with pytest.raises(ValueError, match="finish it with epochs=3 first"):
        fit(_mlp(), blobs, **{**KW, "epochs": 5}, checkpoint=ck2, resume=True)


def test_cli_resume_reuses_the_margins_that_ran_and_refuses_changes(digits, tmp_path, capsys):
    out = tmp_path / "run"
    small = Benchmark("d", digits.train_x[:128], digits.train_y[:128], digits.test_x[:64], digits.test_y[:64],
                      digits.aux_x[:512], {}, 10)
    torch.manual_seed(0)
    fit(SmallCNN(), small, "greg", epochs=1, batch_size=64, aux_batch_size=128, lr=1e-3, m_in=-7.5, m_out=-3.25,
        progress=False, checkpoint=out / "last.pt",
        checkpoint_extra={"meta": {"dataset": "digits", "arch": "small_cnn", "seed": 0}})
    flags = ["--method", "greg", "--epochs", "1", "--batch-size", "64", "--aux-batch-size", "128", "--lr", "1e-3",
             "--out", str(out), "--no-progress", "--resume"]
    with pytest.raises(ValueError, match="lr: 0.001 in the checkpoint, 0.01 now"):
        main([*flags, "--lr", "1e-2"])
    with pytest.raises(ValueError, match="--arch small_cnn"):
        main([*flags, "--arch", "resnet18_32x32"])
    assert main(flags) == 0  # finished: evaluates the saved model, with the margins it was trained with
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["m_in"] == -7.5 and metrics["settings"]["m_out"] == -3.25
    assert metrics["settings"]["lr"] == 1e-3 and metrics["extensions"] == []


def test_read_only_folders_lose_no_work_and_files_are_shareable(blobs, tmp_path, read_only, monkeypatch):
    calls = []

    def train(m):
        calls.append(1)
        return fit(m, blobs, **{**KW, "epochs": 1})

    with pytest.warns(UserWarning, match="not cached"):
        h = cached_training(_mlp(), blobs, {"method": "ce"}, train, folder=read_only(tmp_path / "shared"))
    assert calls == [1] and len(h["loss"]) == 1
    # a save that fails after training returns the result too
    monkeypatch.setattr(cache_mod, "save_checkpoint", lambda *a, **k: (_ for _ in ()).throw(PermissionError("ro")))
    with pytest.warns(UserWarning, match="could not cache"):
        h = cached_training(_mlp(), blobs, {"method": "ce"}, train, folder=tmp_path / "other")
    assert calls == [1, 1] and len(h["loss"]) == 1
    monkeypatch.undo()
    # files take the umask's permissions, not mkstemp's 0600
    old = os.umask(0o022)
    try:
        path = save_checkpoint({"a": torch.ones(1)}, tmp_path / "ck" / "x.pt")
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_run_or_load_sets_aside_a_run_made_with_another_pool(tmp_path, monkeypatch, capsys):
    """A finished run whose recorded pool (size, hash) differs is moved aside and made again; one whose metrics.json
    predates the pool fields is reused."""
    import json

    import gregnb.experiments as ex
    from gregnb.train.cli import requested_pool, requested_run

    args = ["--dataset", "digits", "--method", "ce", "--epochs", "1"]
    out = tmp_path / "ce"
    argv = [*args, "--out", str(out)]
    settings, meta = requested_run(argv)
    pool = requested_pool(argv)
    out.mkdir()
    old = {"settings": settings, "meta": meta}  # no pool fields: written before they were recorded
    (out / "metrics.json").write_text(json.dumps(old))
    monkeypatch.setattr(ex, "train_main", lambda a: (out.mkdir(), (out / "metrics.json").write_text('{"new": 1}')))
    assert ex.run_or_load(out, args) == old
    same = {"settings": settings, "meta": {**meta, **pool}}
    (out / "metrics.json").write_text(json.dumps(same))
    assert ex.run_or_load(out, args) == same
    (out / "metrics.json").write_text(json.dumps({**same, "meta": {**meta, **pool, "pool_hash": "0" * 16}}))
    assert ex.run_or_load(out, args) == {"new": 1}
    assert "pool_hash '0000000000000000', now" in capsys.readouterr().out
    assert len(list(tmp_path.glob("ce-old-*"))) == 1


def test_digits_cache_in_a_read_only_folder_still_loads(tmp_path, read_only, monkeypatch):
    monkeypatch.setattr(digits_mod, "build_arrays", _fake_arrays)
    with pytest.warns(UserWarning, match="could not write the digits cache"):
        b = digits_mod.load_benchmark(0, root=read_only(tmp_path / "ro"))
    assert len(b.train_x) == 20


# ---------------------------------------------------------------- silent wrong answers

def test_gpu_augment_reads_float_nchw_as_nchw():
    x = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8)
    xf = x.permute(0, 3, 1, 2).float() / 255
    a = gpu_augment(x, torch.Generator().manual_seed(0))
    b = gpu_augment(xf, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"float images must be \(B, 3, H, W\)"):
        gpu_augment(xf.permute(0, 2, 3, 1).contiguous())  # float NHWC: refused, not scrambled
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*255"):
        normalize(xf * 255)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MLP(n_classes=3).eval()


@pytest.mark.parametrize("kwargs,match", [
    (dict(lipschitz=-1.0), "lipschitz"), (dict(lipschitz=float("nan")), "lipschitz"),
    (dict(threshold=float("nan")), "threshold"), (dict(eps_grid=[0.1, -0.1]), "eps"), (dict(is_id=1), "is_id"),
])
def test_certified_fraction_rejects_bad_numbers(net, kwargs, match):
    args = dict(threshold=0.0, eps_grid=[0.0, 0.1], is_id=True, lipschitz=1.0, **{})
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        certified_fraction(net, torch.randn(8, 2), args.pop("threshold"), args.pop("eps_grid"), **args)


def test_lipschitz_and_attack_reject_nan(net):
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="step_size must be a finite number > 0, got nan"):
        local_lipschitz(net, x, 0.1, step_size=float("nan"))
    with pytest.raises(ValueError, match="threshold must be a finite number, got nan"):
        attack_radius(net, x, float("nan"), eps_max=1.0)
    with pytest.raises(ValueError, match="eps_max"):
        attack_radius(net, x, 0.0, eps_max=float("inf"))


def test_greg_penalty_checks_its_margins(net):
    x = torch.randn(6, 2).requires_grad_(True)
    e = energy(net(x))
    with pytest.raises(ValueError, match="m_in must be below m_out"):
        greg_penalty(x, e, 3, 1.0, -1.0)
    for m_in, m_out in ((float("nan"), 0.0), (-1.0, float("inf"))):
        with pytest.raises(ValueError, match="must be a finite number"):
            greg_penalty(x, e, 3, m_in, m_out)


def test_propose_margins_on_nan_inputs_names_the_input(net, blobs):
    bad = blobs.aux_x[:50].clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="aux_x contains NaN"):
        propose_margins(net, blobs.train_x[:50], bad)
    with pytest.raises(ValueError, match="m_in must be a finite number"):  # not "below m_out"
        fit(_mlp(), blobs, "greg", **KW, m_in=float("nan"), m_out=-1.0)


# ---------------------------------------------------------------- confusing errors

def _fake_arrays(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda n: np.full((n, 1, 8, 8), 0.5, dtype=np.float32)  # noqa: E731
    arrays = {"train_x": f(20), "train_y": rng.integers(0, 10, 20), "test_x": f(10), "test_y": rng.integers(0, 10, 10),
              "aux_x": f(30)}
    arrays.update({f"ood/{k}": f(5) for k in ("letters", "photos", "noise", "inverted")})
    arrays.update({f"uncovered/{k}": f(5) for k in digits_mod.UNCOVERED_SOURCES})
    return arrays


def _corrupt(path, how):
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "bad_crc":  # an uncompressed archive with one flipped byte inside train_x's data
        np.savez(path, generator_version=digits_mod.GENERATOR_VERSION, **_fake_arrays())
        data = bytearray(path.read_bytes())
        data[data.index(np.float32(0.5).tobytes() * 8) + 1] ^= 0xFF
        path.write_bytes(bytes(data))
    else:  # a readable archive without aux_x
        arrays = _fake_arrays()
        del arrays["aux_x"]
        np.savez(path, generator_version=digits_mod.GENERATOR_VERSION, **arrays)


@pytest.mark.parametrize("how", ["truncated", "empty", "bad_crc", "missing_key"])
def test_corrupt_digits_cache_is_rebuilt(tmp_path, monkeypatch, how):
    calls = []
    monkeypatch.setattr(digits_mod, "build_arrays", lambda seed: calls.append(seed) or _fake_arrays(seed))
    digits_mod.load_benchmark(0, root=tmp_path)
    path = tmp_path / f"digits_v{digits_mod.GENERATOR_VERSION}_seed0.npz"
    _corrupt(path, how)
    if how == "bad_crc":
        with pytest.raises(zipfile.BadZipFile):  # the corruption is real
            with np.load(path) as z:
                z["train_x"]
    with pytest.warns(UserWarning, match="digits cache .* is unreadable"):
        b = digits_mod.load_benchmark(0, root=tmp_path)
    assert calls == [0, 0] and len(b.aux_x) == 30
    assert len(digits_mod.load_benchmark(0, root=tmp_path).aux_x) == 30 and calls == [0, 0]  # rewritten, good


def test_gradients_work_under_no_grad(net):
    x = torch.randn(5, 2)
    ref = input_gradient_norm(net, x)
    with torch.no_grad():
        torch.testing.assert_close(input_gradient_norm(net, x), ref)
        assert (local_lipschitz(net, x, 0.2, steps=3) >= ref - 1e-6).all()
        assert torch.isfinite(certified_fraction(net, x, 0.0, [0.1], is_id=True, steps=2, lipschitz="local")).all()
    assert torch.is_grad_enabled()


def test_numpy_integers_are_whole_numbers(blobs, tmp_path, net):
    cfg = TrainConfig(method="greg+", epochs=np.int64(1), batch_size=np.int64(8), n_clusters=np.int32(4),
                      aux_batch_size=np.int64(8), seed=np.uint8(1), m_in=np.float32(-5), m_out=-1.0)
    assert all(type(getattr(cfg, k)) is int for k in ("epochs", "batch_size", "n_clusters", "aux_batch_size", "seed"))
    fit(_mlp(), blobs, **{**KW, "epochs": np.int64(1), "batch_size": np.int64(100)}, checkpoint=tmp_path / "a.pt")
    assert type(load_checkpoint(tmp_path / "a.pt")["config"]["epochs"]) is int  # loads with weights_only
    x = torch.randn(6, 2).requires_grad_(True)
    assert torch.isfinite(greg_penalty(x, energy(net(x)), np.int64(3), -5.0, -1.0))
    with pytest.raises(ValueError, match="whole number"):
        TrainConfig(epochs=2.0)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        TrainConfig(momentum=2.0)


def test_bad_checkpoints_name_the_file_and_the_fix(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\).*train again"):
        load_checkpoint(empty)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(300))
    with pytest.raises(CheckpointError, match=r"garbage\.pt is not a readable checkpoint") as exc:
        load_checkpoint(garbage)
    assert "weights_only=False" not in str(exc.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}, "f": os.system}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt holds Python objects .* refused"):
        load_checkpoint(foreign)
    torch.manual_seed(0)
    small = tmp_path / "small.pt"
    save_checkpoint({"model": SmallCNN(width=4).state_dict(), "meta": {"arch": "small_cnn"}}, small)
    with pytest.raises(CheckpointError, match=r"small\.pt holds weights of another architecture .*small_cnn"):
        load_model_state(SmallCNN(width=8), load_checkpoint(small), small)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("problem", ["checkpoint_is_folder", "read_only_out", "empty_test"])
def test_errors_show_before_the_first_epoch(blobs, tmp_path, read_only, problem):
    ck, data = tmp_path / "last.pt", blobs
    if problem == "checkpoint_is_folder":
        ck.mkdir()
        err, match = IsADirectoryError, "is a folder"
    elif problem == "read_only_out":
        ck = read_only(tmp_path / "ro") / "last.pt"
        err, match = PermissionError, "cannot write the checkpoint"
    else:
        data = _bench(blobs, test_x=blobs.test_x[:0], test_y=blobs.test_y[:0])
        err, match = ValueError, "test_x and data.test_y must be non-empty"
    with pytest.raises(err, match=match):
        fit(_mlp(), data, **KW, checkpoint=ck, step_hook=_never_called)


@pytest.mark.parametrize("change,match", [
    (dict(train_y=None), "labels in \\[0, 3\\], outside \\[0, n_classes\\)"),
    (dict(train_y="float"), "integer class labels, got torch.float32.*long"),
    (dict(train_x="float64"), "reaches the model as torch.float64.*float32"),
    (dict(train_x="uint8"), "reaches the model as torch.uint8.*float"),
    (dict(train_x="numpy"), "torch.from_numpy"),
])
def test_bad_tensors_get_clear_errors_at_the_boundary(blobs, change, match):
    (key, how), = change.items()
    t = getattr(blobs, key)
    value = {None: t, "float": t.float(), "float64": t.double(), "uint8": (t.abs() * 10).to(torch.uint8),
             "numpy": t.numpy()}[how]
    data = _bench(blobs, **{key: value})
    if how is None:
        data.n_classes = 3
        data.train_y = t.clone()
        data.train_y[0] = 3  # one label past the last class
    with pytest.raises((ValueError, TypeError), match=match):
        fit(_mlp(), data, **KW, step_hook=_never_called)
    # at inference, NumPy / float64 inputs are converted (the same logits), integer images refused
    if how == "float64":
        net = _mlp().eval()
        torch.testing.assert_close(predict_logits(net, t.double().numpy()), predict_logits(net, t))
        with pytest.raises(ValueError, match="no transform is given"):
            predict_logits(net, t.to(torch.int64))


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="greg", lambda_grad=float("nan")), "lambda_grad must be a finite number"),
    (dict(method="oe", aux_batch_size=0), "aux_batch_size must be a whole number >= 1"),
    (dict(method="greg+", n_clusters=0), "n_clusters must be a whole number >= 1"),
])
def test_bad_settings_are_not_replaced_by_defaults(blobs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(_mlp(), blobs, **{**KW, **kwargs}, m_in=-5.0, m_out=-1.0, step_hook=_never_called)
    with pytest.raises(ValueError, match="lambda_grad"):
        x = torch.randn(4, 2)
        greg_objective(_mlp(), x, torch.zeros(4, dtype=torch.long), x, m_in=-5.0, m_out=-1.0, lambda_grad=float("nan"))


def test_loader_errors_name_the_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:500])
    with pytest.raises(ValueError, match=r"data_batch_3.*truncated or corrupt"):
        load_cifar("cifar10", tmp_path)
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file" + os.urandom(200))
    with pytest.raises(ValueError, match=r"test_32x32\.mat"):
        load_svhn(tmp_path)
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "imgs" / "ok.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(tmp_path / "imgs" / "t.jpg")
    (tmp_path / "imgs" / "t.jpg").write_bytes((tmp_path / "imgs" / "t.jpg").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"t\.jpg.*delete or replace it"):
        load_image_folder(tmp_path / "imgs")
    pool = tmp_path / "pool.npy"
    np.save(pool, np.zeros((50, 32, 32, 3), np.uint8))
    pool.write_bytes(pool.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"pool\.npy.*truncated"):
        load_aux_pool(pool)


def test_sigkill_during_a_save_leaves_no_stray_temporary(tmp_path):
    path = tmp_path / "last.pt"
    script = textwrap.dedent(f"""
        import os, signal, torch
        from gregnb.checkpoint import save_checkpoint
        def dying_save(obj, f, *a, **k):
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        save_checkpoint({{"a": 1}}, {str(path)!r})
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGKILL
    stray = list(tmp_path.glob("last.pt*.tmp"))
    assert len(stray) == 1 and not path.exists()
    save_checkpoint({"a": 2}, path)  # the next save cleans up
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    stray[0].write_bytes(b"left by another killed save")
    os.utime(stray[0], (1, 1))
    assert load_checkpoint(path)["a"] == 2 and [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # so does a load


def test_command_lines_report_bad_files_without_a_stack_trace(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "gregnb.evaluate", "--ckpt", str(tmp_path / "empty.pt")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "error:" in r.stderr and "empty.pt is empty (0 bytes)" in r.stderr


# ---------------------------------------------------------------- the public boundary, pattern by pattern (issue 37)

class _Plain(torch.nn.Module):
    """A model with gregnb's forward signature and no check of its own."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 3)

    def forward(self, x, return_features=False):
        return (self.fc(x), x) if return_features else self.fc(x)


def _boundary_cases():
    """``(id, call(net, x, blobs), error type, regex)``: each call used to fail deep inside (a raw torch / NumPy /
    Python error) or to pass silently; the error must name the argument, the value and what to pass."""
    import pandas as pd

    from gregnb.certify import energy_bounds, sound_radius
    from gregnb.coverage import coverage_bands, distance_to_pool, nearest_distance
    from gregnb.data.cifar import load_aux_pool
    from gregnb.experiments import paired_verdict
    from gregnb.findings import Findings
    from gregnb.metrics import auroc
    from gregnb.sampling import energy_cluster_sample, plan_selection
    from gregnb.evaluate import evaluate
    from gregnb.lipschitz import certified_radius, global_lipschitz_bound, score_attack
    from gregnb.metrics import threshold_at_tpr
    from gregnb.sampling import kmeans
    from gregnb.train import accuracy

    def meta_net(net, x, blobs):
        return MLP(n_classes=3).to("meta")

    def fit_kw(**kw):
        return lambda net, x, blobs: fit(net, blobs, **{**KW, **kw}, step_hook=_never_called)

    sr = dict(n_bisect=2)
    V = ValueError
    return [
        # zero or negative counts
        ("predict_logits batch_size=0", lambda n, x, b: predict_logits(n, x, 0), V,
         "batch_size must be a whole number >= 1, got 0"),
        ("accuracy batch_size=-1", lambda n, x, b: accuracy(n, x, torch.zeros(8).long(), batch_size=-1), V,
         "batch_size must be a whole number >= 1, got -1"),
        ("energy_bounds batch_size=0", lambda n, x, b: energy_bounds(n, x, 0.1, batch_size=0), V, "batch_size .* got 0"),
        ("sound_radius batch_size=0", lambda n, x, b: sound_radius(n, x, -1.0, batch_size=0, **sr), V, "batch_size"),
        ("nearest_distance batch_size=0", lambda n, x, b: nearest_distance(x, x, batch_size=0), V, "batch_size .*0"),
        ("nearest_distance shortlist=0", lambda n, x, b: nearest_distance(x, x, shortlist=0), V, "shortlist .*got 0"),
        ("kmeans n_init=0", lambda n, x, b: kmeans(x, 2, n_init=0), V, "n_init must be a whole number >= 1, got 0"),
        ("global_lipschitz_bound iters=0", lambda n, x, b: global_lipschitz_bound(n, iters=0), V, "iters .* got 0"),
        ("load_aux_pool max_images=0", lambda n, x, b: load_aux_pool("p.npy", max_images=0), V,
         r"max_images \(--max-aux\) must be a whole number >= 1"),
        # None or strings for thresholds and radii
        ("certified_radius threshold=None", lambda n, x, b: certified_radius(torch.zeros(3), None, 1.0), V,
         "threshold must be a finite number, got None; pass a number"),
        ("certified_radius threshold='1.0'", lambda n, x, b: certified_radius(torch.zeros(3), "1.0", 1.0), V,
         r"threshold must be a finite number, got '1.0'; pass the number itself, not a string: threshold=1.0"),
        ("certified_radius lipschitz=None", lambda n, x, b: certified_radius(torch.zeros(3), 1.0, None), V,
         "lipschitz must be a number or a collection of numbers, got None"),
        ("certified_radius eps='1'", lambda n, x, b: certified_radius(torch.zeros(3), 1.0, 1.0, eps="1"), V,
         "eps must be .* got '1'"),
        ("sound_radius threshold=None", lambda n, x, b: sound_radius(n, x, None, **sr), V, "threshold .* got None"),
        ("sound_radius threshold='1'", lambda n, x, b: sound_radius(n, x, "1", **sr), V, "threshold .* got '1'"),
        ("threshold_at_tpr tpr=None", lambda n, x, b: threshold_at_tpr(torch.ones(4), None), V,
         r"tpr must be a finite number in \(0, 1\] \(0.95 for FPR95\), got None"),
        ("local_lipschitz eps=None", lambda n, x, b: local_lipschitz(n, x, None), V,
         r"eps must be a non-negative finite number .* got None; pass a radius"),
        ("energy_bounds eps=None", lambda n, x, b: energy_bounds(n, x, None), V, "eps must be .* got None"),
        ("energy temperature='1'", lambda n, x, b: energy(torch.zeros(2, 3), "1"), V,
         "temperature must be a finite number > 0 .* got '1'; pass the number itself"),
        ("certified_fraction eps_grid=None", lambda n, x, b: certified_fraction(n, x, 0.0, None, is_id=True), V,
         r"eps_grid must be a list of radii, e.g. \[0.0, 0.1, 0.2\], got None"),
        ("score_attack seed='a'", lambda n, x, b: score_attack(n, x, 0.1, seed="a"), V, "seed must be a whole number"),
        # invalid values that passed silently
        ("sound_radius rel_tol=-1", lambda n, x, b: sound_radius(n, x, -1.0, rel_tol=-1, **sr), V,
         r"rel_tol must be a finite number in \[0, 1\) .*got -1"),
        ("sound_radius rel_tol=nan", lambda n, x, b: sound_radius(n, x, -1.0, rel_tol=float("nan"), **sr), V,
         "rel_tol .* got nan"),
        ("sound_radius temperature=0", lambda n, x, b: sound_radius(n, x, -1.0, temperature=0, **sr), V,
         "temperature must be a finite number > 0"),
        ("sound_radius cell=-1", lambda n, x, b: sound_radius(n, x, -1.0, method="grid", cell=-1.0), V,
         r"cell must be a finite number in \(0, 1\], got -1.0"),
        ("kmeans tol=-1", lambda n, x, b: kmeans(x, 2, tol=-1.0), V, "tol must be a finite number >= 0, got -1.0"),
        ("evaluate tpr=2", lambda n, x, b: evaluate(n, b, tpr=2), V, r"tpr must be .*\(0, 1\].* got 2"),
        # devices and the meta device
        ("fit device='nonsense'", fit_kw(device="nonsense"), V,
         "device='nonsense' is not a device; pass 'cpu', 'cuda'"),
        ("fit device='meta'", fit_kw(device="meta"), V, "device='meta' holds shapes only, no values"),
        ("fit device='cuda:7'", fit_kw(device="cuda:7"), V, "device='cuda:7': this machine has .* CUDA GPU"),
        *[(f"fit_many device={d!r}", lambda n, x, b, d=d: fit_many([n], b, [dict(epochs=1)], device=d, progress=False),
           V, m) for d, m in [("nonsense", "device='nonsense' is not a device"), ("meta", "device='meta' holds shapes"),
                              ("cuda:7", "device='cuda:7': this machine has")]],
        # round 3 (issue 37): flags and counts that passed silently, raw errors from deep inside
        *[(f"{n} two_way='yes'", c, V, "two_way must be True or False, got 'yes'") for n, c in [
            ("plan_selection", lambda n, x, b: plan_selection(two_way="yes")),
            ("energy_cluster_sample", lambda n, x, b: energy_cluster_sample(x, energy(n(x)), n_clusters=2, two_way="yes"))]],
        ("plan_selection window='a'", lambda n, x, b: plan_selection(window="a"), V, r"window must be \(start, end\)"),
        ("kmeans max_iter=0", lambda n, x, b: kmeans(x, 2, max_iter=0), V, "max_iter must be a whole number >= 1"),
        ("kmeans meta x", lambda n, x, b: kmeans(x.to("meta"), 2), V, "x is on the meta device"),
        ("auroc meta scores", lambda n, x, b: auroc(x[:, 0].to("meta"), x[:, 1]), V, "id_scores is on the meta device"),
        ("certified_fraction steps=0", lambda n, x, b: certified_fraction(n, x, 0.0, [0.1], is_id=True, steps=0), V,
         "steps must be a whole number >= 1, got 0"),
        *[(f"fit_many {k}={v!r}", lambda n, x, b, k=k, v=v: fit_many([n], b, [dict(epochs=1)], **{"progress": False, k: v}),
           V, m) for k, v, m in [("max_members", 0, "max_members must be a whole number >= 1"),
                                 ("workers", -1, "workers must be at least 1"), ("progress", "x", "progress must be True")]],
        ("greg_penalty n_id=tensor(4)", lambda n, x, b: greg_penalty(x.requires_grad_(), energy(n(x)), torch.tensor(4),
                                                                     -5.0, -1.0), None, None),
        ("fit_many configs=dict", lambda n, x, b: fit_many([n], b, dict(epochs=1)), TypeError, "a list of configs"),
        ("fit_many model='mlp'", lambda n, x, b: fit_many(["mlp"], b, [{}]), TypeError, r"models\[0\] must be a torch"),
        ("fit_many inside inference_mode", lambda n, x, b: torch.inference_mode()(fit_many)([n], b, [{}]), RuntimeError,
         r"fit_many needs gradients"),
        ("predict_logits transform='x'", lambda n, x, b: predict_logits(n, x, transform="x"), TypeError,
         "transform must be a function"),
        ("add_check passed='yes'", lambda n, x, b: Findings("99", fast=True).add_check("c", "C.", "yes"), TypeError,
         "passed must be True or False"),
        ("add_check numbers=list", lambda n, x, b: Findings("99", fast=True).add_check("c", "C.", True, [1]), TypeError,
         "numbers must be a dict"),
        ("add_comparison scale=None", lambda n, x, b: Findings("99", fast=True).add_comparison(
            "c", "C.", pd.DataFrame({"seed": [0, 0], "method": ["a", "b"], "fpr95": [0.1, 0.2]}), "a", "b", scale=None),
         V, "scale must be a finite number > 0, got None"),
        ("global_lipschitz_bound input_shape='2'", lambda n, x, b: global_lipschitz_bound(n, "2"), V,
         r"input_shape must be one sample's shape, a tuple"),
        ("nearest_distance meta", lambda n, x, b: nearest_distance(x.to("meta"), x), V, "on the meta device"),
        ("distance_to_pool empty pool", lambda n, x, b: distance_to_pool(x, x[:0]), V, "pool is empty"),
        ("coverage_bands models=list", lambda n, x, b: coverage_bands([n], b), TypeError, "models must be a dict"),
        *[(f"paired_verdict {k}", c, V, "df must be a pandas DataFrame with columns 'seed'") for k, c in [
            ("df=list", lambda n, x, b: paired_verdict([1, 2], "a", "b")),
            ("a == b", lambda n, x, b: paired_verdict(pd.DataFrame({"seed": [0], "method": ["a"], "fpr95": [0.1]}), "a", "a"))]],
        ("fit meta model", lambda n, x, b: fit(meta_net(n, x, b), b, **KW), V, "model's weights are on the meta device"),
        ("predict_logits meta model", lambda n, x, b: predict_logits(meta_net(n, x, b), x), V, "meta device"),
        ("predict_logits meta x", lambda n, x, b: predict_logits(n, x.to("meta")), V, "x is on the meta device"),
        # other types than documented
        ("fit model='mlp'", lambda n, x, b: fit("mlp", b, **KW), TypeError,
         "model must be a torch nn.Module .* got 'mlp'"),
        ("fit data=(x, y)", lambda n, x, b: fit(n, (b.train_x, b.train_y), **KW), TypeError,
         r"data must be a gregnb.data.Benchmark .* got a tuple of length 2"),
        ("fit inside inference_mode", lambda n, x, b: torch.inference_mode()(fit)(n, b, **KW), RuntimeError,
         r"called inside torch.inference_mode\(\).*call it outside"),
        # shapes and labels
        ("fit labels beyond the model's outputs", lambda n, x, b: fit(MLP(n_classes=2), b, **KW), V,
         "the model gives 2 logits per sample, but the data has n_classes = 3 .*n_classes=3"),
        ("evaluate labels beyond the model's outputs", lambda n, x, b: evaluate(MLP(n_classes=2), b), V,
         "labels up to 2, but the model gives 2 logits"),
        ("energy_bounds wrong sample shape", lambda n, x, b: energy_bounds(n, torch.randn(4, 3), 0.1), V,
         r"the model cannot take samples of shape \(3,\)"),
        ("predict_logits wrong shape, a model without its own check",
         lambda n, x, b: predict_logits(_Plain(), torch.randn(4, 5)), V, r"the model cannot run on inputs of shape \(4, 5\)"),
    ]


@pytest.mark.parametrize("case", _boundary_cases(), ids=lambda c: c[0])
def test_poor_inputs_get_errors_that_name_the_argument_and_the_fix(case, net, blobs):
    _, call, err, match = case
    if err is None:  # was refused with a message that contradicted itself; now accepted
        assert torch.isfinite(call(net, torch.randn(8, 2), blobs)).all()
        return
    with pytest.raises(err, match=match):
        call(net, torch.randn(8, 2), blobs)


def test_numbers_in_other_types_are_accepted_and_give_the_same_result(net, blobs):
    """A 0-d tensor or a NumPy scalar wherever a number is accepted (they were refused with a message that
    contradicted itself: "must be a finite number, got tensor(1.)"): the result equals the plain number's."""
    from gregnb.certify import energy_bounds, sound_radius
    from gregnb.coverage import band_edges
    from gregnb.lipschitz import certified_radius
    from gregnb.metrics import fpr_at_tpr, threshold_at_tpr
    from gregnb.sampling import greedy_sample, kmeans
    from gregnb.scores import msp

    torch.manual_seed(0)
    x = torch.randn(8, 2)
    z = net(x).detach()
    s = torch.randn(40, dtype=torch.float64)
    t0, f32, i64 = torch.tensor, np.float32, np.int64
    same = torch.testing.assert_close
    same(energy(z, t0(0.5)), energy(z, 0.5))
    same(msp(z, f32(2.0)), msp(z, 2.0))
    assert threshold_at_tpr(s, t0(0.75, dtype=torch.float64)) == threshold_at_tpr(s, 0.75)
    assert fpr_at_tpr(s, -s, np.float64(0.5)) == fpr_at_tpr(s, -s, 0.5)
    e = energy(z)
    same(certified_radius(e, t0(-1.0), t0(2.0), eps=f32(0.5)), certified_radius(e, -1.0, 2.0, eps=0.5))
    same(certified_fraction(net, x, t0(-1.0), [0.0, 0.1], is_id=np.True_, lipschitz=t0(2.0)),
         certified_fraction(net, x, -1.0, [0.0, 0.1], is_id=True, lipschitz=2.0))
    same(attack_radius(net, x[:3], f32(-1.0), eps_max=t0(0.5), steps=i64(3), n_bisect=t0(2)),
         attack_radius(net, x[:3], -1.0, eps_max=0.5, steps=3, n_bisect=2))
    same(sound_radius(net, x, -1.0, eps_max=f32(0.5), n_bisect=i64(3), rel_tol=t0(0.25)),
         sound_radius(net, x, -1.0, eps_max=0.5, n_bisect=3, rel_tol=0.25))
    same(energy_bounds(net, x, t0(0.1), temperature=t0(1.0)), energy_bounds(net, x, 0.1))
    assert (band_edges(s.numpy(), t0(4)) == band_edges(s.numpy(), 4)).all()
    same(kmeans(x, t0(2), generator=torch.Generator().manual_seed(0)),
         kmeans(x, 2, generator=torch.Generator().manual_seed(0)))
    same(greedy_sample(x, e, i64(3)), greedy_sample(x, e, 3))
    # training settings: the same losses (0.015625 and -5.0 are exact in float32)
    kw = {**KW, "epochs": 1}
    h = fit(_mlp(), blobs, "energy", **{**kw, "lr": t0(0.015625), "epochs": t0(1)}, m_in=t0(-5.0), m_out=f32(-1.0))
    assert h["loss"] == fit(_mlp(), blobs, "energy", **{**kw, "lr": 0.015625}, m_in=-5.0, m_out=-1.0)["loss"]


def test_gradients_and_arrays_work_where_a_tensor_is_expected(net):
    """Inside torch.inference_mode() (or on a tensor made there) the gradient measurements used to fail deep in
    autograd; NumPy arrays where a tensor was expected failed in kmeans, the samplers, the bounds and the sound
    radius. Each now gives the result it gives on a plain tensor outside inference mode."""
    from gregnb.certify import energy_bounds, sound_radius
    from gregnb.coverage import nearest_distance
    from gregnb.lipschitz import score_attack
    from gregnb.sampling import energy_cluster_sample, kmeans

    torch.manual_seed(1)
    x = torch.randn(6, 2)
    same = torch.testing.assert_close
    with torch.inference_mode():
        x_inf = x.clone()
        inside = (input_gradient_norm(net, x), local_lipschitz(net, x, 0.1, steps=3), score_attack(net, x, 0.1, steps=3),
                  sound_radius(net, x, -1.0, n_bisect=3))
    same(inside[0], input_gradient_norm(net, x))
    same(inside[1], local_lipschitz(net, x, 0.1, steps=3))
    same(inside[2], score_attack(net, x, 0.1, steps=3))
    same(inside[3], sound_radius(net, x, -1.0, n_bisect=3))
    same(input_gradient_norm(net, x_inf), input_gradient_norm(net, x))  # a tensor made in inference mode
    e = energy(net(x)).detach()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    same(kmeans(x.numpy(), 2, generator=gen()), kmeans(x, 2, generator=gen()))
    same(energy_cluster_sample(x.numpy(), e.numpy(), n_clusters=2, generator=gen()),
         energy_cluster_sample(x, e, n_clusters=2, generator=gen()))
    same(energy_bounds(net, x.numpy(), 0.1), energy_bounds(net, x, 0.1))
    same(sound_radius(net, x.numpy(), -1.0, n_bisect=3), sound_radius(net, x, -1.0, n_bisect=3))
    same(nearest_distance(x.numpy(), x.numpy() + 1.0), nearest_distance(x, x + 1.0))
