"""Noise of machine-learning type (Wojtowytsch; theory.md §8): landscapes, noise, integrators.

The model, integrated in the **Itô** sense::

    dθ = −∇L(θ) dt + √(2T) S(θ) dW_t

================ ================================ =========================================
``noise``         S Sᵀ                              note
================ ================================ =========================================
homogeneous       I                                 Gibbs law ∝ exp(−L/T)
ml                L(θ) I                            ML-isotropic; law ∝ L^(−(1+1/T))
ml-curvature      L(θ) G(θ)                         G = c JᵀJ, Gauss–Newton of L = (c/2)‖r‖²
sgd               Σ(θ)/2                            SGD's own noise: Σ = (1/N)Σ∇ℓᵢ∇ℓᵢᵀ − ∇L∇Lᵀ;
                                                    T = ηκ makes it the SME of SGD
================ ================================ =========================================

(``sgd``: one SGD step with learning rate η adds gradient noise of covariance η²κΣ, so per
unit time t = ηk the diffusion is ηκΣ = 2T·Σ/2 with T = ηκ, κ the sampling factor of
theory.md §1. When residuals are uncorrelated with the Jacobian, Σ ≈ 2L·G, and the model
is the curvature-shaped one at the same T.)

Landscapes give residuals r(θ) with L = (c/2)‖r‖²; gradient, Gauss–Newton factor and
per-example gradients all come from one ``jax.vjp`` of r:

* :class:`CosineLandscape` — L = a(y) Σ_{j≤k}(1 − cos x_j), r_j = 2√a(y) sin(x_j/2), c = 1;
* :class:`GainRegression` — an interpolating regression with N examples and a learnable
  periodic gain: r_i = √a(y)·z_iᵀw, L = (1/2N)‖r‖²; zero loss on {Zw = 0} (codimension N),
  transverse curvature a(y) when ZZᵀ = N·I.

Both use the curvature profile a(y) = (a_max + a_min)/2 − (a_max − a_min)/2 · cos y of
:func:`limitdyn.theory.mlnoise.curvature`.

Integrators (``solver``):

* ``em`` — Itô Euler–Maruyama at a fixed step dt: θ ← θ − ∇L dt + √(2T dt) S(θ) ξ.
* ``time-change`` — Euler–Maruyama with the step dt_n = dt / max(L(θ_n), l_ref): uniform
  steps dt in the clock dτ = max(L, l_ref) dt (the time change dτ = L dt wherever
  L ≥ l_ref, under which ML noise becomes additive and the drift −∇log L), plain steps
  dt below. It takes small steps exactly where ML noise is large. Time averages are
  weighted by dt_n.

Paths never share randomness: path i's key is ``fold_in(key, i)``; its normals at step n
are ``normal(fold_in(key_i, n))`` and its start ``init(fold_in(key_i, 2³¹ − 1))``, so
results do not depend on the number of paths. T, dt, l_ref, burn-in and the landscape's
arrays are traced: a sweep over them reuses one compiled kernel.

Both landscapes are problems of the library's protocol (:class:`~limitdyn.Problem`;
:class:`GainRegression` a :class:`~limitdyn.FiniteSum`), and both drivers run on the one
runner: :func:`simulate` advances the dynamics :class:`limitdyn.dynamics.MLNoiseSDE`,
:func:`simulate_sgd` the heavy-ball SGD of :func:`limitdyn.simulate_sgd` (β = 0) — so
they are checkpointed and resumed like every simulation. Both return an
:class:`MLResult` of per-path time averages (after burn-in, weighted by time), histograms
and snapshots (observers :class:`~limitdyn.observers.TimeAverage` and
:class:`~limitdyn.observers.Trace`), never full trajectories. A path whose loss exceeds
``l_cap`` (checked at every snapshot) or whose state leaves the runner's bounds is frozen
and counted in ``n_diverged``; it is left out of every average from then on.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _accounting, _checks, observers, runner, samplers
from .dynamics import HeavyBall, MLNoiseSDE
from .dynamics.mlnoise import INCREMENTS, NOISES, SOLVERS
from .hyper import Hyper
from .problems import FiniteSum, Problem, _as_key
from .theory import mlnoise as th

_INIT_SLOT = 2 ** 31 - 1
_TWO_PI = 2 * np.pi


def _curvature(y: jax.Array, a_min: jax.Array, a_max: jax.Array) -> jax.Array:
    return 0.5 * (a_max + a_min) - 0.5 * (a_max - a_min) * jnp.cos(y)


def _check_range(a_min: Any, a_max: Any) -> tuple[float, float]:
    a_min = _checks.finite_float("a_min", a_min, low=0.0, low_open=True)
    a_max = _checks.finite_float("a_max", a_max, low=0.0, low_open=True)
    if a_max < a_min:
        raise ValueError(f"a_max must be >= a_min, got a_min={a_min}, a_max={a_max}")
    return a_min, a_max


class CosineLandscape(Problem):
    """L(x, y) = a(y) Σ_{j ≤ k} (1 − cos x_j), θ = (x_1 … x_k, y) (theory.md §8).

    Residuals r_j = 2√a(y) sin(x_j/2) (L = ½‖r‖², c = 1); minimisers {x ∈ 2πℤ^k} × circle,
    codimension k, transverse curvature a(y). The state is wrapped to x ∈ [−π, π),
    y ∈ [0, 2π) after every step (the law is invariant; the residual's sign flip under
    x → x + 2π changes the curvature-shaped noise only by ξ → −ξ).
    """

    k: int = eqx.field(static=True)
    a_min: Any
    a_max: Any

    def __init__(self, k: int, a_min: Any = 1.0, a_max: Any = 4.0):
        self.k = _checks.integer("k", k, low=1, high=4096)
        if not (isinstance(a_min, jax.core.Tracer) or isinstance(a_max, jax.core.Tracer)):
            a_min, a_max = _check_range(a_min, a_max)
            a_min, a_max = jnp.float32(a_min), jnp.float32(a_max)
        self.a_min, self.a_max = a_min, a_max

    def __repr__(self) -> str:
        return f"CosineLandscape(k={self.k}, a_min={self.a_min}, a_max={self.a_max})"

    @property
    def dim(self) -> int:
        return self.k + 1

    @property
    def n_residuals(self) -> int:
        return self.k

    scale = 1.0

    def residuals(self, theta: jax.Array) -> jax.Array:
        a = _curvature(theta[-1], self.a_min, self.a_max)
        return 2 * jnp.sqrt(a) * jnp.sin(0.5 * theta[:-1])

    def linearize(self, theta: jax.Array):
        """(r, u ↦ Jᵀu) in closed form: one sine and one square root per coordinate.

        cos(x/2) = √(1 − sin²(x/2)) holds because the state is wrapped to |x| ≤ π.
        """
        x, y = theta[:-1], theta[-1]
        a = _curvature(y, self.a_min, self.a_max)
        da = 0.5 * (self.a_max - self.a_min) * jnp.sin(y)
        ra = jnp.sqrt(a)
        s = jnp.sin(0.5 * x)
        c = jnp.sqrt(jnp.maximum(1 - s * s, 0.0))

        def vjp(u: jax.Array) -> tuple[jax.Array]:
            return (jnp.concatenate([ra * c * u, (da / ra) * jnp.sum(s * u, keepdims=True)]),)

        return 2 * ra * s, vjp

    def loss(self, theta: jax.Array) -> jax.Array:
        # 1 − cos x = 2 sin²(x/2) without cancellation (collapsing paths reach x ~ 1e-20)
        a = _curvature(theta[-1], self.a_min, self.a_max)
        s = jnp.sin(0.5 * theta[:-1])
        return 2 * a * jnp.sum(s * s)

    def gradient(self, theta: jax.Array) -> jax.Array:
        r, vjp = self.linearize(theta)
        return vjp(r)[0]

    def coordinate(self, theta: jax.Array) -> jax.Array:
        """Position along the minimiser set (y, in [0, 2π))."""
        return jnp.mod(theta[-1], _TWO_PI)

    def curvature(self, theta: jax.Array) -> jax.Array:
        return _curvature(theta[-1], self.a_min, self.a_max)

    def wrap(self, theta: jax.Array) -> jax.Array:
        return theta - _TWO_PI * jnp.concatenate([jnp.round(theta[:-1] / _TWO_PI),
                                                  jnp.floor(theta[-1:] / _TWO_PI)])

    def init(self, key: jax.Array) -> jax.Array:
        """x uniform on the torus, y uniform on the circle."""
        u = jax.random.uniform(key, (self.k + 1,), jnp.float32)
        return jnp.concatenate([(u[:-1] - 0.5) * _TWO_PI, u[-1:] * _TWO_PI])


class GainRegression(FiniteSum):
    """Interpolating regression with a learnable gain: r_i = √a(y)·z_iᵀw, L = (1/2N)‖r‖².

    θ = (w ∈ ℝ^p, y), N < p + 1 examples (the rows of Z). Zero loss on {Zw = 0} × circle
    (codimension N); per-example gradients r_i ∇r_i all vanish there, so SGD's own noise
    does too. With ZZᵀ = N·I (:meth:`orthogonal`) the transverse Hessian is a(y)·I_N: the
    regression analogue of :class:`CosineLandscape` with k = N, unbounded in w.
    ``init_scale``: the start is w ~ N(0, init_scale² I), y uniform.
    """

    Z: jax.Array
    a_min: Any
    a_max: Any
    init_scale: Any

    def __init__(self, Z: Any, a_min: Any = 1.0, a_max: Any = 4.0, init_scale: Any = 0.1):
        if not isinstance(Z, jax.core.Tracer):
            Z = _checks.real_array("Z", Z, ndim=2)
            a_min, a_max = _check_range(a_min, a_max)
            init_scale = _checks.finite_float("init_scale", init_scale, low=0.0)
            Z = jnp.asarray(Z, jnp.float32)
            a_min, a_max, init_scale = (jnp.float32(a_min), jnp.float32(a_max),
                                        jnp.float32(init_scale))
        self.Z, self.a_min, self.a_max, self.init_scale = Z, a_min, a_max, init_scale

    @classmethod
    def orthogonal(cls, key: Any, n: int, p: int, **kw: Any) -> GainRegression:
        """N = n examples in ℝ^p (p >= n) with orthogonal rows of squared norm n."""
        n = _checks.integer("n", n, low=1)
        p = _checks.integer("p", p, low=n)
        g = np.asarray(jax.random.normal(_as_key(key), (p, n)), np.float64)
        q, _ = np.linalg.qr(g)
        return cls(math.sqrt(n) * q.T, **kw)

    def __repr__(self) -> str:
        return f"GainRegression(N={self.Z.shape[0]}, p={self.Z.shape[1]})"

    @property
    def dim(self) -> int:
        return self.Z.shape[1] + 1

    @property
    def n_examples(self) -> int:
        return self.Z.shape[0]

    @property
    def n_residuals(self) -> int:
        return self.Z.shape[0]

    @property
    def scale(self) -> float:
        return 1.0 / self.Z.shape[0]

    def residuals(self, theta: jax.Array) -> jax.Array:
        a = _curvature(theta[-1], self.a_min, self.a_max)
        return jnp.sqrt(a) * (self.Z @ theta[:-1])

    def loss(self, theta: jax.Array) -> jax.Array:
        r = self.residuals(theta)
        return 0.5 * self.scale * jnp.sum(r * r)

    def example_losses(self, theta: jax.Array, idx: jax.Array) -> jax.Array:
        """ℓ_i = ½ r_i² (L is their mean)."""
        a = _curvature(theta[-1], self.a_min, self.a_max)
        r = jnp.sqrt(a) * (self.Z[idx] @ theta[:-1])
        return 0.5 * r * r

    def minibatch_gradient(self, key: jax.Array, theta: jax.Array, batch: Any = None):
        """(1/S) Σ_{i∈B} r_i ∇r_i by one VJP of the residuals."""
        del key
        r, vjp = self.linearize(theta)
        if batch is None:
            return vjp(self.scale * r)[0]
        hit = jnp.zeros_like(r).at[batch].add(1.0)
        return vjp(r * hit / batch.shape[0])[0]

    def gradient(self, theta: jax.Array) -> jax.Array:
        r, vjp = self.linearize(theta)
        return vjp(self.scale * r)[0]

    def noise_sample(self, theta: jax.Array, z: jax.Array, scale: Any = 1.0) -> jax.Array:
        """scale · Gᵀ(z − z̄)/√N with G's rows r_i∇r_i (one VJP of the residuals)."""
        r, vjp = self.linearize(theta)
        zc = z - jnp.mean(z)
        return scale * vjp(r * zc)[0] / jnp.sqrt(jnp.asarray(self.n_examples, theta.dtype))

    def coordinate(self, theta: jax.Array) -> jax.Array:
        """Position along the minimiser set (y, in [0, 2π))."""
        return jnp.mod(theta[-1], _TWO_PI)

    def curvature(self, theta: jax.Array) -> jax.Array:
        return _curvature(theta[-1], self.a_min, self.a_max)

    def linearize(self, theta: jax.Array):
        return jax.vjp(self.residuals, theta)

    def wrap(self, theta: jax.Array) -> jax.Array:
        """y onto [0, 2π) (the SDE wraps after each step; SGD needs no wrapping, since every
        quantity depends on y through a(y) and :meth:`coordinate`)."""
        y = theta[-1:]
        return jnp.concatenate([theta[:-1], y - _TWO_PI * jnp.floor(y / _TWO_PI)])

    def init(self, key: jax.Array) -> jax.Array:
        kw, ky = jax.random.split(key)
        w = self.init_scale * jax.random.normal(kw, (self.dim - 1,), jnp.float32)
        return jnp.concatenate([w, jax.random.uniform(ky, (1,), jnp.float32) * _TWO_PI])


LANDSCAPES = (CosineLandscape, GainRegression)


# --- results ------------------------------------------------------------------------------------

@dataclasses.dataclass
class ExponentFit:
    """A fitted selection exponent p (weights ∝ a^(−p)) with its uncertainty."""

    value: float
    stderr: float
    ci: tuple[float, float]      # percentile bootstrap over paths
    mean_log_a: float
    n_paths: int


@dataclasses.dataclass
class MLResult:
    """Per-path time averages, histograms and snapshots of an ML-noise or SGD run.

    Time averages use the states after ``burn_in`` (in time units t), weighted by the step
    dt_n; diverged paths contribute nothing after they diverge and are excluded from the
    fits (``alive``). Snapshots are taken every ``chunk`` steps.
    """

    noise: str
    solver: str
    config: dict[str, Any]
    weight: np.ndarray           # (K,)
    log_a: np.ndarray            # (K,) ∫ log a dt
    y_edges: np.ndarray          # (n_ybins + 1,)
    y_hist: np.ndarray           # (K, n_ybins)
    logl_edges: np.ndarray       # (n_lbins + 1,) in log10 L
    l_hist: np.ndarray           # (K, n_lbins + 2): underflow, bins, overflow
    theta: np.ndarray            # (K, d) final state
    t: np.ndarray                # (K,) final time
    alive: np.ndarray            # (K,) bool
    snap_steps: np.ndarray       # (S,)
    snap_t: np.ndarray           # (S, K)
    snap_loss: np.ndarray        # (S, K)
    snap_y: np.ndarray           # (S, K)
    snap_a: np.ndarray           # (S, K)
    compile_seconds: float = 0.0
    run_seconds: float = 0.0

    @property
    def n_paths(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_diverged(self) -> int:
        return int(np.sum(~self.alive))

    @property
    def final_loss(self) -> np.ndarray:
        return self.snap_loss[-1]

    @property
    def final_a(self) -> np.ndarray:
        return self.snap_a[-1]

    def y_density(self) -> tuple[np.ndarray, np.ndarray]:
        """Time-averaged density of y over alive paths per bin, and its SE (batch means over
        paths: each path's occupation fractions are one observation)."""
        ok = self.alive & (self.weight > 0)
        width = np.diff(self.y_edges)
        frac = self.y_hist[ok] / self.weight[ok, None]
        w = self.weight[ok] / self.weight[ok].sum()
        mean = w @ frac
        n = int(ok.sum())
        se = np.sqrt(np.maximum(w @ (frac - mean) ** 2, 0) * n / max(n - 1, 1) / max(n, 1))
        return mean / width, se / width

    def fit_exponent(self, n_boot: int = 1000, seed: int = 0) -> ExponentFit:
        """Fitted selection exponent: the p whose density ∝ a(y)^(−p) on the circle has the
        observed time-averaged E[log a] (maximum likelihood in that family); SE and 95% CI
        by a bootstrap over paths (ratio estimator Σ∫log a dt / Σ∫dt over resampled paths).
        """
        n_boot = _checks.integer("n_boot", n_boot, low=10)
        ok = self.alive & (self.weight > 0)
        n = int(ok.sum())
        if n < 2:
            raise ValueError(f"need at least 2 surviving paths with time after burn-in, got {n}")
        W, M = self.weight[ok], self.log_a[ok]
        a_min, a_max = self.config["a_min"], self.config["a_max"]
        m = float(M.sum() / W.sum())
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)
        mb = (counts @ M) / (counts @ W)
        pb = th.exponent_from_mean_log_a(mb, a_min, a_max)
        lo, hi = np.percentile(pb, [2.5, 97.5])
        return ExponentFit(float(th.exponent_from_mean_log_a(m, a_min, a_max)),
                           float(pb.std(ddof=1)), (float(lo), float(hi)), m, n)


