"""Figures of the ``ml-noise`` experiment."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log_x(ax, ticks) -> None:
    """Log x axis with plain tick labels at ``ticks`` (1, 2, 4 — not 2×10⁰)."""
    import matplotlib.ticker as mticker

    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())


def selection(cfg, sel: dict):
    from ..theory import mlnoise as th

    plt = _plt()
    ks = list(cfg.ks)
    fig, axes = plt.subplots(1, len(ks), figsize=(5.2 * len(ks), 4.4), squeeze=False)
    for ax, k in zip(axes[0], ks, strict=True):
        cases = [c for c in sel["cases"] if c["k"] == k]
        for i, c in enumerate(cases):
            res = c["fine"]
            dens, se = res.y_density()
            yc = 0.5 * (res.y_edges[1:] + res.y_edges[:-1])
            a = th.curvature(yc, cfg.a_min, cfg.a_max)
            half = yc <= np.pi                      # a(y) is symmetric: one branch suffices
            order = np.argsort(a[half])
            colour = f"C{i}"
            label = (f"{c['noise']} T={c['T']:g}" + (" (collapsing)" if c["collapse"] else ""))
            good = dens[half][order] > 0
            ax.errorbar(a[half][order][good], dens[half][order][good],
                        yerr=2 * se[half][order][good], fmt="o", ms=3.5, color=colour,
                        mfc="none" if c["collapse"] else colour, label=label, capsize=0)
            grid = np.linspace(cfg.a_min, cfg.a_max, 100)
            ref_a = a[half][order][good][0] if good.any() else cfg.a_min
            ref_d = dens[half][order][good][0] if good.any() else 1.0
            ax.plot(grid, ref_d * (grid / ref_a) ** (-c["f1"].value), "-", color=colour, lw=1)
            ax.plot(grid, ref_d * (grid / ref_a) ** (-c["pred"]), "--", color=colour, lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_x(ax, [t for t in (1, 1.5, 2, 3, 4, 6, 8) if cfg.a_min <= t <= cfg.a_max])
        ax.set_xlabel("curvature a(y) of the nearest minimiser")
        ax.set_ylabel("time-averaged density of y (per unit length)")
        ax.set_title(f"k = {k}: solid = fit, dashed = prediction (±2 SE bars)", fontsize=9)
        ax.legend(fontsize=7.5)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def exponents(cfg, sel: dict):
    from matplotlib.lines import Line2D

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    lim = 0.0
    for i, k in enumerate(cfg.ks):
        side = -1 if i % 2 == 0 else 1             # labels of one k left, the next right
        for c in (c for c in sel["cases"] if c["k"] == k):
            marker = "s" if c["noise"] == "homogeneous" else "o"
            ax.errorbar(c["pred"], c["rich"], yerr=2 * c["rich_se"], fmt=marker, color=f"C{i}",
                        mfc="none" if c["collapse"] else f"C{i}", ms=6, capsize=3)
            ax.annotate(f"k={k}, {'hom.' if c['noise'] == 'homogeneous' else 'ML'} "
                        f"T={c['T']:g}", (c["pred"], c["rich"]), textcoords="offset points",
                        xytext=(9 * side, -3), ha="left" if side > 0 else "right",
                        fontsize=7, color=f"C{i}")
            lim = max(lim, c["pred"], c["rich"])
    grid = np.array([0, lim * 1.12])
    ax.plot(grid, grid, "-", color="0.4", lw=1)
    ax.fill_between(grid, 0.9 * grid, 1.1 * grid, color="0.88")
    handles = [Line2D([], [], color=f"C{i}", marker="o", ls="none", label=f"k = {k}")
               for i, k in enumerate(cfg.ks)]
    handles += [Line2D([], [], color="0.3", marker="s", ls="none", label="homogeneous noise"),
                Line2D([], [], color="0.3", marker="o", ls="none", label="ML-isotropic noise"),
                Line2D([], [], color="0.3", marker="o", mfc="none", ls="none",
                       label="collapsing (T ≤ 2/(k−2))"),
                Line2D([], [], color="0.4", label="fit = prediction"),
                plt.Rectangle((0, 0), 1, 1, color="0.88", label="±10%")]
    ax.legend(handles=handles, fontsize=7.5, loc="upper left")
    ax.set_xlim(0, lim * 1.3)           # room for the labels on the right
    ax.set_ylim(0, lim * 1.12)
    ax.set_xlabel("predicted exponent (k/2 homogeneous, 1 + 1/T ML)")
    ax.set_ylabel("fitted exponent (Richardson, ±2 SE)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def collapse(sel: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for i, c in enumerate(sel["collapse"]):
        ax.plot(c["a"], c["slope"], ".", ms=3, color=f"C{i}", alpha=0.5,
                label=f"k={c['k']}, T={c['T']:g}: fitted c = {c['c']:.3f} ± {c['se']:.3f}")
        grid = np.linspace(c["a"].min(), c["a"].max(), 10)
        ax.plot(grid, c["pred"] * grid, "--", color=f"C{i}",
                label=f"predicted 2a[T(k−2)/2 − 1], c = {c['pred']:.3f}")
    ax.set_xlabel("a(y) where the path freezes")
    ax.set_ylabel("d log L / dt (per path, second half)")
    ax.legend(fontsize=7.5)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def convergence(conv: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    em = sorted([(dt, f) for s, dt, f, _ in conv["pts"] if s == "em"], key=lambda q: q[0])
    tc = sorted([(dt, f) for s, dt, f, _ in conv["pts"] if s == "time-change"],
                key=lambda q: q[0])
    ax.errorbar([d for d, _ in em], [f.value for _, f in em], yerr=[2 * f.stderr for _, f in em],
                fmt="o-", color="C0", capsize=3, label="Euler–Maruyama (step dt)")
    ax.errorbar([0.0], [conv["extra"]], yerr=[2 * conv["extra_se"]], fmt="D", color="C0",
                mfc="none", capsize=3, label="first-order extrapolation dt → 0")
    if tc:
        ax.errorbar([d for d, _ in tc], [f.value for _, f in tc],
                    yerr=[2 * f.stderr for _, f in tc], fmt="s", color="C1", capsize=3,
                    label="time change dτ = max(L,1) dt (step dτ)")
    ax.axhline(conv["pred"], color="k", lw=1, ls="--", label="1 + 1/T = 2")
    ax.set_xlabel("step: dt (Euler–Maruyama) or dτ (time change)")
    ax.set_ylabel("fitted selection exponent")
    ax.set_title(f"ML-isotropic noise, T = 1, k = {conv['k']}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def loss_law(law: dict):
    """Left: density of L over its density under the uniform measure against L^−(1+1/T).
    Right: the density of L itself with the exact prediction, drawn only where the reference
    law (a binned FFT convolution) is above its round-off (uniform-measure mass per bin
    > 1e-12): below that the difference of two CDF values is round-off, not the law."""
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11.5, 4.6))
    lows, dens = [], []
    for i, c in enumerate(law["cases"]):
        good = (c["ref"] > 1e-12) & (c["mass"] > 0) & (c["edges"][:-1] >= 0.1)
        ratio = c["mass"][good] / c["ref"][good]
        x = c["centres"][good]
        # normalise the exact power law like the data (least squares in log space)
        shift = np.mean(np.log(ratio) + c["q"] * np.log(x))
        ax.plot(x, ratio, "o", ms=3, color=f"C{i}",
                label=f"k={c['k']}, T={c['T']:g}: slope {c['slope']:.2f} (line: "
                      f"$L^{{-{c['q']:.3g}}}$)")
        ax.plot(x, np.exp(shift) * x ** (-c["q"]), "-", color=f"C{i}", lw=1)
        w = np.diff(c["edges"])
        seen = c["mass"] > 0
        bx.plot(c["centres"][seen], c["mass"][seen] / w[seen], "o", ms=3, color=f"C{i}",
                label=f"k={c['k']}, T={c['T']:g} (KS p = {c['ks'].pvalue:.2g})")
        trust = c["ref"] > 1e-12
        bx.plot(c["centres"][trust], c["pred_mass"][trust] / w[trust], "-", color=f"C{i}", lw=1)
        lows += list(c["centres"][seen]) + list(c["centres"][trust])
        dens += list(c["mass"][seen] / w[seen])
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("L")
        a.grid(True, which="major", alpha=0.3)
        a.legend(fontsize=7)
    if lows:
        bx.set_xlim(min(lows) / 1.5, None)
    if dens:     # two decades below the smallest observed density: the data's range
        bx.set_ylim(min(dens) / 100, max(dens) * 3)
    ax.set_ylabel("density of L / density under the uniform measure")
    ax.set_title("the ratio is exactly ∝ $L^{-(1+1/T)}$ under (8.1); L ≥ 0.1", fontsize=9)
    bx.set_ylabel("density of L")
    bx.set_title("points: simulation; lines: exact law (where computed above round-off)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def regression(reg: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.6, 4.4))
    bins = np.linspace(1.0, 4.0, 31)
    for i, (name, s) in enumerate(reg["summary"].items()):
        a = s["a"][s["collapsed"]]
        if a.size:
            ax.hist(a, bins=bins, histtype="step", lw=1.6, color=f"C{i}", density=True,
                    label=f"{name} ({a.size}/{s['a'].size} collapsed)")
    ax.axvline(reg["a_sgd"], color="C0", ls=":", lw=1.2, label="2S/(ηN): SGD stability")
    ax.axvline(reg["a_curv"], color="C2", ls=":", lw=1.2, label="2/((N−2)T): curvature-shaped")
    ax.set_xlabel("curvature a(y) of the minimiser reached")
    ax.set_ylabel("density over collapsed paths")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def curvature(curv: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    res = curv["res"]
    ax.plot(res.final_a, np.log10(np.maximum(res.final_loss, 1e-38)), ".", ms=3, alpha=0.6)
    ax.axvline(curv["a_c"], color="C3", ls=":",
               label=f"$a_c$ = 2/((k−2)T) = {curv['a_c']:.3g}")
    ax.set_xlabel("a(y) at the end")
    ax.set_ylabel(r"$\log_{10} L$ at the end")
    ax.set_title(f"curvature-shaped noise, k = {curv['k']}, T = {curv['T']:g}", fontsize=10)
    ax.text(0.97, 0.04, f"{res.final_a.size} paths: {100 * curv['frac_collapsed']:.1f}% "
            f"collapsed (L < 1e-4), {100 * curv['frac_below']:.0f}% of them\nwith "
            f"a ≤ $a_c$; {100 * curv['frac_trapped']:.1f}% stuck at a loss maximum",
            transform=ax.transAxes, fontsize=7.5, va="bottom", ha="right", color="0.25",
            bbox=dict(boxstyle="round", fc="white", ec="0.8"))
    ax.legend(fontsize=8, loc="upper center")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig
