"""Many networks at once: a grid of learning rates η = c/λᴴ_0 × seeds in one compiled kernel.

:func:`train_grid` trains ``n_seeds × len(cs)`` copies of a flax model with SGD and
momentum (theory.md §1; identical to ``optax.sgd(η, momentum=β)``) through the library's
one runner (:func:`limitdyn.simulate_sgd` on a :class:`~limitdyn.nn.FlaxProblem`): every
network is a trajectory, its learning rate a per-trajectory hyperparameter, and the
networks of one seed share their minibatch stream (``streams``: epoch-wise reshuffling,
the same batches at every c, so the thresholds compare networks that saw the same data).
It records, per network:

* the **full-training-set loss** L(θ_t) at every step t = 0 … T (a trace);
* the **sharpness** λᴴ_t — the largest algebraic Hessian eigenvalue of the loss on a fixed
  **measurement batch** (the first ``measure_size`` training examples) — every
  ``measure_every`` steps, by Lanczos (:mod:`limitdyn.hessian`) warm-started from the
  previous measurement's top Ritz vector (the observer :class:`Sharpness`);
* the loss along the segment θ_0 → θ_T (for c_barrier), from the final states;
* whether and when it diverged: the runner's rule with ``max_loss = diverge_loss`` (full
  loss non-finite or above it, checked every step). A diverged network is frozen and
  *counted*, never averaged; its later losses are +inf.

λᴴ_0 is measured once per seed on the measurement batch (``lanczos_iter0`` steps), and
η = c/λᴴ_0 per network: c and β are traced, so a new grid of the same size (or a new
momentum) reuses one compilation. The c axis is run in chunks of ``c_chunk`` networks per
seed (bounded memory: each network holds a Lanczos basis of (m + 1) × P numbers). Seed i
uses ``fold_in(key, i)`` for its initialisation, minibatch stream and Lanczos starts.
Every chunk is one runner call, so inside ``limitdyn run`` it is checkpointed and resumes.
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
from jax.flatten_util import ravel_pytree

from .. import _checks, observers
from ..hessian import lanczos_impl
from ..hyper import Hyper
from .data import LOSSES, Dataset, loss_function
from .models import count_params, init_params
from .problem import FlaxProblem


@dataclasses.dataclass(frozen=True)
class GridResult:
    """Arrays with leading axes (n_seeds, n_c) unless stated.

    ``cs`` (n_c,), ``lam0`` (n_seeds,) λᴴ_0, ``eta`` (n_seeds, n_c), ``loss`` (…, T + 1)
    full-training-set L(θ_t), ``sharp_steps`` (M + 1,) and ``sharpness`` (…, M + 1) λᴴ at those
    steps (entry 0 is λᴴ_0; NaN once the network diverged: frozen, not measured),
    ``diverged`` (…) bool, ``diverged_at`` (…) first divergent step (−1 if none),
    ``barrier_tau`` (B,) and ``barrier_loss`` (…, B) L((1 − τ)θ_0 + τθ_T),
    ``lanczos_residual`` (…, M + 1) Ritz residuals of the sharpness values.
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


