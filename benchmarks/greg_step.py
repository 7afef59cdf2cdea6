"""Cost of one GReg training step, measured side by side in one run (ratios, not absolute times).

For each model (the digits CNN and a 32x32x3 ResNet-18), batch = 64 ID + 64 OOD rows:
  energy   CE + 0.1 * energy loss                   (one forward, one backward)
  greg     + the gradient penalty, ours              (one forward, grad(create_graph) + double backward)
  jacobian + the penalty as the authors compute it   (a second forward inside autograd.functional.jacobian)
  lazy k=4 the penalty every 4th step with weight 4λ (mean cost over 4 consecutive steps)
Targets (issue 3): greg / jacobian <= 0.8; greg / energy <= 4 (conv net with BatchNorm, CPU);
lazy k=4 / energy <= 1.8.

    .venv/bin/python benchmarks/greg_step.py [--repeats 5] [--device cuda] [--skip-resnet]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from gregnb.losses import energy_margin_loss, greg_objective
from gregnb.models import SmallCNN, resnet18_32x32
from gregnb.scores import energy

M_IN, M_OUT = -6.0, -3.0


def energy_step(model, x, y, xo):
    loss, _ = greg_objective(model, x, y, xo, m_in=M_IN, m_out=M_OUT, lambda_grad=0.0)
    loss.backward()


def greg_step(model, x, y, xo):
    loss, _ = greg_objective(model, x, y, xo, m_in=M_IN, m_out=M_OUT, lambda_grad=1.0)
    loss.backward()


def jacobian_step(model, x, y, xo):
    """The authors' formulation: the penalty's input gradient through autograd.functional.jacobian."""
    n = len(x)
    inp = torch.cat([x, xo])
    logits = model(inp)
    e = energy(logits)
    loss = F.cross_entropy(logits[:n], y) + 0.1 * energy_margin_loss(e[:n], e[n:], M_IN, M_OUT)

    def hinge(z):
        en = energy(model(z))
        return -F.relu(M_IN - en[:n]).mean() + F.relu(en[n:] - M_OUT).mean()

    jac = torch.autograd.functional.jacobian(hinge, inp, create_graph=True)
    loss = loss + 1.0 * jac.flatten(1).norm(dim=1).mean()
    loss.backward()


def lazy_steps(model, x, y, xo, k=4):
    """k consecutive steps of lazy GReg: the penalty on one of them (weight k*lambda)."""
    for i in range(k):
        loss, _ = greg_objective(model, x, y, xo, m_in=M_IN, m_out=M_OUT, lambda_grad=float(k) if i == 0 else 0.0)
        loss.backward()


def time_interleaved(fns: dict, model, batch, repeats, sync) -> dict[str, float]:
    """Median seconds per step of each function, measured round-robin (noise hits all alike)."""
    per = {"lazy": 4}
    for fn in fns.values():  # warm-up (allocator, kernels, cudnn autotune)
        fn(model, *batch)
        fn(model, *batch)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            model.zero_grad(set_to_none=True)
            sync()
            t0 = time.perf_counter()
            fn(model, *batch)
            sync()
            times[name].append((time.perf_counter() - t0) / per.get(name, 1))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-resnet", action="store_true")
    args = ap.parse_args()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    cases = [("digits CNN (1x8x8, BN)", SmallCNN(), (1, 8, 8))]
    if not args.skip_resnet:
        cases.append(("ResNet-18 (3x32x32, BN)", resnet18_32x32(), (3, 32, 32)))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; batch 64 ID + 64 OOD; median of {args.repeats}")
    print(f"{'model':<26} {'energy ms':>10} {'greg ms':>9} {'jacob ms':>9} {'lazy4 ms':>9} "
          f"{'greg/energy':>12} {'greg/jacob':>11} {'lazy4/energy':>13}")
    for label, model, shape in cases:
        model = model.to(dev).train()
        batch = (torch.rand(64, *shape, device=dev), torch.randint(0, 10, (64,), device=dev),
                 torch.rand(64, *shape, device=dev))
        t = time_interleaved({"energy": energy_step, "greg": greg_step, "jacobian": jacobian_step,
                              "lazy": lazy_steps}, model, batch, args.repeats, sync)
        t_e, t_g, t_j, t_l = t["energy"], t["greg"], t["jacobian"], t["lazy"]
        print(f"{label:<26} {1e3 * t_e:>10.1f} {1e3 * t_g:>9.1f} {1e3 * t_j:>9.1f} {1e3 * t_l:>9.1f} "
              f"{t_g / t_e:>12.2f} {t_g / t_j:>11.2f} {t_l / t_e:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
