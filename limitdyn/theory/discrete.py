"""Exact discrete-time moments of SGD with momentum on linear regression (theory.md §5).

With ``iid`` or ``replacement`` sampling the chain closes on its first two moments. In
x_k = (θ_k − μ, v_k)::

    M̄ = [[I − η(H + λI), ηβ I], [−(H + λI), β I]],   W = [ηI; I]
    x_{k+1} = M̄ x_k − W ξ_k,   Cov[ξ | θ] = κ Σ(θ)
    E Σ(θ) = Σ(E θ) + 𝒢(Cov θ),   𝒢(P) = (1/N) Σ_i x_i x_iᵀ (x_iᵀ P x_i) − H P H

so m_{k+1} = M̄ m_k and C_{k+1} = M̄ C_k M̄ᵀ + κ W [Σ(μ + m_θ) + 𝒢(C_θθ)] Wᵀ; the
stationary covariance solves the generalised Stein equation
C = M̄ C M̄ᵀ + κ W [Σ(μ) + 𝒢(C_θθ)] Wᵀ.

Everything here is float64 numpy. The Stein operator is inverted exactly in the
eigenbasis of H + λI, where M̄ is a direct sum of 2×2 blocks (one 4×4 solve per pair of
modes, no bilinear transformation, robust at critical damping); the multiplicative term
𝒢 is handled by GMRES on the θθ block, after checking that the second-moment map is
stable (spectral radius of the positive map P ↦ [Stein⁻¹(κ W 𝒢(P) Wᵀ)]_θθ below 1, the
regular-splitting criterion).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from .. import _checks, samplers
from ..hyper import Hyper
from ..problems import LinearRegression, Quadratic


class UnstableError(ValueError):
    """The hyperparameters lie outside the discrete stability region."""


@dataclasses.dataclass(frozen=True)
class Moments:
    """Predicted mean and covariance of (θ_k, v_k) at ``steps``."""

    steps: np.ndarray    # (T,)
    mean: np.ndarray     # (T, 2d)
    cov: np.ndarray      # (T, 2d, 2d)


class DiscreteModel:
    """The linear-Gaussian-closure data of one (problem, hyperparameters, sampling)."""

    def __init__(self, prob: LinearRegression | Quadratic, hp: Hyper, sampling: str = "iid"):
        if not isinstance(hp, Hyper):
            raise TypeError(f"hp must be a limitdyn.Hyper, got {type(hp).__name__}")
        self.eta, self.beta, self.lam = hp.lr, hp.momentum, hp.weight_decay
        if isinstance(prob, LinearRegression):
            if sampling == "reshuffle":
                raise ValueError("sampling='reshuffle' correlates the noise within an epoch; "
                                 "its theory is discrete_stationary_cov, discrete_moments and "
                                 "reshuffle_stationary (theory.md §9); this function covers "
                                 "'iid' and 'replacement'")
            sampling = _checks.choice("sampling", sampling, ("iid", "replacement"))
            X, y = prob.numpy()
            self.N, self.d = X.shape
            S = self.N if hp.batch_size is None else hp.batch_size
            if not 1 <= S <= self.N:
                raise ValueError(f"Hyper.batch_size must be in [1, N={self.N}], got {S}")
            self.batch_size = S
            self.kappa = samplers.finite_population_factor(sampling, self.N, S)
            self.X, self.y = X, y
            self.H = X.T @ X / self.N
            rhs = X.T @ y / self.N
            self.noise_cov_const = None
        elif isinstance(prob, Quadratic):
            if sampling != "iid":
                raise ValueError("sampling must be 'iid' for a Quadratic problem, got "
                                 f"{sampling!r}")
            # the float64 values given, not their rounding to the simulation dtype
            self.H = prob.H64.array
            self.d = self.H.shape[0]
            self.kappa = 1.0
            self.noise_cov_const = prob.noise_cov64.array
            rhs = self.H @ prob.centre64.array
        else:
            raise TypeError("prob must be a LinearRegression or Quadratic, got "
                            f"{type(prob).__name__}")
        self.sampling = sampling
        d = self.d
        curv, U = np.linalg.eigh(self.H + self.lam * np.eye(d))
        if curv[0] <= 1e-12 * max(1.0, curv[-1]):
            raise ValueError(f"H + λI is singular (smallest eigenvalue {curv[0]:.3g}): the "
                             "stationary law is not unique; use weight_decay > 0")
        self.curvature, self.U = curv, U          # eigenpairs of H + λI
        self.mu = U @ ((U.T @ rhs) / curv)
        eta, beta = self.eta, self.beta
        eye = np.eye(d)
        Hp = self.H + self.lam * eye
        self.Mbar = np.block([[eye - eta * Hp, eta * beta * eye], [-Hp, beta * eye]])
        self.W = np.vstack([eta * eye, eye])
        # Per-mode 2×2 blocks B_i and the inverse Stein operator on each pair (i, j).
        B = np.zeros((d, 2, 2))
        B[:, 0, 0], B[:, 0, 1] = 1 - eta * curv, eta * beta
        B[:, 1, 0], B[:, 1, 1] = -curv, beta
        self.blocks = B
        self._mode_radius = _block_radius(B)
        if self.mean_radius < 1:
            kron = np.einsum("iac,jbe->ijabce", B, B).reshape(d, d, 4, 4)
            self._stein_inv = np.linalg.inv(np.eye(4) - kron)

    # --- noise -----------------------------------------------------------------------
    @property
    def multiplicative(self) -> bool:
        return self.noise_cov_const is None

    def sigma(self, theta: np.ndarray) -> np.ndarray:
        """Σ(θ) (without κ); the constant per-step covariance for a Quadratic."""
        if not self.multiplicative:
            return self.noise_cov_const
        r = self.X @ theta - self.y
        g = self.X.T @ r / self.N
        Xr = self.X * r[:, None]
        return Xr.T @ Xr / self.N - np.outer(g, g)

    def G(self, P: np.ndarray) -> np.ndarray:
        """𝒢(P) = (1/N) Σ_i x_i x_iᵀ (x_iᵀ P x_i) − H P H (zero for additive noise)."""
        if not self.multiplicative:
            return np.zeros_like(P)
        q = np.einsum("ni,ni->n", self.X @ P, self.X)
        return (self.X * q[:, None]).T @ self.X / self.N - self.H @ P @ self.H

    def inject(self, noise: np.ndarray) -> np.ndarray:
        """κ W N Wᵀ: the phase-space covariance a per-step gradient noise N adds."""
        return self.kappa * self.W @ noise @ self.W.T

    # --- linear algebra ----------------------------------------------------------------
    @property
    def mean_radius(self) -> float:
        """Spectral radius of M̄ (the mean map)."""
        return float(self._mode_radius.max())

    def stein(self, Q: np.ndarray) -> np.ndarray:
        """Solve C = M̄ C M̄ᵀ + Q exactly (requires a stable mean map)."""
        d = self.d
        R = np.kron(np.eye(2), self.U)
        Qm = (R.T @ Q @ R).reshape(2, d, 2, d).transpose(1, 3, 0, 2).reshape(d, d, 4)
        Cm = np.einsum("ijab,ijb->ija", self._stein_inv, Qm)
        Cm = Cm.reshape(d, d, 2, 2).transpose(2, 0, 3, 1).reshape(2 * d, 2 * d)
        C = R @ Cm @ R.T
        return 0.5 * (C + C.T)

    def feedback(self, P: np.ndarray) -> np.ndarray:
        """The noise-feedback map P ↦ [Stein⁻¹(κ W 𝒢(P) Wᵀ)]_θθ."""
        return self.stein(self.inject(self.G(P)))[: self.d, : self.d]

    def feedback_radius(self, max_iter: int = 2000, rtol: float = 1e-10) -> float:
        """Spectral radius of the (positive) feedback map, by power iteration from I."""
        if not self.multiplicative:
            return 0.0
        P = np.eye(self.d) / np.sqrt(self.d)
        rho = 0.0
        for _ in range(max_iter):
            nxt = self.feedback(P)
            new = float(np.linalg.norm(nxt))
            if new == 0.0:
                return 0.0
            P = nxt / new
            if abs(new - rho) <= rtol * new:
                return new
            rho = new
        return rho


def _block_radius(B: np.ndarray) -> np.ndarray:
    """Largest |eigenvalue| of each 2×2 block (roots of z² − tr z + det)."""
    tr = B[:, 0, 0] + B[:, 1, 1]
    det = B[:, 0, 0] * B[:, 1, 1] - B[:, 0, 1] * B[:, 1, 0]
    disc = np.sqrt((tr * tr - 4 * det).astype(complex))
    return np.maximum(np.abs((tr + disc) / 2), np.abs((tr - disc) / 2))


# --- stability -------------------------------------------------------------------------

def stability(prob: LinearRegression | Quadratic, hp: Hyper, sampling: str = "iid") -> dict:
    """Where ``hp`` sits in the discrete stability region.

    Returns a dict with ``mean_radius`` (spectral radius of M̄; the mean converges iff < 1),
    ``feedback_radius`` (of the noise-feedback map; the covariance converges iff also < 1),
    ``max_lr_mean`` = 2(1+β)/(h_max+λ), the exact edge of the mean map, and ``max_lr``, the
    largest stable lr of the second-moment map at fixed momentum, weight decay, batch and
    sampling (bisection to 1e-4 relative).
    """
    model = DiscreteModel(prob, hp, sampling)
    out = {"mean_radius": model.mean_radius,
           "max_lr_mean": 2 * (1 + hp.momentum) / model.curvature[-1]}
    out["feedback_radius"] = model.feedback_radius() if model.mean_radius < 1 else float("inf")
    out["max_lr"] = _max_stable_lr(prob, hp, sampling, out["max_lr_mean"])
    out["stable"] = out["mean_radius"] < 1 and out["feedback_radius"] < 1
    return out


def _max_stable_lr(prob, hp, sampling, upper: float) -> float:
    def stable(lr: float) -> bool:
        m = DiscreteModel(prob, hp.replace(lr=lr), sampling)
        return m.mean_radius < 1 and m.feedback_radius(max_iter=500, rtol=1e-6) < 1

    lo, hi = 0.0, upper * (1 - 1e-9)
    if stable(hi):
        return hi
    while hi - lo > 1e-4 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    return lo


def _require_stable(model: DiscreteModel, prob, hp, sampling, *, need_feedback: bool) -> None:
    if model.mean_radius >= 1:
        bound = 2 * (1 + hp.momentum) / model.curvature[-1]
        raise UnstableError(
            f"lr={hp.lr:g} is outside the discrete stability region: the mean map has spectral "
            f"radius {model.mean_radius:.4g} >= 1 (stable iff lr·(h_max+λ) < 2(1+β), i.e. "
            f"lr < {bound:.6g} at momentum {hp.momentum:g})")
    if need_feedback and model.multiplicative:
        rho = model.feedback_radius()
        if rho >= 1:
            best = _max_stable_lr(prob, hp, sampling, 2 * (1 + hp.momentum) / model.curvature[-1])
            raise UnstableError(
                f"lr={hp.lr:g} is outside the discrete stability region: the second-moment map "
                f"is unstable (noise-feedback radius {rho:.4g} >= 1); the largest stable lr at "
                f"momentum {hp.momentum:g}, weight decay {hp.weight_decay:g}, batch "
                f"{model.batch_size} and sampling {sampling!r} is ≈ {best:.6g}")


# --- public predictions ------------------------------------------------------------------

def _iid_only(phase: Any, method: Any) -> None:
    if phase is not None:
        raise ValueError("phase applies to sampling='reshuffle' only (the iid and replacement "
                         "stationary laws do not depend on the step)")
    if method != "auto":
        raise ValueError(f"method applies to sampling='reshuffle' only (iid and replacement "
                         f"have one exact theory); got method={method!r}")


def discrete_stationary_cov(prob: LinearRegression | Quadratic, hp: Hyper,
                            sampling: str = "iid", *, phase: int | None = None,
                            method: str = "auto") -> np.ndarray:
    """Exact stationary covariance (2d, 2d) of (θ, v) under SGD with momentum (theory.md §5).

    Solves C = M̄ C M̄ᵀ + κ W [Σ(μ) + 𝒢(C_θθ)] Wᵀ. Raises :class:`UnstableError` (a
    ``ValueError``) outside the stability region, quoting the bound.

    ``sampling="reshuffle"`` (theory.md §9, :mod:`limitdyn.theory.reshuffle`): the law is
    periodic over the E = N // S steps of an epoch. Returns the covariance pooled over the
    phases, E_t[zzᵀ] − E_t[z]E_t[z]ᵀ (what a long window average over every step
    measures), or with ``phase=j`` the covariance at the steps k ≡ j (mod E), j = 0 the
    epoch boundaries. ``method``: ``"exact"`` (used-set recursion, small N), ``"stein"``
    (cyclostationary Stein recursion) or ``"auto"``. The mean (not exactly θ*) is in
    :func:`~limitdyn.theory.reshuffle_stationary`. ``phase`` and ``method`` apply to
    reshuffling only.
    """
    if sampling == "reshuffle":
        from . import reshuffle
        return reshuffle.stationary_cov(prob, hp, phase, method)
    _iid_only(phase, method)
    model = DiscreteModel(prob, hp, sampling)
    _require_stable(model, prob, hp, sampling, need_feedback=True)
    base = model.sigma(model.mu)
    if not model.multiplicative:
        return model.stein(model.inject(base))
    d = model.d
    p0 = model.stein(model.inject(base))[:d, :d]

    def residual_map(p):
        P = p.reshape(d, d)
        return (P - model.feedback(P)).ravel()

    op = spla.LinearOperator((d * d, d * d), matvec=residual_map, dtype=np.float64)
    # rtol 1e-12: 1e-14 is below what float64 GMRES reaches on ill-conditioned spectra (it
    # then ran thousands of iterations, minutes at d = 128); the residual is checked below.
    p, info = spla.gmres(op, p0.ravel(), rtol=1e-12, atol=0.0, restart=min(d * d, 200),
                         maxiter=50)
    P = p.reshape(d, d)
    resid = np.linalg.norm(residual_map(p) - p0.ravel()) / max(np.linalg.norm(p0), 1e-300)
    if resid > 1e-10:
        raise RuntimeError(f"the generalised Stein solve did not converge (relative residual "
                           f"{resid:.2g}, gmres info {info})")
    return model.stein(model.inject(base + model.G(0.5 * (P + P.T))))


def discrete_moments(prob: LinearRegression | Quadratic, hp: Hyper, steps: Any,
                     theta0: Any = None, v0: Any = None, sampling: str = "iid",
                     cov0: Any = None, *, method: str = "auto") -> Moments:
    """Exact mean and covariance of (θ_k, v_k) at ``steps`` from a given start (theory.md §5).

    Iterates m_{k+1} = M̄ m_k and C_{k+1} = M̄ C_k M̄ᵀ + κ W [Σ(μ + m_θ) + 𝒢(C_θθ)] Wᵀ.

    Args:
        steps: recorded step indices (non-negative integers).
        theta0: start (d,), default the minimiser μ; v0: start velocity, default 0.
        cov0: optional (2d, 2d) covariance of a random start, default 0 (deterministic).
        method: for ``sampling="reshuffle"`` only (theory.md §9; step 0 starts an epoch):
            ``"exact"`` (used-set recursion, small N), ``"stein"`` or ``"auto"``; see
            :func:`~limitdyn.theory.reshuffle_moments`.
    """
    if sampling == "reshuffle":
        from . import reshuffle
        return reshuffle.reshuffle_moments(prob, hp, steps, theta0, v0, cov0, method)
    _iid_only(None, method)
    model = DiscreteModel(prob, hp, sampling)
    d = model.d
    steps = _checks.real_array("steps", steps, ndim=1)
    if np.any(steps < 0) or np.any(steps != np.round(steps)):
        raise ValueError("steps must be non-negative integers")
    steps = steps.astype(np.int64)
    theta0 = model.mu if theta0 is None else _checks.real_array("theta0", theta0, shape=(d,))
    v0 = np.zeros(d) if v0 is None else _checks.real_array("v0", v0, shape=(d,))
    C = np.zeros((2 * d, 2 * d)) if cov0 is None else _checks.real_array(
        "cov0", cov0, shape=(2 * d, 2 * d))
    m = np.concatenate([theta0 - model.mu, v0])
    order = np.argsort(steps, kind="stable")
    means = np.empty((len(steps), 2 * d))
    covs = np.empty((len(steps), 2 * d, 2 * d))
    k, Mbar = 0, model.Mbar
    for idx in order:
        while k < steps[idx]:
            noise = model.sigma(model.mu + m[:d]) + model.G(C[:d, :d])
            C = Mbar @ C @ Mbar.T + model.inject(noise)
            m = Mbar @ m
            k += 1
        means[idx] = m + np.concatenate([model.mu, np.zeros(d)])
        covs[idx] = C
    return Moments(steps=steps, mean=means, cov=covs)


def additive_mode_stationary(curvature: Any, lr: float, momentum: float,
                             noise_var: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form stationary (Var θ, Var v, Cov(θ, v)) of one mode with additive noise.

    For curvature h' = h + λ and per-step gradient-noise variance s² (theory.md §5)::

        Var v = s² / [(1 − β)(1 + β − ηh'/2)],  Var θ = η(1 + β) Var v / (2h'),
        Cov(θ_k, v_k) = η Var v / 2.
    """
    h = np.asarray(curvature, np.float64)
    s2 = np.asarray(noise_var, np.float64)
    var_v = s2 / ((1 - momentum) * (1 + momentum - lr * h / 2))
    return lr * (1 + momentum) * var_v / (2 * h), var_v, lr * var_v / 2


