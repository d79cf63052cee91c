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
    if se <= 1e-12 * abs(f.mean()):          # equal values: no round-off residue
        se = 0.0
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


# Kalra & Barkeshli (2023), CIFAR-10, FCNs of depth 8 (theory.md §7.4; published, one seed)
KB_DEPTH = 8
KB_WIDTHS = (256, 512, 1024, 2048)
KB_C_LOSS = (3.25, 3.03, 2.64, 2.46)
KB_C_SHARP = (4.92, 4.29, 4.00, 3.25)
KB_C_MAX = (12.0, 14.0)                 # "c_max ≈ 12–14"

_NAMES = ("c_loss", "c_sharp", "c_barrier", "c_max")


def seed_values(th, cs: np.ndarray, s: int) -> dict[str, tuple[str, float]]:
    """The four critical values of seed ``s`` as (kind, value): '=' measured on the grid;
    '>' the criterion was met at no trainable c, so the value lies above c_max (= value);
    '≥' c_max when nothing diverged on the grid (a lower bound: the largest grid c);
    '<' c_max when the smallest c diverged; '' no value (no trainable c)."""
    if th.max_below_grid[s]:
        return {"c_max": ("<", float(np.min(cs))), "c_loss": ("", np.nan),
                "c_sharp": ("", np.nan), "c_barrier": ("", np.nan)}
    cmax = float(th.c_max[s])
    out = {"c_max": ("≥" if th.max_above_grid[s] else "=", cmax)}
    for name in _NAMES[:3]:
        v = float(getattr(th, name)[s])
        out[name] = ("=", v) if np.isfinite(v) else (">", cmax)
    return out


def _cell(kind: str, v: float) -> str:
    return "—" if not kind else (f"{v:.3g}" if kind == "=" else f"{kind} {v:.3g}")


def _summary(vals: list[tuple[str, float]]) -> str:
    """mean ± SE [min, max] over the seeds where the value was measured, and the bounds."""
    n = len(vals)
    exact = np.array([v for k, v in vals if k == "="])
    bounds = [(k, v) for k, v in vals if k in (">", "≥")]
    below = sum(1 for k, _ in vals if k in ("<", ""))
    parts = []
    if exact.size:
        se = f" ± {np.std(exact, ddof=1) / np.sqrt(exact.size):.2g}" if exact.size > 1 else ""
        parts.append(f"{exact.mean():.3g}{se} [{exact.min():.3g}, {exact.max():.3g}]")
    if bounds:
        sym = ">" if any(k == ">" for k, _ in bounds) else "≥"
        lo = min(v for _, v in bounds)
        if exact.size:
            parts.append(f"({exact.size}/{n}; {len(bounds)} {sym} {lo:.3g})")
        else:
            parts.append(f"{sym} {lo:.3g} (all {len(bounds)}" + (f" of {n})" if below else ")"))
    if below:
        parts.append(f"({below} without a trainable c)")
    return " ".join(parts) if parts else "—"


def _lower_mean(vals: list[tuple[str, float]]) -> tuple[float, bool]:
    """Mean over seeds with bounds taken at their value (a lower bound of the mean when any
    seed is only bounded) and whether it is only a lower bound."""
    v = [x for k, x in vals if k in ("=", ">", "≥")]
    if not v:
        return np.nan, True
    return float(np.mean(v)), any(k != "=" for k, _ in vals)


def _upper_mean(vals: list[tuple[str, float]]) -> float:
    """Mean over seeds with a bound counted as +inf (an upper bound of the mean)."""
    if any(k != "=" for k, _ in vals):
        return np.inf
    return float(np.mean([x for _, x in vals]))


