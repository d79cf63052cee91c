"""Figures of the ``validate`` experiment (matplotlib, Agg backend).

Conventions: Monte Carlo as points with ±2 SE error bars, theory as lines (discrete solid,
continuous dashed), axes labelled with what and in which units (SGD steps, θ units).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

SGD_STYLE = dict(fmt="o", ms=3.5, color="C0", capsize=2, lw=1)
SDE_STYLE = dict(fmt="s", ms=3.0, color="C1", capsize=2, lw=1, mfc="none")


def _projected(result, vec):
    d = len(vec)
    mean = result.mean[:, :d] @ vec
    var = np.einsum("i,tij,j->t", vec, result.cov[:, :d, :d], vec)
    return mean, np.sqrt(np.clip(var, 0, None) / np.maximum(result.n_alive, 1))


def mean_trajectory(tr_sgd, tr_sde, m_disc, m_cont, vecs, planes, mu_theta):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    d = vecs.shape[0]
    for ax, (label, idx) in zip(axes, planes.items(), strict=True):
        e = vecs[:, idx]
        mu = float(mu_theta @ e)
        for res, style, name in ((tr_sgd, SGD_STYLE, "SGD"), (tr_sde, SDE_STYLE, "SDE")):
            mean, se = _projected(res, e)
            ax.errorbar(res.steps, mean - mu, yerr=2 * se, label=f"{name} ensemble", **style)
        ax.plot(m_disc.steps, m_disc.mean[:, :d] @ e - mu, "k-", lw=1.2,
                label="exact discrete theory")
        ax.plot(m_cont.steps, m_cont.mean[:, :d] @ e - mu, "r--", lw=1.2,
                label="continuous theory")
        ax.set_xlabel("SGD step k")
        ax.set_ylabel(r"$\mathrm{E}\,e^\top(\theta_k - \mu)$  (θ units)")
        ax.set_title(f"{label} direction")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def displacement(sgd, sde, theory_curves):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for res, style, name in ((sgd, SGD_STYLE, "SGD"), (sde, SDE_STYLE, "SDE")):
        keep = res.steps > 0
        axes[0].errorbar(res.steps[keep], res.displacement[keep],
                         yerr=2 * res.stderr.displacement[keep], label=f"{name} ensemble",
                         **style)
        axes[1].errorbar(res.steps[keep], res.local_displacement[keep],
                         yerr=2 * res.stderr.local_displacement[keep], label=f"{name} ensemble",
                         **style)
    for (name, (steps, glob, loc)), ls in zip(theory_curves.items(), ("k-", "r--"),
                                              strict=True):
        axes[0].plot(steps, glob, ls, lw=1.2, label=f"{name} theory")
        axes[1].plot(steps, loc, ls, lw=1.2, label=f"{name} theory")
    axes[0].set_ylabel(r"$\mathrm{E}\,\|\theta_k - \theta_0\|^2$  (θ units²)")
    axes[1].set_ylabel(r"$\mathrm{E}\,\|\theta_k - \theta_{k-1}\|^2$  (θ units²)")
    titles = (r"global displacement $\Delta_k$", r"local displacement $\delta_k$")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("SGD step k")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    return fig


def _ellipse(ax, C2, style, label):
    evals, evecs = np.linalg.eigh(C2)
    t = np.linspace(0, 2 * np.pi, 200)
    pts = evecs @ (2 * np.sqrt(np.clip(evals, 0, None))[:, None] * np.stack([np.cos(t),
                                                                              np.sin(t)]))
    ax.plot(pts[0], pts[1], style, lw=1.4, label=label)


def phase_space(sgd, sde, disc, cont, current, vecs, planes, curv, n_points=1500):
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.0), constrained_layout=True)
    d = vecs.shape[0]
    mu = sgd.mean[0, :d]     # the runs start at the minimiser
    for ax, (label, idx) in zip(axes, planes.items(), strict=True):
        e = vecs[:, idx]
        P = np.zeros((2 * d, 2))
        P[:d, 0], P[d:, 1] = e, e
        for res, color, name in ((sgd, "C0", "SGD"), (sde, "C1", "SDE")):
            x = res.trajectories[-1]
            x = x[np.all(np.isfinite(x), axis=1)][:n_points]
            a = (x[:, :d] - mu) @ e
            b = x[:, d:] @ e
            ax.scatter(a, b, s=2, alpha=0.35, color=color, label=f"{name} samples",
                       rasterized=True)
        _ellipse(ax, P.T @ disc @ P, "k-", "discrete theory (2σ)")
        _ellipse(ax, P.T @ cont @ P, "r--", "continuous theory (2σ)")
        C2 = P.T @ cont @ P
        ra, rb = 2.2 * np.sqrt(C2[0, 0]), 2.2 * np.sqrt(C2[1, 1])
        ga, gb = np.meshgrid(np.linspace(-ra, ra, 9), np.linspace(-rb, rb, 9))
        xs = ga.ravel()[:, None] * P[:, 0] + gb.ravel()[:, None] * P[:, 1]
        u = current.velocity(xs) @ P
        ax.quiver(ga.ravel(), gb.ravel(), u[:, 0], u[:, 1], color="0.3", alpha=0.7,
                  angles="xy", width=0.004)
        ax.set_xlim(-ra * 1.1, ra * 1.1)
        ax.set_ylim(-rb * 1.1, rb * 1.1)
        ax.set_xlabel(r"$\theta_i = e_i^\top(\theta - \mu)$  (θ units)")
        ax.set_ylabel(r"$v_i = e_i^\top v$  (θ units per unit lr)")
        ax.set_title(f"{label} eigenplane, h = {curv[idx]:.3g}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right", markerscale=4)
    return fig


def error_vs_lr(approx, mc_points):
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for i, noise in enumerate(approx.noises):
        err = approx.errors[noise]
        ax.plot(approx.lrs, err, "o-", color=f"C{i}", ms=4,
                label=f"{noise} noise (theory), slope {approx.slopes[noise]:.2f}")
    for j, (name, (lr, err, floor)) in enumerate(mc_points.items()):
        ax.errorbar([lr], [err], yerr=[2 * floor], fmt="D", ms=6, mfc="none", capsize=3,
                    color=f"C{5 + j}", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel(r"$\|C_{\mathrm{cont}} - C_{\mathrm{disc}}\|_F\,/\,\|C_{\mathrm{disc}}\|_F$")
    ax.set_title("continuous model vs exact discrete stationary covariance")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig
