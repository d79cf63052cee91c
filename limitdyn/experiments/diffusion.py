"""Experiment ``diffusion``: anomalous diffusion on power-law Hessian spectra (theory.md §6).

Two parts.

1. **Global displacement.** For each power p, a linear regression whose Hessian has the
   exact spectrum h_i = top · i^(−p) (i = 1 … d). Every trajectory starts at the minimiser
   with v = 0 (the checkpoint θ_0); Δ_k = ‖θ_k − θ_0‖² is recorded at log-spaced steps.
   The ensemble mean is compared with the exact discrete theory (deterministic start) and
   the continuous Langevin model with the paper's noise σ²H/S. The exponent c of Δ ∝ k^c is
   the least-squares slope of log Δ on log k over a stated window of steps; its confidence
   interval comes from a bootstrap over trajectories (resample trajectories, recompute the
   ensemble mean curve, refit). It is set next to c = 1/p and next to the slope of the
   exact theory over the same window, the finite-window value the simulation must match.
2. **Local displacement.** The stationary δ = η²‖v‖² at sweep points (η, S, β varied one
   at a time around the defaults) against the exact discrete value η² tr C_vv and the
   paper's η²σ² tr H/(S(1 − β²)) with σ² = 2L(θ*).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from ..config import ConfigError
from . import Context, register

_REFERENCE_D = 16384   # modes of the per-mode reference model (d → ∞ check of c = 1/p)


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    """Configuration of ``limitdyn run diffusion``.

    Problem: ``powers`` (spectrum exponents p > 1), ``d`` parameters, ``n`` examples,
    ``top`` = h_1 (largest Hessian eigenvalue), ``noise_std`` (label noise; σ² ≈ noise_std²).
    SGD: ``lr``, ``momentum``, ``batch_size``, ``weight_decay``, ``sampling`` ("iid" or
    "replacement", the modes the exact theory covers). Displacement runs: ``n_traj``
    trajectories × ``n_steps`` steps, ``n_record`` log-spaced recorded steps, exponent fitted
    for ``fit_start <= k <= fit_stop``, ``n_bootstrap`` bootstrap resamples. Local
    displacement: the problem with p = ``sweep_power``; ``sweep_lrs``, ``sweep_batch_sizes``,
    ``sweep_momenta`` varied one at a time (the others at their defaults), ``sweep_traj``
    trajectories × ``sweep_steps`` steps, averaged over ``sweep_burn_in <= k <= sweep_steps``.
    """

    powers: tuple[float, ...] = (1.5, 2.0, 3.0)
    d: int = 128
    n: int = 256
    top: float = 1.0
    noise_std: float = 0.5
    lr: float = 0.25
    momentum: float = 0.5
    batch_size: int = 8
    weight_decay: float = 0.0
    sampling: str = "iid"
    n_traj: int = 1024
    n_steps: int = 1000
    n_record: int = 40
    fit_start: int = 20
    fit_stop: int = 400
    n_bootstrap: int = 1000
    sweep_power: float = 2.0
    sweep_lrs: tuple[float, ...] = (0.0625, 0.125, 0.25, 0.5, 1.0)
    sweep_batch_sizes: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    sweep_momenta: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9)
    sweep_traj: int = 256
    sweep_steps: int = 2000
    sweep_burn_in: int = 1000

    def validate(self) -> None:
        if not self.powers:
            raise ValueError("powers must list at least one spectrum exponent p")
        if any(p <= 1 for p in self.powers):
            raise ValueError(f"every power must be > 1 (c = 1/p needs p > 1), got {self.powers}")
        if len(set(self.powers)) != len(self.powers):
            raise ValueError(f"powers must be distinct, got {self.powers}")
        if self.sweep_power <= 1:
            raise ValueError(f"sweep_power must be > 1, got {self.sweep_power}")
        if self.d < 2:
            raise ValueError(f"d must be >= 2, got {self.d}")
        if self.n < self.d:
            raise ValueError(f"n must be >= d = {self.d} (exact spectrum, unique minimiser), "
                             f"got {self.n}")
        if self.top <= 0 or self.noise_std <= 0:
            raise ValueError(f"top and noise_std must be > 0, got {self.top}, {self.noise_std}")
        if self.lr <= 0 or any(v <= 0 for v in self.sweep_lrs):
            raise ValueError("lr and every sweep_lrs value must be > 0")
        if not 0 <= self.momentum < 1 or any(not 0 <= b < 1 for b in self.sweep_momenta):
            raise ValueError("momentum and every sweep_momenta value must be in [0, 1)")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if any(not 1 <= s <= self.n for s in (self.batch_size, *self.sweep_batch_sizes)):
            raise ValueError(f"batch_size and every sweep_batch_sizes value must be in "
                             f"[1, n={self.n}]")
        if not (self.sweep_lrs and self.sweep_batch_sizes and self.sweep_momenta):
            raise ValueError("sweep_lrs, sweep_batch_sizes and sweep_momenta must be non-empty")
        if self.sampling not in ("iid", "replacement"):
            raise ValueError(f"sampling must be 'iid' or 'replacement' (the exact theory's "
                             f"modes), got {self.sampling!r}")
        if self.n_traj < 8 or self.sweep_traj < 8:
            raise ValueError(f"n_traj and sweep_traj must be >= 8, got {self.n_traj}, "
                             f"{self.sweep_traj}")
        if self.n_steps < 4 or self.n_record < 5:
            raise ValueError(f"n_steps must be >= 4 and n_record >= 5, got {self.n_steps}, "
                             f"{self.n_record}")
        if not 1 <= self.fit_start < self.fit_stop <= self.n_steps:
            raise ValueError(f"need 1 <= fit_start < fit_stop <= n_steps={self.n_steps}, got "
                             f"fit_start={self.fit_start}, fit_stop={self.fit_stop}")
        if len(_record_steps(self.n_steps, self.n_record, self.fit_start, self.fit_stop)[1]) < 4:
            raise ValueError(f"the fit window [{self.fit_start}, {self.fit_stop}] holds fewer "
                             f"than 4 recorded steps; widen it or raise n_record")
        if self.n_bootstrap < 50:
            raise ValueError(f"n_bootstrap must be >= 50, got {self.n_bootstrap}")
        if not 1 <= self.sweep_burn_in < self.sweep_steps:
            raise ValueError(f"need 1 <= sweep_burn_in < sweep_steps, got {self.sweep_burn_in}, "
                             f"{self.sweep_steps}")


QUICK = {"d": 96, "n": 192, "n_traj": 256, "n_steps": 300, "n_record": 30, "fit_start": 8,
         "fit_stop": 120, "n_bootstrap": 300, "sweep_lrs": [0.0625, 0.25, 1.0],
         "sweep_batch_sizes": [2, 8, 32], "sweep_momenta": [0.0, 0.5, 0.9], "sweep_traj": 128,
         "sweep_steps": 600, "sweep_burn_in": 300}


def _record_steps(n_steps: int, n_record: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Recorded steps (0 and log-spaced 1 … n_steps) and the indices inside [lo, hi]."""
    inner = np.round(np.geomspace(1, n_steps, n_record)).astype(np.int64)
    steps = np.unique(np.concatenate([[0], inner]))
    return steps, np.flatnonzero((steps >= lo) & (steps <= hi))


