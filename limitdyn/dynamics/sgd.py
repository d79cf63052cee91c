"""Heavy-ball SGD with coupled weight decay on any problem (theory.md §1)::

    v_{k+1} = β v_k − g_B(θ_k) − λ θ_k,     θ_{k+1} = θ_k + η v_{k+1}

One update for every problem: a :class:`~limitdyn.FiniteSum` sees the minibatch its
sampler draws (``iid``, ``replacement`` or ``reshuffle``); a problem without examples (a
noisy quadratic) gets the step's key for its own gradient noise. ``params`` is
``(problem, hp)``; any of ``hp.lr``, ``hp.momentum``, ``hp.weight_decay`` listed in
``per_trajectory`` is a (K,) array, one value per trajectory (a learning-rate grid in one
kernel).

The whole batch (:meth:`HeavyBall.batched_step`): the sampler draws every trajectory's
batch at once (:attr:`limitdyn.samplers.Sampler.draw`, the fused generator); a problem with
a closed-form batched gradient (``minibatch_gradients``: linear regression) is then
stepped on a CPU in tiles of trajectories (:func:`tile_size`), so that the rows it
gathers, (T, S, d), are used by both products while in cache (the row gather is the largest
part of a step); any other problem, and any problem on an accelerator, is vmapped over the
whole batch. The numbers are those of vmapping :meth:`HeavyBall.step` with the keys
``fold_in(key_i, k)`` (up to float32 roundoff in the products), for any number of
trajectories, chunks or devices.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .. import samplers, sgd
from ..hyper import Hyper, _unflatten

HYPER_FIELDS = ("lr", "momentum", "weight_decay")
TILE_BYTES = 2**18  # gathered rows per tile and device: 256 KiB, a quarter of a 1 MiB L2
TILE_RANGE = (16, 1024)


def tile_size(batch_size: int, dim: int, itemsize: int, devices: int = 1) -> int:
    """Trajectories per tile of the closed-form step: the tile's gathered rows (T/devices,
    S, d) take about :data:`TILE_BYTES` on each device (within :data:`TILE_RANGE`).

    Measured at K = 4096, N = 1024 on this project's 2-core CPU (1 MiB L2 per core),
    ms/step by trajectories per tile (the old fixed 128 in brackets): d = 64, S = 32:
    32 → 2.35, 64 → 2.45, [128 → 3.15], 256 → 2.57; d = 256, S = 32: 8 → 6.74, [128 → 6.83],
    32 → 8.18; d = 64, S = 128: 8 → 8.23, 16 → 8.16, 32 → 12.1, [128 → 8.51]. At these
    sizes a tile whose rows fill the L2 exactly (1 MiB) was the slowest, and a quarter of
    it within noise of the fastest. The rule is not the best everywhere: where a step
    gathers little (d = 16, S = 32: [128 → 0.60], 4096 — no tiles — → 0.46; d = 64,
    S = 8: [128 → 0.98], 1024 → 0.82) bigger tiles or none did better.
    """
    rows = TILE_BYTES // max(1, batch_size * dim * itemsize)
    return devices * int(min(max(rows, TILE_RANGE[0]), TILE_RANGE[1]))


def n_tiles(n_traj: int, tile: int) -> int:
    """How many tiles a batch of ``n_traj`` trajectories is cut into: the largest tile
    size in [tile/2, tile] that divides ``n_traj`` (1 tile — no tiling — when none does)."""
    if n_traj <= tile:
        return 1
    for size in range(tile, tile // 2 - 1, -1):
        if n_traj % size == 0:
            return n_traj // size
    return 1


def _closed_form(problem: Any) -> bool:
    """Whether ``problem.minibatch_gradients`` stands for its ``minibatch_gradient``."""
    from ..problems.linear import LinearRegression
    return (isinstance(problem, LinearRegression)
            and type(problem).minibatch_gradient is LinearRegression.minibatch_gradient)


@dataclasses.dataclass(frozen=True)
class HeavyBall:
    """Static description of the SGD kernel (hashable: it keys the compile cache).

    ``devices``: how many devices the trajectory batch is sharded over (the tiles of the
    closed-form step are sized per device, :func:`tile_size`)."""

    sampling: str
    n_examples: int | None
    batch_size: int | None
    per_trajectory: tuple[str, ...] = ()
    devices: int = 1

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
        """One trajectory, one step (``key`` = fold_in(key_i, k))."""
        problem, hp = params
        # A finite-sum problem draws only its batch, a noisy model only its gradient noise:
        # either way the step's key is used once.
        batch = None
        if self.sampler is not None:
            batch, aux = self.sampler.next(key, aux, k)
        state, _ = sgd.step(key, state, problem, hp, batch)
        return state, aux

    def batched_step(self, traj_keys: jax.Array, state: sgd.State, aux: Any, k: jax.Array,
                     params: Any) -> tuple[sgd.State, Any]:
        """Every trajectory, one step: the numbers of ``vmap(step)`` with the keys
        ``fold_in(traj_keys[i], k)`` (see the module docstring for how)."""
        problem, hp = params
        axes = self.params_axes(params)
        sampler = self.sampler
        if sampler is None:
            keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(traj_keys, k)
            return jax.vmap(self.step, in_axes=(0, 0, 0, None, axes))(keys, state, aux, k,
                                                                        params)
        batch, aux = sampler.draw(traj_keys, aux, k)
        if _closed_form(problem):
            return self._tiled_update(state, batch, problem, hp), aux
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(traj_keys, k)

        def one(key, st, b, hp_):
            return sgd.step(key, st, problem, hp_, b)[0]

        hp_axes = None if axes is None else axes[1]
        return jax.vmap(one, in_axes=(0, 0, 0, hp_axes))(keys, state, batch, hp), aux

    def _tiled_update(self, state: sgd.State, batch: jax.Array, problem: Any,
                      hp: Hyper) -> sgd.State:
        """sgd.step for (K, d) states in tiles of trajectories.

        Tile j holds the trajectories j, j + n, j + 2n, … (n tiles): the trajectory axis,
        which a device mesh splits into contiguous blocks, stays the leading axis of every
        tile, so each device loops over its share of every tile and nothing moves between
        devices.
        """
        n_traj, dim = state.theta.shape
        count = 1
        if jax.default_backend() == "cpu":   # an accelerator gathers the whole batch at once
            count = n_tiles(n_traj, tile_size(batch.shape[1], dim,
                                              state.theta.dtype.itemsize, self.devices))
        size = n_traj // count
        shared = {f: getattr(hp, f) for f in HYPER_FIELDS if f not in self.per_trajectory}
        varied = {f: getattr(hp, f) for f in HYPER_FIELDS if f in self.per_trajectory}

        def update(theta, velocity, b, own):
            h = shared | {f: x[:, None] for f, x in own.items()}
            g = problem.minibatch_gradients(theta, b)
            velocity = h["momentum"] * velocity - g - h["weight_decay"] * theta
            return theta + h["lr"] * velocity, velocity

        if count == 1:
            return sgd.State(*update(state.theta, state.velocity, batch, varied))

        def split(a):
            return jnp.swapaxes(a.reshape((size, count, *a.shape[1:])), 0, 1)

        def join(a):
            return jnp.swapaxes(a, 0, 1).reshape((n_traj, *a.shape[2:]))

        theta, velocity = lax.map(lambda x: update(*x),
                                  (split(state.theta), split(state.velocity), split(batch),
                                   jax.tree_util.tree_map(split, varied)))
        return sgd.State(join(theta), join(velocity))

    def step_size(self, params: Any) -> jax.Array:
        return params[1].lr
