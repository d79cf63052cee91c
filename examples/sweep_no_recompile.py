"""A learning-rate sweep with one compiled kernel, against the exact theory at every lr.

``lr``, ``momentum`` and ``weight_decay`` are traced leaves of ``ld.Hyper``, so the first
``simulate_sgd`` call compiles and every later one with the same shapes (problem, batch
size, ``n_traj``, ``n_steps``) reuses the executable: ``res.metadata["compile_seconds"]``
is 0. Each stationary tr Cov θ is set against ``ld.theory.discrete_stationary_cov``, and
``ld.theory.stability`` gives the edge of the sweep: with momentum, the second-moment
(noise-feedback) bound sits far below the mean's 2(1+β)/h_max.

    python examples/sweep_no_recompile.py                           # about 30 s on 2 cores
    python examples/sweep_no_recompile.py --n-traj 64 --n-steps 100 --plot /tmp/ex_sweep.png
"""

import argparse

import jax
import numpy as np

import limitdyn as ld


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-traj", type=int, default=2048)
    parser.add_argument("--n-steps", type=int, default=2000)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 0.6])
    parser.add_argument("--plot", metavar="PATH", help="save tr Cov θ against lr (PNG)")
    args = parser.parse_args(argv)

    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=512, d=16, spectrum=(0.1, 1.0))
    hp = ld.Hyper(lr=args.lrs[0], momentum=0.9, batch_size=32)
    d = prob.dim
    stab = ld.theory.stability(prob, hp)
    print(f"stability at β = {hp.momentum}, S = {hp.batch_size}: the mean converges for "
          f"lr < 2(1+β)/h_max = {stab['max_lr_mean']:.3g}, the covariance for "
          f"lr < {stab['max_lr']:.3g}")
    print(f"{'lr':>7}{'compile s':>11}{'run s':>8}{'feedback ρ':>12}{'tr Cov θ (SGD)':>22}"
          f"{'exact':>11}{'z':>7}")
    out = {}
    for lr in args.lrs:
        h = hp.replace(lr=lr)
        res = ld.simulate_sgd(prob, h, jax.random.key(1), args.n_traj, args.n_steps)
        est, se = res.window_function(lambda cov, lag: np.trace(cov[:d, :d]))
        exact = np.trace(ld.theory.discrete_stationary_cov(prob, h)[:d, :d])
        rho = ld.theory.DiscreteModel(prob, h, "iid").feedback_radius()
        t = res.metadata
        out[lr] = (float(est), float(se), float(exact), t["compile_seconds"])
        print(f"{lr:>7g}{t['compile_seconds']:>11.2f}{t['run_seconds']:>8.2f}{rho:>12.3f}"
              f"{est:>13.5g} ± {se:<7.2g}{exact:>11.5g}{(est - exact) / se:>7.2f}")
    print("(as ρ → 1 the multiplicative noise gives θ heavy tails: the sample variance is skewed,"
          "\n typically a little low, and its standard error noisy; expect larger |z| there)")
    beyond = 1.05 * stab["max_lr"]
    try:
        ld.theory.discrete_stationary_cov(prob, hp.replace(lr=beyond))
    except ld.theory.UnstableError as err:
        print(f"\nlr = {beyond:.3g} (5% past the bound): {err}")

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        est, se, _, _ = np.array(list(out.values())).T
        ax.errorbar(list(out), est, yerr=se, fmt="o", label="SGD ensemble (± s.e.)")
        grid = np.geomspace(min(out), 0.99 * stab["max_lr"], 40)
        ax.plot(grid, [np.trace(ld.theory.discrete_stationary_cov(prob, hp.replace(lr=g))[:d, :d])
                       for g in grid], "-", label="exact discrete theory")
        ax.axvline(stab["max_lr"], ls=":", color="k", label="stability bound (covariance)")
        ax.set(xscale="log", yscale="log", xlabel="learning rate η", ylabel="stationary tr Cov θ")
        ax.legend()
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"saved {args.plot}")
    return out


if __name__ == "__main__":
    main()
