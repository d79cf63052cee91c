"""Many networks at once: a grid of learning rates η = c/λᴴ_0 × seeds in one compiled kernel.

:func:`train_grid` trains ``n_seeds × len(cs)`` copies of a flax model with optax SGD
(``optax.sgd(η, momentum=β)``, the convention of theory.md §1) and records, per network:

* the **full-training-set loss** L(θ_t) at every step t = 0 … T;
* the **sharpness** λᴴ_t — the largest algebraic Hessian eigenvalue of the loss on a fixed
  **measurement batch** (the first ``measure_size`` training examples) — every
  ``measure_every`` steps, by Lanczos (:mod:`limitdyn.hessian`) warm-started from the previous
  measurement's top Ritz vector;
* the loss along the segment θ_0 → θ_T (for c_barrier);
* whether and when it diverged (full loss non-finite or above ``diverge_loss``). A diverged
  network is frozen at its last finite parameters, its later losses recorded as +inf, and it
  is *counted*, never averaged.

λᴴ_0 is measured once per seed on the measurement batch (with ``lanczos_iter0`` steps), and
η = c/λᴴ_0 is computed inside the kernel: c and β are traced arrays, so a whole c-grid (or a
new grid, or a new momentum) reuses one compilation. The c axis is processed in chunks of
``c_chunk`` networks per seed (padded; bounded memory: each network holds a Lanczos basis of
(m + 1) × P numbers). Seeds are vmapped; seed i uses ``fold_in(key, i)`` for its
initialisation, its minibatch order (epoch-wise reshuffling, shared by every c, so the
thresholds compare networks that saw the same batches) and its Lanczos start.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from .. import _checks
from ..hessian import lanczos_impl
from .data import LOSSES, Dataset, loss_function
from .models import count_params, init_params

_TRACES = {"train": 0, "lambda0": 0}    # trace counters (a grid must not recompile)


@dataclasses.dataclass(frozen=True)
class GridResult:
    """Arrays with leading axes (n_seeds, n_c) unless stated.

    ``cs`` (n_c,), ``lam0`` (n_seeds,) λᴴ_0, ``eta`` (n_seeds, n_c), ``loss`` (…, T + 1)
    full-training-set L(θ_t), ``sharp_steps`` (M + 1,) and ``sharpness`` (…, M + 1) λᴴ at those
    steps (entry 0 is λᴴ_0; NaN once the network diverged: frozen, not measured),
    ``diverged`` (…) bool, ``diverged_at`` (…) first divergent step (−1 if none),
    ``barrier_tau`` (B,) and ``barrier_loss`` (…, B) L((1 − τ)θ_0 + τθ_T),
    ``lanczos_residual`` (…, M + 1) Ritz residual bounds of the sharpness values.
    """

    cs: np.ndarray
    lam0: np.ndarray
    eta: np.ndarray
    loss: np.ndarray
    sharp_steps: np.ndarray
    sharpness: np.ndarray
    lanczos_residual: np.ndarray
    diverged: np.ndarray
    diverged_at: np.ndarray
    barrier_tau: np.ndarray
    barrier_loss: np.ndarray
    info: dict[str, Any]


def _batch_indices(order_key, t, n: int, batch_size: int):
    """Step t's minibatch: slice t mod (N // S) of epoch t // (N // S)'s permutation."""
    if batch_size == n:
        return jnp.arange(n)
    nb = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(order_key, t // nb), n)
    return jax.lax.dynamic_slice(perm, ((t % nb) * batch_size,), (batch_size,))


def _where_tree(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def _network_fn(model: nn.Module, loss_name: str, n_steps: int, measure_every: int,
                batch_size: int, lanczos_iter: int, n_barrier: int):
    """One network's run as a pure function (vmapped over c, then over seeds)."""
    loss_of = loss_function(loss_name)

    def loss_fn(params, x, y):
        return loss_of(model.apply({"params": params}, x), y)

    def run(params0, q0, eta, beta, order_key, lan_key, x, y, xm, ym, diverge_loss):
        n = x.shape[0]
        opt = optax.sgd(eta, momentum=beta)
        loss0 = loss_fn(params0, x, y)

        def step(carry, t):
            params, opt_state, div, div_at = carry
            idx = _batch_indices(order_key, t, n, batch_size)
            g = jax.grad(loss_fn)(params, x[idx], y[idx])
            upd, new_state = opt.update(g, opt_state, params)
            new = optax.apply_updates(params, upd)
            full = loss_fn(new, x, y)
            bad = ~jnp.isfinite(full) | (full > diverge_loss)
            now = ~div & bad
            keep = div | bad
            params = _where_tree(keep, params, new)
            opt_state = _where_tree(keep, opt_state, new_state)
            rec = jnp.where(div, jnp.inf, jnp.where(bad & ~jnp.isfinite(full), jnp.inf, full))
            return (params, opt_state, div | bad, jnp.where(now, t + 1, div_at)), rec

        def measure(carry, j):
            inner, q = carry
            inner, losses = jax.lax.scan(step, inner,
                                         j * measure_every + jnp.arange(measure_every))
            eig = lanczos_impl(loss_fn, lanczos_iter, 1, inner[0], (xm, ym),
                               jax.random.fold_in(lan_key, j), q)
            qn = ravel_pytree(jax.tree.map(lambda a: a[0], eig.vectors))[0]
            return (inner, qn), (losses, eig.values[0], eig.residuals[0])

        init = (params0, opt.init(params0), jnp.zeros((), bool), jnp.full((), -1, jnp.int32))
        (final, _), (losses, lams, res) = jax.lax.scan(
            measure, (init, q0), jnp.arange(n_steps // measure_every))
        params_t = final[0]
        taus = jnp.arange(1, n_barrier + 1, dtype=x.dtype) / n_barrier

        def seg(tau):
            p = jax.tree.map(lambda a, b: (1 - tau) * a + tau * b, params0, params_t)
            return loss_fn(p, x, y)

        barrier = jax.lax.map(seg, taus)
        barrier = jnp.where(final[2], jnp.inf, barrier)
        return (jnp.concatenate([loss0[None], losses.reshape(-1)]), lams, res, final[2],
                final[3], barrier)

    return loss_fn, run


_KERNELS: dict[tuple, Any] = {}


def _kernel(model, loss_name, n_steps, measure_every, batch_size, lanczos_iter, n_barrier):
    """The jitted (seeds × c-chunk) kernel; cached on the static configuration."""
    sig = (model, loss_name, n_steps, measure_every, batch_size, lanczos_iter, n_barrier)
    if sig in _KERNELS:
        return _KERNELS[sig]
    _, run = _network_fn(*sig)

    def grid(params0, q0, lam0, cs, beta, order_keys, lan_keys, x, y, xm, ym, diverge_loss):
        _TRACES["train"] += 1

        def per_seed(p0, q, l0, ok, lk):
            etas = cs / l0
            out = jax.vmap(run, in_axes=(None, None, 0, None, None, None, None, None, None,
                                         None, None))(p0, q, etas, beta, ok, lk, x, y, xm, ym,
                                                      diverge_loss)
            return (etas, *out)

        return jax.vmap(per_seed)(params0, q0, lam0, order_keys, lan_keys)

    _KERNELS[sig] = jax.jit(grid)
    return _KERNELS[sig]


_LAM0: dict[tuple, Any] = {}


def _lam0_kernel(model, loss_name, lanczos_iter0):
    sig = (model, loss_name, lanczos_iter0)
    if sig not in _LAM0:
        loss_of = loss_function(loss_name)

        def loss_fn(params, x, y):
            return loss_of(model.apply({"params": params}, x), y)

        def one(params, key, xm, ym):
            _TRACES["lambda0"] += 1
            eig = lanczos_impl(loss_fn, lanczos_iter0, 1, params, (xm, ym), key)
            q = ravel_pytree(jax.tree.map(lambda a: a[0], eig.vectors))[0]
            return eig.values[0], q, eig.residuals[0]

        _LAM0[sig] = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))
    return _LAM0[sig]


