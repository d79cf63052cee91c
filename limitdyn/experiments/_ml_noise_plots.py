"""Figures of the ``ml-noise`` experiment."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
        ax.set_xlabel("curvature a(y) of the nearest minimiser")
        ax.set_ylabel("time-averaged density of y (per unit length)")
        ax.set_title(f"k = {k}: solid = fit, dashed = prediction (±2 SE bars)", fontsize=9)
        ax.legend(fontsize=7.5)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def exponents(cfg, sel: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    lim = 0.0
    for i, k in enumerate(cfg.ks):
        for c in (c for c in sel["cases"] if c["k"] == k):
            marker = "s" if c["noise"] == "homogeneous" else "o"
            ax.errorbar(c["pred"], c["rich"], yerr=2 * c["rich_se"], fmt=marker, color=f"C{i}",
                        mfc="none" if c["collapse"] else f"C{i}", ms=6, capsize=3)
            ax.annotate(f"{'hom' if c['noise'] == 'homogeneous' else 'ML'} T={c['T']:g}",
                        (c["pred"], c["rich"]), textcoords="offset points", xytext=(6, -10),
                        fontsize=7, color="0.3")
            lim = max(lim, c["pred"], c["rich"])
        ax.plot([], [], "o", color=f"C{i}", label=f"k = {k}")
    grid = np.array([0, lim * 1.1])
    ax.plot(grid, grid, "-", color="0.4", lw=1, label="fit = prediction")
    ax.fill_between(grid, 0.9 * grid, 1.1 * grid, color="0.85", label="±10%")
    ax.set_xlabel("predicted exponent (k/2 homogeneous, 1 + 1/T ML)")
    ax.set_ylabel("fitted exponent (Richardson, ±2 SE)")
    ax.legend(fontsize=8)
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
    ax.set_xlabel("step")
    ax.set_ylabel("fitted selection exponent")
    ax.set_title(f"ML-isotropic noise, T = 1, k = {conv['k']}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def loss_law(law: dict):
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11.0, 4.4))
    for i, c in enumerate(law["cases"]):
        good = (c["ref"] > 1e-12) & (c["mass"] > 0) & (c["edges"][:-1] >= 0.1)
        ratio = c["mass"][good] / c["ref"][good]
        x = c["centres"][good]
        # normalise the exact power law like the data (least squares in log space)
        shift = np.mean(np.log(ratio) + c["q"] * np.log(x))
        ax.plot(x, ratio, "o", ms=3, color=f"C{i}",
                label=f"k={c['k']}, T={c['T']:g}: slope {c['slope']:.3f}")
        ax.plot(x, np.exp(shift) * x ** (-c["q"]), "-", color=f"C{i}", lw=1,
                label=f"L^−{c['q']:.3g}")
        w = np.diff(c["edges"])
        bx.plot(c["centres"], c["mass"] / w, "o", ms=3, color=f"C{i}",
                label=f"k={c['k']}, T={c['T']:g} (KS p = {c['ks'].pvalue:.2g})")
        bx.plot(c["centres"], c["pred_mass"] / w, "-", color=f"C{i}", lw=1)
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("L")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    ax.set_ylabel("density of L / density under the uniform measure")
    bx.set_ylabel("density of L (points: simulation, lines: exact)")
    fig.tight_layout()
    return fig


def regression(reg: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
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
    ax.legend(fontsize=7.5)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def curvature(curv: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    res = curv["res"]
    ax.plot(res.final_a, np.log10(np.maximum(res.final_loss, 1e-38)), ".", ms=3, alpha=0.6)
    ax.axvline(curv["a_c"], color="C3", ls=":", label=f"a_c = 2/((k−2)T) = {curv['a_c']:.3g}")
    ax.set_xlabel("a(y) at the end")
    ax.set_ylabel("log10 L at the end")
    ax.set_title(f"curvature-shaped noise, k = {curv['k']}, T = {curv['T']:g}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig
