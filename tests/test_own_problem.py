"""Your own problem through the one engine: FiniteSum subclasses, flax networks, errors.

Statistical comparisons use the standard errors of the runs (batch means over trajectory
groups for window averages) with the multiple k stated at each assertion.
"""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import limitdyn as ld


class LeastSquares(ld.FiniteSum):
    """The user's own least squares: nothing but the per-example losses."""

    X: jax.Array
    y: jax.Array

    @property
    def n_examples(self):
        return self.X.shape[0]

    def example_losses(self, theta, idx):
        return 0.5 * (self.X[idx] @ theta - self.y[idx]) ** 2


class Logistic(ld.FiniteSum):
    X: jax.Array
    y: jax.Array

    @property
    def n_examples(self):
        return self.X.shape[0]

    def example_losses(self, theta, idx):
        return jnp.logaddexp(0.0, -self.y[idx] * (self.X[idx] @ theta))


def _linreg():
    return ld.LinearRegression.synthetic(jax.random.key(5), n=64, d=4, spectrum=(0.3, 1.0))


def test_a_subclass_is_a_pytree_without_registration():
    lr = _linreg()
    own = LeastSquares(lr.X, lr.y)
    leaves, treedef = jax.tree_util.tree_flatten(own)
    assert len(leaves) == 2
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    theta = jnp.ones(4)
    np.testing.assert_allclose(again.loss(theta), lr.loss(theta), rtol=1e-6)
    np.testing.assert_allclose(own.gradient(theta), lr.gradient(theta), rtol=1e-5)
    np.testing.assert_allclose(own.per_example_gradients(theta),
                               lr.per_example_gradients(theta), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(own.noise_covariance(theta), lr.noise_covariance(theta),
                               rtol=1e-4, atol=1e-6)


def test_exact_noise_sample_is_one_vjp_with_covariance_sigma(x64):
    """Gᵀ(z − z̄)/√N by one VJP is linear in z with F Fᵀ = Σ(θ) exactly."""
    lr = _linreg()
    own = LeastSquares(jnp.asarray(lr.numpy()[0]), jnp.asarray(lr.numpy()[1]))
    theta = jnp.asarray(np.random.default_rng(0).normal(size=4))
    F = jax.jacfwd(lambda z: own.noise_sample(theta, z))(jnp.zeros(64))
    np.testing.assert_allclose(F @ F.T, own.noise_covariance(theta), rtol=1e-10, atol=1e-14)
    F_closed = jax.jacfwd(lambda z: lr.noise_sample(theta, z))(jnp.zeros(64))
    np.testing.assert_allclose(F, F_closed, rtol=1e-10, atol=1e-14)


def test_own_least_squares_matches_exact_discrete_and_continuous_theory():
    """SGD on the user's FiniteSum against discrete_stationary_cov of the equivalent
    LinearRegression, and its Langevin SDE (exact noise, autodiff drift) against
    continuous_stationary_cov(noise='exact'): each within 4× the Monte Carlo noise floor
    (ld.compare's verdict, k = 4)."""
    lr = _linreg()
    own = LeastSquares(lr.X, lr.y)
    hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=8)
    mu = np.asarray(lr.minimiser())
    sgd = ld.simulate_sgd(own, hp, jax.random.key(1), n_traj=2048, n_steps=2000,
                          theta0=mu)
    table = ld.compare(sgd, ld.theory.discrete_stationary_cov(lr, hp))
    assert table.passed, str(table)
    sde = ld.simulate_sde(own, hp, jax.random.key(2), n_traj=1024, n_steps=2000,
                          noise="exact", solver="baoab", theta0=mu)
    assert sde.config["substeps_per_step"] >= 1
    table = ld.compare(sde, ld.theory.continuous_stationary_cov(lr, hp, noise="exact"))
    assert table.passed, str(table)


def _numpy_heavy_ball(X, y, theta0, eta, beta, S, n_traj, n_steps, burn_in, seed, n_groups):
    """Plain numpy heavy ball on the logistic loss with iid (no repeats) batches; returns
    window mean and covariance of θ with batch-means standard errors over trajectory
    groups (the estimator the library uses, written independently)."""
    rng = np.random.default_rng(seed)
    N, d = X.shape
    theta = np.broadcast_to(theta0, (n_traj, d)).copy()
    v = np.zeros_like(theta)
    sums = np.zeros((n_groups, d))
    outer = np.zeros((n_groups, d, d))
    count = np.zeros(n_groups)
    group = np.arange(n_traj) * n_groups // n_traj
    for k in range(1, n_steps + 1):
        batch = np.argsort(rng.random((n_traj, N)), axis=1)[:, :S]
        Xb, yb = X[batch], y[batch]                                  # (K, S, d), (K, S)
        margin = yb * np.einsum("ksd,kd->ks", Xb, theta)
        weight = -yb / (1 + np.exp(margin))                          # dℓ/d(x·θ)
        g = np.einsum("ks,ksd->kd", weight, Xb) / S
        v = beta * v - g
        theta = theta + eta * v
        if k >= burn_in and (k - burn_in) % 10 == 0:
            c = theta - theta.mean(0)
            for gi in range(n_groups):
                sel = group == gi
                sums[gi] += theta[sel].sum(0)
                outer[gi] += c[sel].T @ c[sel] * n_traj / (n_traj - 1)
                count[gi] += sel.sum()
    mean_g = sums / count[:, None]
    cov_g = outer / count[:, None, None]
    return (sums.sum(0) / count.sum(), mean_g.std(0, ddof=1) / np.sqrt(n_groups),
            outer.sum(0) / count.sum(), cov_g.std(0, ddof=1) / np.sqrt(n_groups))