def _check_cs(cs: Any) -> np.ndarray:
    arr = _checks.real_array("cs", cs, ndim=1)
    if np.any(arr <= 0):
        raise ValueError(f"every c must be > 0 (η = c/λᴴ_0), got min {arr.min():g}")
    return arr


def train_grid(model: nn.Module, data: Dataset, cs: Sequence[float], *, key: Any = 0,
               n_seeds: int = 3, n_steps: int = 10, batch_size: int = 512,
               momentum: float = 0.0, loss: str = "mse", measure_every: int = 1,
               measure_size: int = 512, lanczos_iter: int = 20,
               lanczos_iter0: int | None = None, diverge_loss: float = 1e5,
               n_barrier: int = 10, c_chunk: int | None = None,
               progress=None) -> GridResult:
    """Train ``n_seeds × len(cs)`` networks with η = c/λᴴ_0 (theory.md §7 protocol).

    Args:
        model: a flax module (:func:`limitdyn.nn.make_model`).
        data: a :class:`~limitdyn.nn.Dataset` (the whole training set).
        cs: learning-rate multipliers c > 0; η = c/λᴴ_0 per seed.
        key: PRNG key or int seed; seed i uses ``fold_in(key, i)``.
        n_steps: SGD steps T (a multiple of ``measure_every``).
        batch_size: minibatch size S (<= N; S = N is full-batch gradient descent).
        momentum: heavy-ball β in [0, 1) (traced: no recompilation).
        loss: ``"mse"`` (½ mean over examples × classes) or ``"cross_entropy"``.
        measure_every: m, steps between sharpness measurements.
        measure_size: the measurement batch is the first ``measure_size`` examples.
        lanczos_iter: Lanczos steps per measurement (warm-started); ``lanczos_iter0`` for
            λᴴ_0 (default 2 × ``lanczos_iter``).
        diverge_loss: a network diverged when its full loss exceeds this (or is not finite).
        n_barrier: points τ = 1/B … 1 on the segment θ_0 → θ_T.
        c_chunk: networks per seed per kernel call (default all of ``cs``).
        progress: optional callable ``progress(done, total)`` called between chunks.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a flax.linen Module, got {type(model).__name__}")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a limitdyn.nn.Dataset, got {type(data).__name__}")
    cs = _check_cs(cs)
    n_seeds = _checks.integer("n_seeds", n_seeds, low=1)
    n_steps = _checks.integer("n_steps", n_steps, low=1, high=10**6)
    batch_size = _checks.integer("batch_size", batch_size, low=1, high=data.n)
    momentum = _checks.finite_float("momentum", momentum, low=0.0, high=1.0, high_open=True)
    _checks.choice("loss", loss, LOSSES)
    measure_every = _checks.integer("measure_every", measure_every, low=1, high=n_steps)
    if n_steps % measure_every:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of measure_every "
                         f"({measure_every})")
    measure_size = _checks.integer("measure_size", measure_size, low=1, high=data.n)
    lanczos_iter = _checks.integer("lanczos_iter", lanczos_iter, low=1)
    lanczos_iter0 = 2 * lanczos_iter if lanczos_iter0 is None else _checks.integer(
        "lanczos_iter0", lanczos_iter0, low=1)
    diverge_loss = _checks.finite_float("diverge_loss", diverge_loss, low=0.0, low_open=True)
    n_barrier = _checks.integer("n_barrier", n_barrier, low=1, high=1000)
    c_chunk = len(cs) if c_chunk is None else _checks.integer("c_chunk", c_chunk, low=1)
    c_chunk = min(c_chunk, len(cs))
    if isinstance(key, int) and not isinstance(key, bool):
        key = jax.random.key(key)

    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    xm, ym = x[:measure_size], y[:measure_size]
    seed_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n_seeds))
    sub = jax.vmap(lambda k: jax.random.split(k, 3))(seed_keys)
    params0 = jax.vmap(lambda k: init_params(model, k, x))(sub[:, 0])
    n_par = count_params(jax.tree.map(lambda a: a[0], params0))
    m0, m = min(lanczos_iter0, n_par), min(lanczos_iter, n_par)

    t0 = time.perf_counter()
    lam0, q0, res0 = _lam0_kernel(model, loss, m0)(params0, sub[:, 2], xm, ym)
    lam0 = jax.block_until_ready(lam0)
    if not bool(jnp.all(lam0 > 0)):
        raise ValueError(f"λᴴ_0 must be > 0 to set η = c/λᴴ_0; got {np.asarray(lam0)}")
    t_lam = time.perf_counter() - t0

    kern = _kernel(model, loss, n_steps, measure_every, batch_size, m, n_barrier)
    n_chunks = math.ceil(len(cs) / c_chunk)
    padded = np.concatenate([cs, np.full(n_chunks * c_chunk - len(cs), cs[-1])])
    outs, times = [], []
    for i in range(n_chunks):
        t1 = time.perf_counter()
        chunk = jnp.asarray(padded[i * c_chunk:(i + 1) * c_chunk], x.dtype)
        out = kern(params0, q0, lam0, chunk, jnp.asarray(momentum, x.dtype), sub[:, 1],
                   sub[:, 2], x, y, xm, ym, jnp.asarray(diverge_loss, x.dtype))
        outs.append(jax.tree.map(np.asarray, jax.block_until_ready(out)))
        times.append(time.perf_counter() - t1)
        if progress is not None:
            progress(i + 1, n_chunks)
    cat = [np.concatenate([o[j] for o in outs], axis=1)[:, :len(cs)] for j in range(7)]
    etas, losses, lams, res, div, div_at, barrier = cat
    lam0_np = np.asarray(lam0, np.float64)
    sharp = np.concatenate([np.broadcast_to(lam0_np[:, None, None], (*lams.shape[:2], 1)),
                            lams], axis=2)
    res0_np = np.asarray(res0, np.float64)
    resid = np.concatenate([np.broadcast_to(res0_np[:, None, None], (*res.shape[:2], 1)), res],
                           axis=2)
    steps = np.arange(0, n_steps + 1, measure_every)
    after = (div_at[..., None] >= 0) & (steps[None, None, :] >= div_at[..., None])
    sharp = np.where(after, np.nan, sharp)         # frozen parameters: not a measurement
    info = dict(n_params=n_par, lanczos_iter=m, lanczos_iter0=m0, n_steps=n_steps,
                batch_size=batch_size, momentum=momentum, loss=loss,
                measure_every=measure_every, measure_size=measure_size,
                diverge_loss=diverge_loss, lambda0_seconds=t_lam,
                first_chunk_seconds=times[0],
                rest_seconds=float(sum(times[1:])), n_chunks=n_chunks, c_chunk=c_chunk)
    return GridResult(cs=cs, lam0=lam0_np, eta=etas.astype(np.float64),
                      loss=losses.astype(np.float64),
                      sharp_steps=steps,
                      sharpness=sharp.astype(np.float64), lanczos_residual=resid,
                      diverged=div.astype(bool), diverged_at=div_at.astype(np.int64),
                      barrier_tau=np.arange(1, n_barrier + 1) / n_barrier,
                      barrier_loss=barrier.astype(np.float64), info=info)


# --- critical values (theory.md §7) ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Per-seed critical c values (NaN where the criterion is not met on the grid; see
    ``found``): c_loss, c_sharp, c_barrier, c_max, and per-seed counts."""

    c_loss: np.ndarray
    c_sharp: np.ndarray
    c_barrier: np.ndarray
    c_max: np.ndarray
    n_diverged: np.ndarray
    max_below_grid: np.ndarray
    max_above_grid: np.ndarray


