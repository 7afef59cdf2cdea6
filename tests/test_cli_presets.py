"""Every CIFAR preset of ``python -m gregnb.train`` trains one epoch on tiny files in the real formats and
``python -m gregnb.evaluate`` reads the result back: with no OOD test set (accuracy only, and the run says which
sets it looked for and where), and with one set present (its metrics, checked against scikit-learn)."""
import json

import numpy as np
import pytest
import torch
from cifar_files import write_folder
from sklearn.metrics import roc_auc_score

from gregnb.checkpoint import load_checkpoint
from gregnb.data.cifar import OOD_SETS
from gregnb.evaluate import main as evaluate_main
from gregnb.models import build_model
from gregnb.presets import PRESETS
from gregnb.train.cli import main as train_main

pytestmark = pytest.mark.filterwarnings("ignore:.* not found. expected:UserWarning")
CIFAR_PRESETS = sorted(n for n in PRESETS if not n.startswith("digits-"))
#: a tiny setting: the 8x8 digits CNN (global pooling: any size) at batch 8 (+16 outliers) on 40 training images
TINY = ["--dataset", "cifar10", "--arch", "small_cnn", "--epochs", "1", "--batch-size", "8", "--aux-batch-size", "16",
        "--device", "cpu", "--no-progress"]
MEAN, STD = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2470, 0.2435, 0.2616])  # CIFAR's, typed independently


def _logits(ckpt, images_nchw_uint8):
    """The saved model's logits, computed here from the raw pixels (not through gregnb's loaders)."""
    state = load_checkpoint(ckpt)
    model = build_model(state["meta"]["arch"], n_classes=10, in_channels=3)
    model.load_state_dict(state["model"])
    x = (images_nchw_uint8 / 255.0 - MEAN[None, :, None, None]) / STD[None, :, None, None]
    with torch.no_grad():
        return model.eval()(torch.as_tensor(x, dtype=torch.float32)).double()


@pytest.fixture(scope="module")
def runs(tiny_cifar, tmp_path_factory):
    """Each CIFAR preset, one epoch, GREGNB_DATA = the tiny folder; fine-tunes start from the CE run."""
    root, _ = tiny_cifar
    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GREGNB_DATA", str(root))
        assert train_main(TINY + ["--preset", "ce-cifar", "--out", str(out / "ce-cifar")]) == 0
        for name in CIFAR_PRESETS:
            if name != "ce-cifar":
                init = [] if name.endswith("scratch") else ["--init", str(out / "ce-cifar" / "last.pt")]
                assert train_main(TINY + ["--preset", name, "--out", str(out / name)] + init) == 0
    return out


def test_the_cifar_presets_are_the_papers_five():
    assert CIFAR_PRESETS == ["ce-cifar", "energy-finetune", "greg-finetune", "greg-finetune-eq", "gregplus-scratch"]


@pytest.mark.parametrize("preset", CIFAR_PRESETS)
def test_preset_trains_one_epoch_without_ood_sets_and_evaluates(preset, runs, tiny_cifar, monkeypatch, capsys):
    root, written = tiny_cifar
    run = runs / preset
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 1 and state["meta"]["dataset"] == "cifar10"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == PRESETS[preset]["method"] and metrics["ood"] == {} and metrics["mean"] == {}
    # the run says which OOD sets it looked for and where, without an absolute path of this machine
    assert metrics["ood_search"] == {"folder": "$GREGNB_DATA", "found": [],
                                     "missing": {n: rel for n, (rel, _) in OOD_SETS.items()}}
    assert str(root) not in (run / "metrics.json").read_text()
    data, labels = written["test_batch"]
    logits = _logits(run / "last.pt", data.reshape(-1, 3, 32, 32))
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1).numpy() == np.array(labels)).mean())
    # the evaluation command reads the checkpoint back
    monkeypatch.setenv("GREGNB_DATA", str(root))
    capsys.readouterr()
    assert evaluate_main(["--ckpt", str(run / "last.pt"), "--json", str(run / "eval.json")]) == 0
    said = capsys.readouterr().out
    assert "no OOD test set found" in said and "$GREGNB_DATA" in said and "svhn/test_32x32.mat" in said
    again = json.loads((run / "eval.json").read_text())
    assert again["accuracy"] == pytest.approx(metrics["accuracy"]) and again["ood"] == {}


