"""Moments of SGD with momentum under random reshuffling (theory.md §9).

Sampling ``"reshuffle"`` (:func:`limitdyn.samplers.reshuffle`): every trajectory draws a
uniform permutation of the N examples at the steps k ≡ 0 (mod E), E = N // S, and step k
uses positions (k mod E)·S, …, (k mod E + 1)·S − 1 of it; the last N mod S examples of
each permutation are dropped. The **phase** of step k is j = k mod E (j = 0: the epoch
boundaries). Within an epoch the batches are disjoint, so their gradient noises are
anticorrelated; across epochs the permutations are independent, so the state at the
epoch boundaries is a Markov chain driven by i.i.d. random affine epoch maps. Its
stationary law is periodic in the phase, and its mean is not exactly the minimiser μ.

In deviation coordinates x = (θ − μ, v) one step with batch B is the affine map

    x' = M_B x − W ξ_B,   M_B = [[I − η(A_B + λI), ηβ I], [−(A_B + λI), β I]],  W = [ηI; I]

with A_B = (1/S) Σ_{i∈B} x_i x_iᵀ and ξ_B = (1/S) Σ_{i∈B} a_i, a_i = x_i r_i(μ) − ∇L(μ).
Writing A_B = H + Δ_B: e_i(u) = a_i + D_i u, D_i = x_i x_iᵀ − H, is example i's gradient
noise at θ = μ + u.

Two methods (``method=``):

* ``"exact"`` (§9.2): moments conditioned on the set U of examples already used in the
  epoch. U_j is uniform over the jS-subsets, and the batch B_j is uniform over the S-subsets
  of the complement and independent of x_j given U_j, so

      Z_{j+1}(U') = C((j+1)S, S)⁻¹ Σ_{B ⊂ U', |B| = S} M̃_B Z_j(U' ∖ B) M̃_Bᵀ

  for the augmented second moments Z = E[(x, 1)(x, 1)ᵀ | U] (M̃_B the affine map as a
  (2d+1)² matrix). One epoch is a linear map of Z_0; its fixed point is the stationary
  law, the level averages are the phases. Exact, multiplicative noise included; the cost
  grows like N·2^N (S = 1), so it is for N up to about 16–20.
* ``"stein"`` (§9.3): the cyclostationary (periodic) Stein recursion over the phases of
  an epoch, for realistic N. What it keeps:

  - exactly, the noise of the examples at the mean, e_i(E u_k), with its within-epoch
    correlation (κ within a step, −1/(N−1) between two steps of one epoch, 0 across
    epochs), at every order in η — for additive noise this is the whole answer;
  - exactly, the first order in the batch-Hessian fluctuation Δ_B: the third sampling
    moment E[ξ ξ Δ] (the tensor 𝒯, absent under iid sampling) in the covariance and the
    shift of the mean;
  - the second order in Δ_B by Gaussian pairing of the Δ's with their sampling covariance:
    the within-epoch anticorrelation of the multiplicative noise (O_k) and the response to
    it (B_k), from the two-time covariances of the Markov embedding z = (x, ā), ā the mean
    noise of the examples not yet used;
  - the third and higher orders by the iid closure κ𝒢(C_θθ) at every phase (resummed).

  What it drops: fourth cumulants of sampling without replacement and the pairings through
  (1/N) Σ_i D_i ⊗ a_i at second order (relative O(1/N) of that order), and the third order
  beyond the closure. Measured (theory.md §9.4): against the exact recursion at N = 16 the
  pooled error falls like η^1.5–1.9 (the θθ block like η); at N = 240 it is 0.02–0.13% for
  ηκ tr H = 0.02–0.16, where the iid theory is off by 8–16%. Cost O(E (N d² + d⁴)) per
  epoch (d⁴ → N d³ above d = 64): N = 240, d = 6: 0.1 s; N = 10⁵, d = 3, E = 100: 11 s.

``"auto"`` takes ``"exact"`` for N ≤ 16 when it costs under ~5·10⁹ flops, else ``"stein"``.
With E = 1 (S > N/2) reshuffling is iid sampling and ``"stein"`` is exact.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from .. import _checks
from ..hyper import Hyper
from ..problems import LinearRegression
from .discrete import Moments, UnstableError

METHODS = ("auto", "exact", "stein")
#: ``method="auto"`` takes the exact recursion below this many flops (a few seconds).
EXACT_AUTO_FLOPS = 5e9
#: ``method="exact"`` is refused above this many flops or examples.
EXACT_MAX_FLOPS = 5e11
EXACT_MAX_N = 24
#: ``method="auto"`` takes the exact recursion only for N up to this.
EXACT_AUTO_N = 16


@dataclasses.dataclass(frozen=True)
class ReshuffleStationary:
    """Stationary (periodic) law of (θ, v) under random reshuffling (theory.md §9).

    Attributes:
        method: ``"exact"`` (used-set recursion, §9.2) or ``"stein"`` (§9.3).
        epoch_steps: E = N // S, the period.
        mean: (2d,) mean of (θ, v) pooled over the phases, E_t[z].
        cov: (2d, 2d) pooled covariance E_t[z zᵀ] − E_t[z] E_t[z]ᵀ over the phases (what
            a long window average over every step measures).
        phase_mean: (E, 2d) mean at phase j (steps k ≡ j mod E; j = 0 the epoch starts).
        phase_cov: (E, 2d, 2d) covariance at phase j.
    """

    method: str
    epoch_steps: int
    mean: np.ndarray
    cov: np.ndarray
    phase_mean: np.ndarray
    phase_cov: np.ndarray

    @property
    def phase_average_cov(self) -> np.ndarray:
        """(1/E) Σ_j Cov at phase j: ``cov`` without the spread of the phase means — what a
        window average of per-step ensemble covariances (``Result.stationary_cov``) measures."""
        return self.phase_cov.mean(axis=0)


# --- problem data ------------------------------------------------------------------------

class _Data:
    """Float64 data of one (problem, hyperparameters) in deviation coordinates (§9.1)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, hp: Hyper, batch_size: int):
        self.X, self.y = X, y
        self.N, self.d = X.shape
        self.S = batch_size
        self.E = self.N // batch_size
        self.eta, self.beta, self.lam = hp.lr, hp.momentum, hp.weight_decay
        N, d, eta, beta = self.N, self.d, self.eta, self.beta
        eye = np.eye(d)
        self.H = X.T @ X / N
        Hp = self.H + self.lam * eye
        curv, U = np.linalg.eigh(Hp)
        if curv[0] <= 1e-12 * max(1.0, curv[-1]):
            raise ValueError(f"H + λI is singular (smallest eigenvalue {curv[0]:.3g}): the "
                             "stationary law is not unique; use weight_decay > 0")
        self.curvature, self.U = curv, U
        self.mu = U @ ((U.T @ (X.T @ y / N)) / curv)
        g = X * (X @ self.mu - y)[:, None]
        self.a = g - g.mean(axis=0)                 # a_i = e_i(0); Σ_i a_i = 0
        self.sigma_a = self.a.T @ self.a / N        # Σ(μ)
        self.Mbar = np.block([[eye - eta * Hp, eta * beta * eye], [-Hp, beta * eye]])
        self.W = np.vstack([eta * eye, eye])
        # κ and the cross-batch factor 1/(N−1) of sampling without replacement (§9.3)
        self.kappa = 0.0 if N == 1 else (N - batch_size) / (batch_size * (N - 1))
        self.cross = 0.0 if N == 1 else 1.0 / (N - 1)
        blocks = np.zeros((d, 2, 2))
        blocks[:, 0, 0], blocks[:, 0, 1] = 1 - eta * curv, eta * beta
        blocks[:, 1, 0], blocks[:, 1, 1] = -curv, beta
        self.blocks = blocks
        tr = blocks[:, 0, 0] + blocks[:, 1, 1]
        det = blocks[:, 0, 0] * blocks[:, 1, 1] - blocks[:, 0, 1] * blocks[:, 1, 0]
        disc = np.sqrt((tr * tr - 4 * det).astype(complex))
        self.mean_radius = float(np.max(np.maximum(np.abs((tr + disc) / 2),
                                                   np.abs((tr - disc) / 2))))

    # noise operators (theory.md §5, §9.3)
    def G(self, P: np.ndarray) -> np.ndarray:
        """𝒢(P) = (1/N) Σ_i D_i P D_i = (1/N) Σ_i x_i x_iᵀ (x_iᵀ P x_i) − H P H."""
        q = np.einsum("ij,ij->i", self.X @ P, self.X)
        return (self.X * q[:, None]).T @ self.X / self.N - self.H @ P @ self.H

    def T(self, Q: np.ndarray) -> np.ndarray:
        """𝒯(Q) = (1/N) Σ_i a_i (D_i Q a_i)ᵀ, the third-moment operator of §9.3."""
        w = np.einsum("ij,ij->i", self.X @ Q, self.a)
        return (self.a * w[:, None]).T @ self.X / self.N - self.sigma_a @ Q.T @ self.H

    def batch_maps(self, batches: np.ndarray) -> np.ndarray:
        """Augmented affine maps M̃_B, (nb, 2d+1, 2d+1), of the batches (nb, S)."""
        d, eta, beta = self.d, self.eta, self.beta
        Xb = self.X[batches]
        A = np.einsum("bsi,bsj->bij", Xb, Xb) / self.S + self.lam * np.eye(d)
        xi = self.a[batches].mean(axis=1)
        M = np.zeros((len(batches), 2 * d + 1, 2 * d + 1))
        M[:, :d, :d] = np.eye(d) - eta * A
        M[:, :d, d:2 * d] = eta * beta * np.eye(d)
        M[:, d:2 * d, :d] = -A
        M[:, d:2 * d, d:2 * d] = beta * np.eye(d)
        M[:, :d, -1] = -eta * xi
        M[:, d:2 * d, -1] = -xi
        M[:, -1, -1] = 1.0
        return M

    def stein_epoch_inverse(self) -> np.ndarray:
        """Per mode pair, (I − B_i^E ⊗ B_j^E)⁻¹: C = Φ C Φᵀ + Q with Φ = M̄^E, exactly."""
        BE = np.array([np.linalg.matrix_power(b, self.E) for b in self.blocks])
        kron = np.einsum("iac,jbe->ijabce", BE, BE).reshape(self.d, self.d, 4, 4)
        return np.linalg.inv(np.eye(4) - kron)

    def stein_epoch(self, inv: np.ndarray, Q: np.ndarray) -> np.ndarray:
        """Solve C = M̄^E C M̄^Eᵀ + Q in the eigenbasis of H + λI (2×2 block per mode)."""
        d = self.d
        R = np.kron(np.eye(2), self.U)
        Qm = (R.T @ Q @ R).reshape(2, d, 2, d).transpose(1, 3, 0, 2).reshape(d, d, 4)
        Cm = np.einsum("ijab,ijb->ija", inv, Qm)
        C = R @ Cm.reshape(d, d, 2, 2).transpose(2, 0, 3, 1).reshape(2 * d, 2 * d) @ R.T
        return 0.5 * (C + C.T)


