"""The discrete algorithm: SGD with heavy-ball momentum and coupled weight decay.

Blackjax-shaped kernel: ``init(...) -> State`` and ``step(key, state, ...) -> (State, Info)``;
the key is the first argument and never lives in the state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .hyper import Hyper


class State(NamedTuple):
    """Phase-space point. ``velocity`` is v_k = (θ_k − θ_{k−1})/η, the negative of the
    PyTorch/optax momentum buffer (theory.md §1)."""

    theta: jax.Array
    velocity: jax.Array


class Info(NamedTuple):
    """Diagnostics of one step: the minibatch gradient g_B(θ_k) it used."""

    gradient: jax.Array


def init(theta0: Any, velocity0: Any = None) -> State:
    """State at step 0; the velocity defaults to zero (a fresh momentum buffer)."""
    theta0 = jnp.asarray(theta0)
    v0 = jnp.zeros_like(theta0) if velocity0 is None else jnp.asarray(velocity0, theta0.dtype)
    return State(theta0, v0)


def step(key: jax.Array, state: State, problem: Any, hp: Hyper,
         batch: Any = None) -> tuple[State, Info]:
    """One step of theory.md §1::

        v_{k+1} = β v_k − g_B(θ_k) − λ θ_k,     θ_{k+1} = θ_k + η v_{k+1}

    Args:
        key: randomness for problems with intrinsic gradient noise (``Quadratic``);
            finite-sum problems take their randomness from ``batch``.
        state: (θ_k, v_k).
        problem: provides ``minibatch_gradient(key, theta, batch)``.
        hp: hyperparameters (traced leaves ``lr``, ``momentum``, ``weight_decay``).
        batch: example indices (S,) of the minibatch, from a sampler.
    """
    g = problem.minibatch_gradient(key, state.theta, batch)
    velocity = hp.momentum * state.velocity - g - hp.weight_decay * state.theta
    theta = state.theta + hp.lr * velocity
    return State(theta, velocity), Info(g)
