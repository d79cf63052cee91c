"""Noise of machine-learning type: stationary laws, selection weights, collapse (theory.md §8).

Model and conventions (Itô throughout)::

    dθ = −∇L(θ) dt + √(2T) S(θ) dW_t,         S Sᵀ = I (homogeneous) | L(θ) I (ML-isotropic)
                                                      | L(θ) G(θ) (ML, curvature-shaped)

G is the Gauss–Newton matrix of L = (c/2)‖r(θ)‖², G = c JᵀJ (J = ∂r/∂θ); at a zero-loss
minimiser G equals the Hessian.

**Stationary density of ML-isotropic noise (derived here).** The Fokker–Planck equation
of the Itô SDE is ∂_t p = ∇·(p∇L) + T Δ(L p). The zero-flux condition
p∇L + T∇(Lp) = 0 reads, with q = Lp, ∇log q = −(1/T)∇log L, so q ∝ L^(−1/T) and

    p(θ) ∝ L(θ)^(−(1 + 1/T))                                                    (8.1)

(exact, on any landscape where it is normalisable; the probability current vanishes, so
the law is reversible). The same law follows from the time change dτ = L dt, under which
θ is an additive-noise Langevin process in the potential log L at temperature T, with
τ-density L^(−1/T); converting occupation in τ to occupation in t weights it by 1/L.
A Stratonovich reading of the same SDE would give L^(−1/T − 1/2) instead; the tests tell
the two apart numerically on a one-dimensional landscape.

**Test landscape.** L(x, y) = a(y) Σ_{j ≤ k} (1 − cos x_j) on the torus x ∈ [−π, π)^k,
y ∈ [0, 2π), with a(y) = (a_max + a_min)/2 − (a_max − a_min)/2 · cos y (from a_min at
y = 0 to a_max at y = π). Its minimisers are the circles {x ∈ 2πℤ^k} × [0, 2π), of
codimension k and transverse curvature (Hessian eigenvalue) a(y). "Near a minimiser of
curvature a(y)" means: the state (x, y) is attributed to its nearest minimiser
(2π round(x/2π), y), so the selection weight of curvature a(y) is the stationary
probability per unit length of the minimiser set at y — the y-marginal density.

* ML-isotropic: (8.1) factorises, p = a(y)^(−q) s(x)^(−q)/Z with s = Σ(1 − cos x_j) and
  q = 1 + 1/T, so the y-marginal is exactly ∝ a(y)^(−(1 + 1/T)), whatever x-region is
  counted as "near". Normalisable iff ∫ s^(−q) ds^(k/2) < ∞ at s → 0, i.e. iff
  T > 2/(k − 2).
* Homogeneous: p ∝ exp(−L/T); integrating x over the torus gives the exact y-marginal
  ∝ [e^(−a/T) I₀(a/T)]^k, which is (2πT/a)^(k/2)(1 + O(T/a)): weights a^(−k/2).
* Collapse. Near the minimiser set, with r = |x|, Itô's formula gives
  d log r = a[T(k − 2)/2 − 1] dt + √(Ta) dB (ML-isotropic) and
  d log r = a[Ta(k − 2)/2 − 1] dt + a√T dB (curvature-shaped), so log L = 2 log r + const
  drifts at 2a[T(k − 2)/2 − 1] resp. 2a[Ta(k − 2)/2 − 1] per unit time: ML-isotropic
  noise collapses onto the minimisers iff T < 2/(k − 2) (the non-normalisable case of
  (8.1)); curvature-shaped noise collapses where a < 2/((k − 2)T) and is repelled
  elsewhere.

Selection exponents are fitted within the one-parameter family ρ_p(y) ∝ a(y)^(−p) on the
circle: the maximum-likelihood p solves E_p[log a] = (observed mean of log a(y));
:func:`log_curvature_moments` and :func:`exponent_from_mean_log_a` implement that map.
For the homogeneous law, which is not exactly in the family, the prediction at finite T
is the family member with the same E[log a] (:func:`predicted_exponent`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

from .. import _checks

ML_NOISES = ("ml", "ml-curvature")
_Y_GRID = 4096          # periodic trapezoid nodes on [0, 2π): spectrally accurate here


def _ab(a_min: float, a_max: float) -> tuple[float, float]:
    a_min = _checks.finite_float("a_min", a_min, low=0.0, low_open=True)
    a_max = _checks.finite_float("a_max", a_max, low=0.0, low_open=True)
    if a_max < a_min:
        raise ValueError(f"a_max must be >= a_min, got a_min={a_min}, a_max={a_max}")
    return a_min, a_max


def curvature(y, a_min: float = 1.0, a_max: float = 4.0) -> np.ndarray:
    """a(y) = (a_max + a_min)/2 − (a_max − a_min)/2 · cos y (theory.md §8)."""
    a_min, a_max = _ab(a_min, a_max)
    y = np.asarray(y, np.float64)
    return 0.5 * (a_max + a_min) - 0.5 * (a_max - a_min) * np.cos(y)


def _grid(a_min: float, a_max: float) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(_Y_GRID) * (2 * np.pi / _Y_GRID)
    return y, curvature(y, a_min, a_max)


def ml_exponent(T: float) -> float:
    """Selection exponent of ML-type noise: weights a^(−(1 + 1/T)) (eq. 8.1)."""
    T = _checks.finite_float("T", T, low=0.0, low_open=True)
    return 1.0 + 1.0 / T


def homogeneous_exponent(k: int) -> float:
    """Asymptotic (T/a → 0) selection exponent of homogeneous noise: a^(−k/2)."""
    k = _checks.integer("k", k, low=1)
    return k / 2.0


def collapse_threshold(k: int) -> float:
    """T_c = 2/(k − 2): ML-isotropic noise collapses onto the minimisers iff T < T_c.

    ``inf`` for k ≤ 2 (codimension ≤ 2 always collapses).
    """
    k = _checks.integer("k", k, low=1)
    return math.inf if k <= 2 else 2.0 / (k - 2)


def curvature_collapse_threshold(k: int, T: float) -> float:
    """a_c = 2/((k − 2)T): curvature-shaped ML noise collapses where a < a_c."""
    k = _checks.integer("k", k, low=1)
    T = _checks.finite_float("T", T, low=0.0, low_open=True)
    return math.inf if k <= 2 else 2.0 / ((k - 2) * T)


def normalisable(k: int, T: float) -> bool:
    """Whether (8.1) is normalisable near a codimension-k minimiser set: T > 2/(k − 2)."""
    return _checks.finite_float("T", T, low=0.0, low_open=True) > collapse_threshold(k)


def log_loss_rate(a, k: int, T: float, noise: str = "ml") -> np.ndarray:
    """Drift of log L per unit time near the minimiser set (negative: collapse).

    ML-isotropic: 2a[T(k − 2)/2 − 1]; curvature-shaped: 2a[Ta(k − 2)/2 − 1] (module
    docstring; Itô's formula for log r with L ≈ a r²/2).
    """
    k = _checks.integer("k", k, low=1)
    T = _checks.finite_float("T", T, low=0.0, low_open=True)
    noise = _checks.choice("noise", noise, ML_NOISES)
    a = np.asarray(a, np.float64)
    scale = T if noise == "ml" else T * a
    return 2 * a * (scale * (k - 2) / 2 - 1)


def stationary_density(loss, T: float) -> np.ndarray:
    """Unnormalised stationary density L^(−(1 + 1/T)) of ML-isotropic noise (eq. 8.1)."""
    return np.asarray(loss, np.float64) ** (-ml_exponent(T))


def log_curvature_moments(p, a_min: float = 1.0, a_max: float = 4.0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of log a(y) under the density ∝ a(y)^(−p) on the circle.

    d/dp of the mean is minus the variance, so the mean is strictly decreasing in p.
    """
    _, a = _grid(a_min, a_max)
    la = np.log(a)
    p = np.asarray(p, np.float64)
    logw = -p[..., None] * la
    w = np.exp(logw - logw.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    mean = w @ la
    var = w @ la ** 2 - mean ** 2
    return mean, np.maximum(var, 0.0)


def exponent_from_mean_log_a(m, a_min: float = 1.0, a_max: float = 4.0,
                             p_range: tuple[float, float] = (-20.0, 60.0)) -> np.ndarray:
    """The p with E_p[log a] = m (maximum likelihood in the family ∝ a^(−p)); vectorised.

    Values outside what p ∈ ``p_range`` can produce are clipped to its ends.
    """
    grid, mean = _moment_table(*_ab(a_min, a_max), *map(float, p_range))
    return np.interp(np.asarray(m, np.float64), mean[::-1], grid[::-1])


@functools.lru_cache(maxsize=32)
def _moment_table(a_min: float, a_max: float, lo: float, hi: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(lo, hi, 8001)
    mean = np.concatenate([log_curvature_moments(g, a_min, a_max)[0]
                           for g in np.array_split(grid, 16)])
    return grid, mean


def y_marginal(y, noise: str, k: int, T: float, a_min: float = 1.0,
               a_max: float = 4.0) -> np.ndarray:
    """Exact stationary density of y on [0, 2π) on the cosine landscape.

    homogeneous: ∝ [e^(−a/T) I₀(a/T)]^k; ML-isotropic: ∝ a^(−(1 + 1/T)) (needs
    T > 2/(k − 2), else ``ValueError``: the law is not normalisable).
    """
    noise = _checks.choice("noise", noise, ("homogeneous", "ml"))
    k = _checks.integer("k", k, low=1)
    T = _checks.finite_float("T", T, low=0.0, low_open=True)
    _, ag = _grid(a_min, a_max)
    if noise == "ml" and not normalisable(k, T):
        raise ValueError(f"ML-type noise with T={T} <= 2/(k-2)={collapse_threshold(k):.4g} "
                         f"(k={k}) has no normalisable stationary law: it collapses")

    def logw(a):
        if noise == "homogeneous":
            return k * np.log(special.i0e(a / T))
        return -ml_exponent(T) * np.log(a)

    lg = logw(ag)
    top = lg.max()
    z = np.mean(np.exp(lg - top)) * 2 * np.pi
    return np.exp(logw(curvature(y, a_min, a_max)) - top) / z


def predicted_exponent(noise: str, k: int, T: float, a_min: float = 1.0,
                       a_max: float = 4.0) -> float:
    """The selection exponent the fit should find on the cosine landscape.

    ML-isotropic: 1 + 1/T (exact, the y-marginal is in the family). Homogeneous: the
    member of the family ∝ a^(−p) with the same E[log a] as the exact Bessel marginal
    (→ k/2 as T → 0; see :func:`homogeneous_exponent`).
    """
    noise = _checks.choice("noise", noise, ("homogeneous", "ml"))
    if noise == "ml":
        return ml_exponent(T)
    y, a = _grid(a_min, a_max)
    rho = y_marginal(y, "homogeneous", k, T, a_min, a_max)
    m = np.sum(rho * np.log(a)) / np.sum(rho)
    return float(exponent_from_mean_log_a(m, a_min, a_max))


# --- the law of L under ML-isotropic noise on the cosine landscape ---------------------------

@functools.lru_cache(maxsize=16)
def _sum_law(k: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Law of s = Σ_{j ≤ k}(1 − cos x_j), x uniform on the torus: (bin centres, masses).

    (1 − cos x)/2 = sin²(x/2) is Beta(½, ½) (arcsine); its exact bin masses on [0, 2]
    are convolved k times (FFT). Location error per term ≤ half a bin, mean zero.
    """
    edges = np.linspace(0.0, 2.0, n_bins + 1)
    cdf = (2 / np.pi) * np.arcsin(np.sqrt(np.clip(edges / 2, 0, 1)))
    mass = np.diff(cdf)
    size = k * n_bins
    f = np.fft.rfft(mass, size) ** k
    out = np.clip(np.fft.irfft(f, size), 0.0, None)
    width = 2.0 / n_bins
    centres = (np.arange(size) + k / 2) * width
    return centres, out / out.sum()


def loss_cdf(loss, k: int, T: float | None, a_min: float = 1.0, a_max: float = 4.0,
             n_bins: int = 8192) -> np.ndarray:
    """CDF of L(θ) under the stationary law (8.1) of ML-isotropic noise, cosine landscape.

    L = a(y)·s(x) with y and x independent: y ∝ a^(−q) on the circle, s with density
    ∝ s^(−q) g_k(s) (g_k the law of s under uniform x, :func:`_sum_law`), q = 1 + 1/T.
    Needs T > 2/(k − 2) (else ``ValueError``). ``T=None`` gives the reference law of L
    under the uniform measure on torus × circle (q = 0): the ratio of the two densities of
    L is exactly ∝ L^(−q), the power law itself.
    """
    k = _checks.integer("k", k, low=1)
    if T is None:
        q = 0.0
    elif not normalisable(k, T):
        raise ValueError(f"T={T} <= 2/(k-2)={collapse_threshold(k):.4g} (k={k}): the law "
                         f"(8.1) is not normalisable; there is no stationary CDF")
    else:
        q = ml_exponent(T)
    s, g = _sum_law(k, n_bins)
    w = g * s ** (-q)
    w /= w.sum()
    cs = np.concatenate([[0.0], np.cumsum(w)])
    # bin j holds s in [s_j − h/2, s_j + h/2]; interpolate the CDF linearly inside bins
    h = s[1] - s[0]
    knots = np.concatenate([[s[0] - h / 2], s + h / 2])
    _, a = _grid(a_min, a_max)
    rho = a ** (-q)
    rho /= rho.sum()
    ell = np.asarray(loss, np.float64)
    flat = ell.reshape(-1)
    out = np.empty(flat.shape)
    for i in range(0, flat.size, 64):          # (64, 4096) blocks of interpolation
        v = flat[i:i + 64, None] / a[None, :]
        out[i:i + 64] = np.interp(v, knots, cs, left=0.0, right=1.0) @ rho
    return out.reshape(ell.shape)


def sgd_collapse_threshold(lr: float, batch_size: int, n_examples: int) -> float:
    """a below which discrete SGD collapses on the orthogonal-data gain regression.

    With ZZᵀ = N·I each row coordinate w_i of the residual shrinks by (1 − ηaN/S) when
    example i is in the batch (probability S/N, ``iid`` batches) and is untouched
    otherwise, so log|w_i| has drift (S/N) log|1 − ηaN/S| per step: negative iff
    ηa < 2S/N, i.e. a < 2S/(ηN) — linear stability of a single example's step.
    """
    lr = _checks.finite_float("lr", lr, low=0.0, low_open=True)
    n = _checks.integer("n_examples", n_examples, low=1)
    s = _checks.integer("batch_size", batch_size, low=1, high=n)
    return 2.0 * s / (lr * n)
