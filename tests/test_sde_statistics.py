"""SDE ensembles against the continuous theory, and the continuous model against SGD.

Tolerances are k = 4 standard errors (see limitdyn.compare: per phase-space block,
‖Ĉ − C‖_F <= 4 √(Σ SE_ij²)); window standard errors are batch means over 32 trajectory
groups. Seeds are fixed. Where a test claims a difference (EM's bias, paper vs exact
noise) the same machinery shows the difference is many standard errors.
"""

import jax
import numpy as np
import pytest

import limitdyn as ld
from limitdyn import theory

K_SIGMA = 4.0
N_TRAJ = 4096


def _problem():
    return ld.LinearRegression.synthetic(jax.random.key(7), n=128, d=4, spectrum=(0.2, 1.0),
                                         noise_std=0.5)


HP = ld.Hyper(lr=0.1, momentum=0.9, batch_size=32)
# γη = (1−β)/(1+β) ≈ 0.053 per SGD step for every mode (all underdamped here): 20
# covariance relaxation times 1/(2γ) take ≈ 190 steps.
N_STEPS, BURN_IN = 1200, 400


def _gamma(hp):
    return (1 - hp.momentum) / (hp.lr * (1 + hp.momentum))


def _sde(noise, solver, seed=3, hp=HP, n_traj=N_TRAJ, **kw):
    kw.setdefault("n_steps", N_STEPS)
    kw.setdefault("burn_in", BURN_IN)
    return ld.simulate_sde(_problem(), hp, jax.random.key(seed), n_traj, noise=noise,
                           solver=solver, **kw)


def _frobenius_ratio(a, b):
    """‖â − b̂‖ / √(Σ SE_a² + SE_b²) for two independent stationary estimates."""
    diff = a.stationary_cov - b.stationary_cov
    se = np.sqrt(a.stderr.stationary_cov ** 2 + b.stderr.stationary_cov ** 2)
    return float(np.linalg.norm(diff) / np.linalg.norm(se))


# --- the exact stepper is exact at a large step -------------------------------------------

@pytest.mark.parametrize("noise", ["paper", "frozen"])
def test_exact_stepper_stationary_at_a_large_step(noise):
    h_steps = round(0.5 / (_gamma(HP) * HP.lr))       # h = 0.5/γ in SGD steps (≈ 9.5 → 10)
    res = _sde(noise, "exact", dt=h_steps * HP.lr)
    assert res.config["lag_steps"] == h_steps
    table = ld.compare(res, theory.continuous_stationary_cov(_problem(), HP, noise), k=K_SIGMA)
    print(f"\nexact stepper, h = {h_steps}η = {h_steps * HP.lr * _gamma(HP):.2f}/γ, {noise}\n"
          f"{table}")
    assert table.passed, str(table)


def test_exact_stepper_transient_at_a_large_step():
    prob = _problem()
    h_steps = 10
    theta0 = np.asarray(prob.minimiser()) + np.array([0.6, -0.4, 0.5, 0.2])
    v0 = np.array([0.3, 0.0, -0.2, 0.1])
    res = ld.simulate_sde(prob, HP, jax.random.key(5), N_TRAJ, 300, noise="paper",
                          solver="exact", dt=h_steps * HP.lr, theta0=theta0, v0=v0,
                          record=np.arange(0, 301, 30))
    pred = theory.continuous_moments(prob, HP, res.steps, theta0, v0, noise="paper")
    table = ld.compare(res, pred, k=K_SIGMA)
    print(table)
    assert table.passed, str(table)


# --- BAOAB is unbiased at the default step; Euler–Maruyama is not ------------------------

def test_baoab_matches_theory_at_the_default_step_and_em_is_biased():
    prediction = theory.continuous_stationary_cov(_problem(), HP, "frozen")
    baoab = _sde("frozen", "baoab")
    em = _sde("frozen", "em")
    assert baoab.config["dt"] == em.config["dt"] == HP.lr / 4     # h·ω_max = 0.081
    t_baoab = ld.compare(baoab, prediction, k=K_SIGMA)
    t_em = ld.compare(em, prediction, k=K_SIGMA)
    print(f"\nBAOAB at dt = η/4\n{t_baoab}\nEuler–Maruyama at dt = η/4\n{t_em}")
    assert t_baoab.passed, str(t_baoab)
    # Euler–Maruyama's bias at this step (h·ω_max = 0.081): Cov θ +21%, Cov v +30%.
    rows = {r.block: r for r in t_em.rows}
    assert rows["tt"].rel_error > 0.10 and rows["tt"].ratio > 10


def test_diffrax_backend_agrees_with_baoab():
    baoab = _sde("frozen", "baoab")
    dfx = _sde("frozen", "diffrax", seed=4)
    ratio = _frobenius_ratio(dfx, baoab)
    print(f"diffrax (Heun) vs BAOAB: ‖ΔC‖ / combined SE = {ratio:.2f}")
    assert ratio <= K_SIGMA


# --- phase-space rotation (probability current) --------------------------------------------

