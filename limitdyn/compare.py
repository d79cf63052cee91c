"""Turn (ensemble estimate, prediction) into errors, z-scores and a verdict.

For each phase-space block (θθ, vv, θv) and, for transient predictions, each recorded
step, :func:`compare` reports

* the relative Frobenius error ‖Ĉ − C‖_F / ‖C‖_F,
* the Monte Carlo **noise floor** √(Σ SE_ij² + (10 ε ‖C‖_F)²) / ‖C‖_F: the relative error
  expected from sampling noise alone (E‖Ĉ − C‖²_F = Σ Var Ĉ_ij when the estimate is
  unbiased), plus ten ulps of the simulation's float type ε for deterministic quantities,
* their ratio ρ = ‖Ĉ − C‖_F / √(Σ SE_ij²), the mean squared z-score (≈ 1 if the standard
  errors are right) and the largest |z|,

and passes a row when ρ <= k (default k = 4: an unbiased estimate has ρ² ≈ 1 with small
spread, so 4 is a tolerance of 16 expected squared errors).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .result import Result, phase_block
from .theory import Moments

BLOCKS = ("tt", "vv", "tv")


@dataclasses.dataclass(frozen=True)
class Row:
    quantity: str
    step: int | None
    block: str
    rel_error: float
    rel_floor: float
    ratio: float
    mean_z2: float
    max_abs_z: float
    passed: bool


@dataclasses.dataclass(frozen=True)
class Comparison:
    rows: tuple[Row, ...]
    k: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def worst_ratio(self) -> float:
        return max(r.ratio for r in self.rows)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in self.rows]

    def __str__(self) -> str:
        head = (f"{'quantity':<15}{'step':>8}  {'block':<5}{'rel.err':>10}{'floor':>10}"
                f"{'err/floor':>11}{'mean z²':>9}{'max|z|':>8}  verdict")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            step = "" if r.step is None else str(r.step)
            lines.append(f"{r.quantity:<15}{step:>8}  {r.block:<5}{r.rel_error:>10.3%}"
                         f"{r.rel_floor:>10.3%}{r.ratio:>11.2f}{r.mean_z2:>9.2f}"
                         f"{r.max_abs_z:>8.2f}  {'ok' if r.passed else 'FAIL'}")
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"verdict: {verdict} (every row needs err/floor <= {self.k:g})")
        return "\n".join(lines)


def _row(quantity, step, block, est, pred, se, k, denom, precision) -> Row:
    err = est - pred
    floor = float(np.sqrt(np.sum(se ** 2) + (precision * np.linalg.norm(pred)) ** 2))
    e = float(np.linalg.norm(err))
    if floor > 0:
        ratio = e / floor
    else:
        ratio = 0.0 if e == 0 else float("inf")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, err / se, np.where(err == 0, 0.0, np.inf))
    rel = (lambda v: v / denom) if denom > 0 else (lambda v: float("nan"))
    return Row(quantity, step, block, rel(e), rel(floor), ratio, float(np.mean(z ** 2)),
               float(np.max(np.abs(z))), ratio <= k)


def _cov_rows(quantity, step, est, pred, se, k, precision) -> list[Row]:
    rows = []
    for b in BLOCKS:
        p = phase_block(pred, b)
        # θv blocks can vanish (continuous model, β = 0 start): fall back to the whole matrix
        whole = float(np.linalg.norm(pred))
        denom = float(np.linalg.norm(p))
        if denom <= 1e-6 * whole:     # zero up to rounding: relative to the whole matrix
            denom = whole
        rows.append(_row(quantity, step, b, phase_block(est, b), p, phase_block(se, b), k,
                         denom, precision))
    return rows


def _precision(result: Result) -> float:
    """Relative rounding floor of the simulation's float type (10 ulps)."""
    return 10 * float(np.finfo(np.dtype(result.config.get("dtype", "float32"))).eps)


def compare(result: Result, prediction: Any, *, k: float = 4.0) -> Comparison:
    """Compare an ensemble with a prediction.

    Args:
        result: a :class:`~limitdyn.Result`.
        prediction: a (2d, 2d) stationary covariance (compared with
            ``result.stationary_cov``), or a :class:`~limitdyn.theory.Moments` (mean and
            covariance compared at every step present in both).
        k: a row passes when error <= k × noise floor.
    """
    if not isinstance(result, Result):
        raise TypeError(f"result must be a limitdyn.Result, got {type(result).__name__}")
    k = float(k)
    D = result.mean.shape[-1]
    precision = _precision(result)
    if isinstance(prediction, Moments):
        common = np.intersect1d(result.steps, prediction.steps)
        if common.size == 0:
            raise ValueError("the prediction shares no step with the result; pass "
                             "steps=result.steps to the theory")
        rows: list[Row] = []
        for s in common:
            i = int(np.searchsorted(result.steps, s))
            j = int(np.flatnonzero(prediction.steps == s)[0])
            for name, sl in (("mean θ", slice(0, D // 2)), ("mean v", slice(D // 2, D))):
                # relative to the larger of the mean's size and the spread around it
                spread = np.sqrt(max(np.trace(prediction.cov[j][sl, sl]), 0.0))
                denom = max(float(np.linalg.norm(prediction.mean[j, sl])), spread)
                rows.append(_row(name, int(s), "", result.mean[i, sl], prediction.mean[j, sl],
                                 result.stderr.mean[i, sl], k, denom, precision))
            rows += _cov_rows("cov", int(s), result.cov[i], prediction.cov[j],
                              result.stderr.cov[i], k, precision)
        return Comparison(tuple(rows), k)
    pred = np.asarray(prediction, dtype=np.float64)
    if pred.shape != (D, D):
        raise ValueError(f"prediction must be a ({D}, {D}) covariance or a theory.Moments, "
                         f"got shape {pred.shape}")
    return Comparison(tuple(_cov_rows("stationary cov", None, result.stationary_cov, pred,
                                      result.stderr.stationary_cov, k, precision)), k)
