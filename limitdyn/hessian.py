"""Matrix-free Hessian tools on parameter pytrees (theory.md §7).

Every function takes a loss ``loss_fn(params, *args) -> scalar`` and the point ``params``
(any pytree of arrays, e.g. flax parameters); ``args`` are traced data (a batch), so one
compiled function serves every batch of the same shape. The Hessian is never formed:

* :func:`hvp` — Hessian-vector product, forward-over-reverse (``jax.jvp`` of ``jax.grad``;
  Pearlmutter 1994), one gradient's cost times ~2;
* :func:`power_iteration` — the eigenvalue of largest *magnitude* and its vector;
* :func:`lanczos` — the top-k *algebraic* eigenpairs by Lanczos with full
  reorthogonalisation (Golub & Van Loan §10.1; reorthogonalised twice, "twice is enough");
* :func:`hutchinson_trace` — tr H = E[zᵀHz] for Rademacher z (Hutchinson 1990), with its
  standard error;
* :func:`sharpness` — λᴴ = the largest algebraic eigenvalue (Lanczos, k = 1);
* :func:`dense_hessian` — the full (P, P) matrix by ``jax.hessian``, for checks on small models.

The public functions check their arguments on the host (``TypeError``/``ValueError``, one
line) and then call a jitted kernel whose static arguments are the loss function and the
iteration counts; the ``*_impl`` kernels are plain traceable functions for use inside a
user's own ``jit``/``vmap``/``scan`` (the training loop of :mod:`limitdyn.nn` calls them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _checks

PyTree = Any
LossFn = Callable[..., jax.Array]

__all__ = ["Eig", "Trace", "dense_hessian", "hutchinson_trace", "hvp", "lanczos",
           "power_iteration", "sharpness"]


class Eig(NamedTuple):
    """Eigenpairs. ``values`` (k,) in decreasing order (algebraic for Lanczos; the single
    largest-magnitude value, shape (1,), for power iteration); ``vectors`` a pytree shaped like
    ``params`` with a leading axis k (unit norm over the whole pytree); ``residuals`` (k,) the
    norms ‖Hq − λq‖ (Lanczos: the Ritz bound |β_m s_{m,i}|; power iteration: computed)."""

    values: jax.Array
    vectors: PyTree
    residuals: jax.Array


class Trace(NamedTuple):
    """Hutchinson estimate of tr H: ``estimate`` (mean of zᵀHz), ``stderr`` (sample standard
    deviation / √n), ``n_samples``."""

    estimate: jax.Array
    stderr: jax.Array
    n_samples: int


# --- kernels (traceable; no checks) -----------------------------------------------------------

def hvp_impl(loss_fn: LossFn, params: PyTree, vector: PyTree, *args) -> PyTree:
    """H(params) · vector, forward-over-reverse: d/dε ∇L(params + ε vector) at ε = 0."""
    return jax.jvp(lambda p: jax.grad(loss_fn)(p, *args), (params,), (vector,))[1]


def _flat_hvp(loss_fn: LossFn, params: PyTree, args: tuple):
    """The Hessian as a map on flat vectors, and the unravel function."""
    _, unravel = ravel_pytree(params)

    def mv(x: jax.Array) -> jax.Array:
        return ravel_pytree(hvp_impl(loss_fn, params, unravel(x.astype(_dtype(params))),
                                     *args))[0]

    return mv, unravel


def _dtype(params: PyTree):
    return ravel_pytree(params)[0].dtype


def _start(key: jax.Array, n: int, dtype, v0: jax.Array | None) -> jax.Array:
    x = jax.random.normal(key, (n,), dtype) if v0 is None else v0.astype(dtype)
    return x / jnp.linalg.norm(x)


def power_iteration_impl(loss_fn: LossFn, n_iter: int, params: PyTree, args: tuple,
                         key: jax.Array, v0: jax.Array | None = None) -> Eig:
    """``n_iter`` steps of q ← Hq/‖Hq‖; the eigenvalue is the Rayleigh quotient qᵀHq."""
    mv, unravel = _flat_hvp(loss_fn, params, args)
    flat = ravel_pytree(params)[0]
    q = _start(key, flat.size, flat.dtype, v0)

    def body(_, q):
        w = mv(q)
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(flat.dtype).tiny)

    q = jax.lax.fori_loop(0, n_iter, body, q)
    w = mv(q)
    lam = q @ w
    res = jnp.linalg.norm(w - lam * q)
    return Eig(lam[None], jax.tree.map(lambda a: a[None], unravel(q)), res[None])


def lanczos_impl(loss_fn: LossFn, n_iter: int, k: int, params: PyTree, args: tuple,
                 key: jax.Array, v0: jax.Array | None = None) -> Eig:
    """Lanczos with full reorthogonalisation: top-k algebraic Ritz pairs of an m-step run.

    Recurrence Hq_j = β_{j−1}q_{j−1} + α_j q_j + β_j q_{j+1}; every new vector is
    orthogonalised twice against all previous ones (classical Gram–Schmidt, twice), so the
    Ritz values do not repeat ("ghosts"). On breakdown (β_j ≈ 0: an invariant subspace) the
    next vector is a fresh random vector orthogonal to the basis and β_j is set to 0, so the
    run still returns m Ritz values of a block-diagonal T.
    """
    mv, unravel = _flat_hvp(loss_fn, params, args)
    flat = ravel_pytree(params)[0]
    n, dtype = flat.size, flat.dtype
    m = n_iter
    eps = jnp.finfo(dtype).eps
    key0, key_restart = jax.random.split(key)
    basis = jnp.zeros((m + 1, n), dtype).at[0].set(_start(key0, n, dtype, v0))

    def orth(w, basis):
        w = w - basis.T @ (basis @ w)
        return w - basis.T @ (basis @ w)

    def body(j, carry):
        basis, alpha, beta, scale = carry
        q = basis[j]
        w = mv(q)
        a = q @ w
        w = orth(w, basis)          # also removes α_j q_j and β_{j−1} q_{j−1}
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(a) + b)
        broke = b <= 100 * eps * scale
        r = orth(jax.random.normal(jax.random.fold_in(key_restart, j), (n,), dtype), basis)
        nxt = jnp.where(broke, r / jnp.linalg.norm(r), w / jnp.where(broke, 1.0, b))
        return (basis.at[j + 1].set(nxt), alpha.at[j].set(a),
                beta.at[j].set(jnp.where(broke, 0.0, b)), scale)

    carry = (basis, jnp.zeros(m, dtype), jnp.zeros(m, dtype), jnp.zeros((), dtype))
    basis, alpha, beta, _ = jax.lax.fori_loop(0, m, body, carry)
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    theta, S = jnp.linalg.eigh(T)
    theta, S = theta[::-1][:k], S[:, ::-1][:, :k]
    vecs = S.T @ basis[:m]                                    # (k, n)
    # The true residuals ‖Hv − θv‖ (k more HVPs): the textbook bound |β_m S_mi| assumes exact
    # orthogonality and underflows to 0 for converged pairs in float32.
    residuals = jnp.linalg.norm(jax.vmap(mv)(vecs) - theta[:, None] * vecs, axis=1)
    return Eig(theta, jax.vmap(unravel)(vecs), residuals)


def hutchinson_impl(loss_fn: LossFn, n_samples: int, params: PyTree, args: tuple,
                    key: jax.Array, batch_size: int | None = None) -> Trace:
    """Mean and standard error of zᵀHz over ``n_samples`` Rademacher vectors z."""
    mv, _ = _flat_hvp(loss_fn, params, args)
    flat = ravel_pytree(params)[0]

    def one(k):
        z = jax.random.rademacher(k, (flat.size,), flat.dtype)
        return z @ mv(z)

    samples = jax.lax.map(one, jax.random.split(key, n_samples), batch_size=batch_size)
    se = jnp.std(samples, ddof=1) / jnp.sqrt(n_samples) if n_samples > 1 else jnp.nan
    return Trace(jnp.mean(samples), jnp.asarray(se, flat.dtype), n_samples)


_power_jit = jax.jit(power_iteration_impl, static_argnums=(0, 1))
_lanczos_jit = jax.jit(lanczos_impl, static_argnums=(0, 1, 2))
_hutchinson_jit = jax.jit(hutchinson_impl, static_argnums=(0, 1, 5))
_hvp_jit = jax.jit(hvp_impl, static_argnums=(0,))


# --- checked public functions -------------------------------------------------------------------

def _check(loss_fn: Any, params: Any) -> int:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, *args), got "
                        f"{type(loss_fn).__name__}")
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params must be a non-empty pytree of arrays")
    for leaf in leaves:
        if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"params leaves must be floating-point arrays, got "
                            f"{getattr(leaf, 'dtype', type(leaf).__name__)}")
    return sum(int(jnp.size(x)) for x in leaves)


def _check_key(key: Any) -> jax.Array:
    if isinstance(key, int) and not isinstance(key, bool):
        return jax.random.key(key)
    if not isinstance(key, jax.Array):
        raise TypeError(f"key must be a jax PRNG key or an int seed, got {type(key).__name__}")
    return key


def _check_v0(v0: Any, params: PyTree, n: int) -> jax.Array | None:
    if v0 is None:
        return None
    flat = v0 if isinstance(v0, jax.Array | np.ndarray) else ravel_pytree(v0)[0]
    if jnp.ndim(flat) != 1 or jnp.size(flat) != n:
        raise ValueError(f"v0 must be a pytree like params or a flat vector of {n} entries, "
                         f"got {jnp.shape(flat)}")
    return jnp.asarray(flat)


def hvp(loss_fn: LossFn, params: PyTree, vector: PyTree, *args) -> PyTree:
    """Hessian-vector product H(params)·vector of ``loss_fn(params, *args)``.

    Forward-over-reverse (``jax.jvp`` of ``jax.grad``), jitted; ``vector`` has the pytree
    structure of ``params``.
    """
    _check(loss_fn, params)
    if jax.tree.structure(vector) != jax.tree.structure(params):
        raise ValueError("vector must have the pytree structure of params")
    return _hvp_jit(loss_fn, params, vector, *args)


def power_iteration(loss_fn: LossFn, params: PyTree, *args, key: Any = 0, n_iter: int = 100,
                    v0: Any = None) -> Eig:
    """The eigenvalue of largest magnitude of H = ∇²loss_fn(params, *args) and its vector.

    ``n_iter`` fixed iterations (vmappable; the error of the Rayleigh quotient falls like
    (λ₂/λ₁)^{2·n_iter}); start from ``v0`` (a pytree like params or a flat vector, e.g. the
    previous step's eigenvector) or a random normal vector drawn from ``key``. Note: this is
    the largest *magnitude* — use :func:`lanczos` for the largest algebraic eigenvalue.
    """
    n = _check(loss_fn, params)
    n_iter = _checks.integer("n_iter", n_iter, low=1)
    return _power_jit(loss_fn, n_iter, params, args, _check_key(key), _check_v0(v0, params, n))


def lanczos(loss_fn: LossFn, params: PyTree, *args, key: Any = 0, k: int = 1,
            n_iter: int = 30, v0: Any = None) -> Eig:
    """The top-``k`` algebraic eigenpairs of H = ∇²loss_fn(params, *args) by Lanczos.

    ``n_iter`` = m Lanczos steps (k <= m <= P, the number of parameters; m = P gives the
    whole spectrum to roundoff), full reorthogonalisation; start vector ``v0`` or random from
    ``key``. Values in decreasing order; ``residuals`` bound each Ritz value's error
    (|λ − θ_i| <= residual_i).
    """
    n = _check(loss_fn, params)
    k = _checks.integer("k", k, low=1)
    n_iter = _checks.integer("n_iter", n_iter, low=1)
    if not k <= n_iter <= n:
        raise ValueError(f"lanczos needs k <= n_iter <= number of parameters ({n}), got "
                         f"k={k}, n_iter={n_iter}")
    return _lanczos_jit(loss_fn, n_iter, k, params, args, _check_key(key),
                        _check_v0(v0, params, n))


def sharpness(loss_fn: LossFn, params: PyTree, *args, key: Any = 0, n_iter: int = 30,
              v0: Any = None) -> jax.Array:
    """Sharpness λᴴ: the largest algebraic Hessian eigenvalue (Lanczos, k = 1; theory.md §7)."""
    n = _check(loss_fn, params)
    n_iter = min(_checks.integer("n_iter", n_iter, low=1), n)
    return lanczos(loss_fn, params, *args, key=key, k=1, n_iter=n_iter, v0=v0).values[0]


def hutchinson_trace(loss_fn: LossFn, params: PyTree, *args, key: Any = 0,
                     n_samples: int = 100, batch_size: int | None = None) -> Trace:
    """Hutchinson's unbiased estimate of tr H with Rademacher probes, and its standard error.

    ``batch_size`` probes are evaluated at once (``lax.map``; default: one at a time).
    """
    _check(loss_fn, params)
    n_samples = _checks.integer("n_samples", n_samples, low=2)
    if batch_size is not None:
        batch_size = _checks.integer("batch_size", batch_size, low=1, high=n_samples)
    est = _hutchinson_jit(loss_fn, n_samples, params, args, _check_key(key), batch_size)
    return Trace(est.estimate, est.stderr, n_samples)


def dense_hessian(loss_fn: LossFn, params: PyTree, *args) -> jax.Array:
    """The dense (P, P) Hessian in the order of ``ravel_pytree(params)`` (small models only)."""
    n = _check(loss_fn, params)
    if n > 20000:
        raise ValueError(f"dense_hessian would build a {n}×{n} matrix; use hvp/lanczos")
    flat, unravel = ravel_pytree(params)
    return _dense_jit(loss_fn, flat, unravel, args)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _dense_jit(loss_fn, flat, unravel, args):
    return jax.hessian(lambda x: loss_fn(unravel(x), *args))(flat)
