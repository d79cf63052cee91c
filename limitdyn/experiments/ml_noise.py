"""Experiment ``ml-noise``: flat-minimum selection by noise of machine-learning type (theory.md §8).

Landscape L(x, y) = a(y) Σ_{j≤k}(1 − cos x_j), a(y) from a_min (y = 0) to a_max (y = π),
x on the torus, y on the circle (:class:`limitdyn.mlnoise.CosineLandscape`).

1. **Selection exponents.** For homogeneous noise (T = ``homogeneous_T``) and ML-isotropic
   noise (each T in ``temperatures``), k in ``ks``: the time-averaged law of y after burn-in
   is fitted by ρ ∝ a(y)^(−p) (maximum likelihood: E_p[log a] = observed mean; 95% CI by a
   bootstrap over paths). Each case runs at dt and 2dt; the Richardson value 2p(dt) − p(2dt)
   removes the first-order step bias. Predictions: k/2 (homogeneous; the exact finite-T
   Bessel marginal is shown too) and 1 + 1/T (ML). Cases with T <= 2/(k − 2) collapse and
   have no stationary law: their log L decay rate is fitted against 2a[T(k − 2)/2 − 1].
2. **dt-convergence at T = 1** (k = ks[0]): Euler–Maruyama at ``convergence_dts`` and the
   time-changed scheme at ``time_change_dts``.
3. **Stationary law of L** under ML-isotropic noise: the final states of independent paths
   (one per path) against the exact CDF (KS and a 10-bin χ² test, threshold ``alpha``), and
   the histogram of L divided by its law under the uniform measure against L^(−(1+1/T)).
4. **Curvature-shaped noise** on the landscape (k = ks[0], T = ``curvature_T``): which
   paths collapse, against a < 2/((k − 2)T).
5. **Discrete SGD on an interpolating regression** (:class:`limitdyn.mlnoise.GainRegression`,
   N orthogonal examples, gain √a(y)) against ML-isotropic, curvature-shaped and SGD's own
   noise at the matched T = ηκ: where each collapses.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import Context, register


@dataclasses.dataclass(frozen=True)
class MLNoiseConfig:
    """Configuration of ``limitdyn run ml-noise``.

    Landscape: ``ks`` (codimensions), curvature from ``a_min`` to ``a_max``. ML runs:
    ``temperatures``, ``n_paths`` paths over time ``horizon`` (averages after ``burn_in``),
    Euler–Maruyama step ``dt`` (and 2dt for the Richardson value). Homogeneous runs:
    ``homogeneous_T``, ``homogeneous_dt``, ``homogeneous_horizon``, ``homogeneous_burn_in``.
    T = 1 study: ``convergence_dts`` (Euler–Maruyama) and ``time_change_dts`` (steps in the
    clock dτ = max(L, 1) dt). ``increments``: "rademacher" (±1, simplified weak Euler) or
    "gaussian". ``curvature_T``, ``curvature_horizon``: curvature-shaped run. Regression:
    ``reg_n`` examples in ℝ^``reg_p``, SGD ``reg_lr``, ``reg_batch``, ``reg_steps`` steps,
    ``reg_paths`` paths, continuous step ``reg_dt``, start scale ``reg_init_scale``.
    ``n_boot`` bootstrap resamples; ``alpha`` the KS/χ² significance threshold.
    """

    ks: tuple[int, ...] = (8, 16)
    temperatures: tuple[float, ...] = (0.25, 0.5, 1.0)
    a_min: float = 1.0
    a_max: float = 4.0
    n_paths: int = 1000
    horizon: float = 20.0
    burn_in: float = 5.0
    dt: float = 2e-3
    homogeneous_T: float = 0.1
    homogeneous_dt: float = 0.01
    homogeneous_horizon: float = 60.0
    homogeneous_burn_in: float = 10.0
    convergence_dts: tuple[float, ...] = (4e-3, 2e-3, 1e-3)
    time_change_dts: tuple[float, ...] = (1.6e-2, 8e-3)
    increments: str = "rademacher"
    curvature_T: float = 0.125
    curvature_horizon: float = 30.0
    reg_n: int = 16
    reg_p: int = 24
    reg_lr: float = 0.2
    reg_batch: int = 4
    reg_steps: int = 500
    reg_paths: int = 500
    reg_dt: float = 0.01
    reg_init_scale: float = 0.1
    n_boot: int = 1000
    alpha: float = 0.01

    def validate(self) -> None:
        if not self.ks or any(k < 3 for k in self.ks) or len(set(self.ks)) != len(self.ks):
            raise ValueError(f"ks must be distinct codimensions >= 3, got {self.ks}")
        if any(k > 256 for k in self.ks):
            raise ValueError(f"ks must be <= 256, got {self.ks}")
        if not self.temperatures or any(not 0 < t <= 10 for t in self.temperatures):
            raise ValueError(f"temperatures must be in (0, 10], got {self.temperatures}")
        if not 0 < self.a_min < self.a_max:
            raise ValueError(f"need 0 < a_min < a_max, got {self.a_min}, {self.a_max}")
        if not 16 <= self.n_paths <= 1 << 20 or not 16 <= self.reg_paths <= 1 << 20:
            raise ValueError(f"n_paths and reg_paths must be in [16, 2^20], got "
                             f"{self.n_paths}, {self.reg_paths}")
        for name in ("horizon", "homogeneous_horizon", "curvature_horizon"):
            if not 0 < getattr(self, name) <= 1e4:
                raise ValueError(f"{name} must be in (0, 1e4], got {getattr(self, name)}")
        if not 0 <= self.burn_in < self.horizon:
            raise ValueError(f"need 0 <= burn_in < horizon, got {self.burn_in}, {self.horizon}")
        if not 0 <= self.homogeneous_burn_in < self.homogeneous_horizon:
            raise ValueError("need 0 <= homogeneous_burn_in < homogeneous_horizon")
        for name in ("dt", "homogeneous_dt", "reg_dt"):
            if not 0 < getattr(self, name) <= 0.1:
                raise ValueError(f"{name} must be in (0, 0.1], got {getattr(self, name)}")
        if not self.convergence_dts or any(not 0 < d <= 0.1 for d in self.convergence_dts):
            raise ValueError(f"convergence_dts must be in (0, 0.1], got {self.convergence_dts}")
        if not self.time_change_dts or any(not 0 < d <= 1 for d in self.time_change_dts):
            raise ValueError(f"time_change_dts must be in (0, 1], got {self.time_change_dts}")
        steps = max(self.horizon / min(self.dt, *self.convergence_dts),
                    self.homogeneous_horizon / self.homogeneous_dt,
                    self.reg_steps * self.reg_lr / self.reg_dt)
        if steps > 1e7:
            raise ValueError(f"a run would take {steps:.3g} steps (> 1e7); raise the steps or "
                             f"shorten the horizons")
        if self.increments not in ("rademacher", "gaussian"):
            raise ValueError(f"increments must be 'rademacher' or 'gaussian', got "
                             f"{self.increments!r}")
        if not 0 < self.homogeneous_T <= 10 or not 0 < self.curvature_T <= 10:
            raise ValueError("homogeneous_T and curvature_T must be in (0, 10]")
        if not 3 <= self.reg_n <= self.reg_p <= 4096:
            raise ValueError(f"need 3 <= reg_n <= reg_p <= 4096, got {self.reg_n}, {self.reg_p}")
        if not 1 <= self.reg_batch < self.reg_n:
            raise ValueError(f"reg_batch must be in [1, reg_n), got {self.reg_batch}")
        if not 0 < self.reg_lr <= 10 or not 1 <= self.reg_steps <= 10 ** 6:
            raise ValueError("reg_lr must be in (0, 10] and reg_steps in [1, 1e6]")
        if not 0 < self.reg_init_scale <= 10:
            raise ValueError(f"reg_init_scale must be in (0, 10], got {self.reg_init_scale}")
        if self.n_boot < 100:
            raise ValueError(f"n_boot must be >= 100, got {self.n_boot}")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")


QUICK = {"n_paths": 256, "horizon": 8.0, "burn_in": 3.0, "dt": 4e-3,
         "homogeneous_horizon": 30.0, "homogeneous_burn_in": 6.0, "homogeneous_dt": 0.02,
         "convergence_dts": [8e-3, 4e-3], "time_change_dts": [3.2e-2],
         "curvature_horizon": 10.0, "reg_paths": 200, "reg_steps": 300, "reg_dt": 0.02,
         "n_boot": 400}

_SLUGS = {"SGD (discrete)": "sgd_discrete", "ML-isotropic": "ml_isotropic",
          "ML curvature-shaped": "ml_curvature", "SGD's own noise (SME)": "sgd_sme"}
_CHUNK = 250            # steps per compiled call: one kernel per model, snapshots between
_COLLAPSED_LANDSCAPE = 1e-4   # the landscape's collapse is slow (rate ∝ a − a_c)
_COLLAPSED = 1e-8        # L below this at the end: collapsed onto the minimiser set


def _steps(horizon: float, dt: float, m: int = 10) -> int:
    return max(m, math.ceil(horizon / dt / m) * m)


class _Runner:
    """Runs with their own subkeys; adds timings to the context."""

    def __init__(self, cfg: MLNoiseConfig, ctx: Context):
        self.cfg, self.ctx, self.slot = cfg, ctx, 0

    def __call__(self, land, noise: str, **kw):
        from .. import mlnoise as ml

        self.slot += 1
        kw.setdefault("increments", self.cfg.increments)
        kw.setdefault("chunk", _CHUNK)
        res = ml.simulate(land, noise, self.ctx.subkey(self.slot), progress=self.ctx.progress,
                          **kw)
        return self._timed(res)

    def sgd(self, reg, **kw):
        from .. import mlnoise as ml

        self.slot += 1
        kw.setdefault("chunk", _CHUNK)
        return self._timed(ml.simulate_sgd(reg, self.ctx.subkey(self.slot),
                                           progress=self.ctx.progress, **kw))

    def _timed(self, res):
        return res      # the runner accounts every simulation in the context itself


def _fit(res, cfg: MLNoiseConfig):
    f = res.fit_exponent(n_boot=cfg.n_boot, seed=int(res.config["n_steps"]) % 1000)
    return f


def _richardson(f1, f2) -> tuple[float, float]:
    """2p(dt) − p(2dt) and its SE (independent runs)."""
    return 2 * f1.value - f2.value, math.hypot(2 * f1.stderr, f2.stderr)


# --- part 1: selection exponents ------------------------------------------------------------

def _selection(cfg: MLNoiseConfig, ctx: Context, run: _Runner) -> dict:
    from .. import mlnoise as ml
    from ..theory import mlnoise as th

    out = {"rows": [], "cases": [], "collapse": []}
    for k in cfg.ks:
        land = ml.CosineLandscape(k, cfg.a_min, cfg.a_max)
        cases = [("homogeneous", cfg.homogeneous_T)] + [("ml", T) for T in cfg.temperatures]
        for noise, T in cases:
            hom = noise == "homogeneous"
            dt = cfg.homogeneous_dt if hom else cfg.dt
            horizon = cfg.homogeneous_horizon if hom else cfg.horizon
            burn = cfg.homogeneous_burn_in if hom else cfg.burn_in
            ctx.say(f"k = {k}, {noise} noise, T = {T:g}: dt = {dt:g} and {2 * dt:g} …")
            fine = run(land, noise, T=T, dt=dt, n_paths=cfg.n_paths,
                       n_steps=_steps(horizon, dt), burn_in=burn)
            collapse = noise == "ml" and not th.normalisable(k, T)
            coarse = run(land, noise, T=T, dt=2 * dt, n_paths=cfg.n_paths,
                         n_steps=_steps(horizon, 2 * dt), burn_in=burn)
            f1, f2 = _fit(fine, cfg), _fit(coarse, cfg)
            rich, rich_se = _richardson(f1, f2)
            pred = th.homogeneous_exponent(k) if hom else th.ml_exponent(T)
            exact = th.predicted_exponent(noise, k, T, cfg.a_min, cfg.a_max)
            case = dict(k=k, noise=noise, T=T, dt=dt, fine=fine, coarse=coarse, f1=f1, f2=f2,
                        rich=rich, rich_se=rich_se, pred=pred, exact=exact, collapse=collapse,
                        diverged=fine.n_diverged + coarse.n_diverged)
            out["cases"].append(case)
            tag = f"{noise}_k{k}_T{T:g}"
            ctx.metrics.update({f"exponent_{tag}": f1.value, f"exponent_se_{tag}": f1.stderr,
                                f"exponent_ci_low_{tag}": f1.ci[0],
                                f"exponent_ci_high_{tag}": f1.ci[1],
                                f"exponent_2dt_{tag}": f2.value,
                                f"exponent_richardson_{tag}": rich,
                                f"exponent_richardson_se_{tag}": rich_se,
                                f"exponent_predicted_{tag}": pred})
            status = "collapses (no stationary law)" if collapse else "stationary"
            out["rows"].append([
                noise, k, f"{T:g}", status, f"{pred:.3f}", f"{exact:.3f}",
                f"{f1.value:.3f} ± {f1.stderr:.3f}", f"[{f1.ci[0]:.3f}, {f1.ci[1]:.3f}]",
                f"{f2.value:.3f} ± {f2.stderr:.3f}", f"{rich:.3f} ± {rich_se:.3f}",
                f"{(rich - pred) / pred:+.1%}", f"{(rich - exact) / rich_se:+.2f}",
                case["diverged"]])
            ctx.out.add_arrays("selection", **{
                f"y_density_{tag}": fine.y_density()[0], f"y_density_se_{tag}": fine.y_density()[1],
                f"weight_{tag}": fine.weight, f"log_a_{tag}": fine.log_a})
            if collapse:
                out["collapse"].append(_collapse_rate(fine, k, T))
    ctx.out.add_arrays("selection", y_edges=out["cases"][0]["fine"].y_edges)
    return out


def _collapse_rate(res, k: int, T: float) -> dict:
    """Fit d log L/dt = c·a (paths frozen at y): per path least-squares slope of log L over the
    second half of the snapshots (L > 1e-30), then c = Σ slope·a / Σ a² with SE from the
    scatter across paths (independent)."""
    from ..theory import mlnoise as th

    n = res.snap_t.shape[0]
    half = slice(n // 2, n)
    t = res.snap_t[half]
    logl = np.log(np.maximum(res.snap_loss[half], 1e-300))
    # the rate is a statement about the quadratic neighbourhood (L ≪ a): keep paths that
    # stay there, and above float32's floor
    ok = res.alive & np.all((res.snap_loss[half] > 1e-30) & (res.snap_loss[half] < 1e-2), axis=0)
    tc = t - t.mean(axis=0)
    slope = np.sum(tc * (logl - logl.mean(axis=0)), axis=0) / np.sum(tc * tc, axis=0)
    a = res.snap_a[-1]
    s, aa = slope[ok], a[ok]
    c = float(np.sum(s * aa) / np.sum(aa * aa))
    resid = s - c * aa
    se = float(np.sqrt(np.sum(resid ** 2 * aa ** 2)) / np.sum(aa * aa))
    pred = float(th.log_loss_rate(1.0, k, T, "ml"))
    return dict(k=k, T=T, c=c, se=se, pred=pred, n=int(ok.sum()), slope=slope, a=a,
                final_loss=res.final_loss)


# --- part 2: dt-convergence at T = 1 ---------------------------------------------------------

def _convergence(cfg: MLNoiseConfig, ctx: Context, run: _Runner) -> dict:
    from .. import mlnoise as ml
    from ..theory import mlnoise as th

    k = cfg.ks[0]
    land = ml.CosineLandscape(k, cfg.a_min, cfg.a_max)
    T = 1.0
    rows, pts = [], []
    for dt in sorted(cfg.convergence_dts, reverse=True):
        ctx.say(f"T = 1 convergence: Euler–Maruyama dt = {dt:g} …")
        res = run(land, "ml", T=T, dt=dt, n_paths=cfg.n_paths, n_steps=_steps(cfg.horizon, dt),
                  burn_in=cfg.burn_in)
        pts.append(("em", dt, _fit(res, cfg), res))
    # the time change needs ≈ horizon·E[max(L, 1)]/dt steps; E from the law (8.1)
    mean_clock = _mean_clock(k, T, cfg)
    for dt in sorted(cfg.time_change_dts, reverse=True):
        n = _steps(1.3 * cfg.horizon * mean_clock, dt)
        ctx.say(f"T = 1 convergence: time change dτ = max(L, 1) dt, dτ = {dt:g} ({n} steps) …")
        res = run(land, "ml", T=T, dt=dt, n_paths=cfg.n_paths, n_steps=n, solver="time-change",
                  burn_in=cfg.burn_in, t_end=cfg.horizon)
        pts.append(("time-change", dt, _fit(res, cfg), res))
    pred = th.ml_exponent(T)
    for solver, dt, f, res in pts:
        unfinished = (int(np.sum(res.t < cfg.horizon * (1 - 1e-3)))
                      if solver == "time-change" else 0)
        rows.append([solver, f"{dt:g}", int(res.config["n_steps"]),
                     f"{f.value:.3f} ± {f.stderr:.3f}", f"[{f.ci[0]:.3f}, {f.ci[1]:.3f}]",
                     f"{(f.value - pred) / pred:+.2%}", f"{(f.value - pred) / f.stderr:+.2f}",
                     f"{res.run_seconds:.1f}", unfinished, res.n_diverged])
        ctx.metrics[f"t1_exponent_{solver}_dt{dt:g}"] = f.value
        ctx.metrics[f"t1_exponent_se_{solver}_dt{dt:g}"] = f.stderr
    em = [(dt, f) for s, dt, f, _ in pts if s == "em"]
    em.sort(key=lambda q: q[0])
    if len(em) >= 2:
        (d1, f1), (d2, f2) = em[0], em[1]
        r = d2 / d1
        extra = (r * f1.value - f2.value) / (r - 1)
        extra_se = math.hypot(r * f1.stderr, f2.stderr) / (r - 1)
    else:
        extra, extra_se = em[0][1].value, em[0][1].stderr
    ctx.metrics.update({"t1_em_extrapolated": extra, "t1_em_extrapolated_se": extra_se})
    ctx.out.add_arrays("convergence", dts=np.array([dt for _, dt, _, _ in pts]),
                       exponents=np.array([f.value for _, _, f, _ in pts]),
                       stderr=np.array([f.stderr for _, _, f, _ in pts]),
                       is_time_change=np.array([s == "time-change" for s, _, _, _ in pts]))
    return dict(k=k, rows=rows, pts=pts, extra=extra, extra_se=extra_se, pred=pred,
                mean_clock=mean_clock)


def _mean_clock(k: int, T: float, cfg: MLNoiseConfig) -> float:
    """E[max(L, 1)] under (8.1), from the exact CDF on a grid."""
    from ..theory import mlnoise as th

    grid = np.geomspace(1e-6, 2 * k * cfg.a_max, 400)
    cdf = th.loss_cdf(grid, k, T, cfg.a_min, cfg.a_max)
    mid = 0.5 * (grid[1:] + grid[:-1])
    return float(cdf[0] + np.sum(np.maximum(mid, 1.0) * np.diff(cdf)))


# --- part 3: the stationary law of L -----------------------------------------------------------

def _loss_law(cfg: MLNoiseConfig, ctx: Context, sel: dict) -> dict:
    from scipy import stats

    from ..theory import mlnoise as th

    rows, cases = [], []
    for case in sel["cases"]:
        if case["noise"] != "ml" or case["collapse"]:
            continue
        k, T, res = case["k"], case["T"], case["fine"]
        ok = res.alive
        sample = res.final_loss[ok]

        def cdf(x, k=k, T=T):
            return th.loss_cdf(x, k, T, cfg.a_min, cfg.a_max)

        ks = stats.kstest(sample, cdf)
        # 10 equiprobable bins of the predicted law
        grid = np.geomspace(1e-7, 2 * k * cfg.a_max, 3000)
        cg = cdf(grid)
        qs = np.interp(np.linspace(0, 1, 11)[1:-1], cg, grid)
        counts = np.bincount(np.searchsorted(qs, sample), minlength=10)
        chi2 = float(np.sum((counts - len(sample) / 10) ** 2 / (len(sample) / 10)))
        chi2_p = float(stats.chi2.sf(chi2, 9))
        # density of L over its density under the uniform measure (exactly ∝ L^(−q))
        edges = 10.0 ** res.logl_edges
        inner = res.l_hist[ok][:, 1:-1].sum(axis=0)
        mass = inner / res.weight[ok].sum()
        ref = np.diff(th.loss_cdf(edges, k, None, cfg.a_min, cfg.a_max))
        pred_mass = np.diff(cdf(edges))
        q = th.ml_exponent(T)
        centres = np.sqrt(edges[1:] * edges[:-1])
        # the reference law comes from a binned convolution (bin 2/8192 in s): trust it
        # for L >= 0.1 only
        good = (ref > 1e-12) & (mass > 0) & (edges[:-1] >= 0.1)
        slope = float(np.polyfit(np.log(centres[good]), np.log(mass[good] / ref[good]), 1,
                                 w=np.sqrt(mass[good] * res.weight[ok].sum()))[0])
        cases.append(dict(k=k, T=T, centres=centres, mass=mass, ref=ref, pred_mass=pred_mass,
                          q=q, ks=ks, chi2=chi2, chi2_p=chi2_p, slope=slope, edges=edges,
                          sample=sample))
        rows.append([k, f"{T:g}", len(sample), f"{ks.statistic:.4f}", f"{ks.pvalue:.3g}",
                     f"{chi2:.2f}", f"{chi2_p:.3g}", f"{-q:.3f}", f"{slope:.3f}"])
        tag = f"k{k}_T{T:g}"
        ctx.metrics.update({f"ks_statistic_{tag}": float(ks.statistic),
                            f"ks_pvalue_{tag}": float(ks.pvalue),
                            f"chi2_{tag}": chi2, f"chi2_pvalue_{tag}": chi2_p,
                            f"loss_power_slope_{tag}": slope})
        ctx.out.add_arrays("loss_law", **{f"final_loss_{tag}": sample,
                                          f"mass_{tag}": mass, f"uniform_mass_{tag}": ref,
                                          f"predicted_mass_{tag}": pred_mass,
                                          f"edges_{tag}": edges})
    return dict(rows=rows, cases=cases)


# --- part 4: curvature-shaped noise on the landscape ------------------------------------------

def _curvature_part(cfg: MLNoiseConfig, ctx: Context, run: _Runner) -> dict:
    from .. import mlnoise as ml
    from ..theory import mlnoise as th

    k, T = cfg.ks[0], cfg.curvature_T
    land = ml.CosineLandscape(k, cfg.a_min, cfg.a_max)
    ctx.say(f"curvature-shaped noise, k = {k}, T = {T:g} …")
    res = run(land, "ml-curvature", T=T, dt=cfg.dt, n_paths=cfg.n_paths,
              n_steps=_steps(cfg.curvature_horizon, cfg.dt))
    a_c = th.curvature_collapse_threshold(k, T)
    L, a = res.final_loss, res.final_a
    collapsed = res.alive & (L < _COLLAPSED_LANDSCAPE)
    trapped = res.alive & (L > 0.95 * 2 * k * a)   # at a loss maximum, where G vanishes
    out = dict(k=k, T=T, a_c=a_c, res=res, collapsed=collapsed, trapped=trapped,
               frac_collapsed=float(collapsed.mean()), frac_trapped=float(trapped.mean()),
               frac_below=float(np.mean(a[collapsed] <= a_c)) if collapsed.any() else math.nan,
               max_a=float(a[collapsed].max()) if collapsed.any() else math.nan)
    ctx.metrics.update({"curvature_fraction_collapsed": out["frac_collapsed"],
                        "curvature_fraction_at_maxima": out["frac_trapped"],
                        "curvature_collapsed_below_threshold": out["frac_below"],
                        "curvature_threshold": a_c})
    ctx.out.add_arrays("curvature", final_loss=L, final_a=a)
    return out


# --- part 5: SGD on an interpolating regression -----------------------------------------------

def _regression_part(cfg: MLNoiseConfig, ctx: Context, run: _Runner) -> dict:
    from scipy import stats

    from .. import mlnoise as ml
    from .. import samplers
    from ..theory import mlnoise as th

    reg = ml.GainRegression.orthogonal(ctx.subkey(900), cfg.reg_n, cfg.reg_p, a_min=cfg.a_min,
                                       a_max=cfg.a_max, init_scale=cfg.reg_init_scale)
    kappa = samplers.finite_population_factor("iid", cfg.reg_n, cfg.reg_batch)
    T = cfg.reg_lr * kappa
    horizon = cfg.reg_steps * cfg.reg_lr
    common = dict(n_paths=cfg.reg_paths, l_cap=1e8)
    ctx.say(f"regression: SGD η = {cfg.reg_lr:g}, S = {cfg.reg_batch} ({cfg.reg_steps} steps) …")
    models = {"SGD (discrete)": run.sgd(reg, lr=cfg.reg_lr, batch_size=cfg.reg_batch,
                                        n_steps=cfg.reg_steps, **common)}
    for name, noise in (("ML-isotropic", "ml"), ("ML curvature-shaped", "ml-curvature"),
                        ("SGD's own noise (SME)", "sgd")):
        ctx.say(f"regression: {name}, T = ηκ = {T:.4g} …")
        models[name] = run(reg, noise, T=T, dt=cfg.reg_dt, n_steps=_steps(horizon, cfg.reg_dt),
                           **common)
    a_sgd = th.sgd_collapse_threshold(cfg.reg_lr, cfg.reg_batch, cfg.reg_n)
    a_curv = th.curvature_collapse_threshold(cfg.reg_n, T)
    t_c = th.collapse_threshold(cfg.reg_n)
    rows, summary = [], {}
    for name, res in models.items():
        L, a = res.final_loss, res.final_a
        col = res.alive & (L < _COLLAPSED)
        ac = a[col]
        q = np.percentile(ac, [10, 50, 90]) if col.any() else [math.nan] * 3
        summary[name] = dict(a=a, collapsed=col, res=res)
        rows.append([name, f"{float(col.mean()):.3f}", res.n_diverged,
                     f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}",
                     f"{float(np.mean(ac <= a_sgd)) if col.any() else math.nan:.3f}",
                     f"{float(np.mean(ac <= a_curv)) if col.any() else math.nan:.3f}",
                     f"{res.run_seconds:.1f}"])
        slug = _SLUGS[name]
        ctx.metrics.update({f"regression_{slug}_collapsed": float(col.mean()),
                            f"regression_{slug}_median_a": float(q[1])})
        ctx.out.add_arrays("regression", **{f"final_a_{slug}": a, f"final_loss_{slug}": L})
    sgd_a = summary["SGD (discrete)"]["a"][summary["SGD (discrete)"]["collapsed"]]
    dists = {}
    for name, s in summary.items():
        if name.startswith("SGD (discrete)") or not s["collapsed"].any() or sgd_a.size == 0:
            continue
        dists[name] = float(stats.ks_2samp(sgd_a, s["a"][s["collapsed"]]).statistic)
    ctx.metrics.update({"regression_T": T, "regression_sgd_threshold": a_sgd,
                        "regression_curvature_threshold": a_curv})
    return dict(rows=rows, summary=summary, a_sgd=a_sgd, a_curv=a_curv, T=T, t_c=t_c,
                kappa=kappa, dists=dists, horizon=horizon)


# --- the experiment ----------------------------------------------------------------------------

@register("ml-noise", "noise of machine-learning type: flat-minimum selection exponents, the "
          "stationary law L^-(1+1/T), collapse, and SGD on an interpolating regression",
          MLNoiseConfig, QUICK)
def run_ml_noise(cfg: MLNoiseConfig, ctx: Context):
    from . import _ml_noise_plots as plots

    run = _Runner(cfg, ctx)
    sel = _selection(cfg, ctx, run)
    conv = _convergence(cfg, ctx, run)
    law = _loss_law(cfg, ctx, sel)
    curv = _curvature_part(cfg, ctx, run)
    reg = _regression_part(cfg, ctx, run)

    ctx.table("Selection exponents",
              ["noise", "k", "T", "stationary law", "prediction", "exact finite-T",
               "fit at dt ± SE", "95% CI (dt)", "fit at 2dt ± SE", "Richardson 2p(dt)−p(2dt)",
               "Richardson vs prediction", "(Richardson − exact)/SE", "diverged"],
              sel["rows"],
              note=f"Weight of minima with curvature a(y): the time-averaged density of y after "
                   f"burn-in (every state is attributed to its nearest minimiser "
                   f"(2π·round(x/2π), y)), fitted by ρ ∝ a(y)^−p with a(y) from {cfg.a_min:g} "
                   f"to {cfg.a_max:g}. Maximum likelihood: E_p[log a] = observed mean; SE and "
                   f"95% CI from {cfg.n_boot} bootstrap resamples of the paths "
                   f"({cfg.n_paths} per run). dt = {cfg.dt:g} (ML), {cfg.homogeneous_dt:g} "
                   f"(homogeneous); ML horizon {cfg.horizon:g} (burn-in {cfg.burn_in:g}), "
                   f"homogeneous {cfg.homogeneous_horizon:g} ({cfg.homogeneous_burn_in:g}); "
                   f"increments: {cfg.increments}. Predictions: k/2 (homogeneous) and 1 + 1/T "
                   f"(ML); 'exact finite-T' is the fit applied to the exact marginal "
                   f"[e^(−a/T)I₀(a/T)]^k for homogeneous noise. ML runs with T <= 2/(k−2) "
                   f"collapse onto the minimisers: their exponent describes a transient.")
    ctx.figure(plots.selection(cfg, sel), "selection.png",
               "Time-averaged density of y against the curvature a(y) (log–log), with the fitted "
               "power (solid) and the prediction (dashed), per k; homogeneous noise and "
               "ML-isotropic noise at each T.")
    ctx.figure(plots.exponents(cfg, sel), "exponents.png",
               "Fitted selection exponents (Richardson value, ±2 SE) against the predictions "
               "k/2 (homogeneous) and 1 + 1/T (ML); hollow: collapsing cases.")
    if sel["collapse"]:
        ctx.table("Collapse below T = 2/(k − 2)",
                  ["k", "T", "2/(k−2)", "paths used", "fitted c in d log L/dt = c·a",
                   "predicted 2[T(k−2)/2 − 1]", "(fit − pred)/SE"],
                  [[c["k"], f"{c['T']:g}", f"{2 / (c['k'] - 2):.4g}", c["n"],
                    f"{c['c']:.4f} ± {c['se']:.4f}", f"{c['pred']:.4f}",
                    f"{(c['c'] - c['pred']) / c['se']:+.2f}"] for c in sel["collapse"]],
                  note="Per path, the least-squares slope of log L against t over the second "
                       "half of the run (paths with 1e-30 < L < 1e-2 throughout); y "
                       "freezes as L → 0, so the slope is regressed on the final a(y) "
                       "through the origin; SE from the scatter across paths. "
                       "Itô's formula near the minimisers predicts d log L = 2a[T(k−2)/2 − 1] dt "
                       "+ noise (theory/mlnoise.py). Where the paths freeze is set by the start "
                       "and the transient, not by a stationary law.")
        ctx.figure(plots.collapse(sel), "collapse.png",
                   "Collapsing ML runs: per-path decay rate of log L against a(y), with the "
                   "predicted line 2a[T(k−2)/2 − 1].")
    ctx.table(f"dt-convergence at T = 1 (k = {conv['k']})",
              ["solver", "dt (or dτ)", "steps", "fitted exponent ± SE", "95% CI",
               "vs 1 + 1/T = 2", "z vs 2", "run s", "paths short of horizon", "diverged"],
              conv["rows"],
              note=f"Euler–Maruyama's step bias is first order: the extrapolation from its two "
                   f"finest steps is {conv['extra']:.3f} ± {conv['extra_se']:.3f} (prediction "
                   f"2). The time change takes steps dτ in the clock dτ = max(L, 1) dt (mean "
                   f"clock rate E[max(L, 1)] = {conv['mean_clock']:.2f} under (8.1)), i.e. "
                   f"small steps where L and the noise are large; paths stop at t = "
                   f"{cfg.horizon:g}.")
    ctx.figure(plots.convergence(conv), "convergence.png",
               "Fitted exponent at T = 1 against the step: Euler–Maruyama (circles, with the "
               "first-order extrapolation) and the time-changed scheme (squares); ±2 SE.")
    ctx.table("Stationary law of L (ML-isotropic)",
              ["k", "T", "paths", "KS D", "KS p", "χ² (9 df)", "χ² p", "power −(1+1/T)",
               "fitted power of density ratio"],
              law["rows"],
              note=f"One sample per path (its final state, so samples are independent) against "
                   f"the exact CDF of L under p ∝ L^−(1+1/T) (theory/mlnoise.py: L = a(y)s(x), "
                   f"y and x independent). χ²: 10 equiprobable bins of the predicted law. "
                   f"Pass: both p-values >= {cfg.alpha:g}. Last column: slope of log[time-"
                   f"averaged density of L / density of L under the uniform measure] against "
                   f"log L over L >= 0.1 — exactly −(1+1/T) under (8.1). Runs at dt = {cfg.dt:g}.")
    if law["cases"]:
        ctx.figure(plots.loss_law(law), "loss_law.png",
                   "Stationary law of L: time-averaged histogram divided by the law of L under "
                   "the uniform measure (points), against L^−(1+1/T) (lines); right: the "
                   "histogram of L itself with the exact prediction, drawn only where the "
                   "reference law (a binned FFT convolution) is above its round-off (mass per "
                   "bin > 1e-12).")
    ctx.table(f"Curvature-shaped noise on the landscape (k = {curv['k']}, T = {curv['T']:g})",
              ["a_c = 2/((k−2)T)", "collapsed (L < 1e-4)", "collapsed with a <= a_c",
               "largest a among collapsed", "stuck at a loss maximum"],
              [[f"{curv['a_c']:.3f}", f"{curv['frac_collapsed']:.3f}",
                f"{curv['frac_below']:.3f}", f"{curv['max_a']:.3f}",
                f"{curv['frac_trapped']:.3f}"]],
              note="Noise covariance 2T·L·G with G the Gauss–Newton matrix of L = ½Σr_j², "
                   "r_j = 2√a sin(x_j/2). G vanishes where cos(x_j/2) = 0 — at the loss "
                   "maxima x_j = π — and there the multiplicative noise can hold a coordinate "
                   "(log|π − x| drifts at a − Ta²s/4): paths 'stuck at a loss maximum' have "
                   "L > 0.95·2k·a(y). Collapse happens only where a < a_c.")
    ctx.figure(plots.curvature(curv), "curvature.png",
               "Curvature-shaped noise on the landscape: final log10 L against a(y) per path; "
               "dotted: a_c = 2/((k−2)T), below which paths collapse.")
    ctx.table("Which minima each model selects: interpolating regression",
              ["model", "collapsed (L < 1e-8)", "diverged", "a(y) of collapsed: 10% / 50% / 90%",
               f"share with a <= {reg['a_sgd']:.2f} (SGD stability)",
               f"share with a <= {reg['a_curv']:.2f} (curvature threshold)", "run s"],
              reg["rows"],
              note=f"r_i = √a(y)·z_iᵀw, N = {cfg.reg_n} orthogonal examples (ZZᵀ = N·I) in "
                   f"ℝ^{cfg.reg_p}, L = (1/2N)‖r‖², start w ~ N(0, {cfg.reg_init_scale:g}²I), "
                   f"y uniform. SGD: η = {cfg.reg_lr:g}, S = {cfg.reg_batch} (iid batches), "
                   f"{cfg.reg_steps} steps, t = ηk up to {reg['horizon']:g}; continuous models at "
                   f"T = ηκ = {reg['T']:.4g} (κ = {reg['kappa']:.4g}), dt = {cfg.reg_dt:g}. "
                   f"Predictions: SGD collapses iff a < 2S/(ηN) = {reg['a_sgd']:.3g} (a sampled "
                   f"example's step must contract); curvature-shaped noise iff a < 2/((N−2)T) "
                   f"= {reg['a_curv']:.3g}; ML-isotropic collapses everywhere since T < "
                   f"2/(N−2) = {reg['t_c']:.3g}, so it keeps the starting a; SGD's own noise is "
                   f"diagonal here (Σ = a²(N diag(w²) − wwᵀ) in row coordinates), and its SME "
                   f"collapses everywhere. Two-sample KS distance of the collapsed a to SGD's: "
                   + ", ".join(f"{k}: {v:.3f}" for k, v in reg["dists"].items()) + ".")
    ctx.figure(plots.regression(reg), "regression.png",
               "Final curvature a(y) of collapsed paths on the interpolating regression: "
               "discrete SGD against the three continuous models at T = ηκ; dotted lines: "
               "the SGD stability threshold 2S/(ηN) and the curvature-shaped threshold "
               "2/((N−2)T).")

    # --- verdicts ---
    def ok(case):
        rel = abs(case["rich"] - case["pred"]) / case["pred"]
        z = abs(case["rich"] - case["exact"]) / case["rich_se"]
        return rel <= 0.10 or z <= 3, rel, z

    for noise, label in (("homogeneous", "homogeneous_exponents"),
                         ("ml", "ml_exponents_T_le_0.5")):
        chosen = [c for c in sel["cases"] if c["noise"] == noise and not c["collapse"]
                  and (noise == "homogeneous" or c["T"] <= 0.5)]
        if not chosen:
            continue
        parts, passed = [], True
        for c in chosen:
            good, rel, z = ok(c)
            passed &= good and c["diverged"] == 0
            parts.append(f"k={c['k']} T={c['T']:g}: {c['rich']:.3f} ± {c['rich_se']:.3f} vs "
                         f"{c['pred']:.3f} ({rel:.1%}, {z:.1f} SE)")
        ctx.verdict(label, passed, "Richardson-extrapolated exponent within 10% of the "
                    "prediction or within 3 SE of the exact finite-T value: " + "; ".join(parts))
    if sel["collapse"]:
        good = all(abs(c["c"] - c["pred"]) <= max(3 * c["se"], 0.1 * abs(c["pred"]))
                   for c in sel["collapse"])
        ctx.verdict("collapse_rate", good, "log L decay rate per unit curvature within 3 SE "
                    "or 10% of 2[T(k−2)/2 − 1]: " + "; ".join(
                        f"k={c['k']} T={c['T']:g}: {c['c']:.4f} ± {c['se']:.4f} vs "
                        f"{c['pred']:.4f}" for c in sel["collapse"]))
    z_extra = (conv["extra"] - conv["pred"]) / conv["extra_se"]
    em_vals = [f.value for s, _, f, _ in sorted(conv["pts"], key=lambda q: -q[1]) if s == "em"]
    tc = [(dt, f) for s, dt, f, _ in conv["pts"] if s == "time-change"]
    tc_best = min(tc, key=lambda q: q[0])[1] if tc else None
    tc_ok = tc_best is None or abs(tc_best.value - 2) <= max(3 * tc_best.stderr, 0.02)
    ctx.verdict("t1_dt_convergence", abs(z_extra) <= 3 and tc_ok,
                f"T = 1, k = {conv['k']}: Euler–Maruyama exponents "
                + " → ".join(f"{v:.3f}" for v in em_vals)
                + f" as dt halves; first-order extrapolation {conv['extra']:.3f} ± "
                  f"{conv['extra_se']:.3f} (z = {z_extra:+.2f} vs 2)"
                + (f"; time change at dτ = {min(tc)[0]:g}: {tc_best.value:.3f} ± "
                   f"{tc_best.stderr:.3f}" if tc_best else ""))
    if law["cases"]:
        bad = [c for c in law["cases"] if c["ks"].pvalue < cfg.alpha or c["chi2_p"] < cfg.alpha]
        ctx.verdict("ml_loss_law", not bad,
                    f"final L of independent paths against the CDF of L under L^−(1+1/T) "
                    f"(KS and χ² p >= {cfg.alpha:g}): " + "; ".join(
                        f"k={c['k']} T={c['T']:g}: D={c['ks'].statistic:.3f} "
                        f"(p={c['ks'].pvalue:.3g}), χ² p={c['chi2_p']:.3g}"
                        for c in law["cases"]))
    div = sum(c["diverged"] for c in sel["cases"]) + conv_divergences(conv)
    ctx.verdict("no_divergence_on_landscape", div == 0,
                f"diverged paths on the cosine landscape (all selection and convergence runs): "
                f"{div}")
    sgd_share = float(np.mean(reg["summary"]["SGD (discrete)"]["a"][
        reg["summary"]["SGD (discrete)"]["collapsed"]] <= reg["a_sgd"] * 1.02))
    ctx.metrics["regression_sgd_share_below_threshold"] = sgd_share
    ctx.metrics["experiment_horizon_ml"] = cfg.horizon

    intro = (
        f"Wojtowytsch's noise of machine-learning type on L = a(y)·Σ_(j≤k)(1 − cos x_j), "
        f"a(y) from {cfg.a_min:g} to {cfg.a_max:g}, k ∈ {{{', '.join(map(str, cfg.ks))}}}: "
        f"Itô SDE dθ = −∇L dt + √(2T)S(θ)dW with S Sᵀ = I (homogeneous), L·I (ML-isotropic) or "
        f"L·G (curvature-shaped, G Gauss–Newton). theory.md §8 (derived in "
        f"limitdyn/theory/mlnoise.py): ML-isotropic noise has the stationary density "
        f"p ∝ L^−(1+1/T), which weights minima of curvature a by a^−(1+1/T) (independent of "
        f"k) and is normalisable only for T > 2/(k−2) (else the paths collapse onto the "
        f"minimisers); homogeneous noise weights them by a^−k/2. Integrated with Euler–"
        f"Maruyama ({cfg.increments} increments) at dt and 2dt, and with a time-changed "
        f"scheme at T = 1; then curvature-shaped noise, and discrete SGD on an interpolating "
        f"regression against the continuous models.")
    return "Noise of machine-learning type and flat-minimum selection", intro


def conv_divergences(conv: dict) -> int:
    return sum(res.n_diverged for _, _, _, res in conv["pts"])
