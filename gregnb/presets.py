"""Named training recipes (method.md §5) for ``python -m gregnb.train --preset NAME``.

Each preset fills :class:`gregnb.train.TrainConfig` fields; command-line flags override them.
``margins`` (m_in, m_out) are used unless ``--m-in/--m-out`` are given ("propose" = from the initial
model's energies, :func:`gregnb.losses.propose_margins`).

The GReg fine-tune's learning rate is not given in method.md; we use the energy fine-tune's 0.001.
"""
from __future__ import annotations

__all__ = ["PRESETS", "get_preset"]

_SGD = dict(optimizer="sgd", momentum=0.9)

PRESETS: dict[str, dict] = {
    # cross-entropy baselines (the pretrained models the fine-tunes start from)
    "ce-cifar": dict(method="ce", epochs=100, lr=0.1, weight_decay=5e-4, batch_size=128, schedule="cosine", **_SGD),
    # Liu et al.'s energy fine-tune of a WRN-40-2 on CIFAR: 10 epochs, lr 0.001, Nesterov, wd 5e-4,
    # cosine per step, lambda 0.1, ID batch 128, OOD batch 256
    "energy-finetune": dict(method="energy", epochs=10, lr=1e-3, weight_decay=5e-4, batch_size=128,
                            aux_batch_size=256, lambda_s=0.1, schedule="cosine", margins="dataset", **_SGD),
    # GReg: fine-tune 20 epochs, SGD momentum 0.9, wd 1e-4, cosine; lambda_S 0.1, lambda_grad 1, batch 64
    "greg-finetune": dict(method="greg", epochs=20, lr=1e-3, weight_decay=1e-4, batch_size=64, aux_batch_size=128,
                          lambda_s=0.1, lambda_grad=1.0, schedule="cosine", margins=(-25.0, -7.0), **_SGD),
    # GReg+: from scratch, 50 epochs at lr 0.1 then 10 at 0.01; candidates 6x the batch, k = batch, two-way
    "gregplus-scratch": dict(method="greg+", epochs=60, lr=0.1, weight_decay=5e-4, batch_size=64,
                             schedule="multistep", milestones=(50,), gamma=0.1, lambda_s=0.1, lambda_grad=1.0,
                             candidate_factor=6, two_way=True, margins=(-25.0, -7.0), **_SGD),
    # the CPU recipes the chapters use on the digits benchmark
    "digits-ce": dict(method="ce", epochs=15, lr=3e-3, batch_size=64),
    "digits-energy": dict(method="energy", epochs=10, lr=1e-3, batch_size=64, aux_batch_size=128, margins="propose"),
    "digits-greg": dict(method="greg", epochs=10, lr=1e-3, batch_size=64, aux_batch_size=128, margins="propose"),
    "digits-gregplus": dict(method="greg+", epochs=10, lr=1e-3, batch_size=64, margins="propose"),
}


def get_preset(name: str) -> dict:
    """A copy of a preset's settings."""
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
