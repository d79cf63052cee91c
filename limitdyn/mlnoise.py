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
results do not depend on the number of paths. T, dt, l_ref, burn-in, number of steps and
the landscape's arrays are traced: a sweep over them reuses one compiled kernel.

:func:`simulate` runs the SDE, :func:`simulate_sgd` discrete minibatch SGD on a
regression; both return an :class:`MLResult` of per-path time averages (after burn-in,
weighted by time), histograms and snapshots, never full trajectories. A path whose loss
exceeds ``l_cap`` or becomes non-finite is frozen and counted in ``n_diverged``; it is
left out of every average.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _checks, _prng, samplers
from .problems import _as_key
from .theory import mlnoise as th

NOISES = ("homogeneous", "ml", "ml-curvature", "sgd")
SOLVERS = ("em", "time-change")
INCREMENTS = ("gaussian", "rademacher")
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


@jax.tree_util.register_pytree_node_class
class CosineLandscape:
    """L(x, y) = a(y) Σ_{j ≤ k} (1 − cos x_j), θ = (x_1 … x_k, y) (theory.md §8).

    Residuals r_j = 2√a(y) sin(x_j/2) (L = ½‖r‖², c = 1); minimisers {x ∈ 2πℤ^k} × circle,
    codimension k, transverse curvature a(y). The state is wrapped to x ∈ [−π, π),
    y ∈ [0, 2π) after every step (the law is invariant; the residual's sign flip under
    x → x + 2π changes the curvature-shaped noise only by ξ → −ξ).
    """

    def __init__(self, k: int, a_min: Any = 1.0, a_max: Any = 4.0):
        self.k = _checks.integer("k", k, low=1, high=4096)
        if not (isinstance(a_min, jax.core.Tracer) or isinstance(a_max, jax.core.Tracer)):
            a_min, a_max = _check_range(a_min, a_max)
        self.a_min, self.a_max = a_min, a_max

    def tree_flatten(self):
        return (self.a_min, self.a_max), self.k

    @classmethod
    def tree_unflatten(cls, k, leaves):
        obj = object.__new__(cls)
        obj.k, (obj.a_min, obj.a_max) = k, leaves
        return obj

    def __repr__(self) -> str:
        return f"CosineLandscape(k={self.k}, a_min={self.a_min}, a_max={self.a_max})"

    @property
    def dim(self) -> int:
        return self.k + 1

    @property
    def n_residuals(self) -> int:
        return self.k

    n_examples = None
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

    def coordinate(self, theta: jax.Array) -> jax.Array:
        """Position along the minimiser set (y)."""
        return theta[-1]

    def curvature(self, theta: jax.Array) -> jax.Array:
        return _curvature(theta[-1], self.a_min, self.a_max)

    def wrap(self, theta: jax.Array) -> jax.Array:
        return theta - _TWO_PI * jnp.concatenate([jnp.round(theta[:-1] / _TWO_PI),
                                                  jnp.floor(theta[-1:] / _TWO_PI)])

    def init(self, key: jax.Array) -> jax.Array:
        """x uniform on the torus, y uniform on the circle."""
        u = jax.random.uniform(key, (self.k + 1,), jnp.float32)
        return jnp.concatenate([(u[:-1] - 0.5) * _TWO_PI, u[-1:] * _TWO_PI])


@jax.tree_util.register_pytree_node_class
class GainRegression:
    """Interpolating regression with a learnable gain: r_i = √a(y)·z_iᵀw, L = (1/2N)‖r‖².

    θ = (w ∈ ℝ^p, y), N < p + 1 examples (the rows of Z). Zero loss on {Zw = 0} × circle
    (codimension N); per-example gradients r_i ∇r_i all vanish there, so SGD's own noise
    does too. With ZZᵀ = N·I (:meth:`orthogonal`) the transverse Hessian is a(y)·I_N: the
    regression analogue of :class:`CosineLandscape` with k = N, unbounded in w.
    ``init_scale``: the start is w ~ N(0, init_scale² I), y uniform.
    """

    def __init__(self, Z: Any, a_min: Any = 1.0, a_max: Any = 4.0, init_scale: Any = 0.1):
        if not isinstance(Z, jax.core.Tracer):
            Z = _checks.real_array("Z", Z, ndim=2)
            a_min, a_max = _check_range(a_min, a_max)
            init_scale = _checks.finite_float("init_scale", init_scale, low=0.0)
            Z = jnp.asarray(Z, jnp.float32)
        self.Z, self.a_min, self.a_max, self.init_scale = Z, a_min, a_max, init_scale

    @classmethod
    def orthogonal(cls, key: Any, n: int, p: int, **kw: Any) -> GainRegression:
        """N = n examples in ℝ^p (p >= n) with orthogonal rows of squared norm n."""
        n = _checks.integer("n", n, low=1)
        p = _checks.integer("p", p, low=n)
        g = np.asarray(jax.random.normal(_as_key(key), (p, n)), np.float64)
        q, _ = np.linalg.qr(g)
        return cls(math.sqrt(n) * q.T, **kw)

    def tree_flatten(self):
        return (self.Z, self.a_min, self.a_max, self.init_scale), None

    @classmethod
    def tree_unflatten(cls, aux, leaves):
        obj = object.__new__(cls)
        obj.Z, obj.a_min, obj.a_max, obj.init_scale = leaves
        return obj

    def __repr__(self) -> str:
        return f"GainRegression(N={self.Z.shape[0]}, p={self.Z.shape[1]})"

    @property
    def dim(self) -> int:
        return self.Z.shape[1] + 1

    @property
    def n_examples(self) -> int:
        return self.Z.shape[0]

    n_residuals = n_examples

    @property
    def scale(self) -> float:
        return 1.0 / self.Z.shape[0]

    def residuals(self, theta: jax.Array) -> jax.Array:
        a = _curvature(theta[-1], self.a_min, self.a_max)
        return jnp.sqrt(a) * (self.Z @ theta[:-1])

    def loss(self, theta: jax.Array) -> jax.Array:
        r = self.residuals(theta)
        return 0.5 * self.scale * jnp.sum(r * r)

    def coordinate(self, theta: jax.Array) -> jax.Array:
        return theta[-1]

    def curvature(self, theta: jax.Array) -> jax.Array:
        return _curvature(theta[-1], self.a_min, self.a_max)

    def linearize(self, theta: jax.Array):
        return jax.vjp(self.residuals, theta)

    def wrap(self, theta: jax.Array) -> jax.Array:
        y = theta[-1:]
        return jnp.concatenate([theta[:-1], y - _TWO_PI * jnp.floor(y / _TWO_PI)])

    def init(self, key: jax.Array) -> jax.Array:
        kw, ky = jax.random.split(key)
        w = self.init_scale * jax.random.normal(kw, (self.dim - 1,), jnp.float32)
        return jnp.concatenate([w, jax.random.uniform(ky, (1,), jnp.float32) * _TWO_PI])


LANDSCAPES = (CosineLandscape, GainRegression)


# --- the kernel ---------------------------------------------------------------------------------

class _Spec(NamedTuple):
    """Static part of a run (keys the compile cache)."""

    kind: str            # "sde" | "sgd"
    noise: str
    solver: str
    chunk: int
    n_ybins: int
    n_lbins: int
    n_normals: int
    batch_size: int
    record_every: int
    increments: str = "gaussian"


class _Carry(NamedTuple):
    theta: jax.Array     # (K, d)
    t: jax.Array         # (K,)
    alive: jax.Array     # (K,) bool


class _Acc(NamedTuple):
    weight: jax.Array    # (K,) time after burn-in
    log_a: jax.Array     # (K,) ∫ log a(y) dt
    y_hist: jax.Array    # (K, n_ybins) time in each y bin
    l_hist: jax.Array    # (K, n_lbins + 2) time in each log10 L bin (+ under/overflow)


