"""Observers: what an ensemble run records (design.md, "observers").

The runner advances every trajectory and, at the *event* steps the observers ask for,
hands each firing observer a :class:`View` of the ensemble. An observer is a frozen
dataclass: its compared fields are static (they key the compile cache), host-side arrays
such as its steps are ``compare=False`` (they become traced event tables, so new steps
never recompile). Its carry is ``(per_trajectory, shared)``: per-trajectory arrays lead
with the trajectory axis (sharded over devices with the trajectories), shared ones are
sums over trajectories (reduced across devices inside the kernel).

Built in:

* :class:`PhaseSpace` — ensemble mean and covariance of (θ, v) at recorded steps with
  standard errors, window averages after burn-in with batch-means errors, displacements
  (theory.md §6); optionally in a basis V: statistics of (Vᵀθ, Vᵀv).
* :class:`Trace` — per-trajectory values of scalar or vector functions of (θ, v) at given
  steps (loss, accuracy, norms, projections, displacements).
* :class:`TimeAverage` — per-trajectory time averages and histograms of functions of θ,
  weighted by each step's length in the dynamics' own clock (the time-change SDE's steps
  differ between paths).

Writing one: a frozen dataclass with a ``name`` and the methods ``event_steps()``,
``loss_steps()`` (steps at which it needs the problem's loss, usually none),
``tables(event_steps)``, ``arrays()`` (its traced inputs), ``init(n_traj, dim, dtype)``,
``observe(carry, table, view, arrays)`` and ``finalize(carry)``, as below; pass it in
``simulate_*(…, observers=[…])`` and read ``res.observed[name]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import estimators
from .checkpoint import Growing
from .sgd import State

WINDOW_SAMPLES = 64   # default number of window samples after burn-in


class View(NamedTuple):
    """What an observer sees at an event step (K trajectories).

    ``alive``: not diverged up to and including this step (statistics use these);
    ``was_alive``: alive before this event's loss check (a trace shows the value that made
    a trajectory diverge); ``loss``: (K,) the problem's loss at events where some part of the
    run asked for it (NaN at other events; None when nothing ever does); ``step_size``: η,
    scalar or (K,); ``problem``: the problem.
    """

    step: jax.Array
    theta: jax.Array
    velocity: jax.Array
    theta_start: jax.Array
    alive: jax.Array
    was_alive: jax.Array
    step_size: jax.Array
    loss: jax.Array | None
    aux: Any
    params: Any
    problem: Any
    traj_keys: jax.Array
    dynamics: Any


class Carry(NamedTuple):
    per_trajectory: Any
    shared: Any


def _steps_array(steps: Any, n_steps: int, name: str) -> np.ndarray:
    arr = np.unique(np.asarray(steps, np.int64).ravel())
    if arr.size and (arr[0] < 0 or arr[-1] > n_steps):
        raise ValueError(f"{name} steps must lie in [0, n_steps={n_steps}]")
    return arr


def fires_at(steps: np.ndarray, event_steps: np.ndarray) -> np.ndarray:
    return np.isin(event_steps, steps)


def slots_at(steps: np.ndarray, event_steps: np.ndarray) -> np.ndarray:
    """For each event, the index of its step in ``steps`` (−1 where it is not one)."""
    slot = np.full(event_steps.shape, -1, np.int32)
    where = np.isin(event_steps, steps)
    slot[where] = np.searchsorted(steps, event_steps[where]).astype(np.int32)
    return slot


# --- phase-space statistics ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PhaseSpace:
    """Ensemble statistics of x = (θ, v) — or (Vᵀθ, Vᵀv) with a basis V (d, m).

    At each recorded step: mean and covariance with standard errors (the covariance's from
    fourth moments), mean global displacement ‖θ_k − θ_0‖² and local displacement
    η²‖v_k‖² (always in the full space). At window steps (after burn-in) and the step after
    each: per-group sums for the stationary mean, covariance, local displacement and lag-one
    covariance with batch-means errors (:mod:`limitdyn.estimators`). ``covariance=False``
    skips every second moment (for large d without a basis).
    """

    n_record: int
    n_groups: int
    keep: bool = False
    basis_dim: int | None = None
    covariance: bool = True
    n_steps: int = dataclasses.field(default=0, compare=False, repr=False)
    record_steps: np.ndarray = dataclasses.field(default=None, compare=False, repr=False)
    window_steps: np.ndarray = dataclasses.field(default=None, compare=False, repr=False)
    basis: Any = dataclasses.field(default=None, compare=False, repr=False)
    name = "phase_space"
    needs_loss = False

    def loss_steps(self) -> np.ndarray:
        return np.zeros(0, np.int64)

    def event_steps(self) -> np.ndarray:
        return np.unique(np.concatenate([self.record_steps, self.window_steps,
                                         self.lag_steps()]))

    def lag_steps(self) -> np.ndarray:
        """The step after each window step (lag-one pairs)."""
        win = self.window_steps
        return win[win < self.n_steps] + 1

    def tables(self, event_steps: np.ndarray) -> dict[str, np.ndarray]:
        slot = slots_at(self.record_steps, event_steps)
        window = fires_at(self.window_steps, event_steps)
        lag = fires_at(self.lag_steps(), event_steps)
        return {"fires": (slot >= 0) | window | lag, "slot": slot, "window": window, "lag": lag}

    def arrays(self) -> Any:
        return () if self.basis is None else jnp.asarray(self.basis)

    def dim2(self, dim: int) -> int:
        return 2 * (dim if self.basis_dim is None else self.basis_dim)

    def growing(self, carry: Carry, last_step: int) -> Carry:
        """``carry`` with its write-once records marked (:class:`~limitdyn.checkpoint.
        Growing`): the per-recorded-step statistics (slot axis 0) and kept trajectories
        (axis 1) are final up to the last record step ≤ ``last_step``; a checkpoint appends
        their new slots instead of rewriting them. Everything else is −1 (saved whole)."""
        n = int(np.searchsorted(self.record_steps, last_step, side="right"))
        per, acc = carry
        marks = {name: -1 for name in per}
        if "trajectories" in per:
            marks["trajectories"] = Growing(n, 1)
        return Carry(marks, acc._replace(**{f: Growing(n, 0) for f in estimators.PER_RECORD},
                                         **{f: -1 for f in estimators.PER_GROUP}))

    def init(self, n_traj: int, dim: int, dtype) -> Carry:
        d2 = self.dim2(dim)
        # the first half of each lag-one pair, kept between a window step and the next:
        # only the lag covariance uses it, so without second moments nothing is kept
        per = {"anchor": jnp.zeros((n_traj, d2), dtype)} if self.covariance else {}
        if self.keep:
            per["trajectories"] = jnp.zeros((n_traj, self.n_record, d2), dtype)
        return Carry(per, estimators.empty(self.n_record, self.n_groups, d2, dtype,
                                           self.covariance))

    def point(self, view: View, basis: Any) -> jax.Array:
        if self.basis_dim is None:
            return jnp.concatenate([view.theta, view.velocity], axis=-1)
        return jnp.concatenate([view.theta @ basis, view.velocity @ basis], axis=-1)

    def observe(self, carry: Carry, table: dict[str, jax.Array], view: View,
                basis: Any) -> Carry:
        per, acc = carry
        x = self.point(view, basis)
        alive, lr = view.alive, view.step_size
        slot = table["slot"]

        def local():        # η²‖v‖², computed only in the branches that use it
            return lr ** 2 * jnp.sum(view.velocity ** 2, axis=-1)

        def record(a):
            disp = jnp.sum((view.theta - view.theta_start) ** 2, axis=-1)
            return estimators.record(a, slot, x, disp, local(), alive)

        acc = lax.cond(slot >= 0, record, lambda a: a, acc)
        if self.keep:
            kept = lax.cond(slot >= 0,
                            lambda t: t.at[:, slot].set(jnp.where(alive[:, None], x, jnp.nan)),
                            lambda t: t, per["trajectories"])
            per = per | {"trajectories": kept}
        acc = lax.cond(table["lag"],
                       lambda a: estimators.accumulate_lag(a, per.get("anchor"), x, alive),
                       lambda a: a, acc)
        if not self.covariance:
            acc = lax.cond(table["window"],
                           lambda a: estimators.accumulate_window(a, x, local(), alive),
                           lambda a: a, acc)
            return Carry(per, acc)
        acc, anchor = lax.cond(
            table["window"],
            lambda a: (estimators.accumulate_window(a, x, local(), alive),
                       estimators.window_anchor(x, alive)),
            lambda a: (a, per["anchor"]), acc)
        return Carry(per | {"anchor": anchor}, acc)

    def finalize(self, carry: Carry) -> dict[str, Any]:
        per, acc = carry
        return estimators.finalize(acc, per.get("trajectories"))


# --- per-trajectory traces ------------------------------------------------------------------

TraceFn = Callable[..., jax.Array]
LOSS = "loss"
BUILTINS = ("loss", "displacement", "local_displacement", "time")


@dataclasses.dataclass(frozen=True)
class Trace:
    """Per-trajectory values of functions of the state at ``steps``.

    ``fns``: (name, what) pairs, ``what`` one of

    * a function ``fn(theta, velocity)`` of one trajectory's θ (d,) and v (d,), returning a
      scalar or an array;
    * a pair ``(fn, data)``: ``fn(theta, velocity, data)`` with ``data`` any pytree of
      arrays (a basis, a test set, a problem), passed to the kernel as a traced argument —
      new data of the same shapes does not recompile, and ``fn`` defined once (at module
      level) keeps the compiled kernel across calls;
    * ``"loss"`` (the problem's loss, computed once per event for every use),
      ``"displacement"`` (‖θ_k − θ_0‖²), ``"local_displacement"`` (η²‖v_k‖²) or ``"time"``
      (the trajectory's own time in the dynamics' clock; ηk for SGD).

    Diverged trajectories read NaN from the event after the one at which they were found
    diverged (that event shows the value that made them diverge). Output: name -> (K,
    len(steps), …).
    """

    fns: tuple[tuple[str, Any], ...]
    n_steps_traced: int                       # the array length (padded, see from_dict)
    steps: np.ndarray = dataclasses.field(default=None, compare=False, repr=False)
    data: tuple = dataclasses.field(default=(), compare=False, repr=False)
    name: str = "traces"

    @classmethod
    def from_dict(cls, traces: dict[str, Any], steps: np.ndarray,
                  name: str = "traces") -> Trace:
        fns, data = [], []
        for key, what in traces.items():
            if isinstance(what, tuple):
                fn, payload = what
                fns.append((key, (fn, True)))
                data.append(payload)
            else:
                fns.append((key, (what, False)))
                data.append(None)
        # the length is padded to a power of two (>= 8), so a run with a few more or fewer
        # traced steps reuses the compiled kernel; finalize cuts the padding off
        n = len(steps)
        padded = max(8, 1 << max(0, n - 1).bit_length())
        return cls(tuple(fns), padded, steps=np.asarray(steps, np.int64),
                   data=tuple(data), name=name)

    @property
    def needs_loss(self) -> bool:
        return any(what == LOSS for _, (what, _) in self.fns)

    def loss_steps(self) -> np.ndarray:
        return self.steps if self.needs_loss else np.zeros(0, np.int64)

    def event_steps(self) -> np.ndarray:
        return self.steps

    def tables(self, event_steps: np.ndarray) -> dict[str, np.ndarray]:
        slot = slots_at(self.steps, event_steps)
        return {"fires": slot >= 0, "slot": slot}

    def arrays(self) -> Any:
        return tuple(() if d is None else d for d in self.data)

    def _value(self, what, with_data, payload, view: View):
        if isinstance(what, str):
            if what == "loss":
                return view.loss
            if what == "displacement":
                return jnp.sum((view.theta - view.theta_start) ** 2, axis=-1)
            if what == "time":
                return clock_of(view)[0]
            return view.step_size ** 2 * jnp.sum(view.velocity ** 2, axis=-1)
        if with_data:
            return jax.vmap(lambda th, v: what(th, v, payload))(view.theta, view.velocity)
        return jax.vmap(what)(view.theta, view.velocity)

    def shapes(self, dim: int, dtype) -> dict[str, jax.ShapeDtypeStruct]:
        spec = jax.ShapeDtypeStruct((dim,), dtype)
        out = {}
        for (name, (what, with_data)), payload in zip(self.fns, self.data, strict=True):
            if isinstance(what, str):
                out[name] = jax.ShapeDtypeStruct((), dtype)
            elif with_data:
                out[name] = jax.eval_shape(what, spec, spec, payload)
            else:
                out[name] = jax.eval_shape(what, spec, spec)
        return out

    def growing(self, carry: Carry, last_step: int) -> Carry:
        """Every trace is written once per traced step (slot axis 1): checkpoints append."""
        n = int(np.searchsorted(self.steps, last_step, side="right"))
        return Carry({name: Growing(n, 1) for name in carry.per_trajectory}, ())

    def init(self, n_traj: int, dim: int, dtype) -> Carry:
        per = {name: jnp.full((n_traj, self.n_steps_traced, *s.shape), jnp.nan,
                              jnp.result_type(s.dtype, dtype))
               for name, s in self.shapes(dim, dtype).items()}
        return Carry(per, ())

    def observe(self, carry: Carry, table: dict[str, jax.Array], view: View, arrays) -> Carry:
        slot = table["slot"]
        out = {}
        for (name, (what, with_data)), payload in zip(self.fns, arrays, strict=True):
            value = self._value(what, with_data, payload, view)
            arr = carry.per_trajectory[name]
            mask = view.was_alive.reshape((-1,) + (1,) * (value.ndim - 1))
            out[name] = arr.at[:, slot].set(jnp.where(mask, value, jnp.nan).astype(arr.dtype))
        return Carry(out, ())

    def finalize(self, carry: Carry) -> dict[str, Any]:
        n = len(self.steps)
        return {name: np.asarray(v)[:, :n] for name, v in carry.per_trajectory.items()}


# --- time averages and histograms -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Histogram:
    """A histogram of ``fn(problem, theta)`` (a scalar) with ``n_bins`` equal bins on [lo, hi);
    ``overflow``: two more bins for values below lo and from hi on (else clipped into the
    edge bins)."""

    fn: Any
    n_bins: int
    overflow: bool = False

    def counts(self, value: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
        u = (value - lo) / (hi - lo) * self.n_bins
        if self.overflow:
            idx = jnp.where(u < 0, 0, jnp.where(u >= self.n_bins, self.n_bins + 1,
                                                jnp.floor(u).astype(jnp.int32) + 1))
            return jax.nn.one_hot(idx, self.n_bins + 2)
        idx = jnp.clip(jnp.floor(u).astype(jnp.int32), 0, self.n_bins - 1)
        return jax.nn.one_hot(idx, self.n_bins)


@dataclasses.dataclass(frozen=True)
class TimeAverage:
    """Per-trajectory ∫ f(θ_t) dt and time spent in histogram bins, after ``burn_in`` time.

    Every ``every`` steps the state θ_n stands for the next ``every`` steps with weight
    ``every · dt_n`` (an unbiased estimate of the time average at 1/every of the cost),
    dt_n the length of step n in the dynamics' own clock (``dynamics.clock``; η for SGD);
    only after the path's time reaches ``burn_in``. ``fns``: (name, fn(problem, θ) ->
    scalar); ``histograms``: (name, :class:`Histogram` of fn(problem, θ)) with ranges from
    the traced ``ranges`` (name -> (lo, hi)). Functions take the problem as an argument
    (traced) so that defining them once keeps one compiled kernel across problems and
    parameters. Result: ``weight`` (K,) total time, each name (K,) or (K, bins).
    """

    every: int
    fns: tuple[tuple[str, Any], ...] = ()
    histograms: tuple[tuple[str, Histogram], ...] = ()
    n_steps: int = dataclasses.field(default=0, compare=False)
    burn_in: float = dataclasses.field(default=0.0, compare=False, repr=False)
    ranges: tuple = dataclasses.field(default=(), compare=False, repr=False)
    name = "time_averages"
    needs_loss = False

    def loss_steps(self) -> np.ndarray:
        return np.zeros(0, np.int64)

    def event_steps(self) -> np.ndarray:
        return np.arange(0, self.n_steps, self.every, dtype=np.int64)

    def tables(self, event_steps: np.ndarray) -> dict[str, np.ndarray]:
        return {"fires": fires_at(self.event_steps(), event_steps)}

    def arrays(self) -> Any:
        return {"burn_in": jnp.asarray(self.burn_in, jnp.float32),
                "ranges": {name: jnp.asarray(r, jnp.float32) for name, r in self.ranges}}

    def init(self, n_traj: int, dim: int, dtype) -> Carry:
        per = {"weight": jnp.zeros((n_traj,), jnp.float32)}
        for name, _ in self.fns:
            per[name] = jnp.zeros((n_traj,), jnp.float32)
        for name, h in self.histograms:
            per[name] = jnp.zeros((n_traj, h.n_bins + (2 if h.overflow else 0)), jnp.float32)
        return Carry(per, ())

    def observe(self, carry: Carry, table: dict[str, jax.Array], view: View, arrays) -> Carry:
        t, dt = clock_of(view)
        w = jnp.where(view.alive & (t >= arrays["burn_in"]), self.every * dt, 0.0)
        per = dict(carry.per_trajectory)
        per["weight"] = per["weight"] + w
        prob = view.problem
        for name, fn in self.fns:
            per[name] = per[name] + w * jax.vmap(lambda th, fn=fn: fn(prob, th))(view.theta)
        for name, h in self.histograms:
            lo, hi = arrays["ranges"][name][0], arrays["ranges"][name][1]
            counts = jax.vmap(lambda th, h=h, lo=lo, hi=hi: h.counts(h.fn(prob, th), lo, hi))(
                view.theta)
            per[name] = per[name] + w[:, None] * counts
        return Carry(per, ())

    def finalize(self, carry: Carry) -> dict[str, Any]:
        return {name: np.asarray(v, np.float64) for name, v in carry.per_trajectory.items()}


def clock_of(view: View) -> tuple[jax.Array, jax.Array]:
    """(t, dt) per trajectory: the dynamics' own clock, or t = ηk, dt = η."""
    clock = getattr(view.dynamics, "clock", None)
    if clock is None:
        ones = jnp.ones(view.alive.shape, jnp.float32)
        return view.step * view.step_size * ones, view.step_size * ones
    return clock(State(view.theta, view.velocity), view.aux, view.step, view.params)


def default_window(n_steps: int, burn_in: int, window_every: int | None) -> tuple[np.ndarray,
                                                                                  int]:
    """Window steps burn_in, burn_in + w, … <= n_steps (about WINDOW_SAMPLES of them)."""
    window = n_steps - burn_in
    if window_every is None:
        window_every = max(1, math.ceil(window / WINDOW_SAMPLES))
    return np.arange(burn_in, n_steps + 1, window_every, dtype=np.int64), window_every
