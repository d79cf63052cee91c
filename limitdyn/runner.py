"""Ensemble runner: one compiled kernel advances every trajectory and accumulates statistics.

Structure (design.md, "runner"): the trajectory batch is the leading axis of the state; time
advances in a ``lax`` loop; statistics are taken only at *event* steps — recorded steps
(log-spaced by default) and window steps after burn-in — so nothing per step is stored.
The host splits the event list into chunks (progress bar between chunks); every chunk is
the same compiled function with the chunk bounds as traced integers, so neither the chunk
size nor the hyperparameters (traced pytree leaves) trigger a recompilation.

Randomness: trajectory i uses ``fold_in(key, i)`` (its global index) and step k of it
``fold_in(fold_in(key, i), k)``, so results do not depend on chunking.
"""

from __future__ import annotations

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

from . import _checks, _meta, _prng, estimators, samplers, sgd, stability
from . import checkpoint as ckpt
from .hyper import Hyper
from .problems import LinearRegression, Quadratic, _as_key
from .result import Result, Stderr

PROBLEM_TYPES = (LinearRegression, Quadratic)
WINDOW_SAMPLES = 64   # default number of window samples after burn-in


class Carry(NamedTuple):
    state: sgd.State               # (K, d) each
    aux: Any                       # per-trajectory kernel state (e.g. the epoch permutation)
    theta_start: jax.Array         # (K, d)
    anchor: jax.Array              # (K, 2d) centred state at the last window step (lag pairs)
    alive: jax.Array               # (K,) bool
    step: jax.Array                # () int32, the step index of ``state``
    acc: estimators.Accumulators


