"""Draw an input, see how every detector judges it: :class:`Sketchpad` (digits), :class:`PointExplorer` (2-D toy).

Energy ``E(x) = -logsumexp(logits)``, LOW = ID; each model's ``γ`` accepts 95% (``tpr``) of its ID test energies
(``E <= γ`` → ID); gradients are ``∂E/∂x`` (score units per input unit); radii are ℓ2 in input units (8x8 pixels
in [0, 1], or the plane). Pictures are painted with NumPy/Pillow on a matplotlib ``Figure`` (never pyplot) rendered
once, so an update costs one forward+backward pass per model and a small PNG.
"""
from .canvas import INK_SIZE, drawing_to_input
from .digits import Sketchpad
from .toy import PointExplorer

__all__ = ["drawing_to_input", "Sketchpad", "PointExplorer", "INK_SIZE"]