# --- drivers ----------------------------------------------------------------------------------

def _common_checks(land, n_paths, n_steps, burn_in, theta0, n_ybins, n_lbins, logl_range,
                   l_cap, chunk):
    if not isinstance(land, LANDSCAPES):
        raise TypeError(f"landscape must be a CosineLandscape or GainRegression, got "
                        f"{type(land).__name__}")
    n_paths = _checks.integer("n_paths", n_paths, low=1, high=1 << 22)
    n_steps = _checks.integer("n_steps", n_steps, low=1, high=(1 << 31) - 2)
    burn_in = _checks.finite_float("burn_in", burn_in, low=0.0)
    n_ybins = _checks.integer("n_ybins", n_ybins, low=1, high=4096)
    n_lbins = _checks.integer("n_lbins", n_lbins, low=1, high=4096)
    l_cap = _checks.finite_float("l_cap", l_cap, low=0.0, low_open=True)
    chunk = _checks.integer("chunk", chunk, low=1, high=1 << 20)
    if (not isinstance(logl_range, tuple | list) or len(logl_range) != 2):
        raise TypeError(f"logl_range must be a pair (lo, hi) of log10 L, got {logl_range!r}")
    lo = _checks.finite_float("logl_range[0]", logl_range[0])
    hi = _checks.finite_float("logl_range[1]", logl_range[1])
    if hi <= lo:
        raise ValueError(f"logl_range must have lo < hi, got {logl_range!r}")
    if theta0 is not None:
        theta0 = _checks.real_array("theta0", theta0, ndim=(1, 2))
        if theta0.shape[-1] != land.dim or (theta0.ndim == 2 and theta0.shape[0] != n_paths):
            raise ValueError(f"theta0 must have shape ({land.dim},) or ({n_paths}, {land.dim}), "
                             f"got {theta0.shape}")
    return n_paths, n_steps, burn_in, theta0, n_ybins, n_lbins, (lo, hi), l_cap, chunk


def _chunk_len(chunk: int, n_steps: int, record_every: int) -> int:
    m = _checks.integer("record_every", record_every, low=1, high=1 << 16)
    if n_steps % m:
        raise ValueError(f"n_steps must be a multiple of record_every={m}, got {n_steps}")
    return m * max(1, chunk // m)


# Functions of (problem, θ) for the observers, defined once: one compiled kernel per shape.
def _log_a(land, theta):
    return jnp.log(land.curvature(theta))


def _coordinate(land, theta):
    return land.coordinate(theta)


def _log10_loss(land, theta):
    return jnp.log10(jnp.maximum(land.loss(theta), 1e-37))


def _snapshot(theta, velocity, land):
    return jnp.stack([land.loss(theta), land.coordinate(theta), land.curvature(theta)])


def _starts(land, key: jax.Array, n_paths: int, theta0: Any) -> np.ndarray:
    """Path i starts at ``land.init(fold_in(fold_in(key, i), 2³¹ − 1))`` (wrapped), or at
    the given ``theta0``."""
    if theta0 is not None:
        theta = jnp.asarray(np.broadcast_to(theta0, (n_paths, land.dim)), jnp.float32)
        return np.asarray(jax.vmap(land.wrap)(theta))
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(n_paths))
    return np.asarray(_init_paths(land, keys))