@dataclasses.dataclass(frozen=True)
class SGDSpec:
    """Static description of the SGD kernel (hashable: it keys the compile cache)."""

    sampling: str
    n_examples: int | None
    batch_size: int | None

    @property
    def sampler(self) -> samplers.Sampler | None:
        if self.n_examples is None:
            return None
        return samplers.build(self.sampling, self.n_examples, self.batch_size)

    def init_aux(self, key: jax.Array) -> Any:
        return () if self.sampler is None else self.sampler.init(key)

    def step(self, key: jax.Array, state: sgd.State, aux: Any, k: jax.Array, params: Any):
        problem, hp = params
        # A finite-sum problem draws only its batch, a Quadratic only its gradient noise:
        # either way the step's key is used once.
        batch = None
        if self.sampler is not None:
            batch, aux = self.sampler.next(key, aux, k)
        state, _ = sgd.step(key, state, problem, hp, batch)
        return state, aux

    def lr(self, params: Any) -> jax.Array:
        return params[1].lr


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When statistics are taken. Built on the host by :func:`make_schedule`."""

    record_steps: np.ndarray   # (T,) sorted unique
    window_steps: np.ndarray   # sorted unique, all >= burn_in
    event_steps: np.ndarray    # (E,) sorted unique
    event_slot: np.ndarray     # (E,) index into record_steps or -1
    event_window: np.ndarray   # (E,) bool
    event_lag: np.ndarray      # (E,) bool: the step after a window step (lag-one pairs)
    chunk_ends: np.ndarray     # event indices (exclusive) at which chunks end
    burn_in: int
    window_every: int


def make_schedule(n_steps: int, burn_in: int, record: Any, n_record: int,
                  window_every: int | None, n_chunks: int) -> Schedule:
    if isinstance(record, str):
        _checks.choice("record", record, ("log", "linear"))
        if record == "log":
            inner = np.geomspace(1, n_steps, num=n_record) if n_steps > 1 else np.array([1.0])
            rec = np.concatenate([[0], np.round(inner)])
        else:
            rec = np.round(np.linspace(0, n_steps, num=n_record + 1))
        rec = np.unique(rec.astype(np.int64))
    else:
        rec = _checks.real_array("record", record, ndim=1)
        if np.any(rec != np.round(rec)) or rec.min() < 0 or rec.max() > n_steps:
            raise ValueError(f"record steps must be integers in [0, n_steps={n_steps}]")
        rec = np.unique(rec.astype(np.int64))
    window = n_steps - burn_in
    if window_every is None:
        window_every = max(1, math.ceil(window / WINDOW_SAMPLES))
    else:
        window_every = _checks.integer("window_every", window_every, low=1)
    win = np.arange(burn_in, n_steps + 1, window_every, dtype=np.int64)
    lag = win[win < n_steps] + 1
    bounds = np.unique(np.round(np.linspace(0, n_steps, n_chunks + 1)).astype(np.int64))[1:]
    events = np.unique(np.concatenate([rec, win, lag, bounds]))
    slot = np.full(events.shape, -1, dtype=np.int32)
    slot[np.searchsorted(events, rec)] = np.arange(len(rec), dtype=np.int32)
    in_window = np.isin(events, win)
    is_lag = np.isin(events, lag)
    chunk_ends = np.searchsorted(events, bounds, side="right")
    return Schedule(rec, win, events, slot, in_window, is_lag, chunk_ends, burn_in,
                    window_every)


def _bounded(state: sgd.State) -> jax.Array:
    """Per trajectory: every coordinate finite and below 10⁻³·√(float max).

    Past that bound (1.8·10¹⁶ in float32) second moments overflow, so a trajectory there
    counts as diverged from that step on and leaves every statistic.
    """
    limit = 1e-3 * float(np.sqrt(np.finfo(state.theta.dtype).max))
    ok = lambda a: jnp.all(jnp.abs(a) < limit, axis=-1)  # noqa: E731  (False for NaN too)
    return ok(state.theta) & ok(state.velocity)


def batched_step_of(spec) -> Callable:
    """``(traj_keys, state, aux, k, params) -> (state, aux)`` for the whole batch.

    A spec may provide ``batched_step`` itself (e.g. one batched-state diffrax solve);
    otherwise its per-trajectory ``step`` is vmapped with the key ``fold_in(key_i, k)``.
    """
    if hasattr(spec, "batched_step"):
        return spec.batched_step
    vmapped = jax.vmap(spec.step, in_axes=(0, 0, 0, None, None))

    def batched(traj_keys, state, aux, k, params):
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(traj_keys, k)
        return vmapped(keys, state, aux, k, params)

    return batched


def _advance(spec, carry: Carry, params, traj_keys, event_steps, event_slot, event_window,
             event_lag, first_event, stop_event) -> Carry:
    """Run events ``first_event … stop_event − 1``: step to each, then take statistics."""
    lr = spec.lr(params)
    batched_step = batched_step_of(spec)

    def one_step(k, dyn):
        state, aux, alive = dyn
        state, aux = batched_step(traj_keys, state, aux, k, params)
        return state, aux, alive & _bounded(state)

    def one_event(e, c: Carry) -> Carry:
        # The time loop carries only what a step needs; the accumulators stay outside it.
        state, aux, alive = lax.fori_loop(c.step, event_steps[e], one_step,
                                          (c.state, c.aux, c.alive))
        c = c._replace(state=state, aux=aux, alive=alive, step=event_steps[e])
        x = jnp.concatenate([c.state.theta, c.state.velocity], axis=-1)
        slot = event_slot[e]
        acc = lax.cond(slot >= 0,
                       lambda a: estimators.record(a, slot, x, c.theta_start, c.alive, lr),
                       lambda a: a, c.acc)
        acc = lax.cond(event_lag[e],
                       lambda a: estimators.accumulate_lag(a, c.anchor, x, c.alive),
                       lambda a: a, acc)
        acc, anchor = lax.cond(
            event_window[e],
            lambda a: (estimators.accumulate_window(a, x, c.alive, lr),
                       estimators.window_anchor(x, c.alive)),
            lambda a: (a, c.anchor), acc)
        return c._replace(acc=acc, anchor=anchor)

    return lax.fori_loop(first_event, stop_event, one_event, carry)


def _init_carry(spec, traj_keys, theta0, v0, n_record, n_groups, keep) -> Carry:
    n_traj, dim = theta0.shape
    aux = jax.vmap(spec.init_aux)(traj_keys)
    state = sgd.State(theta0, v0)
    acc = estimators.empty(n_record, n_groups, 2 * dim, n_traj, keep, theta0.dtype)
    anchor = jnp.zeros((n_traj, 2 * dim), theta0.dtype)
    return Carry(state, aux, theta0, anchor, _bounded(state), jnp.zeros((), jnp.int32), acc)


_init_jit = jax.jit(_init_carry, static_argnums=(0, 4, 5, 6))


def carry_shardings(carry: Carry, mesh: Mesh) -> Carry:
    """Where each part of the carry lives: per-trajectory arrays split along the mesh's
    ``traj`` axis, accumulated sums replicated (kept trajectories split along K)."""
    along, everywhere = NamedSharding(mesh, P("traj")), NamedSharding(mesh, P())
    per_traj = lambda tree: jax.tree_util.tree_map(lambda _: along, tree)  # noqa: E731
    acc = jax.tree_util.tree_map(lambda _: everywhere, carry.acc)
    if carry.acc.trajectories.ndim == 3:
        acc = acc._replace(trajectories=NamedSharding(mesh, P(None, "traj")))
    return Carry(per_traj(carry.state), per_traj(carry.aux), along, along, along, everywhere,
                 acc)


_INIT_SHARDED: dict[Any, Callable] = {}


def _init_sharded(spec, mesh, traj_keys, theta0, v0, n_record, n_groups, keep):
    """The initial carry, created in place on the mesh (no host-side copy of the state)."""
    cache_key = (spec, mesh, _signature((traj_keys, theta0, v0)), n_record, n_groups, keep)
    if cache_key not in _INIT_SHARDED:
        def init(k, t, v):
            return _init_carry(spec, k, t, v, n_record, n_groups, keep)
        placement = carry_shardings(jax.eval_shape(init, traj_keys, theta0, v0), mesh)
        _INIT_SHARDED[cache_key] = (jax.jit(init, out_shardings=placement), placement)
    init, placement = _INIT_SHARDED[cache_key]
    return init(traj_keys, theta0, v0), placement

# One executable per (spec, argument shapes): lr/momentum/weight decay, data values, event
# tables and chunk bounds are all traced, so sweeps reuse it.
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


def _trajectory_keys(key: jax.Array, n_traj: int) -> jax.Array:
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(n_traj))


def run_ensemble(spec: Any, params: Any, key: jax.Array, theta0: np.ndarray, v0: np.ndarray,
                 schedule: Schedule, *, n_groups: int, keep_trajectories: bool,
                 progress: bool, description: str, checkpoint: str | None = None,
                 mesh: Mesh | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Run the kernel ``spec`` over the whole schedule; return estimates and timings.

    With ``checkpoint`` (a file path) the carry is saved atomically after every chunk and,
    when the file already holds this run's state, the run continues from it
    (:mod:`limitdyn.checkpoint`). With a ``mesh`` every per-trajectory array is sharded
    along its trajectory axis; the statistics are sums over trajectories, which XLA
    reduces across devices inside the kernel, and come back replicated.
    """
    n_traj = theta0.shape[0]
    n_record = len(schedule.record_steps)
    n_events = len(schedule.event_steps)
    if mesh is None:
        traj_keys = _trajectory_keys(key, n_traj)
    else:
        along, everywhere = NamedSharding(mesh, P("traj")), NamedSharding(mesh, P())
        traj_keys = jax.jit(_trajectory_keys, static_argnums=1, out_shardings=along)(key, n_traj)
        place = jax.jit(lambda *a: a, out_shardings=(along, along))
        theta0, v0 = place(theta0, v0)
        params = jax.jit(lambda p: p, out_shardings=everywhere)(params)
    if mesh is None:
        carry = _init_jit(spec, traj_keys, theta0, v0, n_record, n_groups, keep_trajectories)
        placement = None
    else:
        carry, placement = _init_sharded(spec, mesh, traj_keys, theta0, v0, n_record,
                                         n_groups, keep_trajectories)
    first = 0
    run_id = None
    if checkpoint is not None:
        prng = (bool(jax.config.jax_threefry_partitionable), str(jax.config.jax_default_prng_impl))
        run_id = ckpt.fingerprint(
            (spec, n_groups, keep_trajectories, prng), params, key, theta0, v0,
            (schedule.event_steps, schedule.event_slot, schedule.event_window,
             schedule.event_lag, schedule.chunk_ends))
        loaded = ckpt.load(checkpoint, carry, run_id)
        if loaded is not None:
            carry, first = loaded
    events = (jnp.asarray(schedule.event_steps, jnp.int32), jnp.asarray(schedule.event_slot),
              jnp.asarray(schedule.event_window), jnp.asarray(schedule.event_lag))
    compile_seconds = 0.0
    t0 = time.perf_counter()
    if first < n_events:   # a finished checkpoint needs no kernel at all
        zero = jnp.zeros((), jnp.int32)
        run, compile_seconds = _compiled("advance", _advance, spec,
                                         (carry, params, traj_keys, *events, zero, zero),
                                         out_shardings=placement)
        t0 = time.perf_counter()
        with tqdm(total=int(schedule.event_steps[-1]), initial=int(carry.step),
                  disable=not progress, unit="step", desc=description, leave=False) as bar:
            for stop in schedule.chunk_ends:
                if stop <= first:
                    continue
                carry = run(carry, params, traj_keys, *events, jnp.int32(first),
                            jnp.int32(stop))
                jax.block_until_ready(carry.step)
                if checkpoint is not None:
                    ckpt.save(checkpoint, carry, int(stop), n_events, int(carry.step), run_id)
                bar.update(int(carry.step) - bar.n)
                first = int(stop)
    run_seconds = time.perf_counter() - t0
    acc = carry.acc
    if mesh is not None:   # every process gets every statistic
        acc = jax.jit(lambda a: a, out_shardings=NamedSharding(mesh, P()))(acc)
    return estimators.finalize(acc), {"compile_seconds": compile_seconds,
                                      "run_seconds": run_seconds}