@dataclasses.dataclass(frozen=True)
class Sharpness:
    """Observer: top Hessian eigenvalue of the loss on the first ``measure_size`` examples,
    per trajectory, at ``steps``, by ``n_iter`` Lanczos steps warm-started from the previous
    measurement's Ritz vector (the first from ``arrays()['q0']``). Output ``value`` and
    ``residual`` (K, len(steps))."""

    n_iter: int
    n_measure: int
    measure_size: int
    steps: np.ndarray = dataclasses.field(default=None, compare=False, repr=False)
    q0: Any = dataclasses.field(default=None, compare=False, repr=False)
    keys: Any = dataclasses.field(default=None, compare=False, repr=False)
    name = "sharpness"
    needs_loss = False

    def event_steps(self) -> np.ndarray:
        return self.steps

    def tables(self, event_steps: np.ndarray) -> dict[str, np.ndarray]:
        slot = observers.slots_at(self.steps, event_steps)
        return {"fires": slot >= 0, "slot": slot}

    def arrays(self) -> Any:
        return {"q0": jnp.asarray(self.q0), "keys": self.keys}

    def init(self, n_traj: int, dim: int, dtype) -> observers.Carry:
        per = {"q": jnp.zeros((n_traj, dim), dtype),
               "value": jnp.full((n_traj, self.n_measure), jnp.nan, dtype),
               "residual": jnp.full((n_traj, self.n_measure), jnp.nan, dtype)}
        return observers.Carry(per, ())

    def observe(self, carry, table, view, arrays):
        per = carry.per_trajectory
        slot = table["slot"]
        q = jnp.where(slot == 0, arrays["q0"], per["q"])
        idx = jnp.arange(self.measure_size)
        prob = view.problem

        def one(theta, key, q1):
            eig = lanczos_impl(lambda th, i: prob.minibatch_loss(th, i), self.n_iter, 1,
                               theta, (idx,), jax.random.fold_in(key, slot), q1)
            return eig.values[0], eig.residuals[0], eig.vectors[0]

        value, resid, vec = jax.vmap(one)(view.theta, arrays["keys"], q)
        return observers.Carry({"q": vec, "value": per["value"].at[:, slot].set(value),
                                "residual": per["residual"].at[:, slot].set(resid)}, ())

    def finalize(self, carry) -> dict[str, Any]:
        per = carry.per_trajectory
        return {"value": np.asarray(per["value"], np.float64),
                "residual": np.asarray(per["residual"], np.float64)}


def _lam0(model, loss_name, lanczos_iter0, params0, keys, xm, ym):
    """λᴴ_0, its Ritz vector (flat) and residual per seed (vmapped over seeds)."""
    loss_of = loss_function(loss_name)

    def loss_fn(params, x, y):
        return loss_of(model.apply({"params": params}, x), y)

    def one(params, key):
        eig = lanczos_impl(loss_fn, lanczos_iter0, 1, params, (xm, ym), key)
        q = ravel_pytree(jax.tree.map(lambda a: a[0], eig.vectors))[0]
        return eig.values[0], q, eig.residuals[0]

    return jax.jit(jax.vmap(one))(params0, keys)


def _check_cs(cs: Any) -> np.ndarray:
    arr = _checks.real_array("cs", cs, ndim=1)
    if np.any(arr <= 0):
        raise ValueError(f"every c must be > 0 (η = c/λᴴ_0), got min {arr.min():g}")
    return arr


