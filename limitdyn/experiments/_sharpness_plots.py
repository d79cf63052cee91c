"""Figures of the ``phase-diagram`` and ``sharpness`` experiments."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_STYLE = {"c_loss": ("C0", "o", "$c_{loss}$"), "c_sharp": ("C1", "s", "$c_{sharp}$"),
          "c_max": ("C3", "^", "$c_{max}$")}


def phase_figure(cfg, table):
    """c_loss, c_sharp, c_max (mean, min–max band over seeds) against 1/w and d/w."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6))
    depths = sorted({e["depth"] for e in table})
    dashes = ["-", "--", ":", "-."]
    for ax, xkey in zip(axes, ("1/w", "d/w"), strict=True):
        for j, d in enumerate(depths):
            rows = sorted((e for e in table if e["depth"] == d), key=lambda e: -e["width"])
            xs = np.array([1 / e["width"] if xkey == "1/w" else max(d, 1) / e["width"]
                           for e in rows])
            for name, (col, mk, lab) in _STYLE.items():
                vals = [getattr(e["th"], name) for e in rows]
                mean = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan
                                 for v in vals])
                lo = np.array([np.nanmin(v) if np.isfinite(v).any() else np.nan for v in vals])
                hi = np.array([np.nanmax(v) if np.isfinite(v).any() else np.nan for v in vals])
                ax.plot(xs, mean, dashes[j % 4], color=col, marker=mk, ms=5,
                        label=f"{lab}, d = {d}" if len(depths) > 1 else lab)
                ax.fill_between(xs, lo, hi, color=col, alpha=0.12, lw=0)
        ax.axhline(2.0, color="0.3", ls="--", lw=1)
        ax.text(ax.get_xlim()[0], 2.0, " c = 2", va="bottom", fontsize=8, color="0.3")
        ax.set_yscale("log", base=2)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xkey)
        ax.set_ylabel("c = η λᴴ₀")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title("critical c against 1/width", fontsize=10)
    axes[1].set_title("critical c against depth/width", fontsize=10)
    axes[1].legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    return fig


def trajectory_figure(res, th, label: str, seed: int = 0):
    """Loss L_t/L_0 and sharpness λᴴ_t/λᴴ_0 of one seed, one curve per c."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
    cmap = plt.get_cmap("viridis")
    n_c = len(res.cs)
    t = np.arange(res.loss.shape[-1])
    for j in range(n_c):
        col = cmap(j / max(n_c - 1, 1))
        loss = res.loss[seed, j]
        ok = np.isfinite(loss)
        axes[0].plot(t[ok], loss[ok] / loss[0], color=col, lw=1.2)
        lam = res.sharpness[seed, j]
        okl = np.isfinite(lam)
        axes[1].plot(res.sharp_steps[okl], lam[okl] / lam[0], color=col, lw=1.2)
    for ax, name in zip(axes, ("$L_t / L_0$ (full training set)",
                               "$\\lambda^H_t / \\lambda^H_0$ (measurement batch)"), strict=True):
        ax.set_yscale("log")
        ax.axhline(1.0, color="0.3", ls="--", lw=1)
        ax.set_xlabel("step t")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(np.log2(res.cs.min()),
                                                             np.log2(res.cs.max())))
    fig.colorbar(sm, ax=axes, label="log₂ c")
    axes[0].set_title(f"{label}, seed {seed}: c_loss = {th.c_loss[seed]:.3g}, "
                      f"c_max = {th.c_max[seed]:.3g}", fontsize=9)
    axes[1].set_title(f"c_sharp = {th.c_sharp[seed]:.3g}", fontsize=9)
    return fig


REGIME_COLOURS = {"early transient": "#fde0c5", "intermediate saturation": "#d9f0d3",
                  "progressive sharpening": "#d6e4f5", "edge of stability": "#f4cccc"}


def regime_figure(runs, title: str):
    """Sharpness × η / threshold and loss for each run, with the classified regimes shaded.

    ``runs``: list of dicts with keys label, steps, sharp, loss_steps, loss, eta, threshold,
    segments (list of (start, stop, regime)).
    """
    plt = _plt()
    fig, axes = plt.subplots(len(runs), 2, figsize=(12, 3.2 * len(runs)), squeeze=False)
    for row, r in zip(axes, runs, strict=True):
        ax, ax2 = row
        for a in (ax, ax2):
            for start, stop, regime in r["segments"]:
                a.axvspan(max(start, 1), max(stop, 1), color=REGIME_COLOURS[regime], lw=0)
        s = np.maximum(r["steps"], 1)
        ax.plot(s, r["sharp"], color="C0", lw=1.4, label="λᴴ_t")
        ax.axhline(r["threshold"] / r["eta"], color="C3", ls="--", lw=1.2,
                   label=f"{r['threshold']:.3g}/η")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("sharpness λᴴ")
        ax.set_title(r["label"], fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ls = np.maximum(r["loss_steps"], 1)
        ax2.plot(ls, r["loss"], color="k", lw=1.2)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_ylabel("training loss")
    for a in axes[-1]:
        a.set_xlabel("step t")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in REGIME_COLOURS.values()]
    fig.legend(handles, list(REGIME_COLOURS), loc="upper center", ncol=4, fontsize=8,
               bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(title, fontsize=10, y=1.03)
    fig.tight_layout()
    return fig