def test_angular_momentum_matches_the_probability_current():
    prob = _problem()
    res = _sde("paper", "exact", dt=HP.lr)               # lag = one SGD step
    basis = np.linalg.eigh(np.asarray(prob.hessian(), np.float64))[1]
    rot = res.rotation(basis)
    am = theory.angular_momentum(prob, HP, "paper")
    z_ell = (rot["angular_momentum"] - am.lag_one) / rot["angular_momentum_se"]
    z_phi = (rot["angle"] - am.rotation) / rot["angle_se"]
    print("ℓ (lag one)", rot["angular_momentum"], "theory", am.lag_one, "z", z_ell)
    print("angle/step", rot["angle"], "theory", am.rotation, "−ηω", -am.eta_omega, "z", z_phi)
    assert np.all(np.abs(z_ell) <= K_SIGMA) and np.all(np.abs(z_phi) <= K_SIGMA)
    assert np.all(rot["angular_momentum"] < 0) and np.all(am.current < 0)   # clockwise
    # The rotation per step is ηω_i (weakly damped: γη = 0.053).
    np.testing.assert_allclose(-am.rotation, am.eta_omega, rtol=0.02)
    # The current's ℓ_i = −2 Var(b_i) for σ²H/S noise, and lag-one ≈ η ℓ_i.
    np.testing.assert_allclose(am.current, -2 * am.var_v, rtol=1e-8)


def test_sgd_rotation_matches_the_discrete_lag_covariance():
    """The same estimator on SGD against the exact discrete lag covariance C M̄ᵀ."""
    prob = _problem()
    res = ld.simulate_sgd(prob, HP, jax.random.key(9), N_TRAJ, N_STEPS, burn_in=BURN_IN)
    basis = np.linalg.eigh(np.asarray(prob.hessian(), np.float64))[1]
    rot = res.rotation(basis)
    lag = theory.discrete_lag_cov(prob, HP)
    d = prob.dim
    P = np.kron(np.eye(2), basis)
    L = P.T @ lag @ P
    idx = np.arange(d)
    ell = L[idx, d + idx] - L[d + idx, idx]
    z = (rot["angular_momentum"] - ell) / rot["angular_momentum_se"]
    print("SGD ℓ", rot["angular_momentum"], "discrete theory", ell, "z", z)
    assert np.all(np.abs(z) <= K_SIGMA)


# --- noise models and the continuous approximation -------------------------------------

def test_exact_noise_beats_paper_noise_against_exact_discrete_theory():
    prob = _problem()
    disc = theory.discrete_stationary_cov(prob, HP)
    errors = {}
    for noise in ("exact", "paper"):    # errors ≈ 7% and 26%, noise floor ≈ 1%
        res = _sde(noise, "baoab", n_traj=1024, n_steps=800, burn_in=300)
        errors[noise] = np.linalg.norm(res.stationary_cov - disc) / np.linalg.norm(disc)
    print(f"relative error vs exact discrete theory: exact noise {errors['exact']:.3%}, "
          f"paper noise {errors['paper']:.3%}")
    assert errors["exact"] < errors["paper"]


@pytest.mark.slow
def test_continuous_error_is_linear_in_lr_by_monte_carlo():
    """At η and 4η: SDE(exact noise) − SGD matches continuous − discrete theory (4 SE)."""
    prob = _problem()
    measured = []
    for lr in (0.05, 0.2):
        hp = HP.replace(lr=lr)
        sde = ld.simulate_sde(prob, hp, jax.random.key(21), 2048, 1000, noise="exact",
                              solver="baoab", dt=lr / 8, burn_in=300)
        sgd = ld.simulate_sgd(prob, hp, jax.random.key(22), 2048, 1000, burn_in=300)
        predicted = (theory.continuous_stationary_cov(prob, hp, "exact")
                     - theory.discrete_stationary_cov(prob, hp))
        diff = sde.stationary_cov - sgd.stationary_cov
        se = np.sqrt(sde.stderr.stationary_cov ** 2 + sgd.stderr.stationary_cov ** 2)
        ratio = np.linalg.norm(diff - predicted) / np.linalg.norm(se)
        print(f"lr {lr}: ‖measured − predicted difference‖ / SE = {ratio:.2f}; measured "
              f"‖ΔC‖ = {np.linalg.norm(diff):.4g}, predicted {np.linalg.norm(predicted):.4g}, "
              f"noise {np.linalg.norm(se):.2g}")
        assert ratio <= K_SIGMA
        assert np.linalg.norm(predicted) > 4 * np.linalg.norm(se)     # the test has power
        measured.append(np.linalg.norm(diff) / np.linalg.norm(theory.discrete_stationary_cov(
            prob, hp)))
    slope = np.log(measured[1] / measured[0]) / np.log(4.0)
    print(f"Monte Carlo order in η: {slope:.2f}")
    assert 0.7 <= slope <= 1.3


@pytest.mark.parametrize("solver", ["exact", "em"])
def test_sme_finite_difference_velocity_matches_theory(solver):
    """The first-order model's (θ, v) law, v = (θ(t) − θ(t − η))/η, against its theory."""
    dt = HP.lr if solver == "exact" else None        # em: default step, h(h_max+λ)/(1−β) <= 0.1
    res = _sde("frozen", solver, model="sme", dt=dt, n_steps=600, burn_in=200)
    table = ld.compare(res, theory.continuous_stationary_cov(_problem(), HP, "frozen",
                                                             model="sme"), k=K_SIGMA)
    print(f"\nsme, {solver}, dt = {res.config['dt']:g}\n{table}")
    if solver == "exact":
        assert table.passed, str(table)
    else:   # Euler–Maruyama's O(h) bias is visible at h·rate = 0.1: report it, bound it
        assert max(r.rel_error for r in table.rows) < 0.15
