"""Datasets. The default path of every chapter is offline:

* :mod:`gregnb.data.toy2d` - 2-D toy sets generated on the fly.
* :mod:`gregnb.data.digits` - the offline image benchmark (scikit-learn's 8x8 digits as ID).

Both return a :class:`Benchmark`.
"""
from .base import Benchmark

__all__ = ["Benchmark"]
