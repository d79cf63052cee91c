"""The SDE with noise of machine-learning type (Wojtowytsch; theory.md §8), Itô::

    dθ = −∇L(θ) dt + √(2T) S(θ) dW_t

``noise``: ``homogeneous`` (S Sᵀ = I), ``ml`` (L(θ) I), ``ml-curvature`` (L(θ) G(θ), G the
Gauss–Newton matrix of a residual problem L = (c/2)‖r‖²) and ``sgd`` (Σ(θ)/2: SGD's own
noise, T = ηκ). ``solver``: ``em`` (Euler–Maruyama at step dt) or ``time-change`` (step
dt / max(L(θ), l_ref): uniform steps in the clock dτ = max(L, l_ref) dt). ``increments``:
``gaussian`` or ``rademacher`` (±1: the simplified weak Euler scheme, same weak order 1).

The state is (θ, v) with v = (θ_{n+1} − θ_n)/dt the step's increment over the nominal dt
(before wrapping onto the landscape's fundamental domain); ``aux`` is the path's own time
t (per path: the time-change clock differs between paths). A path stops moving at
``t_end``. Path i's normals at step n are ``normal(fold_in(key_i, n))``, as for every
dynamics of the runner.

Problems: anything with ``loss``/``gradient`` for ``homogeneous``/``ml``; ``sgd`` needs a
:class:`~limitdyn.FiniteSum`; ``ml-curvature`` a residual problem (``linearize(theta)`` →
(r, u ↦ Jᵀu) and ``scale`` c), such as :class:`limitdyn.mlnoise.CosineLandscape` and
:class:`limitdyn.mlnoise.GainRegression`, which also give closed forms for the others.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .. import _prng
from ..sgd import State

NOISES = ("homogeneous", "ml", "ml-curvature", "sgd")
SOLVERS = ("em", "time-change")
INCREMENTS = ("gaussian", "rademacher")


def signs(keys: jax.Array, step: jax.Array, n: int) -> jax.Array:
    """(K, n) independent ±1 (float32): the bits of threefry2x32 on (key_i, step), counter.

    The two-point increments of the simplified weak Euler scheme (Kloeden & Platen §14.1):
    mean 0, variance 1, same weak order 1 as Gaussian Euler–Maruyama, 64 per hash.
    """
    data = jax.random.key_data(keys)
    zero = jnp.zeros_like(data[:, 0])
    a, b = _prng.threefry2x32(data[:, 0], data[:, 1], zero,
                              jnp.broadcast_to(jnp.asarray(step).astype(jnp.uint32), zero.shape))
    words = -(-n // 64)
    counter = lax.iota(jnp.uint32, words)[None, :]
    y0, y1 = _prng.threefry2x32(a[:, None], b[:, None], jnp.zeros_like(counter), counter)
    bits = jnp.stack([y0, y1], axis=-1).reshape(y0.shape[0], 2 * words)      # (K, 2w)
    shifts = jnp.arange(32, dtype=jnp.uint32)
    flat = ((bits[:, :, None] >> shifts[None, None, :]) & jnp.uint32(1)).reshape(
        y0.shape[0], 64 * words)[:, :n]
    return 1.0 - 2.0 * flat.astype(jnp.float32)


def loss_and_gradient(prob: Any, theta: jax.Array):
    """(L, ∇L, r, vjp): from the residual form where the problem has one (closed forms)."""
    if hasattr(prob, "linearize"):
        r, vjp = prob.linearize(theta)
        L = 0.5 * prob.scale * jnp.sum(r * r)
        return L, vjp(prob.scale * r)[0], r, vjp
    L, g = jax.value_and_grad(prob.loss)(theta)
    return L, g, None, None


@dataclasses.dataclass(frozen=True)
class MLNoiseSDE:
    """Static description of the ML-noise kernel (hashable). ``params``: ``prob``, ``T``,
    ``dt``, ``l_ref``, ``t_end`` (traced)."""

    noise: str
    solver: str
    increments: str
    n_normals: int

    def init_aux(self, key: jax.Array) -> jax.Array:
        return jnp.zeros((), jnp.float32)            # the path's time t

    def problem(self, params: Any) -> Any:
        return params["prob"]

    def params_axes(self, params: Any) -> Any:
        return None

    def step_size(self, params: dict[str, Any]) -> jax.Array:
        return params["dt"]

    def increment(self, prob: Any, theta: jax.Array, L, r, vjp, z: jax.Array) -> jax.Array:
        """S(θ)ξ for the noise model (before the factor √(2T dt))."""
        if self.noise == "homogeneous":
            return z
        if self.noise == "ml":
            return jnp.sqrt(L) * z
        if self.noise == "ml-curvature":               # S = √L·√c Jᵀ: S Sᵀ = L·G
            return jnp.sqrt(L * prob.scale) * vjp(z)[0]
        if vjp is not None:                             # sgd, residual form: Cov Σ/2
            zc = z - jnp.mean(z)
            return jnp.sqrt(0.5 * prob.scale) * vjp(r * zc)[0]
        return prob.noise_sample(theta, z) / jnp.sqrt(2.0)

    def step_length(self, L: jax.Array, p: dict[str, Any]) -> jax.Array:
        if self.solver == "em":
            return p["dt"] * jnp.ones_like(L)
        return p["dt"] / jnp.maximum(L, p["l_ref"])

    def path(self, theta: jax.Array, t: jax.Array, z: jax.Array, p: dict[str, Any]):
        prob = p["prob"]
        L, grad, r, vjp = loss_and_gradient(prob, theta)
        dt = self.step_length(L, p)
        inc = -grad * dt + jnp.sqrt(2 * p["T"] * dt) * self.increment(prob, theta, L, r, vjp,
                                                                      z)
        new = theta + inc
        if hasattr(prob, "wrap"):
            new = prob.wrap(new)
        move = t < p["t_end"]                        # finished paths wait for the others
        return (State(jnp.where(move, new, theta), jnp.where(move, inc / p["dt"], 0.0)),
                t + jnp.where(move, dt, 0.0))

    def draws(self, traj_keys: jax.Array, k: jax.Array, dtype) -> jax.Array:
        if self.increments == "rademacher":
            return signs(traj_keys, k, self.n_normals).astype(dtype)
        if _prng.available(traj_keys, dtype):
            return _prng.trajectory_normals(traj_keys, k, self.n_normals)
        return jax.vmap(lambda key: jax.random.normal(jax.random.fold_in(key, k),
                                                      (self.n_normals,), dtype))(traj_keys)

    def batched_step(self, traj_keys: jax.Array, state: State, aux: jax.Array, k: jax.Array,
                     params: dict[str, Any]) -> tuple[State, jax.Array]:
        z = self.draws(traj_keys, k, state.theta.dtype)
        return jax.vmap(lambda th, t, zz: self.path(th, t, zz, params))(state.theta, aux, z)

    def step(self, key, state, aux, k, params):   # one path (for completeness)
        z = jax.random.normal(key, (self.n_normals,), state.theta.dtype)
        return self.path(state.theta, aux, z, params)

    def clock(self, state: State, aux: jax.Array, k: jax.Array, params: dict[str, Any]):
        """(t, dt of the next step) per path; dt = 0 once a path reached t_end."""
        def one(theta, t):
            L = loss_and_gradient(params["prob"], theta)[0]
            return t, jnp.where(t < params["t_end"], self.step_length(L, params), 0.0)
        return jax.vmap(one)(state.theta, aux)
