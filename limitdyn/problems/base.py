"""The problem protocol: what every dynamics in limitdyn needs to know about a loss.

A **problem** is a pytree (an :class:`equinox.Module`: its array fields are leaves, so new
data of the same shapes never recompiles a kernel) whose methods work inside
``jit``/``vmap``. Two base classes:

* :class:`Problem` — a loss ``L(θ)`` on flat parameter vectors θ ∈ ℝᵈ. Subclasses give
  ``loss(theta)``; ``gradient`` defaults to autodiff. Without examples to sample, one SGD
  step sees ``minibatch_gradient(key, theta, None)`` — by default the exact gradient
  (gradient descent); a noisy model overrides it and uses ``key``.
* :class:`FiniteSum` — ``L(θ) = (1/N) Σ_i ℓ_i(θ)``. A subclass gives only ``n_examples``
  and ``example_losses(theta, idx)`` (the losses ℓ_i of the examples in an integer index
  array); everything else is derived: the minibatch gradient a step sees, per-example
  gradients, the gradient-noise covariance Σ(θ) = (1/N) Σ_i ∇ℓ_i∇ℓ_iᵀ − ∇L∇Lᵀ
  (theory.md §1), and the exact-noise sample Gᵀ(z − z̄)/√N (theory.md §2) by **one
  vector–Jacobian product** of θ ↦ (ℓ_1 … ℓ_N) — O(Nd), no d × d matrix.

Writing your own problem (no registration; the class is a pytree by being a subclass)::

    class Logistic(ld.FiniteSum):
        X: jax.Array
        y: jax.Array

        @property
        def n_examples(self):
            return self.X.shape[0]

        def example_losses(self, theta, idx):
            return jnp.logaddexp(0.0, -self.y[idx] * (self.X[idx] @ theta))

    res = ld.simulate_sgd(Logistic(X, y), hp, key, n_traj=4096, n_steps=2000,
                          theta0=jnp.zeros(d))

Optional capabilities, asked for only where needed (a one-line error names what is
missing): ``hessian()`` and ``minimiser(weight_decay)`` (the stability pre-check, the
``paper``/``frozen`` noise models, the ``exact`` SDE stepper and the analytic theory),
``dim`` (else taken from the start point), ``linear_drift(weight_decay)`` (a quadratic's
closed-form drift, used by the SDE integrators instead of autodiff).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class UnsupportedError(ValueError):
    """A problem cannot supply something a method asked for (a Hessian, a minimiser, …)."""


class Problem(eqx.Module):
    """A loss on flat parameter vectors θ ∈ ℝᵈ (see the module docstring)."""

    @property
    def dim(self) -> int | None:
        """Number of parameters d, or None when only the start point tells."""
        return None

    @property
    def n_examples(self) -> int | None:
        """Examples a sampler draws minibatches from; None: no minibatches (the step's key
        goes to :meth:`minibatch_gradient` instead)."""
        return None

    def loss(self, theta: Array) -> Array:
        """The training loss L(θ) (a scalar)."""
        raise NotImplementedError(f"{type(self).__name__} must define loss(theta)")

    def gradient(self, theta: Array) -> Array:
        """∇L(θ) (autodiff of :meth:`loss` unless overridden)."""
        return jax.grad(self.loss)(theta)

    def minibatch_gradient(self, key: Array, theta: Array, batch: Any = None) -> Array:
        """What one SGD step sees. Default: the exact gradient (no noise)."""
        del key, batch
        return self.gradient(theta)

    # --- optional capabilities ----------------------------------------------------------
    def hessian(self) -> Array:
        """The (constant) Hessian H, for problems that have one."""
        raise UnsupportedError(f"{_name(self)} has no closed-form Hessian")

    def minimiser(self, weight_decay: float = 0.0) -> Array:
        """The minimiser of L_λ = L + (λ/2)‖θ‖², for problems that know it."""
        raise UnsupportedError(f"{_name(self)} has no closed-form minimiser")

    def minimiser64(self, weight_decay: float = 0.0) -> np.ndarray:
        """:meth:`minimiser` as float64 numpy (exact problems compute it from float64 data)."""
        return np.asarray(self.minimiser(weight_decay), np.float64)

    def linear_drift(self, weight_decay: float = 0.0) -> tuple[np.ndarray, np.ndarray] | None:
        """(H + λI, μ) in float64 when ∇L_λ(θ) = (H + λI)(θ − μ) exactly, else None."""
        return None


class FiniteSum(Problem):
    """``L(θ) = (1/N) Σ_i ℓ_i(θ)``: give ``n_examples`` and ``example_losses(theta, idx)``."""

    @property
    def n_examples(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define the property n_examples")

    def example_losses(self, theta: Array, idx: Array) -> Array:
        """Losses ℓ_i(θ) of the examples ``idx`` (an integer array), shape ``idx.shape``."""
        raise NotImplementedError(f"{type(self).__name__} must define "
                                  "example_losses(theta, idx)")

    # --- derived ------------------------------------------------------------------------
    def _all(self) -> Array:
        return jnp.arange(self.n_examples)

    def loss(self, theta: Array) -> Array:
        return jnp.mean(self.example_losses(theta, self._all()))

    def minibatch_loss(self, theta: Array, idx: Array) -> Array:
        """Mean loss over the examples ``idx``."""
        return jnp.mean(self.example_losses(theta, idx))

    def minibatch_gradient(self, key: Array, theta: Array, batch: Any = None) -> Array:
        """Mean gradient over the examples in ``batch`` (S,); ``key`` is unused."""
        del key
        if batch is None:
            return self.gradient(theta)
        return jax.grad(self.minibatch_loss)(theta, batch)

    def per_example_gradients(self, theta: Array, idx: Array | None = None) -> Array:
        """Rows ∇ℓ_i(θ), shape (len(idx), d) (every example by default)."""
        idx = self._all() if idx is None else jnp.asarray(idx)

        def one(i):
            return jax.grad(lambda th: self.example_losses(th, i[None])[0])(theta)

        return jax.vmap(one)(idx)

    def noise_covariance(self, theta: Array) -> Array:
        """Σ(θ) = (1/N) Σ_i ∇ℓ_i∇ℓ_iᵀ − ∇L∇Lᵀ (d × d: for small d)."""
        G = self.per_example_gradients(theta)
        g = jnp.mean(G, axis=0)
        return G.T @ G / self.n_examples - jnp.outer(g, g)

    def noise_sample(self, theta: Array, z: Array, scale: Any = 1.0) -> Array:
        """``scale · Gᵀ(z − z̄)/√N`` for N standard normals z: covariance scale² Σ(θ).

        G's rows are the per-example gradients and P = I − 11ᵀ/N is idempotent, so
        Gᵀ(z − z̄) = GᵀPz has covariance GᵀPG = NΣ(θ) (theory.md §2). Computed as one
        vector–Jacobian product of θ ↦ (ℓ_1(θ) … ℓ_N(θ)): O(Nd), no matrix.
        """
        _, vjp = jax.vjp(lambda th: self.example_losses(th, self._all()), theta)
        u = (z - jnp.mean(z)) / jnp.sqrt(jnp.asarray(self.n_examples, theta.dtype))
        return scale * vjp(u.astype(theta.dtype))[0]


def _name(prob: Any) -> str:
    return type(prob).__name__


def has_capability(prob: Any, name: str) -> bool:
    """Whether ``prob`` overrides the optional method ``name`` of :class:`Problem`."""
    method = getattr(type(prob), name, None)
    return method is not None and method is not getattr(Problem, name, None)


class HostArray:
    """A float64 numpy copy of a problem's data, kept for theory (never traced).

    Stored as a static field; two copies compare equal when shapes and dtypes agree, so a
    new dataset of the same shape reuses compiled kernels (traced code never reads it).
    """

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = np.asarray(array, np.float64)
        self.array.setflags(write=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostArray) and self.array.shape == other.array.shape

    def __hash__(self) -> int:
        return hash(self.array.shape)

    def __repr__(self) -> str:
        return f"HostArray(shape={self.array.shape})"
