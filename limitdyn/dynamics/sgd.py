"""Heavy-ball SGD with coupled weight decay on any problem (theory.md §1)::

    v_{k+1} = β v_k − g_B(θ_k) − λ θ_k,     θ_{k+1} = θ_k + η v_{k+1}

One update for every problem: a :class:`~limitdyn.FiniteSum` sees the minibatch its
sampler draws (``iid``, ``replacement`` or ``reshuffle``); a problem without examples (a
noisy quadratic) gets the step's key for its own gradient noise. ``params`` is
``(problem, hp)``; any of ``hp.lr``, ``hp.momentum``, ``hp.weight_decay`` listed in
``per_trajectory`` is a (K,) array, one value per trajectory (a learning-rate grid in one
kernel).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from .. import samplers, sgd
from ..hyper import Hyper, _unflatten

HYPER_FIELDS = ("lr", "momentum", "weight_decay")


@dataclasses.dataclass(frozen=True)
class HeavyBall:
    """Static description of the SGD kernel (hashable: it keys the compile cache)."""

    sampling: str
    n_examples: int | None
    batch_size: int | None
    per_trajectory: tuple[str, ...] = ()

    @property
    def sampler(self) -> samplers.Sampler | None:
        if self.n_examples is None:
            return None
        return samplers.build(self.sampling, self.n_examples, self.batch_size)

    def init_aux(self, key: jax.Array) -> Any:
        return () if self.sampler is None else self.sampler.init(key)

    def problem(self, params: Any) -> Any:
        return params[0]

    def params_axes(self, params: Any) -> Any:
        if not self.per_trajectory:
            return None
        hp: Hyper = params[1]
        axes = tuple(0 if f in self.per_trajectory else None for f in HYPER_FIELDS)
        return (None, _unflatten(hp.batch_size, axes))

    def step(self, key: jax.Array, state: sgd.State, aux: Any, k: jax.Array, params: Any):
        problem, hp = params
        # A finite-sum problem draws only its batch, a noisy model only its gradient noise:
        # either way the step's key is used once.
        batch = None
        if self.sampler is not None:
            batch, aux = self.sampler.next(key, aux, k)
        state, _ = sgd.step(key, state, problem, hp, batch)
        return state, aux

    def step_size(self, params: Any) -> jax.Array:
        return params[1].lr
