"""Analytic predictions (float64 numpy; no Monte Carlo inside).

Discrete time (exact for linear regression with ``iid``/``replacement`` sampling and for
noisy quadratics): :func:`discrete_moments`, :func:`discrete_stationary_cov`,
:func:`discrete_lag_cov`, :func:`discrete_displacement`, :func:`discrete_local_displacement`,
:func:`stability`, :func:`additive_mode_stationary`.

Random reshuffling (theory.md §9): :func:`discrete_stationary_cov` and
:func:`discrete_moments` with ``sampling="reshuffle"``, and :func:`reshuffle_stationary`
(pooled and per-phase mean and covariance): the exact used-set recursion for small N, the
cyclostationary Stein recursion for realistic N.

Continuous time (the Langevin / SME limits, theory.md §2–§6):
:func:`continuous_stationary_cov`, :func:`continuous_moments`, :func:`stationary_lag_cov`,
:func:`drift_matrix`, :func:`diffusion_matrix`, :func:`modes`, :func:`kat_decomposition`,
:func:`modified_loss`, :func:`probability_current`, :func:`angular_momentum`,
:func:`global_displacement`, :func:`local_displacement`,
:func:`stationary_local_displacement`; and their validation against the discrete theory,
:func:`continuous_error`.
"""

from . import mlnoise, reshuffle
from .approximation import ApproximationReport, continuous_error, fit_order
from .continuous import (
    KAT,
    AngularMomentum,
    Modes,
    ModifiedLoss,
    ProbabilityCurrent,
    angular_momentum,
    continuous_moments,
    continuous_stationary_cov,
    diffusion_matrix,
    drift_matrix,
    global_displacement,
    kat_decomposition,
    local_displacement,
    modes,
    modified_loss,
    probability_current,
    stationary_lag_cov,
    stationary_local_displacement,
)
from .discrete import (
    DiscreteModel,
    Moments,
    UnstableError,
    additive_mode_stationary,
    discrete_displacement,
    discrete_lag_cov,
    discrete_local_displacement,
    discrete_moments,
    discrete_stationary_cov,
    stability,
)
from .reshuffle import (
    ReshuffleMoments,
    ReshuffleStationary,
    reshuffle_moments,
    reshuffle_stationary,
)

__all__ = [
    "KAT",
    "AngularMomentum",
    "ApproximationReport",
    "DiscreteModel",
    "Modes",
    "ModifiedLoss",
    "Moments",
    "ProbabilityCurrent",
    "ReshuffleMoments",
    "ReshuffleStationary",
    "UnstableError",
    "additive_mode_stationary",
    "angular_momentum",
    "continuous_error",
    "continuous_moments",
    "continuous_stationary_cov",
    "diffusion_matrix",
    "discrete_displacement",
    "discrete_lag_cov",
    "discrete_local_displacement",
    "discrete_moments",
    "discrete_stationary_cov",
    "drift_matrix",
    "fit_order",
    "global_displacement",
    "kat_decomposition",
    "local_displacement",
    "mlnoise",
    "modes",
    "modified_loss",
    "probability_current",
    "reshuffle",
    "reshuffle_moments",
    "reshuffle_stationary",
    "stability",
    "stationary_lag_cov",
    "stationary_local_displacement",
]
