"""Experiment ``sharpness``: the four regimes of sharpness over a longer run (theory.md §7).

Full-batch gradient descent (and heavy-ball momentum) on a small network, λᴴ_t measured on
a fixed measurement batch every ``measure_every`` steps. Over a run the sharpness goes
through an early transient (fast change during the first steps; a catapult for c > 2), an
intermediate saturation (plateau), progressive sharpening (λᴴ rising toward the stability
threshold) and the edge of stability (λᴴ ≈ 2/η for gradient descent, (2 + 2β)/η with
momentum; Cohen et al. 2021, Kalra & Barkeshli 2023). :func:`classify_regimes` marks them
automatically; the figure shades them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import Context, register

REGIMES = ("early transient", "intermediate saturation", "progressive sharpening",
           "edge of stability")


@dataclasses.dataclass(frozen=True)
class SharpnessConfig:
    """Configuration of ``limitdyn run sharpness``.

    FCN ``width`` × ``depth`` (``activation``) on ``n_data`` examples of ``dataset``, MSE,
    full-batch GD for ``n_steps`` at η = c/λᴴ_0 for each c in ``cs`` (β = 0) and each c in
    ``momentum_cs`` with β = ``momentum``; λᴴ every ``measure_every`` steps on the first
    ``measure_size`` examples (``lanczos_iter`` warm-started Lanczos steps), and at every step
    for t <= ``early_steps`` (a second, short run of the same deterministic full-batch GD:
    the early transient is resolved step by step, not joined between two samples);
    ``n_seeds``.
    Classifier: ``eos_fraction`` of the threshold counts as the edge of stability,
    ``flat_slope`` bounds |d log λᴴ / d log t| of a plateau.
    """

    width: int = 64
    depth: int = 3
    activation: str = "tanh"
    dataset: str = "digits"
    n_data: int = 512
    cs: tuple[float, ...] = (1.0, 3.0, 5.0)
    momentum: float = 0.9
    momentum_cs: tuple[float, ...] = (3.0,)
    n_steps: int = 3000
    measure_every: int = 25
    early_steps: int = 50
    measure_size: int = 256
    lanczos_iter: int = 8
    n_seeds: int = 1
    eos_fraction: float = 0.9
    flat_slope: float = 0.05

    def validate(self) -> None:
        from .. import _checks

        _checks.choice("dataset", self.dataset, ("digits", "teacher-student"))
        _checks.choice("activation", self.activation, ("relu", "tanh"))
        if self.width < 1 or self.depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {self.width}, {self.depth}")
        if not self.cs or any(c <= 0 for c in (*self.cs, *self.momentum_cs)):
            raise ValueError("cs must be non-empty and every c (cs, momentum_cs) > 0")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.n_steps < 10 or self.measure_every < 1 or self.n_steps % self.measure_every:
            raise ValueError("n_steps must be >= 10 and a multiple of measure_every")
        if not 0 <= self.early_steps < self.n_steps:
            raise ValueError(f"early_steps must be in [0, n_steps), got {self.early_steps}")
        if self.n_steps // self.measure_every < 5:
            raise ValueError("need at least 5 sharpness measurements (n_steps/measure_every)")
        n = 1797 if self.dataset == "digits" else 1024
        if not 2 <= self.n_data <= n or not 1 <= self.measure_size <= self.n_data:
            raise ValueError(f"need 2 <= n_data <= {n} and 1 <= measure_size <= n_data")
        if self.lanczos_iter < 1 or self.n_seeds < 1:
            raise ValueError("lanczos_iter and n_seeds must be >= 1")
        if not 0 < self.eos_fraction <= 1 or self.flat_slope <= 0:
            raise ValueError("need 0 < eos_fraction <= 1 and flat_slope > 0")


QUICK = {"width": 32, "n_data": 256, "cs": [1.0, 5.0], "momentum_cs": [3.0], "n_steps": 400,
         "measure_every": 20, "early_steps": 40, "measure_size": 128}


def classify_regimes(steps: np.ndarray, sharp: np.ndarray, eta: float, beta: float = 0.0, *,
                     eos_fraction: float = 0.9, flat_slope: float = 0.05) -> np.ndarray:
    """Label each measurement with one of :data:`REGIMES` (as an index 0–3).

    Rules, on the local slope s = d log λᴴ / d log t (centred differences, t >= 1):
    edge of stability where λᴴ >= ``eos_fraction`` × (2 + 2β)/η; otherwise progressive
    sharpening where s > ``flat_slope``, intermediate saturation where |s| <= ``flat_slope``;
    the early transient is the prefix before the first plateau or sharpening point (and any
    falling point, s < −flat_slope, before it). Labels are then smoothed by a majority
    filter over 3 neighbours, and the transient is forced to be a prefix. A start above the
    threshold is a catapult, not an edge: every measurement before λᴴ first falls below
    (2 + 2β)/η belongs to the early transient (gradient descent is unstable there; the edge of
    stability is where λᴴ comes back up to the threshold and stays).
    """
    steps = np.asarray(steps, np.float64)
    lam = np.asarray(sharp, np.float64)
    thr = (2 + 2 * beta) / eta
    logt = np.log(np.maximum(steps, 0.5))
    logl = np.log(np.maximum(lam, 1e-300))
    slope = np.gradient(logl, logt) if len(lam) > 2 else np.zeros_like(lam)
    lab = np.where(slope > flat_slope, 2, np.where(np.abs(slope) <= flat_slope, 1, 0))
    lab = np.where(lam >= eos_fraction * thr, 3, lab)
    lab[0] = 0
    below = np.flatnonzero(lam < thr)
    n_cat = int(below[0]) if below.size else len(lab)   # a catapult: still transient
    lab[:n_cat] = 0
    sm = lab.copy()
    for i in range(1, len(lab) - 1):
        vals, counts = np.unique(lab[i - 1:i + 2], return_counts=True)
        if counts.max() >= 2:
            sm[i] = vals[np.argmax(counts)]
    sm[:n_cat] = 0
    first = np.flatnonzero(sm != 0)
    stop = int(first[0]) if first.size else len(sm)
    sm[:stop] = 0
    sm[stop:] = np.where(sm[stop:] == 0, 1, sm[stop:])   # a later fall is not "early"
    return sm


def segments(steps: np.ndarray, labels: np.ndarray) -> list[tuple[float, float, str]]:
    """Runs of equal labels as (first step, last step, regime name)."""
    out, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            stop = steps[i] if i < len(labels) else steps[-1]
            out.append((float(steps[start]), float(stop), REGIMES[int(labels[start])]))
            start = i
    return out


@register("sharpness", "sharpness over a longer run: early transient, saturation, progressive "
          "sharpening, edge of stability (2/η, (2+2β)/η with momentum), auto-classified",
          SharpnessConfig, QUICK)
def run_sharpness(cfg: SharpnessConfig, ctx: Context):

    from .. import nn as lnn
    from ._sharpness_plots import regime_figure

    data = lnn.load_dataset(cfg.dataset, n=cfg.n_data, seed=ctx.seed)
    model = lnn.make_model("fcn", n_out=data.n_classes, width=cfg.width, depth=cfg.depth,
                           activation=cfg.activation)
    runs, rows, early_gaps = [], [], []
    for tag, beta, cs in (("GD", 0.0, cfg.cs), ("GD + momentum", cfg.momentum, cfg.momentum_cs)):
        if not cs:
            continue
        ctx.say(f"{tag}: {len(cs)} c values × {cfg.n_seeds} seeds × {cfg.n_steps} steps …")
        res = lnn.train_grid(model, data, cs, key=ctx.subkey(7), n_seeds=cfg.n_seeds,
                             n_steps=cfg.n_steps, batch_size=data.n, momentum=beta,
                             measure_every=cfg.measure_every, measure_size=cfg.measure_size,
                             lanczos_iter=cfg.lanczos_iter, n_barrier=1)
        steps_all, sharp_all, gap = res.sharp_steps, res.sharpness, 0.0
        if cfg.early_steps:
            # the same full-batch GD (same key: same initialisation, λᴴ_0 and η; no minibatch
            # noise), measured at every step of its first early_steps steps
            early = lnn.train_grid(model, data, cs, key=ctx.subkey(7), n_seeds=cfg.n_seeds,
                                   n_steps=cfg.early_steps, batch_size=data.n, momentum=beta,
                                   measure_every=1, measure_size=cfg.measure_size,
                                   lanczos_iter=cfg.lanczos_iter, n_barrier=1)
            if not np.allclose(early.eta, res.eta, rtol=1e-6):
                raise RuntimeError("the early run does not repeat the long run (η differs)")
            with np.errstate(invalid="ignore"):
                gap = float(np.nanmax(np.abs(early.loss - res.loss[..., :cfg.early_steps + 1])
                                      / res.loss[..., :cfg.early_steps + 1]))
            later = res.sharp_steps > cfg.early_steps
            steps_all = np.concatenate([early.sharp_steps, res.sharp_steps[later]])
            sharp_all = np.concatenate([early.sharpness, res.sharpness[..., later]], axis=-1)
            early_gaps.append(gap)
        for j, c in enumerate(cs):
            eta = float(res.eta[0, j])
            lam = sharp_all[0, j]
            ok = np.isfinite(lam)
            labels = classify_regimes(steps_all[ok], lam[ok], eta, beta,
                                      eos_fraction=cfg.eos_fraction, flat_slope=cfg.flat_slope)
            seg = segments(steps_all[ok], labels)
            thr = 2 + 2 * beta
            ratio = lam[ok] * eta / thr
            tail = ratio[-max(3, len(ratio) // 5):]
            label = f"{tag}, β = {beta:g}, c = {c:g} (η = {eta:.3g})"
            in_eos = labels == 3
            eos_max = float(np.max(ratio[in_eos])) if in_eos.any() else np.nan
            runs.append(dict(label=label, steps=steps_all[ok], sharp=lam[ok],
                             eos_max=eos_max,
                             loss_steps=np.arange(res.loss.shape[-1]), loss=res.loss[0, j],
                             eta=eta, threshold=thr, segments=seg))
            found = [r for r in REGIMES if any(s[2] == r for s in seg)]
            rows.append([tag, f"{beta:g}", f"{c:g}", f"{eta:.4g}", f"{lam[0]:.4g}",
                         f"{np.nanmax(lam):.4g}", f"{thr / eta:.4g}",
                         f"{tail.mean():.3f}", "; ".join(f"{s[2]} {s[0]:g}–{s[1]:g}"
                                                         for s in seg),
                         "yes" if res.diverged[0, j] else "no"])
            ctx.out.add_arrays(f"beta{beta:g}_c{c:g}", steps=steps_all, sharpness=lam,
                               loss=res.loss[0, j], labels=labels, eta=eta)
            ctx.metrics[f"eos_ratio_beta{beta:g}_c{c:g}"] = float(tail.mean())
            ctx.metrics[f"regimes_beta{beta:g}_c{c:g}"] = ", ".join(found)
    ctx.table("Regimes", ["run", "β", "c", "η", "λᴴ_0", "max λᴴ", "(2+2β)/η",
                          "late λᴴη/(2+2β)", "classified regimes (steps)", "diverged"], rows,
              note=f"FCN width {cfg.width}, depth {cfg.depth} ({cfg.activation}), "
                   f"{data.name} (first {data.n} examples), MSE, full-batch GD, η = c/λᴴ_0. "
                   f"λᴴ on the first {cfg.measure_size} examples at every step up to "
                   f"t = {cfg.early_steps}, then every {cfg.measure_every} steps (Lanczos, "
                   f"{cfg.lanczos_iter} warm-started steps)"
                   + (f"; the step-by-step values come from a second run of the same "
                      f"deterministic GD over its first {cfg.early_steps} steps, whose losses "
                      f"repeat the long run's to a relative {max(early_gaps):.1e}"
                      if early_gaps else "") + f". 'late': mean over the last "
                   f"fifth of the measurements. Classifier: edge of stability where "
                   f"λᴴ >= {cfg.eos_fraction:g}·(2+2β)/η; progressive sharpening where "
                   f"d log λᴴ/d log t > {cfg.flat_slope:g}; saturation where |slope| <= "
                   f"{cfg.flat_slope:g}; early transient: the prefix before either.")
    ctx.figure(regime_figure(runs, "Sharpness regimes (shaded: automatic classification)"),
               "regimes.png",
               f"Sharpness λᴴ_t (left; dots: the measurements — every step up to "
               f"t = {cfg.early_steps}, then every {cfg.measure_every}; dashed: the stability "
               f"threshold (2+2β)/η; dotted: λᴴ_0) and full-batch training loss (right; dotted: "
               f"L_0) for each run against step t >= 1, with the classified regimes shaded.")
    all_found = {r for run in runs for s in run["segments"] for r in [s[2]]}
    ctx.verdict("four_regimes_seen", len(all_found) == 4,
                f"regimes found across the runs: {', '.join(r for r in REGIMES if r in all_found)}")
    eos = [r for r in runs if any(s[2] == "edge of stability" for s in r["segments"])]
    ctx.verdict("edge_of_stability_at_threshold",
                bool(eos) and all(r["eos_max"] < 1.25 for r in eos),
                f"{len(eos)} run(s) reach the edge of stability; there λᴴ stays below 1.25 × "
                f"(2+2β)/η (max λᴴη/(2+2β) in the regime: "
                + ", ".join(f"{r['eos_max']:.3f}" for r in eos) + ")")
    title = "Sharpness regimes over a longer run"
    intro = (f"Full-batch gradient descent (β = 0) and heavy-ball momentum (β = {cfg.momentum:g}) "
             f"on an FCN of width {cfg.width} and depth {cfg.depth} on {data.n} {data.name} "
             f"examples for {cfg.n_steps} steps, η = c/λᴴ_0. The four regimes of Kalra & "
             f"Barkeshli (theory.md §7): early transient, intermediate saturation, progressive "
             f"sharpening and the edge of stability at 2/η ((2+2β)/η with momentum), classified "
             f"automatically from the sharpness curve. Scaled down from CIFAR-10 to digits on a "
             f"2-core CPU.")
    return title, intro