def _signs(keys: jax.Array, step: jax.Array, n: int) -> jax.Array:
    """(K, n) independent ±1 (float32): the bits of threefry2x32 on (key_i, step), counter.

    The two-point increments of the simplified weak Euler scheme (Kloeden & Platen §14.1):
    mean 0, variance 1, same weak order 1 as Gaussian Euler–Maruyama, 64 per hash.
    """
    data = jax.random.key_data(keys)
    zero = jnp.zeros_like(data[:, 0])
    a, b = _prng.threefry2x32(data[:, 0], data[:, 1], zero,
                              jnp.broadcast_to(jnp.asarray(step).astype(jnp.uint32), zero.shape))
    words = -(-n // 64)
    counter = lax.iota(jnp.uint32, words)[None, :]
    y0, y1 = _prng.threefry2x32(a[:, None], b[:, None], jnp.zeros_like(counter), counter)
    bits = jnp.stack([y0, y1], axis=-1).reshape(y0.shape[0], 2 * words)      # (K, 2w)
    shifts = jnp.arange(32, dtype=jnp.uint32)
    flat = ((bits[:, :, None] >> shifts[None, None, :]) & jnp.uint32(1)).reshape(
        y0.shape[0], 64 * words)[:, :n]
    return 1.0 - 2.0 * flat.astype(jnp.float32)


def _noise_increment(spec: _Spec, land, theta, r, vjp, L, z):
    """S(θ)ξ for the noise model (before the factor √(2T dt))."""
    c = land.scale
    if spec.noise == "homogeneous":
        return z
    if spec.noise == "ml":
        return jnp.sqrt(L) * z
    if spec.noise == "ml-curvature":               # S = √L·√c Jᵀ: S Sᵀ = L·G
        return jnp.sqrt(L * c) * vjp(z)[0]
    zc = z - jnp.mean(z)                            # sgd: Cov = (c/2)·Jᵀdiag(r)(I − 11ᵀ/N)diag(r)J
    return jnp.sqrt(0.5 * c) * vjp(r * zc)[0]


def _sde_path(spec: _Spec, land, p, theta, z):
    """One Itô Euler–Maruyama step of one path: (new θ, dt, L(θ))."""
    r, vjp = land.linearize(theta)
    L = 0.5 * land.scale * jnp.sum(r * r)
    grad = vjp(land.scale * r)[0]
    if spec.solver == "em":
        dt = p["dt"]
    else:
        dt = p["dt"] / jnp.maximum(L, p["l_ref"])
    new = theta - grad * dt + jnp.sqrt(2 * p["T"] * dt) * _noise_increment(
        spec, land, theta, r, vjp, L, z)
    return land.wrap(new), dt, L


def _sgd_path(spec: _Spec, land, p, theta, batch):
    """One discrete SGD step of one path: θ ← θ − η (1/S)Σ_{i∈B} r_i ∇r_i."""
    r, vjp = land.linearize(theta)
    L = 0.5 * land.scale * jnp.sum(r * r)
    hit = jnp.zeros_like(r).at[batch].add(1.0)
    grad = vjp(r * hit / spec.batch_size)[0]
    return land.wrap(theta - p["lr"] * grad), p["lr"], L


def _stats(spec: _Spec, land, p, theta, L, w):
    """Per-path weighted contributions of the state θ (weight w = dt after burn-in)."""
    y = land.coordinate(theta)
    a = land.curvature(theta)
    iy = jnp.clip(jnp.floor(y / _TWO_PI * spec.n_ybins).astype(jnp.int32), 0, spec.n_ybins - 1)
    logl = jnp.log10(jnp.maximum(L, 1e-37))
    u = (logl - p["logl_lo"]) / (p["logl_hi"] - p["logl_lo"]) * spec.n_lbins
    il = jnp.where(u < 0, 0, jnp.where(u >= spec.n_lbins, spec.n_lbins + 1,
                                       jnp.floor(u).astype(jnp.int32) + 1))
    return (w, w * jnp.log(a), w * jax.nn.one_hot(iy, spec.n_ybins),
            w * jax.nn.one_hot(il, spec.n_lbins + 2))


def _chunk(spec: _Spec, carry: _Carry, land, p, keys, step0):
    """Advance ``spec.chunk`` steps (fewer at the end: steps >= p["n_steps"] are no-ops)."""
    K = carry.theta.shape[0]
    zero = _Acc(jnp.zeros(K), jnp.zeros(K), jnp.zeros((K, spec.n_ybins)),
                jnp.zeros((K, spec.n_lbins + 2)))

    if spec.kind == "sgd":
        sampler = samplers.iid(land.n_examples, spec.batch_size)

        def draws(step):
            def one(key):
                return sampler.next(jax.random.fold_in(key, step), (), step)[0]
            return jax.vmap(one)(keys)

        path = _sgd_path
    else:
        fast = _prng.available(keys, jnp.float32)

        def draws(step):
            if spec.increments == "rademacher":
                return _signs(keys, step, spec.n_normals)
            if fast:
                return _prng.trajectory_normals(keys, step, spec.n_normals)
            return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, step),
                                                        (spec.n_normals,)))(keys)

        path = _sde_path

    def one(c: _Carry, n):
        new, dt, L = jax.vmap(lambda th, z: path(spec, land, p, th, z))(c.theta, draws(n))
        ok = c.alive & jnp.isfinite(L) & (L <= p["l_cap"])
        ok = ok & jnp.all(jnp.isfinite(new), axis=1)
        move = ok & (c.t < p["t_end"])             # finished paths wait for the others
        theta = jnp.where(move[:, None], new, c.theta)
        return _Carry(theta, c.t + jnp.where(move, dt, 0.0), ok), jnp.where(move, dt, 0.0), L

    def group(state, g):
        # The state at the group's first step stands for the whole group (weight m·dt):
        # an unbiased estimate of the time average, at 1/m of the cost of recording all.
        c, acc = state
        n0 = step0 + g * spec.record_every

        def advance(c, acc):
            c1, dt, L = one(c, n0)
            w = jnp.where(c1.alive & (c.t >= p["burn_in"]) & (c.t < p["t_end"]),
                          spec.record_every * dt, 0.0)
            contrib = jax.vmap(lambda th, l, ww: _stats(spec, land, p, th, l, ww))(
                c.theta, L, w)
            acc = _Acc(*(x + dx for x, dx in zip(acc, contrib, strict=True)))
            c1 = lax.fori_loop(1, spec.record_every, lambda i, cc: one(cc, n0 + i)[0], c1)
            return c1, acc

        return lax.cond(n0 < p["n_steps"], advance, lambda c, acc: (c, acc), c, acc), None

    (carry, acc), _ = lax.scan(group, (carry, zero),
                               jnp.arange(spec.chunk // spec.record_every))
    return carry, acc


# One executable per (spec, argument shapes): T, dt, burn-in, n_steps and the landscape's
# arrays are traced, so sweeps over them reuse it.
_COMPILED: dict[Any, Any] = {}


def _compiled(spec: _Spec, args: tuple) -> tuple[Any, float]:
    leaves, treedef = jax.tree_util.tree_flatten(args)
    prng = (bool(jax.config.jax_threefry_partitionable), str(jax.config.jax_default_prng_impl))
    key = (spec, treedef, tuple((np.shape(x), str(jnp.asarray(x).dtype)) for x in leaves), prng)
    if key in _COMPILED:
        return _COMPILED[key], 0.0
    t0 = time.perf_counter()
    exe = jax.jit(_chunk, static_argnums=0, donate_argnums=1).lower(spec, *args).compile()
    _COMPILED[key] = exe
    return exe, time.perf_counter() - t0


_init_paths = jax.jit(lambda land, keys: jax.vmap(
    lambda k: land.wrap(land.init(jax.random.fold_in(k, _INIT_SLOT))))(keys))
_path_keys = jax.jit(lambda key, n: jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(n)),
                     static_argnums=1)
_snapshot = jax.jit(lambda land, theta: (jax.vmap(land.loss)(theta),
                                         jax.vmap(land.coordinate)(theta),
                                         jax.vmap(land.curvature)(theta)))


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


def _run(spec: _Spec, land, params: dict, key, n_paths: int, n_steps: int, theta0,
         progress: bool, description: str, config: dict) -> MLResult:
    from tqdm.auto import tqdm

    key = _as_key(key)
    keys = _path_keys(key, n_paths)
    if theta0 is None:
        theta = _init_paths(land, keys)
    else:
        theta = jnp.asarray(np.broadcast_to(theta0, (n_paths, land.dim)), jnp.float32)
        theta = jax.vmap(land.wrap)(theta)
    carry = _Carry(theta, jnp.zeros(n_paths, jnp.float32), jnp.ones(n_paths, bool))
    p = {k: jnp.asarray(v, jnp.int32 if k == "n_steps" else jnp.float32)
         for k, v in params.items()}
    compiled, compile_seconds = _compiled(spec, (carry, land, p, keys, jnp.int32(0)))
    acc = None
    snaps: dict[str, list] = {"steps": [], "t": [], "loss": [], "y": [], "a": []}
    t0 = time.perf_counter()
    with tqdm(total=n_steps, disable=not progress, unit="step", desc=description,
              leave=False) as bar:
        for start in range(0, n_steps, spec.chunk):
            carry, part = compiled(carry, land, p, keys, jnp.int32(start))
            part = [np.asarray(x, np.float64) for x in part]
            acc = part if acc is None else [a + b for a, b in zip(acc, part, strict=True)]
            loss, y, a = (np.asarray(x, np.float64) for x in _snapshot(land, carry.theta))
            snaps["steps"].append(min(start + spec.chunk, n_steps))
            snaps["t"].append(np.asarray(carry.t, np.float64))
            snaps["loss"].append(loss)
            snaps["y"].append(y)
            snaps["a"].append(a)
            bar.update(snaps["steps"][-1] - bar.n)
    run_seconds = time.perf_counter() - t0
    lo, hi = params["logl_lo"], params["logl_hi"]
    return MLResult(
        noise=spec.noise, solver=spec.solver, config=config,
        weight=acc[0], log_a=acc[1],
        y_edges=np.linspace(0, _TWO_PI, spec.n_ybins + 1), y_hist=acc[2],
        logl_edges=np.linspace(lo, hi, spec.n_lbins + 1), l_hist=acc[3],
        theta=np.asarray(carry.theta, np.float64), t=np.asarray(carry.t, np.float64),
        alive=np.asarray(carry.alive),
        snap_steps=np.asarray(snaps["steps"]), snap_t=np.stack(snaps["t"]),
        snap_loss=np.stack(snaps["loss"]), snap_y=np.stack(snaps["y"]),
        snap_a=np.stack(snaps["a"]), compile_seconds=compile_seconds, run_seconds=run_seconds)


def simulate(landscape, noise: str, key: Any, *, T: float, dt: float, n_paths: int,
             n_steps: int, solver: str = "em", l_ref: float = 1.0, burn_in: float = 0.0,
             t_end: float | None = None,
             theta0: Any = None, n_ybins: int = 24, n_lbins: int = 40,
             logl_range: tuple[float, float] = (-6.0, 2.0), l_cap: float = 1e12,
             chunk: int = 1000, record_every: int = 10, increments: str = "gaussian",
             progress: bool = False) -> MLResult:
    """Simulate dθ = −∇L dt + √(2T) S(θ) dW (Itô) for ``n_paths`` independent paths.

    Args:
        landscape: a :class:`CosineLandscape` or :class:`GainRegression`.
        noise: "homogeneous" | "ml" | "ml-curvature" | "sgd" (module docstring table;
            "sgd" needs a regression).
        T: temperature (for "sgd": ηκ of the SGD it models).
        dt: the step ("em"), or the step in the clock dτ = max(L, l_ref) dt ("time-change").
        solver: "em" | "time-change"; ``l_ref``: the time change's floor (> 0).
        burn_in: time (in t) before which nothing is averaged.
        t_end: a path stops at time t_end (useful with "time-change", whose paths run on
            their own clocks); ``n_steps`` bounds the work. Default: no limit.
        theta0: start, (d,) or (n_paths, d); default ``landscape.init`` per path.
        n_ybins, n_lbins, logl_range: histograms of y on [0, 2π) and of log10 L.
        l_cap: a path with L > l_cap (or non-finite) is frozen and counted as diverged.
        chunk: steps per compiled call (snapshots and progress between chunks).
        increments: "gaussian" (Euler–Maruyama) or "rademacher" (±1 increments: the
            simplified weak Euler scheme, same weak order 1, ~5× cheaper on CPU).
        record_every: m; time averages use every m-th state with weight m·dt (unbiased
            for the time average, m times cheaper). ``n_steps`` must be a multiple of m.
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
        raise ValueError("noise='sgd' needs a landscape with examples (GainRegression)")
    n_normals = landscape.dim if noise in ("homogeneous", "ml") else landscape.n_residuals
    spec = _Spec("sde", noise, solver, _chunk_len(chunk, n_steps, record_every), n_ybins,
                 n_lbins, n_normals, 0, record_every, increments)
    params = dict(T=T, dt=dt, l_ref=l_ref, burn_in=burn_in, l_cap=l_cap, logl_lo=lo,
                  logl_hi=hi, n_steps=n_steps, lr=0.0, t_end=t_end)
    config = dict(kind="sde", noise=noise, solver=solver, increments=increments, T=T, dt=dt,
                  l_ref=l_ref, t_end=None if math.isinf(t_end) else t_end,
                  burn_in=burn_in, n_paths=n_paths, n_steps=n_steps,
                  a_min=float(landscape.a_min), a_max=float(landscape.a_max),
                  landscape=repr(landscape))
    return _run(spec, landscape, params, key, n_paths, n_steps, theta0, progress,
                f"{noise} T={T:g}", config)


def simulate_sgd(regression: GainRegression, key: Any, *, lr: float, batch_size: int,
                 n_paths: int, n_steps: int, burn_in: float = 0.0, theta0: Any = None,
                 n_ybins: int = 24, n_lbins: int = 40,
                 logl_range: tuple[float, float] = (-6.0, 2.0), l_cap: float = 1e12,
                 chunk: int = 1000, record_every: int = 1,
                 progress: bool = False) -> MLResult:
    """Discrete minibatch SGD θ ← θ − η·(1/S)Σ_{i∈B}∇ℓ_i with ``iid`` batches (theory.md §1).

    Time is t = ηk, so results line up with :func:`simulate` at T = ηκ,
    κ = (N − S)/(S(N − 1)) (noise "sgd", or "ml-curvature" when Σ ≈ 2LG).
    """
    if not isinstance(regression, GainRegression):
        raise TypeError(f"simulate_sgd needs a GainRegression, got {type(regression).__name__}")
    lr = _checks.finite_float("lr", lr, low=0.0, low_open=True)
    batch_size = _checks.integer("batch_size", batch_size, low=1, high=regression.n_examples)
    (n_paths, n_steps, burn_in, theta0, n_ybins, n_lbins, (lo, hi), l_cap,
     chunk) = _common_checks(regression, n_paths, n_steps, burn_in, theta0, n_ybins, n_lbins,
                             logl_range, l_cap, chunk)
    spec = _Spec("sgd", "sgd-discrete", "sgd", _chunk_len(chunk, n_steps, record_every),
                 n_ybins, n_lbins, 0, batch_size, record_every)
    params = dict(T=0.0, dt=lr, l_ref=1.0, burn_in=burn_in, l_cap=l_cap, logl_lo=lo,
                  logl_hi=hi, n_steps=n_steps, lr=lr, t_end=np.inf)
    config = dict(kind="sgd", lr=lr, batch_size=batch_size, burn_in=burn_in, n_paths=n_paths,
                  n_steps=n_steps, a_min=float(regression.a_min),
                  a_max=float(regression.a_max), landscape=repr(regression),
                  T_equivalent=lr * samplers.finite_population_factor(
                      "iid", regression.n_examples, batch_size))
    return _run(spec, regression, params, key, n_paths, n_steps, theta0, progress,
                f"SGD lr={lr:g}", config)


__all__ = ["LANDSCAPES", "NOISES", "SOLVERS", "CosineLandscape", "ExponentFit",
           "GainRegression", "MLResult", "simulate", "simulate_sgd"]
