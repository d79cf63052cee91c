"""Monte Carlo ensembles against the exact discrete theory.

Tolerances come from the Monte Carlo noise floor: for each phase-space block the
estimate passes when ‖Ĉ − C‖_F <= k · √(Σ SE_ij²) with k = 4 (see limitdyn.compare).
Standard errors of window averages are batch means over 32 independent trajectory
groups; per-step ones come from the ensemble's fourth moments. Seeds are fixed; the
power tests at the bottom show the same runs reject a wrong prediction.
"""

import jax
import numpy as np
import pytest

import limitdyn as ld

K_SIGMA = 4.0
N_TRAJ = 2048


def _problem(n):
    return ld.LinearRegression.synthetic(jax.random.key(7), n=n, d=4, spectrum=(0.2, 1.0),
                                         noise_std=0.5)


# (name, N, hyperparameters, n_steps, burn_in): burn-in >= 20 relaxation times of the
# slowest covariance mode, so the start's bias is below e^-20.
CASES = [
    ("beta=0", 256, dict(lr=0.8, momentum=0.0, batch_size=16), 600, 200),
    ("beta=0.9", 256, dict(lr=0.1, momentum=0.9, batch_size=16), 1200, 400),
    ("beta=0.99", 256, dict(lr=0.01, momentum=0.99, batch_size=16), 6000, 2500),
    ("weight decay", 256, dict(lr=0.1, momentum=0.9, weight_decay=0.1, batch_size=16), 1200, 400),
    ("S/N=1/4", 64, dict(lr=0.5, momentum=0.5, batch_size=16), 800, 300),
]


def _run(N, hp, n_steps, burn_in, sampling, seed=11):
    return ld.simulate_sgd(_problem(N), hp, jax.random.key(seed), n_traj=N_TRAJ, n_steps=n_steps,
                           sampling=sampling, burn_in=burn_in)


@pytest.mark.parametrize("sampling", ["iid", "replacement"])
@pytest.mark.parametrize("name,N,hyper,n_steps,burn_in", CASES, ids=[c[0] for c in CASES])
def test_stationary_covariance_matches_exact_theory(name, N, hyper, n_steps, burn_in, sampling):
    hp = ld.Hyper(**hyper)
    res = _run(N, hp, n_steps, burn_in, sampling)
    prediction = ld.theory.discrete_stationary_cov(_problem(N), hp, sampling=sampling)
    table = ld.compare(res, prediction, k=K_SIGMA)
    print(f"\n{name}, {sampling}\n{table}")
    assert res.n_diverged[-1] == 0
    assert table.passed, str(table)


def test_transient_moments_from_a_displaced_start():
    prob = _problem(256)
    hp = ld.Hyper(lr=0.2, momentum=0.8, weight_decay=0.02, batch_size=16)
    theta0 = np.asarray(prob.minimiser(hp.weight_decay)) + np.array([1.0, -0.5, 0.8, 0.3])
    v0 = np.array([0.2, 0.0, -0.1, 0.0])
    res = ld.simulate_sgd(prob, hp, jax.random.key(5), n_traj=N_TRAJ, n_steps=300, theta0=theta0,
                          v0=v0, n_record=12)
    pred = ld.theory.discrete_moments(prob, hp, res.steps, theta0, v0, sampling="iid")
    table = ld.compare(res, pred, k=K_SIGMA)
    print(table)
    assert len(res.steps) >= 10
    assert table.passed, str(table)


# --- power: the same kind of run must reject a wrong prediction ---------------------------

def test_power_rejects_wrong_finite_population_factor():
    """iid ensemble vs the with-replacement theory (κ off by (N−S)/(N−1) = 0.76)."""
    N, hyper, n_steps, burn_in = CASES[4][1:]
    hp = ld.Hyper(**hyper)
    res = _run(N, hp, n_steps, burn_in, "iid")
    wrong = ld.theory.discrete_stationary_cov(_problem(N), hp, sampling="replacement")
    assert not ld.compare(res, wrong, k=K_SIGMA).passed


def test_power_rejects_theory_without_multiplicative_noise():
    """Dropping 𝒢 (noise frozen at Σ(μ)) is a few-percent error: still rejected."""
    N, hyper, n_steps, burn_in = CASES[0][1:]
    hp = ld.Hyper(**hyper)
    prob = _problem(N)
    res = _run(N, hp, n_steps, burn_in, "iid")
    model = ld.theory.DiscreteModel(prob, hp, "iid")
    frozen = ld.Quadratic(model.H, model.kappa * model.sigma(model.mu), minimiser=model.mu)
    additive = ld.theory.discrete_stationary_cov(frozen, hp)
    exact = ld.theory.discrete_stationary_cov(prob, hp)
    gap = np.linalg.norm(exact - additive) / np.linalg.norm(exact)
    table = ld.compare(res, additive, k=K_SIGMA)
    print(f"multiplicative term changes the covariance by {gap:.2%}\n{table}")
    assert not table.passed


def test_reshuffle_lowers_stationary_position_variance():
    """Slow modes relax over ~1/(ηh_min) = 20 steps, i.e. 5 epochs of N/S = 4 steps."""
    prob = _problem(64)
    hp = ld.Hyper(lr=0.25, momentum=0.0, batch_size=16)
    runs = {s: ld.simulate_sgd(prob, hp, jax.random.key(2), n_traj=N_TRAJ, n_steps=800,
                               sampling=s, burn_in=300) for s in ("iid", "reshuffle")}
    d = prob.dim
    tr = {s: np.trace(r.stationary_cov[:d, :d]) for s, r in runs.items()}
    se = {s: np.sqrt(np.sum(np.diag(r.stderr.stationary_cov)[:d] ** 2)) for s, r in runs.items()}
    ratio = tr["reshuffle"] / tr["iid"]
    ratio_se = ratio * np.sqrt((se["reshuffle"] / tr["reshuffle"]) ** 2 + (se["iid"] / tr["iid"]) ** 2)
    print(f"tr Cov(θ): reshuffle/iid = {ratio:.3f} ± {ratio_se:.3f}")
    assert ratio < 1 - K_SIGMA * ratio_se
