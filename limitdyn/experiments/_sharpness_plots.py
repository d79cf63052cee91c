"""Figures of the ``phase-diagram`` and ``sharpness`` experiments."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_STYLE = {"c_loss": ("C0", "o", r"$c_{\mathrm{loss}}$"),
          "c_sharp": ("C1", "s", r"$c_{\mathrm{sharp}}$"),
          "c_max": ("C3", "^", r"$c_{\max}$")}
_DEPTH_LS = ["-", "--", ":", "-."]


def _plain_log_axis(axis) -> None:
    """Tick labels on a log axis as plain numbers (1, 2, 0.5), not 2×10⁰."""
    import matplotlib.ticker as mticker

    fmt = mticker.FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(mticker.NullFormatter())


def _series(rows, name):
    """Per network: (lower mean over seeds, is-a-bound, min, max) of one critical value, bounds
    entering at their value (a lower bound of the mean when any seed is only bounded)."""
    out = []
    for e in rows:
        vals = [v[name] for v in e["vals"]]
        x = [v for k, v in vals if k in ("=", ">", "≥")]
        if not x:
            out.append((np.nan, True, np.nan, np.nan))
            continue
        out.append((float(np.mean(x)), any(k != "=" for k, _ in vals), min(x), max(x)))
    return out


def _draw_threshold(ax, xs, ser, col, mk, ls, label):
    """Measured means: filled markers joined by lines; lower bounds: open markers with an
    upward arrow, joined to nothing (a bound is not a measured curve)."""
    mean = np.array([s[0] for s in ser])
    bound = np.array([s[1] for s in ser])
    lo = np.array([s[2] for s in ser])
    hi = np.array([s[3] for s in ser])
    meas = np.where(bound, np.nan, mean)
    ax.plot(xs, meas, ls, color=col, marker=mk, ms=6, label=label)
    ax.fill_between(xs, np.where(bound, np.nan, lo), np.where(bound, np.nan, hi), color=col,
                    alpha=0.12, lw=0)
    for x, m, b in zip(xs, mean, bound, strict=True):
        if b and np.isfinite(m):
            ax.plot([x], [m], mk, mfc="white", mec=col, ms=7, mew=1.5, zorder=4)
            ax.annotate("", xy=(x, m * 1.35), xytext=(x, m * 1.04),
                        arrowprops=dict(arrowstyle="-|>", color=col, lw=1.2), zorder=4)


def phase_figure(cfg, table, kb_depth=None, kb_widths=(), kb_loss=(), kb_sharp=(),
                 kb_max=None):
    """c_loss, c_sharp, c_max (mean, min–max band over seeds) against 1/w and d/w; lower
    bounds drawn as open markers with arrows; Kalra & Barkeshli's values beside (d/w panel)."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    depths = sorted({e["depth"] for e in table})
    top = 2.0 ** cfg.x_max
    for ax, xkey in zip(axes, ("1/w", "d/w"), strict=True):
        for j, d in enumerate(depths):
            rows = sorted((e for e in table if e["depth"] == d), key=lambda e: -e["width"])
            xs = np.array([1 / e["width"] if xkey == "1/w" else max(d, 1) / e["width"]
                           for e in rows])
            xs = xs * 2.0 ** (0.05 * (j - (len(depths) - 1) / 2))   # depths side by side
            for name, (col, mk, _) in _STYLE.items():
                _draw_threshold(ax, xs, _series(rows, name), col, mk, _DEPTH_LS[j % 4], None)
        if xkey == "d/w" and kb_depth:
            kx = np.array([kb_depth / w for w in kb_widths])
            ax.plot(kx, kb_loss, "o", color="0.45", mfc="none", ms=6, mew=1.3)
            ax.plot(kx, kb_sharp, "s", color="0.45", mfc="none", ms=6, mew=1.3)
            if kb_max:
                ax.fill_between([kx.min(), kx.max()], [kb_max[0]] * 2, [kb_max[1]] * 2,
                                color="0.6", alpha=0.35, lw=0)
        tr = blended_transform_factory(ax.transAxes, ax.transData)
        ax.axhline(2.0, color="0.3", ls="--", lw=1)
        ax.text(0.99, 2.0 * 1.03, "c = 2 (wide-network $c_{\\mathrm{loss}}$)", transform=tr,
                ha="right", va="bottom", fontsize=8, color="0.3")
        ax.axhline(top, color="0.5", ls=":", lw=1)
        ax.text(0.01, top * 0.97, f"largest c on the grid ({top:g})", transform=tr, ha="left",
                va="top", fontsize=8, color="0.4")
        ax.set_yscale("log", base=2)
        ax.set_xscale("log", base=2)
        ax.set_ylim(1.6, top * 2.2)
        ax.set_xlabel("1/width" if xkey == "1/w" else "depth/width")
        ax.set_ylabel(r"critical $c = \eta\,\lambda^H_0$")
        ax.grid(alpha=0.3, which="major")
    axes[0].set_title("critical c against 1/width", fontsize=10)
    axes[1].set_title("critical c against depth/width", fontsize=10)
    handles = [Line2D([], [], color=col, marker=mk, ls="-", label=lab)
               for col, mk, lab in _STYLE.values()]
    handles += [Line2D([], [], color="0.2", ls=_DEPTH_LS[j % 4], label=f"depth {d}")
                for j, d in enumerate(depths)]
    handles.append(Line2D([], [], color="0.2", marker="^", mfc="white", ls="none",
                          label="open + arrow: lower bound"))
    if kb_depth:
        handles += [Line2D([], [], color="0.45", marker="o", mfc="none", ls="none",
                           label=r"K&B $c_{\mathrm{loss}}$ (CIFAR-10, depth 8)"),
                    Line2D([], [], color="0.45", marker="s", mfc="none", ls="none",
                           label=r"K&B $c_{\mathrm{sharp}}$"),
                    plt.Rectangle((0, 0), 1, 1, color="0.6", alpha=0.35,
                                  label=r"K&B $c_{\max}$ ≈ 12–14")]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def reduction_figure(cfg, red, kb_depth=None, kb_widths=(), kb_loss=()):
    """The sharpness-reduction phase: λᴴ_T/λᴴ_0 against c per network (colour: d/w), its value
    at the smallest c against d/w, and the phase's upper edge c_loss against d/w."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax, bx, cx = axes
    dws = np.array([r["dw"] for r in red])
    cmap = plt.get_cmap("viridis")
    lo, hi = np.log(dws.min()), np.log(dws.max())
    colour = {id(r): cmap(0.85 * (np.log(r["dw"]) - lo) / (hi - lo) if hi > lo else 0.4)
              for r in red}
    depths = sorted({r["depth"] for r in red})
    marks = {d: m for d, m in zip(depths, "osD^v", strict=False)}
    T = red[0]["entry"]["res"].info["n_steps"]
    for r in red:
        ratio = r["ratio"]
        cs = r["entry"]["res"].cs
        ok = np.isfinite(ratio).all(axis=0)          # every seed trainable at this c
        mean = np.where(ok, np.mean(np.where(ok, ratio, 1.0), axis=0), np.nan)
        # the phase: c below every seed's c_loss (measured or bounded) — drawn bold
        edge = min(v["c_loss"][1] for v in r["entry"]["vals"] if v["c_loss"][0])
        ls = _DEPTH_LS[depths.index(r["depth"]) % 4]
        inside = ok & (cs < edge)
        ax.plot(cs[inside], mean[inside], ls, color=colour[id(r)], marker=marks[r["depth"]],
                ms=3.5, lw=1.8, label=f"w {r['width']}, d {r['depth']} (d/w = {r['dw']:.3g})")
        last = np.flatnonzero(inside)
        beyond = ok & (cs >= edge)
        if last.size:
            beyond[last[-1]] = True                  # join the two parts
        ax.plot(cs[beyond], mean[beyond], ls, color=colour[id(r)], lw=0.9, alpha=0.45)
    ax.axhline(1.0, color="0.3", ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _plain_log_axis(ax.xaxis)
    ax.set_xlabel(r"$c = \eta\,\lambda^H_0$")
    ax.set_ylabel(rf"$\lambda^H_{{{T}}}\,/\,\lambda^H_0$ (mean over seeds)")
    ax.set_title(f"sharpness after {T} steps against c (bold: c < every seed's "
                 r"$c_{\mathrm{loss}}$)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3, which="both")
    for r in red:
        col = colour[id(r)]
        x = r["dw"] * (1.03 if r["depth"] == max(depths) and len(depths) > 1 else 1.0)
        bx.errorbar([x], [r["r1_mean"]], yerr=[r["r1_se"] if np.isfinite(r["r1_se"]) else 0],
                    fmt=marks[r["depth"]], color=col, ms=7, capsize=3)
        bx.plot([x] * len(r["r1"]), r["r1"], ".", color=col, ms=4, alpha=0.6)
    for d in depths:
        bx.plot([], [], marks[d], color="0.3", label=f"depth {d} (± SE; dots: seeds)")
    bx.axhline(1.0, color="0.3", ls="--", lw=1, label="no change (wide-network limit)")
    bx.set_xscale("log", base=2)
    bx.set_ylim(0, 1.08)
    bx.set_xlabel("depth/width")
    bx.set_ylabel(rf"$\lambda^H_{{{T}}}\,/\,\lambda^H_0$ at c = {red[0]['c1']:g}")
    bx.set_title(f"sharpness reduction at c = {red[0]['c1']:g} against d/w", fontsize=10)
    bx.legend(fontsize=7.5, loc="lower left")
    bx.grid(alpha=0.3, which="major")
    for r in red:
        vals = [v["c_loss"] for v in r["entry"]["vals"]]
        x = [v for k, v in vals if k in ("=", ">", "≥")]
        if not x:
            continue
        m, bound = float(np.mean(x)), any(k != "=" for k, _ in vals)
        col = colour[id(r)]
        if bound:
            cx.plot([r["dw"]], [m], marks[r["depth"]], mfc="white", mec=col, ms=8, mew=1.5)
            cx.annotate("", xy=(r["dw"], m * 1.35), xytext=(r["dw"], m * 1.04),
                        arrowprops=dict(arrowstyle="-|>", color=col, lw=1.2))
        else:
            cx.errorbar([r["dw"]], [m], yerr=[[m - min(x)], [max(x) - m]],
                        fmt=marks[r["depth"]], color=col, ms=7, capsize=3)
    if kb_depth:
        kx = np.array([kb_depth / w for w in kb_widths])
        cx.plot(kx, kb_loss, "o-", color="0.5", mfc="none", ms=6, lw=1,
                label="Kalra & Barkeshli, CIFAR-10 FCN depth 8 (published)")
    cx.axhline(2.0, color="0.3", ls="--", lw=1, label="c = 2: wide-network limit")
    for d in depths:
        cx.plot([], [], marks[d], color="0.3", label=f"this run, depth {d} (min–max)")
    cx.set_xscale("log", base=2)
    cx.set_yscale("log", base=2)
    cx.set_ylim(1.7, max(2.0 ** cfg.x_max, *kb_loss) * 2.0)
    _plain_log_axis(cx.yaxis)
    cx.set_xlabel("depth/width")
    cx.set_ylabel(r"$c_{\mathrm{loss}}$ (upper edge of the phase)")
    cx.set_title("where the sharpness-reduction phase ends", fontsize=10)
    cx.legend(fontsize=7, loc="upper left")
    cx.grid(alpha=0.3, which="major")
    fig.tight_layout()
    return fig


def trajectory_figure(res, th, label: str, seed: int = 0):
    """Loss L_t/L_0 and sharpness λᴴ_t/λᴴ_0 of one seed, one curve per c; a run that diverged
    leaves the axes at the top, a cross on the top edge at the step it diverged."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    n_c = len(res.cs)
    t = np.arange(res.loss.shape[-1])
    lims = {0: (None, 1e3), 1: (None, 1e2)}       # (bottom, top) of the log axes
    lows = {0: [], 1: []}
    for j in range(n_c):
        col = cmap(j / max(n_c - 1, 1))
        for k, (x, y) in enumerate(((t, res.loss[seed, j]), (res.sharp_steps,
                                                              res.sharpness[seed, j]))):
            ok = np.isfinite(y)
            rel = y[ok] / y[0]
            top = lims[k][1]
            axes[k].plot(x[ok], rel, color=col, lw=1.2)       # leaves the axes at the top
            lows[k] += list(rel[rel > 0])
            if res.diverged[seed, j]:
                at = int(res.diverged_at[seed, j])
                axes[k].plot([min(at, x[-1])], [top], "x", color=col, ms=7, mew=1.8,
                             clip_on=False)
    names = (r"$L_t\,/\,L_0$ (full training set)",
             r"$\lambda^H_t\,/\,\lambda^H_0$ (measurement batch)")
    for k, (ax, name) in enumerate(zip(axes, names, strict=True)):
        ax.set_yscale("log")
        ax.set_ylim(max(min(lows[k], default=0.1), 1e-4) * 0.7, lims[k][1])
        ax.axhline(1.0, color="0.3", ls="--", lw=1)
        ax.set_xlabel("SGD step t")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(np.log2(res.cs.min()),
                                                             np.log2(res.cs.max())))
    fig.colorbar(sm, ax=axes, label=r"$\log_2 c$")

    def v(x):
        return f"{x:.3g}" if np.isfinite(x) else r"none below $c_{\max}$"

    cmax = f"{th.c_max[seed]:.3g}" + (" (nothing diverged)" if th.max_above_grid[seed] else "")
    axes[0].set_title(f"{label}, seed {seed}: " + r"$c_{\mathrm{loss}}$" + f" = "
                      f"{v(th.c_loss[seed])}, " + r"$c_{\max}$" + f" = {cmax}", fontsize=9,
                      pad=10)
    axes[1].set_title(r"$c_{\mathrm{sharp}}$" + f" = {v(th.c_sharp[seed])};  × on the top "
                      f"edge: step of divergence", fontsize=9, pad=10)
    return fig