def test_with_one_ood_set_present_its_metrics_are_reported(tiny_cifar, tmp_path, capsys):
    root, written = tiny_cifar
    data_root = tmp_path / "data"
    data_root.mkdir()
    for entry in root.iterdir():  # the same files, plus iSUN
        (data_root / entry.name).symlink_to(entry)
    isun = np.stack(write_folder(data_root / "iSUN", 6, size=(32, 32)))  # 32x32 PNGs: loaded unchanged
    out = tmp_path / "run"
    assert train_main(TINY + ["--preset", "greg-finetune", "--data-root", str(data_root), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["ood"]) == ["iSUN"] and metrics["ood_search"]["found"] == ["iSUN"]
    assert set(metrics["ood_search"]["missing"]) == set(OOD_SETS) - {"iSUN"}
    assert "over 1 OOD set(s)" in capsys.readouterr().out
    # AUROC with ID positive and score -energy, from the raw pixels and scikit-learn
    data, _ = written["test_batch"]
    score = [torch.logsumexp(_logits(out / "last.pt", x), 1).numpy()
             for x in (data.reshape(-1, 3, 32, 32), isun.transpose(0, 3, 1, 2))]
    expected = roc_auc_score(np.r_[np.ones(len(score[0])), np.zeros(len(score[1]))], np.r_[score[0], score[1]])
    assert metrics["ood"]["iSUN"]["auroc"] == pytest.approx(expected, abs=1e-6)
    assert metrics["mean"]["auroc"] == pytest.approx(expected, abs=1e-6)
    (data_root / "300K_random_images.npy").unlink()  # evaluation reads no pool
    capsys.readouterr()
    assert evaluate_main(["--ckpt", str(out / "last.pt"), "--data-root", str(data_root)]) == 0
    said = capsys.readouterr().out
    assert "iSUN" in said and "not found" in said and "dtd/images" in said


def test_flags_take_their_types_from_the_config_fields():
    import typing

    from gregnb.train.cli import _flag, _parser
    from gregnb.train.config import field_types

    args = _parser().parse_args(["--out", "x", "--epochs", "3", "--lr", "1", "--n-clusters", "4", "--window", "0", "9",
                                 "--milestones", "2", "5", "--no-two-way", "--sampler", "dos", "--aux-batch-size", "7"])
    assert (args.epochs, args.n_clusters, args.window, args.milestones, args.two_way) == (3, 4, [0, 9], [2, 5], False)
    assert type(args.lr) is float and type(args.epochs) is int and type(args.aux_batch_size) is int
    for name, hint in field_types().items():  # every int field (or int | None) parses to an int
        if hint is int or typing.get_args(hint)[:1] == (int,) and type(None) in typing.get_args(hint):
            flag = getattr(args, name, "not a flag")
            assert flag is None or flag == "not a flag" or type(flag) is int, name
    with pytest.raises(TypeError, match="no command-line flag"):
        _flag("extra", dict, {})


def test_margins_and_outlier_batches_come_from_the_registry_and_the_config():
    from gregnb.train import METHODS, TrainConfig, register_method
    from gregnb.train.registry import margin_methods

    assert margin_methods() == sorted(k for k, v in METHODS.items() if v.needs_margins)
    assert {"energy", "greg", "greg+"} <= set(margin_methods()) and "ce" not in margin_methods()
    assert TrainConfig(method="energy", batch_size=8, m_in=-9.0, m_out=-3.0).aux_per_step == 16  # 2x the batch
    assert TrainConfig(method="energy", batch_size=8, aux_batch_size=5, m_in=-9.0, m_out=-3.0).aux_per_step == 5
    assert TrainConfig(method="greg+", batch_size=8, m_in=-9.0, m_out=-3.0).aux_per_step == 48  # 6x: candidates
    register_method("_needs_margins", METHODS["energy"].step, uses_aux=True, needs_margins=True)
    try:
        assert "_needs_margins" in margin_methods()
        with pytest.raises(ValueError, match="needs the energy margins"):
            TrainConfig(method="_needs_margins")
    finally:
        METHODS.pop("_needs_margins")


@pytest.mark.parametrize("flags,named", [(["--max-aux", "100"], "--max-aux does"), (["--aux", "pool.npy"], "--aux does"),
                                         (["--data-root", "somewhere"], "--data-root does"),
                                         (["--download"], "--download does"),
                                         (["--aux", "p.npy", "--max-aux", "8"], "--aux, --max-aux do")])
def test_digits_refuses_the_flags_that_choose_cifar_files(flags, named, tmp_path, capsys):
    """Issue 37, item 1: on the generated digits, --max-aux / --aux / --data-root / --download did nothing (the same
    loss history as without them) and nothing said so; now each is refused by name, before any work."""
    from gregnb.data import load_dataset

    out = tmp_path / "o"
    with pytest.raises(SystemExit) as exc:
        train_main(["--method", "energy", "--m-in", "-8", "--m-out", "-2", "--epochs", "1", "--out", str(out), *flags])
    assert exc.value.code == 2 and f"{named} nothing for --dataset digits" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match="max_aux does nothing for the digits benchmark"):
        load_dataset("digits", max_aux=100)


