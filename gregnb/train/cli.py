"""``python -m gregnb.train``: train one model into ``OUT/`` (``last.pt`` every epoch, ``metrics.json`` at the end).

The flags for the training settings are generated from :class:`~gregnb.train.TrainConfig` (one source of
truth: a new field is a new flag); presets (:mod:`gregnb.presets`) fill them first, flags override them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import types
import typing
from pathlib import Path

import torch

from ..checkpoint import check_writable, load_checkpoint, load_model_state
from ..config import device as default_device
from ..config import display_path, seed_everything
from ..data import DATASETS, load_dataset
from ..data.base import Benchmark
from ..data.cifar import ood_search
from ..evaluate import evaluate, summary
from ..losses import CONVENTIONS, propose_margins
from ..models import ARCHS, build_model
from ..presets import DEFAULT_MARGINS, PRESETS, get_preset
from ..sampling import SAMPLERS
from ..validate import device as check_device
from .config import OPTIMIZERS, PENALIZE, SCHEDULES, config_fields, field_types
from .distributed import dist_info
from .loop import fit
from .registry import METHODS, margin_methods

__all__ = ["main"]

#: the settings the command line offers as a fixed choice
_CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "convention": CONVENTIONS, "penalize": PENALIZE,
            "sampler": tuple(sorted(SAMPLERS))}
#: TrainConfig fields that are not flags (set by the command itself, or only from Python)
_NOT_FLAGS = ("method", "seed", "progress", "extra", "m_in", "m_out")
#: the flags that choose CIFAR's files: for the generated digits they would do nothing, so they are refused there
_FILE_FLAGS = {"data_root": "--data-root", "aux": "--aux", "max_aux": "--max-aux", "download": "--download"}
#: what ``last.pt`` and ``metrics.json`` record of a run besides its training settings, each with the flag that sets
#: it; a resume compares every one the checkpoint holds and refuses a change
_RUN_FLAGS = {"dataset": "--dataset", "arch": "--arch", "seed": "--seed", "data_root": "--data-root", "aux": "--aux",
              "max_aux": "--max-aux", "init": "--init"}
#: help for the flags that take several numbers (their types come from TrainConfig like every other flag's)
_HELP = {"milestones": dict(help="epochs at which the multistep schedule decays"),
         "window": dict(metavar=("START", "END"), help="greg+: energy-sorted slice of the candidates kept")}


def _flag(name: str, hint, default) -> dict:
    """``add_argument`` keywords for a TrainConfig field, from its declared type: ``bool`` -> ``--x/--no-x``;
    ``int``/``float``/``str`` (or ``X | None``) -> one value; ``tuple[X, ...]`` -> one or more, ``tuple[X, X]`` ->
    exactly two."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None: the flag takes an X
        hint = args[0] if len(args) == 1 else hint
    if hint is bool:
        return dict(action=argparse.BooleanOptionalAction, default=None, help=f"default {default}")
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        many = len(items) == 2 and items[1] is Ellipsis
        return dict(type=items[0], nargs="+" if many else len(items), **_HELP.get(name, {}))
    if hint not in (int, float, str):
        raise TypeError(f"TrainConfig.{name}: no command-line flag for type {hint!r}; add it to _NOT_FLAGS or to _flag")
    return dict(type=hint, choices=_CHOICES.get(name), help=f"default {default}")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m gregnb.train", description=main.__doc__)
    ap.add_argument("--dataset", default="digits", choices=sorted(DATASETS))
    ap.add_argument("--arch", choices=sorted(ARCHS), help="default: the dataset's (small_cnn for digits, wrn40_2 for CIFAR)")
    ap.add_argument("--method", choices=sorted(METHODS), help="overrides the preset's method")
    ap.add_argument("--preset", choices=sorted(PRESETS), help="a named recipe (gregnb/presets.py)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--m-in", type=float, help="energy margin for ID (with --m-out; default: the preset's or proposed)")
    ap.add_argument("--m-out", type=float, help="energy margin for outliers")
    settings = ap.add_argument_group("training settings (gregnb.train.TrainConfig; default: the preset's, else the "
                                     "field's default)")
    hints = field_types()
    for name, default in config_fields().items():
        if name not in _NOT_FLAGS:
            settings.add_argument("--" + name.replace("_", "-"), **_flag(name, hints[name], default))
    ap.add_argument("--out", required=True, help="folder for last.pt and metrics.json")
    ap.add_argument("--resume", action="store_true",
                    help="continue from OUT/last.pt if it exists (same settings; --epochs may grow on a finished run)")
    ap.add_argument("--overwrite", action="store_true", help="start over, replacing OUT/last.pt and OUT/metrics.json")
    ap.add_argument("--init", help="a checkpoint whose 'model' entry initialises the network (fine-tuning)")
    ap.add_argument("--device", help="cuda, cpu, mps (default: the best available)")
    ap.add_argument("--data-root", help="folder with the datasets (default: data/ or $GREGNB_DATA)")
    ap.add_argument("--aux", help="auxiliary pool: a .npy of (N, 32, 32, 3) uint8 or an image folder")
    ap.add_argument("--max-aux", type=int, help="use only the first N pool images")
    ap.add_argument("--download", action="store_true", help="let torchvision download CIFAR")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _requested_settings(args) -> dict:
    """The training settings a parsed command line asks for: the preset's, overridden by the flags given (the
    margins not yet resolved: ``"margins"`` may hold the preset's rule)."""
    settings = get_preset(args.preset) if args.preset else {}
    if args.method:
        settings["method"] = args.method
    settings.setdefault("method", "ce")
    for key in config_fields():
        if getattr(args, key, None) is not None and key not in ("method", "seed", "m_in", "m_out"):
            settings[key] = getattr(args, key)
    return settings


