"""Sound certificates for the energy score over ℓ2 balls (chapter 07).

A *sound* radius ``r`` for a sample ``x`` guarantees: every ``x'`` with ``||x' - x|| <= r`` gets the
same ID/OOD decision as ``x`` (ID when ``E <= threshold``, LOW = ID). Four ways to get one, loosest first:

* ``"global"``: ``|threshold - E(x)| / L`` with ``L`` the product of the layers' spectral norms;
* ``"ibp"``: interval bound propagation (Gowal et al. 2018), exact ℓ2 first layer, BatchNorm folded;
* ``"crown"``: linear relaxations propagated backwards (Zhang et al. 2018), with the energy bounded
  through the convexity of log-sum-exp (:mod:`gregnb.certify.bounds`);
* ``"grid"`` (2-D inputs): a fine grid of certified cells over the disk; near-exact.

Every sound radius lies below the true robust radius, which lies below any radius at which an attack
flips the decision (:func:`gregnb.lipschitz.attack_radius`). Modules: :mod:`.graph` (the network as
simple operations), :mod:`.propagate` (IBP, forward linear bounds, CROWN), :mod:`.bounds` (logit and
energy bounds), :mod:`.grid` (the 2-D certifier), :mod:`.radius` (the sound radius).
"""
from .bounds import BOUND_METHODS, energy_bounds, logit_bounds
from .graph import CERTIFY_LAYERS, build_graph, run_graph
from .grid import grid_radius
from .radius import sound_radius

__all__ = ["energy_bounds", "logit_bounds", "sound_radius", "grid_radius", "build_graph", "run_graph", "BOUND_METHODS",
           "CERTIFY_LAYERS"]
