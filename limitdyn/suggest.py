"""How long to run: learning rate, burn-in and horizon from the problem's own time scales.

For a problem with a known Hessian, each mode of H + λI (curvature h') relaxes under the
heavy-ball mean map M_i = [[1 − ηh', ηβ], [−h', β]] (theory.md §5) at the rate of its
spectral radius ρ_i: the mean decays like ρ_iᵏ, the covariance like ρ_i²ᵏ. The relaxation
time of the mean is τ_i = −1/log ρ_i steps, of the covariance τ_i/2. :func:`suggest_run`
picks

* the learning rate, when not given, as ``lr_scale / h_max`` (``lr_scale = 0.1``: a tenth of
  the curvature scale, well inside the stability region 2(1 + β)/h_max);
* the burn-in as ``burn_in_factor`` × τ_max/2 covariance relaxation times (default 12: the
  start's imprint on the covariance is below e⁻¹² ≈ 6·10⁻⁶ of itself);
* the window after it as ``window_factor`` × τ_max (default 20 mean relaxation times, so
  every trajectory contributes ≈ 20 nearly independent stretches);

within a budget of trajectory-steps. When the budget cannot hold the burn-in, the plan says
so (``stationary=False``): compare the window average with the exact theory averaged over
the same window from the same start, not with the stationary law.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from . import _checks
from .hyper import Hyper
from .problems import has_capability, hessian64


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """A run length chosen from the relaxation times (steps).

    ``relaxation_steps``: τ_i of the mean of every mode of H + λI (ascending curvature, so the
    slowest first); ``tau_max``: the largest; ``stationary``: the burn-in reaches
    ``burn_in_factor`` covariance relaxation times within the budget.
    """

    hp: Hyper
    n_steps: int
    burn_in: int
    relaxation_steps: np.ndarray
    curvatures: np.ndarray
    tau_max: float
    stationary: bool
    budget_steps: int
    lr_chosen: bool

    def describe(self) -> str:
        tau = self.relaxation_steps
        return (f"relaxation times of the mean (steps): slowest {tau[0]:.4g}, fastest "
                f"{tau[-1]:.4g} (covariance: half of these); burn-in {self.burn_in}, "
                f"window {self.n_steps - self.burn_in}, total {self.n_steps} steps"
                + ("" if self.stationary else
                   f" — the budget of {self.budget_steps} steps cannot reach stationarity"))


def relaxation_times(curvatures: Any, lr: float, momentum: float) -> np.ndarray:
    """τ_i = −1/log ρ(M_i) of the mean of each mode (∞ for a flat mode)."""
    h = np.asarray(curvatures, np.float64)
    a = 1 - lr * h
    # eigenvalues of [[1 − ηh, ηβ], [−h, β]]: λ² − (a + β)λ + β = 0
    tr, det = a + momentum, momentum * np.ones_like(h)
    disc = tr * tr - 4 * det
    sq = np.sqrt(np.abs(disc))
    rho = np.where(disc >= 0, np.maximum(np.abs(tr + sq), np.abs(tr - sq)) / 2, np.sqrt(det))
    with np.errstate(divide="ignore"):
        return np.where(rho < 1, -1.0 / np.log(np.maximum(rho, 1e-300)), np.inf)


def suggest_run(prob: Any, hp: Hyper | None = None, *, momentum: float = 0.9,
                batch_size: int | None = 32, weight_decay: float = 0.0, lr_scale: float = 0.1,
                min_steps: int = 1000, max_steps: int = 100_000, burn_in_factor: float = 12.0,
                window_factor: float = 20.0) -> RunPlan:
    """A learning rate (when ``hp`` is None) and a run length for ``prob`` (module docstring).

    Args:
        prob: a problem with a Hessian (``LinearRegression``, ``Quadratic``, or yours).
        hp: hyperparameters to keep; None: η = ``lr_scale``/h_max with ``momentum``,
            ``batch_size``, ``weight_decay``.
        momentum: β when ``hp`` is None.
        batch_size: S when ``hp`` is None (clipped to N).
        weight_decay: λ when ``hp`` is None.
        lr_scale: η·h_max when the learning rate is chosen.
        min_steps: never fewer steps than this.
        max_steps: the budget (steps per trajectory).
        burn_in_factor: covariance relaxation times (τ_max/2) in the burn-in.
        window_factor: mean relaxation times τ_max in the window.
    """
    if not has_capability(prob, "hessian"):
        raise ValueError(f"suggest_run needs a problem with a Hessian; {type(prob).__name__} "
                         "has none")
    min_steps = _checks.integer("min_steps", min_steps, low=2)
    max_steps = _checks.integer("max_steps", max_steps, low=min_steps)
    burn_in_factor = _checks.finite_float("burn_in_factor", burn_in_factor, low=0.0,
                                          low_open=True)
    window_factor = _checks.finite_float("window_factor", window_factor, low=0.0,
                                         low_open=True)
    H = hessian64(prob)
    chosen = hp is None
    if chosen:
        lr_scale = _checks.finite_float("lr_scale", lr_scale, low=0.0, low_open=True)
        h_top = float(np.linalg.eigvalsh(H)[-1]) + weight_decay
        if h_top <= 0:
            raise ValueError("the Hessian is zero: no curvature scale to set the lr from")
        n = prob.n_examples
        S = None if batch_size is None or n is None else min(int(batch_size), n)
        hp = Hyper(lr=lr_scale / h_top, momentum=momentum, weight_decay=weight_decay,
                   batch_size=S)
    elif not isinstance(hp, Hyper):
        raise TypeError(f"hp must be a limitdyn.Hyper or None, got {type(hp).__name__}")
    curv = np.linalg.eigvalsh(H + hp.weight_decay * np.eye(H.shape[0]))
    tau = relaxation_times(curv, hp.lr, hp.momentum)
    tau_max = float(np.max(tau))
    if not math.isfinite(tau_max):
        raise ValueError("a mode does not relax (flat direction with λ = 0, or outside the "
                         "stability region): give weight_decay > 0 or a smaller lr")
    burn_in = math.ceil(burn_in_factor * tau_max / 2)
    window = math.ceil(window_factor * tau_max)
    n_steps = max(min_steps, burn_in + window)
    stationary = n_steps <= max_steps
    if not stationary:
        n_steps = max_steps
        burn_in = min(burn_in, n_steps // 2)
    elif burn_in + window < n_steps:         # min_steps dominates: half of it is burn-in
        burn_in = max(burn_in, n_steps // 2)
    order = np.argsort(curv)
    return RunPlan(hp=hp, n_steps=int(n_steps), burn_in=int(burn_in),
                   relaxation_steps=tau[order], curvatures=curv[order], tau_max=tau_max,
                   stationary=bool(stationary), budget_steps=int(max_steps), lr_chosen=chosen)
