"""One model at a time vs together (gregnb.train.fit_many) on chapter 04's λ∇ sweep, in one run.

The sweep: "energy loss", GReg at λ∇ in (0.03, 0.1, 0.3, 1, 3) and GReg in the authors' weighting, over 5 seeds,
each fine-tuned from its seed's CE model with the chapter's digits recipe (batch 64 + 128 outliers, lr 1e-3),
margins proposed from the CE model, as chapter 04 runs it in normal mode; only the number of epochs is reduced
(``--epochs``, default 1; the chapter uses the recipe's 5). ``--toy`` also times the chapter's toy sweep (the same
rows plus "every sample", trained from scratch on the 2-D blobs with the MLP).

Three ways, timed one after the other in one run:
  one at a time   ``fit`` on each model, torch's default threads (what the chapters did before fit_many)
  stacked         ``fit_many(stack_images=True)``: the members as one grouped network (MLPs stack by default)
  side by side    ``fit_many`` as the chapters call it: on a CPU each CNN member on one thread, as many members
                  at a time as torch has threads
Printed: wall times, each way's speed-up over one at a time (issue 25's target: >= 4x), the achieved FLOP/s (FLOPs
counted by torch.utils.flop_counter over one member-epoch of each row, forward, backward and GReg's double
backward included) and, for scale, the FLOP/s of one square float32 matmul with as many FLOPs as one model's step.

Measured on a 2-core AMD EPYC (torch 2.14.1, 2 threads, 5 seeds, 1 digits epoch, machine otherwise idle): one at a
time 17.9 s, stacked 20.8 s (0.86x), side by side 15.9 s (1.12x); 747.5 GFLOP, i.e. 41.7 / 35.9 / 46.9 GFLOP/s
against 93.4 GFLOP/s for a matmul of one step's FLOPs. The digits CNN's GReg step is bound by its convolutions and
BatchNorm's double backward, not by per-step overhead, so stacking does not speed it up; one thread per member
gains what threading a small convolution loses (more on a loaded machine or with more cores). Earlier, toy sweep:
stacked MLPs 7.6x.

    .venv/bin/python benchmarks/sweep.py [--epochs 1] [--seeds 5] [--threads N] [--toy]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from gregnb.data.digits import load_benchmark
from gregnb.data.toy2d import load_toy
from gregnb.experiments import default_model, train_classifiers
from gregnb.losses import propose_margins
from gregnb.presets import FINETUNE_RECIPES, SCRATCH_RECIPES
from gregnb.train import fit, fit_many

LAMBDAS = (0.03, 0.1, 0.3, 1.0, 3.0)
ROWS = {"energy loss": dict(method="energy"),
        **{f"GReg λ∇={lam:g}": dict(method="greg", lambda_grad=lam) for lam in LAMBDAS},
        "GReg reference": dict(method="greg", convention="reference")}


def sweep_jobs(data, seeds, epochs, scratch: bool, rows: dict):
    """(initial model, config) for every seed x row, as chapter 04's compare_methods builds them."""
    kind = "toy" if data.input_shape == (2,) else "digits"
    bases = train_classifiers(data, seeds, cache=False, epochs=2 if kind == "digits" else 10)
    jobs = []
    for seed, (base, _) in zip(seeds, bases):
        m_in, m_out = propose_margins(base, data.train_x, data.aux_x)
        for kw in rows.values():
            recipe = dict((SCRATCH_RECIPES if scratch else FINETUNE_RECIPES)[kind], seed=seed, m_in=m_in, m_out=m_out,
                          epochs=epochs, progress=False, **kw)
            jobs.append((default_model(data, seed) if scratch else copy.deepcopy(base), recipe))
    return jobs


class _CountFlops(TorchDispatchMode):
    """FLOPs of every matmul / convolution run under it (forward, backward, double backward), by torch's own
    formulas (torch.utils.flop_counter), without FlopCounterMode's module hooks (they refuse autograd.grad)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def count_flops(data, jobs) -> float:
    """FLOPs of the whole sweep: one member-epoch of each row counted, times the epochs and seeds."""
    total, seen = 0.0, {}
    for model, cfg in jobs:
        key = tuple(sorted((k, str(v)) for k, v in cfg.items() if k not in ("seed", "m_in", "m_out")))
        if key not in seen:
            counter = _CountFlops()
            with counter:
                fit(copy.deepcopy(model), data, **dict(cfg, epochs=1, log_grad_norms=False))
            seen[key] = counter.total
        total += seen[key] * cfg["epochs"]
    return total


def matmul_flops_per_s(flops: float, repeats: int = 5) -> tuple[int, float]:
    """GFLOP/s of a square float32 matmul with about ``flops`` FLOPs (n x n times n x n: 2 n^3)."""
    n = max(64, int(round((flops / 2) ** (1 / 3))))
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return n, 2 * n ** 3 * repeats / (time.perf_counter() - t0)


def compare(name, data, jobs, ways=("stacked", "side by side")) -> dict[str, float]:
    """Time one at a time, then each of ``ways``, on copies of the same jobs; print and return the speed-ups."""
    times = {}
    t0 = time.perf_counter()
    for model, cfg in copy.deepcopy(jobs):
        fit(model, data, **cfg)
    times["one at a time"] = time.perf_counter() - t0
    for way in ways:
        models, cfgs = zip(*copy.deepcopy(jobs))
        t0 = time.perf_counter()
        fit_many(list(models), data, list(cfgs), progress=False, stack_images=way == "stacked")
        times[way] = time.perf_counter() - t0
    alone = times["one at a time"]
    print(f"{name}: {len(jobs)} models, {torch.get_num_threads()} threads; "
          + "; ".join(f"{k} {v:.1f} s" + ("" if k == "one at a time" else f" ({alone / v:.2f}x)")
                      for k, v in times.items()), flush=True)
    flops = count_flops(data, jobs)
    steps = sum(-(-len(data.train_x) // c["batch_size"]) * c["epochs"] for _, c in jobs) / len(jobs)
    n, mm = matmul_flops_per_s(flops / steps)
    best = min(times, key=times.get)
    print(f"  {flops / 1e9:.1f} GFLOP in all: " + ", ".join(f"{k} {flops / v / 1e9:.1f} GFLOP/s" for k, v in times.items())
          + f"; a {n}x{n} matmul (one step's FLOPs) runs at {mm / 1e9:.1f} GFLOP/s on {torch.get_num_threads()} "
          f"threads, so the fastest way ({best}) reaches {100 * flops / times[best] / mm:.0f}% of it")
    return {k: alone / v for k, v in times.items() if k != "one at a time"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--toy", action="store_true", help="also time the chapter's toy sweep")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    seeds = list(range(args.seeds))
    digits = load_benchmark(seed=0)
    compare("chapter 04 digits sweep", digits, sweep_jobs(digits, seeds, args.epochs, False, ROWS))
    if args.toy:
        toy = load_toy("blobs", seed=0, n_aux=200, aux_region="left")
        rows = {**ROWS, "every sample": dict(method="greg", penalize="all")}
        compare("chapter 04 toy sweep", toy, sweep_jobs(toy, seeds, 4 * args.epochs, True, rows), ways=("stacked",))


if __name__ == "__main__":
    main()
