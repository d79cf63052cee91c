"""Figures of the ``limiting`` experiment (mirroring Kunin et al.'s network figures)."""

from __future__ import annotations

import numpy as np

_NAMES = {"lr": ("learning rate η", "log"), "batch_size": ("batch size S", "log"),
          "momentum": ("momentum β", "linear")}
_DELTA = r"$\Delta_k = \|\theta_k - \theta_0\|^2$"
_LOCAL = r"$\delta = \|\theta_k - \theta_{k-1}\|^2$"


def _sweep_ticks(ax, values, kind) -> None:
    """Ticks at the sweep values, printed plainly (0.005, 16), not as 5×10⁻³."""
    import matplotlib.ticker as mticker

    ax.set_xscale(_NAMES[kind][1])
    ax.set_xticks(sorted(set(float(v) for v in values)))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.xaxis.set_minor_locator(mticker.NullLocator())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fig_displacement(cfg, sweep):
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), sharey=True)
    for ax, kind in zip(axes, ("lr", "batch_size", "momentum"), strict=True):
        sel = [(v, p) for k, v, p in sweep if k == kind]
        cmap = plt.get_cmap("viridis")
        for j, (v, p) in enumerate(sel):
            col = cmap(j / max(len(sel) - 1, 1))
            e = p["expo"]
            k = e["steps"]
            ax.plot(k, e["mean"], "o", ms=3, color=col,
                    label=f"{_NAMES[kind][0].split()[-1]} = {v:g}: c = {e['c']:.2f} "
                          f"[{e['ci'][0]:.2f}, {e['ci'][1]:.2f}]")
            w = e["window"]
            kw = k[w].astype(float)
            logk = np.log(kw)
            icpt = np.mean(np.log(e["mean"][w])) - e["c"] * np.mean(logk)
            ax.plot(kw, np.exp(icpt) * kw ** e["c"], "--", color=col, lw=1.2)
            ax.plot(k, p["pred_gd"], "-", color=col, lw=0.8, alpha=0.7)
        ax.axvspan(cfg.fit_start, cfg.fit_stop, color="0.93", zorder=0)
        ax.plot([], [], "--", color="0.3", lw=1.2, label="power-law fit over the window (shaded)")
        ax.plot([], [], "-", color="0.3", lw=0.8, label="quadratic model (measured H, Σ)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step k since the checkpoint")
        ax.set_title(f"varying {_NAMES[kind][0]}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel(_DELTA)
    fig.tight_layout()
    return fig


def fig_local(cfg, sweep, other):
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, kind in zip(axes, ("lr", "batch_size", "momentum"), strict=True):
        sel = sorted([(v, p) for k, v, p in sweep if k == kind], key=lambda t: t[0])
        x = np.array([v for v, _ in sel])
        ax.errorbar(x, [p["meas"] for _, p in sel], yerr=[p["se"] for _, p in sel], fmt="o",
                    color="C0", ms=6, capsize=3, zorder=3, label="ensemble ± SE")
        if np.isfinite([p["pred_state"] for _, p in sel]).all():
            ax.plot(x, [p["pred_state"] for _, p in sel], "s-", color="C1", mfc="none", ms=8,
                    label="predicted from Σ on the ensemble (no constant)")
        ax.plot(x, [p["pred"] for _, p in sel], "^:", color="C4", mfc="none", ms=7,
                label="predicted from Σ(θ*) at the checkpoint")
        ax.plot(x, [p["paper"] for _, p in sel], "--", color="C2",
                label=r"paper $A\eta^2/(S(1-\beta^2))$, A fitted")
        if other is not None and kind == "lr":
            ax.errorbar([cfg.lr], [other["meas"]], yerr=[other["se"]], fmt="D", color="C3",
                        ms=6, label=f"{other['sampling']} batches")
            ax.plot([cfg.lr], [other["pred_state"] if np.isfinite(other["pred_state"])
                               else other["pred"]], "x", color="C3", ms=9,
                    label=f"prediction, {other['sampling']}")
        ax.set_yscale("log")
        _sweep_ticks(ax, [*x, cfg.lr] if (other is not None and kind == "lr") else x, kind)
        ax.set_xlabel(_NAMES[kind][0])
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7.5, loc="best")
    axes[0].set_ylabel("stationary " + _LOCAL)
    fig.tight_layout()
    return fig