def _segment_losses(prob: FlaxProblem, theta0: np.ndarray, theta_t: np.ndarray,
                    taus: np.ndarray) -> np.ndarray:
    """L((1 − τ)θ_0 + τθ_T) for each network and τ (vmapped; no time loop)."""
    def per_net(a, b):
        return jax.vmap(lambda t: prob.loss((1 - t) * a + t * b))(jnp.asarray(taus, a.dtype))
    return np.asarray(jax.jit(jax.vmap(per_net))(jnp.asarray(theta0), jnp.asarray(theta_t)),
                      np.float64)


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
        c_chunk: networks per seed per runner call (default all of ``cs``).
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

    from ..runner import simulate_sgd

    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    xm, ym = x[:measure_size], y[:measure_size]
    seed_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n_seeds))
    sub = jax.vmap(lambda k: jax.random.split(k, 3))(seed_keys)
    params0 = jax.vmap(lambda k: init_params(model, k, x))(sub[:, 0])
    first = jax.tree.map(lambda a: a[0], params0)
    n_par = count_params(first)
    m0, m = min(lanczos_iter0, n_par), min(lanczos_iter, n_par)
    prob = FlaxProblem.from_module(model, first, x, y, loss=loss)
    theta0 = np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(params0))    # (n_seeds, P)

    t0 = time.perf_counter()
    lam0, q0, res0 = _lam0(model, loss, m0, params0, sub[:, 2], xm, ym)
    lam0 = np.asarray(jax.block_until_ready(lam0), np.float64)
    if not np.all(lam0 > 0):
        raise ValueError(f"λᴴ_0 must be > 0 to set η = c/λᴴ_0; got {lam0}")
    t_lam = time.perf_counter() - t0

    n_chunks = math.ceil(len(cs) / c_chunk)
    padded = np.concatenate([cs, np.full(n_chunks * c_chunk - len(cs), cs[-1])])
    seed_of = np.repeat(np.arange(n_seeds), c_chunk)                        # (K,)
    sharp_steps = np.arange(measure_every, n_steps + 1, measure_every)
    sampling = "iid" if batch_size == data.n else "reshuffle"
    hp = Hyper(lr=1.0, momentum=momentum, batch_size=batch_size)
    sim_key = jax.random.fold_in(key, 0x5EED)
    lan_keys = jnp.asarray(sub[:, 2])[seed_of]
    outs, times = [], []
    for i in range(n_chunks):
        t1 = time.perf_counter()
        chunk = padded[i * c_chunk:(i + 1) * c_chunk]
        etas = (np.tile(chunk, n_seeds) / lam0[seed_of]).astype(np.float64)
        sharp = Sharpness(m, len(sharp_steps), measure_size, steps=sharp_steps,
                          q0=np.asarray(q0)[seed_of], keys=lan_keys)
        res = simulate_sgd(prob, hp, sim_key, n_seeds * c_chunk, n_steps, sampling=sampling,
                           theta0=theta0[seed_of], record=[0, n_steps], burn_in=n_steps,
                           traces={"loss": "loss"}, trace_steps=np.arange(n_steps + 1),
                           observers=[sharp], keep_final=True, max_loss=diverge_loss,
                           per_trajectory={"lr": etas}, streams=seed_of)
        outs.append((etas, res))
        times.append(time.perf_counter() - t1)
        if progress is not None:
            progress(i + 1, n_chunks)

    def grid(values: np.ndarray) -> np.ndarray:       # (K, …) per chunk -> (n_seeds, n_c, …)
        parts = [v.reshape((n_seeds, c_chunk, *v.shape[1:])) for v in values]
        return np.concatenate(parts, axis=1)[:, :len(cs)]

    etas = grid([e for e, _ in outs])
    losses = grid([r.traces["loss"] for _, r in outs]).astype(np.float64)
    lams = grid([r.observed["sharpness"]["value"] for _, r in outs])
    resid = grid([r.observed["sharpness"]["residual"] for _, r in outs])
    div_at = grid([r.diverged_at for _, r in outs]).astype(np.int64)
    div = div_at >= 0
    taus = np.arange(1, n_barrier + 1) / n_barrier
    finals = grid([r.final["theta"] for _, r in outs])
    starts = np.broadcast_to(theta0[:, None, :], finals.shape)
    barrier = _segment_losses(prob, starts.reshape(-1, starts.shape[-1]),
                              finals.reshape(-1, finals.shape[-1]), taus).reshape(
        (*finals.shape[:2], n_barrier))
    barrier = np.where(div[..., None], np.inf, barrier)
    # after divergence the network is frozen: its losses read +inf, its sharpness NaN
    losses = np.where(np.isnan(losses), np.inf, losses)
    sharp = np.concatenate([np.broadcast_to(lam0[:, None, None], (*lams.shape[:2], 1)), lams],
                           axis=2)
    res0_np = np.asarray(res0, np.float64)
    resid = np.concatenate([np.broadcast_to(res0_np[:, None, None], (*resid.shape[:2], 1)),
                            resid], axis=2)
    steps = np.arange(0, n_steps + 1, measure_every)
    after = div[..., None] & (steps[None, None, :] >= div_at[..., None])
    sharp = np.where(after, np.nan, sharp)
    info = dict(n_params=n_par, lanczos_iter=m, lanczos_iter0=m0, n_steps=n_steps,
                batch_size=batch_size, momentum=momentum, loss=loss,
                measure_every=measure_every, measure_size=measure_size,
                diverge_loss=diverge_loss, lambda0_seconds=t_lam,
                first_chunk_seconds=times[0],
                rest_seconds=float(sum(times[1:])), n_chunks=n_chunks, c_chunk=c_chunk,
                compile_seconds=float(sum(r.metadata["compile_seconds"] for _, r in outs)),
                run_seconds=float(sum(r.metadata["run_seconds"] for _, r in outs)))
    return GridResult(cs=cs, lam0=lam0, eta=etas.astype(np.float64), loss=losses,
                      sharp_steps=steps, sharpness=sharp.astype(np.float64),
                      lanczos_residual=resid, diverged=div, diverged_at=div_at,
                      barrier_tau=taus, barrier_loss=barrier, info=info)


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
