"""Experiment ``phase-diagram``: the early-training phase diagram (theory.md §7; Kalra &
Barkeshli 2023).

For every (width, depth) a grid c = 2^x (x = 0, dx, 2dx, … <= x_max) × ``n_seeds``
initialisations of a network is trained for ``n_steps`` steps of SGD with η = c/λᴴ_0, all c of
a seed in one compiled kernel (c traced). λᴴ (Lanczos, warm-started) is measured on a fixed
measurement batch — the first ``measure_size`` training examples — at every step; the loss is
the full-training-set MSE. Per seed: c_loss (L_t > L_0 for some t <= T), c_sharp
(λᴴ_t > λᴴ_0), c_barrier (the loss on θ_0 → θ_T rises above L_0) and c_max (largest c before
the first divergence, loss > ``diverge_loss``), then their spread across seeds. Divergent
networks are counted, never averaged. A second part evaluates the exact uv-model theory
(:mod:`limitdyn.theory.uv`) at several widths.

Scaled down from the reference protocol (CIFAR-10, widths 256–2048, depth 8, c-grid step
x = 0.1) to what a 2-core CPU runs in minutes: scikit-learn's digits (1797 examples, 8×8,
10 classes), widths 32–128, depths 2 and 4, c-grid step x = 0.25.
"""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np

from . import Context, register


@dataclasses.dataclass(frozen=True)
class PhaseDiagramConfig:
    """Configuration of ``limitdyn run phase-diagram``.

    Networks: ``model`` ("fcn" or "cnn"; the CNN ignores depth), ``widths``, ``depths``,
    ``activation``, ``parametrisation`` ("standard", "ntk", "mup"), ``zero_last`` (zero
    readout at init), ``dataset`` ("digits" or "teacher-student"), ``n_data`` examples (0:
    all). Grid: c = 2^x for x = 0, ``dx``, … <= ``x_max``; ``n_seeds`` per (width, depth).
    Training: ``n_steps`` SGD steps, ``batch_size``, ``momentum``, ``measure_size`` (the
    sharpness batch: the first examples), ``lanczos_iter`` per measurement (warm-started),
    ``lanczos_iter0`` for λᴴ_0, ``diverge_loss``. ``uv_widths``: widths for the uv theory.
    """

    model: str = "fcn"
    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (2, 4)
    activation: str = "relu"
    parametrisation: str = "standard"
    zero_last: bool = False
    dataset: str = "digits"
    n_data: int = 0
    n_seeds: int = 3
    dx: float = 0.25
    x_max: float = 5.0
    n_steps: int = 10
    batch_size: int = 512
    momentum: float = 0.0
    measure_size: int = 256
    lanczos_iter: int = 8
    lanczos_iter0: int = 40
    diverge_loss: float = 1e5
    uv_widths: tuple[int, ...] = (8, 64, 512, 4096)
    uv_seeds: int = 200

    def validate(self) -> None:
        from .. import _checks
        from ..nn import DATASETS

        _checks.choice("model", self.model, ("fcn", "cnn"))
        _checks.choice("dataset", self.dataset, DATASETS)
        _checks.choice("activation", self.activation, ("relu", "tanh"))
        _checks.choice("parametrisation", self.parametrisation, ("standard", "ntk", "mup"))
        if not self.widths or not self.depths:
            raise ValueError("widths and depths must each list at least one value")
        if any(w < 1 for w in self.widths) or any(d < 1 for d in self.depths):
            raise ValueError(f"widths and depths must be >= 1, got widths={self.widths}, "
                             f"depths={self.depths}")
        if len(set(self.widths)) != len(self.widths) or len(set(self.depths)) != len(
                self.depths):
            raise ValueError("widths and depths must be distinct")
        if self.dx <= 0 or self.x_max < 0:
            raise ValueError(f"need dx > 0 and x_max >= 0 (c = 2^x >= 1 > 0), got dx={self.dx},"
                             f" x_max={self.x_max}")
        if self.x_max / self.dx > 200:
            raise ValueError("the c-grid would have more than 200 points; raise dx")
        if self.n_seeds < 1 or self.uv_seeds < 1:
            raise ValueError("n_seeds and uv_seeds must be >= 1")
        if not 1 <= self.n_steps <= 1000:
            raise ValueError(f"n_steps must be in [1, 1000], got {self.n_steps}")
        n = 1797 if self.dataset == "digits" else 1024
        n = self.n_data or n
        if self.n_data < 0 or (self.dataset == "digits" and self.n_data > 1797):
            raise ValueError(f"n_data must be in [0, 1797] for digits, got {self.n_data}")
        if not 1 <= self.batch_size <= n or not 1 <= self.measure_size <= n:
            raise ValueError(f"batch_size and measure_size must be in [1, {n}]")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.lanczos_iter < 1 or self.lanczos_iter0 < 1:
            raise ValueError("lanczos_iter and lanczos_iter0 must be >= 1")
        if self.diverge_loss <= 0:
            raise ValueError("diverge_loss must be > 0")
        if not self.uv_widths or any(w < 1 for w in self.uv_widths):
            raise ValueError(f"uv_widths must be >= 1, got {self.uv_widths}")


QUICK = {"widths": [32, 128], "depths": [2], "n_seeds": 2, "dx": 0.5, "x_max": 5.0,
         "lanczos_iter": 8, "lanczos_iter0": 24, "uv_widths": [8, 4096], "uv_seeds": 50}


def c_grid(dx: float, x_max: float) -> np.ndarray:
    """c = 2^x for x = 0, dx, 2dx, … <= x_max (x rounded to 1e-9)."""
    xs = np.round(np.arange(0.0, x_max + 1e-9, dx), 9)
    return 2.0 ** xs


def _stats(v: np.ndarray) -> tuple[float, float, float, float, int]:
    """mean, SE, min, max over the finite entries and their number."""
    f = v[np.isfinite(v)]
    if f.size == 0:
        return (np.nan, np.nan, np.nan, np.nan, 0)
    se = float(np.std(f, ddof=1) / np.sqrt(f.size)) if f.size > 1 else np.nan
    return float(f.mean()), se, float(f.min()), float(f.max()), int(f.size)


def _fmt(v: np.ndarray) -> str:
    mean, se, lo, hi, n = _stats(v)
    if n == 0:
        return "— (none)"
    s = f"{mean:.3g}" + (f" ± {se:.2g}" if np.isfinite(se) else "")
    return s + f" [{lo:.3g}, {hi:.3g}]" + (f" ({n}/{v.size})" if n < v.size else "")


