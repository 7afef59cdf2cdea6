"""Time every chapter in FAST and normal mode, and the explorers' redraws; print a table.

    .venv/bin/python benchmarks/notebooks.py            # both modes (normal mode takes minutes)
    .venv/bin/python benchmarks/notebooks.py --fast-only
    .venv/bin/python benchmarks/notebooks.py --widgets-only

Absolute times depend on the machine; the targets are: each chapter <= 60 s in FAST mode and
<= 5 min in normal mode on a laptop CPU; a widget redraw (release to new PNG) <= 150 ms median.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def time_notebook(path: Path, fast: bool) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ["GREGNB_FAST"] = "1" if fast else "0"
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - t0


def time_widgets(repeats: int = 15) -> dict[str, float]:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from gregnb.data.digits import load_benchmark
    from gregnb.data.toy2d import load_toy
    from gregnb.experiments import train_classifier
    from gregnb.widgets import dataset_browser, temperature_explorer

    toy = load_toy("blobs")
    model, _ = train_classifier(toy, epochs=10)
    out = {}
    ex = temperature_explorer(model, toy.test_x, toy.ood["near"], resolution=120)
    ex.timings_ms.clear()
    for T in np.logspace(-2, 3, repeats):
        ex.controls["T"].value = float(T)
    out["temperature explorer (toy, 120x120 grid)"] = statistics.median(ex.timings_ms)
    br = dataset_browser(load_benchmark(0))
    br.timings_ms.clear()
    for p in range(repeats):
        br.controls["page"].value = p % 20
    out["dataset browser (digits)"] = statistics.median(br.timings_ms)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast-only", action="store_true")
    ap.add_argument("--widgets-only", action="store_true")
    args = ap.parse_args()
    print(f"{'what':<45} {'FAST s':>8} {'normal s':>9}")
    if not args.widgets_only:
        for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            fast_s = time_notebook(path, True)
            normal_s = float("nan") if args.fast_only else time_notebook(path, False)
            print(f"{path.name:<45} {fast_s:>8.1f} {normal_s:>9.1f}", flush=True)
    print(f"\n{'widget redraw (median of 15)':<45} {'ms':>8}")
    for name, ms in time_widgets().items():
        print(f"{name:<45} {ms:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