def _slopes(logk: np.ndarray, logy: np.ndarray) -> np.ndarray:
    """Least-squares slopes of logy (…, T) on logk (T,)."""
    x = logk - logk.mean()
    return (logy - logy.mean(axis=-1, keepdims=True)) @ x / (x @ x)


def _per_mode_displacement(h: np.ndarray, lr: float, beta: float, lam: float, s2: np.ndarray,
                           steps: np.ndarray) -> np.ndarray:
    """E Δ_k of the diagonal additive model (mode i: curvature h_i + λ, noise variance s2_i
    per step), exact per-mode 2×2 moment recursion from (θ, v) = (μ, 0)."""
    c = h + lam
    a, b = 1 - lr * c, lr * beta
    tt, tv, vv = np.zeros_like(h), np.zeros_like(h), np.zeros_like(h)
    out = np.empty(len(steps))
    want = {int(k): j for j, k in enumerate(steps)}
    for k in range(int(steps.max()) + 1):
        if k in want:
            out[want[k]] = tt.sum()
        tt, tv, vv = (a * a * tt + 2 * a * b * tv + b * b * vv + lr ** 2 * s2,
                      -a * c * tt + (a * beta - b * c) * tv + b * beta * vv + lr * s2,
                      c * c * tt - 2 * c * beta * tv + beta ** 2 * vv + s2)
    return out


def _problem(cfg: DiffusionConfig, ctx: Context, p: float, index: int):
    import limitdyn as ld

    return ld.LinearRegression.synthetic(ctx.subkey(1000 + index), n=cfg.n, d=cfg.d,
                                         spectrum=("power", p, cfg.top),
                                         noise_std=cfg.noise_std)


def _stationary_cov(prob, hp, sampling: str, where: str) -> np.ndarray:
    """Exact stationary covariance of (θ − μ, v) (theory.md §5); ConfigError if unstable."""
    from ..theory import UnstableError, discrete_stationary_cov

    try:
        return discrete_stationary_cov(prob, hp, sampling=sampling)
    except UnstableError as err:
        raise ConfigError(f"{where}: {err}") from None


def _check_stable(prob, hp, sampling: str, where: str) -> None:
    from ..theory.discrete import DiscreteModel

    model = DiscreteModel(prob, hp, sampling)
    rho = model.mean_radius
    if rho < 1:
        rho = max(rho, model.feedback_radius(max_iter=200, rtol=1e-6))
    if rho >= 1:
        raise ConfigError(f"{where}: outside the discrete stability region (spectral radius "
                          f"{rho:.4g} >= 1 of the mean or second-moment map)")


def _sigma2(prob) -> float:
    """σ² = 2L(θ*) (the paper's scalar noise level for MSE)."""
    X, y = prob.numpy()
    mu = np.asarray(prob.minimiser(), np.float64)
    r = X @ mu - y
    return float(np.mean(r * r))


def _kappa(cfg: DiffusionConfig, batch: int) -> float:
    from .. import samplers

    return samplers.finite_population_factor(cfg.sampling, cfg.n, batch)


# --- part 1: global displacement ---------------------------------------------------------