_init_paths = jax.jit(lambda land, keys: jax.vmap(
    lambda k: land.wrap(land.init(jax.random.fold_in(k, _INIT_SLOT))))(keys))


def _run(dynamics, params, land, key, n_paths: int, n_steps: int, theta0, *, chunk: int,
         record_every: int, burn_in: float, n_ybins: int, n_lbins: int,
         logl: tuple[float, float], l_cap: float, progress: bool, description: str,
         config: dict, noise: str, solver: str) -> MLResult:
    key = _as_key(key)
    start = _starts(land, key, n_paths, theta0)
    snaps = np.arange(chunk, n_steps + chunk, chunk)
    snaps[-1] = n_steps
    snaps = np.unique(np.minimum(snaps, n_steps))
    averages = observers.TimeAverage(
        every=record_every, fns=(("log_a", _log_a),),
        histograms=(("y_hist", observers.Histogram(_coordinate, n_ybins)),
                    ("l_hist", observers.Histogram(_log10_loss, n_lbins, overflow=True))),
        n_steps=n_steps, burn_in=burn_in,
        ranges=(("y_hist", (0.0, _TWO_PI)), ("l_hist", logl)))
    snapshots = observers.Trace.from_dict({"snap": (_snapshot, land), "time": "time"}, snaps,
                                          name="snapshots")
    out = runner.run(dynamics, params, key, start, np.zeros_like(start), n_steps,
                     (averages, snapshots), n_chunks=max(1, math.ceil(n_steps / chunk)),
                     progress=progress, description=description, max_loss=l_cap)
    avg = out.observed["time_averages"]
    snap = out.observed["snapshots"]
    values = np.asarray(snap["snap"], np.float64)            # (K, S, 3)
    final_t = (np.asarray(out.aux, np.float64) if np.ndim(out.aux) == 1
               else np.asarray(snap["time"], np.float64)[:, -1])
    res = MLResult(
        noise=noise, solver=solver, config=config,
        weight=avg["weight"], log_a=avg["log_a"],
        y_edges=np.linspace(0, _TWO_PI, n_ybins + 1), y_hist=avg["y_hist"],
        logl_edges=np.linspace(logl[0], logl[1], n_lbins + 1), l_hist=avg["l_hist"],
        theta=np.asarray(out.theta, np.float64), t=final_t, alive=np.asarray(out.alive),
        snap_steps=snaps, snap_t=np.asarray(snap["time"], np.float64).T,
        snap_loss=values[:, :, 0].T, snap_y=values[:, :, 1].T, snap_a=values[:, :, 2].T,
        compile_seconds=out.timings["compile_seconds"],
        run_seconds=out.timings["run_seconds"])
    _accounting.report(res)
    return res