def fig_exponents(cfg, sweep):
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, kind in zip(axes, ("lr", "batch_size", "momentum"), strict=True):
        sel = sorted([(v, p) for k, v, p in sweep if k == kind], key=lambda t: t[0])
        x = np.array([v for v, _ in sel])
        c = np.array([p["expo"]["c"] for _, p in sel])
        lo = np.array([p["expo"]["ci"][0] for _, p in sel])
        hi = np.array([p["expo"]["ci"][1] for _, p in sel])
        ax.errorbar(x, c, yerr=[c - lo, hi - c], fmt="o-", color="C0", capsize=4,
                    label="ensemble, 95% bootstrap CI")
        ax.plot(x, [p["c_pred"] for _, p in sel], "s:", color="C1", mfc="none",
                label="quadratic model")
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        _sweep_ticks(ax, x, kind)
        ax.set_xlabel(_NAMES[kind][0])
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(r"exponent c of $\Delta_k \propto k^c$" + f" (steps {cfg.fit_start}–"
                       f"{cfg.fit_stop})")
    axes[0].plot([], [], "--", color="0.5", lw=0.8, label="c = 1 (normal diffusion)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_spirals(cfg, point, meas):
    plt = _plt()
    run = point["run"]
    n_planes = min(2, run.proj_theta.shape[2])
    fig, axes = plt.subplots(1, n_planes, figsize=(5.4 * n_planes, 4.6), squeeze=False)
    alive = run.alive
    n_show = min(cfg.n_steps, 400)
    for i, ax in enumerate(axes[0]):
        a = run.proj_theta[alive][0, :n_show, i]
        b = run.proj_v[alive][0, :n_show, i]
        sc = ax.scatter(a, b, c=np.arange(n_show), cmap="plasma", s=4, zorder=3)
        ax.plot(a, b, "-", color="0.6", lw=0.5, zorder=2)
        ax.scatter(run.proj_theta[alive][:, -1, i], run.proj_v[alive][:, -1, i], s=8,
                   color="C0", alpha=0.5, label=f"ensemble at k = {cfg.n_steps}")
        ax.set_xlabel(rf"$\langle \theta_k - \theta_0, q_{i + 1}\rangle$")
        ax.set_ylabel(rf"$\langle v_k, q_{i + 1}\rangle$")
        ax.set_title(f"eigenplane {i + 1}: h = {meas.eigvals[i]:.3g}, "
                     f"ηω = {point['eta_omega'][i]:.3f} rad/step", fontsize=9)
        ax.legend(fontsize=7)
        fig.colorbar(sc, ax=ax, label="step k")
    fig.tight_layout()
    return fig


def fig_spectra(cfg, point):
    """Mean periodograms from the first frequency bin, with η ω_i (dotted) and the discrete
    model's peak (dashed; none drawn for an overdamped mode, whose spectrum peaks at 0), and
    the band a Hann-windowed periodogram cannot resolve from zero frequency shaded."""
    plt = _plt()
    k = min(4, point["psd"].shape[1])
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    w = point["freqs"]
    dw = float(w[1])
    ax.axvspan(dw, 2 * dw, color="0.88", lw=0, zorder=0,
               label=f"lowest two bins: zero frequency, spread by the window (bin {dw:.2g})")
    for i in range(k):
        col = f"C{i}"
        pk = float(point["peak_pred"][i])
        lab = (f"mode {i + 1}: ηω = {point['eta_omega'][i]:.3f}, model peak "
               + ("0 (overdamped)" if pk == 0 else f"{pk:.3f}"))
        ax.plot(w[1:], point["psd"][1:, i], color=col, lw=1, label=lab)
        ax.axvline(point["eta_omega"][i], color=col, ls=":", lw=1)
        if pk >= dw:
            ax.axvline(pk, color=col, ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(dw * 0.9, w[-1] * 1.1)
    ax.set_xlabel("frequency (radians per step)")
    ax.set_ylabel("mean periodogram of the projection")
    ax.set_title(r"default point: dotted $\eta\omega_i$, dashed discrete-model peak "
                 f"({round(2 * np.pi / dw)} steps after burn-in)", fontsize=9)
    ax.legend(fontsize=7.5, loc="lower left")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def fig_training(cfg, hist, point):
    """Training to the checkpoint (loss, accuracy; learning-rate phases marked) and the
    continuations at the default point (ensemble mean ± SE): four panels, no twin axes."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.2), sharex="col")
    loss_name = "cross-entropy" if cfg.loss == "cross_entropy" else "MSE"
    (la, lb), (aa, ab) = axes
    if hist:
        steps = np.concatenate([h["steps"] for h in hist])
        la.plot(steps, np.concatenate([h["train_loss"] for h in hist]), "-", color="C0",
                label="train")
        la.plot(steps, np.concatenate([h["test_loss"] for h in hist]), "-", color="C1",
                label="test")
        aa.plot(steps, np.concatenate([h["train_acc"] for h in hist]), "-", color="C0",
                label="train")
        aa.plot(steps, np.concatenate([h["test_acc"] for h in hist]), "-", color="C1",
                label="test")
        for h in hist[1:]:                           # a new learning-rate phase starts
            for a in (la, aa):
                a.axvline(h["steps"][0], color="0.6", lw=0.8, ls=":")
        la.set_yscale("log")
        la.set_title("training to the checkpoint (dotted: learning-rate phases)", fontsize=10)
        la.legend(fontsize=8)
        aa.legend(fontsize=8, loc="lower right")
    else:
        for a in (la, aa):
            a.text(0.5, 0.5, "checkpoint loaded: no training history", ha="center",
                   va="center", transform=a.transAxes, fontsize=9, color="0.4")
        la.set_title("training to the checkpoint", fontsize=10)
    la.set_ylabel(f"{loss_name} loss")
    aa.set_ylabel("accuracy")
    aa.set_xlabel("training step")
    run = point["run"]
    alive = run.alive
    n = max(int(alive.sum()), 1)
    for arr, lab, col, ax in ((run.train_loss, "train", "C0", lb), (run.test_loss, "test", "C1",
                                                                   lb),
                              (run.train_acc, "train", "C0", ab), (run.test_acc, "test", "C1",
                                                                  ab)):
        m = arr[alive].mean(0)
        se = arr[alive].std(0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(m)
        ax.errorbar(run.eval_steps, m, yerr=se, fmt="o-", color=col, ms=4, capsize=2,
                    label=f"{lab} (mean ± SE over {n} runs)")
    lb.set_ylabel(f"{loss_name} loss")
    ab.set_ylabel("accuracy")
    ab.set_xlabel("step since the checkpoint")
    lb.set_title("continuations at the default point", fontsize=10)
    lb.legend(fontsize=8)
    ab.legend(fontsize=8)
    for a in axes.ravel():
        a.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def fig_langevin(cfg, lg):
    """Top-k variances of Vᵀθ and Vᵀv: SGD, Langevin SDE (±2 SE), quadratic-model theory."""
    plt = _plt()
    k = lg["k"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    modes = np.arange(1, k + 1)
    for ax, half, label in ((axes[0], slice(0, k), r"Var$(e_i^\top\theta)$"),
                            (axes[1], slice(k, 2 * k), r"Var$(e_i^\top v)$")):
        for j, (name, res, col) in enumerate((("SGD", lg["sgd"], "C0"),
                                              ("Langevin SDE, exact noise", lg["sde"], "C3"))):
            var = np.diagonal(res.stationary_cov)[half]
            se = np.diagonal(res.stderr.stationary_cov)[half]
            ax.errorbar(modes + (j - 0.5) * 0.12, var, yerr=2 * se, fmt="o", color=col,
                        capsize=3, ms=5, label=f"{name} ± 2 SE")
        ax.plot(modes - 0.22, np.diagonal(lg["discrete"])[half], "_", color="k", ms=14, mew=2,
                label="quadratic model, exact discrete theory")
        ax.plot(modes + 0.22, np.diagonal(lg["continuous"])[half], "_", color="C2", ms=14,
                mew=2, label="quadratic model, continuous theory")
        ax.set_yscale("log")
        ax.set_xticks(modes)
        ax.set_xlabel("Hessian eigenvector i (by eigenvalue, largest first)")
        ax.set_ylabel(label)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_title("position", fontsize=10)
    axes[1].set_title("velocity", fontsize=10)
    fig.tight_layout()
    return fig
