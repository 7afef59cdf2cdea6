"""Homework 5's study: GReg against the energy loss on the toy plane, with λ∇ and the margins chosen on a
validation OOD set (the protocol of :mod:`gregnb.calibration`, which chapter 04 follows on digits).

* :func:`toy_validation_ood`: validation outliers for the 2-D toy benchmarks, from generators no test set and no
  pool uses (a square frame near the box's edge, the gaps between the blobs, the centre of the plane);
* :func:`run_study`: for every seed a cross-entropy model proposes the margins (:func:`gregnb.losses.propose_margins`),
  then the energy loss and GReg at each weight are trained from scratch at each margin option, all through the
  model cache (:func:`gregnb.cache.cached_fit_many`: a rerun loads instead of training);
* :class:`Study`: the runs, their validation table and, when asked, their test FPR95 seed by seed.

The test numbers are computed only when :meth:`Study.test_fpr95` is called, so a notebook can show the validation
table first and the test sets only after the choice.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch

from ..cache import cached_fit_many
from ..calibration import evaluate_models_on
from ..data.base import Benchmark
from ..data.toy2d import BOX, MIN_DIST
from ..evaluate import evaluate
from ..experiments import default_model, train_classifiers
from ..losses import propose_margins
from ..presets import SCRATCH_RECIPES
from ..train import TrainConfig

__all__ = ["toy_validation_ood", "run_study", "Study", "setting_name"]


def toy_validation_ood(data: Benchmark, seed: int = 0, n: int = 600) -> dict[str, torch.Tensor]:
    """Three validation OOD sets for a 2-D toy benchmark, ``n // 3`` points each, every point at least
    :data:`gregnb.data.toy2d.MIN_DIST` from the ID training points (as the test sets are):

    * ``frame``: uniform on the square band ``4.5 <= max(|x|, |y|) <= 5.5`` near the pool's box edge (both halves);
    * ``gaps``: between the three blobs (angles 30°, 150°, 270° ± 15°, radius 1.6 to 2.4);
    * ``centre``: a disc of radius 0.8 around the origin.

    None of the test sets (uniform, ring, near, far) nor the pool is drawn by these generators. Deterministic given
    ``seed`` (a stream of its own)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 3:
        raise ValueError(f"n must be a whole number >= 3, got {n!r}")
    if data.input_shape != (2,):
        raise ValueError(f"toy_validation_ood is for the 2-D toy benchmarks, got inputs of shape {data.input_shape}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 50_551]))
    train = data.train_x.numpy().astype(np.float64)
    m = int(n) // 3

    def frame(k):
        p = rng.uniform(-5.5, 5.5, size=(k, 2))
        return p[np.abs(p).max(1) >= 4.5]

    def gaps(k):
        a = np.deg2rad(rng.choice([30.0, 150.0, 270.0], k) + rng.uniform(-15.0, 15.0, k))
        r = rng.uniform(1.6, 2.4, k)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)

    def centre(k):
        a, r = rng.uniform(0, 2 * np.pi, k), 0.8 * np.sqrt(rng.uniform(0, 1, k))
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)

    out = {}
    for name, draw in (("frame", frame), ("gaps", gaps), ("centre", centre)):
        pts = np.empty((0, 2))
        while len(pts) < m:  # rejection keeps validation points off the ID data, as for the test sets
            p = draw(4 * m)
            far = ((p[:, None, :] - train[None]) ** 2).sum(-1).min(1) >= MIN_DIST ** 2
            pts = np.concatenate([pts, p[far & (np.abs(p).max(1) <= BOX)]])
        out[name] = torch.as_tensor(pts[:m], dtype=torch.float32)
    return out


def setting_name(lambda_grad: float, shift: tuple[float, float]) -> str:
    """The row label of a study setting: ``"GReg λ∇=0.3, margins +0/+0"`` or ``"energy loss, margins -1/+1"``."""
    margins = f"margins {shift[0]:+g}/{shift[1]:+g}"
    return f"energy loss, {margins}" if lambda_grad == 0 else f"GReg λ∇={lambda_grad:g}, {margins}"


@dataclass
class Study:
    """The runs of :func:`run_study`.

    ``models[(setting, seed)]`` is a trained model; ``settings[setting]`` holds its ``lambda_grad`` and ``shift``;
    ``margins[seed]`` the proposed ``(m_in, m_out)`` of that seed (before the shift). ``greg_settings`` and
    ``energy_settings`` list the candidates from the weakest setting up (λ∇ ascending, then the margin options
    in the order given), the order in which ties go to the earlier one.
    """

    data: Benchmark
    val_ood: dict[str, torch.Tensor]
    seeds: list[int]
    margins: dict[int, tuple[float, float]]
    settings: dict[str, dict]
    models: dict[tuple[str, int], torch.nn.Module]
    _val: object = field(default=None, repr=False)

    @property
    def greg_settings(self) -> list[str]:
        return [k for k, v in self.settings.items() if v["lambda_grad"] > 0]

    @property
    def energy_settings(self) -> list[str]:
        return [k for k, v in self.settings.items() if v["lambda_grad"] == 0]

    def val_table(self):
        """One row per (setting, seed): ``setting``, ``seed``, ``fpr95`` = the run's FPR95 averaged over the
        validation sets (a fraction; the ID threshold from the ID test set, as :mod:`gregnb.calibration` does)."""
        if self._val is None:
            df = evaluate_models_on(self.models, self.data, self.val_ood)
            df = df[df["ood"] == "mean"].rename(columns={"method": "setting"})
            self._val = df[["setting", "seed", "fpr95"]].reset_index(drop=True)
        return self._val.copy()

    def val_summary(self):
        """The validation table as mean ± std over seeds, in %, one row per setting (the candidates' order)."""
        import pandas as pd

        g = self.val_table().groupby("setting")["fpr95"]
        stats = pd.DataFrame({"mean": g.mean(), "std": g.std()}).reindex(list(self.settings)) * 100
        return stats.rename(columns={"mean": "validation FPR95 (%), mean", "std": "std over seeds"}).round(1)

    def test_fpr95(self, setting: str) -> np.ndarray:
        """FPR95 of ``setting`` on the test sets, averaged over the sets, one value per seed (in ``seeds`` order)."""
        if setting not in self.settings:
            raise ValueError(f"no setting {setting!r} in this study; it has {list(self.settings)}")
        return np.array([evaluate(self.models[(setting, s)], self.data)["mean"]["fpr95"] for s in self.seeds])


