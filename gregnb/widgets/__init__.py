"""Interactive explorers built on :mod:`gregnb.viz`.

Each explorer is a function that returns a :class:`FigureExplorer` (an ``ipywidgets.VBox``):
controls on top, the figure as a PNG ``ipywidgets.Image`` below, a line of numbers, and an
``Output`` that shows errors instead of swallowing them. Tests drive an explorer by setting
``explorer.controls[name].value`` and reading ``explorer.image.value`` / ``explorer.metrics``.

Heavy work (model outputs on a grid, on the test sets) is done once when the explorer is
built; a control change only recomputes cheap functions of those cached outputs.
"""
from ..sketchpad import PointExplorer, Sketchpad
from .base import FigureExplorer
from .greg import lambda_explorer, margin_explorer, taylor_explorer
from .sampling import sampling_explorer
from .scores import dataset_browser, temperature_explorer

__all__ = ["FigureExplorer", "temperature_explorer", "dataset_browser", "margin_explorer", "taylor_explorer",
           "lambda_explorer", "sampling_explorer", "Sketchpad", "PointExplorer"]