def test_logistic_regression_matches_plain_numpy_heavy_ball():
    """The issue's own code: stationary mean and covariance of θ within 4.5 combined
    standard errors of an independent numpy simulation, entry by entry."""
    rng = np.random.default_rng(3)
    N, d = 64, 3
    X = rng.normal(size=(N, d))
    y = np.where(X @ np.array([1.0, -0.5, 0.25]) + 0.5 * rng.normal(size=N) > 0, 1.0, -1.0)
    prob = Logistic(jnp.asarray(X), jnp.asarray(y))
    hp = ld.Hyper(lr=0.5, momentum=0.5, batch_size=8)
    res = ld.simulate_sgd(prob, hp, jax.random.key(0), n_traj=2048, n_steps=1500,
                          sampling="iid", theta0=jnp.zeros(d), burn_in=500, window_every=10)
    m, m_se, c, c_se = _numpy_heavy_ball(X, y, np.zeros(d), 0.5, 0.5, 8, 2048, 1500, 500,
                                         seed=1, n_groups=32)
    ours_m = res.stationary_mean[:d]
    ours_c = res.stationary_cov[:d, :d]
    z_mean = (ours_m - m) / np.hypot(res.stderr.stationary_mean[:d], m_se)
    z_cov = (ours_c - c) / np.hypot(res.stderr.stationary_cov[:d, :d], c_se)
    assert np.all(np.abs(z_mean) <= 4.5), z_mean
    assert np.all(np.abs(z_cov) <= 4.5), z_cov
    # power: a heavy ball at another momentum is told apart
    other = ld.simulate_sgd(prob, hp.replace(momentum=0.8), jax.random.key(0), n_traj=2048,
                            n_steps=1500, theta0=jnp.zeros(d), burn_in=500, window_every=10)
    z_other = (other.stationary_cov[:d, :d] - c) / np.hypot(
        other.stderr.stationary_cov[:d, :d], c_se)
    assert np.max(np.abs(z_other)) > 4.5


class MLP(fnn.Module):
    @fnn.compact
    def __call__(self, x):
        x = fnn.tanh(fnn.Dense(8)(x))
        return fnn.Dense(3)(x)


class HandMLP(ld.FiniteSum):
    """The same MLP written by hand on the flat vector (ravel_pytree order: Dense_0 bias,
    kernel, Dense_1 bias, kernel)."""

    x: jax.Array
    y: jax.Array

    @property
    def n_examples(self):
        return self.x.shape[0]

    def example_losses(self, theta, idx):
        d_in = self.x.shape[1]
        b0, w0 = theta[:8], theta[8:8 + 8 * d_in].reshape(d_in, 8)
        rest = theta[8 + 8 * d_in:]
        b1, w1 = rest[:3], rest[3:].reshape(8, 3)
        out = jnp.tanh(self.x[idx] @ w0 + b0[None, :]) @ w1 + b1[None, :]
        return 0.5 * jnp.mean((out - self.y[idx]) ** 2, axis=-1)


def test_flax_problem_gives_the_same_ensemble_as_the_hand_written_mlp():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 48)]
    module = MLP()
    params = module.init(jax.random.key(0), x[:1])["params"]
    net = ld.nn.FlaxProblem.from_module(module, params, x, y, loss="mse")
    hand = HandMLP(jnp.asarray(x), jnp.asarray(y))
    theta0 = net.theta0
    assert theta0.shape == (net.dim,) == (8 * 5 + 8 + 8 * 3 + 3,)
    np.testing.assert_allclose(hand.loss(theta0), net.loss(theta0), rtol=1e-6)
    tree = net.unravel(theta0)
    np.testing.assert_array_equal(tree["Dense_0"]["kernel"], params["Dense_0"]["kernel"])
    hp = ld.Hyper(lr=0.2, momentum=0.9, batch_size=8)
    kw = dict(n_traj=64, n_steps=100, theta0=theta0, keep_trajectories=True, n_record=10)
    a = ld.simulate_sgd(net, hp, jax.random.key(7), sampling="reshuffle", **kw)
    b = ld.simulate_sgd(hand, hp, jax.random.key(7), sampling="reshuffle", **kw)
    np.testing.assert_allclose(a.trajectories, b.trajectories, rtol=2e-4, atol=2e-5)
    sa = ld.simulate_sde(net, hp, jax.random.key(8), n_traj=32, n_steps=40, theta0=theta0,
                         noise="exact", solver="baoab", dt=0.2, keep_trajectories=True)
    sb = ld.simulate_sde(hand, hp, jax.random.key(8), n_traj=32, n_steps=40, theta0=theta0,
                         noise="exact", solver="baoab", dt=0.2, keep_trajectories=True)
    np.testing.assert_allclose(sa.trajectories, sb.trajectories, rtol=2e-4, atol=2e-5)


def test_a_flax_module_is_refused_with_a_pointer():
    module = MLP()
    with pytest.raises(TypeError, match=r"FlaxProblem\.from_module"):
        ld.simulate_sgd(module, ld.Hyper(lr=0.1), jax.random.key(0), 4, 10)


def test_missing_capabilities_say_so_in_one_line(no_compilation):
    lr = _linreg()
    own = LeastSquares(lr.X, lr.y)
    hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=8)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="theta0 is required") as err:
        ld.simulate_sgd(own, hp, key, 8, 10)
    assert "\n" not in str(err.value)
    for noise, match in (("paper", "Hessian"), ("frozen", "minimiser")):
        with pytest.raises(ld.UnsupportedError, match=match):
            ld.simulate_sde(own, hp, key, 8, 10, noise=noise, theta0=jnp.zeros(4))
    with pytest.raises(ld.UnsupportedError, match="quadratic"):
        ld.simulate_sde(own, hp, key, 8, 10, noise="exact", solver="exact",
                        theta0=jnp.zeros(4))
    with pytest.raises(ValueError, match="Hessian"):
        ld.simulate_sgd(own, hp, key, 8, 10, theta0=jnp.zeros(4), check_stability=True)


def test_bad_user_problem_fails_before_compiling(no_compilation):
    class Broken(ld.FiniteSum):
        X: jax.Array

        @property
        def n_examples(self):
            return self.X.shape[0]

        def example_losses(self, theta, idx):
            return self.X[idx] @ theta[:2]          # wrong shapes for d = 4: (n, 3) @ (2,)

    with pytest.raises(ValueError, match="example_losses"):
        ld.simulate_sgd(Broken(jnp.ones((10, 3))), ld.Hyper(lr=0.1), jax.random.key(0), 4,
                        10, theta0=jnp.zeros(4))

    class NoLosses(ld.FiniteSum):
        @property
        def n_examples(self):
            return 10

    with pytest.raises(TypeError, match="example_losses"):
        ld.simulate_sgd(NoLosses(), ld.Hyper(lr=0.1), jax.random.key(0), 4, 10,
                        theta0=jnp.zeros(4))


def test_isotropic_noise_for_a_problem_without_minimiser():
    lr = _linreg()
    own = LeastSquares(lr.X, lr.y)
    hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=8)
    mu = np.asarray(lr.minimiser())
    res = ld.simulate_sde(own, hp, jax.random.key(0), 256, 200, noise="isotropic",
                          theta0=mu)
    assert res.config["noise"] == "isotropic" and np.all(np.isfinite(res.stationary_cov))


@pytest.mark.parametrize("linear", [False, True], ids=["gradient", "linear-drift"])
def test_baoab_reusing_the_end_force_equals_the_plain_scheme(linear):
    """FSAL (the force at the end of a step kept for the next) changes nothing but the
    cost: the same ensemble as evaluating the force twice per step, for a gradient drift
    and for the precomputed (H + λI)(θ − μ) of a quadratic."""
    from limitdyn import runner, sde
    from limitdyn.dynamics import Langevin

    lr = _linreg()
    prob = lr if linear else LeastSquares(lr.X, lr.y)
    hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=8)
    theta0 = np.broadcast_to(np.asarray(lr.minimiser()) + 0.2, (16, 4))
    spec, params = sde.sde_params(prob, hp, "langevin", "baoab", "exact", sampling="iid",
                                  sigma2=None, dt=0.05, dtype=np.float32, d=4,
                                  theta_ref=theta0[0])
    finals = []
    for fsal in (False, True):
        dyn = Langevin("langevin", "baoab", spec, 2, 1, linear, fsal, 4 if fsal else 0)
        trace = ld.observers.Trace.from_dict({"theta": lambda th, v: th}, np.arange(1, 31))
        out = runner.run(dyn, params, jax.random.key(4), theta0, np.zeros_like(theta0), 30,
                         (trace,))
        finals.append(out.observed["traces"]["theta"])
    np.testing.assert_allclose(finals[1], finals[0], rtol=1e-5, atol=1e-6)
