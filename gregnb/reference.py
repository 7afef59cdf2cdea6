"""Reference numbers from the papers (the GReg paper's tables and the energy paper's), for comparison tables.

These are **secondary transcriptions** of the papers' tables, not our measurements: label them so
wherever they are shown. FPR95 and AUROC in %, ID positive, averaged over the six CIFAR OOD sets
(iSUN, LSUN-R, LSUN-C, Places, SVHN, Textures) unless a per-set entry is given.
"""
from __future__ import annotations

__all__ = ["PAPER_MEAN", "PAPER_PER_SET", "paper_table"]

#: (dataset, network, method) -> {"fpr95": ..., "auroc": ...}; None where the transcription gives no value
PAPER_MEAN = {
    ("cifar10", "resnet18_32x32", "energy"): {"fpr95": 11.14, "auroc": 97.53},
    ("cifar10", "wrn40_2", "energy"): {"fpr95": 13.11, "auroc": None},
    ("cifar10", "densenet100", "energy"): {"fpr95": 11.26, "auroc": 97.43},
    ("cifar10", "resnet18_32x32", "greg"): {"fpr95": 7.90, "auroc": 97.95},
    ("cifar10", "wrn40_2", "greg"): {"fpr95": 7.95, "auroc": None},
    ("cifar10", "densenet100", "greg"): {"fpr95": 7.93, "auroc": 98.12},
    # "adding the gradient term" (network not stated in our transcription)
    ("cifar10", "(not stated)", "oe"): {"fpr95": 21.76, "auroc": 95.80},
    ("cifar10", "(not stated)", "oe+grad"): {"fpr95": 18.79, "auroc": 96.32},
    ("cifar10", "(not stated)", "poem"): {"fpr95": 29.15, "auroc": 94.18},
    ("cifar10", "(not stated)", "poem+grad"): {"fpr95": 23.87, "auroc": 95.41},
    # ImageNet-10 (DenseNet-121; the other 990 classes as auxiliary data)
    ("imagenet10", "densenet121", "line"): {"fpr95": 39.48, "auroc": 91.29},
    ("imagenet10", "densenet121", "dos"): {"fpr95": 49.31, "auroc": 91.97},
    ("imagenet10", "densenet121", "energy"): {"fpr95": 45.23, "auroc": 88.63},
    ("imagenet10", "densenet121", "greg"): {"fpr95": 47.26, "auroc": 90.13},
    ("imagenet10", "densenet121", "greg+"): {"fpr95": 35.08, "auroc": 92.06},
    # energy paper (Liu et al. 2020), WRN-40-2, CIFAR-10
    ("cifar10", "wrn40_2", "msp (post hoc)"): {"fpr95": 51.04, "auroc": None},
    ("cifar10", "wrn40_2", "energy (post hoc)"): {"fpr95": 33.01, "auroc": 91.88},
    ("cifar10", "wrn40_2", "oe (energy paper)"): {"fpr95": 8.53, "auroc": None},
    ("cifar10", "wrn40_2", "energy fine-tune (energy paper)"): {"fpr95": 3.32, "auroc": None},
}

#: (dataset, network, method) -> {OOD set: (FPR95, AUROC)}
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
    """The mean numbers for ``dataset`` as a pandas DataFrame (rows: network, method)."""
    import pandas as pd

    rows = [{"network": net, "method": m, "FPR95 % (paper)": v["fpr95"], "AUROC % (paper)": v["auroc"]}
            for (ds, net, m), v in PAPER_MEAN.items() if ds == dataset]
    return pd.DataFrame(rows).set_index(["network", "method"])
