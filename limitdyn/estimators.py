"""Streaming ensemble estimators, accumulated inside the kernel at chosen steps.

Two kinds of statistics, both without storing trajectories (memory is independent of the
number of steps):

* **per recorded step** — over the n alive trajectories at that step: the mean and
  covariance of x = (θ, v), the fourth moments ``mean((y_i y_j)²)`` of the centred
  y = x − mean (for the covariance's standard error ``√((m4_ij − C_ij²)/n)``), and the
  mean and variance of the global displacement ‖θ_k − θ_0‖² and of η²‖v_k‖².
* **window averages** — at every window step, the trajectories are split into G fixed
  groups by global index and each group accumulates Σ y yᵀ (centred at that step's
  ensemble mean and rescaled by √(n/(n−1)) so each term is unbiased), Σ x and Σ η²‖v‖².
  Groups are independent, so the spread of the G group averages gives standard errors
  that account for the correlation of a trajectory with itself over time (batch means).
  Each window step k is paired with step k + 1 for the lag-one covariance
  Σ y_k y_{k+1}ᵀ (phase-space rotation, theory.md §4). The per-group sums are returned
  too, so the batch-means error of any function of them can be computed afterwards.

Non-finite (diverged) trajectories are excluded from the step they diverge: they enter
no sum and no count.

With ``covariance=False`` (networks: a 2d × 2d matrix per recorded step would not fit) the
second-moment sums are skipped; means, displacements and their errors remain.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Accumulators(NamedTuple):
    count: jax.Array         # (T,) alive trajectories at each recorded step
    mean: jax.Array          # (T, D)
    cov: jax.Array           # (T, D, D)
    fourth: jax.Array        # (T, D, D) mean of (y_i y_j)^2
    disp_mean: jax.Array     # (T,)
    disp_var: jax.Array      # (T,)
    local_mean: jax.Array    # (T,)
    local_var: jax.Array     # (T,)
    win_count: jax.Array     # (G,) trajectory-samples per group
    win_sum: jax.Array       # (G, D)
    win_outer: jax.Array     # (G, D, D)
    win_local: jax.Array     # (G,)
    lag_count: jax.Array     # (G,) pairs (k, k+1) per group
    lag_outer: jax.Array     # (G, D, D) Σ y_k y_{k+1}ᵀ


# written once, at their recorded step's slot (axis 0), and never again
PER_RECORD = ("count", "mean", "cov", "fourth", "disp_mean", "disp_var", "local_mean",
              "local_var")
# sums over the window, updated at every window step
PER_GROUP = ("win_count", "win_sum", "win_outer", "win_local", "lag_count", "lag_outer")
assert set(PER_RECORD + PER_GROUP) == set(Accumulators._fields)


def empty(n_record: int, n_groups: int, dim2: int, dtype,
          covariance: bool = True) -> Accumulators:
    z = jnp.zeros
    m = dim2 if covariance else 0
    return Accumulators(
        count=z((n_record,), dtype), mean=z((n_record, dim2), dtype),
        cov=z((n_record, m, m), dtype), fourth=z((n_record, m, m), dtype),
        disp_mean=z((n_record,), dtype), disp_var=z((n_record,), dtype),
        local_mean=z((n_record,), dtype), local_var=z((n_record,), dtype),
        win_count=z((n_groups,), dtype), win_sum=z((n_groups, dim2), dtype),
        win_outer=z((n_groups, m, m), dtype), win_local=z((n_groups,), dtype),
        lag_count=z((n_groups,), dtype), lag_outer=z((n_groups, m, m), dtype))


def _centred(x: jax.Array, alive: jax.Array):
    """Alive count n, alive mean, and rows x − mean (zero for dead rows).

    Centred through a shift by one alive row (the shifted-data algorithm): less
    cancellation, and identical rows (a deterministic start) give exactly zero.
    """
    mask = alive[:, None]
    n = jnp.sum(alive).astype(x.dtype)
    shift = x[jnp.argmax(alive)]
    shifted = jnp.where(mask, x - shift[None, :], 0)
    offset = jnp.sum(shifted, axis=0) / jnp.maximum(n, 1)
    return n, shift + offset, jnp.where(mask, shifted - offset[None, :], 0)


def _mean_var(values: jax.Array, alive: jax.Array, n: jax.Array):
    m = jnp.sum(jnp.where(alive, values, 0)) / jnp.maximum(n, 1)
    var = jnp.sum(jnp.where(alive, (values - m) ** 2, 0)) / jnp.maximum(n - 1, 1)
    return m, var


def record(acc: Accumulators, slot: jax.Array, x: jax.Array, disp: jax.Array,
           local: jax.Array, alive: jax.Array) -> Accumulators:
    """Store the step's ensemble statistics in row ``slot``: of the phase-space points x
    (K, D), the global displacements ``disp`` (K,) and the local ones ``local`` (K,)."""
    n, mean, y = _centred(x, alive)
    disp_mean, disp_var = _mean_var(disp, alive, n)
    local_mean, local_var = _mean_var(local, alive, n)
    acc = acc._replace(
        count=acc.count.at[slot].set(n), mean=acc.mean.at[slot].set(mean),
        disp_mean=acc.disp_mean.at[slot].set(disp_mean),
        disp_var=acc.disp_var.at[slot].set(disp_var),
        local_mean=acc.local_mean.at[slot].set(local_mean),
        local_var=acc.local_var.at[slot].set(local_var))
    if acc.cov.shape[-1]:
        y2 = y * y
        acc = acc._replace(cov=acc.cov.at[slot].set(y.T @ y / jnp.maximum(n - 1, 1)),
                           fourth=acc.fourth.at[slot].set(y2.T @ y2 / jnp.maximum(n, 1)))
    return acc


def _grouper(n_traj: int, n_groups: int):
    """Sum over G fixed groups of consecutive trajectories (zero-padded to equal size)."""
    per_group = -(-n_traj // n_groups)
    pad = n_groups * per_group - n_traj

    def grouped(a):
        return jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(
            (n_groups, per_group, *a.shape[1:]))

    return grouped


def window_anchor(x: jax.Array, alive: jax.Array) -> jax.Array:
    """Centred, unbiasedly rescaled rows y_k (zero for dead rows): the lag pair's first half."""
    n, _, y = _centred(x, alive)
    return y * jnp.sqrt(n / jnp.maximum(n - 1, 1))


