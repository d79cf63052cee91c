"""Stability pre-checks and divergence errors for the ensemble runners.

Before a run on a problem with a known Hessian (linear regression, noisy quadratic), the
hyperparameters are placed in the discrete stability region of theory.md §5 — the mean
map (spectral radius of M̄) and the second-moment map (the noise feedback) — and a
:class:`StabilityWarning` names the largest stable learning rate when ``lr`` is outside
the region or within 10% of its edge. After a run in which every trajectory diverged, a
:class:`DivergenceError` says so and quotes the same bound.
"""

from __future__ import annotations

import warnings
from typing import Any

from .hyper import Hyper
from .problems import LinearRegression, Quadratic

NEAR_EDGE = 0.9          # warn from lr > 0.9 · (largest stable lr)
MAX_DIM = 256            # above this the check (O(d³) per bisection step) is skipped


class StabilityWarning(UserWarning):
    """The hyperparameters are outside, or near the edge of, the discrete stability region."""


class DivergenceError(ValueError):
    """Every trajectory of an ensemble diverged."""


def assess(prob: Any, hp: Hyper, sampling: str) -> dict[str, Any] | None:
    """``theory.stability`` for problems where it is defined and affordable, else None."""
    from .theory import stability

    if not isinstance(prob, (LinearRegression, Quadratic)) or prob.dim > MAX_DIM:
        return None
    exact_sampling = "iid" if sampling == "reshuffle" else sampling
    try:
        out = stability(prob, hp, exact_sampling)
    except ValueError:          # singular H + λI: no unique stationary law to speak of
        return None
    out["sampling_used"] = exact_sampling
    return out


def _describe(info: dict[str, Any], hp: Hyper, sampling: str) -> str:
    note = (" (the iid bound; reshuffled batches have no exact theory)"
            if sampling == "reshuffle" else "")
    return (f"the largest stable lr at momentum {hp.momentum:g}, weight decay "
            f"{hp.weight_decay:g}, batch {hp.batch_size or 'N'} and sampling "
            f"{info['sampling_used']!r} is ≈ {info['max_lr']:.6g}{note} (mean map alone: "
            f"{info['max_lr_mean']:.6g})")


def precheck(prob: Any, hp: Hyper, sampling: str) -> dict[str, Any] | None:
    """Warn (:class:`StabilityWarning`) when ``hp.lr`` is outside or near the stable region."""
    info = assess(prob, hp, sampling)
    if info is None:
        return None
    if not info["stable"]:
        warnings.warn(StabilityWarning(
            f"lr={hp.lr:g} is outside the discrete stability region (mean-map radius "
            f"{info['mean_radius']:.4g}, noise-feedback radius {info['feedback_radius']:.4g}; "
            f"stable iff both < 1): expect the trajectories to diverge; "
            + _describe(info, hp, sampling)), stacklevel=3)
    elif hp.lr > NEAR_EDGE * info["max_lr"]:
        warnings.warn(StabilityWarning(
            f"lr={hp.lr:g} is within {100 * (1 - NEAR_EDGE):.0f}% of the edge of the discrete "
            f"stability region: relaxation is slow and fluctuations heavy-tailed; "
            + _describe(info, hp, sampling)), stacklevel=3)
    return info


def raise_if_all_diverged(n_alive_last: int, n_traj: int, n_steps: int, prob: Any, hp: Hyper,
                          sampling: str | None, what: str) -> None:
    """Raise :class:`DivergenceError` when no trajectory survived the run."""
    if n_alive_last > 0:
        return
    message = (f"{what}: all {n_traj} trajectories diverged within {n_steps} steps "
               f"(non-finite or beyond 1e-3·√(float max))")
    info = assess(prob, hp, sampling) if sampling is not None else None
    if info is not None:
        message += (f"; lr={hp.lr:g} is {'inside' if info['stable'] else 'outside'} the "
                    f"discrete stability region: " + _describe(info, hp, sampling))
    raise DivergenceError(message)
