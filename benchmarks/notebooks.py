"""Time every chapter in FAST and normal mode, and the explorers' redraws; print a table.

    .venv/bin/python benchmarks/notebooks.py            # both modes (normal mode takes minutes)
    .venv/bin/python benchmarks/notebooks.py --fast-only
    .venv/bin/python benchmarks/notebooks.py --widgets-only
    .venv/bin/python benchmarks/notebooks.py --sketchpad-only   # stroke -> readout only

Absolute times depend on the machine; the targets are: each chapter <= 60 s in FAST mode and
<= 5 min in normal mode on a laptop CPU; a widget redraw (release to new PNG) <= 150 ms median; the
sketchpad's stroke -> readout (mouse up to the new readout PNG, three digits CNNs) <= 150 ms median on a
2-core CPU, and the toy point explorer's click -> readout (before its radii) likewise.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def time_notebook(path: Path, fast: bool) -> float:
    import nbformat

    from gregnb.runner import execute_notebook

    return execute_notebook(nbformat.read(path, as_version=4), path.parent, fast=fast)


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
    out.update(time_sketchpad(repeats))
    return out


def time_sketchpad(repeats: int = 15) -> dict[str, float]:
    """Stroke -> readout of the sketchpad with three digits CNNs of the chapters' architecture (the weights do
    not change the cost: fresh ones keep the benchmark free of training), and click -> readout of the toy
    point explorer with two MLPs. Each stroke: mouse down, 10 moves, mouse up; timed from the mouse up to the
    new readout (models judged, picture painted, PNG encoded). Radii are not part of it (a button computes them)."""
    import matplotlib

    matplotlib.use("Agg")
    from gregnb.data.digits import load_benchmark
    from gregnb.data.toy2d import load_toy
    from gregnb.experiments import default_model
    from gregnb.sketchpad import PointExplorer, Sketchpad

    digits = load_benchmark(0)
    pad = Sketchpad({name: default_model(digits, seed) for seed, name in enumerate(("CE", "energy", "GReg"))},
                    digits, start="blank")
    c, stroke_ms = pad.cell_px, []
    for k in range(repeats):
        y = (4 + (k * 5) % 24) * c
        pad.pen_down(3 * c, y)
        for j in range(10):
            pad.pen_move((3 + 2.6 * j) * c, y + (j % 3) * c)
        t0 = time.perf_counter()
        pad.pen_up(29 * c, y)
        stroke_ms.append(1000 * (time.perf_counter() - t0))
        if k % 5 == 4:
            pad.buttons["clear"].click()
    toy = load_toy("blobs")
    ex = PointExplorer({name: default_model(toy, seed) for seed, name in enumerate(("energy", "GReg"))}, toy,
                       radii=False)
    ex.timings_ms.clear()
    for k in range(repeats):
        px, py, _, _ = ex.to_pixel(k % 2, (-4 + 8 * k / repeats, 3 - 6 * k / repeats))
        ex.click(px, py)
    return {"sketchpad stroke -> readout (3 digits CNNs)": statistics.median(stroke_ms),
            "toy point explorer click -> readout (2 MLPs)": statistics.median(ex.timings_ms)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast-only", action="store_true")
    ap.add_argument("--widgets-only", action="store_true")
    ap.add_argument("--sketchpad-only", action="store_true", help="only the sketchpad's stroke -> readout")
    args = ap.parse_args()
    if args.sketchpad_only:
        for name, ms in time_sketchpad().items():
            print(f"{name:<45} {ms:>8.0f} ms (median of 15)")
        return 0
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