def accumulate_lag(acc: Accumulators, anchor: jax.Array, x: jax.Array,
                   alive: jax.Array) -> Accumulators:
    """Add the lag-one products y_k y_{k+1}ᵀ of the trajectories alive at k + 1.

    Gives the stationary lag covariance E[x_k x_{k+1}ᵀ] − m mᵀ, whose antisymmetric part
    in a Hessian eigenplane is the phase-space angular momentum (theory.md §4).
    """
    grouped = _grouper(x.shape[0], acc.lag_count.shape[0])
    acc = acc._replace(lag_count=acc.lag_count + grouped(alive.astype(x.dtype)).sum(1))
    if not acc.lag_outer.shape[-1]:        # no second moments: ``anchor`` is not kept
        return acc
    y = window_anchor(x, alive)
    return acc._replace(
        lag_outer=acc.lag_outer + jnp.einsum("gpi,gpj->gij", grouped(anchor), grouped(y)))


def accumulate_window(acc: Accumulators, x: jax.Array, local: jax.Array,
                      alive: jax.Array) -> Accumulators:
    """Add one window step (points x (K, D), local displacements (K,)) to the group sums."""
    n_groups = acc.win_count.shape[0]
    grouped = _grouper(x.shape[0], n_groups)
    w = alive.astype(x.dtype)
    local = jnp.where(alive, local, 0)
    acc = acc._replace(
        win_count=acc.win_count + grouped(w).sum(1),
        win_sum=acc.win_sum + grouped(jnp.where(alive[:, None], x, 0)).sum(1),
        win_local=acc.win_local + grouped(local).sum(1))
    if not acc.win_outer.shape[-1]:
        return acc
    yg = grouped(window_anchor(x, alive))
    return acc._replace(win_outer=acc.win_outer + jnp.einsum("gpi,gpj->gij", yg, yg))


