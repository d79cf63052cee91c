"""How good is the Langevin approximation of SGD with momentum? (theory.md §2–§5)

1. Theory alone: the continuous model's stationary-covariance error against the exact
   discrete moments over a decade of learning rates, per noise model, with the fitted order
   in η and the term that dominates.
2. Integrators: exact weak orders of Euler–Maruyama and BAOAB on the same quadratic.
3. Monte Carlo: SGD and the SDE (exact and paper noise) side by side with the theory, and
   the phase-space rotation in the Hessian eigenplanes.

    python examples/continuous_vs_discrete.py            # about a minute on 2 cores
    python examples/continuous_vs_discrete.py --n-traj 128 --n-steps 200   # seconds
"""

import argparse

import jax
import numpy as np

import limitdyn as ld
from limitdyn.convergence import weak_order


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-traj", type=int, default=2048)
    parser.add_argument("--n-steps", type=int, default=1000)
    args = parser.parse_args(argv)

    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=512, d=16, spectrum=(0.1, 1.0))
    hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)

    print(ld.theory.continuous_error(prob, hp, np.geomspace(0.01, 0.1, 6)))
    print()
    for solver in ("em", "baoab"):
        print(weak_order(prob, hp, solver, substeps=(2, 4, 8, 16, 32)))
    print()

    key = jax.random.key(1)
    exact = ld.theory.discrete_stationary_cov(prob, hp)
    runs = {"SGD (iid)": ld.simulate_sgd(prob, hp, key, args.n_traj, args.n_steps)}
    for noise in ("exact", "paper"):
        runs[f"SDE {noise} noise"] = ld.simulate_sde(prob, hp, key, args.n_traj, args.n_steps,
                                                     noise=noise, solver="baoab",
                                                     progress=False)
    print("stationary (θ, v) covariance against the exact discrete theory")
    for name, res in runs.items():
        err = np.linalg.norm(res.stationary_cov - exact) / np.linalg.norm(exact)
        floor = np.linalg.norm(res.stderr.stationary_cov) / np.linalg.norm(exact)
        print(f"  {name:<18} relative error {err:7.2%}   (Monte Carlo floor {floor:.2%})")

    basis = np.linalg.eigh(np.asarray(prob.hessian(), np.float64))[1]
    rot = runs["SDE exact noise"].rotation(basis[:, [0, -1]])
    am = ld.theory.angular_momentum(prob, hp, "exact")
    print("\nrotation per SGD step in the flattest and stiffest eigenplanes")
    for j, i in enumerate((0, -1)):
        print(f"  h = {am.h[i]:.3f}: ensemble {rot['angle'][j]:+.4f} ± {rot['angle_se'][j]:.4f} "
              f"rad, theory {am.rotation[i]:+.4f}, −ηω = {-am.eta_omega[i]:+.4f}")
    return runs


if __name__ == "__main__":
    main()