def _displacement_part(cfg: DiffusionConfig, ctx: Context, problems: dict) -> dict:
    import limitdyn as ld

    from .. import theory as th

    hp = ld.Hyper(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                  batch_size=cfg.batch_size)
    steps, win = _record_steps(cfg.n_steps, cfg.n_record, cfg.fit_start, cfg.fit_stop)
    pos = steps[1:]                        # k >= 1 (Δ_0 = 0)
    w = win - 1                            # window indices into pos
    logk = np.log(pos[w].astype(np.float64))
    beta, eta, lam = cfg.momentum, cfg.lr, cfg.weight_decay
    crossover = (1 + beta) / (1 - beta)
    out = {"steps": pos, "window_index": w, "rows": [], "window_rows": [], "early_rows": [],
           "per_p": {}}
    k_cross = int(pos[pos <= max(crossover, 1.0)].max())     # last recorded step <= crossover
    rng = np.random.default_rng([ctx.seed, 7])
    for i, p in enumerate(cfg.powers):
        prob = problems[p]
        ctx.say(f"p = {p:g}: theory (exact discrete to step {cfg.n_steps}, continuous) …")
        _check_stable(prob, hp, cfg.sampling, f"p={p:g}, lr={eta:g}, momentum={beta:g}, "
                      f"batch_size={cfg.batch_size}")
        exact = th.discrete_displacement(prob, hp, pos, sampling=cfg.sampling)
        cont = th.global_displacement(prob, hp, pos, noise="paper", sampling=cfg.sampling)
        h = cfg.top * np.arange(1, _REFERENCE_D + 1, dtype=np.float64) ** (-p)
        kappa = _kappa(cfg, cfg.batch_size)
        s2 = _sigma2(prob)
        ref = _per_mode_displacement(h, eta, beta, lam, kappa * s2 * h, pos[w])
        ctx.say(f"p = {p:g}: SGD ensemble ({cfg.n_traj} trajectories × {cfg.n_steps} steps) …")
        res = ctx.timed(ld.simulate_sgd(prob, hp, ctx.subkey(2000 + i), cfg.n_traj,
                                        cfg.n_steps, cfg.sampling, burn_in=cfg.n_steps,
                                        record=steps, keep_trajectories=True,
                                        progress=ctx.progress))
        d = cfg.d
        traj = res.trajectories[:, :, :d]
        dev = (traj[1:] - traj[0][None]).astype(np.float64)
        per_traj = np.sum(dev * dev, axis=-1)                      # (T−1, K)
        alive = np.all(np.isfinite(per_traj), axis=0)
        per_traj = per_traj[:, alive]
        n_alive = per_traj.shape[1]
        mc = res.displacement[1:]
        se = res.stderr.displacement[1:]
        c_mc = float(_slopes(logk, np.log(mc[w])))
        c_exact = float(_slopes(logk, np.log(exact[w])))
        c_cont = float(_slopes(logk, np.log(cont[w])))
        c_ref = float(_slopes(logk, np.log(ref)))
        counts = rng.multinomial(n_alive, np.full(n_alive, 1.0 / n_alive),
                                 size=cfg.n_bootstrap)
        boot_curves = counts @ per_traj[w].T / n_alive            # (B, T_w)
        boot = _slopes(logk, np.log(boot_curves))
        lo, hi = np.percentile(boot, [2.5, 97.5])
        boot_se = float(boot.std(ddof=1))
        z_curve = (mc - exact) / se
        hmin = cfg.top * cfg.d ** (-p) + lam
        hs = cfg.top * np.arange(1, d + 1, dtype=np.float64) ** (-p)
        n_sat = [int(np.sum(hs + lam >= (1 - beta) / (2 * eta * k)))
                 for k in (cfg.fit_start, cfg.fit_stop)]
        saturation = (1 - beta) / (2 * eta * hmin)
        out["per_p"][p] = dict(mc=mc, se=se, exact=exact, cont=cont, c_mc=c_mc,
                               c_exact=c_exact, c_cont=c_cont, c_ref=c_ref, ci=(lo, hi),
                               boot_se=boot_se, boot=boot, z_curve=z_curve,
                               max_z=float(np.max(np.abs(z_curve))),
                               diverged=int(res.n_diverged[-1]), saturation=saturation)
        out["rows"].append([f"{p:g}", 1 / p, c_exact, c_cont, c_ref, c_mc,
                            f"[{lo:.3f}, {hi:.3f}]", boot_se, (c_mc - c_exact) / boot_se])
        early = (float(np.log(exact[pos == k_cross][0] / exact[0]) / np.log(k_cross))
                 if k_cross > 1 else float("nan"))
        i_fit = int(w[0])
        out["early_rows"].append([f"{p:g}", exact[0], cont[0] / exact[0], k_cross, early,
                                  int(pos[i_fit]), cont[i_fit] / exact[i_fit],
                                  cont[-1] / exact[-1]])
        ctx.metrics.update({f"continuous_over_exact_k1_p{p:g}": float(cont[0] / exact[0]),
                            f"continuous_over_exact_fit_start_p{p:g}":
                                float(cont[i_fit] / exact[i_fit]),
                            f"early_slope_exact_p{p:g}": early})
        out["window_rows"].append([f"{p:g}", f"{crossover:.3g}", f"{cfg.fit_start}–{cfg.fit_stop}",
                                   f"{saturation:.4g}", len(w), f"{n_sat[0]} → {n_sat[1]}",
                                   float(out["per_p"][p]["max_z"])])
        ctx.out.add_arrays("diffusion", **{
            f"displacement_mc_p{p:g}": mc, f"displacement_se_p{p:g}": se,
            f"displacement_exact_p{p:g}": exact, f"displacement_continuous_p{p:g}": cont,
            f"bootstrap_exponents_p{p:g}": boot, f"reference_displacement_p{p:g}": ref,
            f"per_trajectory_window_displacement_p{p:g}": per_traj[w]})
        ctx.metrics.update({
            f"exponent_mc_p{p:g}": c_mc, f"exponent_mc_ci_low_p{p:g}": float(lo),
            f"exponent_mc_ci_high_p{p:g}": float(hi), f"exponent_mc_bootstrap_se_p{p:g}": boot_se,
            f"exponent_exact_window_p{p:g}": c_exact, f"exponent_continuous_window_p{p:g}": c_cont,
            f"exponent_reference_large_d_p{p:g}": c_ref, f"exponent_inverse_p_p{p:g}": 1 / p,
            f"displacement_max_abs_z_p{p:g}": out["per_p"][p]["max_z"]})
    ctx.out.add_arrays("diffusion", steps=pos, fit_window=np.array([cfg.fit_start, cfg.fit_stop]),
                       powers=np.array(cfg.powers))
    return out


