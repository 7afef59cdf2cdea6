"""The sandwich of certified radii on the chapters' digits models (issue 14), over seeds.

For each seed: the chapters' CNN fine-tuned with the energy loss and with GReg (as chapter 07 trains
them, through ``compare_methods``) and the Lipschitz-constrained CNN trained the same way
(``gregnb.certification.lipschitz_models``). For the first ``--n`` ID test images that each model
detects correctly (``E <= gamma``, gamma the 95%-TPR threshold): the median sound radius of the global
product bound, IBP and CROWN, and the median radius at which a PGD attack flips the decision
(global <= IBP <= CROWN <= true radius <= attack). Reports mean ± std over seeds of those medians,
CROWN / global, and each model's mean FPR95.

Targets (issue 14): best sound median >= 10x the global median on the chapters' models, or, for the
Lipschitz CNN, a median sound radius >= 0.1 at a mean FPR95 within 5 points of the energy-loss CNN.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/certify_sandwich.py [--seeds 3] [--n 100] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch

from gregnb.certification import energy_threshold, lipschitz_models, nearest_other_class, radius_table
from gregnb.data.digits import load_benchmark
from gregnb.evaluate import evaluate
from gregnb.experiments import compare_methods
from gregnb.presets import DIGITS_LAMBDA_GRAD

METHODS = ("global", "ibp", "crown")


def models_for(digits, seed: int) -> dict:
    methods = {"energy loss": dict(method="energy"),   # as chapter 07: GReg at chapter 04's validation choice
               "GReg": dict(method="greg", lambda_grad=DIGITS_LAMBDA_GRAD)}
    _, runs = compare_methods(digits, methods, seeds=[seed], keep_models=True)
    lip, _ = lipschitz_models(digits, seed)
    return {"CNN, energy loss": runs["models"][("energy loss", seed)], "CNN, GReg": runs["models"][("GReg", seed)],
            "Lipschitz CNN, energy loss": lip["energy loss"], "Lipschitz CNN, GReg": lip["GReg"]}


def cell(values, digits: int = 4) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n", type=int, default=100, help="ID test images per model")
    ap.add_argument("--eps-max", type=float, default=2.0)
    ap.add_argument("--json", help="also write the per-seed rows here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    digits = load_benchmark(seed=0)
    rows = []
    for seed in range(args.seeds):
        for label, model in models_for(digits, seed).items():
            t0 = time.perf_counter()
            gamma = energy_threshold(model, digits)
            tab = radius_table(model, digits.test_x[:args.n], gamma, is_id=True, eps_max=args.eps_max)
            ok = tab[tab.correct]
            row = {"seed": seed, "model": label, "fpr95": evaluate(model, digits)["mean"]["fpr95"],
                   "n_correct": len(ok), "seconds": time.perf_counter() - t0}
            row.update({m: float(ok[m].median()) for m in (*METHODS, "attack")})
            row["crown / global"] = float((ok.crown / ok["global"]).median())
            row["flips inside CROWN"] = int((ok.attack < ok.crown).sum())
            rows.append(row)
            print(json.dumps(row), flush=True)
    df = pd.DataFrame(rows)
    print("\nMedian ℓ2 radius of correctly detected ID test images (pixel units, images in [0, 1]);"
          f" mean ± std over {args.seeds} seeds")
    table = df.groupby("model", sort=False).agg(
        **{m: (m, cell) for m in (*METHODS, "attack")}, **{"CROWN / global": ("crown / global", lambda v: cell(v, 1)),
                                                           "mean FPR95 %": ("fpr95", lambda v: cell(100 * v, 1))})
    print(table.to_string())
    scale = nearest_other_class(digits)
    print(f"\nscale: median distance from a test digit to the nearest training digit of another class = "
          f"{float(scale.median()):.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "scale_median": float(scale.median())}, f, indent=1)


if __name__ == "__main__":
    main()