def _check_grid(lambdas, shifts) -> tuple[list[float], list[tuple[float, float]]]:
    def real(v, what):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{what} must be a finite number, got {v!r}")
        return float(v)

    lams = sorted({real(v, "each weight in lambdas") for v in lambdas})
    if not lams or lams[0] <= 0:
        raise ValueError(f"lambdas must list positive weights (the energy loss, λ∇ = 0, is added for you), got {lambdas}")
    out = []
    for s in shifts:
        if not isinstance(s, (tuple, list)) or len(s) != 2:
            raise ValueError(f"each margin option must be a pair (Δm_in, Δm_out), got {s!r}")
        pair = (real(s[0], "Δm_in"), real(s[1], "Δm_out"))
        if pair not in out:
            out.append(pair)
    if not out:
        raise ValueError("shifts must list at least one margin option, e.g. [(0, 0)]")
    return lams, out


def run_study(data: Benchmark, lambdas, shifts, seeds, val_ood: dict[str, torch.Tensor], *,
              epochs: int | None = None) -> Study:
    """Train the study's grid and return a :class:`Study`.

    For every seed: a cross-entropy model (the chapters' recipe, cached) proposes ``(m_in, m_out)``; then, for every
    margin option ``(Δm_in, Δm_out)`` in ``shifts``, the energy loss and GReg at every weight in ``lambdas`` are
    trained from scratch (:data:`gregnb.presets.SCRATCH_RECIPES`, ``epochs`` overriding its epochs, also those of the
    cross-entropy models) with margins ``(m_in + Δm_in, m_out + Δm_out)``. All runs go through the model cache.
    """
    lams, shifts = _check_grid(lambdas, shifts)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must list distinct seeds, got {seeds}")
    kind = "toy" if data.input_shape == (2,) else "digits"
    over = {} if epochs is None else {"epochs": int(epochs)}
    said = io.StringIO()
    with torch.random.fork_rng(), contextlib.redirect_stdout(said):  # one line, not one "loaded ..." per model
        bases = [m for m, _ in train_classifiers(data, seeds, **over)]
        margins = {s: propose_margins(b, data.train_x, data.aux_x) for s, b in zip(seeds, bases)}
        settings = {setting_name(lam, sh): {"lambda_grad": lam, "shift": sh} for lam in [0.0, *lams] for sh in shifts}
        jobs = []
        for name, st in settings.items():
            for s in seeds:
                m_in, m_out = margins[s][0] + st["shift"][0], margins[s][1] + st["shift"][1]
                if not m_in < m_out:
                    raise ValueError(f"margin option {st['shift']} gives m_in = {m_in:.2f} >= m_out = {m_out:.2f} for "
                                     f"seed {s} (proposed {margins[s][0]:.2f}, {margins[s][1]:.2f}); keep m_in < m_out")
                recipe = dict(SCRATCH_RECIPES[kind], progress=False, seed=s, m_in=m_in, m_out=m_out, **over)
                method = "energy" if st["lambda_grad"] == 0 else "greg"
                if method == "greg":
                    recipe["lambda_grad"] = st["lambda_grad"]
                jobs.append(((name, s), default_model(data, s), {**recipe, "method": method}))
        keys = [_cache_key(cfg) for _, _, cfg in jobs]
        cached_fit_many([m for _, m, _ in jobs], data, [cfg for _, _, cfg in jobs], keys,
                        desc=f"{len(settings)} settings x {len(seeds)} seeds")
    loaded, runs = said.getvalue().count("loaded "), len(jobs) + len(seeds)
    print(f"{len(settings)} settings x {len(seeds)} seeds (and a cross-entropy model per seed): {runs - loaded} runs "
          f"trained, {loaded} loaded from the model cache")
    return Study(data, dict(val_ood), seeds, margins, settings, {k: m for k, m, _ in jobs})


def _cache_key(cfg: dict) -> dict:
    """The cache key's settings, spelled as :mod:`gregnb.experiments` spells them (every setting, defaults filled in),
    so a run the chapters made with the same recipe loads from the same file."""
    full = dataclasses.asdict(TrainConfig(**cfg))
    return {**{k: v for k, v in full.items() if k != "progress"}, "method": cfg["method"]}