def requested_run(argv: list[str]) -> tuple[dict, dict]:
    """``(settings, meta)`` a ``python -m gregnb.train`` command line asks for, without running it: the
    training settings as ``metrics.json`` records them (margins left out: they are resolved when the run starts)
    and the dataset, architecture and seed."""
    args = _parser().parse_args(argv)
    settings = _requested_settings(args)
    settings.pop("margins", None)
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
    return settings, {"dataset": args.dataset, "arch": args.arch or DATASETS[args.dataset].arch, "seed": args.seed}


def requested_pool(argv: list[str], *, load: bool = True) -> dict:
    """The outlier pool a ``python -m gregnb.train`` command line asks for, as ``metrics.json``'s ``meta`` records
    it: ``data_root``, ``aux``, ``max_aux`` and ``init`` and, with ``load``, the pool's ``pool_size`` and
    ``pool_hash`` (:func:`pool_record`; this loads the dataset)."""
    args = _parser().parse_args(argv)
    meta = {k: v for k, v in _run_meta(args, "").items() if k not in ("dataset", "arch", "seed")}
    if load:
        data = load_dataset(args.dataset, root=args.data_root, aux=args.aux, download=False, seed=args.seed,
                            max_aux=args.max_aux)
        meta.update(pool_record(data.aux_x))
    return meta


