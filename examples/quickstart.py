"""Quickstart: an SGD-with-momentum ensemble against the exact discrete theory.

    python examples/quickstart.py                 # 4096 trajectories, about 15 s on 2 cores
    python examples/quickstart.py --n-traj 64 --n-steps 100   # seconds
"""

import argparse

import jax
import numpy as np

import limitdyn as ld


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-traj", type=int, default=4096)
    parser.add_argument("--n-steps", type=int, default=2000)
    args = parser.parse_args(argv)

    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=512, d=16, spectrum=(0.1, 1.0))
    hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=32)
    res = ld.simulate_sgd(prob, hp, jax.random.key(1), n_traj=args.n_traj, n_steps=args.n_steps)
    print(res.summary())

    exact = ld.theory.discrete_stationary_cov(prob, hp, sampling="iid")
    print(ld.compare(res, exact))

    d = prob.dim
    print(f"\nθ–v correlation the continuous model misses: tr Cov(θ, v) = "
          f"{np.trace(exact[:d, d:]):.4g} (ensemble {np.trace(res.stationary_cov[:d, d:]):.4g})")
    return res


if __name__ == "__main__":
    main()
