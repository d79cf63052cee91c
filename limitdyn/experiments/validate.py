"""Experiment ``validate``: discrete SGD, the Langevin SDE and both theories side by side.

Linear regression (synthetic, or the user's ``data=PATH.npz`` with arrays ``X``, ``y``):
SGD with ``iid`` and ``reshuffle`` minibatches, the underdamped Langevin SDE with the
paper's noise σ²H/S (exact-in-distribution stepper) and with the exact state-dependent
noise κΣ(θ) (BAOAB), the exact discrete theory (theory.md §5) and the continuous theory
(§3–§4). Verdicts: SGD matches the exact discrete theory (stationary and transient, 4 SE);
each SDE matches its continuous theory (4 SE); the continuous model's error against the
exact discrete moments is first order in η; exact noise beats the paper's noise.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ..config import ConfigError
from ..io import markdown_table
from . import Context, register


@dataclasses.dataclass(frozen=True)
class ValidateConfig:
    """Configuration of ``limitdyn run validate``.

    The problem: synthetic linear regression with ``n`` examples in ``d`` dimensions, Hessian
    eigenvalues log-spaced over ``spectrum`` and label noise ``noise_std``; or your data,
    ``data`` = an .npz with arrays ``X`` (N, d) and ``y`` (N,). SGD with ``momentum``,
    ``weight_decay``, ``batch_size`` and learning rate ``lr`` (0: ``lr_scale``/h_max, a
    fraction of the top curvature). Run lengths: ``n_steps`` SGD and ``sde_n_steps`` SDE
    steps (0: from the slowest relaxation time of the exact discrete dynamics, burn-in of
    12 covariance relaxation times and a window of 20 mean relaxation times, at least
    ``min_steps``/``sde_min_steps`` and at most ``max_steps``/``sde_max_steps``; when the
    budget cannot reach stationarity, the window averages are compared with the theory
    averaged over the same window from the same start). ``n_traj`` SGD and ``sde_n_traj`` SDE
    trajectories; ``transient_steps`` from a displaced start; ``n_lrs`` learning rates
    log-spaced over [lr/``lr_span``, lr] for the continuous model's error against η.
    """

    n: int = 512                       # examples (synthetic data)
    d: int = 16                        # parameters (synthetic data)
    spectrum: tuple[float, ...] = (0.1, 1.0)   # Hessian eigenvalues, log-spaced (synthetic)
    noise_std: float = 0.5             # label noise (synthetic)
    data: str = ""                     # optional .npz with X (N, d) and y (N,)
    lr: float = 0.0                    # 0: lr_scale / h_max
    lr_scale: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    n_traj: int = 4096                 # SGD trajectories
    n_steps: int = 0                   # SGD horizon; 0: from the relaxation times
    min_steps: int = 2000
    max_steps: int = 60000
    sde_n_traj: int = 1024             # SDE trajectories (exact noise costs N normals a step)
    sde_n_steps: int = 0               # 0: from the relaxation times
    sde_min_steps: int = 1000
    sde_max_steps: int = 8000
    transient_steps: int = 300
    n_lrs: int = 6                     # learning rates for the error-vs-η fit …
    lr_span: float = 10.0              # … log-spaced over [lr / lr_span, lr]

    def validate(self) -> None:
        for name in ("n", "d", "n_traj", "sde_n_traj", "transient_steps", "batch_size",
                     "min_steps", "sde_min_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_steps", "sde_n_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: automatic), got "
                                 f"{getattr(self, name)}")
        if self.max_steps < self.min_steps or self.sde_max_steps < self.sde_min_steps:
            raise ValueError("max_steps must be >= min_steps and sde_max_steps >= "
                             "sde_min_steps")
        if self.lr < 0 or self.lr_scale <= 0:
            raise ValueError(f"lr must be >= 0 (0: automatic) and lr_scale > 0, got "
                             f"lr={self.lr}, lr_scale={self.lr_scale}")
        for name in ("n_traj", "sde_n_traj"):
            if getattr(self, name) < 64:
                raise ValueError(f"{name} must be >= 64 (32 trajectory groups for the "
                                 f"standard errors), got {getattr(self, name)}")
        if self.n_lrs < 3:
            raise ValueError(f"n_lrs must be >= 3 to fit a slope, got {self.n_lrs}")
        if self.lr_span <= 1:
            raise ValueError(f"lr_span must be > 1, got {self.lr_span}")
        if len(self.spectrum) != 2 or not 0 < self.spectrum[0] <= self.spectrum[1]:
            raise ValueError(f"spectrum must be two numbers 0 < low <= high, got "
                             f"{self.spectrum}")
        if self.data and not os.path.isfile(self.data):
            raise ValueError(f"data file not found: {self.data}")


QUICK = dict(n=256, d=8, n_traj=1024, min_steps=600, max_steps=20000, sde_n_traj=512,
             sde_min_steps=500, sde_max_steps=3000, transient_steps=150, n_lrs=5)


def _problem(cfg: ValidateConfig, ctx: Context):
    import limitdyn as ld

    if not cfg.data:
        return ld.LinearRegression.synthetic(ctx.subkey(0), n=cfg.n, d=cfg.d,
                                             spectrum=cfg.spectrum, noise_std=cfg.noise_std)
    try:
        with np.load(cfg.data, allow_pickle=False) as f:
            if "X" not in f.files or "y" not in f.files:
                raise ConfigError(f"data file {cfg.data} must hold arrays 'X' and 'y', has "
                                  f"{', '.join(f.files) or 'none'}")
            X, y = f["X"], f["y"]
    except (OSError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"cannot read data file {cfg.data}: {err}") from None
    try:
        return ld.LinearRegression(X, y)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"data file {cfg.data}: {err}") from None


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _targets_text(stationary: bool, sde_stationary: bool) -> str:
    if stationary and sde_stationary:
        return "the stationary laws"
    short = " and ".join(name for name, ok in (("SGD", stationary), ("SDE", sde_stationary))
                         if not ok)
    return (f"the exact theory averaged over the same window from the same start ({short}; "
            "the stationary law elsewhere)")


def _window_theory(prob, hp, res, kind: str) -> np.ndarray:
    """The exact theory of the run's own window average: the covariance at every window
    step (each centred at its own mean, as the estimator does), averaged, from the run's
    start (the minimiser, v = 0)."""
    from limitdyn import theory

    cfg = res.config
    steps = np.arange(cfg["burn_in"], cfg["n_steps"] + 1, cfg["window_every"])
    if kind == "discrete":
        mom = theory.discrete_moments(prob, hp, steps)
    else:
        mom = theory.continuous_moments(prob, hp, steps, noise=kind)
    return mom.cov.mean(axis=0)


@register("validate", "SGD (iid, reshuffle), the Langevin SDE (paper, exact noise), exact "
          "discrete and continuous theory side by side on linear regression",
          ValidateConfig, QUICK)
def run_validate(cfg: ValidateConfig, ctx: Context):
    import limitdyn as ld
    from limitdyn import theory

    prob = _problem(cfg, ctx)
    if cfg.batch_size > prob.n_examples:
        raise ConfigError(f"batch_size must be <= N={prob.n_examples}, got {cfg.batch_size}")
    try:
        hp = None if cfg.lr == 0 else ld.Hyper(lr=cfg.lr, momentum=cfg.momentum,
                                               weight_decay=cfg.weight_decay,
                                               batch_size=cfg.batch_size)
        plan = ld.suggest_run(prob, hp, momentum=cfg.momentum, batch_size=cfg.batch_size,
                              weight_decay=cfg.weight_decay, lr_scale=cfg.lr_scale,
                              min_steps=cfg.min_steps, max_steps=cfg.max_steps)
        sde_plan = ld.suggest_run(prob, plan.hp, min_steps=cfg.sde_min_steps,
                                  max_steps=cfg.sde_max_steps)
        hp = plan.hp
        stab = theory.stability(prob, hp)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    n_steps, burn_in = ((plan.n_steps, plan.burn_in) if cfg.n_steps == 0
                        else (cfg.n_steps, cfg.n_steps // 2))
    sde_steps, sde_burn = ((sde_plan.n_steps, sde_plan.burn_in) if cfg.sde_n_steps == 0
                           else (cfg.sde_n_steps, cfg.sde_n_steps // 2))
    # stationary when the burn-in covers 12 covariance relaxation times (suggest.py)
    stationary = burn_in >= 6 * plan.tau_max
    sde_stationary = sde_burn >= 6 * plan.tau_max
    if not stab["stable"]:
        raise ConfigError(f"lr={hp.lr:g} is outside the discrete stability region; the largest "
                          f"stable lr here is {stab['max_lr']:.4g}")
    d = prob.dim
    ctx.say(f"{prob!r}, {hp}")
    H = ld.problems.hessian64(prob)
    curv, vecs = np.linalg.eigh(H)
    planes = {"stiffest": -1, "flattest": 0}

    # --- theory ------------------------------------------------------------------------
    disc = theory.discrete_stationary_cov(prob, hp, sampling="iid")
    cont = {noise: theory.continuous_stationary_cov(prob, hp, noise) for noise in
            ("paper", "exact")}
    lrs = np.geomspace(hp.lr / cfg.lr_span, hp.lr, cfg.n_lrs)
    approx = theory.continuous_error(prob, hp, lrs)

    # --- ensembles -----------------------------------------------------------------------
    prog = None if ctx.progress else False     # bars for the long runs only
    sgd = ctx.timed(ld.simulate_sgd(prob, hp, ctx.subkey(1), cfg.n_traj, n_steps,
                                    sampling="iid", burn_in=burn_in, keep_trajectories=True,
                                    progress=prog), "SGD iid")
    shuf = ctx.timed(ld.simulate_sgd(prob, hp, ctx.subkey(2), cfg.n_traj, n_steps,
                                     sampling="reshuffle", burn_in=burn_in, progress=prog),
                     "SGD reshuffle")
    sde_paper = ctx.timed(ld.simulate_sde(prob, hp, ctx.subkey(3), cfg.sde_n_traj,
                                          sde_steps, noise="paper", solver="exact",
                                          burn_in=sde_burn, progress=prog),
                          "SDE paper noise, exact stepper")
    sde_exact = ctx.timed(ld.simulate_sde(prob, hp, ctx.subkey(4), cfg.sde_n_traj,
                                          sde_steps, noise="exact", solver="baoab",
                                          burn_in=sde_burn, keep_trajectories=True,
                                          progress=prog), "SDE exact noise, BAOAB")
    # Reshuffled batches against their own exact theory (theory.md §9): the runner's window
    # visits every phase of the epoch equally often, so it estimates the phase average.
    shuf_law = theory.reshuffle_stationary(prob, hp)
    shuf_target = shuf_law.phase_average_cov
    if not stationary:
        shuf_target = theory.discrete_moments(
            prob, hp, np.arange(shuf.config["burn_in"], n_steps + 1,
                                shuf.config["window_every"]), sampling="reshuffle").cov.mean(0)
    t_shuf = ld.compare(shuf, shuf_target)
    # What the window averages are compared with: the stationary law when the burn-in
    # reached stationarity, else the exact theory averaged over the same window steps from
    # the same start (the minimiser, v = 0).
    target_sgd = disc if stationary else _window_theory(prob, hp, sgd, "discrete")
    target_paper = cont["paper"] if sde_stationary else _window_theory(prob, hp, sde_paper,
                                                                       "paper")
    target_exact = cont["exact"] if sde_stationary else _window_theory(prob, hp, sde_exact,
                                                                       "exact")
    ctx.table("Time scales and run lengths", ["", "value"], [
        ["learning rate", f"{hp.lr:.4g}" + (f" (= {cfg.lr_scale:g}/h_max)" if plan.lr_chosen
                                             else " (given)")],
        ["relaxation time of the mean, slowest mode (steps)", f"{plan.tau_max:.4g}"],
        ["relaxation time of the mean, fastest mode (steps)",
         f"{plan.relaxation_steps[-1]:.4g}"],
        ["relaxation times of the mean, every mode (slowest first)",
         ", ".join(f"{t:.3g}" for t in plan.relaxation_steps)],
        ["SGD: burn-in / steps", f"{burn_in} / {n_steps}"
         + ("" if stationary else " (budget too short for stationarity)")],
        ["SDE: burn-in / steps", f"{sde_burn} / {sde_steps}"
         + ("" if sde_stationary else " (budget too short for stationarity)")],
        ["window averages compared with", _targets_text(stationary, sde_stationary)]],
        note="τ_i = −1/log ρ_i of the heavy-ball mean map of each mode of H + λI "
             "(theory.md §5); the covariance relaxes in τ_i/2. Automatic run lengths: a "
             "burn-in of 12 covariance relaxation times of the slowest mode and a window of "
             "20 of its mean relaxation times (ld.suggest_run).")
    ctx.metrics.update({"relaxation_time_slowest": plan.tau_max, "n_steps": n_steps,
                        "burn_in": burn_in, "sde_n_steps": sde_steps, "lr": hp.lr,
                        "stationary": stationary, "sde_stationary": sde_stationary})

    # --- stationary covariance table -----------------------------------------------------
    def blocks(C):
        return (_rel(C, disc), _rel(C[:d, :d], disc[:d, :d]), _rel(C[d:, d:], disc[d:, d:]))

    floor = {name: float(np.linalg.norm(r.stderr.stationary_cov) / np.linalg.norm(disc))
             for name, r in (("sgd", sgd), ("shuf", shuf), ("sde_paper", sde_paper),
                             ("sde_exact", sde_exact))}
    rows = [
        ["SGD, iid (Monte Carlo)", *blocks(sgd.stationary_cov), floor["sgd"]],
        ["SGD, reshuffle (Monte Carlo)", *blocks(shuf.stationary_cov), floor["shuf"]],
        ["theory of reshuffling (§9)", *blocks(shuf_target), 0.0],
        ["SDE, paper noise σ²H/S (Monte Carlo)", *blocks(sde_paper.stationary_cov),
         floor["sde_paper"]],
        ["SDE, exact noise κΣ(θ) (Monte Carlo)", *blocks(sde_exact.stationary_cov),
         floor["sde_exact"]],
        ["continuous theory, paper noise", *blocks(cont["paper"]), 0.0],
        ["continuous theory, exact noise", *blocks(cont["exact"]), 0.0],
    ]
    ctx.table("Stationary covariance against the exact discrete theory",
              ["model", "rel. error (θ,v)", "θθ", "vv", "Monte Carlo floor"],
              [[r[0], *(f"{v:.2%}" for v in r[1:])] for r in rows],
              note="Relative Frobenius error ‖C − C_disc‖/‖C_disc‖ against the exact discrete "
                   "theory of iid batches; the floor is √(Σ SE²)/‖C_disc‖, the error expected "
                   "from sampling alone. Reshuffled batches are a different process: their "
                   "rows show how far it is from iid; the next sections compare it with its "
                   "own theory.")
    ctx.metrics.update({f"stationary_error_{k}": v for k, v in zip(
        ("sgd_iid", "sgd_reshuffle", "reshuffle_theory", "sde_paper", "sde_exact",
         "continuous_paper", "continuous_exact"), (r[1] for r in rows), strict=True)})

    t_sgd = ld.compare(sgd, target_sgd)
    t_paper = ld.compare(sde_paper, target_paper)
    t_exact = ld.compare(sde_exact, target_exact)
    ctx.section("SGD (iid) against the exact discrete theory", f"```\n{t_sgd}\n```")
    iid_off = _rel(disc, shuf_target)
    ctx.section("SGD (reshuffle) against the exact theory of reshuffling",
                f"theory.md §9, method '{shuf_law.method}' ({shuf_law.epoch_steps} steps per "
                f"epoch); the window samples every phase of the epoch equally often, so it "
                f"estimates the phase-average covariance. The iid theory is "
                f"{100 * iid_off:.1f}% away from it (relative Frobenius).\n\n```\n{t_shuf}\n```")
    ctx.metrics.update({"reshuffle_worst_ratio": t_shuf.worst_ratio(),
                        "reshuffle_iid_theory_offset": iid_off,
                        "reshuffle_theory_method": shuf_law.method})
    ctx.section("SDE against the continuous theory",
                f"paper noise, exact stepper:\n```\n{t_paper}\n```\n\nexact noise, BAOAB "
                f"(dt = {sde_exact.config['dt']:.4g}):\n```\n{t_exact}\n```")

    # --- transient from a displaced start ------------------------------------------------
    mu = np.asarray(prob.minimiser(hp.weight_decay), np.float64)
    theta0 = mu + 0.5 * (vecs[:, -1] + vecs[:, 0])
    rec = np.unique(np.round(np.linspace(0, cfg.transient_steps, 31)).astype(int))
    tr_sgd = ctx.timed(ld.simulate_sgd(prob, hp, ctx.subkey(5), cfg.n_traj,
                                       cfg.transient_steps, theta0=theta0, record=rec,
                                       progress=prog), "SGD transient")
    tr_sde = ctx.timed(ld.simulate_sde(prob, hp, ctx.subkey(6), cfg.sde_n_traj,
                                       cfg.transient_steps, noise="exact", solver="baoab",
                                       theta0=theta0, record=rec, progress=prog),
                       "SDE transient")
    every = np.arange(cfg.transient_steps + 1)         # theory lines at every step
    m_disc = theory.discrete_moments(prob, hp, every, theta0)
    m_cont = theory.continuous_moments(prob, hp, every, theta0, noise="exact")
    t_tr = ld.compare(tr_sgd, m_disc)
    ctx.metrics["transient_worst_ratio"] = t_tr.worst_ratio()

    for name, r in (("sgd_iid", sgd), ("sgd_reshuffle", shuf), ("sde_paper", sde_paper),
                    ("sde_exact", sde_exact), ("transient_sgd", tr_sgd),
                    ("transient_sde", tr_sde)):
        ctx.metrics[f"diverged_{name}"] = int(r.n_diverged[-1])     # at the last step

    # --- verdicts --------------------------------------------------------------------------
    ctx.verdict("sgd_matches_discrete_theory", t_sgd.passed and t_tr.passed,
                f"stationary worst err/floor {t_sgd.worst_ratio():.2f}, transient "
                f"{t_tr.worst_ratio():.2f} (pass <= 4)")
    ctx.verdict("reshuffle_matches_its_theory", t_shuf.passed,
                f"reshuffled SGD against the exact theory of reshuffling (theory.md §9, "
                f"{shuf_law.method}): worst err/floor {t_shuf.worst_ratio():.2f} (pass <= 4); "
                f"the iid theory is {100 * iid_off:.1f}% away")
    ctx.verdict("sde_matches_continuous_theory", t_paper.passed and t_exact.passed,
                f"paper/exact stepper worst err/floor {t_paper.worst_ratio():.2f}, "
                f"exact noise/BAOAB {t_exact.worst_ratio():.2f} (pass <= 4)")
    # The order in η is that of each diagonal block against its own size: the full matrix's
    # relative error also carries the θ–v correlation ηVar(v)/2 the continuous model misses,
    # which relative to a Var θ dominated by flat modes does not shrink with η (theory.md §5).
    block_slopes = {name: theory.fit_order(lrs, errs["exact"]) for name, errs in
                    (("θθ", approx.errors_theta), ("vv", approx.errors_v))}
    slope, slope_se = approx.slopes["exact"], approx.slope_stderr["exact"]
    ok = all(0.8 <= sl <= 1.2 for sl, _ in block_slopes.values())
    ctx.verdict("continuous_error_is_first_order", ok,
                "error of the exact-noise continuous model ∝ η^p over η ∈ "
                f"[{lrs[0]:.3g}, {lrs[-1]:.3g}]: "
                + ", ".join(f"{name} block p = {sl:.3f} ± {se:.3f}"
                            for name, (sl, se) in block_slopes.items())
                + f" (pass in [0.8, 1.2]); the whole (θ, v) matrix {slope:.3f} ± {slope_se:.3f}")
    err_exact, err_paper = rows[4][1], rows[3][1]
    ctx.verdict("exact_noise_beats_paper", err_exact < err_paper,
                f"SDE vs exact discrete: exact noise {err_exact:.2%}, paper noise "
                f"{err_paper:.2%}")
    ctx.metrics.update({"continuous_error_slope_exact": slope,
                        "continuous_error_slope_paper": approx.slopes["paper"],
                        "reshuffle_over_iid_trace_theta": float(
                            np.trace(shuf.stationary_cov[:d, :d])
                            / np.trace(sgd.stationary_cov[:d, :d]))})
    ctx.section("Continuous model against the exact discrete theory, by learning rate",
                f"```\n{approx}\n```")

    # --- figures ---------------------------------------------------------------------------
    from . import _validate_plots as plots

    ctx.figure(plots.mean_trajectory(tr_sgd, tr_sde, m_disc, m_cont, vecs, planes, mu),
               "mean_trajectory.png",
               "Mean of θ projected on the stiffest and flattest Hessian eigenvectors from a "
               "displaced start: SGD and SDE ensembles (points, ±2 SE), exact discrete and "
               "continuous theory (lines).")
    steps = sgd.steps[sgd.steps > 0]
    disp_theory = {
        "discrete": (steps, theory.discrete_displacement(prob, hp, steps),
                     theory.discrete_local_displacement(prob, hp, steps)),
        "continuous": (steps, theory.global_displacement(prob, hp, steps, noise="exact"),
                       theory.local_displacement(prob, hp, steps, noise="exact")),
    }
    ctx.figure(plots.displacement(sgd, sde_exact, disp_theory), "displacement.png",
               "Global displacement ‖θ_k − θ_0‖² and local displacement ‖θ_k − θ_{k−1}‖² "
               "from the minimiser: ensembles (points, ±2 SE) and theory (lines).")
    current = theory.probability_current(prob, hp, "exact")
    ctx.figure(plots.phase_space(sgd, sde_exact, disc, cont["exact"], current, vecs, planes,
                                 curv),
               "phase_space.png",
               "Stationary phase-space clouds in the stiffest and flattest eigenplanes "
               "(θ_i = e_iᵀ(θ − μ), v_i = e_iᵀv): SGD and SDE samples, 2σ ellipses of the "
               "discrete and continuous theory, arrows: the continuous model's probability "
               "current velocity −QUx (clockwise rotation).")
    mc_points = {
        "SDE exact noise (MC)": (hp.lr, rows[4][1], floor["sde_exact"]),
        "SDE paper noise (MC)": (hp.lr, rows[3][1], floor["sde_paper"]),
    }
    ctx.figure(plots.error_vs_lr(approx, mc_points), "error_vs_lr.png",
               "Error of the continuous model's stationary covariance against the exact "
               "discrete theory, by learning rate and noise model, with fitted slopes; "
               "Monte Carlo points at the run's η (±2 floor).")

    # --- data ------------------------------------------------------------------------------
    for name, r in (("sgd_iid", sgd), ("sgd_reshuffle", shuf), ("sde_paper", sde_paper),
                    ("sde_exact", sde_exact), ("transient_sgd", tr_sgd),
                    ("transient_sde", tr_sde)):
        ctx.out.add_arrays(name, steps=r.steps, mean=r.mean, cov=r.cov,
                           se_mean=r.stderr.mean, displacement=r.displacement,
                           se_displacement=r.stderr.displacement,
                           local_displacement=r.local_displacement,
                           stationary_cov=r.stationary_cov,
                           se_stationary_cov=r.stderr.stationary_cov, n_alive=r.n_alive)
    ctx.out.add_arrays("theory", discrete_stationary_cov=disc,
                       reshuffle_phase_average_cov=shuf_target,
                       continuous_paper_cov=cont["paper"], continuous_exact_cov=cont["exact"],
                       transient_steps=every, transient_discrete_mean=m_disc.mean,
                       transient_continuous_mean=m_cont.mean, hessian_eigenvalues=curv,
                       hessian_eigenvectors=vecs, displacement_steps=steps,
                       discrete_displacement=disp_theory["discrete"][1],
                       continuous_displacement=disp_theory["continuous"][1],
                       approx_lrs=approx.lrs,
                       **{f"approx_error_{k}": v for k, v in approx.errors.items()})
    intro = (f"Linear regression with N = {prob.n_examples}, d = {d}"
             f"{' (from ' + cfg.data + ')' if cfg.data else ''}; η = {hp.lr}, β = "
             f"{hp.momentum}, λ = {hp.weight_decay}, S = {cfg.batch_size}; "
             f"{cfg.n_traj} SGD ({n_steps} steps) and {cfg.sde_n_traj} SDE ({sde_steps} steps) "
             f"trajectories, seed {ctx.seed}.\n\n"
             + markdown_table(["", "value"], [
                 ["Hessian eigenvalues", f"{curv[0]:.3g} … {curv[-1]:.3g}"],
                 ["largest stable lr (second-moment map)", f"{stab['max_lr']:.4g}"],
                 ["SDE step (BAOAB)", f"{sde_exact.config['dt']:.4g}"],
                 ["diverged trajectories (all runs)",
                  str(sum(v for k, v in ctx.metrics.items() if k.startswith("diverged_")))]]))
    return "limitdyn validate", intro
