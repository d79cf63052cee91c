"""Continuous-time models of SGD with momentum and their integrators (theory.md §2–§3).

Two models, both in phase space (θ, v) with the discrete kernel's velocity convention and
time axis (t = η k, horizons in SGD steps):

* ``langevin`` — the underdamped Langevin equation of Kunin et al.::

      dθ = v dt
      dv = −a [(1 − β) v + ∇L_λ(θ)] dt + a √η F(θ) dW,     a = 2/(η(1 + β)),

  F(θ)F(θ)ᵀ = C(θ) the per-step gradient-noise covariance of a noise model
  (:mod:`limitdyn.noise`). The friction on v is 2γ = a(1 − β).
* ``sme`` — the first-order stochastic modified equation of heavy-ball SGD,
  dθ = −∇L_λ dt/(1 − β) + √η F(θ) dW/(1 − β) (Li–Tai–E's dθ = −∇L_λ dt + √(ηC) dW at
  β = 0; the factors make the heavy ball's effective step η/(1 − β)). Its velocity is
  defined like the discrete one, v(t) = (θ(t) − θ(t − η))/η, the displacement over the
  last SGD step per unit learning rate (so it needs dt ≤ η).

Integrators (``solver``):

* ``em`` — Euler–Maruyama (weak order 1). Strongly biased on the underdamped model even
  at the default step: on the test problem of ``tests/test_sde_statistics.py``
  (h·ω_max = 0.08) its stationary Cov θ is 21% and Cov v 30% too large. Use BAOAB.
* ``baoab`` — the BAOAB splitting (Leimkuhler–Matthews) with the Ornstein–Uhlenbeck
  sub-step solved exactly: v ← e^{−2γh}v + a√η √((1 − e^{−4γh})/(4γ)) F(θ) z. Weak order 2;
  for a quadratic with constant noise its position marginal is exact at any step.
  Langevin model only.
* ``exact`` — exact in distribution for quadratic problems with constant noise:
  x ← e^{−Ah}x + N(0, Q_h) with Q_h from Van Loan's block exponential (theory.md §3).
* ``diffrax`` — one batched-state ``diffrax.diffeqsolve`` per SGD step with an
  ``UnsafeBrownianPath`` (Heun by default): a cross-check, not the fast path. Its noise
  is one Brownian path for the whole batch (drawn from trajectory 0's key), so unlike the
  other solvers its result depends on the number of trajectories.

The drift of a quadratic problem is −(H + λI)(θ − μ) (exact for linear regression), with
H + λI and μ computed on the host in float64.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax import lax

from . import _checks, _meta, _prng, stability
from . import checkpoint as ckpt
from . import noise as noise_models
from .hyper import Hyper
from .problems import LinearRegression, Quadratic, _as_key, hessian64
from .result import Result
from .runner import (
    _start_points,
    build_result,
    default_chunks,
    make_schedule,
    run_ensemble,
    trajectory_mesh,
    validate_run_args,
)
from .sgd import State

MODELS = ("langevin", "sme")
SOLVERS = ("em", "baoab", "exact", "diffrax")
# Default step: h·ω_max <= 0.1 for em/baoab/diffrax (BAOAB's velocity bias is ≈ (hω)²/4).
DEFAULT_STEP_RESOLUTION = 0.1


@dataclasses.dataclass(frozen=True)
class SDESpec:
    """Static description of an SDE kernel (hashable: it keys the compile cache).

    One runner step ("tick") covers ``stride`` SGD steps in ``n_sub`` integrator steps of
    size dt (stride = dt/η when dt >= η, else n_sub = η/dt).
    """

    model: str
    solver: str
    noise: noise_models.NoiseSpec
    n_sub: int
    stride: int

    @property
    def n_normals(self) -> int:
        if self.solver == "exact":
            return 2 * self.dim_factor if self.model == "langevin" else self.dim_factor
        return self.noise.n_normals

    @property
    def dim_factor(self) -> int:        # d, from the constant noise factor
        return self.noise.n_normals

    def init_aux(self, key: jax.Array) -> Any:
        return ()

    def lr(self, params: dict[str, Any]) -> jax.Array:
        return params["lr"]

    # --- the whole batch: one fused draw of the step's normals ------------------------
    def batched_step(self, traj_keys: jax.Array, state: State, aux: Any, k: jax.Array,
                     params: dict[str, Any]) -> tuple[State, Any]:
        """All trajectories, one step; the same numbers as ``vmap(step)`` with keys
        ``fold_in(key_i, k)``, drawn by :mod:`limitdyn._prng` where that is bit-identical."""
        dtype = state.theta.dtype
        if not _prng.available(traj_keys, dtype):
            keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(traj_keys, k)
            return jax.vmap(self.step, in_axes=(0, 0, 0, None, None))(keys, state, aux, k,
                                                                        params)
        z = _prng.trajectory_normals(traj_keys, k, self.n_sub * self.n_normals)
        z = z.reshape(state.theta.shape[0], self.n_sub, self.n_normals)
        return jax.vmap(self.advance, in_axes=(0, 0, None))(state, z, params), aux

    # --- one trajectory -----------------------------------------------------------------
    def step(self, key: jax.Array, state: State, aux: Any, k: jax.Array,
             params: dict[str, Any]) -> tuple[State, Any]:
        z = jax.random.normal(key, (self.n_sub * self.n_normals,), state.theta.dtype)
        return self.advance(state, z.reshape(self.n_sub, self.n_normals), params), aux

    def advance(self, state: State, z: jax.Array, params: dict[str, Any]) -> State:
        """One runner step (``n_sub`` integrator steps) driven by normals z (n_sub, r)."""
        theta_before = state.theta
        if self.n_sub == 1:
            state = self.substep(state, z[0], params)
        else:
            state = lax.fori_loop(0, self.n_sub,
                                  lambda i, s: self.substep(s, z[i], params), state)
        if self.model == "sme":
            state = State(state.theta, (state.theta - theta_before) / params["lr"])
        return state

    def substep(self, state: State, z: jax.Array, p: dict[str, Any]) -> State:
        """One integrator step of size dt driven by the standard normals ``z``."""
        theta, v = state
        if self.solver == "exact":
            if self.model == "sme":
                e = theta - p["mu"]
                return State(p["mu"] + p["transition"] @ e + p["cov_factor"] @ z, v)
            x = jnp.concatenate([theta - p["mu"], v])
            x = p["transition"] @ x + p["cov_factor"] @ z
            d = theta.shape[0]
            return State(p["mu"] + x[:d], x[d:])
        kick = lambda th: noise_models.apply(self.noise, p["noise"], p["prob"], th, z)  # noqa: E731
        force = lambda th: p["curvature"] @ (th - p["mu"])                               # noqa: E731
        dt = p["dt"]
        if self.model == "sme":       # Euler–Maruyama of the first-order equation
            return State(theta - p["force"] * force(theta) * dt
                         + p["noise_amp"] * jnp.sqrt(dt) * kick(theta), v)
        if self.solver == "em":
            v_new = (v - (p["friction"] * v + p["force"] * force(theta)) * dt
                     + p["noise_amp"] * jnp.sqrt(dt) * kick(theta))
            return State(theta + v * dt, v_new)
        # BAOAB: half kick, half drift, exact OU, half drift, half kick.
        v = v - 0.5 * dt * p["force"] * force(theta)
        theta = theta + 0.5 * dt * v
        v = p["ou_decay"] * v + p["ou_noise"] * kick(theta)
        theta = theta + 0.5 * dt * v
        v = v - 0.5 * dt * p["force"] * force(theta)
        return State(theta, v)


@dataclasses.dataclass(frozen=True)
class DiffraxSpec(SDESpec):
    """The diffrax cross-check: one batched-state ``diffeqsolve`` per runner step."""

    diffrax_solver: Any = None

    def batched_step(self, traj_keys: jax.Array, state: State, aux: Any, k: jax.Array,
                     params: dict[str, Any]) -> tuple[State, Any]:
        import diffrax
        import lineax

        p = params
        n_traj = state.theta.shape[0]
        r = self.noise.n_normals
        dtype = state.theta.dtype
        solver = self.diffrax_solver
        path = diffrax.UnsafeBrownianPath(shape=(n_traj, r),
                                          key=jax.random.fold_in(traj_keys[0], k))
        kick = jax.vmap(lambda th, w: noise_models.apply(self.noise, p["noise"], p["prob"],
                                                         th, w))

        def force(theta):
            return (theta - p["mu"][None, :]) @ p["curvature"]     # symmetric H + λI

        if self.model == "sme":
            def drift(t, y, args):
                return -p["force"] * force(y)

            def diffusion(t, y, args):
                return lineax.FunctionLinearOperator(
                    lambda w: p["noise_amp"] * kick(y, w), jax.ShapeDtypeStruct((n_traj, r), dtype))
            y0 = state.theta
        else:
            def drift(t, y, args):
                theta, v = y
                return v, -(p["friction"] * v + p["force"] * force(theta))

            def diffusion(t, y, args):
                theta, _ = y
                return lineax.FunctionLinearOperator(
                    lambda w: (jnp.zeros_like(theta), p["noise_amp"] * kick(theta, w)),
                    jax.ShapeDtypeStruct((n_traj, r), dtype))
            y0 = (state.theta, state.velocity)
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, path))
        t1 = self.n_sub * p["dt"]
        sol = diffrax.diffeqsolve(terms, solver, t0=jnp.zeros((), dtype), t1=t1, dt0=p["dt"],
                                  y0=y0, saveat=diffrax.SaveAt(t1=True),
                                  max_steps=self.n_sub + 1,
                                  stepsize_controller=diffrax.ConstantStepSize(),
                                  adjoint=diffrax.ForwardMode())
        y1 = jax.tree_util.tree_map(lambda a: a[0], sol.ys)
        if self.model == "sme":
            return State(y1, (y1 - state.theta) / p["lr"]), aux
        return State(*y1), aux


# --- host-side setup -------------------------------------------------------------------

def _van_loan(A: np.ndarray, two_D: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """e^{−Ah} and Q_h = ∫₀ʰ e^{−As} 2D e^{−Aᵀs} ds (Van Loan's block exponential).

    The block [[A, 2D], [0, −Aᵀ]] contains the growing e^{Ah}, so it is exponentiated only
    over a short step h/2^m (‖A‖·h/2^m <= 1/2) and then doubled m times with
    Q_{2s} = Q_s + e^{−As} Q_s e^{−Aᵀs}: accurate to rounding at any h.
    """
    n = A.shape[0]
    norm = float(np.linalg.norm(A, 1)) * h
    m = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0
    s = h / 2 ** m
    block = np.zeros((2 * n, 2 * n))
    block[:n, :n], block[:n, n:], block[n:, n:] = A, two_D, -A.T
    G = scipy.linalg.expm(block * s)
    transition = scipy.linalg.expm(-A * s)
    Q = transition @ G[:n, n:]
    for _ in range(m):
        Q = Q + transition @ Q @ transition.T
        transition = transition @ transition
    return transition, 0.5 * (Q + Q.T)


def _psd_factor(Q: np.ndarray) -> np.ndarray:
    evals, evecs = np.linalg.eigh(Q)
    return evecs * np.sqrt(np.clip(evals, 0.0, None))


def _top_curvature(curv: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(curv)[-1])


def _step_layout(model: str, solver: str, hp: Hyper, dt: Any,
                 curv: np.ndarray) -> tuple[float, int, int]:
    """(dt, n_sub, stride) from the requested dt (default by the h·ω_max rule)."""
    eta, beta = hp.lr, hp.momentum
    if dt is None:
        if solver == "exact":
            return eta, 1, 1
        h_top = _top_curvature(curv)
        rate = (math.sqrt(2 * h_top / (eta * (1 + beta))) if model == "langevin"
                else h_top / (1 - beta))
        n_sub = max(1, math.ceil(eta * rate / DEFAULT_STEP_RESOLUTION - 1e-9))
        return eta / n_sub, n_sub, 1
    dt = _checks.finite_float("dt", dt, low=0.0, low_open=True)
    ratio = dt / eta
    if ratio >= 1 - 1e-9:
        stride = round(ratio)
        if abs(ratio - stride) > 1e-9 * ratio:
            raise ValueError(f"dt must be an integer multiple or an integer fraction of the "
                             f"learning rate η={eta:g} (so SDE steps land on SGD steps); got "
                             f"dt={dt:g} = {ratio:.6g}·η")
        if model == "sme" and stride > 1:
            raise ValueError(f"the sme model defines v(t) = (θ(t) − θ(t − η))/η, so it needs "
                             f"dt <= η={eta:g}; got dt={dt:g}")
        return eta * stride, 1, stride
    n_sub = round(1 / ratio)
    if abs(1 / ratio - n_sub) > 1e-9 / ratio:
        raise ValueError(f"dt must be an integer multiple or an integer fraction of the "
                         f"learning rate η={eta:g}; got dt={dt:g} = η/{1 / ratio:.6g}")
    return eta / n_sub, n_sub, 1


def generator(prob, hp: Hyper, model: str, noise: Any, *, sampling: str,
              sigma2: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(A, 2D) of dx = −A x dt + √(2D) dW for a constant noise (theory.md §3)."""
    from .theory import continuous

    return (continuous.drift_matrix(prob, hp, model=model),
            continuous.diffusion_matrix(prob, hp, noise, sampling=sampling, sigma2=sigma2,
                                        model=model))


def sde_params(prob, hp: Hyper, model: str, solver: str, noise: Any, *, sampling: str,
               sigma2: float | None, dt: float, dtype) -> tuple[noise_models.NoiseSpec, dict]:
    """Resolve the noise and precompute the integrator's constants (float64 on the host)."""
    eta, beta, lam = hp.lr, hp.momentum, hp.weight_decay
    spec_noise, noise_params = noise_models.resolve(prob, hp, noise, sampling=sampling,
                                                    sigma2=sigma2, dtype=dtype)
    d = prob.dim
    curv = hessian64(prob) + lam * np.eye(d)
    mu = np.asarray(prob.minimiser(lam), np.float64)
    if model == "langevin":
        a = 2.0 / (eta * (1 + beta))
        friction, amp = a * (1 - beta), a * math.sqrt(eta)
    else:   # dθ = −∇L_λ dt/(1 − β) + √η F dW/(1 − β)
        a = 1.0 / (1 - beta)
        friction, amp = 0.0, math.sqrt(eta) / (1 - beta)
    p: dict[str, Any] = {"lr": eta, "dt": dt, "mu": mu, "curvature": curv, "force": a,
                         "friction": friction, "noise_amp": amp}
    if solver == "baoab":
        decay = math.exp(-friction * dt)
        p["ou_decay"] = decay
        p["ou_noise"] = amp * math.sqrt(-math.expm1(-2 * friction * dt) / (2 * friction))
    if solver == "exact":
        A, two_D = generator(prob, hp, model, noise, sampling=sampling, sigma2=sigma2)
        transition, Q = _van_loan(A, two_D, dt)
        p["transition"], p["cov_factor"] = transition, _psd_factor(Q)
    p = {k: jnp.asarray(v, dtype) for k, v in p.items()}
    p["noise"] = noise_params
    p["prob"] = prob
    return spec_noise, p


def _check_solver_noise(model: str, solver: str, noise: Any, prob) -> None:
    state_dependent = callable(noise) or (isinstance(noise, str) and noise == "exact"
                                          and isinstance(prob, LinearRegression))
    if solver == "exact" and state_dependent:
        raise ValueError("solver 'exact' needs a constant noise model ('paper', 'frozen', "
                         "'isotropic' or a (d, d) array); state-dependent noise ('exact', a "
                         "factor function) needs solver 'em', 'baoab' or 'diffrax'")
    if solver == "baoab" and model == "sme":
        raise ValueError("solver 'baoab' integrates the underdamped (langevin) model; for "
                         "model 'sme' use 'em', 'exact' or 'diffrax'")


def simulate_sde(prob: LinearRegression | Quadratic, hp: Hyper, key: Any, n_traj: int,
                 n_steps: int, noise: Any = "exact", solver: str = "baoab",
                 dt: float | None = None, theta0: Any = None, v0: Any = None,
                 burn_in: int | None = None, *, model: str = "langevin", sampling: str = "iid",
                 sigma2: float | None = None, diffrax_solver: Any = None,
                 record: str | Any = "log", n_record: int = 50,
                 window_every: int | None = None, n_groups: int | None = None,
                 keep_trajectories: bool = False, n_chunks: int | None = None,
                 progress: bool | None = None,
                 checkpoint: str | os.PathLike | None = None, prng: str | None = None,
                 devices: int | None = None) -> Result:
    """Simulate ``n_traj`` trajectories of the continuous-time model of SGD with momentum.

    The result has the same form as :func:`limitdyn.simulate_sgd`'s: statistics of (θ, v)
    at recorded SGD steps k (time t = η k), window averages after ``burn_in``.

    Args:
        prob, hp, key, n_traj, theta0, v0, burn_in: as in :func:`limitdyn.simulate_sgd`;
            ``n_steps`` is the horizon in SGD steps.
        noise: ``"paper"``, ``"frozen"``, ``"exact"`` (default), ``"isotropic"``, a constant
            (d, d) per-step covariance, or a function θ ↦ F(θ) (d, r) with C(θ) = F Fᵀ
            (see :mod:`limitdyn.noise`).
        solver: ``"baoab"`` (default), ``"em"``, ``"exact"`` or ``"diffrax"``.
        dt: integrator step in continuous time; must be η·m or η/m for an integer m.
            Default: η for ``exact``; otherwise η/m with m the smallest integer giving
            h·ω_max <= 0.1 (h·(h_max + λ)/(1 − β) <= 0.1 for ``sme``).
        model: ``"langevin"`` (underdamped, default) or ``"sme"`` (first order).
        sampling: ``"iid"`` or ``"replacement"`` — the κ of the ``frozen``/``exact`` noise.
        sigma2: σ² of the ``paper``/``isotropic`` noise (defaults in :mod:`limitdyn.noise`).
        diffrax_solver: a diffrax solver instance for ``solver="diffrax"``. Default
            ``diffrax.Heun()`` (weak order 2 here: the Langevin noise depends on θ only, so
            Itô and Stratonovich agree), ``diffrax.Euler()`` for the SME with state-dependent
            noise. Solvers that vmap the diffusion over time (the SRK family: ShARK, SRA1)
            cannot take the batched linear-operator diffusion and are not supported.
        record, n_record, window_every, n_groups, keep_trajectories, n_chunks, progress,
        checkpoint, prng, devices: as in :func:`limitdyn.simulate_sgd`; ``record``, ``burn_in`` and
            ``window_every`` count SGD steps and are rounded to whole runner steps.

    Returns:
        A :class:`Result`; ``config['kind'] == 'sde'``. Its ``stationary_lag_cov`` pairs
        states one runner step (``config['lag_steps']`` SGD steps) apart.
    """
    n_traj, n_steps, burn_in, n_record, n_groups = validate_run_args(
        prob, n_traj, n_steps, burn_in, n_record, n_groups, progress)
    if not isinstance(hp, Hyper):
        raise TypeError(f"hp must be a limitdyn.Hyper, got {type(hp).__name__}")
    model = _checks.choice("model", model, MODELS)
    solver = _checks.choice("solver", solver, SOLVERS)
    if prob.n_examples is None:
        if sampling != "iid":
            raise ValueError(f"sampling must be 'iid' for a Quadratic problem, got {sampling!r}")
    else:
        sampling = _checks.choice("sampling", sampling, ("iid", "replacement"))
    _check_solver_noise(model, solver, noise, prob)
    if diffrax_solver is not None and solver != "diffrax":
        raise ValueError("diffrax_solver applies to solver='diffrax' only")
    dtype = np.dtype(jnp.result_type(float))
    lam = hp.weight_decay
    curv = hessian64(prob) + lam * np.eye(prob.dim)
    dt, n_sub, stride = _step_layout(model, solver, hp, dt, curv)
    if n_steps % stride:
        raise ValueError(f"n_steps={n_steps} must be a multiple of dt/η={stride}")
    noise_spec, params = sde_params(prob, hp, model, solver, noise, sampling=sampling,
                                    sigma2=sigma2, dt=dt, dtype=dtype)
    if solver == "diffrax":
        import diffrax
        if diffrax_solver is None:
            # Heun is weak order 2 for noise that does not depend on the state it drives (the
            # Langevin noise depends on θ only); the SME with state-dependent noise needs Itô.
            diffrax_solver = (diffrax.Euler() if model == "sme" and noise_spec.kind != "constant"
                              else diffrax.Heun())
        if not isinstance(diffrax_solver, diffrax.AbstractSolver):
            raise TypeError(f"diffrax_solver must be a diffrax solver instance, got "
                            f"{type(diffrax_solver).__name__}")
        spec = DiffraxSpec(model, solver, noise_spec, n_sub, stride, diffrax_solver)
    else:
        spec = SDESpec(model, solver, noise_spec, n_sub, stride)
    checkpoint = ckpt.resolve(checkpoint)
    if progress is None:   # a bar for runs of more than a few seconds
        progress = n_traj * n_steps * n_sub * noise_spec.n_normals > 5 * 10**7
    n_chunks = default_chunks(progress, checkpoint) if n_chunks is None else _checks.integer(
        "n_chunks", n_chunks, low=1)
    n_ticks = n_steps // stride
    if not isinstance(record, str):
        rec = _checks.real_array("record", record, ndim=1)
        if np.any(rec % stride):
            raise ValueError(f"recorded steps must be multiples of dt/η={stride}")
        record = rec // stride
    window_every = None if window_every is None else max(1, _checks.integer(
        "window_every", window_every, low=1) // stride)
    schedule = make_schedule(n_ticks, burn_in // stride, record, n_record, window_every,
                             min(n_chunks, n_ticks))
    mu = np.asarray(prob.minimiser(lam), np.float64)
    theta_start = jnp.asarray(_start_points("theta0", theta0, mu, n_traj), dtype)
    v_start = jnp.asarray(_start_points("v0", v0, np.zeros_like(mu), n_traj), dtype)
    key = _prng.with_impl(_as_key(key), prng)
    mesh = trajectory_mesh(n_traj, devices, str(jax.random.key_impl(key)))
    stats, timings = run_ensemble(spec, params, key, theta_start, v_start, schedule,
                                  n_groups=n_groups, keep_trajectories=bool(keep_trajectories),
                                  progress=progress, description=f"simulate_sde[{solver}]",
                                  checkpoint=checkpoint, mesh=mesh)
    if int(stats["n_alive"][-1]) == 0:
        raise stability.DivergenceError(
            f"simulate_sde: all {n_traj} trajectories diverged within {n_steps} steps "
            f"(solver {solver!r}, dt={dt:g}); the continuous model is stable for any lr, so "
            f"the integrator is: use a smaller dt, or solver 'exact'/'baoab'")
    config = {
        "kind": "sde", "model": model, "solver": solver, "noise": noise_spec.name,
        "sigma2": sigma2, "dt": dt, "substeps_per_step": n_sub, "problem": repr(prob),
        "dim": prob.dim, "n_examples": prob.n_examples, "hyper": hp.to_dict(),
        "sampling": sampling, "n_traj": n_traj, "n_steps": n_steps,
        "burn_in": int(schedule.burn_in * stride), "dtype": str(dtype),
        "window_every": schedule.window_every * stride,
        "n_window_samples": len(schedule.window_steps), "n_groups": n_groups,
        "record": "explicit" if not isinstance(record, str) else record,
        "theta0": "minimiser" if theta0 is None else "given",
        "v0": "zero" if v0 is None else "given",
    }
    if solver == "diffrax":
        config["diffrax_solver"] = type(diffrax_solver).__name__
    return build_result(schedule, stats, config, _meta.environment(key) | timings,
                        stride=stride)