def _start_points(name: str, value: Any, default: np.ndarray, n_traj: int) -> np.ndarray:
    d = default.shape[0]
    if value is None:
        return np.broadcast_to(default, (n_traj, d))
    arr = _checks.real_array(name, value, ndim=(1, 2))
    if arr.shape not in ((d,), (n_traj, d)):
        raise ValueError(f"{name} must have shape ({d},) or (n_traj={n_traj}, {d}), "
                         f"got {arr.shape}")
    return np.broadcast_to(arr, (n_traj, d))


def default_chunks(progress: bool, checkpoint: str | None) -> int:
    """Chunks a run is split into when the caller does not say: 20 when there is a progress
    bar to update or a checkpoint to write, otherwise 1 (each boundary is a host round trip)."""
    return 20 if (progress or checkpoint is not None) else 1


def validate_run_args(prob, n_traj, n_steps, burn_in, n_record, n_groups, progress):
    """Checks shared by every ensemble runner; returns normalised values."""
    if not isinstance(prob, PROBLEM_TYPES):
        raise TypeError("prob must be a limitdyn problem (LinearRegression or Quadratic), "
                        f"got {type(prob).__name__}")
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


def simulate_sgd(prob: LinearRegression | Quadratic, hp: Hyper, key: Any, n_traj: int,
                 n_steps: int, sampling: str = "iid", theta0: Any = None, v0: Any = None,
                 burn_in: int | None = None, *, record: str | Any = "log", n_record: int = 50,
                 window_every: int | None = None, n_groups: int | None = None,
                 keep_trajectories: bool = False, n_chunks: int | None = None,
                 progress: bool | None = None, check_stability: bool = True,
                 checkpoint: str | os.PathLike | None = None, prng: str | None = None,
                 devices: int | None = None) -> Result:
    """Simulate ``n_traj`` independent SGD-with-momentum trajectories for ``n_steps`` steps.

    The update is theory.md §1 (``sgd.step``); minibatches come from ``sampling``
    (``"iid"``, ``"replacement"`` or ``"reshuffle"``, see :mod:`limitdyn.samplers`). For a
    :class:`Quadratic` the gradient noise is Gaussian and ``sampling`` must be ``"iid"``.

    Args:
        prob: the problem.
        hp: hyperparameters; ``hp.batch_size`` None means full batch (S = N).
        key: a JAX PRNG key.
        n_traj: number of trajectories K >= 1.
        n_steps: number of SGD steps >= 1.
        sampling: minibatch sampling mode.
        theta0: start, (d,) or (K, d); default the minimiser of L_λ.
        v0: start velocity, (d,) or (K, d); default 0.
        burn_in: window averages (``stationary_*``) use steps ``burn_in <= k <= n_steps``;
            default ``n_steps // 2``.
        record: ``"log"`` (0 and log-spaced steps, default), ``"linear"``, or explicit steps.
        n_record: number of log/linear points requested (duplicates after rounding merge).
        window_every: spacing of the window samples; default so that there are about
            ``WINDOW_SAMPLES`` = 64 (each sample and its lag-one pair cost an outer product
            over the ensemble, ~K(2d)² flops: more samples than the window has independent
            stretches buy little precision and cost time — benchmarks/statistics_overhead.py).
        n_groups: independent trajectory groups for the window's batch-means standard
            errors; default min(32, K).
        keep_trajectories: also return the states at the recorded steps, (T, K, 2d).
        n_chunks: host-side chunks the run is split into (progress-bar updates); default 20
            with a progress bar and 1 without (each chunk boundary costs a host round trip).
        progress: show a progress bar (default: for runs of over 5·10⁶ trajectory-steps).
        check_stability: before running, warn (:class:`~limitdyn.stability.StabilityWarning`)
            when ``hp`` is outside or within 10% of the discrete stability region, naming
            the largest stable lr (problems with a known Hessian, d <= 256).
        checkpoint: a file path: the complete run state is saved there atomically after
            every chunk (default 20 chunks), and a later call with the same arguments
            continues from it — after a crash, or instantly once finished. A checkpoint
            written by a different run is refused (:class:`~limitdyn.checkpoint.
            CheckpointError`). Inside ``limitdyn run`` every simulation is checkpointed.
        prng: the PRNG implementation: ``"threefry2x32"``, ``"threefry4x32"``,
            ``"philox2x32"`` or ``"philox4x32"``; None (default) keeps ``key``'s own
            (JAX's default, threefry2x32, for ``jax.random.key(seed)``). A key of another
            implementation is converted deterministically. ``rbg``/``unsafe_rbg`` are
            refused: under vmap they are not independent per trajectory.
        devices: how many devices the trajectories are sharded over (one mesh axis; the
            statistics are reduced across devices inside the kernel). Default: all of
            ``jax.devices()`` — every process's under ``jax.distributed.initialize()`` —
            or, in one process, the largest count dividing ``n_traj``. Trajectory i draws
            from ``fold_in(key, i)`` wherever it runs, so results do not depend on the
            device count (up to the order of floating-point sums).

    Raises:
        DivergenceError: every trajectory diverged (quotes the stability bound).

    Returns:
        A :class:`Result`.
    """
    n_traj, n_steps, burn_in, n_record, n_groups = validate_run_args(
        prob, n_traj, n_steps, burn_in, n_record, n_groups, progress)
    if not isinstance(hp, Hyper):
        raise TypeError(f"hp must be a limitdyn.Hyper, got {type(hp).__name__}")
    sampling = _checks.choice("sampling", sampling, samplers.SAMPLINGS)
    n_examples = prob.n_examples
    if n_examples is None:
        if sampling != "iid":
            raise ValueError(f"sampling must be 'iid' for a Quadratic problem (its gradient noise "
                             f"is drawn independently each step); got {sampling!r}")
        batch_size = None
    else:
        batch_size = n_examples if hp.batch_size is None else hp.batch_size
        if not 1 <= batch_size <= n_examples:
            raise ValueError(f"Hyper.batch_size must be in [1, N={n_examples}] for this problem, "
                             f"got {batch_size}")
    checkpoint = ckpt.resolve(checkpoint)
    if progress is None:   # a bar for runs of more than a few seconds
        progress = n_traj * n_steps > 5 * 10**6
    n_chunks = default_chunks(progress, checkpoint) if n_chunks is None else _checks.integer(
        "n_chunks", n_chunks, low=1)
    keep_trajectories = bool(keep_trajectories)
    key = _prng.with_impl(_as_key(key), prng)
    mesh = trajectory_mesh(n_traj, devices, str(jax.random.key_impl(key)))
    schedule = make_schedule(n_steps, burn_in, record, n_record, window_every,
                             min(n_chunks, n_steps))
    mu = np.asarray(prob.minimiser(hp.weight_decay), dtype=np.float64)
    dtype = np.dtype(jnp.result_type(float))
    theta_start = jnp.asarray(_start_points("theta0", theta0, mu, n_traj), dtype)
    v_start = jnp.asarray(_start_points("v0", v0, np.zeros_like(mu), n_traj), dtype)
    if check_stability:
        stability.precheck(prob, hp, sampling)
    spec = SGDSpec(sampling, n_examples, batch_size)
    traced_hp = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), hp)
    stats, timings = run_ensemble(spec, (prob, traced_hp), key, theta_start, v_start, schedule,
                                  n_groups=n_groups, keep_trajectories=keep_trajectories,
                                  progress=progress, description="simulate_sgd",
                                  checkpoint=checkpoint, mesh=mesh)
    stability.raise_if_all_diverged(int(stats["n_alive"][-1]), n_traj, n_steps, prob, hp,
                                    sampling, "simulate_sgd")
    config = {
        "kind": "sgd", "problem": repr(prob), "dim": prob.dim, "n_examples": n_examples,
        "hyper": hp.to_dict() | {"batch_size": batch_size}, "sampling": sampling,
        "n_traj": n_traj, "n_steps": n_steps, "burn_in": burn_in, "dtype": str(dtype),
        "window_every": schedule.window_every, "n_window_samples": len(schedule.window_steps),
        "n_groups": n_groups, "record": record if isinstance(record, str) else "explicit",
        "theta0": "minimiser" if theta0 is None else "given",
        "v0": "zero" if v0 is None else "given",
    }
    return build_result(schedule, stats, config, _meta.environment(key) | timings)