def simulate(landscape, noise: str, key: Any, *, T: float, dt: float, n_paths: int,
             n_steps: int, solver: str = "em", l_ref: float = 1.0, burn_in: float = 0.0,
             t_end: float | None = None,
             theta0: Any = None, n_ybins: int = 24, n_lbins: int = 40,
             logl_range: tuple[float, float] = (-6.0, 2.0), l_cap: float = 1e12,
             chunk: int = 1000, record_every: int = 10, increments: str = "gaussian",
             progress: bool = False) -> MLResult:
    """Simulate dθ = −∇L dt + √(2T) S(θ) dW (Itô) for ``n_paths`` independent paths.

    Args:
        landscape: a :class:`CosineLandscape` or :class:`GainRegression` (the observables
            — a(y), y, log L — are theirs; the dynamics :class:`limitdyn.dynamics.
            MLNoiseSDE` itself steps any problem).
        noise: "homogeneous" | "ml" | "ml-curvature" | "sgd" (module docstring table;
            "sgd" needs a regression).
        key: a JAX PRNG key.
        T: temperature (for "sgd": ηκ of the SGD it models).
        dt: the step ("em"), or the step in the clock dτ = max(L, l_ref) dt ("time-change").
        n_paths: number of paths.
        n_steps: number of integrator steps (a multiple of ``record_every``).
        solver: "em" | "time-change".
        l_ref: the time change's floor (> 0).
        burn_in: time (in t) before which nothing is averaged.
        t_end: a path stops at time t_end (useful with "time-change", whose paths run on
            their own clocks); ``n_steps`` bounds the work. Default: no limit.
        theta0: start, (d,) or (n_paths, d); default ``landscape.init`` per path.
        n_ybins: bins of the histogram of y on [0, 2π).
        n_lbins: bins of the histogram of log10 L on ``logl_range`` (plus under/overflow).
        logl_range: (lo, hi) of that histogram.
        l_cap: a path with L > l_cap (or non-finite) is frozen and counted as diverged.
        chunk: steps between snapshots (and progress updates).
        record_every: m; time averages use every m-th state with weight m·dt (unbiased
            for the time average, m times cheaper). ``n_steps`` must be a multiple of m.
        increments: "gaussian" (Euler–Maruyama) or "rademacher" (±1 increments: the
            simplified weak Euler scheme, same weak order 1, ~5× cheaper on CPU).
        progress: show a progress bar.
    """
    noise = _checks.choice("noise", noise, NOISES)
    solver = _checks.choice("solver", solver, SOLVERS)
    increments = _checks.choice("increments", increments, INCREMENTS)
    T = _checks.finite_float("T", T, low=0.0, low_open=True)
    dt = _checks.finite_float("dt", dt, low=0.0, low_open=True)
    l_ref = _checks.finite_float("l_ref", l_ref, low=0.0, low_open=True)
    t_end = np.inf if t_end is None else _checks.finite_float("t_end", t_end, low=0.0,
                                                              low_open=True)
    (n_paths, n_steps, burn_in, theta0, n_ybins, n_lbins, (lo, hi), l_cap,
     chunk) = _common_checks(landscape, n_paths, n_steps, burn_in, theta0, n_ybins, n_lbins,
                             logl_range, l_cap, chunk)
    if noise == "sgd" and landscape.n_examples is None:
        raise ValueError("noise='sgd' needs a landscape with examples (a FiniteSum such as "
                         "GainRegression)")
    if noise == "ml-curvature" and not hasattr(landscape, "linearize"):
        raise ValueError("noise='ml-curvature' needs a residual landscape (linearize(theta))")
    n_normals = landscape.dim if noise in ("homogeneous", "ml") else landscape.n_residuals
    chunk = _chunk_len(chunk, n_steps, record_every)
    dynamics = MLNoiseSDE(noise, solver, increments, int(n_normals))
    params = {"prob": landscape, "T": jnp.float32(T), "dt": jnp.float32(dt),
              "l_ref": jnp.float32(l_ref), "t_end": jnp.float32(t_end)}
    config = dict(kind="sde", noise=noise, solver=solver, increments=increments, T=T, dt=dt,
                  l_ref=l_ref, t_end=None if math.isinf(t_end) else t_end,
                  burn_in=burn_in, n_paths=n_paths, n_steps=n_steps,
                  a_min=float(landscape.a_min), a_max=float(landscape.a_max),
                  landscape=repr(landscape))
    return _run(dynamics, params, landscape, key, n_paths, n_steps, theta0, chunk=chunk,
                record_every=record_every, burn_in=burn_in, n_ybins=n_ybins,
                n_lbins=n_lbins, logl=(lo, hi), l_cap=l_cap, progress=progress,
                description=f"{noise} T={T:g}", config=config, noise=noise, solver=solver)


