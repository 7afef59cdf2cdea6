"""Datasets. The default path of every chapter is offline:

* :mod:`gregnb.data.toy2d` - 2-D toy sets generated on the fly.
* :mod:`gregnb.data.digits` - the offline image benchmark (scikit-learn's 8x8 digits as ID).

* :mod:`gregnb.data.cifar` - CIFAR-10/100 with the paper's OOD sets and pool (files on disk).

Each returns a :class:`Benchmark`. :data:`DATASETS` is the one rule from a dataset's name to its default
network and input channels (both command lines use it); :func:`load_dataset` loads one by that name.
"""
from __future__ import annotations

from typing import NamedTuple

from .base import Benchmark

__all__ = ["Benchmark", "DATASETS", "DatasetSpec", "load_dataset"]


class DatasetSpec(NamedTuple):
    arch: str  # the default network (gregnb.models.ARCHS)
    in_channels: int


DATASETS = {"digits": DatasetSpec("small_cnn", 1), "cifar10": DatasetSpec("wrn40_2", 3),
            "cifar100": DatasetSpec("wrn40_2", 3)}


def load_dataset(name: str, *, root: str | None = None, aux: str | None = None, download: bool = False,
                 seed: int = 0, max_aux: int | None = None, load_aux: bool = True) -> Benchmark:
    """A benchmark by name: "digits" (offline) or "cifar10" / "cifar100" (files under ``root``).
    ``load_aux=False``: CIFAR's pool file is not read (evaluation needs none; ``aux_x`` is then empty).
    ``root``, ``aux``, ``max_aux`` and ``download`` choose CIFAR's files: for the generated digits they would do
    nothing, so they are refused there (by name)."""
    if name == "digits":
        given = [k for k, v in (("root", root), ("aux", aux), ("max_aux", max_aux), ("download", download))
                 if v not in (None, False)]
        if given:
            raise ValueError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} nothing for the digits "
                             f"benchmark: its images and pool are generated (and cached under the data folder, "
                             f"$GREGNB_DATA); leave {'it' if len(given) == 1 else 'them'} out, or load a CIFAR "
                             f"dataset")
        from .digits import load_benchmark

        return load_benchmark(seed)
    if name in ("cifar10", "cifar100"):
        from .cifar import load_cifar_benchmark

        return load_cifar_benchmark(name, root, download=download, aux=aux, max_aux=max_aux, load_aux=load_aux)
    raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