def build_result(schedule: Schedule, stats: dict[str, Any], config: dict[str, Any],
                 metadata: dict[str, Any], stride: int = 1) -> Result:
    """Assemble a :class:`Result`; ``stride`` SGD steps per runner step (SDE steps > η)."""
    stderr = Stderr(mean=stats["se_mean"], cov=stats["se_cov"],
                    displacement=stats["se_displacement"],
                    local_displacement=stats["se_local_displacement"],
                    stationary_mean=stats["se_stationary_mean"],
                    stationary_cov=stats["se_stationary_cov"],
                    stationary_local_displacement=stats["se_stationary_local_displacement"],
                    stationary_lag_cov=stats["se_stationary_lag_cov"])
    return Result(
        steps=schedule.record_steps * stride, mean=stats["mean"], cov=stats["cov"],
        displacement=stats["displacement"], local_displacement=stats["local_displacement"],
        stationary_mean=stats["stationary_mean"], stationary_cov=stats["stationary_cov"],
        stationary_local_displacement=stats["stationary_local_displacement"],
        n_alive=stats["n_alive"], stderr=stderr, trajectories=stats["trajectories"],
        stationary_lag_cov=stats["stationary_lag_cov"], window_groups=stats["window_groups"],
        config=config | {"lag_steps": stride}, metadata=metadata)
