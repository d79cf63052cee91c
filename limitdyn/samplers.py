"""Minibatch samplers (theory.md §1).

A sampler is three pure functions (optax style)::

    state = sampler.init(key)                              # one trajectory's state
    batch, state = sampler.next(key, state, step)          # one trajectory: indices (S,)
    batches, states = sampler.draw(traj_keys, states, step)  # every trajectory: (K, S)

``step`` is the global SGD step index, shared by every trajectory. ``draw`` gives, bit for
bit, what ``next`` gives for each trajectory i with the key ``fold_in(traj_keys[i], step)``
(the runner's per-step key), so trajectory i's batches depend on its own key only — never
on how many trajectories share a kernel, a chunk or a device. On the default PRNG
(threefry2x32, ``jax_threefry_partitionable``) ``draw`` takes its random bits from the
fused generator :func:`limitdyn._prng.trajectory_bits` and works slot-major, (S, K), so
that its per-slot loops run over the trajectories in vector registers; otherwise it
vmaps ``next``.

* ``iid``: an independent uniformly random S-subset each step (no repeats within a batch),
  drawn with Floyd's algorithm: S random integers and O(S²) comparisons, no permutation
  of N. Conditional noise covariance κΣ(θ), κ = (N − S)/(S(N − 1)).
* ``replacement``: S independent uniform indices. Noise covariance Σ(θ)/S.
* ``reshuffle``: every epoch is a uniformly random permutation of the N examples walked
  through in consecutive batches of S; when S does not divide N the last ``N mod S``
  examples of each permutation are dropped (PyTorch's ``drop_last=True``), so an epoch is
  ``E = N // S`` steps. No permutation is ever sorted (see :func:`reshuffle`).

Random integers below a bound b come from one 32-bit word each by multiply-high
(:func:`uniform_below`); a value's probability is within b/2³² of 1/b relatively
(2.4·10⁻⁷ at b = 1024). Everything else is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from . import _prng

SAMPLINGS = ("iid", "replacement", "reshuffle")
_U32 = jnp.uint32


class Sampler(NamedTuple):
    init: Callable[[jax.Array], Any]
    next: Callable[[jax.Array, Any, jax.Array], tuple[jax.Array, Any]]
    draw: Callable[[jax.Array, Any, jax.Array], tuple[jax.Array, Any]]


def finite_population_factor(sampling: str, n_examples: int, batch_size: int) -> float:
    """κ with Cov[g_B − ∇L | θ] = κ Σ(θ): (N − S)/(S(N − 1)) for iid, 1/S with replacement."""
    if sampling == "iid":
        return 0.0 if n_examples == 1 else (n_examples - batch_size) / (
            batch_size * (n_examples - 1))
    if sampling == "replacement":
        return 1.0 / batch_size
    raise ValueError(f"the exact theory covers sampling 'iid' and 'replacement', got {sampling!r}; "
                     "'reshuffle' correlates the noise across steps")


# --- random integers ----------------------------------------------------------------------

def _below(bits: jax.Array, bound: Any) -> jax.Array:
    """Multiply-high of 32 random bits by ``bound`` (<= 2¹⁶): floor-ish(bits·bound/2³²)."""
    bound = jnp.asarray(bound, _U32)
    high, low = bits >> 16, bits & 0xFFFF
    return ((high * bound + ((low * bound) >> 16)) >> 16).astype(jnp.int32)


def uniform_below(key: jax.Array, bound: Any, shape: tuple[int, ...]) -> jax.Array:
    """Integers uniform on [0, bound) (bound <= 2¹⁶ may be an array), as int32.

    Multiply-high of 32 random bits: floor(bits · bound / 2³²). Each value gets
    ⌊2³²/bound⌋ or ⌈2³²/bound⌉ bit patterns, a relative deviation from uniform below
    bound/2³² (< 2·10⁻⁵ even at bound = 2¹⁶), in exchange for one 32-bit draw per index
    (``jax.random.randint`` draws two).
    """
    return _below(jax.random.bits(key, shape, dtype=_U32), bound)


def _uniform_indices(key, bound, shape, n_examples):
    if n_examples <= 1 << 16:
        return uniform_below(key, bound, shape)
    return jax.random.randint(key, shape, 0, bound, dtype=jnp.int32)


def _fused(n_examples: int, traj_keys: jax.Array) -> bool:
    """Whether ``draw`` may take its bits from the fused generator (checked at trace time)."""
    return n_examples <= 1 << 16 and _prng.bits_available(traj_keys)


def _vmapped(next_: Callable) -> Callable:
    """``draw`` by vmapping ``next`` with the per-step keys fold_in(key_i, step)."""
    def draw(traj_keys, state, step):
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(traj_keys, step)
        return jax.vmap(next_, in_axes=(0, 0, None))(keys, state, step)
    return draw


def _slot_bits(traj_keys: jax.Array, step: jax.Array, s: int) -> jax.Array:
    """(S, K): column i is ``bits(fold_in(traj_keys[i], step), (S,))``. Hashed in the
    (K, S) layout and transposed: on a CPU that is ~2.8× faster than hashing in (S, K)
    order (0.09 against 0.26 ms at K = 4096, S = 32), and XLA fuses the transpose with
    the bound that follows."""
    return _prng.trajectory_bits(traj_keys, step, s).T


# --- Floyd's algorithm, slot-major ------------------------------------------------------

FLOYD_BLOCKS = 8   # static blocks of Floyd's rounds (see _floyd)


def _small_int(n: int):
    return jnp.int16 if n < 1 << 15 else jnp.int32


def _floyd(draws: jax.Array, tops: jax.Array, n: int) -> jax.Array:
    """Floyd's uniform S-subset, for every column at once: ``draws`` (S, …) with draws[i]
    uniform on [0, tops[i]], ``tops`` (S, 1…) consecutive integers (the largest below n).

    For i = 0 … S−1: take draws[i] unless already taken, in which case take tops[i] (never
    taken before: every earlier pick is at most tops[i − 1]). The picks are a uniform
    S-subset of [0, tops[S−1]]. Slot-major, so that each of the S rounds compares whole
    rows (vectors over the trajectories); int16 when n allows (twice the lanes per
    vector), and "already taken" as an int8 maximum over the rows rather than a boolean
    ``any`` (half the time of the whole draw at K = 4096, S = 32 on a CPU). Rolled loops:
    the unrolled S²/2 compares took 8–14 s to compile; in :data:`FLOYD_BLOCKS` blocks, each
    comparing with the rows filled so far only, the draw took 0.32 against 0.38 ms in one
    block (K = 4096, S = 32; the same picks).
    """
    dtype = _small_int(n)
    d = draws.astype(dtype)
    t = tops.astype(dtype)
    s = d.shape[0]
    chosen = jnp.full(d.shape, -1, dtype)
    # Rounds in at most FLOYD_BLOCKS blocks; a round of block b compares with the rows
    # filled by the end of block b only (a static slice: the rows after it still hold −1,
    # which no draw equals), ~S²/2·(1 + 1/blocks) compares instead of S².
    size = -(-s // FLOYD_BLOCKS)
    for start in range(0, s, size):
        stop = min(start + size, s)

        def take(i, chosen, stop=stop):
            di = lax.dynamic_index_in_dim(d, i, 0, keepdims=True)
            ti = lax.dynamic_index_in_dim(t, i, 0, keepdims=True)
            taken = jnp.max((chosen[:stop] == di).astype(jnp.int8), axis=0,
                            keepdims=True) > 0
            return lax.dynamic_update_index_in_dim(chosen, jnp.where(taken, ti, di), i, 0)

        chosen = lax.fori_loop(start, stop, take, chosen)
    return chosen.astype(jnp.int32)


def _column(x: jax.Array) -> jax.Array:
    return x.reshape((*x.shape, 1))


# --- the samplers -----------------------------------------------------------------------

def iid(n_examples: int, batch_size: int) -> Sampler:
    """Uniform S-subsets without repeats, independent across steps (Floyd's algorithm)."""
    n, s = n_examples, batch_size
    if s == n:
        full = jnp.arange(n, dtype=jnp.int32)

        def draw_full(traj_keys, state, step):
            return jnp.broadcast_to(full, (traj_keys.shape[0], n)), state
        return Sampler(init=lambda key: (), next=lambda key, state, step: (full, state),
                       draw=draw_full)

    tops = jnp.arange(n - s, n, dtype=jnp.int32)[:, None]          # (S, 1)

    def next_(key, state, step):
        draws = _uniform_indices(key, tops[:, 0] + 1, (s,), n)
        return _floyd(_column(draws), tops, n)[:, 0], state

    vmapped = _vmapped(next_)

    def draw(traj_keys, state, step):
        if not _fused(n, traj_keys):
            return vmapped(traj_keys, state, step)
        draws = _below(_slot_bits(traj_keys, step, s), tops + 1)    # (S, K)
        return _floyd(draws, tops, n).T, state

    return Sampler(init=lambda key: (), next=next_, draw=draw)


def replacement(n_examples: int, batch_size: int) -> Sampler:
    """S independent uniform indices."""
    def next_(key, state, step):
        return _uniform_indices(key, n_examples, (batch_size,), n_examples), state

    vmapped = _vmapped(next_)

    def draw(traj_keys, state, step):
        if not _fused(n_examples, traj_keys):
            return vmapped(traj_keys, state, step)
        return _below(_prng.trajectory_bits(traj_keys, step, batch_size), n_examples), state

    return Sampler(init=lambda key: (), next=next_, draw=draw)


def _select_bit(word: jax.Array, rank: jax.Array) -> jax.Array:
    """Position of the set bit of rank ``rank`` (from 0) in each uint32 ``word``."""
    pos = jnp.zeros(rank.shape, jnp.int32)
    for width in (16, 8, 4, 2, 1):
        count = lax.population_count((word >> pos.astype(_U32))
                                     & _U32((1 << width) - 1)).astype(jnp.int32)
        skip = rank >= count
        pos = pos + jnp.where(skip, width, 0)
        rank = rank - jnp.where(skip, count, 0)
    return pos


def _fill_sources(offset: jax.Array, s: int) -> jax.Array:
    """For every pick below the tail (``offset`` < 0), a distinct unpicked tail slot.

    ``offset`` (S, K): the picks' positions relative to the tail [R − S, R). The h-th pick
    below the tail (in slot order) gets the h-th unpicked tail slot (in position order).
    Both orders come from bit masks, one 32-bit word per 32 slots: h is a popcount of the
    mask of earlier picks below the tail, the slot a popcount search in the mask of
    unpicked tail slots — O(S log S) per trajectory instead of O(S²) comparisons.
    """
    inside = offset >= 0
    n_words = -(-s // 32)
    row = lax.broadcasted_iota(jnp.int32, offset.shape, 0)
    safe = jnp.where(inside, offset, 0)
    tail_bit = jnp.where(inside, _U32(1) << (safe & 31).astype(_U32), _U32(0))
    below_bit = jnp.where(inside, _U32(0), _U32(1) << (row & 31).astype(_U32))
    earlier = (_U32(1) << (row & 31).astype(_U32)) - _U32(1)         # bits of earlier slots
    free, free_start, rank = [], [], []
    n_free = n_below = jnp.zeros(offset.shape[1:], jnp.int32)
    for w in range(n_words):
        lo, hi = 32 * w, min(s, 32 * w + 32)
        in_word = tail_bit if n_words == 1 else jnp.where((safe >> 5) == w, tail_bit,
                                                          _U32(0))
        taken = lax.reduce(in_word, _U32(0), lax.bitwise_or, (0,))
        valid = hi - lo
        word = ~taken & _U32(0xFFFFFFFF if valid == 32 else (1 << valid) - 1)
        free.append(word)
        free_start.append(n_free)
        n_free = n_free + lax.population_count(word).astype(jnp.int32)
        below = lax.reduce(below_bit[lo:hi], _U32(0), lax.bitwise_or, (0,))
        rank.append(n_below[None] + lax.population_count(
            below[None] & earlier[lo:hi]).astype(jnp.int32))
        n_below = n_below + lax.population_count(below).astype(jnp.int32)
    rank = rank[0] if n_words == 1 else jnp.concatenate(rank)       # h, for picks below
    word, first = free[0][None], free_start[0][None]
    base = jnp.zeros(offset.shape, jnp.int32)
    for w in range(1, n_words):   # the word holding unpicked slot number h
        later = rank >= free_start[w][None]
        word = jnp.where(later, free[w][None], word)
        first = jnp.where(later, free_start[w][None], first)
        base = jnp.where(later, 32 * w, base)
    return base + _select_bit(word, jnp.maximum(rank - first, 0))


def reshuffle(n_examples: int, batch_size: int) -> Sampler:
    """Uniform epoch permutations in consecutive batches, without sorting anything.

    Each trajectory keeps a *pool*, a permutation of the N examples whose first
    R = N − (k mod E)·S entries are the examples not yet used in the epoch. Step k draws a
    uniform S-subset of the positions [0, R) (Floyd's algorithm, as ``iid``); the batch
    is the pool's entries there. Then the pool is compacted: the picks below the tail
    [R − S, R) receive the unpicked entries of the tail, and the tail receives the batch.
    Per step: one gather of 2S pool entries, one contiguous write of S, one scatter of at
    most S; Floyd's O(S²) comparisons (as ``iid``) and O(S log S) bookkeeping — nothing
    proportional to N, no sort. The pool stays a permutation, so an epoch needs no reset:
    at k ≡ 0 (mod E) the positions [0, N) are all drawn from again.

    Why exact: given everything drawn before, the batch is a uniform S-subset of the
    examples not yet used in the epoch, however the pool happens to be arranged — which
    is the law of the consecutive blocks of a uniform permutation, as sets (the order
    inside a batch does not enter the mean gradient). The examples left over when S does
    not divide N are a uniform (N mod S)-subset, dropped.

    The state is the pool, (N,) int16 (int32 for N >= 2¹⁵), initially 0 … N − 1.
    """
    n, s = n_examples, batch_size
    per_epoch = n // s
    pool_dtype = _small_int(n)
    iota = jnp.arange(s, dtype=jnp.int32)[:, None]                     # (S, 1)

    def init(key):
        return jnp.arange(n, dtype=pool_dtype)

    def core(below, pool, step):
        """``below(bounds (S, 1))`` → draws (S, K); pool (K, N) → batch (K, S), pool."""
        n_traj = pool.shape[0]
        if s == n:                  # every step is the whole set
            return jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (n_traj, n)), pool
        remaining = n - (step % per_epoch) * s                          # R
        tail = remaining - s
        tops = tail + iota
        picks = _floyd(below(tops + 1), tops, n)                        # (S, K) in [0, R)
        offset = picks - tail
        source = _fill_sources(offset, s)                               # (S, K) in [0, S)
        # One gather reads the picks and their fill (before anything is written: XLA
        # then updates the pool in place); the tail receives the batch (one contiguous
        # write per trajectory), the picks below it their fill (a scatter of at most S).
        # Row by row (vmapped: the trajectory axis is a batch axis of the gather and the
        # scatter, so a device mesh keeps them local); with a flattened pool XLA copied
        # it (8 MB at B1's sizes) before each write.
        both = jnp.concatenate([picks, tail + source]).T                 # (K, 2S)
        values = jnp.take_along_axis(pool, both, axis=1, mode="promise_in_bounds")
        batch, fill = values[:, :s], values[:, s:]
        pool = lax.dynamic_update_slice_in_dim(pool, batch, tail, axis=1)
        holes = jnp.where(offset.T < 0, picks.T, n)                      # n: dropped
        pool = jax.vmap(lambda row, at, value: row.at[at].set(
            value, mode="drop", unique_indices=True))(pool, holes, fill)
        return batch.astype(jnp.int32), pool

    def next_(key, pool, step):
        def below(bounds):
            return _column(_uniform_indices(key, bounds[:, 0], (s,), n))
        batch, pool = core(below, pool[None], step)
        return batch[0], pool[0]

    vmapped = _vmapped(next_)

    def draw(traj_keys, pool, step):
        if not _fused(n, traj_keys):
            return vmapped(traj_keys, pool, step)
        bits = _slot_bits(traj_keys, step, s)
        return core(lambda bounds: _below(bits, bounds), pool, step)

    return Sampler(init=init, next=next_, draw=draw)


def build(sampling: str, n_examples: int, batch_size: int) -> Sampler:
    return {"iid": iid, "replacement": replacement, "reshuffle": reshuffle}[sampling](
        n_examples, batch_size)
