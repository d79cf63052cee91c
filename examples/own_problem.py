"""Your own problem through the one engine: logistic regression and a flax MLP, each run
as SGD and as its Langevin SDE, compared with each other.

A loss is a ``ld.FiniteSum`` subclass that says how many examples it has and what their
losses are; everything else (minibatch gradients, Σ(θ), the exact-noise sample by one
vector–Jacobian product) is derived. A flax model is ``ld.nn.FlaxProblem.from_module``.

    python examples/own_problem.py                           # about 2 minutes on 2 cores
    python examples/own_problem.py --n-traj 32 --n-steps 200  # seconds
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import limitdyn as ld


class Logistic(ld.FiniteSum):
    """Logistic regression, labels ±1: ℓ_i(θ) = log(1 + exp(−y_i x_iᵀθ))."""

    X: jax.Array
    y: jax.Array

    @property
    def n_examples(self):
        return self.X.shape[0]

    def example_losses(self, theta, idx):
        return jnp.logaddexp(0.0, -self.y[idx] * (self.X[idx] @ theta))


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(nn.tanh(nn.Dense(16)(x)))


def compare(sgd, sde, title):
    """Relative Frobenius difference of the stationary covariances, in units of its noise
    floor (both runs' standard errors)."""
    a, b = sgd.stationary_cov, sde.stationary_cov
    floor = np.sqrt(np.sum(sgd.stderr.stationary_cov ** 2 + sde.stderr.stationary_cov ** 2))
    err = np.linalg.norm(b - a)
    d = a.shape[0] // 2
    print(f"{title}: ‖C_sde − C_sgd‖/‖C_sgd‖ = {err / np.linalg.norm(a):.3f} "
          f"({err / floor:.1f}× the noise floor); tr Cov θ: SGD {np.trace(a[:d, :d]):.4g}, "
          f"SDE {np.trace(b[:d, :d]):.4g}; δ: SGD {sgd.stationary_local_displacement:.4g}, "
          f"SDE {sde.stationary_local_displacement:.4g}")


def minimise(prob, theta, lr, n_steps, weight_decay=0.0):
    """Full-batch gradient descent with momentum (one trajectory on the runner)."""
    hp = ld.Hyper(lr=lr, momentum=0.9, weight_decay=weight_decay)
    res = ld.simulate_sgd(prob, hp, jax.random.key(0), 1, n_steps, theta0=theta,
                          keep_final=True)
    return res.final["theta"][0]


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-traj", type=int, default=512)
    parser.add_argument("--n-steps", type=int, default=2000)
    args = parser.parse_args(argv)
    K, T = args.n_traj, args.n_steps

    # --- logistic regression -----------------------------------------------------------------
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 5))
    y = np.where(X @ rng.normal(size=5) + rng.normal(size=256) > 0, 1.0, -1.0)
    prob = Logistic(jnp.asarray(X), jnp.asarray(y))
    lam = 0.01                                   # weight decay: a unique minimiser of L_λ
    theta_star = minimise(prob, jnp.zeros(5), 0.5, 2000, lam)
    hp = ld.Hyper(lr=0.1, momentum=0.9, weight_decay=lam, batch_size=16)
    sgd = ld.simulate_sgd(prob, hp, jax.random.key(1), K, T, theta0=theta_star)
    sde = ld.simulate_sde(prob, hp, jax.random.key(2), K, T, theta0=theta_star,
                          noise="exact", solver="baoab")
    compare(sgd, sde, "logistic regression (d = 5)")

    # --- a flax MLP on scikit-learn's digits ----------------------------------------------------
    data = ld.nn.load_dataset("digits", n=256)
    module = MLP()
    params = module.init(jax.random.key(0), data.x[:1])["params"]
    net = ld.nn.FlaxProblem.from_module(module, params, data.x, data.y, loss="cross_entropy")
    theta_star = minimise(net, net.theta0, 0.2, 3000, lam)
    top = ld.hessian.lanczos(lambda th: net.loss(th), theta_star, k=4, n_iter=40)
    basis = np.asarray(top.vectors).T           # (d, 4): statistics of (Vᵀθ, Vᵀv)
    print(f"MLP: {net.dim} parameters, top Hessian eigenvalues {np.round(top.values, 3)}")
    hp = ld.Hyper(lr=0.05, momentum=0.9, weight_decay=lam, batch_size=32)
    k_net = max(K // 8, 8)
    sgd = ld.simulate_sgd(net, hp, jax.random.key(3), k_net, T, theta0=theta_star,
                          basis=basis)
    sde = ld.simulate_sde(net, hp, jax.random.key(4), k_net, T, theta0=theta_star,
                          noise="exact", solver="baoab", basis=basis)
    compare(sgd, sde, f"MLP, top-4 Hessian eigenplanes ({k_net} trajectories)")
    return sgd, sde


if __name__ == "__main__":
    main()