def _uv_part(cfg: PhaseDiagramConfig, ctx: Context) -> dict:
    from ..theory import uv

    cs = np.round(np.arange(0.5, 6.0 + 1e-9, 0.02), 6)
    rows, out = [], {}
    for w in cfg.uv_widths:
        th = uv.uv_thresholds(w, cs, n_seeds=cfg.uv_seeds, seed=ctx.seed, units="hessian",
                              sharpness="hessian", n_early=cfg.n_steps, n_steps=300)
        thn = uv.uv_thresholds(w, cs, n_seeds=cfg.uv_seeds, seed=ctx.seed, units="ntk",
                               sharpness="ntk", n_early=cfg.n_steps, n_steps=300)
        st = uv.uv_init(w, cfg.uv_seeds, ctx.seed)
        run = uv.uv_run(st, 1.0 / uv.uv_sharpness(st, w), w, cfg.n_steps)
        fall = run.hessian[:, -1] / run.hessian[:, 0]
        out[w] = dict(c_loss=th.c_loss, c_sharp=th.c_sharp, c_max=th.c_max,
                      c_loss_ntk=thn.c_loss, c_max_ntk=thn.c_max, fall=fall)
        rows.append([w, _fmt(th.c_loss), _fmt(th.c_sharp), _fmt(th.c_max), _fmt(thn.c_loss),
                     _fmt(thn.c_sharp), _fmt(thn.c_max), f"{fall.mean():.4f} ± "
                     f"{fall.std(ddof=1) / np.sqrt(fall.size):.1g}"])
        ctx.out.add_arrays(f"uv/w{w}", c_loss=th.c_loss, c_sharp=th.c_sharp, c_max=th.c_max,
                           c_loss_ntk=thn.c_loss, c_sharp_ntk=thn.c_sharp, c_max_ntk=thn.c_max,
                           sharpness_ratio_c1=fall)
        ctx.metrics.update({f"uv_w{w}_c_loss": float(np.nanmean(th.c_loss)),
                            f"uv_w{w}_c_sharp": float(np.nanmean(th.c_sharp)),
                            f"uv_w{w}_c_max": float(np.nanmean(th.c_max)),
                            f"uv_w{w}_sharpness_ratio_c1": float(fall.mean())})
    ctx.table("uv model (exact theory)", ["width", "c_loss", "c_sharp (λᴴ)", "c_max",
                                          "c_loss (NTK units)", "c_sharp (NTK measure)",
                                          "c_max (NTK units)", f"λᴴ_{cfg.n_steps}/λᴴ_0 at c = 1"],
              rows, note=f"Exact (a, b, s) recursion and exact Hessian sharpness "
                         f"(theory.md §7), one example x = 1, y = 0, {cfg.uv_seeds} "
                         f"initialisations u, v ~ N(0, I_w); c-grid step 0.02. First columns: "
                         f"η = c/λᴴ_0 with the Hessian sharpness as the measure; 'NTK' "
                         f"columns: η = c/λ_NTK,0, sharpness measured by λ_NTK (which never "
                         f"rises before divergence: '— (none)'). c_loss, c_sharp over "
                         f"t <= {cfg.n_steps}; c_max: no blow-up within 300 steps. Entries: mean "
                         f"± SE [min, max] over initialisations.")
    big = max(cfg.uv_widths)
    small = min(cfg.uv_widths)
    cl, cm = np.nanmean(out[big]["c_loss_ntk"]), np.nanmean(out[big]["c_max_ntk"])
    ctx.verdict("uv_large_width_thresholds", abs(cl - 2) <= 0.1 and abs(cm - 4) <= 0.1,
                f"uv model at width {big}: mean c_loss = {cl:.3f} (→ 2), c_max = {cm:.3f} (→ 4), "
                f"NTK units, within 0.1")
    cs_big = np.nanmean(out[big]["c_sharp"])
    ctx.verdict("uv_sharpness_catapult_from_2.5", abs(cs_big - 2.5) <= 0.1,
                f"uv model at width {big}: Hessian sharpness catapult from c = {cs_big:.3f} "
                f"(first-step expansion: λᴴ_1 > λᴴ_0 iff c > 5/2)")
    fall = out[small]["fall"]
    ctx.verdict("uv_small_width_sharpness_falls_at_c1", float(fall.mean()) < 0.95,
                f"uv model at width {small}, c = 1: mean λᴴ_{cfg.n_steps}/λᴴ_0 = "
                f"{fall.mean():.3f} (< 0.95; at width {big}: {out[big]['fall'].mean():.4f})")
    return out


def _fig_phase(cfg, table) -> object:
    from ._sharpness_plots import phase_figure

    return phase_figure(cfg, table)


@register("phase-diagram", "early-training phase diagram (Kalra & Barkeshli): c_loss, c_sharp, "
          "c_barrier, c_max against width and depth; uv-model theory", PhaseDiagramConfig, QUICK)
def run_phase_diagram(cfg: PhaseDiagramConfig, ctx: Context):
    from .. import nn as lnn
    from ._sharpness_plots import trajectory_figure

    data = lnn.load_dataset(cfg.dataset, n=cfg.n_data or None, seed=ctx.seed)
    cs = c_grid(cfg.dx, cfg.x_max)
    models = ([(w, d) for d, w in itertools.product(cfg.depths, cfg.widths)]
              if cfg.model == "fcn" else [(w, 0) for w in cfg.widths])
    table, rows, order_rows = [], [], []
    keep_traj = None
    for i, (w, d) in enumerate(models):
        model = lnn.make_model(cfg.model, n_out=data.n_classes, width=w, depth=max(d, 1),
                               activation=cfg.activation, parametrisation=cfg.parametrisation,
                               zero_last=cfg.zero_last, image_shape=data.image_shape)
        ctx.say(f"width {w}, depth {d}: {cfg.n_seeds} seeds × {len(cs)} c values …")
        t0 = time.perf_counter()
        res = lnn.train_grid(model, data, cs, key=ctx.subkey(100 + i), n_seeds=cfg.n_seeds,
                             n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                             momentum=cfg.momentum, measure_size=cfg.measure_size,
                             lanczos_iter=cfg.lanczos_iter, lanczos_iter0=cfg.lanczos_iter0,
                             diverge_loss=cfg.diverge_loss)
        wall = time.perf_counter() - t0
        th = lnn.thresholds(res)
        entry = dict(width=w, depth=d, th=th, res=res, wall=wall)
        table.append(entry)
        rows.append([w, d, res.info["n_params"], _fmt(res.lam0), _fmt(th.c_loss),
                     _fmt(th.c_sharp), _fmt(th.c_barrier), _fmt(th.c_max),
                     f"{int(res.diverged.sum())}/{res.diverged.size}", f"{wall:.1f}"])
        for s in range(cfg.n_seeds):
            order_rows.append([w, d, s, th.c_loss[s], th.c_sharp[s], th.c_barrier[s],
                               th.c_max[s], ("≥ " if th.max_above_grid[s] else "")
                               + ("✓" if _ordered(th, s) else "✗")])
        ctx.out.add_arrays(f"w{w}_d{d}", cs=cs, lam0=res.lam0, eta=res.eta, loss=res.loss,
                           sharpness=res.sharpness, sharp_steps=res.sharp_steps,
                           diverged=res.diverged, diverged_at=res.diverged_at,
                           barrier_loss=res.barrier_loss, barrier_tau=res.barrier_tau,
                           c_loss=th.c_loss, c_sharp=th.c_sharp, c_barrier=th.c_barrier,
                           c_max=th.c_max, lanczos_residual=res.lanczos_residual)
        if keep_traj is None or (w == min(cfg.widths) and d == max(cfg.depths)):
            keep_traj = entry
    uv_out = _uv_part(cfg, ctx)

    ctx.table("Critical learning rates", ["width", "depth", "P", "λᴴ_0", "c_loss", "c_sharp",
                                          "c_barrier", "c_max", "diverged", "seconds"], rows,
              note=f"{cfg.model.upper()} ({cfg.activation}, {cfg.parametrisation}"
                   f"{', zero readout' if cfg.zero_last else ''}) on {data.name} "
                   f"(N = {data.n}), MSE, SGD batch {cfg.batch_size}, β = {cfg.momentum:g}, "
                   f"T = {cfg.n_steps} steps, η = c/λᴴ_0 with c = 2^x, x = 0, {cfg.dx:g}, … "
                   f"{cfg.x_max:g} ({len(cs)} values). λᴴ on the measurement batch = the first "
                   f"{cfg.measure_size} training examples (Lanczos, {cfg.lanczos_iter0} steps "
                   f"for λᴴ_0, {cfg.lanczos_iter} warm-started steps after each SGD step). "
                   f"Entries: mean ± SE [min, max] over {cfg.n_seeds} seeds; '(k/n)': only k "
                   f"seeds met the criterion below c_max (the others never did). Critical "
                   f"values are grid values: resolution a factor 2^{cfg.dx:g} = "
                   f"{2 ** cfg.dx:.3g}. Divergence: full loss > {cfg.diverge_loss:g} or not "
                   f"finite within T steps; divergent networks are counted, never averaged.")
    ctx.table("Per seed", ["width", "depth", "seed", "c_loss", "c_sharp", "c_barrier", "c_max",
                           "c_loss ≤ c_sharp ≤ c_max"], order_rows,
              note="NaN: no trainable c on the grid met the criterion. '≥': no c on the grid "
                   "diverged (c_max is at least the largest grid value).")
    ctx.figure(_fig_phase(cfg, table), "phase_diagram.png",
               "Phase diagram: c_loss, c_sharp and c_max (mean over seeds; band: min–max "
               "across seeds) against 1/w (left, one line per depth) and d/w (right); dashed: "
               "c = 2. Below c_loss: sharpness reduction; c_loss–c_sharp: loss catapult; "
               "c_sharp–c_max: loss and sharpness catapult; above c_max: divergence.")
    e = keep_traj
    ctx.figure(trajectory_figure(e["res"], e["th"], f"width {e['width']}, depth {e['depth']}"),
               "trajectories.png",
               f"Loss and sharpness trajectories, width {e['width']}, depth {e['depth']}, "
               f"seed 0, one curve per c (colour); divergent runs end where they diverged.")

    # verdicts
    ordered = [(_ordered(e["th"], s), e["width"], e["depth"], s) for e in table
               for s in range(cfg.n_seeds)]
    n_def = sum(1 for e in table for s in range(cfg.n_seeds)
                if np.isfinite(e["th"].c_loss[s]) and np.isfinite(e["th"].c_sharp[s])
                and np.isfinite(e["th"].c_max[s]))
    bad = [f"w={w} d={d} seed {s}" for ok, w, d, s in ordered if not ok]
    ctx.verdict("ordering_c_loss_c_sharp_c_max", not bad,
                f"c_loss ≤ c_sharp ≤ c_max for every seed where all three are on the grid "
                f"({n_def} of {len(ordered)})" + (f"; violated: {', '.join(bad)}" if bad else ""))
    if cfg.model == "fcn":
        _trend_verdicts(cfg, ctx, table)
    ctx.metrics["n_networks"] = int(sum(e["res"].diverged.size for e in table))
    ctx.metrics["n_diverged"] = int(sum(e["res"].diverged.sum() for e in table))
    ctx.metrics["train_seconds"] = float(sum(e["wall"] for e in table))
    title = "Early-training phase diagram (Kalra & Barkeshli)"
    intro = (f"{cfg.model.upper()}s of widths {', '.join(map(str, cfg.widths))}"
             + (f" and depths {', '.join(map(str, cfg.depths))}" if cfg.model == "fcn" else "")
             + f" trained on {data.name} ({data.n} examples, inputs standardised per example, "
             f"one-hot targets, MSE = ½ mean over examples × classes) with SGD for "
             f"{cfg.n_steps} steps at η = c/λᴴ_0, c = 2^x, {cfg.n_seeds} seeds. Every c of a "
             f"seed runs in one compiled kernel (c is traced). This is the reference protocol "
             f"(CIFAR-10, widths 256–2048, depth 8, x-step 0.1) scaled down to what a 2-core "
             f"CPU runs in minutes: digits (8×8, 10 classes), widths {min(cfg.widths)}–"
             f"{max(cfg.widths)}, x-step {cfg.dx:g}. The reference reports (CIFAR-10, depth 8, "
             f"widths 256–2048) c_loss 3.25→2.46 and c_sharp 4.92→3.25 as the width grows, "
             f"c_max ≈ 12–14, and c_loss growing with depth/width. Last section: the exact "
             f"uv-model theory.")
    del uv_out
    return title, intro