def _group_stats(sums: np.ndarray, counts: np.ndarray):
    """Pooled mean of group sums and its batch-means standard error."""
    ok = counts > 0
    pooled = sums[ok].sum(0) / counts[ok].sum() if ok.any() else np.full(sums.shape[1:], np.nan)
    if ok.sum() < 2:
        return pooled, np.full(sums.shape[1:], np.nan)
    per_group = sums[ok] / counts[ok].reshape((-1,) + (1,) * (sums.ndim - 1))
    return pooled, per_group.std(axis=0, ddof=1) / np.sqrt(ok.sum())


def finalize(acc: Accumulators, trajectories: Any = None) -> dict[str, Any]:
    """Host-side float64 estimates and standard errors from the accumulators (and the kept
    per-trajectory states, (K, T, D), returned as (T, K, D))."""
    a = {k: np.array(v, dtype=np.float64) for k, v in acc._asdict().items()}   # writable copies
    covariance = a["cov"].shape[-1] > 0
    n = a["count"]
    nn = np.maximum(n, 1)
    empty_rows = n == 0   # every trajectory diverged: no estimate, not a zero
    for name in ("mean", "cov", "fourth", "disp_mean", "disp_var", "local_mean", "local_var"):
        a[name][empty_rows] = np.nan
    win_mean, se_win_mean = _group_stats(a["win_sum"], a["win_count"])
    win_local, se_win_local = _group_stats(a["win_local"], a["win_count"])
    if covariance:
        cov = a["cov"]
        diag = np.diagonal(cov, axis1=-2, axis2=-1)
        se_cov = np.sqrt(np.clip(a["fourth"] - (cov * (n - 1)[:, None, None]
                                                / nn[:, None, None]) ** 2,
                                 0, None) / nn[:, None, None])
        win_cov, se_win_cov = _group_stats(a["win_outer"], a["win_count"])
        lag_cov, se_lag_cov = _group_stats(a["lag_outer"], a["lag_count"])
        groups = {"count": a["win_count"], "sum": a["win_sum"], "outer": a["win_outer"],
                  "local": a["win_local"], "lag_count": a["lag_count"],
                  "lag_outer": a["lag_outer"]}
        se_mean = np.sqrt(np.clip(diag, 0, None) / nn[:, None])
    else:
        # no second moments: the mean's error from the per-coordinate spread is not kept
        cov = se_cov = win_cov = se_win_cov = lag_cov = se_lag_cov = groups = None
        se_mean = None
    kept = None
    if trajectories is not None:
        kept = np.swapaxes(np.asarray(trajectories, np.float64), 0, 1)
    return dict(
        n_alive=n.astype(np.int64), mean=a["mean"], cov=cov,
        displacement=a["disp_mean"], local_displacement=a["local_mean"],
        stationary_mean=win_mean, stationary_cov=win_cov,
        stationary_local_displacement=float(win_local), stationary_lag_cov=lag_cov,
        window_groups=groups, trajectories=kept,
        se_mean=se_mean, se_cov=se_cov,
        se_displacement=np.sqrt(a["disp_var"] / nn),
        se_local_displacement=np.sqrt(a["local_var"] / nn),
        se_stationary_mean=se_win_mean, se_stationary_cov=se_win_cov,
        se_stationary_local_displacement=float(se_win_local), se_stationary_lag_cov=se_lag_cov)