# --- part 2: local displacement ----------------------------------------------------------

def _sweep_points(cfg: DiffusionConfig) -> list[tuple[str, float, dict]]:
    pts = [("lr", float(v), {"lr": v}) for v in cfg.sweep_lrs]
    pts += [("batch_size", float(v), {"batch_size": v}) for v in cfg.sweep_batch_sizes]
    pts += [("momentum", float(v), {"momentum": v}) for v in cfg.sweep_momenta]
    return pts


def _hyper(cfg: DiffusionConfig, **over):
    import limitdyn as ld

    args = dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                batch_size=cfg.batch_size) | over
    return ld.Hyper(**args)


def _local_exact(prob, hp, sampling: str, cache: dict) -> float:
    key = (hp.lr, hp.batch_size, hp.momentum)
    if key in cache:
        return cache[key]
    C = _stationary_cov(prob, hp, sampling, f"local displacement at lr={hp.lr:g}, "
                        f"batch_size={hp.batch_size}, momentum={hp.momentum:g}")
    d = C.shape[0] // 2
    cache[key] = float(hp.lr ** 2 * np.trace(C[d:, d:]))
    return cache[key]


def _paper(hp, sigma2: float, trH: float) -> float:
    return hp.lr ** 2 * sigma2 * trH / (hp.batch_size * (1 - hp.momentum ** 2))


def _line_grid(values: tuple, kind: str, n: int = 17) -> np.ndarray:
    """A dense grid over the sweep's range (log-spaced for lr and S, integers for S)."""
    lo, hi = float(min(values)), float(max(values))
    if lo == hi:
        return np.array([lo])
    if kind == "momentum":   # uniform in log(1 − β): dense where 1/(1 − β²) bends up
        return 1 - np.geomspace(1 - lo, 1 - hi, n)
    grid = np.geomspace(lo, hi, n)
    return np.unique(np.round(grid)) if kind == "batch_size" else grid


def _local_part(cfg: DiffusionConfig, ctx: Context, prob) -> dict:
    import limitdyn as ld

    X, _ = prob.numpy()
    trH = float(np.sum(X * X) / X.shape[0])
    sigma2 = _sigma2(prob)
    from ..theory.discrete import DiscreteModel

    model = DiscreteModel(prob, _hyper(cfg), cfg.sampling)
    sigma_ratio = float(np.trace(model.sigma(model.mu)) / (sigma2 * trH))
    rows, points, cache = [], [], {}
    for j, (kind, value, over) in enumerate(_sweep_points(cfg)):
        hp = _hyper(cfg, **over)
        exact = _local_exact(prob, hp, cfg.sampling, cache)
        paper = _paper(hp, sigma2, trH)
        kappa_s = _kappa(cfg, hp.batch_size) * hp.batch_size
        ctx.say(f"local displacement: {kind} = {value:g} ({cfg.sweep_traj} trajectories × "
                f"{cfg.sweep_steps} steps) …")
        res = ctx.timed(ld.simulate_sgd(prob, hp, ctx.subkey(3000 + j), cfg.sweep_traj,
                                        cfg.sweep_steps, cfg.sampling,
                                        burn_in=cfg.sweep_burn_in, n_record=8,
                                        progress=ctx.progress))
        meas = float(res.stationary_local_displacement)
        se = float(res.stderr.stationary_local_displacement)
        z = (meas - exact) / se
        points.append(dict(kind=kind, value=value, meas=meas, se=se, exact=exact, paper=paper,
                           kappa_s=kappa_s, z=z, diverged=int(res.n_diverged[-1])))
        rows.append([kind, f"{value:g}", f"{meas:.4g} ± {se:.2g}", exact, z, paper,
                     meas / paper, paper * kappa_s, meas / (paper * kappa_s)])
    # The paper's use: fit one constant A = σ² tr H in δ = A η²/(S(1 − β²)) to every point.
    shape = np.array([_paper(_hyper(cfg, **o), 1.0, 1.0) for _, _, o in _sweep_points(cfg)])
    meas = np.array([q["meas"] for q in points])
    a_fit = float(np.exp(np.mean(np.log(meas / shape))))
    fit_dev = meas / (a_fit * shape) - 1
    # Prediction lines (sweep values and midpoints).
    lines = {}
    for kind, values in (("lr", cfg.sweep_lrs), ("batch_size", cfg.sweep_batch_sizes),
                         ("momentum", cfg.sweep_momenta)):
        grid = _line_grid(values, kind)
        conv = int if kind == "batch_size" else float
        hps = [_hyper(cfg, **{kind: conv(g)}) for g in grid]
        lines[kind] = dict(
            grid=grid,
            exact=np.array([_local_exact(prob, hp, cfg.sampling, cache) for hp in hps]),
            paper=np.array([_paper(hp, sigma2, trH) for hp in hps]),
            paper_kappa=np.array([_paper(hp, sigma2, trH) * _kappa(cfg, hp.batch_size)
                                  * hp.batch_size for hp in hps]))
        sel = [q for q in points if q["kind"] == kind]
        ctx.out.add_arrays("diffusion", **{
            f"local_{kind}_values": np.array([q["value"] for q in sel]),
            f"local_{kind}_measured": np.array([q["meas"] for q in sel]),
            f"local_{kind}_se": np.array([q["se"] for q in sel]),
            f"local_{kind}_exact": np.array([q["exact"] for q in sel]),
            f"local_{kind}_paper": np.array([q["paper"] for q in sel]),
            f"local_{kind}_line_grid": lines[kind]["grid"],
            f"local_{kind}_line_exact": lines[kind]["exact"],
            f"local_{kind}_line_paper": lines[kind]["paper"],
            f"local_{kind}_line_paper_kappa": lines[kind]["paper_kappa"]})
    ratio = np.array([q["meas"] / q["paper"] for q in points])
    ctx.metrics.update({
        "local_max_abs_z_exact": float(max(abs(q["z"]) for q in points)),
        "local_paper_ratio_min": float(ratio.min()), "local_paper_ratio_max": float(ratio.max()),
        "local_sigma2_trH": sigma2 * trH, "local_trace_sigma_over_sigma2_trH": sigma_ratio,
        "local_one_constant_fit": a_fit,
        "local_one_constant_fit_max_abs_dev": float(np.max(np.abs(fit_dev))),
        "local_diverged": float(sum(q["diverged"] for q in points))})
    return dict(points=points, rows=rows, lines=lines, sigma2=sigma2, trH=trH, a_fit=a_fit,
                fit_dev=fit_dev, sigma_ratio=sigma_ratio)