# --- lag covariance and displacement (theory.md §6) ----------------------------------------

_STARTS = ("deterministic", "stationary")


def discrete_lag_cov(prob: LinearRegression | Quadratic, hp: Hyper, lag_steps: int = 1,
                     sampling: str = "iid") -> np.ndarray:
    """E[x_k x_{k+lag}ᵀ] at stationarity, x = (θ − μ, v): C M̄ᵀ^lag (2d, 2d).

    Exact with multiplicative noise too: ξ_k has zero mean given the past, so
    E[x_{k+j} | x_k] = M̄^j x_k. C is :func:`discrete_stationary_cov`.
    """
    lag = _checks.integer("lag_steps", lag_steps, low=0)
    C = discrete_stationary_cov(prob, hp, sampling)
    model = DiscreteModel(prob, hp, sampling)
    return C @ np.linalg.matrix_power(model.Mbar.T, lag)


def _check_start(start: Any, theta0: Any, v0: Any) -> str:
    start = _checks.choice("start", start, _STARTS)
    if start == "stationary" and (theta0 is not None or v0 is not None):
        raise ValueError("theta0 and v0 apply to start='deterministic' only")
    return start


def _step_indices(steps: Any) -> np.ndarray:
    steps = _checks.real_array("steps", steps, ndim=1)
    if np.any(steps < 0) or np.any(steps != np.round(steps)):
        raise ValueError("steps must be non-negative integers")
    return steps.astype(np.int64)


