"""Lipschitz continuity of the score and certified radii (certified radii: the GReg paper's radius bound, Sharifi et al. 2024).

Equation labels (E8), (E9) refer to docs/method.md.

Conventions: the score is the energy ``E`` (LOW = ID); the decision is ID when ``E <= threshold``.
Distances are Euclidean (ℓ2) in the space the model sees (for images: pixel space, [0, 1]).

* :func:`input_gradient_norm` - ``||grad_x E(x)||`` per sample: the first-order local slope, a lower
  bound on the local Lipschitz constant, exact inside one linear region of a piecewise-linear score.
* :func:`local_lipschitz` - a better lower bound of ``sup_{u in B_eps(x)} ||grad E(u)||`` found by
  projected gradient ascent or by sampling. It is an *estimate*: not a guarantee.
* :func:`global_lipschitz_bound` - a guaranteed upper bound for the whole input space: the product
  of the layers' spectral norms (LSE is 1-Lipschitz in ℓ2). Sound but loose.
* :func:`certified_radius` - (E8): ``min(eps, |threshold - E(x)| / L)``.
* :func:`score_attack`, :func:`attack_radius` - PGD in the ℓ2 ball that pushes the energy across the
  threshold, and the smallest radius at which it succeeds (an upper bound on the true radius).
"""
from .attacks import attack_radius, certified_fraction, score_attack
from .bound import SUPPORTED_LAYERS, certified_radius, global_lipschitz_bound
from .local import input_gradient_norm, local_lipschitz

__all__ = ["input_gradient_norm", "local_lipschitz", "global_lipschitz_bound", "certified_radius",
           "score_attack", "attack_radius", "certified_fraction", "SUPPORTED_LAYERS"]