def main(argv: list[str] | None = None) -> int:
    """``python -m gregnb.train``: train one model, keep ``OUT/last.pt``, write ``OUT/metrics.json``."""
    ap = _parser()
    args = ap.parse_args(argv)
    if args.resume and args.overwrite:
        ap.error("--resume continues OUT/last.pt and --overwrite replaces it: choose one")
    if (args.m_in is None) != (args.m_out is None):
        ap.error("--m-in and --m-out go together: give both, or neither (then the preset's or proposed margins "
                 "are used)")
    _refuse_unused_flags(ap, args)
    out = Path(args.out)
    last = out / "last.pt"
    if last.exists() and not args.resume and not args.overwrite:
        ap.error(f"{out} already holds a run ({last}): add --resume to continue it, --overwrite to start over and "
                 f"replace it, or choose another --out")

    settings = _requested_settings(args)
    needs_margins = METHODS[settings["method"]].needs_margins
    if args.m_in is not None and not needs_margins:
        ap.error(f"--m-in/--m-out are the energy margins of the methods {margin_methods()}; method {settings['method']!r} "
                 f"does not use them")
    margins = settings.pop("margins", "propose")
    arch = args.arch or DATASETS[args.dataset].arch
    check_writable(out, "run (last.pt, metrics.json)")  # before any work: a read-only --out fails now
    run_meta = _run_meta(args, arch)
    saved = None
    if args.resume and last.exists():
        saved = load_checkpoint(last)
        _check_same_run(last, saved.get("meta") or {}, run_meta)

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and args.device != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
        dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(dev)
    else:
        dev = check_device(args.device, "--device") if args.device else default_device()

    data = load_dataset(args.dataset, root=args.data_root, aux=args.aux, download=args.download, seed=args.seed,
                        max_aux=args.max_aux)
    if args.max_aux is not None and len(data.aux_x) < args.max_aux:
        ap.error(f"--max-aux {args.max_aux}: the pool holds only {len(data.aux_x)} images, so the flag would do "
                 f"nothing; pass at most {len(data.aux_x)}, or leave it out to use them all")
    run_meta.update(pool_record(data.aux_x))
    if saved is not None:
        _check_same_run(last, saved.get("meta") or {}, run_meta)
    to_device_if_fits(data, dev)
    in_channels = DATASETS[args.dataset].in_channels
    seed_everything(args.seed)
    model = build_model(arch, n_classes=data.n_classes, in_channels=in_channels)
    if args.init:
        load_model_state(model, load_checkpoint(args.init), args.init)
    saved_cfg = (saved or {}).get("config") or {}
    if needs_margins:
        if args.m_in is not None and args.m_out is not None:
            settings["m_in"], settings["m_out"] = args.m_in, args.m_out
        elif saved_cfg.get("m_in") is not None and saved_cfg.get("method") == settings["method"]:
            settings["m_in"], settings["m_out"] = saved_cfg["m_in"], saved_cfg["m_out"]  # the margins that ran
        elif margins == "dataset":
            if args.dataset not in DEFAULT_MARGINS:
                raise ValueError(f"the preset's margins are the energy paper's for {sorted(DEFAULT_MARGINS)}, not "
                                 f"{args.dataset!r}: give --m-in and --m-out")
            settings["m_in"], settings["m_out"] = DEFAULT_MARGINS[args.dataset]
        elif isinstance(margins, tuple):
            settings["m_in"], settings["m_out"] = margins
        else:
            model.to(dev)
            settings["m_in"], settings["m_out"] = propose_margins(
                model, data.prepare_eval(data.train_x[:4000].to(dev)), data.prepare_eval(data.aux_x[:4000].to(dev)))
    if args.overwrite and (out / "metrics.json").exists():
        (out / "metrics.json").unlink()  # the old run's results must not outlive it
    meta = {"dataset": args.dataset, "arch": arch, "n_classes": data.n_classes, "in_channels": in_channels,
            **{k: v for k, v in run_meta.items() if k not in ("dataset", "arch")}}
    history = fit(model, data, device=dev, checkpoint=last, resume=args.resume, overwrite=args.overwrite,
                  seed=args.seed, progress=not args.no_progress,
                  checkpoint_extra={"meta": meta}, **settings)
    rank, _ = dist_info()
    if rank == 0:
        results = evaluate(model, data)
        ran = history.config  # what ran (a resume refuses other settings; --epochs may have grown)
        results.update(meta=meta, method=settings["method"],
                       settings={k: (list(ran.get(k, v)) if isinstance(ran.get(k, v), tuple) else ran.get(k, v))
                                 for k, v in settings.items()},
                       extensions=history.extensions, history={k: list(v) for k, v in history.items()})
        if args.dataset != "digits":  # the paper's OOD sets are files: record which were found, where the rest go
            results["ood_search"] = ood_search(data.ood, args.data_root)
        (out / "metrics.json").write_text(json.dumps(results, indent=2))
        print(f"{summary(results, results.get('ood_search'))}  -> {display_path(out / 'metrics.json')}")
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def _refuse_unused_flags(ap: argparse.ArgumentParser, args) -> None:
    """Every flag takes effect for the chosen dataset, or is refused here, by name (a bad --device too), before any
    work."""
    if args.dataset == "digits":
        given = [flag for key, flag in _FILE_FLAGS.items() if getattr(args, key) not in (None, False)]
        if given:
            one = len(given) == 1
            ap.error(f"{', '.join(given)} {'does' if one else 'do'} nothing for --dataset digits: its images and pool "
                     f"are generated (cached under the data folder, $GREGNB_DATA); leave {'it' if one else 'them'} "
                     f"out, or train on cifar10 / cifar100")
    if args.max_aux is not None and args.max_aux < 1:
        ap.error(f"--max-aux must be at least 1 (the number of pool images to use), got {args.max_aux}; leave it out "
                 f"to use the whole pool")
    if args.device is not None:
        try:
            check_device(args.device, "--device")
        except ValueError as err:
            ap.error(str(err))


