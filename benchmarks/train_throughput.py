"""Training throughput (images/s) of each method's step with WRN-40-2 on 32x32 synthetic data, and of
the input pipeline alone (uint8 batches on the device -> random crop + flip + normalise).

Images counted per step: the ID batch plus the OOD batch the loss sees (GReg+ also scores its
candidates, which costs a forward pass but counts as nothing). Measured side by side, interleaved.
Targets on a GPU (issue 5): pipeline alone >= 5x the greg step's images/s; greg step <= 4x the energy
step's time; lazy greg (k = 4) <= 1.8x.

    .venv/bin/python benchmarks/train_throughput.py [--device cuda] [--amp] [--channels-last] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from gregnb.data.cifar import gpu_augment
from gregnb.models import wrn40_2
from gregnb.train import METHODS, TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    b = args.batch
    g = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 256, (20_000 if dev.type == "cuda" else 2_000, 32, 32, 3), dtype=torch.uint8).to(dev)
    labels = torch.randint(0, 10, (len(pool),)).to(dev)
    model = wrn40_2().to(dev)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    configs = {
        "ce": TrainConfig(method="ce", batch_size=b),
        "energy": TrainConfig(method="energy", batch_size=b, m_in=-25.0, m_out=-7.0),
        "greg": TrainConfig(method="greg", batch_size=b, m_in=-25.0, m_out=-7.0),
        "greg lazy k=4": TrainConfig(method="greg", batch_size=b, m_in=-25.0, m_out=-7.0, grad_every=4),
        "greg+": TrainConfig(method="greg+", batch_size=b, m_in=-25.0, m_out=-7.0),
    }
    aux_sizes = {"ce": 0, "energy": 2 * b, "greg": 2 * b, "greg lazy k=4": 2 * b, "greg+": 6 * b}
    seen = {"ce": b, "energy": 3 * b, "greg": 3 * b, "greg lazy k=4": 3 * b, "greg+": 3 * b}

    def batch(n):
        idx = torch.randint(0, len(pool), (n,), generator=g).to(dev)
        return gpu_augment(pool[idx], g), labels[idx]

    def step(label, k):
        cfg = configs[label]
        x, y = batch(b)
        xa = batch(aux_sizes[label])[0] if aux_sizes[label] else None
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            xa = xa.contiguous(memory_format=torch.channels_last) if xa is not None else None
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=args.amp and dev.type == "cuda"):
            loss, _ = METHODS[cfg.method].step(model, x, y, xa, cfg, k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def pipeline(_label, _k):
        batch(3 * b)

    per_call = {"greg lazy k=4": 4}
    fns = {**{k: step for k in configs}, "pipeline only (3x batch)": pipeline}
    for label, fn in fns.items():  # warm-up
        for k in range(per_call.get(label, 1)):
            fn(label, k)
    times = {k: [] for k in fns}
    for _ in range(args.repeats):
        for label, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for k in range(per_call.get(label, 1)):
                fn(label, k)
            sync()
            times[label].append((time.perf_counter() - t0) / per_call.get(label, 1))
    med = {k: statistics.median(v) for k, v in times.items()}
    imgs = {**seen, "pipeline only (3x batch)": 3 * b}
    print(f"device: {name}; WRN-40-2, ID batch {b}, amp={args.amp and dev.type == 'cuda'}, "
          f"channels_last={args.channels_last}; median of {args.repeats}, interleaved")
    print(f"{'step':<26} {'ms/step':>9} {'images/s':>10} {'time / energy':>14}")
    for label in fns:
        rel = med[label] / med["energy"]
        print(f"{label:<26} {1e3 * med[label]:>9.1f} {imgs[label] / med[label]:>10.0f} {rel:>14.2f}")
    ratio = (imgs["pipeline only (3x batch)"] / med["pipeline only (3x batch)"]) / (seen["greg"] / med["greg"])
    print(f"pipeline images/s over greg step images/s: {ratio:.1f}x (target >= 5 on a GPU)")


if __name__ == "__main__":
    main()
