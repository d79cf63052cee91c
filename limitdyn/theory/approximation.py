"""How good is the continuous-time approximation? (theory.md §5)

:func:`continuous_error` compares the stationary (θ, v) covariance of each continuous noise
model with the exact discrete one over a range of learning rates, fits the order in η of
each model's error, and splits the error of the paper's model into four terms along a chain
of models whose consecutive members differ in one ingredient only:

1. **noise shape**: continuous σ²H/S → continuous Σ(μ)/S;
2. **finite population**: Σ(μ)/S → κΣ(μ) (zero with ``replacement`` sampling);
3. **time discretisation**: continuous κΣ(μ) → discrete SGD with additive noise κΣ(μ);
4. **multiplicative noise**: discrete additive κΣ(μ) → exact discrete κΣ(θ).

Each term is ‖C_{i+1} − C_i‖_F/‖C_disc‖_F, so the four sum to at least the paper model's
total error (triangle inequality). For a :class:`~limitdyn.Quadratic` (constant per-step
noise C) terms 2 and 4 vanish and the chain runs σ²H/S → C → discrete C.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .. import _checks
from ..hyper import Hyper
from ..problems import LinearRegression, Quadratic
from . import continuous as _ct
from .discrete import DiscreteModel, UnstableError, discrete_stationary_cov

TERMS = ("noise shape", "finite population", "time discretisation", "multiplicative")


@dataclasses.dataclass(frozen=True)
class ApproximationReport:
    """Errors of continuous models against the exact discrete stationary covariance.

    ``errors[name]``, ``errors_theta[name]``, ``errors_v[name]``: relative Frobenius errors
    of the full (θ, v) covariance and of its θθ and vv blocks, one per lr (NaN where the lr
    was skipped). ``slopes[name]`` ± ``slope_stderr[name]``: least-squares slope of
    log error against log η (the order of the error in η). ``terms``: (len(lrs), 4) term
    decomposition (see the module docstring), ``dominant`` the largest term per lr.
    ``stable[i]`` is False for an lr outside the discrete stability region, with the reason
    in ``skipped[i]``.
    """

    lrs: np.ndarray
    noises: tuple[str, ...]
    model: str
    sampling: str
    momentum: float
    weight_decay: float
    batch_size: int | None
    stable: np.ndarray
    skipped: tuple[str | None, ...]
    errors: dict[str, np.ndarray]
    errors_theta: dict[str, np.ndarray]
    errors_v: dict[str, np.ndarray]
    slopes: dict[str, float]
    slope_stderr: dict[str, float]
    terms: np.ndarray
    dominant: tuple[str | None, ...]

    def to_dicts(self) -> list[dict[str, Any]]:
        """One flat dict per lr (errors per noise and block, terms, dominant term)."""
        rows = []
        for i, lr in enumerate(self.lrs):
            row: dict[str, Any] = {"lr": float(lr), "stable": bool(self.stable[i]),
                                   "skipped": self.skipped[i]}
            for name in self.noises:
                row[f"error[{name}]"] = float(self.errors[name][i])
                row[f"error_theta[{name}]"] = float(self.errors_theta[name][i])
                row[f"error_v[{name}]"] = float(self.errors_v[name][i])
            for j, term in enumerate(TERMS):
                row[f"term[{term}]"] = float(self.terms[i, j])
            row["dominant"] = self.dominant[i]
            rows.append(row)
        return rows

    def __str__(self) -> str:
        S = "N" if self.batch_size is None else str(self.batch_size)
        lines = [f"continuous ({self.model}) vs exact discrete stationary (θ, v) covariance: "
                 f"β={self.momentum:g}, λ={self.weight_decay:g}, S={S}, sampling "
                 f"{self.sampling!r}",
                 "relative Frobenius error ‖C_cont − C_disc‖/‖C_disc‖ (full / θθ / vv)"]
        width = 28
        lines.append(f"{'lr':>10}  " + "".join(f"{n:<{width}}" for n in self.noises))
        for i, lr in enumerate(self.lrs):
            if not self.stable[i]:
                lines.append(f"{lr:>10.4g}  skipped: {self.skipped[i]}")
                continue
            cells = "".join(
                f"{self.errors[n][i]:.2e} {self.errors_theta[n][i]:.2e} "
                f"{self.errors_v[n][i]:.2e}".ljust(width) for n in self.noises)
            lines.append(f"{lr:>10.4g}  {cells}")
        slopes = ", ".join(f"{n} {self.slopes[n]:.3f} ± {self.slope_stderr[n]:.3f}"
                           for n in self.noises)
        lines.append(f"fitted order in η (log-log slope ± s.e.): {slopes}")
        lines.append("term decomposition ‖ΔC‖/‖C_disc‖ along σ²H/S → Σ(μ)/S → κΣ(μ) → "
                     "discrete additive → exact discrete:")
        lines.append(f"{'lr':>10}  " + "".join(f"{t:>21}" for t in TERMS) + "  dominant")
        for i, lr in enumerate(self.lrs):
            if not self.stable[i]:
                lines.append(f"{lr:>10.4g}  skipped")
                continue
            lines.append(f"{lr:>10.4g}  " + "".join(f"{v:>21.3e}" for v in self.terms[i])
                         + f"  {self.dominant[i]}")
        return "\n".join(lines)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else (0.0 if np.linalg.norm(a) == 0
                                                                  else math.inf)


def fit_order(lrs: Any, errors: Any) -> tuple[float, float]:
    """Least-squares slope of log(error) on log(lr) and its standard error.

    Uses the finite positive errors only; (NaN, NaN) with fewer than two, standard error
    NaN with exactly two.
    """
    x = np.log(np.asarray(lrs, np.float64))
    e = np.asarray(errors, np.float64)
    ok = np.isfinite(e) & (e > 0) & np.isfinite(x)
    x, y = x[ok], np.log(e[ok])
    if len(x) < 2:
        return math.nan, math.nan
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx == 0:
        return math.nan, math.nan
    slope = float(xc @ (y - y.mean()) / sxx)
    if len(x) < 3:
        return slope, math.nan
    resid = y - y.mean() - slope * xc
    return slope, float(math.sqrt(float(resid @ resid) / (len(x) - 2) / sxx))


def _label(noise: Any, i: int) -> str:
    if isinstance(noise, str):
        return noise
    return f"matrix{i}"


def continuous_error(prob: LinearRegression | Quadratic, hp: Hyper, lrs: Any,
                     noises: tuple[Any, ...] = ("paper", "frozen", "isotropic", "exact"),
                     sampling: str = "iid", model: str = "langevin") -> ApproximationReport:
    """Validate the continuous approximation against exact discrete moments (theory.md §5).

    Args:
        prob: a LinearRegression or Quadratic.
        hp: momentum, weight decay and batch size; its lr is replaced by each of ``lrs``.
        lrs: learning rates (>= 5 over a decade is the intended use), all > 0.
        noises: continuous noise models to compare: names of
            :func:`~limitdyn.theory.continuous_stationary_cov` or (d, d) arrays.
        sampling: ``iid`` or ``replacement``.
        model: ``langevin`` or ``sme``.

    Returns:
        :class:`ApproximationReport`; an lr outside the discrete stability region is
        marked and skipped, and a continuous model without a stationary law at some lr
        (``exact`` noise past its own stability edge) gets NaN there.
    """
    if not isinstance(hp, Hyper):
        raise TypeError(f"hp must be a limitdyn.Hyper, got {type(hp).__name__}")
    model = _checks.choice("model", model, _ct.MODELS)
    lrs = _checks.real_array("lrs", lrs, ndim=1)
    if np.any(lrs <= 0):
        raise ValueError("lrs must all be > 0")
    if isinstance(noises, str) or not isinstance(noises, tuple | list):
        raise TypeError("noises must be a tuple of noise-model names or (d, d) arrays, got "
                        f"{type(noises).__name__}")
    if len(noises) == 0:
        raise ValueError("noises must not be empty")
    for nz in noises:
        _ct._noise_name(nz)             # validates names, rejects factor functions
    labels = tuple(_label(nz, i) for i, nz in enumerate(noises))
    if len(set(labels)) != len(labels):
        raise ValueError(f"noises must be distinct, got {labels}")
    # Validates the problem, sampling and H + λI once, before the sweep.
    DiscreteModel(prob, hp, sampling)

    L = len(lrs)
    errs = {n: np.full(L, np.nan) for n in labels}
    errs_t = {n: np.full(L, np.nan) for n in labels}
    errs_v = {n: np.full(L, np.nan) for n in labels}
    terms = np.full((L, len(TERMS)), np.nan)
    stable = np.zeros(L, bool)
    skipped: list[str | None] = [None] * L
    dominant: list[str | None] = [None] * L
    for i, lr in enumerate(lrs):
        hpl = hp.replace(lr=float(lr))
        try:
            exact = discrete_stationary_cov(prob, hpl, sampling)
        except UnstableError as err:
            skipped[i] = str(err).split(":")[0] + " (discrete unstable)"
            continue
        stable[i] = True
        d = exact.shape[0] // 2

        def cont(noise: Any, hpl: Hyper = hpl) -> np.ndarray:
            return _ct.continuous_stationary_cov(prob, hpl, noise, sampling=sampling,
                                                 model=model)

        for nz, name in zip(noises, labels, strict=True):
            try:
                C = cont(nz)
            except UnstableError:
                continue
            errs[name][i] = _rel(C, exact)
            errs_t[name][i] = _rel(C[:d, :d], exact[:d, :d])
            errs_v[name][i] = _rel(C[d:, d:], exact[d:, d:])
        dm = DiscreteModel(prob, hpl, sampling)
        sigma_mu = dm.sigma(dm.mu)
        S = dm.batch_size if isinstance(prob, LinearRegression) else 1
        chain = [cont("paper"),
                 cont(sigma_mu / S if dm.multiplicative else sigma_mu),
                 cont(dm.kappa * sigma_mu if dm.multiplicative else sigma_mu),
                 dm.stein(dm.inject(sigma_mu)),
                 exact]
        scale = np.linalg.norm(exact)
        if scale > 0:          # zero only without noise (full batch, iid)
            terms[i] = [np.linalg.norm(chain[j + 1] - chain[j]) / scale for j in range(4)]
            dominant[i] = TERMS[int(np.argmax(terms[i]))]
    slopes, stderr = {}, {}
    for name in labels:
        slopes[name], stderr[name] = fit_order(lrs[stable], errs[name][stable])
    return ApproximationReport(
        lrs=lrs, noises=labels, model=model, sampling=sampling, momentum=hp.momentum,
        weight_decay=hp.weight_decay, batch_size=hp.batch_size, stable=stable,
        skipped=tuple(skipped), errors=errs, errors_theta=errs_t, errors_v=errs_v,
        slopes=slopes, slope_stderr=stderr, terms=terms, dominant=tuple(dominant))
