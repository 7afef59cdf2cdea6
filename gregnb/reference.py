"""Reference numbers from the papers (the GReg paper's tables and the energy paper's), for comparison tables.

These are **secondary transcriptions** of the papers' tables, not our measurements: label them so
wherever they are shown. FPR95 and AUROC in %, ID positive, averaged over the six CIFAR OOD sets
(iSUN, LSUN-R, LSUN-C, Places, SVHN, Textures) unless a per-set entry is given.

Every number is attributed to the table it was transcribed from (:data:`TABLES`; tables are named by
what they show, not by a number the collection cannot check against the paper). A number that appears in
two tables is given under each, so one row never mixes two tables: the ablation table's energy-loss
row (FPR95 11.26, AUROC 97.43) and energy-loss + gradient term row (7.93 / 98.12, i.e. GReg) sit with
the OE and POEM rows of that table, not with the main table's DenseNet-100 rows, whose AUROC the
transcription does not give (the FPR95 values agree, which suggests the ablation used DenseNet-100;
the transcription does not say).
"""
from __future__ import annotations

__all__ = ["TABLES", "PAPER_MEAN", "PAPER_PER_SET", "PER_SET_TABLE", "paper_table"]

#: short table key -> what it is (shown by :func:`paper_table` as the ``table`` column)
TABLES = {
    "main": "GReg paper, CIFAR-10 comparison of methods per network (mean over the six OOD sets)",
    "ablation": "GReg paper, ablation: each loss with and without the gradient term, CIFAR-10 "
                "(network not given in the transcription)",
    "per-set": "GReg paper, results per OOD set",
    "imagenet": "GReg paper, ImageNet-10 experiment (DenseNet-121; the other 990 classes as auxiliary data)",
    "energy paper": "Liu et al. 2020 (energy paper), WRN-40-2 on CIFAR-10",
}

_NOT_STATED = "(not stated)"

#: (dataset, network, method, table) -> {"fpr95": ..., "auroc": ...}; None where the transcription gives no value
PAPER_MEAN = {
    # main table: CIFAR-10, three networks
    ("cifar10", "resnet18_32x32", "energy", "main"): {"fpr95": 11.14, "auroc": 97.53},
    ("cifar10", "wrn40_2", "energy", "main"): {"fpr95": 13.11, "auroc": None},
    ("cifar10", "densenet100", "energy", "main"): {"fpr95": 11.26, "auroc": None},
    ("cifar10", "resnet18_32x32", "greg", "main"): {"fpr95": 7.90, "auroc": 97.95},
    ("cifar10", "wrn40_2", "greg", "main"): {"fpr95": 7.95, "auroc": None},
    ("cifar10", "densenet100", "greg", "main"): {"fpr95": 7.93, "auroc": None},
    # ablation table: adding the gradient term to three losses (one network, not named in the transcription)
    ("cifar10", _NOT_STATED, "oe", "ablation"): {"fpr95": 21.76, "auroc": 95.80},
    ("cifar10", _NOT_STATED, "oe+grad", "ablation"): {"fpr95": 18.79, "auroc": 96.32},
    ("cifar10", _NOT_STATED, "energy", "ablation"): {"fpr95": 11.26, "auroc": 97.43},
    ("cifar10", _NOT_STATED, "energy+grad (greg)", "ablation"): {"fpr95": 7.93, "auroc": 98.12},
    ("cifar10", _NOT_STATED, "poem", "ablation"): {"fpr95": 29.15, "auroc": 94.18},
    ("cifar10", _NOT_STATED, "poem+grad", "ablation"): {"fpr95": 23.87, "auroc": 95.41},
    # ImageNet-10 (mean over Textures, Places, SUN, iNaturalist)
    ("imagenet10", "densenet121", "line", "imagenet"): {"fpr95": 39.48, "auroc": 91.29},
    ("imagenet10", "densenet121", "dos", "imagenet"): {"fpr95": 49.31, "auroc": 91.97},
    ("imagenet10", "densenet121", "energy", "imagenet"): {"fpr95": 45.23, "auroc": 88.63},
    ("imagenet10", "densenet121", "greg", "imagenet"): {"fpr95": 47.26, "auroc": 90.13},
    ("imagenet10", "densenet121", "greg+", "imagenet"): {"fpr95": 35.08, "auroc": 92.06},
    # the energy paper (Liu et al. 2020); its "softmax score with fine-tune" is Outlier Exposure
    ("cifar10", "wrn40_2", "msp (post hoc)", "energy paper"): {"fpr95": 51.04, "auroc": None},
    ("cifar10", "wrn40_2", "energy (post hoc)", "energy paper"): {"fpr95": 33.01, "auroc": 91.88},
    ("cifar10", "wrn40_2", "oe", "energy paper"): {"fpr95": 8.53, "auroc": None},
    ("cifar10", "wrn40_2", "energy fine-tune", "energy paper"): {"fpr95": 3.32, "auroc": None},
}

#: the table every entry of :data:`PAPER_PER_SET` comes from
PER_SET_TABLE = "per-set"

#: (dataset, network, method) -> {OOD set: (FPR95, AUROC)}, all from the table :data:`PER_SET_TABLE`
PAPER_PER_SET = {
    ("cifar10", "resnet18_32x32", "greg"): {"iSUN": (6.20, 98.33), "LSUN-R": (6.50, 98.40), "LSUN-C": (3.03, 99.00),
                                            "Places365": (22.76, 94.80), "SVHN": (3.00, 98.83), "Textures": (5.96, 98.36)},
    ("cifar10", "densenet100", "greg"): {"iSUN": (6.03, 98.56), "LSUN-R": (6.36, 98.53), "LSUN-C": (3.10, 99.23),
                                         "Places365": (20.13, 95.66), "SVHN": (3.70, 98.93), "Textures": (8.30, 97.90)},
    ("cifar10", "resnet18_32x32", "greg+"): {"iSUN": (15.04, 97.11), "LSUN-R": (14.56, 97.30), "LSUN-C": (9.54, 98.18),
                                             "Places365": (24.25, 94.80), "SVHN": (5.65, 98.79), "Textures": (7.70, 98.47)},
    ("cifar100", "resnet18_32x32", "greg+"): {"iSUN": (54.22, 87.80), "LSUN-R": (46.04, 89.94), "LSUN-C": (43.86, 90.75),
                                              "Places365": (69.61, 83.35), "SVHN": (42.20, 92.45), "Textures": (48.74, 88.20)},
}


def paper_table(dataset: str = "cifar10"):
    """The mean numbers for ``dataset`` as a pandas DataFrame: rows indexed by (table, network, method),
    columns ``FPR95 % (paper)`` and ``AUROC % (paper)``; ``TABLES[table]`` says what each table is."""
    import pandas as pd

    datasets = sorted({key[0] for key in PAPER_MEAN})
    if dataset not in datasets:
        raise ValueError(f"no transcribed numbers for dataset {dataset!r}; choose one of {datasets}")
    rows = [{"table": table, "network": net, "method": m, "FPR95 % (paper)": v["fpr95"], "AUROC % (paper)": v["auroc"]}
            for (ds, net, m, table), v in PAPER_MEAN.items() if ds == dataset]
    return pd.DataFrame(rows).set_index(["table", "network", "method"])