def _run_meta(args, arch: str) -> dict:
    """The settings of a run besides its training settings (:data:`_RUN_FLAGS`): paths as
    :func:`gregnb.config.display_path` names them, resolved (the same file named two ways is one setting)."""
    def where(path):
        return display_path(Path(path).resolve()) if path is not None else None

    return {"dataset": args.dataset, "arch": arch, "seed": args.seed, "data_root": where(args.data_root),
            "aux": where(args.aux), "max_aux": args.max_aux, "init": where(args.init)}


def pool_record(aux_x: torch.Tensor) -> dict:
    """What a run records of its auxiliary pool: ``pool_size`` (images) and ``pool_hash``, a hash of its shape, dtype
    and up to 1024 evenly spaced images (a replaced pool file shows, without reading 300K images)."""
    n = len(aux_x)
    h = hashlib.sha256(f"{tuple(aux_x.shape)} {aux_x.dtype}".encode())
    if n:
        rows = torch.linspace(0, n - 1, min(n, 1024)).round().long()
        h.update(aux_x[rows].detach().cpu().contiguous().numpy().tobytes())
    return {"pool_size": n, "pool_hash": h.hexdigest()[:16]}


def _check_same_run(last: Path, old: dict, now: dict) -> None:
    """Refuse to resume ``last`` when a setting it recorded (``old``) differs from this command's (``now``), naming
    each; a checkpoint written before a setting was recorded is not held to it."""
    diff = {k: (old[k], v) for k, v in now.items() if k in old and old[k] != v}
    if not diff:
        return
    shown = lambda v: "(not given)" if v is None else v  # noqa: E731
    parts = [f"{_RUN_FLAGS[k]} {shown(a)} (now {shown(b)})" for k, (a, b) in diff.items() if k in _RUN_FLAGS]
    if "pool_size" in diff:
        parts.append(f"a pool of {diff['pool_size'][0]} images (now {diff['pool_size'][1]})")
    elif "pool_hash" in diff:
        parts.append("other pool images (the pool file's contents changed)")
    raise ValueError(f"cannot resume {display_path(last)}: it was trained with " + ", ".join(parts)
                     + "; resume with the same flags and data, or start a new run (another --out, or --overwrite)")


def to_device_if_fits(data: Benchmark, dev: torch.device, fraction: float = 0.5) -> None:
    """Move the image tensors to the GPU when they take less than ``fraction`` of its free memory."""
    if dev.type != "cuda":
        return
    parts = [data.train_x, data.test_x, data.aux_x, *data.ood.values()]
    need = sum(t.numel() * t.element_size() for t in parts)
    free, _ = torch.cuda.mem_get_info(dev)
    if need < fraction * free:
        data.train_x, data.test_x = data.train_x.to(dev), data.test_x.to(dev)
        data.aux_x = data.aux_x.to(dev)
        data.ood = {k: v.to(dev) for k, v in data.ood.items()}
