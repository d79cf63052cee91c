"""Which gradient-noise model brings the Langevin SDE closest to SGD? (theory.md §2, §5)

The SDE under each noise model — ``paper`` σ²H/S, ``frozen`` κΣ(θ*), ``exact`` κΣ(θ),
``isotropic`` σ²I, and a user factor function θ ↦ F(θ) (the frozen factor scaled by
√(L(θ)/L(θ*))) — against the exact discrete stationary (θ, v) covariance of SGD: the
per-step covariance C (``ld.noise.per_step_covariance``), the continuous theory and an SDE
ensemble for each, then the reasons for the ranking.

    python examples/noise_models.py                            # about 40 s on 2 cores
    python examples/noise_models.py --n-traj 64 --n-steps 100   # seconds
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import limitdyn as ld


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-traj", type=int, default=1024)
    parser.add_argument("--n-steps", type=int, default=1000)
    args = parser.parse_args(argv)

    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=512, d=16, spectrum=(0.1, 1.0))
    hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
    d, exact = prob.dim, ld.theory.discrete_stationary_cov(prob, hp)
    frozen = ld.noise.per_step_covariance(prob, hp, "frozen")       # κΣ(θ*)
    mu = jnp.asarray(prob.minimiser())
    chol = jnp.asarray(np.linalg.cholesky(frozen), mu.dtype)

    def loss_scaled(theta):          # θ (d,) ↦ F(θ) (d, d), C(θ) = F Fᵀ
        return chol * jnp.sqrt(prob.loss(theta) / prob.loss(mu))

    def rel(C, n=2 * d):             # relative Frobenius error of the leading n×n block
        return np.linalg.norm(C[:n, :n] - exact[:n, :n]) / np.linalg.norm(exact[:n, :n])

    print("relative error against the exact discrete stationary covariance (all, θθ block)")
    print(f"{'noise':<12}{'tr C':>8}{'C vs κΣ(θ*)':>13}{'continuous theory':>21}"
          f"{'SDE ensemble ± MC floor':>32}")
    errors = {}
    for noise in ("paper", "frozen", "exact", "isotropic", loss_scaled):
        name = noise if isinstance(noise, str) else "loss-scaled"
        res = ld.simulate_sde(prob, hp, jax.random.key(1), args.n_traj, args.n_steps,
                              noise=noise, solver="baoab", progress=False)
        errors[name] = rel(res.stationary_cov)
        floor = np.linalg.norm(res.stderr.stationary_cov) / np.linalg.norm(exact)
        line = f"{name:<12}"
        if isinstance(noise, str):   # 'exact' evaluates κΣ(θ) at θ* here
            C = ld.noise.per_step_covariance(prob, hp, noise)
            cont = ld.theory.continuous_stationary_cov(prob, hp, noise=noise)
            off = np.linalg.norm(C - frozen) / np.linalg.norm(frozen)
            line += f"{np.trace(C):>8.4f}{off:>13.1%}{rel(cont):>11.1%}{rel(cont, d):>10.1%}"
        else:                        # a factor function has no closed moment equations
            line += f"{'—':>8}{'—':>13}{'—':>11}{'—':>10}"
        print(line + f"{errors[name]:>12.1%} ± {floor:.1%}{rel(res.stationary_cov, d):>10.1%}")
    print(f"closest to SGD: {min(errors, key=errors.get)}")

    m = ld.theory.DiscreteModel(prob, hp, "iid")
    extra = np.trace(m.G(exact[:d, :d])) / np.trace(m.sigma(m.mu))
    print(f"""
why (theory.md §5):
  paper       assumes Σ(θ*) ≈ σ²H and drops κ = {m.kappa:.4f} (1/S = {1 / hp.batch_size:.4f})
  isotropic   right total noise, wrong shape: flat directions get far too much
  frozen      right C at θ*, but θ wanders: E Σ(θ) = Σ(θ*) + 𝒢(Cov θ) is {extra:.1%} larger
              (≈ ηκ tr H/(2(1−β)) = {hp.lr * m.kappa * np.trace(m.H) / (2 * (1 - hp.momentum)):.1%})
  exact       has that term; what is left is time discretisation, O(η): the θ–v
              correlation (tr = {np.trace(exact[:d, d:]):.2g}) and Var v short by ηh/(2(1+β))
  loss-scaled L(θ)/L(θ*) = 1 + tr(H Cov θ)/σ² carries 𝒢's main part H tr(H Cov θ)""")
    return errors


if __name__ == "__main__":
    main()
