"""Problems: the protocol every dynamics steps (:mod:`.base`) and its implementations.

* :class:`Problem`, :class:`FiniteSum` — the protocol; subclass them for your own loss.
* :class:`LinearRegression`, :class:`Quadratic` — exact theory (theory.md §3, §5).
* :class:`limitdyn.nn.FlaxProblem` — a flax network and its data, on flat parameters.
* :class:`limitdyn.mlnoise.CosineLandscape`, :class:`limitdyn.mlnoise.GainRegression` —
  analytic landscapes for noise of machine-learning type (theory.md §8).
"""

from .base import FiniteSum, HostArray, Problem, UnsupportedError, has_capability
from .linear import (
    LinearRegression,
    Quadratic,
    _as_key,
    hessian64,
    spectrum_values,
)

__all__ = [
    "FiniteSum",
    "HostArray",
    "LinearRegression",
    "Problem",
    "Quadratic",
    "UnsupportedError",
    "_as_key",
    "has_capability",
    "hessian64",
    "spectrum_values",
]
