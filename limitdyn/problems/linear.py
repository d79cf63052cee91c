"""The two problems with exact theory: linear regression and the noisy quadratic.

Both implement the :mod:`limitdyn.problems.base` protocol and keep their closed forms
(gradient, per-example gradients, exact-noise sample, Hessian, minimiser, Σ(θ)), which the
theory (theory.md §3, §5) and the SDE integrators use. They keep a float64 copy of their
data for the theory (``numpy()``, :func:`hessian64`), whatever dtype the simulation runs in.

``LinearRegression`` is a :class:`~limitdyn.FiniteSum` (minibatches index examples);
``Quadratic`` is a noisy quadratic model whose gradient noise is Gaussian with a given
covariance per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from .base import FiniteSum, HostArray, Problem

Array = jax.Array


def _leaf(value: np.ndarray) -> Array:
    """Store host float64 data in JAX's default float dtype (float64 only under x64)."""
    return jnp.asarray(value, dtype=jnp.result_type(float))


class LinearRegression(FiniteSum):
    """Least squares ``L(θ) = (1/2N) ‖Xθ − y‖²`` (theory.md §3).

    Args:
        X: inputs, shape (N, d), finite.
        y: targets, shape (N,), finite.

    The Hessian ``H = XᵀX/N`` is constant and the per-example gradient of example i is
    ``x_i r_i`` with residual ``r_i = x_iᵀθ − y_i``; the gradient-noise covariance
    ``Σ(θ) = (1/N) Σ_i x_i x_iᵀ r_i² − ∇L ∇Lᵀ`` is quadratic in θ, which is why the
    discrete moments close exactly (theory.md §5).
    """

    X: Array
    y: Array
    X64: HostArray = eqx.field(static=True, repr=False)
    y64: HostArray = eqx.field(static=True, repr=False)

    def __init__(self, X: Any, y: Any):
        X = _checks.real_array("X", X, ndim=2)
        y = _checks.real_array("y", y, ndim=1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y must have one target per row of X: X has {X.shape[0]} rows, "
                             f"y has {y.shape[0]} entries")
        self.X = _leaf(X)
        self.y = _leaf(y)
        self.X64 = HostArray(X)
        self.y64 = HostArray(y)

    # --- construction -------------------------------------------------------------
    @classmethod
    def synthetic(cls, key: Any, n: int = 512, d: int = 16, *,
                  spectrum: tuple[float, float] | tuple[str, float] | Sequence[float] = (0.1, 1.0),
                  noise_std: float = 0.5, rotate: bool = True,
                  exact_spectrum: bool = True) -> LinearRegression:
        """Gaussian inputs with a prescribed Hessian spectrum and a noisy linear teacher.

        Args:
            key: a JAX PRNG key (typed or raw).
            n: number of examples N >= 1.
            d: dimension d >= 1.
            spectrum: the eigenvalues h_1 >= ... >= h_d of H = XᵀX/N. Either ``(lo, hi)``, a
                geometric range from hi down to lo; ``("power", p)`` or
                ``("power", p, top)``, the power law ``h_i = top · i^(−p)`` used for
                anomalous diffusion (theory.md §6); or an explicit sequence of d positive values.
            noise_std: standard deviation of the label noise added to the teacher's outputs;
                the loss at the minimiser is then about noise_std²/2 (σ² = 2L(θ*) ≈ noise_std²).
            rotate: rotate the eigenbasis by a random orthogonal matrix (otherwise H is
                diagonal in the coordinate basis).
            exact_spectrum: when n >= d, whiten the Gaussian inputs so that H has exactly the
                prescribed eigenvalues; otherwise they are only the population spectrum.
        """
        n = _checks.integer("n", n, low=1)
        d = _checks.integer("d", d, low=1)
        noise_std = _checks.finite_float("noise_std", noise_std, low=0.0)
        h = spectrum_values(spectrum, d)
        seed = np.asarray(jax.random.key_data(_as_key(key))).ravel()
        rng = np.random.default_rng(seed.astype(np.uint64))
        Z = rng.standard_normal((n, d))
        if exact_spectrum and n >= d:
            # Whiten so that ZᵀZ/N = I exactly: H then has exactly the eigenvalues h.
            evals, evecs = np.linalg.eigh(Z.T @ Z / n)
            Z = Z @ evecs @ np.diag(evals ** -0.5) @ evecs.T
        basis = _random_orthogonal(rng, d) if rotate else np.eye(d)
        X = Z @ np.diag(np.sqrt(h)) @ basis.T
        teacher = rng.standard_normal(d)
        y = X @ teacher + noise_std * rng.standard_normal(n)
        return cls(X, y)

    # --- sizes --------------------------------------------------------------------
    @property
    def n_examples(self) -> int:
        return int(self.X.shape[0])

    @property
    def dim(self) -> int:
        return int(self.X.shape[1])

    # --- losses and gradients (jit/vmap friendly) -----------------------------------
    def residuals(self, theta: Array) -> Array:
        return self.X @ theta - self.y

    def loss(self, theta: Array) -> Array:
        """``L(θ) = (1/2N) ‖Xθ − y‖²``."""
        r = self.residuals(theta)
        return 0.5 * jnp.mean(r * r)

    def gradient(self, theta: Array) -> Array:
        """``∇L(θ) = Xᵀ(Xθ − y)/N``."""
        return self.X.T @ self.residuals(theta) / self.n_examples

    def example_losses(self, theta: Array, idx: Array) -> Array:
        """ℓ_i = ½ (x_iᵀθ − y_i)²."""
        r = self.X[idx] @ theta - self.y[idx]
        return 0.5 * r * r

    def minibatch_gradient(self, key: Array, theta: Array, batch: Array | None = None) -> Array:
        """Mean gradient over the examples indexed by ``batch`` (S,); ``key`` is unused."""
        del key
        if batch is None:
            return self.gradient(theta)
        Xb = self.X[batch]
        return Xb.T @ (Xb @ theta - self.y[batch]) / batch.shape[0]

    def minibatch_gradients(self, theta: Array, batch: Array) -> Array:
        """:meth:`minibatch_gradient` of many trajectories at once: θ (T, d), batch (T, S)
        with entries in [0, N) (as the samplers draw them).

        The arithmetic of vmapping :meth:`minibatch_gradient` (the same numbers); the rows
        are gathered without index wrapping or clamping (~7% of a step). The SGD kernel
        calls it on tiles of trajectories small enough that the gathered rows (T, S, d) are
        used by both products while still in cache.
        """
        at = batch.astype(jnp.uint32)
        Xb = self.X.at[at].get(mode="promise_in_bounds")                  # (T, S, d)
        yb = self.y.at[at].get(mode="promise_in_bounds")
        r = jnp.einsum("tsd,td->ts", Xb, theta) - yb
        return jnp.einsum("tsd,ts->td", Xb, r) / batch.shape[1]

    def per_example_gradients(self, theta: Array, idx: Array | None = None) -> Array:
        """Rows ``x_i r_i`` (N, d) (or the rows ``idx``)."""
        if idx is None:
            return self.X * self.residuals(theta)[:, None]
        Xi = self.X[idx]
        return Xi * (Xi @ theta - self.y[idx])[:, None]

    def noise_sample(self, theta: Array, z: Array, scale: Any = 1.0) -> Array:
        """``scale · Gᵀ(z − z̄)/√N`` with G's rows x_i r_i (theory.md §2), in closed form."""
        r = self.X @ theta - self.y
        zc = (z - jnp.mean(z)) * r
        return scale * (self.X.T @ zc) / jnp.sqrt(jnp.asarray(self.n_examples, theta.dtype))

    # --- exact quantities -----------------------------------------------------------
    def hessian(self) -> Array:
        """``H = XᵀX/N``."""
        return self.X.T @ self.X / self.n_examples

    def minimiser(self, weight_decay: float = 0.0) -> Array:
        """Minimiser of ``L_λ = L + (λ/2)‖θ‖²``: ``(H + λI)⁻¹ Xᵀy/N``.

        When ``H + λI`` is singular (N < d and λ = 0) the minimum-norm minimiser is returned.
        """
        return _leaf(self.minimiser64(weight_decay))

    def minimiser64(self, weight_decay: float = 0.0) -> np.ndarray:
        """:meth:`minimiser` in float64 from the float64 data (what the theory uses)."""
        lam = _checks.finite_float("weight_decay", weight_decay, low=0.0)
        X, y = self.numpy()
        n, d = X.shape
        if lam > 0:
            return np.linalg.solve(X.T @ X / n + lam * np.eye(d), X.T @ y / n)
        return np.linalg.lstsq(X, y, rcond=None)[0]

    def linear_drift(self, weight_decay: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(H + λI, μ) in float64: ∇L_λ(θ) = (H + λI)(θ − μ) exactly."""
        H = hessian64(self)
        return H + weight_decay * np.eye(self.dim), self.minimiser64(weight_decay)

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """The data as float64 numpy arrays: the values given, before any rounding to the
        simulation dtype (the theory is computed from these)."""
        return self.X64.array, self.y64.array

    def __repr__(self) -> str:
        return f"LinearRegression(N={self.n_examples}, d={self.dim}, dtype={self.X.dtype})"


class Quadratic(Problem):
    """Noisy quadratic model ``L(θ) = ½ (θ − θ*)ᵀ H (θ − θ*)`` with Gaussian gradient noise.

    Each SGD step sees ``g = H(θ − θ*) + ξ`` with ``ξ ~ N(0, noise_cov)`` drawn afresh:
    ``noise_cov`` is the per-step gradient-noise covariance (batch size and sampling mode
    are already folded into it and do not apply). The noise is additive, so the exact
    discrete theory has no multiplicative term.

    Args:
        hessian: symmetric positive semi-definite (d, d).
        noise_cov: symmetric positive semi-definite (d, d).
        minimiser: θ* (d,), default 0.
    """

    H: Array
    noise_cov_matrix: Array
    noise_factor: Array
    centre: Array
    H64: HostArray = eqx.field(static=True, repr=False)
    noise_cov64: HostArray = eqx.field(static=True, repr=False)
    centre64: HostArray = eqx.field(static=True, repr=False)

    def __init__(self, hessian: Any, noise_cov: Any, minimiser: Any = None):
        H = _checks.real_array("hessian", hessian, ndim=2)
        d = H.shape[0]
        _check_psd("hessian", H)
        C = _checks.real_array("noise_cov", noise_cov, shape=(d, d))
        _check_psd("noise_cov", C)
        mu = np.zeros(d) if minimiser is None else _checks.real_array("minimiser", minimiser,
                                                                        shape=(d,))
        evals, evecs = np.linalg.eigh(C)
        factor = evecs * np.sqrt(np.clip(evals, 0.0, None))  # factor @ factorᵀ = C
        self.H = _leaf(H)
        self.noise_cov_matrix = _leaf(C)
        self.noise_factor = _leaf(factor)
        self.centre = _leaf(mu)
        self.H64, self.noise_cov64, self.centre64 = HostArray(H), HostArray(C), HostArray(mu)

    @property
    def dim(self) -> int:
        return int(self.H.shape[0])

    def loss(self, theta: Array) -> Array:
        e = theta - self.centre
        return 0.5 * e @ (self.H @ e)

    def gradient(self, theta: Array) -> Array:
        return self.H @ (theta - self.centre)

    def minibatch_gradient(self, key: Array, theta: Array, batch: Any = None) -> Array:
        del batch
        z = jax.random.normal(key, (self.dim,), dtype=theta.dtype)
        return self.gradient(theta) + self.noise_factor @ z

    def hessian(self) -> Array:
        return self.H

    def minimiser(self, weight_decay: float = 0.0) -> Array:
        """``(H + λI)⁻¹ H θ*``; with λ = 0 and singular H, θ* itself."""
        return _leaf(self.minimiser64(weight_decay))

    def minimiser64(self, weight_decay: float = 0.0) -> np.ndarray:
        """:meth:`minimiser` in float64 (what the theory uses)."""
        lam = _checks.finite_float("weight_decay", weight_decay, low=0.0)
        H, mu = self.H64.array, self.centre64.array
        if lam == 0:
            return mu.copy()
        return np.linalg.solve(H + lam * np.eye(self.dim), H @ mu)

    def linear_drift(self, weight_decay: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(H + λI, μ) in float64: ∇L_λ(θ) = (H + λI)(θ − μ) exactly."""
        H = self.H64.array
        return H + weight_decay * np.eye(self.dim), self.minimiser64(weight_decay)

    def noise_covariance(self, theta: Array | None = None) -> Array:
        """The per-step gradient-noise covariance (constant)."""
        return self.noise_cov_matrix

    def noise_covariance64(self) -> np.ndarray:
        """:meth:`noise_covariance` in float64."""
        return self.noise_cov64.array

    def __repr__(self) -> str:
        return f"Quadratic(d={self.dim}, dtype={self.H.dtype})"


def hessian64(prob: LinearRegression | Quadratic) -> np.ndarray:
    """The Hessian in float64 from the float64 data (``prob.hessian()`` computes in the
    data's dtype, float32 by default — not precise enough for theory)."""
    if isinstance(prob, LinearRegression):
        X, _ = prob.numpy()
        return X.T @ X / X.shape[0]
    if isinstance(prob, Quadratic):
        return prob.H64.array
    if isinstance(prob, Problem):
        return np.asarray(prob.hessian(), np.float64)
    raise TypeError(f"expected a limitdyn problem, got {type(prob).__name__}")


def _check_psd(name: str, A: np.ndarray) -> None:
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be square, got shape {A.shape}")
    scale = max(1.0, float(np.max(np.abs(A))))
    if not np.allclose(A, A.T, atol=1e-10 * scale, rtol=0):
        raise ValueError(f"{name} must be symmetric")
    low = float(np.linalg.eigvalsh(A)[0])
    if low < -1e-10 * scale:
        raise ValueError(f"{name} must be positive semi-definite; smallest eigenvalue {low:.3g}")


def spectrum_values(spectrum: Any, d: int) -> np.ndarray:
    """Eigenvalues (descending) described by a ``spectrum`` argument of ``synthetic``."""
    if isinstance(spectrum, tuple | list) and len(spectrum) >= 2 and spectrum[0] == "power":
        if len(spectrum) not in (2, 3):
            raise ValueError("spectrum=('power', p[, top]) takes an exponent p and optional top")
        p = _checks.finite_float("spectrum power p", spectrum[1], low=0.0)
        top = _checks.finite_float("spectrum top", spectrum[2] if len(spectrum) == 3 else 1.0,
                                   low=0.0, low_open=True)
        return top * np.arange(1, d + 1, dtype=np.float64) ** (-p)
    if isinstance(spectrum, tuple) and len(spectrum) == 2 and not isinstance(spectrum[0], str):
        lo = _checks.finite_float("spectrum lo", spectrum[0], low=0.0, low_open=True)
        hi = _checks.finite_float("spectrum hi", spectrum[1], low=lo)
        return np.geomspace(hi, lo, d) if d > 1 else np.array([hi])
    if isinstance(spectrum, str):
        raise ValueError("spectrum must be (lo, hi), ('power', p) or d eigenvalues; "
                         f"got {spectrum!r}")
    h = _checks.real_array("spectrum", spectrum, shape=(d,))
    if np.any(h <= 0):
        raise ValueError("spectrum eigenvalues must all be > 0")
    return np.sort(h)[::-1]


def _random_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _as_key(key: Any) -> Array:
    """Accept typed keys and raw uint32 keys; return a typed key."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single PRNG key, got a key array of shape {key.shape}")
        return key
    try:
        arr = np.asarray(key)
    except Exception:
        arr = None
    if arr is None or arr.dtype != np.uint32 or arr.ndim != 1:
        raise TypeError("key must be a JAX PRNG key, e.g. jax.random.key(0); "
                        f"got {type(key).__name__}")
    return jax.random.wrap_key_data(jnp.asarray(arr))
