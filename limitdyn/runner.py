"""The runner: the one loop over time in limitdyn (design.md, "runner").

One compiled kernel advances every trajectory of any dynamics (:mod:`limitdyn.dynamics`)
on any problem (:mod:`limitdyn.problems`) and hands the ensemble to the observers
(:mod:`limitdyn.observers`) at the *event* steps they ask for, so nothing per step is
stored. The trajectory batch is the leading axis of the state; the host splits the event
list into chunks (progress bar, checkpoint between chunks); every chunk is the same
compiled function with the chunk bounds as traced integers, so neither the chunk size nor
the hyperparameters (traced pytree leaves) trigger a recompilation.

Randomness: trajectory i uses ``fold_in(key, s_i)`` with its stream index s_i (its global
index i unless the caller shares streams between trajectories) and step k of it
``fold_in(fold_in(key, s_i), k)``, so results do not depend on chunking or devices.

**Divergence** (one rule for every run): at each event step, a trajectory diverges when a
coordinate of θ or v is non-finite or above 10⁻³·√(float max) (where second moments would
overflow), or — when the caller gives ``max_loss`` — its loss is non-finite or above
``max_loss``. It is counted at that event (the first event at or after the step it went
out of bounds), frozen at its state of the previous event, and leaves every statistic from
that event on. Events are the recorded, window and trace steps and the chunk ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from . import _accounting, _checks, _devices, _meta, _prng, observers, samplers, sgd, stability
from . import checkpoint as ckpt
from .dynamics import HeavyBall
from .hyper import Hyper
from .problems import Problem, _as_key, has_capability
from .result import Result, Stderr

WINDOW_SAMPLES = observers.WINDOW_SAMPLES
LARGE_DIM = 256          # above this, no 2d × 2d covariance unless a basis is given


class Carry(NamedTuple):
    state: sgd.State               # (K, d) each
    aux: Any                       # per-trajectory dynamics state (sampler, clock, …)
    theta_start: jax.Array         # (K, d)
    alive: jax.Array               # (K,) bool
    diverged_at: jax.Array         # (K,) int32: event step at which found diverged, −1
    step: jax.Array                # () int32, the step index of ``state``
    obs: tuple                     # one observers.Carry per observer


@dataclasses.dataclass(frozen=True)
class Plan:
    """When things happen, built on the host: every observer's event steps, the chunk
    boundaries, and the per-observer event tables (traced)."""

    n_steps: int
    event_steps: np.ndarray        # (E,) sorted unique
    chunk_ends: np.ndarray         # event indices (exclusive) at which chunks end
    tables: tuple                  # one dict of (E,) arrays per observer
    loss_at: np.ndarray            # (E,) bool: events at which the loss is evaluated
    n_events: int = 0              # the real events (the tables are padded beyond them)


def make_plan(n_steps: int, obs: tuple, n_chunks: int, max_loss: float | None = None,
              record: np.ndarray | None = None) -> Plan:
    """Events: every observer's steps and the chunk ends. The loss is evaluated where an
    observer needs it and, with ``max_loss``, also at the recorded steps and chunk ends
    (where it is checked: a trajectory whose loss went over the bound in between is found
    at the next of these)."""
    bounds = np.unique(np.round(np.linspace(0, n_steps, n_chunks + 1)).astype(np.int64))[1:]
    events = np.unique(np.concatenate([*(o.event_steps() for o in obs), bounds]))
    tables = tuple(o.tables(events) for o in obs)
    chunk_ends = np.searchsorted(events, bounds, side="right")
    loss_steps = [o.loss_steps() for o in obs if hasattr(o, "loss_steps")]
    if max_loss is not None:
        loss_steps += [bounds, np.zeros(0, np.int64) if record is None else record]
    loss_at = np.isin(events, np.concatenate(loss_steps)) if loss_steps else \
        np.zeros(events.shape, bool)
    # Pad the event tables to a bucketed length (never executed: chunks stop at the real
    # ones), so that a run of another length usually reuses the compiled kernel.
    n_real = len(events)
    pad = bucket(n_real) - n_real
    events = np.concatenate([events, np.full(pad, events[-1])])
    tables = jax.tree_util.tree_map(lambda a: _pad(a, pad), tables)
    return Plan(n_steps, events, chunk_ends, tables, _pad(loss_at, pad), n_real)


def bucket(n: int) -> int:
    """The padded length of a table of n entries: a power of four, at least 64 (runs whose
    lengths differ by up to 4× share a compiled kernel)."""
    size = 64
    while size < n:
        size *= 4
    return size


def _pad(a: np.ndarray, pad: int) -> np.ndarray:
    a = np.asarray(a)
    fill = False if a.dtype == bool else (-1 if a.dtype.kind in "iu" else 0)
    return np.concatenate([a, np.full(pad, fill, a.dtype)])


def record_steps(n_steps: int, record: Any, n_record: int) -> np.ndarray:
    """The recorded steps: 0 and log-spaced (``"log"``), evenly spaced (``"linear"``) or
    explicit integers in [0, n_steps]."""
    if isinstance(record, str):
        _checks.choice("record", record, ("log", "linear"))
        if record == "log":
            inner = np.geomspace(1, n_steps, num=n_record) if n_steps > 1 else np.array([1.0])
            rec = np.concatenate([[0], np.round(inner)])
        else:
            rec = np.round(np.linspace(0, n_steps, num=n_record + 1))
        return np.unique(rec.astype(np.int64))
    rec = _checks.real_array("record", record, ndim=1)
    if np.any(rec != np.round(rec)) or rec.min() < 0 or rec.max() > n_steps:
        raise ValueError(f"record steps must be integers in [0, n_steps={n_steps}]")
    return np.unique(rec.astype(np.int64))


def _bounded(state: sgd.State) -> jax.Array:
    """Per trajectory: every coordinate finite and below 10⁻³·√(float max)."""
    limit = 1e-3 * float(np.sqrt(np.finfo(state.theta.dtype).max))
    ok = lambda a: jnp.all(jnp.abs(a) < limit, axis=-1)  # noqa: E731  (False for NaN too)
    return ok(state.theta) & ok(state.velocity)


def batched_step_of(dynamics) -> Callable:
    """``(traj_keys, state, aux, k, params) -> (state, aux)`` for the whole batch.

    A dynamics may provide ``batched_step`` itself (e.g. one fused draw of the normals);
    otherwise its per-trajectory ``step`` is vmapped with the key ``fold_in(key_i, k)``.
    """
    if hasattr(dynamics, "batched_step"):
        return dynamics.batched_step

    def batched(traj_keys, state, aux, k, params):
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(traj_keys, k)
        vmapped = jax.vmap(dynamics.step, in_axes=(0, 0, 0, None, dynamics.params_axes(params)))
        return vmapped(keys, state, aux, k, params)

    return batched


def _freeze(ok: jax.Array, new: Any, old: Any) -> Any:
    def pick(a, b):
        return jnp.where(ok.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
    return jax.tree_util.tree_map(pick, new, old)


def _advance(static, carry: Carry, params, traj_keys, obs_arrays, event_steps, tables,
             loss_at, max_loss, first_event, stop_event) -> Carry:
    """Run events ``first_event … stop_event − 1``: step to each, check divergence, observe."""
    dynamics, obs, use_loss, always = static
    batched_step = batched_step_of(dynamics)
    problem = dynamics.problem(params)
    step_size = dynamics.step_size(params)

    def one_step(k, dyn):
        state, aux = dyn
        return batched_step(traj_keys, state, aux, k, params)

    def one_event(e, c: Carry) -> Carry:
        # The time loop carries only what a step needs; everything else waits outside it.
        state, aux = lax.fori_loop(c.step, event_steps[e], one_step, (c.state, c.aux))
        ok = c.alive & _bounded(state)
        loss = None
        if use_loss:
            nan = jnp.full(ok.shape, jnp.nan, state.theta.dtype)
            loss = lax.cond(loss_at[e], lambda th: jax.vmap(problem.loss)(th).astype(nan.dtype),
                            lambda th: nan, state.theta)
        was_alive = ok
        if max_loss is not None:
            ok = ok & (~loss_at[e] | (jnp.isfinite(loss) & (loss <= max_loss)))
        # a trajectory found diverged here goes back to its state of the previous event
        # (a select over the ensemble only at the rare events where one diverged)
        state = lax.cond(jnp.any(c.alive & ~ok), lambda s: _freeze(ok, s, c.state),
                         lambda s: s, state)
        diverged_at = jnp.where(c.alive & ~ok, event_steps[e], c.diverged_at)
        view = observers.View(event_steps[e], state.theta, state.velocity, c.theta_start, ok,
                              was_alive, step_size, loss, aux, params, problem, traj_keys,
                              dynamics)
        new_obs = []
        for o, oc, tab, arr, every in zip(obs, c.obs, tables, obs_arrays, always, strict=True):
            t_e = jax.tree_util.tree_map(lambda a: a[e], tab)
            if every:     # fires at every event: no cond (~5% less per event measured)
                new_obs.append(o.observe(oc, t_e, view, arr))
                continue
            new_obs.append(lax.cond(t_e["fires"],
                                    lambda oc, o=o, t_e=t_e, arr=arr: o.observe(oc, t_e, view,
                                                                                arr),
                                    lambda oc: oc, oc))
        return Carry(state, aux, c.theta_start, ok, diverged_at, event_steps[e], tuple(new_obs))

    return lax.fori_loop(first_event, stop_event, one_event, carry)


def _init_carry(static, traj_keys, theta0, v0) -> Carry:
    dynamics, obs = static[:2]
    n_traj, dim = theta0.shape
    aux = jax.vmap(dynamics.init_aux)(traj_keys)
    state = sgd.State(theta0, v0)
    obs_carry = tuple(o.init(n_traj, dim, theta0.dtype) for o in obs)
    return Carry(state, aux, theta0, _bounded(state), jnp.full((n_traj,), -1, jnp.int32),
                 jnp.zeros((), jnp.int32), obs_carry)


_init_jit = jax.jit(_init_carry, static_argnums=0)


def carry_shardings(carry: Carry, mesh: Mesh) -> Carry:
    """Where each part of the carry lives: per-trajectory arrays split along the mesh's
    ``traj`` axis, sums over trajectories replicated."""
    along, everywhere = NamedSharding(mesh, P("traj")), NamedSharding(mesh, P())
    per_traj = lambda tree: jax.tree_util.tree_map(lambda _: along, tree)  # noqa: E731
    shared = lambda tree: jax.tree_util.tree_map(lambda _: everywhere, tree)  # noqa: E731
    obs = tuple(observers.Carry(per_traj(o.per_trajectory), shared(o.shared))
                for o in carry.obs)
    return Carry(per_traj(carry.state), per_traj(carry.aux), along, along, along, everywhere,
                 obs)


_INIT_SHARDED: dict[Any, Callable] = {}


def _init_sharded(static, mesh, traj_keys, theta0, v0):
    """The initial carry, created in place on the mesh (no host-side copy of the state)."""
    cache_key = (static, mesh, _signature((traj_keys, theta0, v0)))
    if cache_key not in _INIT_SHARDED:
        def init(k, t, v):
            return _init_carry(static, k, t, v)
        placement = carry_shardings(jax.eval_shape(init, traj_keys, theta0, v0), mesh)
        _INIT_SHARDED[cache_key] = (jax.jit(init, out_shardings=placement), placement)
    init, placement = _INIT_SHARDED[cache_key]
    return init(traj_keys, theta0, v0), placement


# One executable per (static configuration, argument shapes): hyperparameters, data values,
# event tables and chunk bounds are all traced, so sweeps reuse it.
_COMPILED: dict[Any, Callable] = {}


def _signature(tree) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (treedef, tuple((np.shape(x), str(jnp.asarray(x).dtype)) for x in leaves))


def _compiled(name: str, fn: Callable, static: Any, args: tuple,
              out_shardings: Any = None) -> tuple[Callable, float]:
    # The random stream depends on these settings, and traced code reads them.
    config = (bool(jax.config.jax_threefry_partitionable), str(jax.config.jax_default_prng_impl))
    placement = tuple(str(getattr(x, "sharding", None)) for x in jax.tree_util.tree_leaves(args))
    cache_key = (name, static, _signature(args), config, placement)
    if cache_key in _COMPILED:
        return _COMPILED[cache_key], 0.0
    t0 = time.perf_counter()
    options = {} if out_shardings is None else {"out_shardings": out_shardings}
    exe = jax.jit(fn, static_argnums=0, donate_argnums=1, **options).lower(static,
                                                                          *args).compile()
    _COMPILED[cache_key] = exe
    return exe, time.perf_counter() - t0


def trajectory_mesh(n_traj: int, devices: int | None, prng: str = "threefry2x32"
                    ) -> Mesh | None:
    """The device mesh (one axis, ``"traj"``) the trajectory batch is sharded over.

    ``devices=None``: every device (all processes' under ``jax.distributed``) when that
    count divides K, otherwise the largest count that does (one process only). An explicit
    count must divide K. Returns None for a single device (no sharding at all).

    philox keys cannot be compiled for several devices (measured with jax 0.10.2: their
    32-bit multiply-high does not lower under SPMD partitioning): with ``devices=None`` a
    philox run stays on one device (with a warning), an explicit count > 1 is refused.
    """
    available = jax.devices()
    multi = jax.process_count() > 1
    shardable = not prng.startswith("philox")
    if devices is None:
        if not shardable:
            if multi:
                raise ValueError(f"prng={prng!r} cannot run on several processes (philox "
                                 "keys do not compile for several devices); use a threefry "
                                 "implementation")
            if len(available) > 1:
                warnings.warn(f"prng={prng!r}: philox keys do not compile for several "
                              "devices; running on one device", stacklevel=3)
            return None
        n = len(available) if multi else max(c for c in range(1, len(available) + 1)
                                             if n_traj % c == 0)
    else:
        n = _checks.integer("devices", devices, low=1, high=len(available))
        if multi and n != len(available):
            raise ValueError(f"devices={n}: a multi-process run shards over all "
                             f"{len(available)} devices of its processes")
    if n > 1 and not shardable:
        raise ValueError(f"devices={n}: prng={prng!r} cannot be compiled for several devices "
                         "(philox keys); use devices=1 or a threefry implementation")
    if n_traj % n:
        raise ValueError(f"n_traj={n_traj} must be a multiple of the {n} devices it is "
                         "sharded over")
    if n == 1:
        return None
    return Mesh(np.array(available[:n]), ("traj",))


def _trajectory_keys(key: jax.Array, streams: jax.Array) -> jax.Array:
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, streams)


class Outcome(NamedTuple):
    """What :func:`run_ensemble` returns: each observer's finalized output (by name), the
    final states, the alive mask and divergence steps, the final ``aux``, and timings."""

    observed: dict[str, Any]
    theta: np.ndarray
    velocity: np.ndarray
    alive: np.ndarray
    diverged_at: np.ndarray
    aux: Any
    timings: dict[str, float]


CALL_SECONDS = 2.0     # a checkpointed run's kernel calls last about this long


def _next_stop(plan: Plan, first: int, n_events: int, step: int, per_step: float | None,
               split: bool) -> int:
    """The event the next kernel call runs to: the next planned chunk end, or — for a
    checkpointed run — earlier, so that a call lasts about :data:`CALL_SECONDS` (a signal
    is then answered, and the state saved, within seconds; a first call of one event
    measures the speed)."""
    planned = int(plan.chunk_ends[np.searchsorted(plan.chunk_ends, first, side="right")])
    planned = min(planned, n_events)
    if not split:
        return planned
    if per_step is None:
        return min(first + 1, planned)
    target = step + max(1, int(CALL_SECONDS / max(per_step, 1e-9)))
    stop = int(np.searchsorted(plan.event_steps[:n_events], target, side="right"))
    return max(first + 1, min(stop, planned))


def _run_chunks(static, carry, params, traj_keys, obs_arrays, events, tables, loss_at,
                loss_bound, plan, first, n_events, placement, checkpoint, checkpoint_every,
                run_id, log, stop_req, progress, description):
    """Compile (cached) and run the kernel from event ``first`` to the end in calls,
    checkpointing when due (``log``: what the checkpoint's side files hold); returns
    (carry, compile seconds, start of the run clock)."""
    zero = jnp.zeros((), jnp.int32)
    run, compile_seconds = _compiled(
        "advance", _advance, static,
        (carry, params, traj_keys, obs_arrays, events, tables, loss_at, loss_bound, zero,
         zero),
        out_shardings=placement)
    t0 = time.perf_counter()
    every = None if checkpoint is None else ckpt.interval(checkpoint_every)
    with tqdm(total=int(plan.event_steps[n_events - 1]), initial=int(carry.step),
              disable=not progress, unit="step", desc=description, leave=False) as bar:
        last_save, per_step = time.perf_counter(), None
        while first < n_events:
            stop = _next_stop(plan, first, n_events, int(carry.step), per_step,
                              split=every is not None and every > 0)
            t_call, step_before = time.perf_counter(), int(carry.step)
            carry = run(carry, params, traj_keys, obs_arrays, events, tables, loss_at,
                        loss_bound, jnp.int32(first), jnp.int32(stop))
            jax.block_until_ready(carry.step)
            advanced = int(carry.step) - step_before
            if advanced > 0:
                per_step = (time.perf_counter() - t_call) / advanced
            first = int(stop)
            now = time.perf_counter()
            stopping = stop_req is not None and stop_req.signum is not None
            if checkpoint is not None and (first >= n_events or stopping or every == 0
                                           or now - last_save >= every):
                ckpt.save(checkpoint, carry, first, n_events, int(carry.step), run_id,
                          filled=filled_slots(static[1], carry, plan.event_steps, first),
                          log=log)
                last_save = time.perf_counter()
            bar.update(int(carry.step) - bar.n)
            if stopping:
                stop_req.raise_now()
    return carry, compile_seconds, t0


def filled_slots(obs: tuple, carry: Carry, event_steps: np.ndarray, next_event: int) -> Any:
    """For a checkpoint: a tree like ``carry`` marking the growing records — what each
    observer's ``growing`` says is filled one slot at a time, with how many slots are final
    after events ``0 … next_event − 1`` (:class:`limitdyn.checkpoint.Growing`) — and −1 for
    every leaf saved whole. Growing records are appended to side files, not rewritten."""
    last = int(event_steps[next_event - 1]) if next_event > 0 else -1

    def whole(tree):
        return jax.tree_util.tree_map(lambda _: -1, tree)

    marked = tuple(o.growing(oc, last) if hasattr(o, "growing") else whole(oc)
                   for o, oc in zip(obs, carry.obs, strict=True))
    return Carry(whole(carry.state), whole(carry.aux), -1, -1, -1, -1, marked)


def run_ensemble(dynamics: Any, params: Any, key: jax.Array, theta0: jax.Array,
                 v0: jax.Array, plan: Plan, obs: tuple, *, streams: np.ndarray | None = None,
                 max_loss: float | None = None, progress: bool, description: str,
                 checkpoint: str | None = None, checkpoint_every: float | None = None,
                 mesh: Mesh | None = None) -> Outcome:
    """Run ``dynamics`` over the whole plan, feeding the observers ``obs``.

    With ``checkpoint`` (a file path) the carry is saved atomically every
    ``checkpoint_every`` seconds (default 60, :func:`limitdyn.checkpoint.interval`; 0: after
    every chunk), at the end, and when SIGINT or SIGTERM arrives (after the kernel call in
    flight, which lasts about :data:`CALL_SECONDS`); when the file already holds this run's
    state, the run continues from it (:mod:`limitdyn.checkpoint`). With a ``mesh`` every
    per-trajectory array is sharded
    along its trajectory axis; the statistics are sums over trajectories, which XLA
    reduces across devices inside the kernel, and come back replicated.
    """
    n_traj = theta0.shape[0]
    n_events = plan.n_events
    streams_arr = jnp.arange(n_traj) if streams is None else jnp.asarray(streams, jnp.int32)
    use_loss = bool(plan.loss_at.any())
    # which observers fire at every event (then observed without a cond)
    always = tuple(bool(np.all(t["fires"])) for t in plan.tables)
    static = (dynamics, obs, use_loss, always)
    obs_arrays = tuple(o.arrays() for o in obs)
    if mesh is None:
        _devices.warn_if_one_device()
        traj_keys = _trajectory_keys(key, streams_arr)
        carry = _init_jit(static, traj_keys, theta0, v0)
        placement = None
    else:
        along, everywhere = NamedSharding(mesh, P("traj")), NamedSharding(mesh, P())
        streams_arr = jax.device_put(streams_arr, along)
        traj_keys = jax.jit(_trajectory_keys, out_shardings=along)(key, streams_arr)
        place = jax.jit(lambda *a: a, out_shardings=(along, along))
        theta0, v0 = place(theta0, v0)
        params, obs_arrays = jax.jit(lambda p: p, out_shardings=everywhere)((params,
                                                                             obs_arrays))
        carry, placement = _init_sharded(static, mesh, traj_keys, theta0, v0)
    first = 0
    run_id, log = None, ckpt.AppendLog()
    if checkpoint is not None:
        prng = (bool(jax.config.jax_threefry_partitionable), str(jax.config.jax_default_prng_impl))
        run_id = ckpt.fingerprint(
            (dynamics, obs, use_loss, max_loss, prng), params, key, theta0, v0, obs_arrays,
            (plan.event_steps, plan.chunk_ends, plan.loss_at, streams_arr), plan.tables)
        loaded = ckpt.load(checkpoint, carry, run_id, log=log)
        if loaded is not None:
            carry, first = loaded
    events = jnp.asarray(plan.event_steps, jnp.int32)
    tables = jax.tree_util.tree_map(jnp.asarray, plan.tables)
    loss_at = jnp.asarray(plan.loss_at)
    loss_bound = None if max_loss is None else jnp.asarray(max_loss, theta0.dtype)
    compile_seconds = 0.0
    t0 = time.perf_counter()
    # A signal from here on (compilation included) is answered after the next kernel call
    # by a checkpoint and a stop; outside simulations it stops at once.
    stop_request = ckpt.deferred_stop() if checkpoint is not None else \
        contextlib.nullcontext()
    with stop_request as stop_req:
        if first < n_events:   # a finished checkpoint needs no kernel at all
            carry, compile_seconds, t0 = _run_chunks(
                static, carry, params, traj_keys, obs_arrays, events, tables, loss_at,
                loss_bound, plan, first, n_events, placement, checkpoint, checkpoint_every,
                run_id, log, stop_req, progress, description)
    run_seconds = time.perf_counter() - t0
    if mesh is not None:   # every process gets every statistic and every trajectory
        carry = jax.jit(lambda a: a, out_shardings=NamedSharding(mesh, P()))(carry)
    observed = {o.name: o.finalize(oc) for o, oc in zip(obs, carry.obs, strict=True)}
    return Outcome(observed, np.asarray(carry.state.theta), np.asarray(carry.state.velocity),
                   np.asarray(carry.alive), np.asarray(carry.diverged_at),
                   jax.tree_util.tree_map(np.asarray, carry.aux),
                   {"compile_seconds": compile_seconds, "run_seconds": run_seconds})


def run(dynamics: Any, params: Any, key: Any, theta0: np.ndarray, v0: np.ndarray,
        n_steps: int, obs: tuple, *, n_chunks: int | None = None, progress: bool = False,
        description: str = "run", checkpoint: str | os.PathLike | None = None,
        devices: int | None = None, prng: str | None = None, max_loss: float | None = None,
        streams: np.ndarray | None = None, record: np.ndarray | None = None,
        checkpoint_every: float | None = None) -> Outcome:
    """The runner for a caller that brings its own dynamics and observers (e.g.
    :func:`limitdyn.mlnoise.simulate`): checkpoint path (the caller's or the scope's), key
    and PRNG setting, device mesh, event plan, then :func:`run_ensemble`."""
    checkpoint = ckpt.resolve(checkpoint)
    n_traj = theta0.shape[0]
    if n_chunks is None:
        n_chunks = default_chunks(progress, checkpoint)
    key = _prng.with_impl(_as_key(key), prng)
    mesh = trajectory_mesh(n_traj, devices, str(jax.random.key_impl(key)))
    plan = make_plan(n_steps, obs, min(n_chunks, n_steps), max_loss, record)
    out = run_ensemble(dynamics, params, key, jnp.asarray(theta0), jnp.asarray(v0), plan, obs,
                       streams=streams, max_loss=max_loss, progress=progress,
                       description=description, checkpoint=checkpoint,
                       checkpoint_every=checkpoint_every, mesh=mesh)
    return out._replace(timings=out.timings | {"environment": _meta.environment(key)})


# --- the front doors' shared options -----------------------------------------------------------

def check_problem(prob: Any, what: str) -> None:
    if isinstance(prob, Problem):
        return
    hint = ""
    try:
        import flax.linen as fnn
        if isinstance(prob, fnn.Module):
            hint = ("; a flax model becomes one with "
                    "ld.nn.FlaxProblem.from_module(model, params, x, y, loss='mse')")
    except ImportError:   # pragma: no cover
        pass
    raise TypeError(f"{what}: prob must be a limitdyn problem (ld.LinearRegression, "
                    f"ld.Quadratic, ld.nn.FlaxProblem, or your own ld.Problem / ld.FiniteSum "
                    f"subclass), got {type(prob).__name__}{hint}")


def problem_dim(prob: Any, theta0: Any) -> int:
    d = prob.dim
    if d is not None:
        return int(d)
    if theta0 is None:
        raise ValueError(f"theta0 is required: {type(prob).__name__} does not say its "
                         "dimension (no dim property) nor a minimiser to start from")
    arr = np.shape(theta0)
    if len(arr) not in (1, 2):
        raise ValueError(f"theta0 must have shape (d,) or (n_traj, d), got {arr}")
    return int(arr[-1])


def default_start(prob: Any, weight_decay: float, theta0: Any) -> np.ndarray | None:
    """The minimiser when the problem knows it and theta0 is not given."""
    if theta0 is not None:
        return None
    if not has_capability(prob, "minimiser"):
        raise ValueError(f"theta0 is required: {type(prob).__name__} has no closed-form "
                         "minimiser to start from; pass theta0 (shape (d,) or (n_traj, d))")
    return np.asarray(prob.minimiser64(weight_decay), np.float64)


def _start_points(name: str, value: Any, default: np.ndarray | None, n_traj: int,
                  d: int) -> np.ndarray:
    if value is None:
        if default is None:
            return np.zeros((n_traj, d))
        return np.broadcast_to(default, (n_traj, d))
    arr = _checks.real_array(name, value, ndim=(1, 2))
    if arr.shape not in ((d,), (n_traj, d)):
        raise ValueError(f"{name} must have shape ({d},) or (n_traj={n_traj}, {d}), "
                         f"got {arr.shape}")
    return np.broadcast_to(arr, (n_traj, d))


def check_functions(prob: Any, d: int, dtype) -> None:
    """Evaluate the problem's shapes abstractly (nothing is compiled): a clear error now
    rather than one from inside a kernel."""
    spec = jax.ShapeDtypeStruct((d,), dtype)
    name = type(prob).__name__
    n = prob.n_examples
    if n is not None and hasattr(prob, "example_losses"):
        m = min(n, 3)
        idx = jax.ShapeDtypeStruct((m,), jnp.int32)
        try:
            out = jax.eval_shape(prob.example_losses, spec, idx)
        except NotImplementedError as err:
            raise TypeError(str(err)) from None
        except Exception as err:
            raise ValueError(f"{name}.example_losses(theta, idx) fails on theta of shape "
                             f"({d},) and idx of shape ({m},): {type(err).__name__}: "
                             f"{_first_line(err)}") from None
        if getattr(out, "shape", None) != (m,):
            raise ValueError(f"{name}.example_losses(theta, idx) must return one loss per "
                             f"index, shape ({m},); got "
                             f"{getattr(out, 'shape', type(out).__name__)}")
    try:
        out = jax.eval_shape(prob.loss, spec)
    except NotImplementedError as err:
        raise TypeError(str(err)) from None
    except Exception as err:
        raise ValueError(f"{name}.loss(theta) fails on theta of shape ({d},): "
                         f"{type(err).__name__}: {_first_line(err)}") from None
    if getattr(out, "shape", None) != ():
        raise ValueError(f"{name}.loss(theta) must return a scalar, got shape "
                         f"{getattr(out, 'shape', type(out).__name__)}")


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""


def validate_run_args(prob, n_traj, n_steps, burn_in, n_record, n_groups, progress,
                      what: str = "simulate"):
    """Checks shared by every front door; returns normalised values."""
    check_problem(prob, what)
    n_traj = _checks.integer("n_traj", n_traj, low=1, high=2**31 - 1)
    n_steps = _checks.integer("n_steps", n_steps, low=1, high=2**31 - 1)   # int32 step index
    burn_in = n_steps // 2 if burn_in is None else _checks.integer("burn_in", burn_in, low=0,
                                                                   high=n_steps)
    n_record = _checks.integer("n_record", n_record, low=1, high=10**6)
    n_groups = min(32, n_traj) if n_groups is None else _checks.integer(
        "n_groups", n_groups, low=1, high=n_traj)
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    return n_traj, n_steps, burn_in, n_record, n_groups


def default_chunks(progress: bool, checkpoint: str | None) -> int:
    """Chunks a run is split into when the caller does not say: 20 when there is a progress
    bar to update or a checkpoint to write, otherwise 1 (each boundary is a host round trip)."""
    return 20 if (progress or checkpoint is not None) else 1


@dataclasses.dataclass(frozen=True)
class Options:
    """The observer and run options every front door shares, checked on the host."""

    basis: np.ndarray | None
    traces: dict
    trace_steps: np.ndarray | None
    extra: tuple
    keep_final: bool
    max_loss: float | None
    streams: np.ndarray | None


def check_options(n_traj: int, n_steps: int, d: int, *, basis: Any, traces: Any,
                  trace_steps: Any, observers_: Any, keep_final: Any, max_loss: Any,
                  streams: Any) -> Options:
    if basis is not None:
        basis = _checks.real_array("basis", basis, ndim=2)
        if basis.shape[0] != d:
            raise ValueError(f"basis must have shape (d={d}, m): one column per direction, "
                             f"got {basis.shape}")
    trace_fns = {}
    if traces is not None:
        if not isinstance(traces, dict):
            raise TypeError("traces must be a dict name -> function(theta, velocity), "
                            f"(function, data) or one of {observers.BUILTINS}, got "
                            f"{type(traces).__name__}")
        for name, what in traces.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"trace names must be non-empty strings, got {name!r}")
            ok = (callable(what) or (isinstance(what, str) and what in observers.BUILTINS)
                  or (isinstance(what, tuple) and len(what) == 2 and callable(what[0])))
            if not ok:
                raise TypeError(f"traces[{name!r}] must be a function (theta, velocity) -> "
                                f"array, a pair (function(theta, velocity, data), data) or "
                                f"one of {observers.BUILTINS}; got {what!r:.100}")
        trace_fns = dict(traces)
    if trace_steps is not None:
        trace_steps = _checks.real_array("trace_steps", trace_steps, ndim=1)
        if np.any(trace_steps != np.round(trace_steps)) or trace_steps.min() < 0 \
                or trace_steps.max() > n_steps:
            raise ValueError(f"trace_steps must be integers in [0, n_steps={n_steps}]")
        trace_steps = np.unique(trace_steps.astype(np.int64))
        if not trace_fns:
            raise ValueError("trace_steps given without traces")
    extra = tuple(observers_ or ())
    names = {"phase_space", "traces"}
    for o in extra:
        for method in ("event_steps", "tables", "init", "observe", "finalize", "arrays"):
            if not callable(getattr(o, method, None)):
                raise TypeError(f"observer {o!r} has no method {method}() (see "
                                "limitdyn.observers)")
        if o.name in names:
            raise ValueError(f"two observers are named {o.name!r}")
        names.add(o.name)
    if max_loss is not None:
        max_loss = _checks.finite_float("max_loss", max_loss, low=0.0, low_open=True)
    if streams is not None:
        streams = np.asarray(streams)
        if streams.shape != (n_traj,) or streams.dtype.kind not in "iu" or streams.min() < 0 \
                or streams.max() >= 2**31:
            raise ValueError(f"streams must be n_traj={n_traj} non-negative integers (the "
                             "random stream of each trajectory), got "
                             f"shape {streams.shape}, dtype {streams.dtype}")
    return Options(basis, trace_fns, trace_steps, extra, bool(keep_final), max_loss, streams)


def build_observers(opts: Options, rec: np.ndarray, window: np.ndarray, n_steps: int,
                    d: int, n_groups: int, keep_trajectories: bool,
                    scale: int = 1) -> tuple:
    """The observers of a front-door call: phase-space statistics, traces, the caller's."""
    covariance = opts.basis is not None or d <= LARGE_DIM
    phase = observers.PhaseSpace(
        n_record=len(rec), n_groups=n_groups, keep=keep_trajectories,
        basis_dim=None if opts.basis is None else opts.basis.shape[1], covariance=covariance,
        n_steps=n_steps, record_steps=rec, window_steps=window, basis=opts.basis)
    obs = [phase]
    if opts.traces:
        steps = (rec * scale if opts.trace_steps is None else opts.trace_steps) // scale
        obs.append(observers.Trace.from_dict(opts.traces, steps))
    return (*obs, *opts.extra)


def check_memory(n_traj: int, d: int, rec: np.ndarray, opts: Options, obs: tuple,
                 keep_trajectories: bool, dtype) -> None:
    """Refuse, before any allocation, a run whose per-trajectory arrays cannot fit."""
    item = np.dtype(dtype).itemsize
    nbytes = 4 * n_traj * d * item                        # state, start, keys, …
    if keep_trajectories:
        dim2 = 2 * (d if opts.basis is None else opts.basis.shape[1])
        nbytes += n_traj * len(rec) * dim2 * item
    for o in obs:
        if isinstance(o, observers.Trace):
            for shape in o.shapes(d, dtype).values():
                size = int(np.prod(shape.shape, dtype=np.int64))
                nbytes += n_traj * o.n_steps_traced * size * item
    try:
        from . import _memory
    except ImportError:   # pragma: no cover - the module ships with the package
        return
    _memory.check_allocation(int(nbytes), "the run's per-trajectory arrays")


def finish_result(schedule_rec: np.ndarray, out: Outcome, opts: Options, config: dict,
                  metadata: dict, stride: int = 1) -> Result:
    """Assemble a :class:`Result`; ``stride`` SGD steps per runner step (SDE steps > η)."""
    stats = out.observed["phase_space"]
    stderr = Stderr(mean=stats["se_mean"], cov=stats["se_cov"],
                    displacement=stats["se_displacement"],
                    local_displacement=stats["se_local_displacement"],
                    stationary_mean=stats["se_stationary_mean"],
                    stationary_cov=stats["se_stationary_cov"],
                    stationary_local_displacement=stats["se_stationary_local_displacement"],
                    stationary_lag_cov=stats["se_stationary_lag_cov"])
    traces, trace_steps = None, None
    if "traces" in out.observed:
        traces = out.observed["traces"]
        trace_steps = ((schedule_rec if opts.trace_steps is None else opts.trace_steps // stride)
                       * stride)
    extra = {k: v for k, v in out.observed.items() if k not in ("phase_space", "traces")}
    final = None
    if opts.keep_final:
        final = {"theta": out.theta, "velocity": out.velocity}
    return Result(
        steps=schedule_rec * stride, mean=stats["mean"], cov=stats["cov"],
        displacement=stats["displacement"], local_displacement=stats["local_displacement"],
        stationary_mean=stats["stationary_mean"], stationary_cov=stats["stationary_cov"],
        stationary_local_displacement=stats["stationary_local_displacement"],
        n_alive=stats["n_alive"], stderr=stderr, trajectories=stats["trajectories"],
        stationary_lag_cov=stats["stationary_lag_cov"], window_groups=stats["window_groups"],
        traces=traces, trace_steps=trace_steps, observed=extra or None, final=final,
        alive=out.alive, diverged_at=np.where(out.diverged_at >= 0,
                                              out.diverged_at * stride, -1),
        config=config | {"lag_steps": stride, "basis": opts.basis is not None},
        metadata=metadata)


def _hyper_per_trajectory(hp: Hyper, per_trajectory: Any, n_traj: int, dtype
                          ) -> tuple[Any, tuple[str, ...]]:
    """hp with the fields of ``per_trajectory`` as (K,) arrays, all leaves traced."""
    if per_trajectory is None:
        return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), hp), ()
    if not isinstance(per_trajectory, dict):
        raise TypeError("per_trajectory must be a dict such as {'lr': array of n_traj values}")
    fields = {}
    for name, values in per_trajectory.items():
        _checks.choice("per_trajectory key", name, ("lr", "momentum", "weight_decay"))
        arr = _checks.real_array(f"per_trajectory[{name!r}]", values, shape=(n_traj,))
        for v in arr:    # each value must be a valid hyperparameter
            hp.replace(**{name: float(v)})
        fields[name] = jnp.asarray(arr, dtype)
    leaves = [fields.get(f, jnp.asarray(getattr(hp, f), dtype))
              for f in ("lr", "momentum", "weight_decay")]
    from .hyper import _unflatten
    return _unflatten(hp.batch_size, leaves), tuple(sorted(fields))


def simulate_sgd(prob: Problem, hp: Hyper, key: Any, n_traj: int, n_steps: int,
                 sampling: str = "iid", theta0: Any = None, v0: Any = None,
                 burn_in: int | None = None, *, record: str | Any = "log", n_record: int = 50,
                 window_every: int | None = None, n_groups: int | None = None,
                 keep_trajectories: bool = False, n_chunks: int | None = None,
                 progress: bool | None = None, check_stability: bool | None = None,
                 checkpoint: str | os.PathLike | None = None, prng: str | None = None,
                 devices: int | None = None, basis: Any = None, traces: dict | None = None,
                 trace_steps: Any = None, observers: Any = None, keep_final: bool = False,
                 max_loss: float | None = None, per_trajectory: dict | None = None,
                 streams: Any = None, checkpoint_every: float | None = None) -> Result:
    """Simulate ``n_traj`` independent SGD-with-momentum trajectories for ``n_steps`` steps.

    The update is theory.md §1 (:class:`limitdyn.dynamics.HeavyBall`) on any problem:
    ``ld.LinearRegression``, ``ld.Quadratic``, a flax network (``ld.nn.FlaxProblem``) or
    your own :class:`~limitdyn.FiniteSum` / :class:`~limitdyn.Problem`. Minibatches of a
    finite sum come from ``sampling`` (``"iid"``, ``"replacement"`` or ``"reshuffle"``,
    see :mod:`limitdyn.samplers`); a problem without examples draws its own gradient noise
    from the step's key and takes ``sampling="iid"``.

    Args:
        prob: the problem.
        hp: hyperparameters; ``hp.batch_size`` None means full batch (S = N).
        key: a JAX PRNG key.
        n_traj: number of trajectories K >= 1.
        n_steps: number of SGD steps >= 1.
        sampling: minibatch sampling mode.
        theta0: start, (d,) or (K, d); default the minimiser of L_λ (problems that know it;
            required otherwise).
        v0: start velocity, (d,) or (K, d); default 0.
        burn_in: window averages (``stationary_*``) use steps ``burn_in <= k <= n_steps``;
            default ``n_steps // 2``.
        record: ``"log"`` (0 and log-spaced steps, default), ``"linear"``, or explicit steps.
        n_record: number of log/linear points requested (duplicates after rounding merge).
        window_every: spacing of the window samples; default so that there are about
            ``WINDOW_SAMPLES`` = 64 (each sample and its lag-one pair cost an outer product
            over the ensemble, ~K(2d)² flops: more samples than the window has independent
            stretches buy little precision and cost time — benchmarks/statistics_overhead.py).
            With ``reshuffle`` the default spacing is coprime with the epoch length and the
            window start moves (by less than an epoch of samples) so that every phase of the
            epoch is sampled equally often (:func:`reshuffle_window`): the window average is
            then the phase average of theory.md §9.
        n_groups: independent trajectory groups for the window's batch-means standard
            errors; default min(32, K).
        keep_trajectories: also return the states at the recorded steps, (T, K, 2d).
        n_chunks: host-side chunks the run is split into (progress-bar updates); default 20
            with a progress bar and 1 without (each chunk boundary costs a host round trip).
        progress: show a progress bar (default: for runs of over 5·10⁶ trajectory-steps).
        check_stability: warn (:class:`~limitdyn.stability.StabilityWarning`) when ``hp`` is
            outside or within 10% of the discrete stability region, naming the largest
            stable lr. Default: when the problem has a Hessian and d <= 256; True on a
            problem without one is an error.
        checkpoint: a file path: the complete run state is saved there atomically every
            ``checkpoint_every`` seconds, at the end, and on SIGINT/SIGTERM (then the run
            stops: a resume continues from that moment), and a later call with the same
            arguments continues from it — after a crash, or instantly once finished. A
            checkpoint written by a different run is refused (:class:`~limitdyn.checkpoint.
            CheckpointError`). Records that only grow (kept trajectories, traces, the
            per-recorded-step statistics) are appended to ``PATH.kept`` save by save.
            Inside ``limitdyn run`` every simulation is checkpointed.
        checkpoint_every: seconds between timed checkpoints (default 60, or the
            ``limitdyn run --checkpoint-every`` value; 0: after every chunk). A kill -9
            loses at most this much work.
        prng: the PRNG implementation: ``"threefry2x32"``, ``"threefry4x32"``,
            ``"philox2x32"`` or ``"philox4x32"``; None (default) keeps ``key``'s own.
            ``rbg``/``unsafe_rbg`` are refused: under vmap they are not independent per
            trajectory.
        devices: how many devices the trajectories are sharded over (one mesh axis; the
            statistics are reduced across devices inside the kernel). Default: all of
            ``jax.devices()`` — every process's under ``jax.distributed.initialize()`` —
            or, in one process, the largest count dividing ``n_traj``. Results do not
            depend on the device count (up to the order of floating-point sums).
        basis: V of shape (d, m): the phase-space statistics are those of (Vᵀθ, Vᵀv)
            (e.g. the top Hessian eigenvectors of a network). Without a basis and for
            d > 256 no covariance is computed (``res.cov`` is None): the mean, the global
            and local displacements and the traces remain.
        traces: ``{name: fn(theta, velocity)}``: per-trajectory values at ``trace_steps``
            (default the recorded steps) in ``res.traces[name]``, shape (K, T', …); the
            string ``"loss"`` records the problem's loss.
        trace_steps: the steps of the traces (integers in [0, n_steps]).
        observers: further :mod:`limitdyn.observers` (time averages, histograms, your own);
            their outputs are in ``res.observed[name]``.
        keep_final: return the final states in ``res.final`` (``theta``, ``velocity``).
        max_loss: a trajectory whose loss exceeds this (or is not finite) at an event step
            has diverged (in addition to the coordinate bound of the module docstring).
        per_trajectory: ``{"lr": (K,) values}`` (also ``"momentum"``, ``"weight_decay"``):
            one hyperparameter per trajectory, in one kernel (a learning-rate grid).
        streams: (K,) integers: trajectory i draws its batches from ``fold_in(key,
            streams[i])`` (default i). Equal streams share minibatches (common random
            numbers: e.g. networks of one seed at several learning rates).

    Raises:
        DivergenceError: every trajectory diverged (quotes the stability bound).

    Returns:
        A :class:`Result`.
    """
    n_traj, n_steps, burn_in, n_record, n_groups = validate_run_args(
        prob, n_traj, n_steps, burn_in, n_record, n_groups, progress, "simulate_sgd")
    if not isinstance(hp, Hyper):
        raise TypeError(f"hp must be a limitdyn.Hyper, got {type(hp).__name__}")
    sampling = _checks.choice("sampling", sampling, samplers.SAMPLINGS)
    n_examples = prob.n_examples
    if n_examples is None:
        if sampling != "iid":
            raise ValueError(f"sampling must be 'iid' for a {type(prob).__name__} problem (no "
                             f"examples to sample: its gradient noise is drawn afresh each "
                             f"step); got {sampling!r}")
        batch_size = None
    else:
        batch_size = n_examples if hp.batch_size is None else hp.batch_size
        if not 1 <= batch_size <= n_examples:
            raise ValueError(f"Hyper.batch_size must be in [1, N={n_examples}] for this problem, "
                             f"got {batch_size}")
    d = problem_dim(prob, theta0)
    dtype = np.dtype(jnp.result_type(float))
    check_functions(prob, d, dtype)
    opts = check_options(n_traj, n_steps, d, basis=basis, traces=traces,
                         trace_steps=trace_steps, observers_=observers, keep_final=keep_final,
                         max_loss=max_loss, streams=streams)
    traced_hp, varied = _hyper_per_trajectory(hp, per_trajectory, n_traj, dtype)
    checkpoint = ckpt.resolve(checkpoint)
    if progress is None:   # a bar for runs of more than a few seconds
        progress = n_traj * n_steps > 5 * 10**6
    n_chunks = default_chunks(progress, checkpoint) if n_chunks is None else _checks.integer(
        "n_chunks", n_chunks, low=1)
    keep_trajectories = bool(keep_trajectories)
    key = _prng.with_impl(_as_key(key), prng)
    mesh = trajectory_mesh(n_traj, devices, str(jax.random.key_impl(key)))
    rec = record_steps(n_steps, record, n_record)
    window_every = None if window_every is None else _checks.integer(
        "window_every", window_every, low=1)
    if sampling == "reshuffle" and window_every is None and n_examples is not None:
        burn_in, window_every = reshuffle_window(n_steps, burn_in, n_examples // batch_size)
    window, window_every = observers_window(n_steps, burn_in, window_every)
    obs = build_observers(opts, rec, window, n_steps, d, n_groups, keep_trajectories)
    check_memory(n_traj, d, rec, opts, obs, keep_trajectories, dtype)
    plan = make_plan(n_steps, obs, min(n_chunks, n_steps), opts.max_loss, rec)
    start = default_start(prob, hp.weight_decay, theta0)
    theta_start = jnp.asarray(_start_points("theta0", theta0, start, n_traj, d), dtype)
    v_start = jnp.asarray(_start_points("v0", v0, None, n_traj, d), dtype)
    if check_stability is None:
        check_stability = has_capability(prob, "hessian") and per_trajectory is None
    elif check_stability and not has_capability(prob, "hessian"):
        raise ValueError(f"check_stability=True needs a problem with a Hessian; "
                         f"{type(prob).__name__} has none (leave it at None)")
    if check_stability:
        stability.precheck(prob, hp, sampling)
    dynamics = HeavyBall(sampling, n_examples, batch_size, varied,
                         1 if mesh is None else mesh.size)
    out = run_ensemble(dynamics, (prob, traced_hp), key, theta_start, v_start, plan, obs,
                       streams=opts.streams, max_loss=opts.max_loss, progress=progress,
                       description="simulate_sgd", checkpoint=checkpoint,
                       checkpoint_every=checkpoint_every, mesh=mesh)
    n_alive_last = int(out.alive.sum())
    stability.raise_if_all_diverged(n_alive_last, n_traj, n_steps, prob, hp, sampling,
                                    "simulate_sgd")
    config = {
        "kind": "sgd", "problem": repr(prob), "dim": d, "n_examples": n_examples,
        "hyper": hp.to_dict() | {"batch_size": batch_size}, "sampling": sampling,
        "n_traj": n_traj, "n_steps": n_steps, "burn_in": burn_in, "dtype": str(dtype),
        "window_every": window_every, "n_window_samples": len(window),
        "n_groups": n_groups, "record": record if isinstance(record, str) else "explicit",
        "theta0": "minimiser" if theta0 is None else "given",
        "v0": "zero" if v0 is None else "given",
        "per_trajectory": list(varied), "max_loss": opts.max_loss,
    }
    result = finish_result(rec, out, opts, config, _meta.environment(key) | out.timings)
    _accounting.report(result)
    return result


def reshuffle_window(n_steps: int, burn_in: int, epoch: int) -> tuple[int, int]:
    """A window that samples every phase of a reshuffled epoch equally often.

    Under ``reshuffle`` the law of the state depends on the phase k mod E within the epoch
    (theory.md §9), so a window average estimates the phase-average covariance only if it
    visits the phases uniformly: the spacing w is made coprime with E (the first w >= the
    default with gcd(w, E) = 1) and the burn-in moved later, by less than E·w steps, so that
    the number of window samples is a multiple of E. Returns (burn_in, w); a window too
    short for E samples is left as it is.
    """
    window = n_steps - burn_in
    w = max(1, math.ceil(window / WINDOW_SAMPLES))
    while math.gcd(w, epoch) != 1:
        w += 1
    samples = window // w + 1
    whole = (samples // epoch) * epoch
    if whole == 0:
        return burn_in, w
    return n_steps - (whole - 1) * w, w


def observers_window(n_steps: int, burn_in: int, window_every: int | None
                     ) -> tuple[np.ndarray, int]:
    return observers.default_window(n_steps, burn_in, window_every)


__all__ = [
    "WINDOW_SAMPLES",
    "Carry",
    "Outcome",
    "Plan",
    "make_plan",
    "record_steps",
    "run_ensemble",
    "simulate_sgd",
    "trajectory_mesh",
]
