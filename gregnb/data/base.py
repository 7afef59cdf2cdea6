"""The container every benchmark loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

__all__ = ["Benchmark"]


@dataclass
class Benchmark:
    """An ID classification task with an auxiliary outlier pool and named OOD test sets.

    Attributes:
        name: short name, e.g. ``"blobs"`` or ``"digits"``.
        train_x, test_x: ID inputs, float32, shape ``(N, *input_shape)``.
        train_y, test_y: ID labels, int64, shape ``(N,)``, values in ``[0, n_classes)``.
        aux_x: the auxiliary (training) outlier pool, same input shape.
        ood: test OOD sets, name -> inputs. Drawn from sources disjoint from ``aux_x``.
        n_classes: number of ID classes K.
        sources: name of each part -> where it came from (for the data card).
        train_transform: optional batch transform for training, ``(x, generator) -> model input``
            (e.g. uint8 images -> augmented, normalised floats on the same device); None = identity.
        eval_transform: optional batch transform for evaluation, ``x -> model input``.
        ood_uncovered: further test OOD sets, name -> inputs, from sources the pool does not reach (digits:
            :mod:`gregnb.data.uncovered`); kept apart from ``ood`` so that results on ``ood`` do not change.
            Empty when a benchmark has none.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    aux_x: torch.Tensor
    ood: dict[str, torch.Tensor]
    n_classes: int
    sources: dict[str, str] = field(default_factory=dict)
    train_transform: Callable | None = None
    eval_transform: Callable | None = None
    ood_uncovered: dict[str, torch.Tensor] = field(default_factory=dict)

    def prepare_eval(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the model sees it at test time."""
        return self.eval_transform(x) if self.eval_transform is not None else x

    def prepare_train(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` as the model sees it in training (augmented when the benchmark says so)."""
        return self.train_transform(x, generator) if self.train_transform is not None else x

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def sizes(self) -> dict[str, int]:
        """Number of samples in each part (a quick data card)."""
        out = {"train": len(self.train_x), "test": len(self.test_x), "aux": len(self.aux_x)}
        out.update({f"ood/{k}": len(v) for k, v in self.ood.items()})
        out.update({f"uncovered/{k}": len(v) for k, v in self.ood_uncovered.items()})
        return out

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in self.sizes().items())
        return f"Benchmark({self.name!r}, input_shape={self.input_shape}, n_classes={self.n_classes}, {parts})"