def order_status(v: dict[str, tuple[str, float]]) -> tuple[str, str]:
    """(chain, pair) for one seed. chain: c_loss ≤ c_sharp ≤ c_max on a seed with a measured
    c_max — 'holds', 'violated', 'censored' (nothing diverged: c_max only a lower bound) or
    'untestable' (the smallest c diverged). pair: c_loss ≤ c_sharp — 'holds', 'inverted' or
    'unresolved' (neither criterion met below c_max). c_sharp ≤ c_max holds by construction
    (both are searched among the trainable c), so the chain turns on the pair."""
    (kl, cl), (ks, csh), (km, _) = v["c_loss"], v["c_sharp"], v["c_max"]
    if km == "<":
        return "untestable", "unresolved"
    if kl == "=" and ks == "=":
        pair = "holds" if cl <= csh else "inverted"
    elif kl == "=":
        pair = "holds"                     # c_sharp > c_max >= c_loss
    elif ks == "=":
        pair = "inverted"                  # c_loss > c_max >= c_sharp
    else:
        pair = "unresolved"
    if km == "≥":
        return "censored", pair
    return ("violated" if pair == "inverted" else "holds"), pair


def _se(r: np.ndarray) -> float:
    """Standard error of the mean over the finite entries (NaN with fewer than two)."""
    f = r[np.isfinite(r)]
    return float(np.std(f, ddof=1) / np.sqrt(f.size)) if f.size > 1 else np.nan


def _reduction(cfg, table, cs) -> list[dict]:
    """λᴴ_T/λᴴ_0 per network: at every c (seeds × c; NaN where diverged), at c = cs[0] and at
    the grid c nearest 2."""
    j2 = int(np.argmin(np.abs(np.log(cs / 2.0))))
    out = []
    for e in table:
        sh = e["res"].sharpness
        ratio = sh[:, :, -1] / sh[:, :, 0]
        d = max(e["depth"], 1)
        r1, r2 = ratio[:, 0], ratio[:, j2]
        out.append(dict(width=e["width"], depth=e["depth"], dw=d / e["width"], ratio=ratio,
                        r1=r1, r1_mean=float(np.nanmean(r1)), r1_se=_se(r1), r2=r2,
                        r2_mean=float(np.nanmean(r2)), r2_se=_se(r2), c2=float(cs[j2]),
                        c1=float(cs[0]), entry=e))
    return sorted(out, key=lambda r: (r["dw"], r["depth"]))


@register("phase-diagram", "early-training phase diagram (Kalra & Barkeshli): c_loss, c_sharp, "
          "c_barrier, c_max against width and depth; the sharpness-reduction phase against d/w; "
          "uv-model theory", PhaseDiagramConfig, QUICK)