def discrete_displacement(prob: LinearRegression | Quadratic, hp: Hyper, steps: Any,
                          theta0: Any = None, v0: Any = None, sampling: str = "iid",
                          start: str = "deterministic") -> np.ndarray:
    """Exact E Δ_k = E‖θ_k − θ_0‖² of SGD with momentum (theory.md §6), shape (len(steps),).

    ``start='deterministic'``: from (θ₀, v₀) (defaults μ, 0), ‖E θ_k − θ₀‖² + tr Cov θ_k by
    :func:`discrete_moments`. ``start='stationary'``: 2 tr C_θθ − 2 tr[M̄^k C]_θθ with C the
    stationary covariance (θ₀, v₀ must then be omitted).
    """
    start = _check_start(start, theta0, v0)
    model = DiscreteModel(prob, hp, sampling)
    d = model.d
    if start == "deterministic":
        mom = discrete_moments(prob, hp, steps, theta0, v0, sampling)
        th0 = model.mu if theta0 is None else _checks.real_array("theta0", theta0, shape=(d,))
        dev = mom.mean[:, :d] - th0
        return np.sum(dev * dev, axis=1) + np.trace(mom.cov[:, :d, :d], axis1=1, axis2=2)
    steps = _step_indices(steps)
    C = discrete_stationary_cov(prob, hp, sampling)
    out = np.empty(len(steps))
    tr0 = np.trace(C[:d, :d])
    k, Y = 0, C
    for idx in np.argsort(steps, kind="stable"):
        if steps[idx] > k:
            Y = np.linalg.matrix_power(model.Mbar, int(steps[idx] - k)) @ Y
            k = int(steps[idx])
        out[idx] = 2 * tr0 - 2 * np.trace(Y[:d, :d])
    return out


def discrete_local_displacement(prob: LinearRegression | Quadratic, hp: Hyper, steps: Any,
                                theta0: Any = None, v0: Any = None, sampling: str = "iid",
                                start: str = "deterministic") -> np.ndarray:
    """Exact E δ_k = E‖θ_k − θ_{k−1}‖² = η²(tr Cov v_k + ‖E v_k‖²) (theory.md §6).

    The step ending at k (v_k = (θ_k − θ_{k−1})/η; at k = 0 the start velocity v₀).
    ``start='stationary'``: the constant η² tr C_vv.
    """
    start = _check_start(start, theta0, v0)
    if start == "stationary":
        steps = _step_indices(steps)
        C = discrete_stationary_cov(prob, hp, sampling)
        d = C.shape[0] // 2
        return np.full(len(steps), hp.lr ** 2 * np.trace(C[d:, d:]))
    mom = discrete_moments(prob, hp, steps, theta0, v0, sampling)
    d = mom.mean.shape[1] // 2
    mv = mom.mean[:, d:]
    return hp.lr ** 2 * (np.trace(mom.cov[:, d:, d:], axis1=1, axis2=2) + np.sum(mv * mv, axis=1))