def simulate_sgd(regression: GainRegression, key: Any, *, lr: float, batch_size: int,
                 n_paths: int, n_steps: int, burn_in: float = 0.0, theta0: Any = None,
                 n_ybins: int = 24, n_lbins: int = 40,
                 logl_range: tuple[float, float] = (-6.0, 2.0), l_cap: float = 1e12,
                 chunk: int = 1000, record_every: int = 1,
                 progress: bool = False) -> MLResult:
    """Discrete minibatch SGD θ ← θ − η·(1/S)Σ_{i∈B}∇ℓ_i with ``iid`` batches (theory.md §1).

    The heavy-ball kernel of :func:`limitdyn.simulate_sgd` with β = 0 on the regression (a
    :class:`~limitdyn.FiniteSum`). Time is t = ηk, so results line up with
    :func:`simulate` at T = ηκ, κ = (N − S)/(S(N − 1)) (noise "sgd", or "ml-curvature"
    when Σ ≈ 2LG).
    """
    if not isinstance(regression, GainRegression):
        raise TypeError(f"simulate_sgd needs a GainRegression, got {type(regression).__name__}")
    lr = _checks.finite_float("lr", lr, low=0.0, low_open=True)
    batch_size = _checks.integer("batch_size", batch_size, low=1, high=regression.n_examples)
    (n_paths, n_steps, burn_in, theta0, n_ybins, n_lbins, (lo, hi), l_cap,
     chunk) = _common_checks(regression, n_paths, n_steps, burn_in, theta0, n_ybins, n_lbins,
                             logl_range, l_cap, chunk)
    chunk = _chunk_len(chunk, n_steps, record_every)
    hp = Hyper(lr=lr, momentum=0.0, batch_size=batch_size)
    traced_hp = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), hp)
    dynamics = HeavyBall("iid", regression.n_examples, batch_size)
    config = dict(kind="sgd", lr=lr, batch_size=batch_size, burn_in=burn_in, n_paths=n_paths,
                  n_steps=n_steps, a_min=float(regression.a_min),
                  a_max=float(regression.a_max), landscape=repr(regression),
                  T_equivalent=lr * samplers.finite_population_factor(
                      "iid", regression.n_examples, batch_size))
    return _run(dynamics, (regression, traced_hp), regression, key, n_paths, n_steps, theta0,
                chunk=chunk, record_every=record_every, burn_in=burn_in, n_ybins=n_ybins,
                n_lbins=n_lbins, logl=(lo, hi), l_cap=l_cap, progress=progress,
                description=f"SGD lr={lr:g}", config=config, noise="sgd-discrete",
                solver="sgd")


__all__ = ["LANDSCAPES", "NOISES", "SOLVERS", "CosineLandscape", "ExponentFit",
           "GainRegression", "MLResult", "simulate", "simulate_sgd"]
