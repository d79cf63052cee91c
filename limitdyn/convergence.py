"""Weak-order measurement of the SDE integrators on a quadratic, without Monte Carlo.

For a quadratic loss with constant noise every integrator in :mod:`limitdyn.sde` is an
affine map of the state and the step's standard normals, x' = Φ x + c + Ψ z. Φ, c and Ψ
are read off the *library's own step function* by automatic differentiation (exact, since
the map is affine), so the first two moments of the numerical scheme follow exactly:
m' = Φ m + c, P' = Φ P Φᵀ + Ψ Ψᵀ. Their distance from the exact continuous moments
(Van Loan, theory.md §3) at a fixed time, as the step h shrinks, gives the weak order
free of sampling error: log error against log h has slope 1 for Euler–Maruyama and 2 for
BAOAB.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .hyper import Hyper
from .problems import LinearRegression, Quadratic, hessian64
from .sde import MODELS, SDESpec, _van_loan, generator, sde_params
from .sgd import State


@dataclasses.dataclass(frozen=True)
class WeakOrder:
    """Errors of an integrator's moments at time ``horizon`` (SGD steps) against step size."""

    solver: str
    model: str
    dts: np.ndarray           # (n,) integrator steps (continuous time)
    mean_error: np.ndarray    # (n,) ‖m_h − m‖ / ‖x₀‖ (relative to the start's offset)
    cov_error: np.ndarray     # (n,) ‖P_h − P‖_F / ‖P‖_F
    slope: float              # fitted log-log slope of cov_error (the weak order)
    slope_se: float           # its least-squares standard error

    def __str__(self) -> str:
        rows = [f"weak order of {self.solver} ({self.model}): slope {self.slope:.3f} "
                f"± {self.slope_se:.3f}", "      dt    mean err     cov err"]
        rows += [f"{h:8.4g}  {m:10.3e}  {c:10.3e}"
                 for h, m, c in zip(self.dts, self.mean_error, self.cov_error, strict=True)]
        return "\n".join(rows)


def _affine_map(spec: SDESpec, params: dict[str, Any], d: int):
    """Φ (n, n), c (n,), Ψ (n, r) of one integrator step on x = (θ, v) (or θ for the SME)."""
    n = 2 * d if spec.model == "langevin" else d

    def step(x, z):
        state = State(x[:d], x[d:] if n == 2 * d else jnp.zeros(d, x.dtype))
        out = spec.substep(state, z, params)
        return jnp.concatenate([out.theta, out.velocity]) if n == 2 * d else out.theta

    x0 = jnp.zeros(n)
    z0 = jnp.zeros(spec.n_normals)
    Phi = jax.jacfwd(step, argnums=0)(x0, z0)
    Psi = jax.jacfwd(step, argnums=1)(x0, z0)
    return np.asarray(Phi), np.asarray(step(x0, z0)), np.asarray(Psi)


def _fit_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    X = np.stack([np.ones_like(x), np.log(x)], axis=1)
    coef, *_ = np.linalg.lstsq(X, np.log(y), rcond=None)
    resid = np.log(y) - X @ coef
    dof = max(len(x) - 2, 1)
    cov = np.linalg.inv(X.T @ X) * (resid @ resid) / dof
    return float(coef[1]), float(np.sqrt(cov[1, 1]))


def weak_order(prob: LinearRegression | Quadratic, hp: Hyper, solver: str, *,
               substeps: Any = (1, 2, 4, 8, 16), horizon: int = 20, theta0: Any = None,
               noise: Any = "frozen", model: str = "langevin", sampling: str = "iid",
               sigma2: float | None = None) -> WeakOrder:
    """Exact weak errors of ``solver`` at step sizes h = η/m, m in ``substeps``.

    Starts from ``theta0`` (default μ + the top Hessian eigenvector, v = 0) and compares the
    scheme's mean and covariance after ``horizon`` SGD steps with the exact continuous ones.
    Only constant noise models (the scheme must be affine).
    """
    if solver not in ("em", "baoab", "exact"):
        raise ValueError(f"solver must be one of ('em', 'baoab', 'exact') for weak_order, got "
                         f"{solver!r}")
    model = _checks.choice("model", model, MODELS)
    if solver == "baoab" and model == "sme":
        raise ValueError("solver 'baoab' integrates the langevin model only")
    if callable(noise) or (isinstance(noise, str) and noise == "exact"
                           and isinstance(prob, LinearRegression)):
        raise ValueError("weak_order needs a constant noise model ('paper', 'frozen', "
                         "'isotropic' or a (d, d) array)")
    horizon = _checks.integer("horizon", horizon, low=1)
    subs = [_checks.integer("substeps", m, low=1) for m in substeps]
    d = prob.dim
    with jax.enable_x64(True):
        mu = np.asarray(prob.minimiser(hp.weight_decay), np.float64)
    if theta0 is None:
        theta0 = mu + np.linalg.eigh(hessian64(prob))[1][:, -1]
    theta0 = _checks.real_array("theta0", theta0, shape=(d,))
    with jax.enable_x64(True):
        T = horizon * hp.lr
        # Exact moments at T from the same A, 2D the exact stepper uses (one Van Loan call).
        A, two_D = generator(prob, hp, model, noise, sampling=sampling, sigma2=sigma2)
        transition, Q = _van_loan(A, two_D, T)
        x0 = np.concatenate([theta0 - mu, np.zeros(d)]) if model == "langevin" else theta0 - mu
        m_exact, P_exact = transition @ x0, Q
        mean_err, cov_err, dts = [], [], []
        for m in subs:
            dt = hp.lr / m
            noise_spec, p = sde_params(prob, hp, model, solver, noise, sampling=sampling,
                                       sigma2=sigma2, dt=dt, dtype=np.float64)
            spec = SDESpec(model, solver, noise_spec, 1, 1)
            Phi, c, Psi = _affine_map(spec, p, d)
            shift = np.concatenate([mu, np.zeros(d)]) if model == "langevin" else mu
            # Work in x − (μ, 0): the affine offset cancels at the fixed point.
            c = c - (shift - Phi @ shift)
            mean, P = x0.copy(), np.zeros((len(x0), len(x0)))
            for _ in range(horizon * m):
                mean, P = Phi @ mean + c, Phi @ P @ Phi.T + Psi @ Psi.T
            mean_err.append(np.linalg.norm(mean - m_exact) / np.linalg.norm(x0))
            cov_err.append(np.linalg.norm(P - P_exact) / np.linalg.norm(P_exact))
            dts.append(dt)
    dts, mean_err, cov_err = map(np.asarray, (dts, mean_err, cov_err))
    if solver == "exact":
        slope, se = float("nan"), float("nan")
    else:
        slope, se = _fit_slope(dts, cov_err)
    return WeakOrder(solver, model, dts, mean_err, cov_err, slope, se)

