"""Anomalous diffusion of SGD on a power-law Hessian spectrum h_i = i^(−p) (theory.md §6).

From the minimiser, mode i diffuses until it saturates after ≈ (1−β)/(2ηh_i) steps, so the
global displacement Δ_k = ‖θ_k − θ_0‖² grows like k^c with c = 1/p in between. Fits c on
an SGD ensemble (bootstrap over trajectories), the exact discrete and the continuous theory,
and checks the stationary local displacement against η²σ² tr H/(S(1−β²)).

    python examples/displacement.py                  # about 10 s on 2 cores
    python examples/displacement.py --n-traj 64 --n-steps 60 --dim 16 --plot /tmp/ex_disp.png
"""

import argparse

import jax
import numpy as np

import limitdyn as ld


def slope(k, y, window):
    inside = (k >= window[0]) & (k <= window[1])
    return np.polyfit(np.log(k[inside]), np.log(y[inside]), 1)[0]


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-traj", type=int, default=2048)
    parser.add_argument("--n-steps", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--power", type=float, default=2.0)
    parser.add_argument("--plot", metavar="PATH", help="save a log-log plot of Δ_k (PNG)")
    args = parser.parse_args(argv)

    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=512, d=args.dim,
                                         spectrum=("power", args.power))
    hp = ld.Hyper(lr=0.1, momentum=0.5, batch_size=32)
    res = ld.simulate_sgd(prob, hp, jax.random.key(1), args.n_traj, args.n_steps,
                          keep_trajectories=True)
    k, sgd = res.steps[1:], res.displacement[1:]
    curves = {"exact discrete theory": ld.theory.discrete_displacement(prob, hp, k),
              "continuous (frozen noise)": ld.theory.global_displacement(prob, hp, k,
                                                                         noise="frozen")}
    # After the ballistic start (≈ (1+β)/(1−β) = 3 steps), before the flattest modes saturate.
    window = (20, min(500, args.n_steps))
    mu = np.asarray(prob.minimiser(), np.float64)
    dev = res.trajectories[1:, :, :prob.dim] - mu                  # θ_0 = μ, the minimiser
    per_traj, rng = np.sum(dev * dev, axis=-1), np.random.default_rng(0)
    boot = [slope(k, per_traj[:, rng.integers(0, args.n_traj, args.n_traj)].mean(1), window)
            for _ in range(200)]
    print(f"Δ_k ∝ k^c: least squares of log Δ on log k for {window[0]} <= k <= {window[1]}")
    print(f"  {'SGD ensemble':<27} c = {slope(k, sgd, window):.3f}  (bootstrap 95% "
          f"{np.percentile(boot, 2.5):.3f} … {np.percentile(boot, 97.5):.3f})")
    for name, curve in curves.items():
        print(f"  {name:<27} c = {slope(k, curve, window):.3f}")
    print(f"  {'prediction 1/p':<27} c = {1 / args.power:.3f}  (d → ∞; at d = {args.dim} the "
          "exact theory is the reference)")

    X, y = prob.numpy()
    sigma2, tr_h = np.mean((X @ mu - y) ** 2), np.trace(X.T @ X) / len(y)   # σ² = 2L(θ*)
    formula = hp.lr**2 * sigma2 * tr_h / (hp.batch_size * (1 - hp.momentum**2))
    exact = ld.theory.discrete_local_displacement(prob, hp, [0], start="stationary")[0]
    paper = ld.theory.stationary_local_displacement(prob, hp, noise="paper")
    print(f"stationary local displacement η²‖v‖²: ensemble {res.stationary_local_displacement:.5g}"
          f" ± {res.stderr.stationary_local_displacement:.2g}, exact discrete {exact:.5g},\n"
          f"  η²σ² tr H/(S(1−β²)) = {formula:.5g} with σ² = 2L(θ*) = {sigma2:.4g}, "
          f"tr H = {tr_h:.4g} (ld.theory.stationary_local_displacement: {paper:.5g})")

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.loglog(k, sgd, "o", ms=3, label="SGD ensemble")
        for (name, curve), style in zip(curves.items(), ("-", "--"), strict=True):
            ax.loglog(k, curve, style, label=name)
        mid = np.searchsorted(k, np.sqrt(window[0] * window[1]))
        ax.loglog(k, sgd[mid] * (k / k[mid]) ** (1 / args.power), ":", label="∝ k^(1/p)")
        ax.axvspan(*window, alpha=0.1, label="fit window")
        ax.set(xlabel="step k", ylabel="Δ_k = ‖θ_k − θ_0‖²")
        ax.legend()
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"saved {args.plot}")
    return res


if __name__ == "__main__":
    main()