# --- figures -------------------------------------------------------------------------------

_DELTA = r"$\Delta_k = \|\theta_k - \theta_0\|^2$"
_LOCAL = r"$\delta = \|\theta_{k+1} - \theta_k\|^2$"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fig_displacement(cfg: DiffusionConfig, disp: dict):
    plt = _plt()
    n = len(cfg.powers)
    fig, axes = plt.subplots(n, 1, figsize=(6.4, 3.1 * n + 0.4), sharex=True, squeeze=False)
    k = disp["steps"]
    w = disp["window_index"]
    crossover = (1 + cfg.momentum) / (1 - cfg.momentum)
    for ax, p in zip(axes[:, 0], cfg.powers, strict=True):
        r = disp["per_p"][p]
        ax.axvspan(cfg.fit_start, cfg.fit_stop, color="0.88", zorder=0,
                   label=f"fit window, steps {cfg.fit_start}–{cfg.fit_stop}")
        ax.axvline(crossover, color="0.5", ls=":", lw=1)
        ax.errorbar(k, r["mc"], yerr=r["se"], fmt="o", ms=3.5, color="C0", elinewidth=1,
                    capsize=0, zorder=3,
                    label=f"SGD, {cfg.n_traj} traj. (± SE): c = {r['c_mc']:.3f} "
                          f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]")
        ax.plot(k, r["exact"], "-", color="C1", lw=1.8, zorder=2,
                label=f"exact discrete theory: c = {r['c_exact']:.3f}")
        ax.plot(k, r["cont"], "--", color="C2", lw=1.5, zorder=2,
                label=rf"continuous Langevin, $\sigma^2 H/S$: c = {r['c_cont']:.3f}")
        kw = k[w]
        anchor = r["exact"][w][0]
        ax.plot(kw, anchor * (kw / kw[0]) ** (1 / p) * 1.8, "-", color="k", lw=1,
                label=rf"$\propto k^{{1/p}} = k^{{{1 / p:.3f}}}$ (shifted up)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel(_DELTA)
        ax.set_title(rf"p = {p:g}:  $h_i = {cfg.top:g}\cdot i^{{-{p:g}}}$, d = {cfg.d}",
                     fontsize=10)
        ax.legend(fontsize=7.5, loc="lower right", framealpha=0.9)
        ax.grid(True, which="major", alpha=0.3)
        ax.text(crossover * 1.08, 0.96, f"ballistic crossover (1+β)/(1−β) = {crossover:.3g}",
                fontsize=7, transform=ax.get_xaxis_transform(), color="0.35", va="top")
    axes[-1, 0].set_xlabel("SGD step k")
    fig.tight_layout()
    return fig


def _fig_exponents(cfg: DiffusionConfig, disp: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    inv = np.array([1 / p for p in cfg.powers])
    r = [disp["per_p"][p] for p in cfg.powers]
    c_mc = np.array([q["c_mc"] for q in r])
    err = np.array([[q["c_mc"] - q["ci"][0] for q in r], [q["ci"][1] - q["c_mc"] for q in r]])
    top = max(inv.max(), c_mc.max(), max(q["c_ref"] for q in r), 0.75) * 1.08
    grid = np.linspace(0, top, 10)
    ax.plot(grid, grid, "-", color="0.4", lw=1, label="c = 1/p (asymptote, d → ∞; §6)")
    ax.errorbar(inv, c_mc, yerr=err, fmt="o", color="C0", ms=6, capsize=4,
                label="SGD ensemble, 95% bootstrap CI", zorder=3)
    ax.plot(inv, [q["c_exact"] for q in r], "s", mfc="none", mec="C1", ms=11, mew=1.5,
            label=f"exact discrete theory, same window, d = {cfg.d} (tested)")
    ax.plot(inv, [q["c_ref"] for q in r], "^", mfc="none", mec="C3", ms=8, mew=1.3,
            label=f"per-mode model, d = {_REFERENCE_D}, same window")
    for x, p in zip(inv, cfg.powers, strict=True):
        ax.annotate(f"p = {p:g}", (x, x), textcoords="offset points", xytext=(8, -16),
                    fontsize=8, color="0.3")
    ax.set_xlabel(r"1/p   (Hessian spectrum $h_i \propto i^{-p}$)")
    ax.set_ylabel(rf"exponent c of $\Delta_k \propto k^c$ (steps {cfg.fit_start}–{cfg.fit_stop})")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


_SWEEP_LABELS = {"lr": ("learning rate η", "log"), "batch_size": ("batch size S", "log"),
                 "momentum": ("momentum β", "linear")}


def _sweep_axis(ax, cfg: DiffusionConfig, kind: str) -> None:
    import matplotlib.ticker as mticker

    fixed = {"lr": f"S = {cfg.batch_size}, β = {cfg.momentum:g}",
             "batch_size": f"η = {cfg.lr:g}, β = {cfg.momentum:g}",
             "momentum": f"η = {cfg.lr:g}, S = {cfg.batch_size}"}
    name, scale = _SWEEP_LABELS[kind]
    values = {"lr": cfg.sweep_lrs, "batch_size": cfg.sweep_batch_sizes,
              "momentum": cfg.sweep_momenta}[kind]
    ax.set_xscale(scale)
    ax.set_xticks(sorted(set(values)))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_xlabel(f"{name}   (fixed: {fixed[kind]})")
    ax.grid(True, which="major", alpha=0.3)


def _fig_local(cfg: DiffusionConfig, loc: dict):
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(6.0, 10.0))
    for ax, kind in zip(axes, ("lr", "batch_size", "momentum"), strict=True):
        line = loc["lines"][kind]
        pts = [q for q in loc["points"] if q["kind"] == kind]
        ax.plot(line["grid"], line["exact"], "-", color="C1", lw=1.8,
                label=r"exact discrete $\eta^2\,\mathrm{tr}\,C_{vv}$")
        ax.plot(line["grid"], line["paper"], "--", color="C2", lw=1.5,
                label=r"paper $\eta^2\sigma^2\,\mathrm{tr}H\,/\,(S(1-\beta^2))$")
        ax.plot(line["grid"], line["paper_kappa"], ":", color="0.45", lw=1.3,
                label=r"paper with $\kappa$ in place of $1/S$")
        ax.errorbar([q["value"] for q in pts], [q["meas"] for q in pts],
                    yerr=[q["se"] for q in pts], fmt="o", color="C0", ms=5, capsize=3,
                    zorder=3, label="SGD ensemble ± SE")
        ax.set_yscale("log")
        _sweep_axis(ax, cfg, kind)
        ax.set_ylabel("stationary " + _LOCAL)
        ax.legend(fontsize=7.5, loc="best")
    axes[0].set_title(f"local displacement, p = {cfg.sweep_power:g}, d = {cfg.d}, "
                      f"N = {cfg.n} ({cfg.sampling} batches)", fontsize=10)
    fig.tight_layout()
    return fig


def _fig_local_ratio(cfg: DiffusionConfig, loc: dict):
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(6.0, 9.0))
    for ax, kind in zip(axes, ("lr", "batch_size", "momentum"), strict=True):
        line = loc["lines"][kind]
        pts = [q for q in loc["points"] if q["kind"] == kind]
        ax.axhline(1.0, color="C2", ls="--", lw=1.5, label="paper's formula (= 1)")
        ax.plot(line["grid"], line["paper_kappa"] / line["paper"], ":", color="0.45", lw=1.3,
                label=r"paper with $\kappa$ in place of $1/S$")
        ax.plot(line["grid"], line["exact"] / line["paper"], "-", color="C1", lw=1.8,
                label="exact discrete theory")
        ax.errorbar([q["value"] for q in pts], [q["meas"] / q["paper"] for q in pts],
                    yerr=[q["se"] / q["paper"] for q in pts], fmt="o", color="C0", ms=5,
                    capsize=3, zorder=3, label="SGD ensemble ± SE")
        _sweep_axis(ax, cfg, kind)
        ax.set_ylabel(r"$\delta$ / paper's $\eta^2\sigma^2\,\mathrm{tr}H/(S(1-\beta^2))$")
        ax.legend(fontsize=7.5, loc="best")
    axes[0].set_title(f"local displacement relative to the paper's formula "
                      f"(σ² = 2L(θ*) = {loc['sigma2']:.3g})", fontsize=10)
    fig.tight_layout()
    return fig


# --- the experiment --------------------------------------------------------------------------

@register("diffusion", "anomalous diffusion on power-law Hessian spectra: Δ_k with theory, "
          "fitted exponents against the exact finite-d slope (c = 1/p beside), "
          "local-displacement scaling", DiffusionConfig, QUICK)
def run_diffusion(cfg: DiffusionConfig, ctx: Context):
    problems = {p: _problem(cfg, ctx, p, i) for i, p in enumerate(cfg.powers)}
    sweep_prob = problems.get(cfg.sweep_power)
    if sweep_prob is None:
        sweep_prob = _problem(cfg, ctx, cfg.sweep_power, len(cfg.powers))

    disp = _displacement_part(cfg, ctx, problems)
    beta, eta = cfg.momentum, cfg.lr
    crossover = (1 + beta) / (1 - beta)
    ctx.table("Fit window", ["p", "ballistic crossover (1+β)/(1−β)", "window (steps)",
                             "slowest-mode saturation (1−β)/(2η(h_d+λ))", "points in window",
                             "saturated modes at window ends", "max |z| of Δ_k vs exact"],
              disp["window_rows"],
              note=f"Mode i saturates after ≈ (1−β)/(2η h_i) steps; the exponent c = 1/p needs "
                   f"the window to sit after the ballistic crossover ({crossover:.3g} steps) and "
                   f"before the flattest mode saturates, with many modes between its ends. "
                   f"z = (Monte Carlo − exact)/SE at each recorded step k >= 1.")
    ctx.table("Fitted exponents", ["p", "c = 1/p", "exact theory, window", "continuous, window",
                                   f"per-mode model d={_REFERENCE_D}", "SGD (MC)",
                                   "MC 95% CI", "bootstrap SE", "(MC − exact)/SE"],
              disp["rows"],
              note=f"Least squares of log Δ on log k over recorded steps {cfg.fit_start} <= k <= "
                   f"{cfg.fit_stop}; CI: percentile bootstrap over trajectories "
                   f"({cfg.n_bootstrap} resamples of {cfg.n_traj} trajectories, ensemble mean "
                   f"recomputed and refitted each time). The verdict compares the Monte Carlo "
                   f"exponent with the exact theory's exponent over the same window: c = 1/p is "
                   f"an asymptotic statement (d → ∞, window → ∞), and at finite d and a finite "
                   f"window the exact expectation has its own slope, the only value a correct "
                   f"simulation must reproduce. The per-mode model (diagonal additive noise "
                   f"κσ²h_i, {_REFERENCE_D} modes, same window) shows how much of the gap to "
                   f"1/p is the finite d.")
    ctx.table("Ballistic start and the continuous model",
              ["p", "exact Δ_1", "continuous / exact at k = 1", "k_c", "exact slope over 1…k_c",
               "k (window start)", "continuous / exact there", f"continuous / exact at k = "
               f"{int(disp['steps'][-1])}"],
              disp["early_rows"],
              note=f"theory.md §6: ballistic growth Δ ∝ k² for k ≲ (1+β)/(1−β) = {crossover:.3g}; "
                   f"k_c is the last recorded step below that. From v₀ = 0 the first step is "
                   f"pure gradient noise, so the discrete chain's early slope is below 2; "
                   f"theory.md §5 expects the continuous model (started at v = 0) to be off by "
                   f"≈ 66% over the first (1+β)/(1−β) steps.")
    ctx.figure(_fig_displacement(cfg, disp), "displacement.png",
               f"Global displacement Δ_k from the minimiser (v₀ = 0): SGD ensemble (points, ± SE) "
               f"against the exact discrete theory (solid) and the continuous Langevin model with "
               f"σ²H/S noise (dashed); shaded: the fit window; dotted: the ballistic crossover. "
               f"η = {eta:g}, β = {beta:g}, S = {cfg.batch_size}, N = {cfg.n}.")
    ctx.figure(_fig_exponents(cfg, disp), "exponents.png",
               f"Fitted exponent c against 1/p: SGD ensemble with 95% bootstrap CI, the exact "
               f"theory's slope over the same window at d = {cfg.d} (what the verdict tests), "
               f"a per-mode model at d = {_REFERENCE_D} over the same window, and the "
               f"asymptote c = 1/p (d → ∞).")

    per_p = disp["per_p"]
    bad = [f"p={p:g}: {per_p[p]['c_mc']:.3f} vs {per_p[p]['c_exact']:.3f} "
           f"(SE {per_p[p]['boot_se']:.3f})" for p in cfg.powers
           if abs(per_p[p]["c_mc"] - per_p[p]["c_exact"]) > 3 * per_p[p]["boot_se"]]
    each = "; ".join(
        f"p={p:g}: {per_p[p]['c_mc']:.3f} vs {per_p[p]['c_exact']:.3f} "
        f"({(per_p[p]['c_mc'] - per_p[p]['c_exact']) / per_p[p]['boot_se']:+.2f} SE; "
        f"asymptote 1/p = {1 / p:.3f}, d = {_REFERENCE_D} model {per_p[p]['c_ref']:.3f})"
        for p in cfg.powers)
    ctx.verdict("exponent_matches_exact_theory", not bad,
                f"tests the finite-d, finite-window exponent: the Monte Carlo slope of log Δ_k "
                f"on log k over steps {cfg.fit_start}–{cfg.fit_stop} is within 3 bootstrap SEs "
                f"of the exact discrete theory's slope over the same steps at d = {cfg.d}, for "
                f"every p. The asymptotic c = 1/p (d → ∞, theory.md §6) is shown beside it, "
                f"not tested: {each}"
                + (f"; outside: {'; '.join(bad)}" if bad else ""))
    if len(cfg.powers) >= 2:
        order = sorted(cfg.powers)
        cs = [per_p[p]["c_mc"] for p in order]
        falls = all(a > b for a, b in itertools.pairwise(cs))
        ctx.verdict("exponent_falls_with_p", falls,
                    "Monte Carlo exponents strictly decrease with p (as the asymptotic 1/p "
                    "does): " + ", ".join(f"p={p:g}: {c:.3f} (1/p = {1 / p:.3f})"
                                          for p, c in zip(order, cs, strict=True)))
    worst = max(per_p[p]["max_z"] for p in cfg.powers)
    diverged = sum(per_p[p]["diverged"] for p in cfg.powers)
    ctx.verdict("displacement_curve_matches_exact_theory", worst <= 4 and diverged == 0,
                f"|Monte Carlo − exact discrete| <= 4 SE at every recorded step for every p "
                f"(largest |z| = {worst:.2f}; diverged trajectories: {diverged})")

    loc = _local_part(cfg, ctx, sweep_prob)
    ctx.table("Local displacement", ["varied", "value", "SGD δ ± SE", "exact η² tr C_vv",
                                     "z (MC vs exact)", "paper η²σ²trH/(S(1−β²))", "MC / paper",
                                     "paper·κS", "MC / (paper·κS)"],
              loc["rows"],
              note=f"p = {cfg.sweep_power:g}, N = {cfg.n}, {cfg.sampling} batches; the others "
                   f"at η = {eta:g}, S = {cfg.batch_size}, β = {beta:g}. δ averaged over steps "
                   f"{cfg.sweep_burn_in}–{cfg.sweep_steps} of {cfg.sweep_traj} trajectories "
                   f"(batch-means SE). σ² = 2L(θ*) = {loc['sigma2']:.4g}, tr H = "
                   f"{loc['trH']:.4g}. The paper's formula uses a noise covariance σ²H/S; "
                   f"without-replacement batches have κΣ with κ = (N−S)/(S(N−1)) < 1/S (the "
                   f"'paper·κS' column), the exact discrete chain adds the finite-η factor "
                   f"1/(1 − ηh/(2(1+β))) per mode and the multiplicative noise term, and Σ(θ*) "
                   f"is not exactly σ²H (here tr Σ(θ*)/(σ² tr H) = {loc['sigma_ratio']:.3f}). "
                   f"Fitting one constant A in δ = A η²/(S(1−β²)) to all "
                   f"points (the paper's use) gives A = {loc['a_fit']:.4g} against "
                   f"σ² tr H = {loc['sigma2'] * loc['trH']:.4g}, with point deviations up to "
                   f"{100 * np.max(np.abs(loc['fit_dev'])):.1f}%.")
    ctx.figure(_fig_local(cfg, loc), "local_displacement.png",
               "Stationary local displacement against η, S and β (one at a time): SGD ensemble "
               "± SE, exact discrete prediction (solid), the paper's η²σ² tr H/(S(1−β²)) "
               "(dashed) and the same with κ in place of 1/S (dotted).")
    ctx.figure(_fig_local_ratio(cfg, loc), "local_displacement_ratio.png",
               "The same measurements divided by the paper's η²σ² tr H/(S(1−β²)): where the "
               "no-free-parameter scaling law holds (ratio 1) and where it does not.")
    pts = loc["points"]
    worst_local = max(pts, key=lambda q: abs(q["z"]))
    n_div = sum(q["diverged"] for q in pts)
    ctx.verdict("local_displacement_matches_exact_theory",
                all(abs(q["z"]) <= 4 for q in pts) and n_div == 0,
                f"stationary δ within 4 SE of η² tr C_vv at all {len(pts)} sweep points "
                f"(largest |z| = {abs(worst_local['z']):.2f} at {worst_local['kind']} = "
                f"{worst_local['value']:g}; diverged trajectories: {n_div})")

    ctx.metrics.update({"fit_start": float(cfg.fit_start), "fit_stop": float(cfg.fit_stop),
                        "ballistic_crossover_steps": float(crossover)})
    title = "Anomalous diffusion on power-law Hessian spectra"
    powers = ", ".join(f"{p:g}" for p in cfg.powers)
    intro = (
        f"Linear regression with d = {cfg.d} parameters and N = {cfg.n} examples whose Hessian "
        f"has the exact spectrum h_i = {cfg.top:g}·i^−p, p ∈ {{{powers}}}; "
        f"SGD with η = {eta:g}, β = {beta:g}, S = {cfg.batch_size}, λ = {cfg.weight_decay:g} "
        f"({cfg.sampling} batches), {cfg.n_traj} trajectories started at the minimiser with "
        f"v = 0 and run for {cfg.n_steps} steps. theory.md §6 predicts Δ_k ∝ k^c with c = 1/p "
        f"between the ballistic crossover and the saturation of the flattest mode, "
        f"asymptotically (d → ∞); here c is fitted over steps {cfg.fit_start}–{cfg.fit_stop} "
        f"with a bootstrap CI over trajectories and tested against what a run at d = {cfg.d} "
        f"must reproduce — the exact discrete theory's own slope over that window — with 1/p "
        f"and a d = {_REFERENCE_D} per-mode model beside it (not tested). The "
        f"second part checks the stationary local displacement δ against the exact "
        f"η² tr C_vv and the paper's η²σ² tr H/(S(1−β²)) while η, S and β are varied.")
    if math.isfinite(crossover) and cfg.fit_start <= crossover:
        intro += (f"\n\nNote: the fit window starts at step {cfg.fit_start}, inside the "
                  f"ballistic regime (crossover ≈ {crossover:.3g} steps).")
    return title, intro