def run_phase_diagram(cfg: PhaseDiagramConfig, ctx: Context):
    from .. import nn as lnn
    from ._sharpness_plots import phase_figure, reduction_figure, trajectory_figure

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
        vals = [seed_values(th, cs, s) for s in range(cfg.n_seeds)]
        entry = dict(width=w, depth=d, th=th, res=res, wall=wall, vals=vals)
        table.append(entry)
        rows.append([w, d, f"{max(d, 1) / w:.4g}", res.info["n_params"], _fmt(res.lam0)]
                    + [_summary([v[n] for v in vals]) for n in _NAMES]
                    + [f"{int(res.diverged.sum())}/{res.diverged.size}", f"{wall:.1f}"])
        for s, v in enumerate(vals):
            chain, pair = order_status(v)
            mark = {"holds": "✓", "violated": "✗", "untestable": "—",
                    "censored": "not tested (c_max ≥ grid)"}[chain]
            if chain == "censored" and pair != "unresolved":
                mark += f"; c_loss ≤ c_sharp {'✓' if pair == 'holds' else '✗'}"
            order_rows.append([w, d, s] + [_cell(*v[n]) for n in _NAMES] + [mark])
        ctx.out.add_arrays(f"w{w}_d{d}", cs=cs, lam0=res.lam0, eta=res.eta, loss=res.loss,
                           sharpness=res.sharpness, sharp_steps=res.sharp_steps,
                           diverged=res.diverged, diverged_at=res.diverged_at,
                           barrier_loss=res.barrier_loss, barrier_tau=res.barrier_tau,
                           c_loss=th.c_loss, c_sharp=th.c_sharp, c_barrier=th.c_barrier,
                           c_max=th.c_max, max_above_grid=th.max_above_grid,
                           lanczos_residual=res.lanczos_residual)
        if keep_traj is None or (w == min(cfg.widths) and d == max(cfg.depths)):
            keep_traj = entry
    uv_out = _uv_part(cfg, ctx)
    red = _reduction(cfg, table, cs)
    grid_top = float(cs.max())
    n_all = sum(len(e["vals"]) for e in table)
    status = [(order_status(v), e["width"], e["depth"], s, v) for e in table
              for s, v in enumerate(e["vals"])]
    n_cens = sum(1 for (ch, _), *_ in status if ch == "censored")

    # --- the sharpness-reduction phase --------------------------------------------------------
    red_rows = []
    for r in red:
        e = r["entry"]
        red_rows.append([r["width"], r["depth"], f"{r['dw']:.4g}",
                         _ratio_cell(r["r1"], r["r1_se"]), _ratio_cell(r["r2"], r["r2_se"]),
                         _summary([v["c_loss"] for v in e["vals"]]),
                         _summary([v["c_sharp"] for v in e["vals"]])])
    same = _same_dw(red)
    T = cfg.n_steps
    ctx.table("The sharpness-reduction phase against d/w",
              ["width", "depth", "d/w", f"λᴴ_{T}/λᴴ_0 at c = {red[0]['c1']:g}",
               f"λᴴ_{T}/λᴴ_0 at c = {red[0]['c2']:.3g}", "c_loss (upper edge of the phase)",
               "c_sharp"], red_rows,
              note=f"Sharpness after T = {T} SGD steps over the sharpness at initialisation "
                   f"(both on the measurement batch), mean ± SE [min, max] over {cfg.n_seeds} "
                   f"seeds; below 1 the sharpness fell. Below c_loss neither loss nor "
                   f"sharpness catapults: the sharpness-reduction phase of Kalra & Barkeshli. "
                   f"In the wide (NTK) limit λᴴ stays at λᴴ_0 and c_loss → 2 (uv model, last "
                   f"section); here the fall at c = {red[0]['c1']:g} and the edge c_loss both "
                   f"grow with d/w. Networks with the same d/w but different depth and width"
                   + (f" agree: {same}." if same else ": none in this grid.")
                   + " Figure: sharpness_reduction.png.")
    kb_rows = []
    for w, cl, csh in zip(KB_WIDTHS, KB_C_LOSS, KB_C_SHARP, strict=True):
        dw = KB_DEPTH / w
        ours = [r for r in red if abs(r["dw"] - dw) < 1e-12]
        ours_txt = "; ".join(
            f"w{r['width']} d{r['depth']}: c_loss "
            f"{_summary([v['c_loss'] for v in r['entry']['vals']]).split(' [')[0]}, c_sharp "
            f"{_summary([v['c_sharp'] for v in r['entry']['vals']]).split(' [')[0]}"
            for r in ours) or "—"
        kb_rows.append([w, KB_DEPTH, f"{dw:.4g}", f"{cl:.2f}", f"{csh:.2f}",
                        f"≈ {KB_C_MAX[0]:g}–{KB_C_MAX[1]:g}", ours_txt])
    ctx.table("Published reference values (context, not a verdict)",
              ["width", "depth", "d/w", "c_loss", "c_sharp", "c_max", "this run at the same d/w"],
              kb_rows,
              note="Kalra & Barkeshli (NeurIPS 2023), CIFAR-10, FCNs of depth 8, one seed "
                   "(theory.md §7.4). Their networks are larger and their data harder than "
                   "digits; the numbers are set beside ours as context. Both show the "
                   "sharpness-reduction phase opening as d/w grows: c_loss rises from the "
                   "wide-network value 2 (theirs 2.46 → 3.25 as d/w goes 0.0039 → 0.031; "
                   "c_loss reaches ≈ 40 for their deepest, narrowest nets).")
    ctx.figure(reduction_figure(cfg, red, KB_DEPTH, KB_WIDTHS, KB_C_LOSS),
               "sharpness_reduction.png",
               f"The sharpness-reduction phase. Left: λᴴ_{T}/λᴴ_0 against c for every network "
               f"(mean over seeds; colour: d/w; networks that diverged at a c are left out "
               f"there). Middle: λᴴ_{T}/λᴴ_0 at c = {red[0]['c1']:g} against d/w (± SE over "
               f"seeds). Right: its upper edge c_loss against d/w (band: min–max over seeds; "
               f"open marker with arrow: a lower bound), with Kalra & Barkeshli's published "
               f"CIFAR-10 depth-8 values (grey) and the wide-network value c = 2.")

    ctx.table("Critical learning rates", ["width", "depth", "d/w", "P", "λᴴ_0", "c_loss",
                                          "c_sharp", "c_barrier", "c_max", "diverged",
                                          "seconds"], rows,
              note=f"{cfg.model.upper()} ({cfg.activation}, {cfg.parametrisation}"
                   f"{', zero readout' if cfg.zero_last else ''}) on {data.name} "
                   f"(N = {data.n}), MSE, SGD batch {cfg.batch_size}, β = {cfg.momentum:g}, "
                   f"T = {cfg.n_steps} steps, η = c/λᴴ_0 with c = 2^x, x = 0, {cfg.dx:g}, … "
                   f"{cfg.x_max:g} ({len(cs)} values). λᴴ on the measurement batch = the first "
                   f"{cfg.measure_size} training examples (Lanczos, {cfg.lanczos_iter0} steps "
                   f"for λᴴ_0, {cfg.lanczos_iter} warm-started steps after each SGD step). "
                   f"Entries: mean ± SE [min, max] over the seeds where the value was measured "
                   f"on the grid. Censored values are bounds, never averaged in: '(k/n; m > x)' "
                   f"— k of n seeds measured, m met the criterion at no trainable c, so their "
                   f"value lies above their c_max (at least x); '≥ x': nothing diverged on the "
                   f"grid, so c_max is only a lower bound (the grid's largest c). Critical "
                   f"values are grid values: resolution a factor 2^{cfg.dx:g} = "
                   f"{2 ** cfg.dx:.3g}. Divergence: full loss > {cfg.diverge_loss:g} or not "
                   f"finite within T steps; divergent networks are counted, never averaged. "
                   + _barrier_note(table))
    ctx.table("Per seed", ["width", "depth", "seed", "c_loss", "c_sharp", "c_barrier", "c_max",
                           "c_loss ≤ c_sharp ≤ c_max"], order_rows,
              note=f"'> x': the criterion was met at no trainable c (the value lies above c_max "
                   f"= x); '≥ {grid_top:.3g}': no c on the grid diverged, so c_max is at least "
                   f"the largest grid value and the ordering verdict does not test the seed "
                   f"(its chain's upper end is not measured); the pair c_loss ≤ c_sharp is "
                   f"still shown for it. ✗: a resolved inversion.")
    ctx.figure(phase_figure(cfg, table, KB_DEPTH, KB_WIDTHS, KB_C_LOSS, KB_C_SHARP, KB_C_MAX),
               "phase_diagram.png",
               "Phase diagram: c_loss, c_sharp and c_max (mean over seeds; band: min–max "
               "across seeds) against 1/w (left, one line per depth) and d/w (right); filled "
               "markers joined by lines: measured on every seed; open markers with an arrow: "
               "a lower bound (a seed without a divergence or without the catapult on the "
               "grid — for c_max at the grid's top: nothing diverged). Grey (right): Kalra & "
               "Barkeshli's published CIFAR-10 depth-8 values. Below c_loss: sharpness "
               "reduction; c_loss–c_sharp: loss catapult; c_sharp–c_max: loss and sharpness "
               "catapult; above c_max: divergence.")
    e = keep_traj
    ctx.figure(trajectory_figure(e["res"], e["th"], f"width {e['width']}, depth {e['depth']}"),
               "trajectories.png",
               f"Loss and sharpness trajectories, width {e['width']}, depth {e['depth']}, "
               f"seed 0, one curve per c (colour); a run that diverged leaves the axes at the "
               f"top, and a cross on the top edge marks the step it diverged.")

    # --- verdicts -----------------------------------------------------------------------------
    _ordering_verdict(ctx, status, grid_top, n_all)
    if cfg.model == "fcn":
        _trend_verdicts(cfg, ctx, table)
    _reduction_verdict(ctx, red, cfg)
    ctx.metrics["n_networks"] = int(sum(e["res"].diverged.size for e in table))
    ctx.metrics["n_diverged"] = int(sum(e["res"].diverged.sum() for e in table))
    ctx.metrics["n_seeds_c_max_censored"] = n_cens
    ctx.metrics["train_seconds"] = float(sum(e["wall"] for e in table))
    for r in red:
        ctx.metrics[f"sharpness_ratio_c1_w{r['width']}_d{r['depth']}"] = r["r1_mean"]
    title = "Early-training phase diagram (Kalra & Barkeshli)"
    lo, hi = red[0], red[-1]
    intro = (f"{cfg.model.upper()}s of widths {', '.join(map(str, cfg.widths))}"
             + (f" and depths {', '.join(map(str, cfg.depths))}" if cfg.model == "fcn" else "")
             + f" trained on {data.name} ({data.n} examples, inputs standardised per example, "
             f"one-hot targets, MSE = ½ mean over examples × classes) with SGD for "
             f"{cfg.n_steps} steps at η = c/λᴴ_0, c = 2^x, {cfg.n_seeds} seeds. Every c of a "
             f"seed runs in one compiled kernel (c is traced). This is the reference protocol "
             f"(CIFAR-10, widths 256–2048, depth 8, x-step 0.1) scaled down to what a 2-core "
             f"CPU runs in minutes: digits (8×8, 10 classes), widths {min(cfg.widths)}–"
             f"{max(cfg.widths)}, x-step {cfg.dx:g}. Last section: the exact uv-model theory."
             f"\n\n**What it shows.** The sharpness-reduction phase opens as d/w grows: "
             f"after {T} steps at c = {lo['c1']:g} the sharpness has fallen to "
             f"{lo['r1_mean']:.2f} of λᴴ_0 at d/w = {lo['dw']:.3g} (width {lo['width']}, depth "
             f"{lo['depth']}) and to {hi['r1_mean']:.2f} at d/w = {hi['dw']:.3g} (width "
             f"{hi['width']}, depth {hi['depth']}), and the phase's upper edge c_loss rises "
             f"from {_headline(lo)} to {_headline(hi)} — the "
             f"headline of Kalra & Barkeshli, whose published CIFAR-10 depth-8 values are set "
             f"beside ours below (c_loss 2.46 → 3.25 as d/w goes 0.0039 → 0.031). "
             + (f"Nothing diverged on the grid (c ≤ {grid_top:.3g}) for {n_cens} of {n_all} "
                f"seeds: their c_max is only a lower bound, drawn and tabulated as one, and "
                + ("the ordering verdict leaves them out (it says which and what they show). "
                   if "ordering_c_loss_c_sharp_c_max" in ctx.verdicts else
                   "with no seed's c_max measured the ordering is not tested in this run. ")
                if n_cens else "")
             + _inversion_note(status)
             + ("All verdicts pass." if ctx.passed else
                "Failed: " + "; ".join(f"`{k}` — {v['detail']}" for k, v in ctx.verdicts.items()
                                       if not v["passed"]) + "."))
    del uv_out
    return title, intro