def test_resume_refuses_another_pool_and_both_files_record_it(tiny_cifar, tmp_path, capsys):
    """Issue 37, item 2: a resume with another --aux, --max-aux or --data-root trained epoch 2 on other outliers;
    now last.pt and metrics.json record the pool (source, size, a hash of its images) and the data root, and a
    resume that changes any of them (or the pool file's contents) is refused, naming it."""
    from gregnb.config import display_path

    root, _ = tiny_cifar
    pool = np.load(root / "300K_random_images.npy")
    np.save(tmp_path / "pool.npy", pool)
    np.save(tmp_path / "other.npy", pool[::-1].copy())  # as many images, in another order
    out = tmp_path / "o"
    args = TINY + ["--method", "energy", "--m-in", "-8", "--m-out", "-2", "--data-root", str(root), "--out", str(out)]
    own = ["--aux", str(tmp_path / "pool.npy")]
    assert train_main(args + own) == 0
    meta = json.loads((out / "metrics.json").read_text())["meta"]
    assert {k: meta[k] for k in ("aux", "max_aux", "data_root", "pool_size")} == {
        "aux": display_path(tmp_path.resolve() / "pool.npy"), "max_aux": None,
        "data_root": display_path(root.resolve()), "pool_size": 64}
    assert load_checkpoint(out / "last.pt")["meta"] == meta
    for change, named in ((["--aux", str(tmp_path / "other.npy")], "--aux .*other.npy"),
                          (own + ["--max-aux", "8"], r"--max-aux \(not given\) \(now 8\)"),
                          (own + ["--data-root", str(tmp_path)], "--data-root")):
        with pytest.raises(ValueError, match=f"cannot resume .*{named}"):
            train_main([*args, *change, "--resume", "--epochs", "2"])
    np.save(tmp_path / "pool.npy", pool[::-1].copy())  # the same path, other images
    with pytest.raises(ValueError, match="the pool file's contents changed"):
        train_main(args + own + ["--resume", "--epochs", "2"])
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # every refusal left the run as it was
    np.save(tmp_path / "pool.npy", pool)
    assert train_main(args + own + ["--resume", "--epochs", "2"]) == 0
    assert len(json.loads((out / "metrics.json").read_text())["history"]["loss"]) == 2
    for bad, said in (("0", "--max-aux must be at least 1"), ("65", "the pool holds only 64 images")):
        with pytest.raises(SystemExit):
            train_main(args + own + ["--max-aux", bad, "--overwrite"])
        assert said in capsys.readouterr().err


def test_a_bad_device_is_refused_by_name_before_any_work(tmp_path, capsys):
    for device, said in (("nonsense", "--device='nonsense' is not a device; pass 'cpu'"),
                         ("meta", "--device='meta' holds shapes only")):
        with pytest.raises(SystemExit):
            train_main(["--epochs", "1", "--out", str(tmp_path / "o"), "--device", device])
        assert said in capsys.readouterr().err and not (tmp_path / "o").exists()
