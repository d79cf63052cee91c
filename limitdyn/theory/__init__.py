"""Analytic predictions (float64 numpy; no Monte Carlo inside).

Discrete time (exact for linear regression with ``iid``/``replacement`` sampling and for
noisy quadratics): :func:`discrete_moments`, :func:`discrete_stationary_cov`,
:func:`stability`, :func:`additive_mode_stationary`.
"""

from .discrete import (
    DiscreteModel,
    Moments,
    UnstableError,
    additive_mode_stationary,
    discrete_moments,
    discrete_stationary_cov,
    stability,
)

__all__ = [
    "DiscreteModel",
    "Moments",
    "UnstableError",
    "additive_mode_stationary",
    "discrete_moments",
    "discrete_stationary_cov",
    "stability",
]
