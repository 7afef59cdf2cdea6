"""Run a trained model over a benchmark and report accuracy and OOD metrics.

Scores follow :mod:`gregnb.metrics`: HIGH = ID (the energy score is negated for you).
"""
from __future__ import annotations

import torch
from torch import nn

from .data.base import Benchmark
from .inference import as_model_input, predict_logits
from .metrics import ood_metrics
from .scores import score_fn
from .validate import number

__all__ = ["predict_logits", "evaluate", "summary", "as_model_input"]


def evaluate(model: nn.Module, data: Benchmark, score: str = "energy", temperature: float = 1.0,
             tpr: float = 0.95) -> dict:
    """Accuracy on ``data.test_x`` and, per OOD set, FPR95 / AUROC / AUPR-In / AUPR-Out (fractions).

    Returns ``{"accuracy": float, "ood": {name: metrics}, "mean": metrics averaged over sets}``; with no OOD
    set (``data.ood`` empty) ``"ood"`` and ``"mean"`` are empty dicts.
    """
    fn = score_fn(score)
    if not isinstance(data, Benchmark):
        raise TypeError(f"data must be a gregnb.data.Benchmark (e.g. gregnb.data.load_dataset('digits')), got "
                        f"{type(data).__name__}")
    temperature = number("temperature", temperature, low=0.0, low_open=True, hint="the paper uses 1")
    tpr = number("tpr", tpr, low=0.0, high=1.0, low_open=True, hint="0.95 for FPR95")
    tf = data.eval_transform
    test_y = torch.as_tensor(data.test_y)
    if test_y.ndim != 1 or len(test_y) != len(data.test_x) or test_y.is_floating_point() or test_y.dtype == torch.bool:
        raise ValueError(f"data.test_y must hold one integer class label per test sample ({len(data.test_x)}), got "
                         f"{test_y.dtype} of shape {tuple(test_y.shape)}; convert with .long()")
    id_logits = predict_logits(model, data.test_x, transform=tf)
    k = id_logits.shape[1]
    if len(test_y) and int(test_y.max()) >= k:
        raise ValueError(f"data.test_y holds labels up to {int(test_y.max())}, but the model gives {k} logits per "
                         f"sample: its accuracy would be meaningless; evaluate the model trained on this data "
                         f"(n_classes={data.n_classes})")
    acc = (id_logits.argmax(1) == test_y).float().mean().item()
    id_s = fn(id_logits, temperature)
    per_set = {name: ood_metrics(id_s, fn(predict_logits(model, x, transform=tf), temperature), tpr)
               for name, x in data.ood.items()}
    keys = next(iter(per_set.values())).keys() if per_set else []
    mean = {k: sum(m[k] for m in per_set.values()) / len(per_set) for k in keys}
    return {"accuracy": acc, "ood": per_set, "mean": mean}


def summary(res: dict, searched: dict | None = None) -> str:
    """One line for a command line: the ID accuracy and the mean FPR95 / AUROC over the OOD sets of an
    :func:`evaluate` result (in %), and which sets were looked for in vain and where (``searched``, from
    :func:`gregnb.data.cifar.ood_search`); with no OOD set at all, the accuracy alone, saying so."""
    line = f"accuracy {100 * res['accuracy']:.2f}%"
    if res["mean"]:
        line += (f"  mean FPR95 {100 * res['mean']['fpr95']:.2f}%  mean AUROC {100 * res['mean']['auroc']:.2f}% "
                 f"over {len(res['ood'])} OOD set(s)")
    missing = (searched or {}).get("missing") or {}
    if missing:
        looked = ", ".join(f"{name} ({path})" for name, path in missing.items())
        line += (f"  [{'no OOD test set found' if not res['mean'] else 'not found'}: looked under "
                 f"{searched['folder']} for {looked}]")
    elif not res["mean"]:
        line += "  [no OOD test set: accuracy only]"
    return line


def main(argv: list[str] | None = None) -> int:
    """``python -m gregnb.evaluate --ckpt OUT/last.pt``: accuracy and per-OOD-set metrics of a saved model."""
    import argparse
    import json

    from .checkpoint import load_checkpoint, load_model_state
    from .data import DATASETS, load_dataset
    from .models import build_model

    ap = argparse.ArgumentParser(prog="python -m gregnb.evaluate", description=main.__doc__)
    ap.add_argument("--ckpt", required=True, help="a checkpoint written by python -m gregnb.train")
    ap.add_argument("--dataset", help="default: the one recorded in the checkpoint")
    ap.add_argument("--arch", help="default: the one recorded in the checkpoint")
    ap.add_argument("--score", default="energy", choices=["energy", "msp", "max_logit"])
    ap.add_argument("--data-root")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    state = load_checkpoint(args.ckpt)
    meta = state.get("meta", {})
    dataset, arch = args.dataset or meta.get("dataset"), args.arch or meta.get("arch")
    if not dataset or not arch:
        raise SystemExit(f"{args.ckpt} records no dataset/arch: pass --dataset and --arch")
    if dataset == "digits" and args.data_root is not None:
        ap.error("--data-root does nothing for the digits benchmark: its images are generated (cached under the data "
                 "folder, $GREGNB_DATA); leave it out")
    data = load_dataset(dataset, root=args.data_root, seed=int(meta.get("seed", 0)), load_aux=False)
    model = build_model(arch, n_classes=data.n_classes, in_channels=int(meta.get("in_channels", DATASETS[dataset].in_channels)))
    load_model_state(model, state, args.ckpt)
    res = evaluate(model, data, score=args.score)
    if dataset != "digits":  # the paper's OOD sets are files: say which were found, and where the others go
        from .data.cifar import ood_search

        res["ood_search"] = ood_search(data.ood, args.data_root)
    if res["ood"]:
        print(f"{'set':<14} {'FPR95':>7} {'AUROC':>7} {'AUPR-In':>8} {'AUPR-Out':>9}   (%, ID positive, score={args.score})")
        for name, m in [*res["ood"].items(), ("mean", res["mean"])]:
            print(f"{name:<14} {100 * m['fpr95']:>7.2f} {100 * m['auroc']:>7.2f} {100 * m['aupr_in']:>8.2f} "
                  f"{100 * m['aupr_out']:>9.2f}")
    print(summary(res, res.get("ood_search")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    import sys

    try:
        sys.exit(main())
    except (ValueError, OSError) as err:  # bad files or settings: the message says what to do, no stack trace
        sys.exit(f"error: {err}")