REGIME_COLOURS = {"early transient": "#fde0c5", "intermediate saturation": "#d9f0d3",
                  "progressive sharpening": "#d6e4f5", "edge of stability": "#f4cccc"}


def regime_figure(runs, title: str):
    """Sharpness and loss for each run against step t >= 1 (log), with the classified regimes
    shaded, the measurements marked, and the t = 0 values as dotted reference lines.

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
        s = np.asarray(r["steps"])
        pos = s >= 1
        ax.plot(s[pos], r["sharp"][pos], "-", color="C0", lw=1.3, marker="o", ms=2.2,
                label=r"$\lambda^H_t$ (dots: measured)")
        ax.axhline(r["sharp"][0], color="C0", ls=":", lw=1, label=r"$\lambda^H_0$")
        ax.axhline(r["threshold"] / r["eta"], color="C3", ls="--", lw=1.2,
                   label=f"{r['threshold']:.3g}/η")
        ax.set_xscale("log")
        shown = np.concatenate([r["sharp"][pos], [r["sharp"][0], r["threshold"] / r["eta"]]])
        if np.nanmax(shown) / np.nanmin(shown) > 10:    # a log axis only over a decade or more
            ax.set_yscale("log")
            _plain_log_axis(ax.yaxis)
        ax.set_ylabel(r"sharpness $\lambda^H$")
        ax.set_title(r["label"], fontsize=9)
        ax.legend(fontsize=7, loc="best", framealpha=0.85)
        ls = np.asarray(r["loss_steps"])
        lpos = ls >= 1
        ax2.plot(ls[lpos], r["loss"][lpos], color="k", lw=1.2, label=r"$L_t$")
        ax2.axhline(r["loss"][0], color="k", ls=":", lw=1, label=r"$L_0$")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_ylabel("training loss (full batch)")
        ax2.legend(fontsize=7, loc="best", framealpha=0.85)
    for a in axes[-1]:
        a.set_xlabel("step t")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in REGIME_COLOURS.values()]
    fig.legend(handles, list(REGIME_COLOURS), loc="upper center", ncol=4, fontsize=8,
               bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(title, fontsize=10, y=1.03)
    fig.tight_layout()
    return fig