def _headline(r: dict) -> str:
    """Mean c_loss of a network for prose: '≥ x' when some seed only bounds it."""
    m, bound = _lower_mean([v["c_loss"] for v in r["entry"]["vals"]])
    return ("≥ " if bound else "") + f"{m:.3g}"


def _inversion_note(status) -> str:
    """Resolved inversions c_sharp < c_loss on seeds the ordering verdict does not test."""
    inv = [f"width {w}, depth {d}, seed {s} (sharpness catapult from c = "
           f"{v['c_sharp'][1]:.3g}, loss catapult only from c = {v['c_loss'][1]:.3g})"
           for (ch, pair), w, d, s, v in status if ch == "censored" and pair == "inverted"]
    if not inv:
        return ""
    verb, what = ("invert", "these inversions are") if len(inv) > 1 else (
        "inverts", "the inversion is")
    return (f"Among them, {'; '.join(inv)} {verb} Kalra & Barkeshli's order c_loss ≤ c_sharp; "
            f"{what} resolved on the grid whatever c_max is, and reported here rather than "
            f"tested. ")


def _ratio_cell(r: np.ndarray, se: float) -> str:
    f = r[np.isfinite(r)]
    if f.size == 0:
        return "— (diverged)"
    s = f"{f.mean():.3f}" + (f" ± {se:.2g}" if np.isfinite(se) else "")
    return s + f" [{f.min():.3f}, {f.max():.3f}]" + (f" ({f.size}/{r.size})" if f.size < r.size
                                                    else "")


def _same_dw(red: list[dict]) -> str:
    """Pairs of networks with the same d/w: their λᴴ_T/λᴴ_0 at c = 1 and the difference in
    combined standard errors."""
    parts = []
    for i, a in enumerate(red):
        for b in red[i + 1:]:
            if abs(a["dw"] - b["dw"]) < 1e-12 and a["depth"] != b["depth"]:
                se = np.hypot(a["r1_se"], b["r1_se"])
                z = (a["r1_mean"] - b["r1_mean"]) / se if np.isfinite(se) and se > 0 else np.nan
                parts.append(f"d/w = {a['dw']:.4g}: w{a['width']} d{a['depth']} "
                             f"{a['r1_mean']:.3f} vs w{b['width']} d{b['depth']} "
                             f"{b['r1_mean']:.3f}" + (f" ({z:+.1f} SE)" if np.isfinite(z) else ""))
    return "; ".join(parts)


def _barrier_note(table) -> str:
    vals = [v["c_barrier"] for e in table for v in e["vals"]]
    found = sum(1 for k, _ in vals if k == "=")
    n_steps = table[0]["res"].info["n_steps"]
    return (f"c_barrier was found for {found} of {len(vals)} seeds; on the others the loss "
            f"along the straight segment θ_0 → θ_T stayed below L(θ_0) at every trainable c, "
            f"so c_barrier lies above their c_max ('> x'): after {n_steps} steps the segment "
            f"back to the start crosses no barrier, even where the loss catapulted on the way.")