def _ordered(th, s: int) -> bool:
    vals = [th.c_loss[s], th.c_sharp[s], th.c_max[s]]
    if not all(np.isfinite(vals)):
        return True
    return bool(vals[0] <= vals[1] <= vals[2])


def _trend_verdicts(cfg, ctx, table) -> None:
    """c_loss against 1/w at fixed depth and against depth at fixed width (means over seeds;
    seeds without a loss catapult below c_max enter as their c_max — a lower bound)."""
    def cl(e):
        v = np.where(np.isfinite(e["th"].c_loss), e["th"].c_loss, e["th"].c_max)
        return float(np.nanmean(v))

    by = {(e["width"], e["depth"]): cl(e) for e in table}
    ws, ds = sorted(cfg.widths), sorted(cfg.depths)
    if len(ws) >= 2:
        parts, ok = [], True
        for d in ds:
            seq = [by[(w, d)] for w in ws]
            ok &= seq[0] > seq[-1]
            parts.append(f"d={d}: " + " → ".join(f"{v:.3g}" for v in seq))
        ctx.verdict("c_loss_grows_with_inverse_width", ok,
                    f"mean c_loss at the smallest width exceeds that at the largest, at every "
                    f"depth (widths {ws}): {'; '.join(parts)}")
    if len(ds) >= 2:
        parts, ok = [], True
        for w in ws:
            seq = [by[(w, d)] for d in ds]
            ok &= seq[-1] > seq[0]
            parts.append(f"w={w}: " + " → ".join(f"{v:.3g}" for v in seq))
        ctx.verdict("c_loss_grows_with_depth", ok,
                    f"mean c_loss at the largest depth exceeds that at the smallest, at every "
                    f"width (depths {ds}): {'; '.join(parts)}")
    for key, v in by.items():
        ctx.metrics[f"c_loss_mean_w{key[0]}_d{key[1]}"] = v
