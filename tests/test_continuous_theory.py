"""Continuous-time theory against brute-force solves, closed forms and independent references.

Everything is deterministic float64: Kronecker linear solves, Van Loan's block exponential,
scipy's ODE solver on a vectorised moment system, and the closed forms of theory.md §3–§6.
"""

import jax
import numpy as np
import pytest
import scipy.linalg as sla
from scipy.integrate import solve_ivp

import limitdyn as ld
from limitdyn import theory as th
from limitdyn.theory import UnstableError
from limitdyn.theory.continuous import _mode_propagator


def _problem(n=40, d=3, seed=0, spectrum=(0.3, 1.0)):
    return ld.LinearRegression.synthetic(jax.random.key(seed), n=n, d=d, spectrum=spectrum)


def _quadratic(h, s2, seed=1, centre=True):
    rng = np.random.default_rng(seed)
    d = len(h)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    mu = rng.standard_normal(d) if centre else None
    return ld.Quadratic(Q @ np.diag(h) @ Q.T, Q @ np.diag(s2) @ Q.T, minimiser=mu), Q


def _data(prob, hp, sampling="iid"):
    """H, μ, κ, Σ(μ), X, y in float64, computed here from scratch."""
    X, y = prob.numpy()    # the float64 data the theory is computed from
    N, d = X.shape
    S = hp.batch_size
    kappa = (N - S) / (S * (N - 1)) if sampling == "iid" else 1 / S
    H = X.T @ X / N
    mu = np.linalg.solve(H + hp.weight_decay * np.eye(d), X.T @ y / N)
    return X, y, H, mu, kappa


def _sigma(X, y, theta):
    r = X @ theta - y
    g = X.T @ r / len(y)
    return (X * r[:, None]).T @ (X * r[:, None]) / len(y) - np.outer(g, g)


def _gmat(X, H):
    """𝒢 as a d²×d² matrix on row-major vec(P)."""
    N, d = X.shape
    Z = np.einsum("ni,nj->nij", X, X).reshape(N, d * d)
    return Z.T @ Z / N - np.kron(H, H)


def _langevin(H, hp):
    d = H.shape[0]
    eta, beta, lam = hp.lr, hp.momentum, hp.weight_decay
    a, gamma = 2 / (eta * (1 + beta)), (1 - beta) / (eta * (1 + beta))
    eye = np.eye(d)
    A = np.block([[np.zeros((d, d)), -eye], [a * (H + lam * eye), 2 * gamma * eye]])
    return A, a


def _two_d(C, hp):
    d = C.shape[0]
    out = np.zeros((2 * d, 2 * d))
    out[d:, d:] = 4 * C / (hp.lr * (1 + hp.momentum) ** 2)
    return out


def _kron_lyap(A, Q):
    n = A.shape[0]
    L = np.kron(A, np.eye(n)) + np.kron(np.eye(n), A)
    return np.linalg.solve(L, Q.ravel()).reshape(n, n)


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


HPS = [
    dict(lr=0.1, momentum=0.9, weight_decay=0.0, batch_size=4),
    dict(lr=0.5, momentum=0.0, weight_decay=0.1, batch_size=8),
    dict(lr=0.02, momentum=0.99, weight_decay=0.05, batch_size=10),
]


# --- stationary covariance -------------------------------------------------------------------

@pytest.mark.parametrize("noise", ["paper", "frozen", "isotropic", "matrix"])
@pytest.mark.parametrize("case", HPS)
def test_lyapunov_matches_kronecker_solve(case, noise, x64):
    prob = _problem()
    hp = ld.Hyper(**case)
    X, y, H, mu, kappa = _data(prob, hp)
    d = H.shape[0]
    if noise == "matrix":
        noise = np.diag([0.3, 0.0, 0.1])          # singular noise
    C = ld.noise.per_step_covariance(prob, hp, noise)
    if isinstance(noise, str) and noise == "frozen":
        np.testing.assert_allclose(C, kappa * _sigma(X, y, mu), rtol=1e-12)
    A, _ = _langevin(H, hp)
    np.testing.assert_allclose(th.drift_matrix(prob, hp), A, rtol=1e-14)
    np.testing.assert_allclose(th.diffusion_matrix(prob, hp, noise), _two_d(C, hp), rtol=1e-14)
    ours = th.continuous_stationary_cov(prob, hp, noise)
    brute = _kron_lyap(A, _two_d(C, hp))
    assert _rel(ours, brute) <= 1e-10
    assert ours.shape == (2 * d, 2 * d)
    np.testing.assert_array_equal(ours, ours.T)