def _ordering_verdict(ctx, status, grid_top: float, n_all: int) -> None:
    tested = [(ch, w, d, s, v) for (ch, _), w, d, s, v in status if ch in ("holds", "violated")]
    cens = [(pair, w, d, s, v) for (ch, pair), w, d, s, v in status if ch == "censored"]
    untest = [1 for (ch, _), *_ in status if ch == "untestable"]
    bad = [f"w={w} d={d} seed {s} (c_loss {_cell(*v['c_loss'])}, c_sharp "
           f"{_cell(*v['c_sharp'])}, c_max {_cell(*v['c_max'])})"
           for ch, w, d, s, v in tested if ch == "violated"]
    zero = sum(1 for ch, w, d, s, v in tested
               if ch == "holds" and v["c_loss"][0] == ">" and v["c_sharp"][0] == ">")
    c_pair = [(p, w, d, s, v) for p, w, d, s, v in cens if p != "unresolved"]
    inv = [f"w={w} d={d} seed {s} (sharpness catapult from c = {v['c_sharp'][1]:.3g}, loss "
           f"catapult from c = {v['c_loss'][1]:.3g}{'' if v['c_loss'][0] == '=' else ' or above'})"
           for p, w, d, s, v in c_pair if p == "inverted"]
    excluded = (f"Not tested: {len(cens)} of {n_all} seeds on which nothing diverged on the grid "
                f"(c ≤ {grid_top:.3g}) — their c_max is only a lower bound, so the chain's upper "
                f"end is not measured" if cens else "")
    if cens and c_pair:
        excluded += (f"; on them the pair c_loss ≤ c_sharp, where resolved, holds for "
                     f"{sum(1 for p, *_ in c_pair if p == 'holds')} of {len(c_pair)}"
                     + (f" and is inverted for {'; '.join(inv)}" if inv else ""))
    if untest:
        excluded += (("; " if excluded else "Not tested: ") + f"{len(untest)} seeds whose "
                     f"smallest c already diverged")
    if not tested:
        ctx.section("Ordering c_loss ≤ c_sharp ≤ c_max: not tested",
                    f"No seed diverged on the grid, so no seed has a measured c_max and the "
                    f"ordering is not tested in this run (no verdict). {excluded}.")
        return
    ctx.verdict("ordering_c_loss_c_sharp_c_max", not bad,
                f"c_loss ≤ c_sharp ≤ c_max holds for {len(tested) - len(bad)} of {len(tested)} "
                f"seeds whose c_max was measured (a divergence on the grid)"
                + (f", {zero} of them with neither catapult below c_max (straight from "
                   f"sharpness reduction to divergence)" if zero else "")
                + (f"; violated: {'; '.join(bad)}" if bad else "")
                + (f". {excluded}" if excluded else "") + ".")


