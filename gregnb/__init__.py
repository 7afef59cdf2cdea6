"""gregnb: helpers for an interactive course on OOD detection with GReg / GReg+.

Sign conventions (the commonest mistake in this field):

* ``gregnb.scores.energy`` is LOW for in-distribution (ID) inputs, as in the paper.
* ``msp`` and ``max_logit`` are HIGH for ID inputs.
* every function in ``gregnb.metrics`` takes scores where HIGH means ID, with ID as
  the positive class, so pass ``-energy``.
"""
__version__ = "0.1.0"

# Before torch computes anything: the same CPU kernels on every x86-64 machine (see gregnb.kernels).
from .kernels import pin_portable_kernels as _pin

_pin()
del _pin
