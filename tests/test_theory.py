"""Exact discrete theory against brute force and closed forms (deterministic, float64)."""

import jax
import numpy as np
import pytest

import limitdyn as ld
from limitdyn.theory import DiscreteModel, UnstableError


def _problem(n=40, d=3, seed=0, spectrum=(0.3, 1.0)):
    return ld.LinearRegression.synthetic(jax.random.key(seed), n=n, d=d, spectrum=spectrum)


def _brute_force_stationary(prob, hp, sampling):
    """Vectorise C = M̄CM̄ᵀ + κW[Σ(μ) + 𝒢(C_θθ)]Wᵀ and solve one dense linear system."""
    X, y = prob.numpy()    # the float64 data the theory is computed from
    N, d = X.shape
    S = hp.batch_size
    kappa = (N - S) / (S * (N - 1)) if sampling == "iid" else 1 / S
    H = X.T @ X / N
    eta, beta, lam = hp.lr, hp.momentum, hp.weight_decay
    eye = np.eye(d)
    mu = np.linalg.solve(H + lam * eye, X.T @ y / N)
    Mbar = np.block([[eye - eta * (H + lam * eye), eta * beta * eye], [-(H + lam * eye), beta * eye]])
    W = np.vstack([eta * eye, eye])
    r = X @ mu - y
    g = X.T @ r / N
    Sigma = (X * r[:, None]).T @ (X * r[:, None]) / N - np.outer(g, g)
    # 𝒢 as a d²×d² matrix acting on row-major vec(P).
    Z = np.einsum("ni,nj->nij", X, X).reshape(N, d * d)
    G = Z.T @ Z / N - np.kron(H, H)
    D = 2 * d
    select = np.zeros((d * d, D * D))          # vec(P) = select · vec(C), P = C_θθ
    for i in range(d):
        for j in range(d):
            select[i * d + j, i * D + j] = 1.0
    T = np.kron(Mbar, Mbar) + kappa * np.kron(W, W) @ G @ select   # second-moment map
    rhs = kappa * (W @ Sigma @ W.T).ravel()
    radius = np.abs(np.linalg.eigvals(T)).max()
    return np.linalg.solve(np.eye(D * D) - T, rhs).reshape(D, D), radius


CASES = [
    dict(lr=0.8, momentum=0.0, weight_decay=0.0, batch_size=8),
    dict(lr=0.1, momentum=0.9, weight_decay=0.0, batch_size=4),
    dict(lr=0.01, momentum=0.99, weight_decay=0.0, batch_size=10),
    dict(lr=0.1, momentum=0.9, weight_decay=0.1, batch_size=4),
    dict(lr=0.5, momentum=0.5, weight_decay=0.0, batch_size=10),
    dict(lr=1.0, momentum=0.3, weight_decay=0.05, batch_size=2),
]


@pytest.mark.parametrize("sampling", ["iid", "replacement"])
@pytest.mark.parametrize("case", CASES)
def test_stationary_matches_kronecker_solve(case, sampling):
    prob = _problem()
    hp = ld.Hyper(**case)
    ours = ld.theory.discrete_stationary_cov(prob, hp, sampling=sampling)
    brute, radius = _brute_force_stationary(prob, hp, sampling)
    assert radius < 1
    assert np.max(np.abs(ours - brute)) <= 1e-10 * np.max(np.abs(brute))


@pytest.mark.parametrize("lr", [1.1, 1.2])
def test_instability_agrees_with_kronecker_spectral_radius(lr):
    prob = _problem()
    hp = ld.Hyper(lr=lr, momentum=0.3, weight_decay=0.05, batch_size=2)
    _, radius = _brute_force_stationary(prob, hp, "iid")
    info = ld.theory.stability(prob, hp, "iid")
    assert (radius < 1) == info["stable"]
    assert (lr < info["max_lr"]) == info["stable"]


def test_stationary_is_fixed_point_of_the_transient_recursion():
    prob = _problem()
    hp = ld.Hyper(lr=0.3, momentum=0.6, weight_decay=0.02, batch_size=5)
    C = ld.theory.discrete_stationary_cov(prob, hp)
    model = DiscreteModel(prob, hp)
    d = model.d
    step = model.Mbar @ C @ model.Mbar.T + model.inject(model.sigma(model.mu) + model.G(C[:d, :d]))
    np.testing.assert_allclose(step, C, rtol=0, atol=1e-12 * np.abs(C).max())
    # and the transient recursion from the minimiser converges to it
    far = ld.theory.discrete_moments(prob, hp, [3000], sampling="iid")
    np.testing.assert_allclose(far.cov[0], C, rtol=0, atol=1e-9 * np.abs(C).max())


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 0.99])
def test_additive_noise_matches_closed_form_per_mode(momentum, x64):
    rng = np.random.default_rng(1)
    d = 5
    h = np.array([2.0, 1.0, 0.5, 0.1, 0.02])
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s2 = np.array([0.3, 0.1, 0.2, 0.05, 0.4])
    prob = ld.Quadratic(Q @ np.diag(h) @ Q.T, Q @ np.diag(s2) @ Q.T, minimiser=rng.standard_normal(d))
    lam = 0.05
    lr = 0.9 * (1 + momentum) / (h[0] + lam)
    hp = ld.Hyper(lr=lr, momentum=momentum, weight_decay=lam)
    C = ld.theory.discrete_stationary_cov(prob, hp)
    R = np.kron(np.eye(2), Q)
    Cm = R.T @ C @ R
    var_t, var_v, cov_tv = ld.theory.additive_mode_stationary(h + lam, lr, momentum, s2)
    scale = np.abs(Cm).max()
    np.testing.assert_allclose(np.diag(Cm)[:d], var_t, rtol=1e-10)
    np.testing.assert_allclose(np.diag(Cm)[d:], var_v, rtol=1e-10)
    np.testing.assert_allclose(np.diag(Cm[:d, d:]), cov_tv, rtol=1e-10)
    off = Cm - np.diag(np.diag(Cm)) - np.diag(np.diag(Cm[:d, d:]), d) - np.diag(np.diag(Cm[:d, d:]), -d)
    assert np.abs(off).max() <= 1e-12 * scale   # modes decouple