def thresholds(res: GridResult, *, sharp_rtol: float = 0.0) -> Thresholds:
    """Critical values per seed from a grid run (theory.md §7; Kalra & Barkeshli §2).

    c_max: the largest grid c below the first divergent one (NaN if the smallest c diverges;
    the largest grid c, flagged ``max_above_grid``, if none diverges). The other three are
    searched among the trainable c <= c_max: c_loss = smallest c with L_t > L_0 for some
    1 <= t <= T; c_sharp = smallest c with λᴴ_t > (1 + ``sharp_rtol``) λᴴ_0 at some
    measured t >= 1; c_barrier = smallest c whose loss on the segment θ_0 → θ_T rises above
    L(θ_0). NaN when no trainable c meets the criterion.
    """
    order = np.argsort(res.cs)
    cs = res.cs[order]
    n_seeds = res.lam0.shape[0]
    out = {k: np.full(n_seeds, np.nan) for k in ("c_loss", "c_sharp", "c_barrier", "c_max")}
    below, above = np.zeros(n_seeds, bool), np.zeros(n_seeds, bool)
    for s in range(n_seeds):
        div = res.diverged[s, order]
        first = int(np.argmax(div)) if div.any() else len(cs)
        if first == 0:
            below[s] = True
            continue
        out["c_max"][s] = cs[first - 1]
        above[s] = first == len(cs)
        ok = slice(0, first)
        loss = res.loss[s, order][ok]
        lam = res.sharpness[s, order][ok]
        crit = {
            "c_loss": np.any(loss[:, 1:] > loss[:, :1], axis=1),
            "c_sharp": np.any(lam[:, 1:] > (1 + sharp_rtol) * lam[:, :1], axis=1),
            "c_barrier": np.any(res.barrier_loss[s, order][ok] > loss[:, :1], axis=1),
        }
        for name, hit in crit.items():
            if hit.any():
                out[name][s] = cs[ok][int(np.argmax(hit))]
    return Thresholds(**out, n_diverged=res.diverged.sum(axis=1), max_below_grid=below,
                      max_above_grid=above)