@pytest.mark.parametrize("case", HPS)
def test_paper_noise_closed_forms(case, x64):
    prob = _problem()
    hp = ld.Hyper(**case)
    _, _, H, _, _ = _data(prob, hp)
    d, S, eta, beta = 3, hp.batch_size, hp.lr, hp.momentum
    s2 = 0.7
    C = th.continuous_stationary_cov(prob, hp, "paper", sigma2=s2)
    B = H + hp.weight_decay * np.eye(d)
    cov_t = eta * s2 / (2 * S * (1 - beta)) * H @ np.linalg.inv(B)
    cov_v = s2 * H / (S * (1 - beta ** 2))
    scale = np.abs(C).max()
    np.testing.assert_allclose(C[:d, :d], cov_t, rtol=1e-10, atol=1e-13 * scale)
    np.testing.assert_allclose(C[d:, d:], cov_v, rtol=1e-10, atol=1e-13 * scale)
    assert np.abs(C[:d, d:]).max() <= 1e-12 * scale


def test_singular_paper_noise_and_singular_curvature(x64):
    h = np.array([1.0, 0.4, 0.0])
    prob, _ = _quadratic(h, np.array([0.2, 0.1, 0.05]))
    hp = ld.Hyper(lr=0.1, momentum=0.5, weight_decay=0.1)
    H = np.asarray(prob.H, np.float64)
    C = th.continuous_stationary_cov(prob, hp, "paper", sigma2=2.0)   # 2D singular
    cov_t = 0.1 * 2.0 / (2 * 1 * 0.5) * H @ np.linalg.inv(H + 0.1 * np.eye(3))
    np.testing.assert_allclose(C[:3, :3], cov_t, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(C[3:, 3:], 2.0 * H / (1 - 0.25), rtol=1e-9, atol=1e-14)
    with pytest.raises(ValueError, match="singular"):
        th.continuous_stationary_cov(prob, hp.replace(weight_decay=0.0), "paper")
    with pytest.raises(ValueError, match="singular"):
        th.continuous_moments(prob, hp.replace(weight_decay=0.0), [1], model="sme")


def test_quadratic_exact_noise_is_its_constant_noise(x64):
    prob, _ = _quadratic(np.array([1.0, 0.3]), np.array([0.2, 0.1]))
    hp = ld.Hyper(lr=0.2, momentum=0.8, weight_decay=0.01)
    for model in ("langevin", "sme"):
        a = th.continuous_stationary_cov(prob, hp, "exact", model=model)
        b = th.continuous_stationary_cov(prob, hp, np.asarray(prob.noise_cov_matrix), model=model)
        np.testing.assert_allclose(a, b, rtol=1e-13)


# --- exact (state-dependent) noise ----------------------------------------------------------

@pytest.mark.parametrize("sampling", ["iid", "replacement"])
@pytest.mark.parametrize("case", HPS)
def test_exact_noise_stationary_matches_dense_solve(case, sampling, x64):
    prob = _problem()
    hp = ld.Hyper(**case)
    X, y, H, mu, kappa = _data(prob, hp, sampling)
    d = H.shape[0]
    n = 2 * d
    A, a = _langevin(H, hp)
    G = _gmat(X, H)
    embed = np.zeros((n * n, d * d))      # vec of the vv block from vec(P)
    select = np.zeros((d * d, n * n))     # vec(C_θθ) from vec(C)
    for i in range(d):
        for j in range(d):
            embed[(d + i) * n + d + j, i * d + j] = 1.0
            select[i * d + j, i * n + j] = 1.0
    q = a * a * hp.lr * kappa
    L = np.kron(A, np.eye(n)) + np.kron(np.eye(n), A) - q * embed @ G @ select
    rhs = (q * embed @ _sigma(X, y, mu).ravel())
    brute = np.linalg.solve(L, rhs).reshape(n, n)
    ours = th.continuous_stationary_cov(prob, hp, "exact", sampling=sampling)
    assert _rel(ours, brute) <= 1e-9
    # the effective diffusion satisfies the Lyapunov identity
    D2 = th.diffusion_matrix(prob, hp, "exact", sampling=sampling)
    np.testing.assert_allclose(A @ ours + ours @ A.T, D2, atol=1e-9 * np.abs(D2).max())
    # sme: (F ⊗ I + I ⊗ F) vec P − η κ G vec P /(1 − β)² = η κ vec Σ(μ)/(1 − β)²
    F = (H + hp.weight_decay * np.eye(d)) / (1 - hp.momentum)
    c = hp.lr * kappa / (1 - hp.momentum) ** 2
    P = np.linalg.solve(np.kron(F, np.eye(d)) + np.kron(np.eye(d), F) - c * G,
                        c * _sigma(X, y, mu).ravel()).reshape(d, d)
    sme = th.continuous_stationary_cov(prob, hp, "exact", sampling=sampling, model="sme")
    assert _rel(sme[:d, :d], P) <= 1e-9


def test_exact_noise_transient_matches_vectorised_ode(x64):
    prob = _problem(n=30, d=2)
    hp = ld.Hyper(lr=0.3, momentum=0.7, weight_decay=0.02, batch_size=3)
    X, y, H, mu, kappa = _data(prob, hp)
    d, n = 2, 4
    A, a = _langevin(H, hp)
    G = _gmat(X, H)
    q = a * a * hp.lr * kappa
    theta0, v0 = mu + np.array([1.0, -2.0]), np.array([0.3, 0.1])

    def rhs(_t, z):
        m, C = z[:n], z[n:].reshape(n, n)
        P = C[:d, :d]
        noise = _sigma(X, y, mu + m[:d]) + (G @ P.ravel()).reshape(d, d)
        inj = np.zeros((n, n))
        inj[d:, d:] = q * noise
        return np.concatenate([-A @ m, (-A @ C - C @ A.T + inj).ravel()])

    steps = np.array([0, 1, 3, 20, 60])
    z0 = np.concatenate([theta0 - mu, v0, np.zeros(n * n)])
    ref = solve_ivp(rhs, (0, hp.lr * steps[-1]), z0, method="LSODA", t_eval=hp.lr * steps,
                    rtol=1e-12, atol=1e-15).y.T
    got = th.continuous_moments(prob, hp, steps, theta0, v0, "exact")
    for i in range(len(steps)):
        np.testing.assert_allclose(got.mean[i, :d], mu + ref[i, :d], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got.mean[i, d:], ref[i, d:n], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got.cov[i], ref[i, n:].reshape(n, n), rtol=1e-7,
                                   atol=1e-9 * np.abs(ref[-1, n:]).max())
    far = th.continuous_moments(prob, hp, [3000], theta0, v0, "exact")
    stat = th.continuous_stationary_cov(prob, hp, "exact")
    assert _rel(far.cov[0], stat) <= 1e-8


def test_exact_noise_continuous_instability_is_reported():
    prob = _problem(n=40, d=3, spectrum=(1.0, 1.0))
    hp = ld.Hyper(lr=1.5, momentum=0.0, batch_size=1)
    with pytest.raises(UnstableError, match="second-moment map"):
        th.continuous_stationary_cov(prob, hp, "exact", sampling="replacement")


# --- transients ---------------------------------------------------------------------------

def _van_loan(A, D2, t):
    n = A.shape[0]
    M = np.block([[A, D2], [np.zeros((n, n)), -A.T]]) * t
    E = sla.expm(M)
    Phi = E[n:, n:].T
    return Phi, Phi @ E[:n, n:]


@pytest.mark.parametrize("noise", ["paper", "frozen"])
def test_constant_noise_moments_match_van_loan(noise, x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.1, momentum=0.9, weight_decay=0.05, batch_size=4)
    _, _, H, mu, _ = _data(prob, hp)
    d = 3
    A, _ = _langevin(H, hp)
    D2 = _two_d(ld.noise.per_step_covariance(prob, hp, noise), hp)
    rng = np.random.default_rng(3)
    theta0, v0 = rng.standard_normal(d), rng.standard_normal(d)
    L = rng.standard_normal((2 * d, 2 * d)) * 0.1
    cov0 = L @ L.T
    steps = [0, 1, 5, 17, 40]
    got = th.continuous_moments(prob, hp, steps, theta0, v0, noise, cov0=cov0)
    x0 = np.concatenate([theta0 - mu, v0])
    for i, k in enumerate(steps):
        Phi, Qt = _van_loan(A, D2, hp.lr * k)
        np.testing.assert_allclose(got.mean[i], np.concatenate([mu, np.zeros(d)]) + Phi @ x0,
                                   rtol=1e-9, atol=1e-12)
        ref = Phi @ cov0 @ Phi.T + Qt
        np.testing.assert_allclose(got.cov[i], ref, rtol=1e-8, atol=1e-11 * np.abs(ref).max())
    # start and far end
    np.testing.assert_allclose(got.cov[0], cov0, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(got.mean[0], np.concatenate([theta0, v0]), rtol=1e-14)
    far = th.continuous_moments(prob, hp, [20000], theta0, v0, noise)
    stat = th.continuous_stationary_cov(prob, hp, noise)
    assert _rel(far.cov[0], stat) <= 1e-10
    np.testing.assert_allclose(far.mean[0], np.concatenate([mu, np.zeros(d)]), atol=1e-12)


def test_mode_propagator_over_under_and_critically_damped():
    gamma = 2.0
    omega2 = np.array([1e-8, 1.0, 4.0 - 1e-9, 4.0, 4.0 + 1e-7, 9.0, 400.0])
    times = np.array([0.0, 1e-3, 0.3, 2.0, 40.0])
    got = _mode_propagator(times, gamma, omega2)
    for i, t in enumerate(times):
        for j, w2 in enumerate(omega2):
            ref = sla.expm(-t * np.array([[0.0, -1.0], [w2, 2 * gamma]]))
            np.testing.assert_allclose(got[i, j], ref, rtol=1e-9, atol=1e-14)


def test_sme_closed_forms_and_transients(x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.05, momentum=0.6, weight_decay=0.05, batch_size=4)
    _, _, H, mu, _ = _data(prob, hp)
    d, eta, beta, S, s2 = 3, hp.lr, hp.momentum, 4, 0.5
    B = H + hp.weight_decay * np.eye(d)
    P = eta * s2 / (2 * S * (1 - beta)) * H @ np.linalg.inv(B)
    E = sla.expm(-B * eta / (1 - beta))
    C = th.continuous_stationary_cov(prob, hp, "paper", sigma2=s2, model="sme")
    np.testing.assert_allclose(C[:d, :d], P, rtol=1e-10)
    np.testing.assert_allclose(C[:d, d:], (P - E @ P) / eta, rtol=1e-9)
    np.testing.assert_allclose(C[d:, d:], (2 * P - E @ P - P @ E) / eta ** 2, rtol=1e-9)
    # the same θ-marginal as the Langevin model for noise σ²H/S
    CL = th.continuous_stationary_cov(prob, hp, "paper", sigma2=s2)
    np.testing.assert_allclose(C[:d, :d], CL[:d, :d], rtol=1e-10)
    # transients: θ(t) OU with P(t) = P − e^{−Ft} P e^{−Ft} from a deterministic start
    theta0, v0 = mu + np.array([1.0, 0.5, -1.0]), np.array([2.0, 0.0, 1.0])
    got = th.continuous_moments(prob, hp, [0, 1, 7], theta0, v0, "paper", sigma2=s2, model="sme")
    np.testing.assert_allclose(got.mean[0], np.concatenate([theta0, v0]))
    assert np.abs(got.cov[0]).max() == 0
    e0 = theta0 - mu
    for i, k in [(1, 1), (2, 7)]:
        Ek, Ek1 = sla.expm(-B * eta * k / (1 - beta)), sla.expm(-B * eta * (k - 1) / (1 - beta))
        Pk, Pk1 = P - Ek @ P @ Ek, P - Ek1 @ P @ Ek1
        X = E @ Pk1
        np.testing.assert_allclose(got.mean[i, :d], mu + Ek @ e0, rtol=1e-10)
        np.testing.assert_allclose(got.mean[i, d:], (Ek - Ek1) @ e0 / eta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.cov[i, :d, :d], Pk, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(got.cov[i, :d, d:], (Pk - X) / eta, rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(got.cov[i, d:, d:], (Pk + Pk1 - X - X.T) / eta ** 2,
                                   rtol=1e-8, atol=1e-12)
    far = th.continuous_moments(prob, hp, [100000], theta0, v0, "paper", sigma2=s2, model="sme")
    assert _rel(far.cov[0], C) <= 1e-9
    # lag covariance: E[θ(t) θ(t + τ)ᵀ] = P e^{−Fτ}
    lag = th.stationary_lag_cov(prob, hp, 3, "paper", sigma2=s2, model="sme")
    np.testing.assert_allclose(lag[:d, :d], P @ sla.expm(-B * 3 * eta / (1 - beta)), rtol=1e-9)


# --- KAT, current, modified loss, angular momentum --------------------------------------------

@pytest.mark.parametrize("noise", ["paper", "frozen", "exact"])
def test_kat_identities(noise, x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.1, momentum=0.8, weight_decay=0.02, batch_size=4)
    k = th.kat_decomposition(prob, hp, noise)
    scale = np.abs(k.A @ k.cov).max()
    np.testing.assert_allclose(k.Q, -k.Q.T, atol=1e-10 * scale)
    np.testing.assert_allclose((k.D + k.Q) @ k.U, k.A, atol=1e-8 * np.abs(k.A).max())
    np.testing.assert_allclose(k.U @ k.cov, np.eye(6), atol=1e-8)
    assert np.abs(k.Q).max() > 1e-3 * scale          # underdamped model: no detailed balance
    # the sme with noise ∝ H has detailed balance in θ space; with Σ(μ) it need not
    ks = th.kat_decomposition(prob, hp, noise, model="sme")
    np.testing.assert_allclose(ks.Q, -ks.Q.T, atol=1e-10 * np.abs(ks.A @ ks.cov).max())
    if noise == "paper":
        assert np.abs(ks.Q).max() <= 1e-12 * np.abs(ks.A @ ks.cov).max()


def test_probability_current_is_the_fokker_planck_current(x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.1, momentum=0.8, weight_decay=0.02, batch_size=4)
    J = th.probability_current(prob, hp, "frozen")
    A = th.drift_matrix(prob, hp)
    D = 0.5 * th.diffusion_matrix(prob, hp, "frozen")
    C = th.continuous_stationary_cov(prob, hp, "frozen")
    x = np.random.default_rng(0).standard_normal((5, 6)) * np.sqrt(np.diag(C))
    p = np.exp(-0.5 * np.einsum("bi,ij,bj->b", x, np.linalg.inv(C), x)) / np.sqrt(
        np.linalg.det(2 * np.pi * C))
    np.testing.assert_allclose(J.density(x), p, rtol=1e-9)
    # J = −A x p − D ∇p with ∇p = −C⁻¹ x p
    ref = (-x @ A.T + x @ np.linalg.inv(C) @ D) * p[:, None]
    np.testing.assert_allclose(J(x), ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())
    np.testing.assert_allclose(J.velocity(x[0]), ref[0] / p[0], rtol=1e-7)


def test_modified_loss(x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.1, momentum=0.9, weight_decay=0.1, batch_size=4)
    _, _, H, mu, _ = _data(prob, hp)
    s2 = 0.8
    ml = th.modified_loss(prob, hp, "paper", sigma2=s2)
    K = (H + 0.1 * np.eye(3)) @ np.linalg.inv(H)
    np.testing.assert_allclose(ml.K, 0.5 * (K + K.T), rtol=1e-9)
    np.testing.assert_allclose(ml.tau, s2 * 0.1 / (2 * 4 * 0.1), rtol=1e-12)
    theta = mu + np.array([0.3, -0.2, 0.1])
    np.testing.assert_allclose(ml(theta), 0.5 * (theta - mu) @ K @ (theta - mu), rtol=1e-9)
    assert ml(np.stack([mu, theta])).shape == (2,)
    # λ = 0: isotropic
    ml0 = th.modified_loss(prob, hp.replace(weight_decay=0.0), "paper", sigma2=s2)
    np.testing.assert_allclose(ml0.K, np.eye(3), atol=1e-9)
    # any noise: exp(−Ψ/τ) is the θ marginal, K/τ = C_θθ⁻¹
    for noise in ("frozen", "exact", "isotropic"):
        m = th.modified_loss(prob, hp, noise)
        C = th.continuous_stationary_cov(prob, hp, noise)
        np.testing.assert_allclose(m.K / m.tau @ C[:3, :3], np.eye(3), atol=1e-8)


def test_angular_momentum_paper_noise(x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.1, momentum=0.9, weight_decay=0.02, batch_size=4)
    am = th.angular_momentum(prob, hp, "paper")
    np.testing.assert_allclose(am.current, -2 * am.var_v, rtol=1e-9)
    assert np.all(am.current < 0) and np.all(am.lag_one < 0) and np.all(am.rotation < 0)
    # closed forms per mode: φ = −atan2((ω/Ω) sin Ωη, cos Ωη), lag one = −2 Var b · sh
    m = th.modes(prob, hp)
    assert np.all(m.underdamped)
    np.testing.assert_allclose(am.h, m.h, rtol=1e-12)
    phi = -np.arctan2(m.omega / m.Omega * np.sin(m.Omega * hp.lr), np.cos(m.Omega * hp.lr))
    np.testing.assert_allclose(am.rotation, phi, rtol=1e-9)
    sh = np.exp(-m.gamma * hp.lr) * np.sin(m.Omega * hp.lr) / m.Omega
    np.testing.assert_allclose(am.lag_one, -2 * am.var_v * sh, rtol=1e-9)
    # state-dependent noise keeps the clockwise sense
    assert np.all(th.angular_momentum(prob, hp, "exact").current < 0)
    assert np.all(np.isnan(th.angular_momentum(prob, hp, "paper", model="sme").current))


def test_lag_rotation_is_eta_omega_for_weak_damping(x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.01, momentum=0.99, batch_size=4)
    am = th.angular_momentum(prob, hp, "frozen")
    m = th.modes(prob, hp)
    assert np.all(m.underdamped)
    np.testing.assert_allclose(-am.rotation, m.rotation_per_step, rtol=1e-3)
    np.testing.assert_allclose(am.eta_omega, m.rotation_per_step, rtol=1e-12)


def test_modes(x64):
    prob, _ = _quadratic(np.array([2.0, 0.5, 1e-3]), np.ones(3))
    hp = ld.Hyper(lr=0.5, momentum=0.5, weight_decay=0.01)
    m = th.modes(prob, hp)
    np.testing.assert_allclose(m.h, [1e-3, 0.5, 2.0], rtol=1e-9, atol=1e-12)
    assert m.threshold == pytest.approx(0.25 / (2 * 0.5 * 1.5))
    np.testing.assert_array_equal(m.underdamped, m.curvature > m.threshold)
    np.testing.assert_array_equal(m.underdamped, [False, True, True])
    assert np.isnan(m.Omega[0]) and np.all(m.Omega[1:] > 0)
    np.testing.assert_allclose(m.Omega[1:] ** 2, m.omega2[1:] - m.gamma ** 2, rtol=1e-12)
    np.testing.assert_allclose(m.rotation_per_step, np.sqrt(2 * 0.5 * m.curvature / 1.5))
    H = np.asarray(prob.H, np.float64)
    np.testing.assert_allclose(H @ m.vectors, m.vectors * m.h, atol=1e-9)


# --- displacement ---------------------------------------------------------------------------

@pytest.mark.parametrize("noise", ["paper", "exact"])
def test_global_displacement(noise, x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.1, momentum=0.9, weight_decay=0.01, batch_size=4)
    _, _, H, mu, _ = _data(prob, hp)
    d = 3
    steps = np.array([0, 1, 4, 30, 200])
    A, _ = _langevin(H, hp)
    C = th.continuous_stationary_cov(prob, hp, noise)
    stat = th.global_displacement(prob, hp, steps, noise=noise, start="stationary")
    ref = [2 * np.trace(C[:d, :d]) - 2 * np.trace((sla.expm(-A * hp.lr * k) @ C)[:d, :d])
           for k in steps]
    np.testing.assert_allclose(stat, ref, rtol=1e-9, atol=1e-15)
    lag = [th.stationary_lag_cov(prob, hp, k, noise) for k in steps]
    np.testing.assert_allclose(stat, [2 * np.trace(C[:d, :d]) - 2 * np.trace(L[:d, :d])
                                      for L in lag], rtol=1e-12, atol=1e-15)
    assert stat[0] == 0
    theta0, v0 = mu + np.array([0.2, -0.1, 0.3]), np.array([0.5, 0.0, -0.5])
    det = th.global_displacement(prob, hp, steps, theta0, v0, noise)
    mom = th.continuous_moments(prob, hp, steps, theta0, v0, noise)
    np.testing.assert_allclose(det, np.sum((mom.mean[:, :d] - theta0) ** 2, 1)
                               + np.trace(mom.cov[:, :d, :d], axis1=1, axis2=2), rtol=1e-12,
                               atol=1e-15)
    if noise == "paper":
        Phi = [_van_loan(A, th.diffusion_matrix(prob, hp, noise), hp.lr * k) for k in steps]
        x0 = np.concatenate([theta0 - mu, v0])
        ref = [np.sum(((P @ x0)[:d] - x0[:d]) ** 2) + np.trace(Q[:d, :d]) for P, Q in Phi]
        np.testing.assert_allclose(det, ref, rtol=1e-8)
    for model in ("sme",):
        s = th.global_displacement(prob, hp, steps, noise=noise, start="stationary", model=model)
        Cs = th.continuous_stationary_cov(prob, hp, noise, model=model)
        F = (H + 0.01 * np.eye(d)) / (1 - hp.momentum)
        np.testing.assert_allclose(
            s, [2 * np.trace(Cs[:d, :d]) - 2 * np.trace(Cs[:d, :d] @ sla.expm(-F * hp.lr * k))
                for k in steps], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_local_displacement_closed_form(lam, x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.1, momentum=0.9, weight_decay=lam, batch_size=4)
    _, _, H, _, _ = _data(prob, hp)
    s2 = 0.6
    closed = 0.1 ** 2 * s2 * np.trace(H) / (4 * (1 - 0.81))
    got = th.stationary_local_displacement(prob, hp, "paper", sigma2=s2)
    assert got == pytest.approx(closed, rel=1e-10)
    flat = th.local_displacement(prob, hp, [0, 5], noise="paper", sigma2=s2, start="stationary")
    np.testing.assert_allclose(flat, closed, rtol=1e-10)
    v0 = np.array([1.0, 2.0, -1.0])
    curve = th.local_displacement(prob, hp, [0, 3, 50000], v0=v0, noise="paper", sigma2=s2)
    assert curve[0] == pytest.approx(0.01 * v0 @ v0, rel=1e-14)
    assert curve[2] == pytest.approx(closed, rel=1e-9)
    mom = th.continuous_moments(prob, hp, [3], v0=v0, noise="paper", sigma2=s2)
    assert curve[1] == pytest.approx(0.01 * (np.trace(mom.cov[0, 3:, 3:])
                                             + mom.mean[0, 3:] @ mom.mean[0, 3:]), rel=1e-12)


# --- discrete additions -----------------------------------------------------------------------

def _discrete_brute(prob, hp, sampling, K, theta0=None, v0=None):
    """Propagate E x and Cov x exactly (test_theory's recursion) for K steps."""
    X, y, H, mu, kappa = _data(prob, hp, sampling)
    d = H.shape[0]
    eta, beta, lam = hp.lr, hp.momentum, hp.weight_decay
    eye = np.eye(d)
    M = np.block([[eye - eta * (H + lam * eye), eta * beta * eye], [-(H + lam * eye), beta * eye]])
    W = np.vstack([eta * eye, eye])
    G = _gmat(X, H)
    m = np.concatenate([(mu if theta0 is None else theta0) - mu, np.zeros(d) if v0 is None else v0])
    C = np.zeros((2 * d, 2 * d))
    out = []
    for _ in range(K + 1):
        out.append((m.copy(), C.copy()))
        noise = _sigma(X, y, mu + m[:d]) + (G @ C[:d, :d].ravel()).reshape(d, d)
        C = M @ C @ M.T + kappa * W @ noise @ W.T
        m = M @ m
    return out, M, mu


def test_discrete_lag_and_displacement_brute_force(x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.3, momentum=0.6, weight_decay=0.02, batch_size=5)
    d = 3
    C = th.discrete_stationary_cov(prob, hp)
    traj, M, mu = _discrete_brute(prob, hp, "iid", 0)
    # lag: iterate M̄ on the stationary covariance, E[x_0 x_{k+1}ᵀ] = E[x_0 x_kᵀ] M̄ᵀ
    np.testing.assert_allclose(th.discrete_lag_cov(prob, hp, 0), C, rtol=1e-14)
    Y = C.copy()
    for k in range(1, 8):
        Y = Y @ M.T
        np.testing.assert_allclose(th.discrete_lag_cov(prob, hp, k), Y, rtol=1e-9,
                                   atol=1e-13 * np.abs(C).max())
    # stationary-start displacement: joint covariance of (x_k, x_0), X_{k+1} = M̄ X_k
    steps = [0, 1, 2, 9, 40]
    stat = th.discrete_displacement(prob, hp, steps, start="stationary")
    Xc, ref = C.copy(), {}
    for k in range(41):
        ref[k] = 2 * np.trace(C[:d, :d]) - 2 * np.trace(Xc[:d, :d])
        Xc = M @ Xc
    np.testing.assert_allclose(stat, [ref[k] for k in steps], rtol=1e-9, atol=1e-15)
    # deterministic start
    theta0, v0 = mu + np.array([1.0, -1.0, 0.5]), np.array([0.2, 0.0, -0.3])
    traj, _, _ = _discrete_brute(prob, hp, "iid", 40, theta0, v0)
    det = th.discrete_displacement(prob, hp, steps, theta0, v0)
    loc = th.discrete_local_displacement(prob, hp, steps, theta0, v0)
    for i, k in enumerate(steps):
        m, Ck = traj[k]
        assert det[i] == pytest.approx(np.sum((m[:d] + mu - theta0) ** 2) + np.trace(Ck[:d, :d]),
                                       rel=1e-10)
        assert loc[i] == pytest.approx(hp.lr ** 2 * (np.trace(Ck[d:, d:]) + m[d:] @ m[d:]),
                                       rel=1e-10)
    flat = th.discrete_local_displacement(prob, hp, [0, 7], start="stationary")
    np.testing.assert_allclose(flat, hp.lr ** 2 * np.trace(C[d:, d:]), rtol=1e-14)


# --- validation -----------------------------------------------------------------------------

def test_input_validation():
    prob = _problem()
    hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=4)
    with pytest.raises(ValueError, match="noise must be one of 'paper', 'frozen'"):
        th.continuous_stationary_cov(prob, hp, "gaussian")
    with pytest.raises(ValueError, match="noise-factor function"):
        th.continuous_stationary_cov(prob, hp, lambda t: np.eye(3))
    with pytest.raises(ValueError, match="model must be one of 'langevin', 'sme'"):
        th.continuous_stationary_cov(prob, hp, model="ito")
    with pytest.raises(ValueError, match="start must be one of"):
        th.global_displacement(prob, hp, [1], start="random")
    with pytest.raises(ValueError, match="theta0 and v0"):
        th.global_displacement(prob, hp, [1], np.zeros(3), start="stationary")
    with pytest.raises(ValueError, match="theta0 and v0"):
        th.discrete_displacement(prob, hp, [1], v0=np.zeros(3), start="stationary")
    with pytest.raises(ValueError, match="sigma2"):
        th.continuous_stationary_cov(prob, hp, "exact", sigma2=1.0)
    with pytest.raises(TypeError, match="hp must be"):
        th.continuous_stationary_cov(prob, {"lr": 0.1})
    with pytest.raises(TypeError, match="prob must be"):
        th.continuous_stationary_cov("prob", hp)
    with pytest.raises(ValueError, match="sampling"):
        th.continuous_stationary_cov(prob, hp, sampling="reshuffle")
    with pytest.raises(ValueError, match="steps must be non-negative integers"):
        th.continuous_moments(prob, hp, [1.5])
    with pytest.raises(ValueError, match="theta0 must have shape"):
        th.continuous_moments(prob, hp, [1], np.zeros(4))
    with pytest.raises(ValueError, match="lag_steps"):
        th.stationary_lag_cov(prob, hp, -1)
    with pytest.raises(ValueError, match="lag_steps"):
        th.discrete_lag_cov(prob, hp, -1)
    with pytest.raises(ValueError, match="noise covariance array must be symmetric"):
        th.continuous_stationary_cov(prob, hp, -np.eye(3))
