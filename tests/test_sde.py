"""The SDE runner: input validation, deterministic properties and exact weak orders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import limitdyn as ld
from limitdyn import noise as noise_models
from limitdyn.convergence import weak_order


def _problem(n=128, d=4):
    return ld.LinearRegression.synthetic(jax.random.key(0), n=n, d=d, spectrum=(0.2, 1.0))


HP = ld.Hyper(lr=0.1, momentum=0.9, batch_size=32)


@pytest.mark.parametrize("kwargs,match", [
    (dict(noise="bogus"), "noise must be one of"),
    (dict(solver="rk4"), "solver must be one of"),
    (dict(model="overdamped"), "model must be one of"),
    (dict(dt=0.0), "dt must be"),
    (dict(dt=-0.1), "dt must be"),
    (dict(dt=float("nan")), "dt must be"),
    (dict(dt=0.03), "integer multiple or an integer fraction"),
    (dict(solver="exact", noise="exact"), "needs a constant noise model"),
    (dict(solver="baoab", model="sme"), "langevin"),
    (dict(model="sme", dt=0.2, solver="em"), "dt <= η"),
    (dict(sampling="reshuffle"), "sampling must be one of"),
    (dict(solver="em", diffrax_solver=object()), "diffrax_solver applies"),
    (dict(noise="frozen", sigma2=1.0), "sigma2 applies"),
    (dict(noise="paper", sigma2=-1.0), "sigma2 must be"),
    (dict(noise=lambda th: jnp.ones(3)), "must map theta"),
    (dict(noise=-np.eye(4)), "positive semi-definite"),
    (dict(noise=np.eye(3)), "shape"),
])
def test_bad_input_raises_before_compiling(kwargs, match, no_compilation):
    with pytest.raises(ValueError, match=match):
        ld.simulate_sde(_problem(), HP, jax.random.key(0), 8, 10, **kwargs)


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="noise must be"):
        ld.simulate_sde(_problem(), HP, jax.random.key(0), 8, 10, noise=3)
    with pytest.raises(TypeError, match="hp must be"):
        ld.simulate_sde(_problem(), {"lr": 0.1}, jax.random.key(0), 8, 10)


def test_exact_noise_sampler_has_covariance_kappa_sigma(x64):
    """Gᵀ(z − z̄)/√N · √κ is linear in z; its matrix M satisfies M Mᵀ = κ Σ(θ) exactly."""
    prob = _problem()
    for sampling in ("iid", "replacement"):
        spec, params = noise_models.resolve(prob, HP, "exact", sampling=sampling, sigma2=None,
                                            dtype=jnp.float64)
        theta = jnp.asarray(np.linspace(-1, 1, prob.dim))
        M = jax.jacfwd(noise_models.apply, argnums=4)(spec, params, prob, theta,
                                                      jnp.zeros(spec.n_normals))
        want = noise_models.per_step_covariance(prob, HP, "exact", sampling=sampling,
                                                theta=np.asarray(theta))
        np.testing.assert_allclose(M @ M.T, want, rtol=1e-12, atol=1e-15)


def test_factor_function_equals_the_same_constant_matrix():
    prob = _problem()
    C = noise_models.per_step_covariance(prob, HP, "frozen")
    evals, evecs = np.linalg.eigh(C)
    F = jnp.asarray(evecs * np.sqrt(np.clip(evals, 0, None)), jnp.float32)
    kw = dict(n_traj=64, n_steps=50, solver="baoab", dt=0.025)
    a = ld.simulate_sde(prob, HP, jax.random.key(3), noise=C, **kw)
    b = ld.simulate_sde(prob, HP, jax.random.key(3), noise=lambda th: F, **kw)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-5, atol=1e-9)


def test_steps_are_sgd_steps_and_result_roundtrips(tmp_path):
    prob = _problem()
    res = ld.simulate_sde(prob, HP, jax.random.key(1), 32, 100, noise="paper", solver="exact",
                          dt=0.5, record="linear", n_record=10)
    np.testing.assert_array_equal(res.steps, np.arange(0, 101, 10))
    assert res.config["lag_steps"] == 5 and res.config["kind"] == "sde"
    res.save(tmp_path / "r.npz")
    back = ld.Result.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.stationary_lag_cov, res.stationary_lag_cov)
    np.testing.assert_array_equal(back.window_groups["lag_outer"],
                                  res.window_groups["lag_outer"])
    with pytest.raises(ValueError, match="multiple"):
        ld.simulate_sde(prob, HP, jax.random.key(1), 32, 101, noise="paper", solver="exact",
                        dt=0.5)


def test_new_hyperparameters_do_not_recompile():
    prob = _problem()
    kw = dict(n_traj=16, n_steps=40, solver="baoab", noise="exact")
    ld.simulate_sde(prob, HP, jax.random.key(1), dt=HP.lr / 4, **kw)
    hp2 = HP.replace(lr=0.05, momentum=0.5, weight_decay=0.01)
    res = ld.simulate_sde(prob, hp2, jax.random.key(1), dt=hp2.lr / 4, **kw)
    assert res.metadata["compile_seconds"] == 0.0


def test_quadratic_problem_exact_noise_is_its_own_noise():
    H = np.diag([1.0, 0.3])
    prob = ld.Quadratic(H, 0.01 * np.eye(2))
    a = ld.simulate_sde(prob, HP, jax.random.key(2), 64, 40, noise="exact", solver="exact")
    b = ld.simulate_sde(prob, HP, jax.random.key(2), 64, 40, noise="frozen", solver="exact")
    np.testing.assert_array_equal(a.cov, b.cov)


# --- weak order, exactly (no sampling error; see limitdyn.convergence) --------------------

def test_weak_order_euler_maruyama_is_one():
    w = weak_order(_problem(), HP, "em", substeps=(8, 16, 32, 64, 128))
    print(w)
    assert 0.9 <= w.slope <= 1.1


def test_weak_order_baoab_is_two():
    w = weak_order(_problem(), HP, "baoab", substeps=(1, 2, 4, 8, 16))
    print(w)
    assert abs(w.slope - 2.0) <= 0.1


def test_weak_order_sme_euler_is_one_and_exact_stepper_is_exact():
    w = weak_order(_problem(), HP, "em", model="sme", substeps=(8, 16, 32, 64, 128))
    assert 0.9 <= w.slope <= 1.1
    for model in ("langevin", "sme"):
        e = weak_order(_problem(), HP, "exact", model=model, substeps=(1, 3))
        assert e.cov_error.max() < 1e-11 and e.mean_error.max() < 1e-11


@pytest.mark.parametrize("n", [1, 7, 16, 128])
def test_fast_normals_are_bit_identical_to_jax_random(n):
    from limitdyn import _prng

    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(3), jnp.arange(50))
    assert _prng.available(keys, jnp.float32)
    for step in (0, 5, 2**31 - 1):
        want = jax.vmap(lambda kk, s=step: jax.random.normal(jax.random.fold_in(kk, s), (n,)))(
            keys)
        got = jax.jit(_prng.trajectory_normals, static_argnums=2)(keys, jnp.int32(step), n)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_fast_and_generic_batched_steps_agree():
    """The fused draw and the vmapped per-trajectory draw give the same ensemble."""
    from limitdyn.runner import batched_step_of
    from limitdyn.sde import SDESpec, sde_params

    prob = _problem()
    spec_noise, p = sde_params(prob, HP, "langevin", "baoab", "exact", sampling="iid",
                               sigma2=None, dt=0.025, dtype=jnp.float32)
    spec = SDESpec("langevin", "baoab", spec_noise, 4, 1)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(1), jnp.arange(8))
    state = ld.State(jnp.ones((8, 4)), jnp.zeros((8, 4)))
    fast, _ = spec.batched_step(keys, state, (), jnp.int32(3), p)
    generic_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 3)
    slow, _ = jax.vmap(spec.step, in_axes=(0, 0, 0, None, None))(generic_keys, state,
                                                                  jnp.zeros(8), 3, p)
    np.testing.assert_allclose(fast.theta, slow.theta, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fast.velocity, slow.velocity, rtol=1e-6, atol=1e-7)
    assert batched_step_of(spec) == spec.batched_step
