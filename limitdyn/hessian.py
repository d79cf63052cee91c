"""Matrix-free Hessian tools on parameter pytrees (theory.md §7).

Every function takes a loss ``loss_fn(params, *args) -> scalar`` and the point ``params``
(any pytree of arrays, e.g. flax parameters); ``args`` are traced data (a batch), so one
compiled function serves every batch of the same shape. The Hessian is never formed:

* :func:`hvp` — Hessian-vector product, forward-over-reverse (``jax.jvp`` of ``jax.grad``;
  Pearlmutter 1994), one gradient's cost times ~2;
* :func:`power_iteration` — the eigenvalue of largest *magnitude* and its vector;
* :func:`lanczos` — the top-k *algebraic* eigenpairs (negative ones included) by Lanczos
  with full reorthogonalisation (Golub & Van Loan §10.1; reorthogonalised twice, "twice is
  enough"), restarted with locking and deflation until every one of the k Ritz pairs has
  converged to a stated residual tolerance — so repeated eigenvalues appear with their
  multiplicity — or warning (:class:`LanczosWarning`) which pairs did not;
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
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _checks

PyTree = Any
LossFn = Callable[..., jax.Array]

__all__ = ["Eig", "LanczosWarning", "Trace", "dense_hessian", "hutchinson_trace", "hvp",
           "lanczos", "power_iteration", "sharpness"]


class LanczosWarning(UserWarning):
    """:func:`lanczos` stopped before every requested Ritz pair converged."""


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
    """Lanczos with full reorthogonalisation: top-k algebraic Ritz pairs of *one* m-step run.

    A fixed amount of work, for use inside a jitted/vmapped loop (warm-started sharpness
    tracking). It neither restarts nor checks convergence, and one Krylov space holds one
    direction of each eigenspace, so a repeated eigenvalue may appear once; the public
    :func:`lanczos` restarts and locks until the pairs converge.

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


def _thick_impl(loss_fn: LossFn, m: int, params: PyTree, args: tuple, key: jax.Array,
                keep: jax.Array, keep_h: jax.Array, n_keep: jax.Array, expand: jax.Array,
                locked: jax.Array):
    """One cycle of thick-restarted Lanczos in the complement of ``locked``.

    The basis starts with the ``n_keep`` kept Ritz vectors (rows of ``keep``, their images
    H·y in ``keep_h``) and the expansion vector, and grows by Lanczos steps with full
    reorthogonalisation (against the basis and the rows of ``locked``; zero rows count for
    nothing) to m vectors. Rayleigh–Ritz on the whole basis (T = VᵀHV from the stored
    images) gives m Ritz pairs in decreasing order, their images, their residual norms
    ‖Hy − θy‖, and the next expansion vector (the (m+1)-th basis vector).
    """
    mv, _ = _flat_hvp(loss_fn, params, args)
    flat = ravel_pytree(params)[0]
    n, dtype = flat.size, flat.dtype
    eps, tiny = jnp.finfo(dtype).eps, jnp.finfo(dtype).tiny

    def mm(a, b):           # full precision (no TF32) for the basis algebra
        return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)

    def project(w, basis):
        for _ in range(2):                          # twice is enough
            w = w - mm(locked.T, mm(locked, w))
            w = w - mm(basis.T, mm(basis, w))
        return w

    def put(buf, row, i):
        return jax.lax.dynamic_update_slice(buf, row[None].astype(buf.dtype),
                                            (jnp.asarray(i, jnp.int32), jnp.int32(0)))

    rows = jnp.arange(m + 1)[:, None]
    basis = jnp.zeros((m + 1, n), dtype).at[:m].set(jnp.where(rows[:m] < n_keep, keep, 0))
    images = jnp.where(rows[:m] < n_keep, keep_h, 0).astype(dtype)
    q = project(expand.astype(dtype), basis)
    fresh = project(jax.random.normal(jax.random.fold_in(key, m + 1), (n,), dtype), basis)
    q = jnp.where(jnp.linalg.norm(q) > 100 * eps, q, fresh)
    basis = put(basis, q / jnp.maximum(jnp.linalg.norm(q), tiny), n_keep)

    def body(j, carry):
        basis, images, scale = carry
        w = mv(basis[j])
        images = put(images, w, j)
        a = basis[j] @ w
        w = project(w, basis)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(a) + b)
        broke = b <= 100 * eps * scale
        r = project(jax.random.normal(jax.random.fold_in(key, j), (n,), dtype), basis)
        nxt = jnp.where(broke, r / jnp.maximum(jnp.linalg.norm(r), tiny),
                        w / jnp.where(broke, 1.0, b))
        return put(basis, nxt, j + 1), images, scale

    basis, images, _ = jax.lax.fori_loop(n_keep, m, body,
                                         (basis, images, jnp.zeros((), dtype)))
    V = basis[:m]
    T = mm(V, images.T)
    theta, S = jnp.linalg.eigh((T + T.T) / 2)
    theta, S = theta[::-1], S[:, ::-1]
    Y, HY = mm(S.T, V), mm(S.T, images)
    residuals = jnp.linalg.norm(HY - theta[:, None] * Y, axis=1)
    return theta, Y, HY, residuals, basis[m]


def _true_residuals_impl(loss_fn: LossFn, params: PyTree, args: tuple, vecs: jax.Array,
                         values: jax.Array) -> jax.Array:
    mv, _ = _flat_hvp(loss_fn, params, args)
    return jnp.linalg.norm(jax.vmap(mv)(vecs) - values[:, None] * vecs, axis=1)


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
_thick_jit = jax.jit(_thick_impl, static_argnums=(0, 1))
_residuals_jit = jax.jit(_true_residuals_impl, static_argnums=(0,))
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
            n_iter: int = 30, v0: Any = None, tol: float | None = None,
            max_restarts: int = 20) -> Eig:
    """The top-``k`` algebraic eigenpairs of H = ∇²loss_fn(params, *args) by restarted Lanczos.

    Each run is ``n_iter`` = m Lanczos steps (k <= m <= P, the number of parameters) with
    full reorthogonalisation, in the orthogonal complement of the pairs already *locked*.
    A Ritz pair is converged, and locked, when its true residual ‖Hq − θq‖ <= ``tol`` · ‖H‖
    (‖H‖ estimated by the largest |Ritz value| seen; ``tol`` defaults to √eps of the
    parameters' dtype: 1.5e-8 in float64, 3.5e-4 in float32); then |λ − θ| <= residual for
    an eigenvalue λ. The next run starts from the unconverged Ritz vectors plus a fresh
    random vector, so a second copy of a repeated eigenvalue — invisible to a single Krylov
    space — is found in the complement of the first. Once k pairs are locked, a run from a
    fresh random start in their complement checks that nothing above the k-th is left out.
    Negative eigenvalues (saddles) are found like any other when they are among the top k.

    Stops after ``max_restarts`` restarts; if any of the k pairs has not converged by then,
    a :class:`LanczosWarning` names them with their residuals (raise ``n_iter`` or
    ``max_restarts``). The first run starts from ``v0`` (a pytree like params or a flat
    vector) or a random vector drawn from ``key``. Values in decreasing order; ``residuals``
    are the true residual norms, each bounding its value's error.
    """
    n = _check(loss_fn, params)
    k = _checks.integer("k", k, low=1)
    n_iter = _checks.integer("n_iter", n_iter, low=1)
    max_restarts = _checks.integer("max_restarts", max_restarts, low=0)
    if not k <= n_iter <= n:
        raise ValueError(f"lanczos needs k <= n_iter <= number of parameters ({n}), got "
                         f"k={k}, n_iter={n_iter}")
    dtype = _dtype(params)
    if tol is None:
        tol = float(np.sqrt(np.finfo(dtype).eps))
    elif (isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating))
          or not 0 < float(tol) < 1):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    tol = float(tol)
    key = _check_key(key)
    v0 = _check_v0(v0, params, n)
    return _restarted_lanczos(loss_fn, params, args, key, k, n_iter, v0, tol, max_restarts,
                              n, dtype)