def _reduction_verdict(ctx, red: list[dict], cfg) -> None:
    """λᴴ_T/λᴴ_0 at c = 1 falls as d/w grows (Kalra & Barkeshli's sharpness-reduction phase):
    the smallest and largest d/w differ by more than 3 combined SEs over seeds, and the means
    over networks of equal d/w fall strictly from one d/w to the next."""
    groups: dict[float, list[dict]] = {}
    for r in red:
        groups.setdefault(round(r["dw"], 12), []).append(r)
    dws = sorted(groups)
    if len(dws) < 2:
        ctx.section("Sharpness reduction against d/w: not tested",
                    "Only one value of d/w in this run (no verdict).")
        return
    means = [float(np.nanmean(np.concatenate([g["r1"] for g in groups[x]]))) for x in dws]

    def se(x):
        v = np.concatenate([g["r1"] for g in groups[x]])
        v = v[np.isfinite(v)]
        return float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else np.nan

    gap = means[0] - means[-1]
    comb = float(np.hypot(se(dws[0]), se(dws[-1])))
    ends_ok = gap > 3 * comb if np.isfinite(comb) else gap > 0
    mono = all(a > b for a, b in itertools.pairwise(means))
    c1 = red[0]["c1"]
    ctx.verdict("sharpness_reduction_grows_with_d_over_w", ends_ok and mono,
                f"λᴴ_{cfg.n_steps}/λᴴ_0 at c = {c1:g} (mean over seeds and networks of equal "
                f"d/w) falls strictly as d/w grows: "
                + " → ".join(f"{m:.3f} (d/w = {x:.3g})" for x, m in zip(dws, means, strict=True))
                + f"; smallest vs largest d/w differ by {gap:.3f}"
                + (f" = {gap / comb:.1f} combined SEs over seeds (> 3)" if np.isfinite(comb)
                   and comb > 0 else " (one seed: no SE, sign only)"))
    ctx.metrics["sharpness_ratio_c1_by_dw"] = {f"{x:.6g}": m for x, m in zip(dws, means,
                                                                          strict=True)}


def _trend_verdicts(cfg, ctx, table) -> None:
    """c_loss against 1/w at fixed depth and against depth at fixed width, on the means over
    seeds. A seed without a loss catapult below c_max only bounds c_loss from below (its c_max),
    so the claim 'A > B' is tested as: lower bound of A's mean > upper bound of B's mean
    (infinite if any seed of B is only bounded)."""
    by = {(e["width"], e["depth"]): [v["c_loss"] for v in e["vals"]] for e in table}

    def show(vals):
        m, bound = _lower_mean(vals)
        return ("≥ " if bound else "") + f"{m:.3g}"

    ws, ds = sorted(cfg.widths), sorted(cfg.depths)
    if len(ws) >= 2:
        parts, ok = [], True
        for d in ds:
            ok &= bool(_lower_mean(by[(ws[0], d)])[0] > _upper_mean(by[(ws[-1], d)]))
            parts.append(f"d={d}: " + " → ".join(show(by[(w, d)]) for w in ws))
        ctx.verdict("c_loss_grows_with_inverse_width", ok,
                    f"mean c_loss at the smallest width exceeds that at the largest, at every "
                    f"depth (widths {ws}; '≥': a lower bound, some seed had no loss catapult "
                    f"below its c_max): {'; '.join(parts)}")
    if len(ds) >= 2:
        parts, ok = [], True
        for w in ws:
            ok &= bool(_lower_mean(by[(w, ds[-1])])[0] > _upper_mean(by[(w, ds[0])]))
            parts.append(f"w={w}: " + " → ".join(show(by[(w, d)]) for d in ds))
        ctx.verdict("c_loss_grows_with_depth", ok,
                    f"mean c_loss at the largest depth exceeds that at the smallest, at every "
                    f"width (depths {ds}; '≥': a lower bound): {'; '.join(parts)}")
    for key, vals in by.items():
        ctx.metrics[f"c_loss_mean_w{key[0]}_d{key[1]}"] = _lower_mean(vals)[0]
