"""What the portable CPU kernels cost: the chapters' training steps with the AVX2 pin and with the CPU's own kernels,
side by side in one run (ratios, not absolute times).

The pin is read by torch when it first computes, so each setting runs in its own fresh process; the two settings
alternate over ``--repeats`` rounds and the median of each is compared. Work timed, on one thread (as the
findings runner trains each model):
  digits GReg step   SmallCNN, 64 ID + 128 outlier 8x8 images, the masked input-gradient penalty (chapter 04)
  digits scoring     SmallCNN logits of 4,000 images without autograd (GReg+'s candidate scoring, evaluation)
  toy GReg step      the 2-D MLP, 128 + 128 points (chapters 03 and 07)

Measured on a 2-core AMD EPYC with AVX-512 (torch 2.14.1, machine otherwise busy): see the README's line on the
pin; this script prints the ratio pinned / native for each (above 1: the pin is slower).

    .venv/bin/python benchmarks/kernels.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORK = r"""
import json, time, torch
import gregnb
from gregnb.kernels import kernel_level
from gregnb.losses import greg_objective
from gregnb.models import MLP, SmallCNN
torch.set_num_threads(1)

def timed(step, n):
    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n

def trainer(model, x, y, xo):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    def step():
        loss, _ = greg_objective(model, x, y, xo, m_in=-6.0, m_out=-3.0, lambda_grad=1.0)
        loss.backward(); opt.step(); opt.zero_grad()
    return step

torch.manual_seed(0)
cnn = SmallCNN()
digits = trainer(cnn, torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,)), torch.randn(128, 1, 8, 8))
big = torch.randn(4000, 1, 8, 8)
def score():
    with torch.no_grad():
        cnn.eval(); cnn(big); cnn.train()
toy = trainer(MLP(), torch.randn(128, 2), torch.randint(0, 2, (128,)), torch.randn(128, 2))
print(json.dumps({"level": kernel_level(), "digits GReg step": timed(digits, 20), "digits scoring": timed(score, 5),
                  "toy GReg step": timed(toy, 200)}))
"""


def run(native: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}
    env["GREGNB_NATIVE_KERNELS"] = "1" if native else "0"
    out = subprocess.run([sys.executable, "-c", WORK], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    runs = {"pinned": [], "native": []}
    for _ in range(args.repeats):
        runs["pinned"].append(run(False))
        runs["native"].append(run(True))
    levels = {k: v[0]["level"] for k, v in runs.items()}
    print(f"kernel levels: pinned {levels['pinned']}, native {levels['native']}; {args.repeats} rounds, medians")
    if levels["pinned"] == levels["native"]:
        print("(this CPU's own level is the pinned one: the two settings run the same kernels)")
    for work in [k for k in runs["pinned"][0] if k != "level"]:
        p, n = (statistics.median(r[work] for r in runs[k]) for k in ("pinned", "native"))
        print(f"  {work:18s} pinned {1e3 * p:8.2f} ms  native {1e3 * n:8.2f} ms  pinned / native {p / n:5.2f}")


if __name__ == "__main__":
    main()
