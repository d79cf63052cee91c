"""Integrators of the continuous-time models of SGD with momentum (theory.md §2–§3).

Two models, in phase space (θ, v) with the discrete kernel's velocity convention:

* ``langevin`` — dθ = v dt, dv = −a [(1 − β) v + ∇L_λ(θ)] dt + a √η F(θ) dW,
  a = 2/(η(1 + β)), F(θ)F(θ)ᵀ = C(θ) the per-step noise covariance of a noise model;
* ``sme`` — dθ = −∇L_λ dt/(1 − β) + √η F(θ) dW/(1 − β), with v(t) = (θ(t) − θ(t − η))/η.

The drift is the problem's own gradient, ∇L_λ(θ) = ∇L(θ) + λθ, by autodiff or by the
problem's closed form; for a quadratic problem (one whose ``linear_drift`` gives H + λI and
μ) it is (H + λI)(θ − μ) with both computed on the host in float64. Solvers: ``em``
(Euler–Maruyama), ``baoab`` (BAOAB with the exact Ornstein–Uhlenbeck sub-step), ``exact``
(Van Loan transition of a quadratic with constant noise) and the diffrax cross-check
(:class:`DiffraxLangevin`). See :mod:`limitdyn.sde` for the front door and the accuracy
of each.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .. import _prng
from .. import noise as noise_models
from ..sgd import State


@dataclasses.dataclass(frozen=True)
class Langevin:
    """Static description of an SDE kernel (hashable: it keys the compile cache).

    One runner step ("tick") covers ``stride`` SGD steps in ``n_sub`` integrator steps of
    size dt (stride = dt/η when dt >= η, else n_sub = η/dt). ``linear_drift``: the drift
    is the precomputed (H + λI)(θ − μ) rather than the problem's gradient. ``fsal``
    (BAOAB, whatever the drift): the force at the end of a step is the force at the start
    of the next (first same as last), kept per trajectory in ``aux`` (dimension ``dim``),
    so each step costs one force evaluation instead of two — for a network one gradient,
    for a quadratic one (K, d) × (d, d) product (B2: BAOAB/EM 1.20 → 1.02 at d = 16).
    """

    model: str
    solver: str
    noise: noise_models.NoiseSpec
    n_sub: int
    stride: int
    linear_drift: bool = True
    fsal: bool = False
    dim: int = 0

    @property
    def n_normals(self) -> int:
        if self.solver == "exact":
            return 2 * self.dim_factor if self.model == "langevin" else self.dim_factor
        return self.noise.n_normals

    @property
    def dim_factor(self) -> int:        # d, from the constant noise factor
        return self.noise.n_normals

    def init_aux(self, key: jax.Array) -> Any:
        return jnp.zeros((self.dim,), jnp.result_type(float)) if self.fsal else ()

    def problem(self, params: Any) -> Any:
        return params["prob"]

    def params_axes(self, params: Any) -> Any:
        return None

    def step_size(self, params: dict[str, Any]) -> jax.Array:
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
        if self.fsal:
            # the first step of a run has no previous force (k is shared by the batch: a
            # real branch, not a select)
            force = lax.cond(k == 0, lambda th: jax.vmap(lambda t: self.force(t, params))(th),
                             lambda th: aux, state.theta)
            return jax.vmap(self.advance_fsal, in_axes=(0, 0, 0, None))(state, z, force,
                                                                         params)
        return jax.vmap(self.advance, in_axes=(0, 0, None))(state, z, params), aux

    # --- one trajectory -----------------------------------------------------------------
    def step(self, key: jax.Array, state: State, aux: Any, k: jax.Array,
             params: dict[str, Any]) -> tuple[State, Any]:
        z = jax.random.normal(key, (self.n_sub * self.n_normals,), state.theta.dtype)
        z = z.reshape(self.n_sub, self.n_normals)
        if self.fsal:
            force = jnp.where(k == 0, self.force(state.theta, params), aux)
            return self.advance_fsal(state, z, force, params)
        return self.advance(state, z, params), aux

    def advance_fsal(self, state: State, z: jax.Array, force: jax.Array,
                     params: dict[str, Any]) -> tuple[State, jax.Array]:
        """BAOAB over ``n_sub`` sub-steps reusing each end force: (state, final force)."""
        def sub(i, carry):
            st, f = carry
            return self.baoab_fsal(st, f, z[i], params)
        return lax.fori_loop(0, self.n_sub, sub, (state, force))

    def baoab_fsal(self, state: State, force: jax.Array, z: jax.Array,
                   p: dict[str, Any]) -> tuple[State, jax.Array]:
        """One BAOAB step given the force at its start; returns the force at its end."""
        theta, v = state
        dt = p["dt"]
        v = v - 0.5 * dt * p["force"] * force
        theta = theta + 0.5 * dt * v
        v = p["ou_decay"] * v + p["ou_noise"] * noise_models.apply(
            self.noise, p["noise"], p["prob"], theta, z)
        theta = theta + 0.5 * dt * v
        force = self.force(theta, p)
        v = v - 0.5 * dt * p["force"] * force
        return State(theta, v), force

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

    def force(self, theta: jax.Array, p: dict[str, Any]) -> jax.Array:
        """∇L_λ(θ)."""
        if self.linear_drift:
            # (θ − μ)ᵀ(H + λI), H + λI symmetric: under vmap a (K, d) × (d, d) product whose
            # output needs no transpose
            return (theta - p["mu"]) @ p["curvature"]
        return p["prob"].gradient(theta) + p["weight_decay"] * theta

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
        force = lambda th: self.force(th, p)                                             # noqa: E731
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
class DiffraxLangevin(Langevin):
    """The diffrax cross-check: one batched-state ``diffeqsolve`` per runner step.

    Its noise is one Brownian path for the whole batch (drawn from trajectory 0's key), so
    unlike the other solvers its result depends on the number of trajectories.
    """

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
            if self.linear_drift:
                return (theta - p["mu"][None, :]) @ p["curvature"]     # symmetric H + λI
            return jax.vmap(lambda th: self.force(th, p))(theta)

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