# --- validation ----------------------------------------------------------------------------

def _data(prob: Any, hp: Any) -> _Data:
    if not isinstance(hp, Hyper):
        raise TypeError(f"hp must be a limitdyn.Hyper, got {type(hp).__name__}")
    if not isinstance(prob, LinearRegression):
        raise ValueError("sampling='reshuffle' needs a finite-sum LinearRegression problem "
                         f"(a permutation of its examples), got {type(prob).__name__}")
    X, y = prob.numpy()
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    N = X.shape[0]
    S = N if hp.batch_size is None else hp.batch_size
    if not 1 <= S <= N:
        raise ValueError(f"Hyper.batch_size must be in [1, N={N}], got {S}")
    return _Data(X, y, hp, S)


def _check_method(method: Any) -> str:
    return _checks.choice("method", method, METHODS)


def exact_cost(n_examples: int, batch_size: int, dim: int) -> tuple[float, int]:
    """(flops, largest level size) of one stationary solve by the used-set recursion.

    One epoch is Σ_j C(N, (j+1)S)·C((j+1)S, S) transitions, each a product with a packed
    n×n matrix, n = (2d+1)(2d+2)/2, for each of the n basis elements of the symmetric
    augmented second moments: 2n³ flops per transition.
    """
    N, S = n_examples, batch_size
    D = 2 * dim + 1
    n = D * (D + 1) // 2
    trans = sum(math.comb(N, (j + 1) * S) * math.comb((j + 1) * S, S) for j in range(N // S))
    size = max(math.comb(N, j * S) for j in range(N // S + 1))
    return float(trans) * 2 * n ** 3, size


def _resolve(data: _Data, method: str) -> str:
    flops = exact_cost(data.N, data.S, data.d)[0] if data.N <= EXACT_MAX_N else math.inf
    if method == "auto":
        return "exact" if data.N <= EXACT_AUTO_N and flops <= EXACT_AUTO_FLOPS else "stein"
    if method == "exact" and flops > EXACT_MAX_FLOPS:
        need = "" if math.isinf(flops) else f" needs {flops:.2g} flops"
        raise ValueError(f"method='exact' is for small problems (N <= {EXACT_MAX_N} and under "
                         f"{EXACT_MAX_FLOPS:.0e} flops); N={data.N}, S={data.S}, d={data.d}"
                         f"{need}: use method='stein' or 'auto'")
    return method


def _require_mean_stable(data: _Data, hp: Hyper) -> None:
    if data.mean_radius >= 1:
        bound = 2 * (1 + hp.momentum) / data.curvature[-1]
        raise UnstableError(
            f"lr={hp.lr:g} is outside the discrete stability region: the mean map has spectral "
            f"radius {data.mean_radius:.4g} >= 1 (stable iff lr·(h_max+λ) < 2(1+β), i.e. "
            f"lr < {bound:.6g} at momentum {hp.momentum:g})")


def _unstable_second_moment(hp: Hyper, rho: float, what: str) -> UnstableError:
    return UnstableError(
        f"lr={hp.lr:g} is outside the stability region of reshuffled SGD: the second-moment "
        f"epoch map ({what}) has spectral radius {rho:.4g} >= 1; lower lr")


# --- §9.2 the exact used-set recursion -----------------------------------------------------

class _UsedSets:
    """The subsets of [N] of sizes 0, S, …, ES as bitmasks, with the transitions
    U' = U ∪ B grouped by batch B (every S-subset of U')."""

    def __init__(self, N: int, S: int):
        self.N, self.S, self.E = N, S, N // S
        masks = np.arange(1 << N, dtype=np.int64)
        count = np.zeros(len(masks), dtype=np.int64)       # popcount (numpy < 2 has none)
        for bit in range(N):
            count += (masks >> bit) & 1
        self.levels = [masks[count == j * S] for j in range(self.E + 1)]
        self.index = np.full(1 << N, -1, dtype=np.int32 if N < 31 else np.int64)
        for lev in self.levels:
            self.index[lev] = np.arange(len(lev))
        self.batches = self._members(self.levels[1], S)      # batch b ↔ levels[1][b]
        self._groups: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}

    def _members(self, masks: np.ndarray, m: int) -> np.ndarray:
        bits = ((masks[:, None] >> np.arange(self.N)) & 1).astype(bool)
        return np.nonzero(bits)[1].reshape(len(masks), m)

    def groups(self, j: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Transitions into level j+1 as (batch b, rows U' ∋ b, predecessors U' ∖ b)."""
        if j not in self._groups:
            masks = self.levels[j + 1]
            m = (j + 1) * self.S
            pos = self._members(masks, m)
            comb = np.array(list(itertools.combinations(range(m), self.S)), dtype=np.int64)
            bm = np.bitwise_or.reduce(np.left_shift(np.int64(1), pos[:, comb]), axis=-1)
            pred = self.index[masks[:, None] ^ bm].ravel()
            bid = self.index[bm].ravel()
            rows = np.repeat(np.arange(len(masks)), bm.shape[1])
            order = np.argsort(bid, kind="stable")
            bid, rows, pred = bid[order], rows[order], pred[order]
            cuts = np.flatnonzero(np.diff(bid)) + 1
            self._groups[j] = [(int(b[0]), r, p) for b, r, p in
                               zip(np.split(bid, cuts), np.split(rows, cuts),
                                   np.split(pred, cuts), strict=True)]
        return self._groups[j]


def _packing(D: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle packing of symmetric D×D matrices: (rows, cols, duplication (D², n))."""
    rows, cols = np.triu_indices(D)
    dup = np.zeros((D * D, len(rows)))
    dup[rows * D + cols, np.arange(len(rows))] = 1.0
    dup[cols * D + rows, np.arange(len(rows))] = 1.0
    return rows, cols, dup


def _packed_maps(data: _Data, sets: _UsedSets) -> list[np.ndarray]:
    """(M̃_B ⊗ M̃_B) restricted to packed symmetric matrices, transposed, per batch B."""
    D = 2 * data.d + 1
    rows, cols, dup = _packing(D)
    sel = rows * D + cols
    return [(np.kron(M, M)[sel] @ dup).T for M in data.batch_maps(sets.batches)]


def _exact_epoch(data: _Data, sets: _UsedSets, Z0: np.ndarray, keep_phases: bool = False,
                 maps: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """One epoch of the used-set recursion for a stack Z0 (K, D, D) of symmetric augmented
    moments (theory.md §9.2). Each batch map acts on the packed upper triangles as one
    matrix, (M̃_B ⊗ M̃_B) restricted to symmetric matrices.

    Returns Z_E (K, D, D) and, with ``keep_phases``, the phase averages (E, K, D, D)."""
    K, D = Z0.shape[0], Z0.shape[1]
    rows, cols, dup = _packing(D)
    n = len(rows)
    if maps is None:
        maps = _packed_maps(data, sets)

    def unpack(Zp: np.ndarray) -> np.ndarray:
        return (Zp.reshape(-1, n) @ dup.T).reshape((*Zp.shape[:-1], D, D))

    Z = Z0[:, rows, cols].reshape(1, K * n)
    phases = []
    for j in range(sets.E):
        if keep_phases:
            phases.append(unpack(Z.mean(axis=0).reshape(K, n)))
        out = np.zeros((len(sets.levels[j + 1]), K, n))
        for b, idx, pred in sets.groups(j):
            out[idx] += (Z[pred].reshape(-1, n) @ maps[b]).reshape(len(idx), K, n)
        Z = out.reshape(len(out), K * n) / math.comb((j + 1) * sets.S, sets.S)
    ZE = unpack(Z.mean(axis=0).reshape(K, n))
    return ZE, (np.array(phases) if keep_phases else None)


def _exact_epoch_chunked(data: _Data, sets: _UsedSets, Z0: np.ndarray) -> np.ndarray:
    """:func:`_exact_epoch` over a large stack, in chunks that keep a level under ~64 MB."""
    D = Z0.shape[1]
    biggest = max(len(lev) for lev in sets.levels)
    chunk = max(1, int(8e6 // (biggest * D * (D + 1) // 2)))
    maps = _packed_maps(data, sets)
    return np.concatenate([_exact_epoch(data, sets, Z0[s:s + chunk], maps=maps)[0]
                           for s in range(0, len(Z0), chunk)])


def _sym_basis(D: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric D×D basis with zero corner [D−1, D−1], and its (row, col) positions."""
    pos = np.array([(a, b) for a in range(D) for b in range(a, D) if not a == b == D - 1])
    basis = np.zeros((len(pos), D, D))
    basis[np.arange(len(pos)), pos[:, 0], pos[:, 1]] = 1.0
    basis[np.arange(len(pos)), pos[:, 1], pos[:, 0]] = 1.0
    return basis, pos


def _phase_stats(Zs: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(means, covariances) of (θ, v) from augmented moments (…, D, D) of x = (θ − μ, v)."""
    n = Zs.shape[-1] - 1
    m = Zs[..., :n, -1]
    cov = Zs[..., :n, :n] - m[..., :, None] * m[..., None, :]
    shift = np.concatenate([mu, np.zeros_like(mu)])
    return m + shift, 0.5 * (cov + np.swapaxes(cov, -1, -2))


def _pooled(phase_mean: np.ndarray, phase_cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E_t[z] and E_t[zzᵀ] − E_t[z]E_t[z]ᵀ over the phases (theory.md §9.1)."""
    m = phase_mean.mean(axis=0)
    dev = phase_mean - m
    return m, phase_cov.mean(axis=0) + dev.T @ dev / len(phase_mean)


def _exact_stationary(data: _Data, hp: Hyper) -> ReshuffleStationary:
    """Fixed point of the linear epoch map of augmented moments (theory.md §9.2)."""
    sets = _UsedSets(data.N, data.S)
    D = 2 * data.d + 1
    basis, pos = _sym_basis(D)
    corner = np.zeros((1, D, D))
    corner[0, -1, -1] = 1.0
    images = _exact_epoch_chunked(data, sets, np.concatenate([corner, basis]))
    coords = images[:, pos[:, 0], pos[:, 1]]
    T = coords[1:].T                      # the epoch map on the zero-corner symmetric space
    rho = float(np.max(np.abs(np.linalg.eigvals(T)))) if T.size else 0.0
    if rho >= 1:
        raise _unstable_second_moment(hp, rho, "exact used-set recursion")
    y = np.linalg.solve(np.eye(len(T)) - T, coords[0])
    Z = corner[0] + np.einsum("b,bij->ij", y, basis)
    _, phases = _exact_epoch(data, sets, Z[None], keep_phases=True)
    phase_mean, phase_cov = _phase_stats(phases[:, 0], data.mu)
    mean, cov = _pooled(phase_mean, phase_cov)
    return ReshuffleStationary("exact", data.E, mean, cov, phase_mean, phase_cov)


def _exact_moments(data: _Data, steps: np.ndarray, m0: np.ndarray,
                   C0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transient moments from a start at an epoch boundary (step 0), exactly (§9.2)."""
    sets = _UsedSets(data.N, data.S)
    n = 2 * data.d
    Z = np.zeros((n + 1, n + 1))
    Z[:n, :n] = C0 + np.outer(m0, m0)
    Z[:n, -1] = Z[-1, :n] = m0
    Z[-1, -1] = 1.0
    means = np.empty((len(steps), n))
    covs = np.empty((len(steps), n, n))
    last = int(steps.max())
    maps = _packed_maps(data, sets)
    epoch = 0
    while epoch * data.E <= last:
        lo = epoch * data.E
        inside = (steps >= lo) & (steps < lo + data.E)
        ZE, phases = _exact_epoch(data, sets, Z[None], keep_phases=bool(inside.any()),
                                  maps=maps)
        if inside.any():
            means[inside], covs[inside] = _phase_stats(phases[steps[inside] - lo, 0], data.mu)
        Z = ZE[0]
        epoch += 1
    return means, covs


# --- §9.3 the cyclostationary Stein recursion ------------------------------------------------

class _Stein:
    """The derived theory of §9.3 for one problem.

    The covariance over an epoch is C_k = Y_k − Ȳ_k/(N−1) + X_k with Y_k the diagonal
    (same-step) noise accumulated from the epoch's start, Ȳ_k the cross-step part of the
    noise of the examples at the mean, and X_k the fixed corrections: the first-order
    third-moment term J_k + J_kᵀ and the second-order pairings −O_k/(N−1) + B_k + B_kᵀ.
    """

    #: above this d⁴ the fourth-moment tensor G4 is not stored (contracted from the data)
    G4_MAX = 17_000_000

    def __init__(self, data: _Data):
        self.data = data
        d, E, Mb, W = data.d, data.E, data.Mbar, data.W
        P = np.empty((E + 1, 2 * d, d))                 # P_j = M̄^j W
        P[0] = W
        for j in range(E):
            P[j + 1] = Mb @ P[j]
        self.P = P
        self.s = np.concatenate([np.zeros((1, 2 * d, d)), np.cumsum(P[:-1], axis=0)])
        self.J = self._first_order()
        # mode coordinates: x̂ = R̂ᵀ x, R̂ = I₂ ⊗ U; one 2×2 block B_e of M̄ per mode e
        self.h = data.curvature
        self.h0 = data.curvature - data.lam
        self.Xm = data.X @ data.U                       # x̃_i = Uᵀ x_i
        self.B = data.blocks
        self.Bw = np.einsum("epq,q->ep", self.B, np.array([data.eta, 1.0]))
        A3 = np.zeros((d, 3, 3))                        # blocks of 𝒜 = [[M̄, −W], [0, I]]
        A3[:, :2, :2] = self.B
        A3[:, 0, 2], A3[:, 1, 2], A3[:, 2, 2] = -data.eta, -1.0, 1.0
        self.A3 = A3
        # G̃[e,a,f] = (1/N) Σ_i D̃_i[e,a] D̃_i[a,f] and, for d⁴ ≤ G4_MAX, the fourth-moment
        # tensor G4[e,f,a,b] = (1/N) Σ_i x̃_e x̃_f x̃_a x̃_b − h_e h_f δ_ea δ_fb (chunked over i)
        self.Gt = np.zeros((d, d, d))
        self.G4 = np.zeros((d * d, d * d)) if d ** 4 <= self.G4_MAX else None
        for rows in self._chunks(d * d):
            Xc = self.Xm[rows]
            Dc = Xc[:, :, None] * Xc[:, None, :] - np.diag(self.h0)
            self.Gt += np.einsum("nea,naf->eaf", Dc, Dc)
            if self.G4 is not None:
                Zc = (Xc[:, :, None] * Xc[:, None, :]).reshape(len(Xc), d * d)
                self.G4 += Zc.T @ Zc
        self.Gt /= data.N
        if self.G4 is not None:
            G4 = (self.G4 / data.N).reshape(d, d, d, d)
            idx = np.arange(d)
            G4[idx[:, None], idx[None, :], idx[:, None], idx[None, :]] -= np.outer(self.h0,
                                                                                  self.h0)
            self.G4 = G4

    def _chunks(self, width: int) -> list[slice]:
        """Row blocks of the N examples with about 2²² numbers of ``width`` per row each."""
        step = max(1, (1 << 22) // max(width, 1))
        return [slice(i, i + step) for i in range(0, self.data.N, step)]

    # -- first order in Δ_B -------------------------------------------------------------
    def _first_order(self) -> np.ndarray:
        """J_k (E+1, 2d, 2d): E[x⁰_k x¹_kᵀ] from this epoch's batches (theory.md §9.3).

        J_k = −Σ_{l<k} Σ_{m<l} Σ_{n<k} c(n, m, l) P_{k−1−n} 𝒯(Q_{l−1−m}) P_{k−1−l}ᵀ with
        Q_j the θ rows of P_j and the third sampling moment c = c_D + (c_A − c_D)(δ_nm + δ_nl),
        computed by the O(E) recursions s, A, B, V, τ below.
        """
        data = self.data
        N, S, E, d = data.N, data.S, data.E, data.d
        Mb, W = data.Mbar, data.W
        c_D = 2.0 / ((N - 1) * (N - 2)) if N > 2 else 0.0
        c_A = (-1.0 / (N - 1) + (S - 1) * c_D) / S if N > 1 else 0.0
        s = np.zeros((2 * d, d))          # Σ_{j<k} P_j
        tau = np.zeros((d, d))            # Σ_{j<k} 𝒯(Q_j)
        V = np.zeros((2 * d, d))          # Σ_{j<k} P_j 𝒯(Q_j)
        A = np.zeros((d, 2 * d))          # Σ_{l<k} τ_l P_{k−1−l}ᵀ
        B = np.zeros((2 * d, 2 * d))      # Σ_{l<k} (M̄^{k−l} V_l + P_{k−1−l} τ_l) P_{k−1−l}ᵀ
        J = np.empty((E + 1, 2 * d, 2 * d))
        for k in range(E + 1):
            J[k] = -c_D * s @ A - (c_A - c_D) * B
            if k == E:
                break
            A = A @ Mb.T + tau @ W.T
            B = Mb @ B @ Mb.T + (Mb @ V + W @ tau) @ W.T
            Tk = data.T(self.P[k, :d])
            V = V + self.P[k] @ Tk
            tau = tau + Tk
            s = s + self.P[k]
        return J

    # -- second order in Δ_B: the cross-step pairings ------------------------------------
    def _A(self, Z: np.ndarray) -> np.ndarray:
        """𝒜 Z for Z (3d, …) in mode coordinates (rows θ̂, v̂, â)."""
        d, eta, beta = self.data.d, self.data.eta, self.data.beta
        th, v, ab = Z[:d], Z[d:2 * d], Z[2 * d:]
        hh = self.h.reshape((d,) + (1,) * (Z.ndim - 1))
        return np.concatenate([(1 - eta * hh) * th + eta * beta * v - eta * ab,
                               -hh * th + beta * v - ab, ab])

    def _M(self, Z: np.ndarray) -> np.ndarray:
        """M̄ Z for Z (2d, …) in mode coordinates."""
        d, eta, beta = self.data.d, self.data.eta, self.data.beta
        th, v = Z[:d], Z[d:]
        hh = self.h.reshape((d,) + (1,) * (Z.ndim - 1))
        return np.concatenate([(1 - eta * hh) * th + eta * beta * v, -hh * th + beta * v])

    def _contract_G4(self, At: np.ndarray) -> np.ndarray:
        """Σ_ab G4[e,f,a,b] At[e,a,b,γ] → (γ, e, f)."""
        d = self.data.d
        if self.G4 is not None:
            out = np.matmul(self.G4.reshape(d, d, d * d), At.reshape(d, d * d, -1))
            return np.moveaxis(out, 2, 0)                      # (e, f, γ) → (γ, e, f)
        out = np.zeros((At.shape[-1], d, d))
        for rows in self._chunks(d * d * At.shape[-1]):
            Xc = self.Xm[rows]
            inner = np.einsum("ib,eabg->ieag", Xc, At, optimize=True)
            inner = np.einsum("ia,ieag->ieg", Xc, inner)
            out += np.einsum("ie,if,ieg->gef", Xc, Xc, inner, optimize=True)
        idx = np.arange(d)
        return out / self.data.N - np.einsum("e,f,efg->gef", self.h0, self.h0, At[idx, idx])

    def second_order(self, C0path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(O_k, B_k), k = 0…E, from the phase covariances C⁰_k (E+1, 2d, 2d) of the process
        without multiplicative noise (theory.md §9.3):

            O_k = Σ_{l≠l'<k} P_{k−1−l} 𝒢(E[u_l u_l'ᵀ]) P_{k−1−l'}ᵀ,
            B_k = −(1/(N−1)) Σ_{l<k} Σ_{m<l} 𝒢₂(E[x_k u_mᵀ], Q_{l−1−m}) P_{k−1−l}ᵀ,
            𝒢₂(L, Q) = (1/N) Σ_i L D_i Qᵀ D_i,

        with the two-time covariances E[x_k x_mᵀ] = [𝒜^{k−m}]_x E[z_m x_mᵀ] of the Markov
        embedding z = (x, ā), ā the mean noise of the unused examples: E[ā_m x_mᵀ] =
        Σ(μ) s_mᵀ/(N−1). Run as O(E) recursions of per-mode accumulators: O(E d⁴)."""
        data = self.data
        d, E, c = data.d, data.E, data.cross
        U = data.U
        Rx = np.kron(np.eye(2), U)
        Sa = U.T @ data.sigma_a @ U
        w = np.array([data.eta, 1.0])
        Aacc = np.zeros((d, d, d, 2, 3))       # (a): Σ_l (B_e^{k−l} w) ⊗ (𝒜_b^{k−l} κ_l[a,b])
        Racc = np.zeros((d, 2, 3 * d, d))      # (b): Σ_m (B_a^{k−1−m} w) ⊗ 𝒜^{k−1−m} G_a(m)
        O = np.zeros((2 * d, 2 * d))
        Bh = np.zeros((3 * d, 2 * d))
        Os = np.empty((E + 1, 2 * d, 2 * d))
        Bs = np.empty((E + 1, 2 * d, 2 * d))
        for k in range(E + 1):
            Os[k] = Rx @ O @ Rx.T
            Bs[k] = -c * Rx @ Bh[:2 * d] @ Rx.T
            if k == E:
                break
            # K_k = E[z_k x_kᵀ][:, θ] in mode coordinates, (3d, d)
            Ck = Rx.T @ C0path[k] @ Rx
            s_hat = Rx.T @ self.s[k] @ U
            K = np.concatenate([Ck[:, :d], c * Sa @ s_hat[:d].T])
            # (a) V_k = Σ_{l<k} P_{k−l} 𝒢(T_lk), then O_{k+1} = M̄ O_k M̄ᵀ + W V_kᵀ + V_k Wᵀ
            Vm = self._contract_G4(Aacc[..., 0]).reshape(2 * d, d)     # rows (γ, e)
            O = self._M(self._M(O).T).T
            WV = np.concatenate([data.eta * np.eye(d), np.eye(d)]) @ Vm.T
            O = O + WV + WV.T
            kap = K.reshape(3, d, d).transpose(2, 1, 0)                  # κ_k[a, b, β]
            Ak = np.einsum("brs,abs->abr", self.A3, kap)
            Aacc = (np.einsum("epq,eabqs,brs->eabpr", self.B, Aacc, self.A3, optimize=True)
                    + np.einsum("ep,abr->eabpr", self.Bw, Ak))
            # (b) U_k = 𝒜² Σ_a R_a(k); B̂_{k+1} = 𝒜 B̂_k M̄ᵀ + U_k Wᵀ
            Uk = self._A(self._A(Racc[:, 0].sum(axis=0)))
            Bh = self._M(self._A(Bh).T).T + Uk @ np.concatenate([data.eta * np.eye(d),
                                                                 np.eye(d)]).T
            Ga = np.moveaxis(np.tensordot(K, self.Gt, axes=(1, 0)), 1, 0)  # G_a(k), (d, 3d, d)
            Racc = (np.einsum("apq,aqrf->aprf", self.B,
                              np.moveaxis(self._A(np.moveaxis(Racc, 2, 0)), 0, 2))
                    + np.einsum("p,arf->aprf", w, Ga))
        return Os, Bs

    def mean_path(self, m0: np.ndarray, const: float = 1.0,
                  stats: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The mean over one epoch from m0 (2d,) (theory.md §9.3 (ii)).

        Example i's noise at the mean is f_i(k) = c·a_i + D_i u_k (c = ``const``: 0 gives
        the linear part of the epoch map), y_i(k) = Σ_{l<k} M̄^{k−1−l} W f_i(l), and

            m_{k+1} = M̄ m_k − W (1/(N−1)) (1/N) Σ_i D_i [y_i(k)]_θ.

        Run in mode coordinates, where M̄ acts elementwise: O(N d) per step (O(N d²) with
        ``stats``). Returns m (E+1, 2d), F (E, d, d) = (1/N) Σ_i f_i f_iᵀ and Ȳ (E+1, 2d,
        2d) = (1/N) Σ_i y_i y_iᵀ (left zero with ``stats=False``).
        """
        data = self.data
        N, d, E, eta, beta = data.N, data.d, data.E, data.eta, data.beta
        U, Xm, h, h0 = data.U, self.Xm, self.h, self.h0
        am = data.a @ U if const else 0.0                     # â_i = Uᵀ a_i
        Rx = np.kron(np.eye(2), U)
        th, v = U.T @ m0[:d], U.T @ m0[d:]
        m = np.empty((E + 1, 2 * d))
        m[0] = m0
        yt = np.zeros((N, d))                                 # ŷ_i, θ and v parts
        yv = np.zeros((N, d))
        F = np.zeros((E, d, d))
        Ybar = np.zeros((E + 1, 2 * d, 2 * d))
        for k in range(E):
            f = const * am + Xm * (Xm @ th)[:, None] - h0 * th    # f̂_i(k)
            if stats:
                F[k] = U @ (f.T @ f / N) @ U.T
            g = Xm.T @ np.einsum("ij,ij->i", Xm, yt) / N - h0 * yt.mean(axis=0)
            g *= data.cross                                   # E ξ_k in mode coordinates
            v = beta * v - h * th - g
            th = th + eta * v
            m[k + 1, :d], m[k + 1, d:] = U @ th, U @ v
            yv = beta * yv - h * yt + f                       # y(k+1) = M̄ y(k) + W f(k)
            yt = yt + eta * yv
            if stats:
                y = np.concatenate([yt, yv], axis=1)
                Ybar[k + 1] = Rx @ (y.T @ y / N) @ Rx.T
        return m, F, Ybar

    def cov_epoch(self, C0: np.ndarray, F: np.ndarray | None, Ybar: np.ndarray | None,
                  extra: np.ndarray | None = None, mult: bool = True,
                  keep: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The covariance over one epoch from C0 at its start (theory.md §9.3):

            C_k = Y_k − Ȳ_k/(N−1) + X_k,
            Y_{k+1} = M̄ Y_k M̄ᵀ + W [(κ + 1/(N−1)) F_k + κ 𝒢([C_k]_θθ)] Wᵀ,  Y_0 = C0,

        X_k = ``extra`` (the fixed first- and second-order corrections); ``mult=False``
        drops the κ𝒢 term. ``F``/``Ybar``/``extra`` None give the homogeneous part alone.
        Returns C_E and, with ``keep``, C_0 … C_E (E+1, 2d, 2d)."""
        data = self.data
        d, E, Mb, W = data.d, data.E, data.Mbar, data.W
        Y = C0
        phases = np.empty((E + 1, 2 * d, 2 * d)) if keep else None
        diag = data.kappa + data.cross
        for k in range(E + 1):
            C = Y
            if Ybar is not None:
                C = C - data.cross * Ybar[k]
            if extra is not None:
                C = C + extra[k]
            if keep:
                phases[k] = C
            if k == E:
                break
            noise = data.kappa * data.G(C[:d, :d]) if mult else np.zeros((d, d))
            if F is not None:
                noise = noise + diag * F[k]
            Y = Mb @ Y @ Mb.T + W @ noise @ W.T
        return C, phases

    def corrections(self, C0path: np.ndarray) -> np.ndarray:
        """X_k = J_k + J_kᵀ − O_k/(N−1) + B_k + B_kᵀ from the zeroth-order phase
        covariances (theory.md §9.3)."""
        O, B = self.second_order(C0path)
        JB = self.J + B
        return JB + np.swapaxes(JB, 1, 2) - self.data.cross * O


def _stationary_mean(st: _Stein) -> np.ndarray:
    """Fixed point of the affine mean epoch map m_E = A m_0 + b (theory.md §9.3 (ii)).

    A = Φ + δA with Φ = M̄^E and δA the small shift's linear part: GMRES on
    (I − (I − Φ)⁻¹ δA) m = (I − Φ)⁻¹ b, one single-column epoch pass per iteration."""
    data = st.data
    n = 2 * data.d
    Phi = np.linalg.matrix_power(data.Mbar, data.E)
    lu = np.linalg.inv(np.eye(n) - Phi)
    b = st.mean_path(np.zeros(n), stats=False)[0][-1]

    def delta(x: np.ndarray) -> np.ndarray:
        return lu @ (st.mean_path(x, const=0.0, stats=False)[0][-1] - Phi @ x)

    op = spla.LinearOperator((n, n), dtype=np.float64, matvec=lambda x: x - delta(x))
    x, info = spla.gmres(op, lu @ b, rtol=1e-13, atol=0.0, restart=n, maxiter=20)
    if np.linalg.norm(op.matvec(x) - lu @ b) > 1e-9 * max(np.linalg.norm(lu @ b), 1e-300):
        raise RuntimeError(f"the stationary mean did not converge (gmres info {info})")
    return x


def _power_radius(linear: Any, start: np.ndarray, max_iter: int = 300,
                  rtol: float = 1e-6) -> float:
    """Spectral radius estimate of a linear map by power iteration from ``start``."""
    x = start / np.linalg.norm(start)
    rho = 0.0
    for _ in range(max_iter):
        nxt = linear(x)
        new = float(np.linalg.norm(nxt))
        if new == 0.0:
            return 0.0
        x = nxt / new
        if abs(new - rho) <= rtol * new:
            return new
        rho = new
    return rho


def _stein_stationary(data: _Data, hp: Hyper) -> ReshuffleStationary:
    """The periodic fixed point of the §9.3 recursion."""
    st = _Stein(data)
    n = 2 * data.d
    m0 = _stationary_mean(st)
    m, F, Ybar = st.mean_path(m0)
    inv = data.stein_epoch_inverse()
    zero = np.zeros((n, n))
    # the process without multiplicative noise: C⁰_E = Φ C⁰_0 Φᵀ + (noise of the epoch)
    C00 = data.stein_epoch(inv, st.cov_epoch(zero, F, Ybar, mult=False)[0])
    path0 = st.cov_epoch(C00, F, Ybar, mult=False, keep=True)[1]
    extra = st.corrections(path0)
    # full: C0 = Stein_E⁻¹(C_E(C0) − Φ C0 Φᵀ), the multiplicative feedback by GMRES
    Phi = np.linalg.matrix_power(data.Mbar, data.E)
    rhs = data.stein_epoch(inv, st.cov_epoch(zero, F, Ybar, extra)[0])

    def feedback(X: np.ndarray) -> np.ndarray:
        X = 0.5 * (X + X.T)
        return data.stein_epoch(inv, st.cov_epoch(X, None, None)[0] - Phi @ X @ Phi.T)

    rho = _radius(feedback, n)
    if rho >= 1:
        raise _unstable_second_moment(hp, rho, "multiplicative-noise feedback of the Stein "
                                               "recursion")
    op = spla.LinearOperator((n * n, n * n), dtype=np.float64,
                             matvec=lambda x: x - feedback(x.reshape(n, n)).ravel())
    x, info = spla.gmres(op, rhs.ravel(), rtol=1e-12, atol=0.0, restart=min(n * n, 100),
                         maxiter=50)
    resid = np.linalg.norm(op.matvec(x) - rhs.ravel()) / max(np.linalg.norm(rhs), 1e-300)
    if resid > 1e-9:
        raise RuntimeError(f"the cyclostationary Stein solve did not converge (relative "
                           f"residual {resid:.2g}, gmres info {info})")
    C0 = x.reshape(n, n)
    phases = st.cov_epoch(0.5 * (C0 + C0.T), F, Ybar, extra, keep=True)[1][:-1]
    phase_cov = 0.5 * (phases + np.swapaxes(phases, 1, 2))
    phase_mean = m[:-1] + np.concatenate([data.mu, np.zeros(data.d)])
    mean, cov = _pooled(phase_mean, phase_cov)
    return ReshuffleStationary("stein", data.E, mean, cov, phase_mean, phase_cov)


def _radius(linear: Any, n: int) -> float:
    """Spectral radius of a positive linear map on n×n matrices, by power iteration from I."""
    return _power_radius(lambda v: linear(v.reshape(n, n)).ravel(), np.eye(n).ravel())


def _stein_moments(data: _Data, steps: np.ndarray, m0: np.ndarray,
                   C0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transient moments by the §9.3 recursion, epoch by epoch from step 0 (the process
    without multiplicative noise, whose two-time covariances the second-order terms use,
    is carried along)."""
    st = _Stein(data)
    n = 2 * data.d
    shift = np.concatenate([data.mu, np.zeros(data.d)])
    means = np.empty((len(steps), n))
    covs = np.empty((len(steps), n, n))
    m, C, C_zero = m0.copy(), C0.copy(), C0.copy()
    last = int(steps.max())
    epoch = 0
    while epoch * data.E <= last:
        lo = epoch * data.E
        path, F, Ybar = st.mean_path(m)
        path0 = st.cov_epoch(C_zero, F, Ybar, mult=False, keep=True)[1]
        CE, phases = st.cov_epoch(C, F, Ybar, st.corrections(path0), keep=True)
        inside = (steps >= lo) & (steps < lo + data.E)
        if inside.any():
            j = steps[inside] - lo
            means[inside] = path[j] + shift
            covs[inside] = 0.5 * (phases[j] + np.swapaxes(phases[j], 1, 2))
        m, C, C_zero = path[-1], 0.5 * (CE + CE.T), path0[-1]
        epoch += 1
    return means, covs


# --- public ----------------------------------------------------------------------------------

def reshuffle_stationary(prob: LinearRegression, hp: Hyper,
                         method: str = "auto") -> ReshuffleStationary:
    """Stationary periodic law of (θ, v) under random reshuffling (theory.md §9).

    The state at the epoch boundaries is a Markov chain with i.i.d. random affine epoch
    maps; its stationary law, propagated through the E = N // S steps of an epoch, gives
    the law at every phase j = k mod E. The mean is not exactly the minimiser.

    Args:
        prob: a :class:`~limitdyn.LinearRegression` (used through its float64 data).
        hp: hyperparameters; ``hp.batch_size`` S (None: N). The last N mod S examples of
            each permutation are dropped, as the sampler does.
        method: ``"exact"`` — the used-set recursion (§9.2), exact with the multiplicative
            noise, for N up to about 16–20 (refused above ~5·10¹¹ flops); ``"stein"`` —
            the cyclostationary Stein recursion (§9.3), exact for the noise at the mean
            and at first order in the batch-Hessian fluctuation, its second order by
            Gaussian pairing, higher orders by the iid closure (measured error ∝ η^1.5–1.9
            at N = 16, ≤ 0.13% at N = 240 up to ηκ tr H = 0.16, §9.4); ``"auto"`` — exact
            for N ≤ 16 when cheap, else stein.

    Returns:
        :class:`ReshuffleStationary` with the method used, the pooled mean and covariance
        (E_t[zzᵀ] − E_t[z]E_t[z]ᵀ over the phases) and both per phase.

    Raises:
        UnstableError: outside the stability region (mean map or second-moment epoch map).
    """
    method = _check_method(method)
    data = _data(prob, hp)
    method = _resolve(data, method)
    _require_mean_stable(data, hp)
    if method == "exact":
        return _exact_stationary(data, hp)
    return _stein_stationary(data, hp)


def stationary_cov(prob: LinearRegression, hp: Hyper, phase: int | None = None,
                   method: str = "auto") -> np.ndarray:
    """Stationary covariance (2d, 2d) of (θ, v) under reshuffling (theory.md §9): pooled
    over the phases (``phase=None``) or at phase j = k mod E (``phase=j``; 0: the epoch
    boundaries). What :func:`~limitdyn.theory.discrete_stationary_cov` returns for
    ``sampling="reshuffle"``."""
    method = _check_method(method)
    data = _data(prob, hp)
    if phase is not None:
        phase = _checks.integer("phase", phase, low=0, high=data.E - 1)
    res = reshuffle_stationary(prob, hp, method)
    return res.cov if phase is None else res.phase_cov[phase]


@dataclasses.dataclass(frozen=True)
class ReshuffleMoments(Moments):
    """:class:`~limitdyn.theory.Moments` under reshuffling, with the method used and E."""

    method: str = "exact"
    epoch_steps: int = 1


def reshuffle_moments(prob: LinearRegression, hp: Hyper, steps: Any, theta0: Any = None,
                      v0: Any = None, cov0: Any = None,
                      method: str = "auto") -> ReshuffleMoments:
    """Mean and covariance of (θ_k, v_k) at ``steps`` under reshuffling (theory.md §9), from
    a start at step 0, which begins an epoch (as in :func:`limitdyn.simulate_sgd`).

    Args:
        steps: step indices (non-negative integers).
        theta0: start (d,), default the minimiser μ; v0: start velocity, default 0.
        cov0: optional (2d, 2d) covariance of a random start, default 0.
        method: as :func:`reshuffle_stationary`. ``"stein"`` transients far from μ are less
            accurate than its stationary law (§9.4): the noise of the examples at the mean
            keeps its exact within-epoch correlation, but the second-order two-time
            covariances and the third moment use the additive part a_i alone.
    """
    method = _check_method(method)
    data = _data(prob, hp)
    d = data.d
    steps = _checks.real_array("steps", steps, ndim=1)
    if np.any(steps < 0) or np.any(steps != np.round(steps)):
        raise ValueError("steps must be non-negative integers")
    steps = steps.astype(np.int64)
    theta0 = data.mu if theta0 is None else _checks.real_array("theta0", theta0, shape=(d,))
    v0 = np.zeros(d) if v0 is None else _checks.real_array("v0", v0, shape=(d,))
    C0 = np.zeros((2 * d, 2 * d)) if cov0 is None else _checks.real_array(
        "cov0", cov0, shape=(2 * d, 2 * d))
    method = _resolve(data, method)
    m0 = np.concatenate([theta0 - data.mu, v0])
    run = _exact_moments if method == "exact" else _stein_moments
    means, covs = run(data, steps, m0, 0.5 * (C0 + C0.T))
    return ReshuffleMoments(steps=steps, mean=means, cov=covs, method=method,
                            epoch_steps=data.E)