def _restarted_lanczos(loss_fn, params, args, key, k, n_iter, v0, tol, max_restarts, n,
                       dtype) -> Eig:
    """Thick-restarted Lanczos with locking (see :func:`lanczos`)."""
    vals: list[float] = []                   # the locked pairs, in decreasing order
    vecs: list[jax.Array] = []
    scale = 0.0
    kept_y = kept_hy = None                  # Ritz vectors (and images) kept over a restart
    expand = v0.astype(dtype) if v0 is not None else None
    last = None
    converged = False
    for cycle in range(max_restarts + 1):
        sub = jax.random.fold_in(key, cycle)
        m = min(n_iter, n - len(vecs))       # the basis lives in the complement of the locked
        if m < 1:
            converged = True
            break
        if expand is None:                   # a fresh random start
            expand = jax.random.normal(jax.random.fold_in(sub, 1 << 20), (n,), dtype)
            kept_y = kept_hy = None
        n_keep = 0 if kept_y is None else min(kept_y.shape[0], m - 1)
        keep = jnp.zeros((m, n), dtype)
        keep_h = jnp.zeros((m, n), dtype)
        if n_keep:
            keep = keep.at[:n_keep].set(kept_y[:n_keep])
            keep_h = keep_h.at[:n_keep].set(kept_hy[:n_keep])
        locked = jnp.zeros((k, n), dtype)
        if vecs:
            locked = locked.at[:len(vecs)].set(jnp.stack(vecs))
        theta, Y, HY, rr, nxt = _thick_jit(loss_fn, m, params, args, sub, keep, keep_h,
                                           jnp.int32(n_keep), expand, locked)
        theta, rr = np.asarray(theta, np.float64), np.asarray(rr, np.float64)
        scale = max(scale, float(np.max(np.abs(theta), initial=0.0)),
                    max((abs(v) for v in vals), default=0.0))
        bound = tol * scale if scale > 0 else float(np.finfo(dtype).tiny)
        floor = vals[-1] if len(vals) == k else -np.inf
        accepted = [j for j in range(min(m, k)) if rr[j] <= bound and theta[j] > floor + bound]
        last = (theta, Y, rr, set(accepted))
        if len(vals) == k and not accepted and theta[0] <= floor + bound:
            converged = True     # nothing above the k-th locked value outside the locked ones
            break
        for j in accepted:
            vals.append(float(theta[j]))
            vecs.append(Y[j])
        order = sorted(range(len(vals)), key=lambda i: -vals[i])[:k]
        vals, vecs = [vals[i] for i in order], [vecs[i] for i in order]
        if len(vals) == k and accepted:
            expand = None        # all k locked: check their complement from a fresh start
            continue
        p = max(1, min(m // 2, max(2 * k, k + 5)))    # Ritz vectors kept over the restart
        rest = jnp.asarray([j for j in range(m) if j not in accepted][:p], jnp.int32)
        kept_y, kept_hy, expand = Y[rest], HY[rest], nxt
    unconverged = []
    if not converged:
        pool = [(vals[i], vecs[i], True) for i in range(len(vals))]
        if last is not None:     # the best unconverged pairs of the last cycle fill the rest
            theta, Y, rr, taken = last
            pool += [(float(theta[j]), Y[j], False) for j in range(len(theta)) if j not in taken]
        pool = sorted(pool, key=lambda t: -t[0])[:k]
        vals, vecs = [t[0] for t in pool], [t[1] for t in pool]
        unconverged = [i for i, t in enumerate(pool) if not t[2]]
    values = jnp.asarray(np.array(vals), dtype)
    stacked = jnp.stack(vecs).astype(dtype)
    residuals = _residuals_jit(loss_fn, params, args, stacked, values)
    if unconverged:
        rr = np.asarray(residuals)
        listed = ", ".join(f"#{i + 1} (θ={vals[i]:.6g}, residual {rr[i]:.2g})"
                           for i in unconverged[:6])
        hint = ("; on a GPU, TF32 matmuls limit float32 residuals to ~1e-3·‖H‖: set "
                "jax_default_matmul_precision='highest' or raise tol"
                if jax.default_backend() == "gpu" and dtype == jnp.float32 else "")
        warnings.warn(f"lanczos: {len(unconverged)} of the top-{k} Ritz pairs did not converge "
                      f"to a residual <= {tol:.2g}·‖H‖ (≈ {tol * scale:.2g}) after "
                      f"{max_restarts + 1} cycles of {n_iter} steps: {listed}; raise n_iter "
                      f"or max_restarts{hint}", LanczosWarning, stacklevel=3)
    _, unravel = ravel_pytree(params)
    return Eig(values, jax.vmap(unravel)(stacked), residuals)


def sharpness(loss_fn: LossFn, params: PyTree, *args, key: Any = 0, n_iter: int = 30,
              v0: Any = None) -> jax.Array:
    """Sharpness λᴴ: the largest algebraic Hessian eigenvalue (:func:`lanczos`, k = 1, to
    its residual tolerance; theory.md §7)."""
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
