"""Continuous-time theory: the Ornstein–Uhlenbeck limits of SGD with momentum (theory.md §2–§6).

Two models of the phase-space state x = (θ − μ, v), μ the minimiser of L_λ, in continuous
time t = η·k (k = SGD step):

``langevin`` (underdamped, theory.md §3), with a = 2/(η(1+β)), γ = (1−β)/(η(1+β))::

    dx = −A x dt + √(2D) dW,   A = [[0, −I], [a(H + λI), 2γ I]],
    2D = [[0, 0], [0, a² η C]] = [[0, 0], [0, 4C/(η(1+β)²)]]

``sme`` (first-order stochastic modified equation of heavy-ball SGD, the overdamped limit
of the Langevin equation, M → 0 in theory.md §2)::

    dθ = −(H + λI)(θ − μ) dt/(1 − β) + √(η C) dW/(1 − β)

whose "velocity" is defined like the discrete one, v(t) = (θ(t) − θ(t − η))/η, so the (θ, v)
moments are exact Gaussian-process quantities. With β = 0 this is Li–Tai–E's SME
dθ = −∇L_λ dt + √(ηC) dW; the factors 1/(1 − β) make its stationary position covariance
agree with the Langevin model's (both are ηC/(2(1−β))·(H+λI)⁻¹ for commuting C).

C is the per-step gradient-noise covariance of a noise model
(:func:`limitdyn.noise.per_step_covariance`: ``paper`` σ²H/S, ``frozen`` κΣ(μ),
``isotropic``, a (d, d) array) or ``exact``, the state-dependent κΣ(θ). For linear
regression E Σ(θ) = Σ(E θ) + 𝒢(Cov θ) (theory.md §5), so the continuous moment equations
close too: the stationary covariance solves the linear equation
A C + C Aᵀ = 2D(C) with noise κ[Σ(μ) + 𝒢(C_θθ)], and transients integrate
dm/dt = −A m, dC/dt = −A C − C Aᵀ + 2D(m, C). For a Quadratic ``exact`` is its constant
noise.

Everything is float64 numpy/scipy; nothing here samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse.linalg as spla
from scipy.integrate import solve_ivp

from .. import _checks
from .. import noise as _noise
from ..hyper import Hyper
from ..problems import LinearRegression, Quadratic
from .discrete import DiscreteModel, Moments, UnstableError

Problem = LinearRegression | Quadratic

MODELS = ("langevin", "sme")
NOISE_NAMES = ("paper", "frozen", "isotropic", "exact")
STARTS = ("deterministic", "stationary")

_ODE_RTOL = 1e-10


# --- resolution of (problem, hyperparameters, noise, model) -----------------------------

def _noise_name(noise: Any) -> str:
    if isinstance(noise, str):
        return _checks.choice("noise", noise, NOISE_NAMES)
    if callable(noise):
        raise ValueError("noise must be one of 'paper', 'frozen', 'isotropic', 'exact' or a "
                         "(d, d) covariance array; a noise-factor function F(θ) has no closed "
                         "moment equations")
    if isinstance(noise, np.ndarray | list | tuple) or hasattr(noise, "__array__"):
        return "matrix"
    raise TypeError(f"noise must be one of {NOISE_NAMES} or a (d, d) covariance array, got "
                    f"{type(noise).__name__}")


class _Continuous:
    """Resolved data of one continuous model: drift F, noise injection, solvers."""

    def __init__(self, prob: Problem, hp: Hyper, noise: Any = "paper", sampling: str = "iid",
                 sigma2: float | None = None, model: str = "langevin"):
        if not isinstance(prob, LinearRegression | Quadratic):
            raise TypeError("prob must be a limitdyn problem (LinearRegression or Quadratic), "
                            f"got {type(prob).__name__}")
        if not isinstance(hp, Hyper):
            raise TypeError(f"hp must be a limitdyn.Hyper, got {type(hp).__name__}")
        self.model = _checks.choice("model", model, MODELS)
        name = _noise_name(noise)
        dm = DiscreteModel(prob, hp, sampling)   # validates sampling, batch, H + λI
        self.dm, self.d = dm, dm.d
        self.eta, self.beta, self.lam = hp.lr, hp.momentum, hp.weight_decay
        self.batch_size = (dm.batch_size if isinstance(prob, LinearRegression)
                           else (1 if hp.batch_size is None else hp.batch_size))
        self.noise_name = name
        if name == "exact":
            if sigma2 is not None:
                raise ValueError("sigma2 applies to noise 'paper' and 'isotropic' only, not "
                                 "'exact'")
            self.C = dm.kappa * dm.sigma(dm.mu)
            self.exact = dm.multiplicative and dm.kappa > 0
        else:
            self.C = _noise.per_step_covariance(prob, hp, noise, sampling=sampling,
                                                sigma2=sigma2)
            self.exact = False
        d, eta, beta = self.d, self.eta, self.beta
        eye = np.eye(d)
        self.H = dm.H
        self.Bmat = dm.H + self.lam * eye
        self.curvature, self.U = dm.curvature, dm.U
        self.gamma = (1 - beta) / (eta * (1 + beta))
        self.a = 2 / (eta * (1 + beta))
        if self.model == "langevin":
            self.n = 2 * d
            self.F = np.block([[np.zeros((d, d)), -eye],
                               [self.a * self.Bmat, 2 * self.gamma * eye]])
            self.omega2 = self.a * self.curvature
        else:
            self.n = d
            self.F = self.Bmat / (1 - beta)
            self.rates = self.curvature / (1 - beta)     # eigenvalues of F
        self._stationary: tuple[np.ndarray, np.ndarray] | None = None

    # --- noise --------------------------------------------------------------------------
    def inject(self, noise: np.ndarray) -> np.ndarray:
        """2D for a per-step noise covariance ``noise`` (theory.md §3)."""
        if self.model == "sme":
            return self.eta * noise / (1 - self.beta) ** 2
        d = self.d
        out = np.zeros((self.n, self.n))
        out[d:, d:] = self.a ** 2 * self.eta * noise
        return out

    def noise_mean(self, m_theta: np.ndarray, P: np.ndarray) -> np.ndarray:
        """E C(θ) for θ − μ with mean ``m_theta`` and covariance ``P`` (exact for LR)."""
        if not self.exact:
            return self.C
        dm = self.dm
        return dm.kappa * (dm.sigma(dm.mu + m_theta) + dm.G(P))

    # --- linear algebra -----------------------------------------------------------------
    def lyap(self, Q: np.ndarray) -> np.ndarray:
        """Solve F X + X Fᵀ = Q."""
        if self.model == "langevin":
            X = sla.solve_continuous_lyapunov(self.F, Q)
        else:
            Qm = self.U.T @ Q @ self.U
            X = self.U @ (Qm / (self.rates[:, None] + self.rates[None, :])) @ self.U.T
        return 0.5 * (X + X.T)

    def theta_block(self, C: np.ndarray) -> np.ndarray:
        return C[: self.d, : self.d]

    def propagator(self, t: float) -> np.ndarray:
        """e^{−F t} (n, n), exactly: 2×2 blocks per mode (langevin), diagonal (sme)."""
        U = self.U
        if t == 0:
            return np.eye(self.n)
        if self.model == "sme":
            return (U * np.exp(-self.rates * t)) @ U.T
        p = _mode_propagator(np.array([t]), self.gamma, self.omega2)[0]     # (d, 2, 2)
        return np.block([[(U * p[:, 0, 0]) @ U.T, (U * p[:, 0, 1]) @ U.T],
                         [(U * p[:, 1, 0]) @ U.T, (U * p[:, 1, 1]) @ U.T]])

    # --- stationary law -----------------------------------------------------------------
    def stationary(self) -> tuple[np.ndarray, np.ndarray]:
        """(C_ss, C̄): the stationary covariance of the Markov state and the noise E C(θ)."""
        if self._stationary is None:
            self._stationary = self._solve_stationary()
        return self._stationary

    def _solve_stationary(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.exact:
            return self.lyap(self.inject(self.C)), self.C
        d, dm = self.d, self.dm

        def feedback(P: np.ndarray) -> np.ndarray:
            return self.theta_block(self.lyap(self.inject(dm.kappa * dm.G(P))))

        rho, stable = _positive_map_radius(feedback, d)
        if not stable:
            raise UnstableError(
                f"lr={self.eta:g}: the continuous {self.model} model with noise 'exact' has no "
                f"stationary law: its second-moment map is unstable (noise-feedback radius "
                f"≈ {rho:.4g} >= 1)")
        p0 = self.theta_block(self.lyap(self.inject(self.C)))

        def residual_map(p: np.ndarray) -> np.ndarray:
            P = p.reshape(d, d)
            return (P - feedback(0.5 * (P + P.T))).ravel()

        op = spla.LinearOperator((d * d, d * d), matvec=residual_map, dtype=np.float64)
        p, info = spla.gmres(op, p0.ravel(), rtol=1e-14, atol=0.0, restart=min(d * d, 200),
                             maxiter=50)
        P = 0.5 * (p.reshape(d, d) + p.reshape(d, d).T)
        Cbar = self.noise_mean(np.zeros(d), P)
        C = self.lyap(self.inject(Cbar))
        Cbar = self.noise_mean(np.zeros(d), self.theta_block(C))
        rhs = self.inject(Cbar)
        resid = self.F @ C + C @ self.F.T - rhs
        scale = np.linalg.norm(self.F) * np.linalg.norm(C) + np.linalg.norm(rhs)
        if np.linalg.norm(resid) > 1e-10 * max(scale, 1e-300):
            raise RuntimeError(f"the continuous exact-noise stationary solve did not converge "
                               f"(relative residual {np.linalg.norm(resid) / scale:.2g}, gmres "
                               f"info {info})")
        return C, Cbar

    def phase_stationary(self) -> np.ndarray:
        """The stationary (θ, v) covariance (2d, 2d) (sme: finite-difference velocity)."""
        if self.model == "langevin":
            return self.stationary()[0]
        return self.lag(0.0)

    def lag(self, tau: float) -> np.ndarray:
        """E[x(t) x(t + τ)ᵀ] of the stationary (θ, v) process (2d, 2d)."""
        C = self.stationary()[0]
        if self.model == "langevin":
            return C @ self.propagator(tau).T
        eta = self.eta

        def K(delta: float) -> np.ndarray:      # Cov(θ(s), θ(s + δ))
            return C @ self.propagator(delta) if delta >= 0 else self.propagator(-delta) @ C

        k0, km, kp = K(tau), K(tau - eta), K(tau + eta)
        out = np.block([[k0, (k0 - km) / eta], [(k0 - kp) / eta, (2 * k0 - km - kp) / eta ** 2]])
        return 0.5 * (out + out.T) if tau == 0 else out

    # --- transients -----------------------------------------------------------------------
    def markov_moments(self, times: np.ndarray, m0: np.ndarray,
                       C0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the Markov state (n) at sorted ``times`` from (m0, C0)."""
        if self.exact:
            return self._ode(times, m0, C0)
        Css = self.stationary()[0]
        means = np.empty((len(times), self.n))
        covs = np.empty((len(times), self.n, self.n))
        for i, t in enumerate(times):
            Phi = self.propagator(float(t))
            means[i] = Phi @ m0
            cov = Css - Phi @ (Css - C0) @ Phi.T
            covs[i] = 0.5 * (cov + cov.T)
        return means, covs

    def _ode(self, times: np.ndarray, m0: np.ndarray,
             C0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integrate the closed moment ODE (multiplicative noise) with tight tolerances."""
        n, d = self.n, self.d
        F = self.F

        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            m, C = y[:n], y[n:].reshape(n, n)
            C = 0.5 * (C + C.T)
            Cn = self.noise_mean(m[:d], C[:d, :d])
            dC = -F @ C - C @ F.T + self.inject(Cn)
            return np.concatenate([-F @ m, dC.ravel()])

        scale_c = max(np.abs(C0).max(), np.abs(self.lyap(self.inject(self.noise_mean(
            m0[:d], C0[:d, :d])))).max(), 1e-300)
        scale_m = max(np.abs(m0).max(), np.sqrt(scale_c))
        atol = np.concatenate([np.full(n, 1e-13 * scale_m), np.full(n * n, 1e-13 * scale_c)])
        y0 = np.concatenate([m0, C0.ravel()])
        means = np.empty((len(times), n))
        covs = np.empty((len(times), n, n))
        t_end = float(times[-1]) if len(times) else 0.0
        if t_end > 0:
            sol = solve_ivp(rhs, (0.0, t_end), y0, method="DOP853", t_eval=times,
                            rtol=_ODE_RTOL, atol=atol)
            if not sol.success:
                raise RuntimeError(f"the moment ODE failed: {sol.message}")
            ys = sol.y.T
        else:
            ys = np.tile(y0, (len(times), 1))
        for i, y in enumerate(ys):
            means[i] = y[:n]
            C = y[n:].reshape(n, n)
            covs[i] = 0.5 * (C + C.T)
        return means, covs


def _mode_propagator(times: np.ndarray, gamma: float, omega2: np.ndarray) -> np.ndarray:
    """e^{−A_i t} for A_i = [[0, −1], [ω_i², 2γ]], shape (T, d, 2, 2), exactly.

    e^{−A_i t} = ch·I + sh·[[γ, 1], [−ω², −γ]] with r = √(γ² − ω²) (complex when
    underdamped), ch = e^{−γt} cosh(rt), sh = e^{−γt} sinh(rt)/r; the slow overdamped
    exponent −γ + r = −ω²/(γ + r) is formed without cancellation, and sinh(q)/q by its
    series near critical damping.
    """
    t = np.asarray(times, np.float64)[:, None]
    w2 = np.asarray(omega2, np.float64)[None, :]
    r = np.sqrt((gamma ** 2 - w2).astype(complex))
    real = (gamma ** 2 - w2) > 0
    slow = np.where(real, -w2 / (gamma + r.real), -gamma + r)
    e_plus = np.exp(slow * t)
    e_minus = np.exp((-gamma - r) * t)
    ch = 0.5 * (e_plus + e_minus)
    q = r * t
    small = np.abs(q) < 1e-2
    r_safe = np.where(np.abs(r) == 0, 1.0, r)
    sh_big = (e_plus - e_minus) / (2 * r_safe)
    q2 = q * q
    sh_small = np.exp(-gamma * t) * t * (1 + q2 / 6 * (1 + q2 / 20 * (1 + q2 / 42 * (
        1 + q2 / 72))))
    sh = np.where(small, sh_small, sh_big)
    ch, sh = ch.real, sh.real
    out = np.empty((*ch.shape, 2, 2))
    out[..., 0, 0] = ch + gamma * sh
    out[..., 0, 1] = sh
    out[..., 1, 0] = -w2 * sh
    out[..., 1, 1] = ch - gamma * sh
    return out


def _positive_map_radius(fmap: Callable[[np.ndarray], np.ndarray], d: int,
                         max_iter: int = 500) -> tuple[float, bool]:
    """Spectral radius bound of a positive map on symmetric matrices, with a verdict.

    Collatz–Wielandt bounds: for positive definite P, λ_min(P^{-½} F(P) P^{-½}) <= ρ(F) <=
    λ_max(P^{-½} F(P) P^{-½}); power iteration tightens them. Returns (estimate, ρ < 1).
    """
    P = np.eye(d)
    hi = np.inf
    for _ in range(max_iter):
        FP = fmap(P)
        FP = 0.5 * (FP + FP.T)
        w, V = np.linalg.eigh(P)
        isq = (V / np.sqrt(w)) @ V.T
        ev = np.linalg.eigvalsh(isq @ FP @ isq)
        lo, hi = float(ev[0]), float(ev[-1])
        if hi < 1:
            return hi, True
        if lo >= 1:
            return lo, False
        if hi - lo <= 1e-9 * hi:
            return hi, hi < 1
        tr = np.trace(FP)
        if tr <= 0:
            return 0.0, True
        P = FP / tr + 1e-12 * np.eye(d)
    return hi, hi < 1


# --- public: matrices and stationary law -------------------------------------------------

def drift_matrix(prob: Problem, hp: Hyper, model: str = "langevin") -> np.ndarray:
    """The drift matrix A of dx = −A x dt + √(2D) dW (theory.md §3).

    ``langevin``: A = [[0, −I], [2(H + λI)/(η(1+β)), 2γ I]], γ = (1−β)/(η(1+β)), shape
    (2d, 2d) acting on x = (θ − μ, v). ``sme``: (H + λI)/(1 − β), shape (d, d) acting on
    θ − μ. Raises ValueError if H + λI is singular.
    """
    return _Continuous(prob, hp, "frozen", "iid", None, model).F.copy()


def diffusion_matrix(prob: Problem, hp: Hyper, noise: Any = "paper", *, sampling: str = "iid",
                     sigma2: float | None = None, model: str = "langevin") -> np.ndarray:
    """2D, the covariance rate of the noise term (theory.md §3).

    ``langevin``: [[0, 0], [0, a² η C]] = [[0, 0], [0, 4C/(η(1+β)²)]] (2d, 2d); ``sme``:
    η C/(1 − β)² (d, d). C is the per-step covariance of the noise model. For
    ``noise='exact'`` (state-dependent) it is the stationary average
    E C(θ) = κ[Σ(μ) + 𝒢(C_θθ)], the one for which A C_ss + C_ss Aᵀ = 2D holds.
    """
    cm = _Continuous(prob, hp, noise, sampling, sigma2, model)
    return cm.inject(cm.stationary()[1] if cm.exact else cm.C)


def continuous_stationary_cov(prob: Problem, hp: Hyper, noise: Any = "paper", *,
                              sampling: str = "iid", sigma2: float | None = None,
                              model: str = "langevin") -> np.ndarray:
    """Stationary covariance (2d, 2d) of (θ, v) in the continuous model (theory.md §3).

    ``langevin``: the continuous Lyapunov equation A C + C Aᵀ = 2D (singular 2D allowed);
    for noise σ²H/S it is block diagonal, Cov θ = (ησ²/(2S(1−β))) H(H + λI)⁻¹,
    Cov v = σ²H/(S(1 − β²)), Cov(θ, v) = 0. ``sme``: Cov θ = P solves
    (H+λI)P + P(H+λI) = ηC/(1 − β) and the velocity is the finite difference over one step,
    Cov v = (2P − e^{−Fη}P − P e^{−Fη})/η², Cov(θ, v) = (P − e^{−Fη}P)/η.
    ``noise='exact'`` solves the closed linear equation with 2D(C) carrying
    κ[Σ(μ) + 𝒢(C_θθ)] (GMRES on the θθ block; raises :class:`UnstableError` when the
    continuous second-moment map is unstable).

    Raises ValueError if H + λI is singular (no unique stationary law).
    """
    return _Continuous(prob, hp, noise, sampling, sigma2, model).phase_stationary()


def stationary_lag_cov(prob: Problem, hp: Hyper, lag_steps: float = 1, noise: Any = "paper", *,
                       sampling: str = "iid", sigma2: float | None = None,
                       model: str = "langevin") -> np.ndarray:
    """E[x(t) x(t + τ)ᵀ] at stationarity, τ = η·lag_steps, x = (θ − μ, v) (2d, 2d).

    ``langevin``: C_ss e^{−Aᵀτ} (exact also for ``exact`` noise: the noise increments are
    uncorrelated with the past). ``sme``: from Cov(θ(s), θ(s + δ)) = P e^{−Fδ} (δ >= 0) and
    the finite-difference velocity. ``lag_steps`` is a non-negative real (SGD steps).
    """
    lag = _checks.finite_float("lag_steps", lag_steps, low=0.0)
    cm = _Continuous(prob, hp, noise, sampling, sigma2, model)
    return cm.lag(lag * cm.eta)


def _steps(steps: Any) -> np.ndarray:
    steps = _checks.real_array("steps", steps, ndim=1)
    if np.any(steps < 0) or np.any(steps != np.round(steps)):
        raise ValueError("steps must be non-negative integers")
    return steps.astype(np.int64)


def _start(cm: _Continuous, theta0: Any, v0: Any, cov0: Any) -> tuple[np.ndarray, np.ndarray]:
    d = cm.d
    theta0 = cm.dm.mu if theta0 is None else _checks.real_array("theta0", theta0, shape=(d,))
    v0 = np.zeros(d) if v0 is None else _checks.real_array("v0", v0, shape=(d,))
    C0 = np.zeros((2 * d, 2 * d)) if cov0 is None else _checks.real_array(
        "cov0", cov0, shape=(2 * d, 2 * d))
    return np.concatenate([theta0 - cm.dm.mu, v0]), 0.5 * (C0 + C0.T)


def _phase_moments(cm: _Continuous, steps: np.ndarray, x0: np.ndarray,
                   C0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative (θ − μ, v) means and covariances at SGD ``steps`` (any order)."""
    d, eta = cm.d, cm.eta
    if cm.model == "langevin":
        uniq, inv = np.unique(steps, return_inverse=True)
        m, C = cm.markov_moments(eta * uniq.astype(np.float64), x0, C0)
        return m[inv], C[inv]
    # sme: θ is Markov; v_k = (θ_k − θ_{k−1})/η for k >= 1, v_0 = the given start.
    grid = np.unique(np.concatenate([steps, np.maximum(steps - 1, 0)]))
    m, P = cm.markov_moments(eta * grid.astype(np.float64), x0[:d], C0[:d, :d])
    where = {int(k): i for i, k in enumerate(grid)}
    means = np.empty((len(steps), 2 * d))
    covs = np.empty((len(steps), 2 * d, 2 * d))
    E = cm.propagator(eta)
    for j, k in enumerate(steps):
        if k == 0:
            means[j], covs[j] = x0, C0
            continue
        i1, i0 = where[int(k)], where[int(k) - 1]
        X = E @ P[i0]                        # Cov(θ(t), θ(t − η))
        means[j, :d] = m[i1]
        means[j, d:] = (m[i1] - m[i0]) / eta
        tv = (P[i1] - X) / eta
        vv = (P[i1] + P[i0] - X - X.T) / eta ** 2
        cov = np.block([[P[i1], tv], [tv.T, vv]])
        covs[j] = 0.5 * (cov + cov.T)
    return means, covs


def continuous_moments(prob: Problem, hp: Hyper, steps: Any, theta0: Any = None, v0: Any = None,
                       noise: Any = "paper", *, sampling: str = "iid",
                       sigma2: float | None = None, cov0: Any = None,
                       model: str = "langevin") -> Moments:
    """Mean and covariance of (θ, v) at SGD ``steps`` (t = η·k) from a given start (§3).

    Constant noise, ``langevin``: E x(t) = e^{−At} x(0) and
    Cov(t) = C_ss − e^{−At}(C_ss − Cov(0)) e^{−Aᵀt}, with e^{−At} exact per Hessian mode.
    ``noise='exact'``: the closed moment ODE dm/dt = −A m, dC/dt = −A C − C Aᵀ + 2D(m, C)
    (2D carrying κ[Σ(μ + m_θ) + 𝒢(C_θθ)]) integrated by scipy's DOP853 at rtol 1e-10.
    ``sme``: θ is propagated the same way; v_k = (θ_k − θ_{k−1})/η for k >= 1 (with
    Cov(θ(t), θ(t − η)) = e^{−Fη} Cov θ(t − η)), and v_0 is the given ``v0``.

    Args:
        steps: SGD step indices (non-negative integers).
        theta0: start (d,), default μ; v0: start velocity, default 0.
        cov0: optional (2d, 2d) covariance of a random start, default 0.

    Returns:
        :class:`Moments` with the mean in absolute coordinates, mean[:, :d] = μ + E(θ − μ).
    """
    cm = _Continuous(prob, hp, noise, sampling, sigma2, model)
    steps = _steps(steps)
    x0, C0 = _start(cm, theta0, v0, cov0)
    means, covs = _phase_moments(cm, steps, x0, C0)
    means = means + np.concatenate([cm.dm.mu, np.zeros(cm.d)])
    return Moments(steps=steps, mean=means, cov=covs)


# --- modes ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Modes:
    """Per-Hessian-mode constants of the Langevin model (theory.md §2–§3), ascending h."""

    h: np.ndarray              # (d,) eigenvalues of H
    vectors: np.ndarray        # (d, d) eigenvectors (columns)
    curvature: np.ndarray      # (d,) h_i + λ
    gamma: float               # damping rate (1−β)/(η(1+β))
    omega2: np.ndarray         # (d,) ω_i² = 2(h_i + λ)/(η(1+β))
    Omega: np.ndarray          # (d,) √(ω² − γ²), NaN where overdamped
    underdamped: np.ndarray    # (d,) bool, ω_i > γ
    threshold: float           # curvature (1−β)²/(2η(1+β)) above which a mode is underdamped
    rotation_per_step: np.ndarray   # (d,) η ω_i = √(2η(h_i + λ)/(1+β)) radians per step

    @property
    def omega(self) -> np.ndarray:
        return np.sqrt(self.omega2)


def modes(prob: Problem, hp: Hyper) -> Modes:
    """Hessian eigenmodes with their damping, frequencies and under/overdamping (§2–§4)."""
    if not isinstance(hp, Hyper):
        raise TypeError(f"hp must be a limitdyn.Hyper, got {type(hp).__name__}")
    if isinstance(prob, LinearRegression):
        X, _ = prob.numpy()
        H = X.T @ X / X.shape[0]
    elif isinstance(prob, Quadratic):
        H = np.asarray(prob.H, np.float64)
    else:
        raise TypeError("prob must be a limitdyn problem (LinearRegression or Quadratic), got "
                        f"{type(prob).__name__}")
    eta, beta, lam = hp.lr, hp.momentum, hp.weight_decay
    h, V = np.linalg.eigh(0.5 * (H + H.T))
    curv = h + lam
    gamma = (1 - beta) / (eta * (1 + beta))
    omega2 = 2 * curv / (eta * (1 + beta))
    under = omega2 > gamma ** 2
    Omega = np.where(under, np.sqrt(np.where(under, omega2 - gamma ** 2, 0.0)), np.nan)
    return Modes(h=h, vectors=V, curvature=curv, gamma=gamma, omega2=omega2, Omega=Omega,
                 underdamped=under, threshold=(1 - beta) ** 2 / (2 * eta * (1 + beta)),
                 rotation_per_step=eta * np.sqrt(np.clip(omega2, 0.0, None)))


# --- Kwon–Ao–Thouless decomposition, current, modified loss ------------------------------

def _pinv_psd(C: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(pseudo-inverse, pseudo-determinant log, rank) of a symmetric PSD matrix."""
    w, V = np.linalg.eigh(0.5 * (C + C.T))
    keep = w > 1e-12 * max(float(w[-1]), 1e-300)
    inv = (V[:, keep] / w[keep]) @ V[:, keep].T
    return 0.5 * (inv + inv.T), float(np.sum(np.log(w[keep]))), int(keep.sum())


@dataclasses.dataclass(frozen=True)
class KAT:
    """Kwon–Ao–Thouless decomposition A = (D + Q)U of an OU process (theory.md §4).

    ``cov`` = C_ss, ``U`` = C_ss⁻¹ (pseudo-inverse on the support when C_ss is singular;
    then A = (D + Q)U holds on the support only), ``Q`` = A C_ss − D antisymmetric.
    Matrices are (2d, 2d) for ``langevin`` (x = (θ − μ, v)) and (d, d) for ``sme``
    (x = θ − μ, whose Q vanishes iff the noise satisfies detailed balance).
    """

    A: np.ndarray
    D: np.ndarray
    Q: np.ndarray
    U: np.ndarray
    cov: np.ndarray


def kat_decomposition(prob: Problem, hp: Hyper, noise: Any = "paper", *, sampling: str = "iid",
                      sigma2: float | None = None, model: str = "langevin") -> KAT:
    """A = (D + Q)U with U = C_ss⁻¹ symmetric and Q = A C_ss − D antisymmetric (§4)."""
    cm = _Continuous(prob, hp, noise, sampling, sigma2, model)
    C, Cbar = cm.stationary()
    D = 0.5 * cm.inject(Cbar)
    return KAT(A=cm.F.copy(), D=D, Q=cm.F @ C - D, U=_pinv_psd(C)[0], cov=C)


@dataclasses.dataclass(frozen=True)
class ProbabilityCurrent:
    """Stationary probability current J(x) = −Q U x p(x) of the OU process (theory.md §4).

    ``x`` is in relative coordinates: (θ − μ, v) for ``langevin``, θ − μ for ``sme``; any
    leading batch shape. ``density`` is the stationary Gaussian N(0, C_ss) (with respect to
    Lebesgue measure on its support when C_ss is singular).
    """

    Q: np.ndarray
    U: np.ndarray
    cov: np.ndarray
    mu: np.ndarray
    _logdet: float
    _rank: int

    def velocity(self, x: Any) -> np.ndarray:
        """u(x) = −Q U x, the mean velocity of probability at x."""
        x = np.asarray(x, np.float64)
        return -np.einsum("ij,...j->...i", self.Q @ self.U, x)

    def density(self, x: Any) -> np.ndarray:
        x = np.asarray(x, np.float64)
        quad = np.einsum("...i,ij,...j->...", x, self.U, x)
        return np.exp(-0.5 * quad - 0.5 * (self._rank * np.log(2 * np.pi) + self._logdet))

    def current(self, x: Any) -> np.ndarray:
        """J(x) = u(x) p(x)."""
        return self.velocity(x) * self.density(x)[..., None]

    __call__ = current


def probability_current(prob: Problem, hp: Hyper, noise: Any = "paper", *,
                        sampling: str = "iid", sigma2: float | None = None,
                        model: str = "langevin") -> ProbabilityCurrent:
    """The stationary current J(x) = −Q U x p(x) and velocity field u(x) = −Q U x (§4)."""
    cm = _Continuous(prob, hp, noise, sampling, sigma2, model)
    C, Cbar = cm.stationary()
    D = 0.5 * cm.inject(Cbar)
    U, logdet, rank = _pinv_psd(C)
    return ProbabilityCurrent(Q=cm.F @ C - D, U=U, cov=C, mu=cm.dm.mu.copy(), _logdet=logdet,
                              _rank=rank)


@dataclasses.dataclass(frozen=True)
class AngularMomentum:
    """Phase-space rotation per Hessian eigenplane (a_i, b_i) = (e_iᵀ(θ − μ), e_iᵀ v).

    ``current``: ℓ_i = E[a_i u_b − b_i u_a] = 2 Q_{a_i b_i} (Langevin; NaN for sme, whose
    (θ, v) process has no Markov velocity field); negative = clockwise in the (θ, v) plane.
    ``lag_one``: E[a(t) b(t+η) − b(t) a(t+η)]. ``rotation``: φ_i = atan2(R_ab − R_ba,
    R_aa + R_bb) of the normalised lag-one correlation R = S^{-½} Λ S^{-½}; same sign
    convention, so φ_i ≈ −η ω_i for weakly damped modes (``eta_omega`` = η ω_i).
    """

    h: np.ndarray
    current: np.ndarray
    var_theta: np.ndarray
    var_v: np.ndarray
    lag_one: np.ndarray
    rotation: np.ndarray
    eta_omega: np.ndarray


def angular_momentum(prob: Problem, hp: Hyper, noise: Any = "paper", *, sampling: str = "iid",
                     sigma2: float | None = None, model: str = "langevin") -> AngularMomentum:
    """Ensemble angular momentum and lag-one rotation per Hessian eigenplane (§4).

    With u = −Q U x, E[x uᵀ] = −C U Qᵀ = Q, so ℓ_i = Q_ab − Q_ba = 2 Q_{a_i b_i}; for noise
    σ²H/S, ℓ_i = −2 Var(b_i). The lag-one quantities use :func:`stationary_lag_cov`.
    """
    cm = _Continuous(prob, hp, noise, sampling, sigma2, model)
    d = cm.d
    R = np.kron(np.eye(2), cm.U)
    Cm = R.T @ cm.phase_stationary() @ R
    Lm = R.T @ cm.lag(cm.eta) @ R
    idx = np.arange(d)
    if cm.model == "langevin":
        C, Cbar = cm.stationary()
        Qm = R.T @ (cm.F @ C - 0.5 * cm.inject(Cbar)) @ R
        ell = 2 * Qm[idx, d + idx]
    else:
        ell = np.full(d, np.nan)
    va, vb = Cm[idx, idx], Cm[d + idx, d + idx]
    Lab, Lba = Lm[idx, d + idx], Lm[d + idx, idx]
    sab = np.sqrt(va * vb)
    phi = np.arctan2((Lab - Lba) / sab, Lm[idx, idx] / va + Lm[d + idx, d + idx] / vb)
    return AngularMomentum(h=cm.curvature - cm.lam, current=ell, var_theta=va, var_v=vb,
                           lag_one=Lab - Lba, rotation=phi,
                           eta_omega=np.sqrt(2 * cm.eta * cm.curvature / (1 + cm.beta)))


@dataclasses.dataclass(frozen=True)
class ModifiedLoss:
    """Ψ(θ) = ½ (θ − μ)ᵀ K (θ − μ), with p(θ) ∝ exp(−Ψ/τ) the stationary θ law (§4).

    ``cov`` is the stationary C_θθ = τ K⁻¹; ``sigma2`` the effective σ² = S tr C/tr H and
    ``temperature`` T = η/(2S(1−β)), τ = σ² T. When C_θθ is singular (noise σ²H/S with a
    singular H and λ > 0) K = τ C_θθ⁺ is the pseudo-inverse: the law is a point mass across
    the null directions, where Ψ is formally infinite but K is 0.
    """

    K: np.ndarray
    tau: float
    mu: np.ndarray
    cov: np.ndarray
    sigma2: float
    temperature: float

    def __call__(self, theta: Any) -> np.ndarray:
        e = np.asarray(theta, np.float64) - self.mu
        return 0.5 * np.einsum("...i,ij,...j->...", e, self.K, e)


def modified_loss(prob: Problem, hp: Hyper, noise: Any = "paper", *, sampling: str = "iid",
                  sigma2: float | None = None, model: str = "langevin") -> ModifiedLoss:
    """The modified loss of the stationary θ-marginal (theory.md §4).

    τ = σ²_eff T with T = η/(2S(1 − β)) and σ²_eff = S tr C / tr H (= σ² for C = σ²H/S;
    for ``exact`` noise C is the stationary average κ[Σ(μ) + 𝒢(C_θθ)]), and
    K = τ C_θθ⁻¹, so that for σ²H/S, K = (H + λI)H⁻¹ (isotropic when λ = 0).
    """
    cm = _Continuous(prob, hp, noise, sampling, sigma2, model)
    C, Cbar = cm.stationary()
    P = cm.theta_block(C)
    trH = float(np.trace(cm.H))
    if trH <= 0:
        raise ValueError("modified_loss needs a Hessian with positive trace")
    s2 = cm.batch_size * float(np.trace(Cbar)) / trH
    if s2 <= 0:
        raise ValueError("the noise covariance is zero: the stationary law is a point mass and "
                         "there is no modified loss")
    T = cm.eta / (2 * cm.batch_size * (1 - cm.beta))
    tau = s2 * T
    K = tau * _pinv_psd(P)[0]
    return ModifiedLoss(K=0.5 * (K + K.T), tau=tau, mu=cm.dm.mu.copy(), cov=P, sigma2=s2,
                        temperature=T)


# --- displacement (theory.md §6) -----------------------------------------------------------

def global_displacement(prob: Problem, hp: Hyper, steps: Any, theta0: Any = None, v0: Any = None,
                        noise: Any = "paper", *, start: str = "deterministic",
                        sampling: str = "iid", sigma2: float | None = None,
                        model: str = "langevin") -> np.ndarray:
    """E Δ_k = E‖θ_k − θ_0‖² at SGD ``steps`` (theory.md §6), shape (len(steps),).

    ``start='deterministic'``: from (θ₀, v₀) (defaults μ, 0),
    E Δ = ‖(e^{−At}x₀)_θ − (θ₀ − μ)‖² + tr[Cov(t)]_θθ. ``start='stationary'``:
    Δ(t) = 2 tr C_θθ − 2 tr Λ(t)_θθ with Λ(t) = E[x(0) x(t)ᵀ] the lag covariance (for the
    Langevin model, tr[e^{−At} C_ss]_θθ); θ₀, v₀ must then be omitted.
    """
    start = _checks.choice("start", start, STARTS)
    cm = _Continuous(prob, hp, noise, sampling, sigma2, model)
    steps = _steps(steps)
    d = cm.d
    if start == "stationary":
        if theta0 is not None or v0 is not None:
            raise ValueError("theta0 and v0 apply to start='deterministic' only")
        C = cm.phase_stationary()
        tr0 = np.trace(C[:d, :d])
        return np.array([2 * tr0 - 2 * np.trace(cm.lag(cm.eta * float(k))[:d, :d])
                         for k in steps])
    x0, C0 = _start(cm, theta0, v0, None)
    means, covs = _phase_moments(cm, steps, x0, C0)
    dev = means[:, :d] - x0[:d]
    return np.sum(dev * dev, axis=1) + np.trace(covs[:, :d, :d], axis1=1, axis2=2)


def local_displacement(prob: Problem, hp: Hyper, steps: Any, theta0: Any = None, v0: Any = None,
                       noise: Any = "paper", *, start: str = "deterministic",
                       sampling: str = "iid", sigma2: float | None = None,
                       model: str = "langevin") -> np.ndarray:
    """E δ_k = η² E‖v_k‖² = η²(tr Cov v(t) + ‖E v(t)‖²) at SGD ``steps`` (theory.md §6).

    With the discrete velocity this is E‖θ_k − θ_{k−1}‖², the squared length of the step
    ending at k. ``start='stationary'`` gives the constant η² tr C_ss,vv (see
    :func:`stationary_local_displacement`).
    """
    start = _checks.choice("start", start, STARTS)
    cm = _Continuous(prob, hp, noise, sampling, sigma2, model)
    steps = _steps(steps)
    d, eta = cm.d, cm.eta
    if start == "stationary":
        if theta0 is not None or v0 is not None:
            raise ValueError("theta0 and v0 apply to start='deterministic' only")
        value = eta ** 2 * np.trace(cm.phase_stationary()[d:, d:])
        return np.full(len(steps), value)
    x0, C0 = _start(cm, theta0, v0, None)
    means, covs = _phase_moments(cm, steps, x0, C0)
    mv = means[:, d:]
    return eta ** 2 * (np.trace(covs[:, d:, d:], axis1=1, axis2=2) + np.sum(mv * mv, axis=1))


def stationary_local_displacement(prob: Problem, hp: Hyper, noise: Any = "paper", *,
                                  sampling: str = "iid", sigma2: float | None = None,
                                  model: str = "langevin") -> float:
    """η² tr C_ss,vv; for noise σ²H/S (Langevin) η²σ² tr H/(S(1 − β²)), free of λ (§6)."""
    cm = _Continuous(prob, hp, noise, sampling, sigma2, model)
    d = cm.d
    return float(cm.eta ** 2 * np.trace(cm.phase_stationary()[d:, d:]))