def test_moments_match_brute_force_recursion():
    prob = _problem(n=30, d=2)
    hp = ld.Hyper(lr=0.4, momentum=0.7, weight_decay=0.01, batch_size=6)
    X, y = prob.numpy()    # the float64 data the theory is computed from
    theta0, v0 = np.array([1.0, -2.0]), np.array([0.3, 0.1])
    pred = ld.theory.discrete_moments(prob, hp, [0, 1, 2, 7, 25], theta0, v0, sampling="replacement")
    # Brute force: propagate E[x] and E[xxᵀ] of (θ, v) with the noise averaged exactly,
    # E[Σ(θ)] = E over the Gaussian-closure-free second moment: (1/N)Σ x_i x_iᵀ E r_i² − E∇L E∇Lᵀ − H P H
    N, d = X.shape
    H = X.T @ X / N
    kappa = 1 / hp.batch_size
    m, S2 = np.concatenate([theta0, v0]), np.outer(np.concatenate([theta0, v0]), np.concatenate([theta0, v0]))
    A = np.block([[np.eye(d) - hp.lr * (H + hp.weight_decay * np.eye(d)), hp.lr * hp.momentum * np.eye(d)],
                  [-(H + hp.weight_decay * np.eye(d)), hp.momentum * np.eye(d)]])
    b = np.concatenate([hp.lr * X.T @ y / N, X.T @ y / N])
    W = np.vstack([hp.lr * np.eye(d), np.eye(d)])
    got = {}
    for k in range(26):
        got[k] = (m.copy(), S2 - np.outer(m, m))
        P = S2[:d, :d] - np.outer(m[:d], m[:d])
        r2 = (X @ m[:d] - y) ** 2 + np.einsum("ni,ij,nj->n", X, P, X)   # E r_i²
        grad_mean = X.T @ (X @ m[:d] - y) / N
        Esig = (X * r2[:, None]).T @ X / N - (np.outer(grad_mean, grad_mean) + H @ P @ H)
        S2 = A @ S2 @ A.T + np.outer(A @ m, b) + np.outer(b, A @ m) + np.outer(b, b) + kappa * W @ Esig @ W.T
        m = A @ m + b
    for i, k in enumerate(pred.steps):
        np.testing.assert_allclose(pred.mean[i], got[k][0], rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(pred.cov[i], got[k][1], rtol=1e-9, atol=1e-12)


def test_mean_map_instability_quotes_the_bound():
    prob = _problem()
    h_max = float(np.linalg.eigvalsh(np.asarray(prob.hessian(), np.float64))[-1])
    bound = 2 * 1.5 / h_max
    with pytest.raises(UnstableError, match=f"lr < {bound:.6g}".replace(".", r"\.")):
        ld.theory.discrete_stationary_cov(prob, ld.Hyper(lr=1.01 * bound, momentum=0.5, batch_size=4))
    with pytest.raises(ValueError, match="mean map"):
        ld.theory.discrete_stationary_cov(prob, ld.Hyper(lr=1.01 * bound, momentum=0.5, batch_size=4))


def test_second_moment_instability_quotes_largest_stable_lr():
    # Batch of 1 with replacement: the multiplicative noise destabilises the covariance
    # well before the mean map's edge 2/h_max.
    prob = _problem(n=40, d=3, spectrum=(1.0, 1.0))
    info = ld.theory.stability(prob, ld.Hyper(lr=0.1, batch_size=1), sampling="replacement")
    assert info["max_lr"] < 0.99 * info["max_lr_mean"]
    lr_bad = 0.5 * (info["max_lr"] + info["max_lr_mean"])
    with pytest.raises(UnstableError, match="second-moment map") as err:
        ld.theory.discrete_stationary_cov(prob, ld.Hyper(lr=lr_bad, batch_size=1), "replacement")
    assert f"{info['max_lr']:.4g}"[:4] in str(err.value)
    # just inside the bound it solves, and the result is a covariance
    C = ld.theory.discrete_stationary_cov(prob, ld.Hyper(lr=0.98 * info["max_lr"], batch_size=1),
                                          "replacement")
    assert np.linalg.eigvalsh(C)[0] > -1e-12 * np.abs(C).max()


def test_theory_refuses_what_it_does_not_cover_and_singular_hessian():
    prob = _problem()
    # reshuffle has a stationary theory (theory.md §9) but no lag covariance
    with pytest.raises(ValueError, match="reshuffle"):
        ld.theory.discrete_lag_cov(prob, ld.Hyper(lr=0.1, batch_size=4), 1, "reshuffle")
    wide = ld.LinearRegression.synthetic(jax.random.key(0), n=3, d=5)
    with pytest.raises(ValueError, match="singular"):
        ld.theory.discrete_stationary_cov(wide, ld.Hyper(lr=0.1, batch_size=2))
