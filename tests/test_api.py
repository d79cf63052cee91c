"""Public API: input validation before compilation, results on disk, divergence accounting."""

import warnings

import jax
import numpy as np
import pytest

import limitdyn as ld

PROB = ld.LinearRegression.synthetic(jax.random.key(0), n=32, d=3)
HP = ld.Hyper(lr=0.1, momentum=0.5, batch_size=8)
KEY = jax.random.key(1)


@pytest.mark.parametrize("make,match", [
    (lambda: ld.LinearRegression(np.array([[1.0, np.nan]]), np.array([1.0])), "X must be finite"),
    (lambda: ld.LinearRegression(np.ones((2, 2)), np.array([1.0, np.inf])), "y must be finite"),
    (lambda: ld.LinearRegression(np.ones((3, 2)), np.ones(4)), "one target per row"),
    (lambda: ld.LinearRegression(np.ones(3), np.ones(3)), "X must have 2 dimensions"),
    (lambda: ld.Hyper(lr=0.0), r"Hyper.lr must be in|Hyper.lr must be > 0"),
    (lambda: ld.Hyper(lr=-1.0), r"Hyper.lr must be > 0"),
    (lambda: ld.Hyper(lr=float("nan")), r"Hyper.lr must be a finite"),
    (lambda: ld.Hyper(lr=0.1, momentum=1.0), r"Hyper.momentum must be in \[0.0, 1.0\)"),
    (lambda: ld.Hyper(lr=0.1, momentum=-0.1), r"Hyper.momentum must be in \[0.0, 1.0\)"),
    (lambda: ld.Hyper(lr=0.1, weight_decay=-1e-3), r"Hyper.weight_decay must be >= 0"),
    (lambda: ld.Hyper(lr=0.1, batch_size=0), r"Hyper.batch_size must be an integer in \[1"),
    (lambda: ld.simulate_sgd(PROB, HP.replace(batch_size=33), KEY, 4, 10), r"batch_size must be in \[1, N=32\]"),
    (lambda: ld.simulate_sgd(PROB, HP, KEY, 4, 10, sampling="shuffle"), "sampling must be one of 'iid'"),
    (lambda: ld.simulate_sgd(PROB, HP, KEY, 0, 10), r"n_traj must be an integer in \[1, 2147483647\]"),
    (lambda: ld.simulate_sgd(PROB, HP, KEY, 4, 0), r"n_steps must be an integer in \[1, 2147483647\]"),
    (lambda: ld.simulate_sgd(PROB, HP, KEY, 4, 10, burn_in=11), r"burn_in must be an integer in \[0, 10\]"),
    (lambda: ld.simulate_sgd(PROB, HP, KEY, 4, 10, theta0=np.ones(4)), r"theta0 must have shape \(3,\)"),
    (lambda: ld.simulate_sgd(PROB, HP, KEY, 4, 10, v0=[np.inf, 0, 0]), "v0 must be finite"),
    (lambda: ld.simulate_sgd(PROB, HP, KEY, 4, 10, record=[0, 11]), r"record steps must be integers in \[0, n_steps=10\]"),
    (lambda: ld.simulate_sgd(ld.Quadratic(np.eye(2), np.eye(2)), HP, KEY, 4, 10, sampling="reshuffle"), "sampling must be 'iid' for a Quadratic"),
    (lambda: ld.Quadratic(np.array([[1.0, 2.0], [0.0, 1.0]]), np.eye(2)), "hessian must be symmetric"),
    (lambda: ld.Quadratic(np.eye(2), -np.eye(2)), "noise_cov must be positive semi-definite"),
    (lambda: ld.LinearRegression.synthetic(KEY, n=0, d=3), r"n must be an integer in \[1, inf\]"),
    (lambda: ld.LinearRegression.synthetic(KEY, n=8, d=3, spectrum=(0.0, 1.0)), "spectrum lo must be > 0"),
])
def test_bad_input_raises_value_error_before_compiling(make, match, no_compilation):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make,match", [
    (lambda: ld.simulate_sgd("not a problem", HP, KEY, 4, 10), "prob must be a limitdyn problem"),
    (lambda: ld.simulate_sgd(PROB, {"lr": 0.1}, KEY, 4, 10), "hp must be a limitdyn.Hyper"),
    (lambda: ld.simulate_sgd(PROB, HP, 0, 4, 10), "key must be a JAX PRNG key"),
    (lambda: ld.simulate_sgd(PROB, HP, KEY, 4.5, 10), "n_traj must be an integer"),
    (lambda: ld.Hyper(lr="0.1"), "Hyper.lr must be a real number"),
    (lambda: ld.Hyper(lr=0.1, momentum=True), "Hyper.momentum must be a real number"),
])
def test_wrong_types_raise_type_error(make, match, no_compilation):
    with pytest.raises(TypeError, match=match):
        make()


def test_result_roundtrip(tmp_path):
    res = ld.simulate_sgd(PROB, HP, KEY, n_traj=16, n_steps=40, keep_trajectories=True)
    path = tmp_path / "run.npz"
    res.save(path)
    back = ld.Result.load(path)
    for name in ("steps", "mean", "cov", "stationary_cov", "displacement", "trajectories"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    np.testing.assert_array_equal(back.stderr.stationary_cov, res.stderr.stationary_cov)
    assert back.config == res.config
    assert back.metadata["versions"]["jax"] == jax.__version__
    assert "limitdyn" in back.summary() or "sgd ensemble" in back.summary()
    assert not list(tmp_path.glob("*.tmp"))


def test_compare_table_and_errors():
    res = ld.simulate_sgd(PROB, HP, KEY, n_traj=64, n_steps=200)
    table = ld.compare(res, ld.theory.discrete_stationary_cov(PROB, HP))
    text = str(table)
    assert "stationary cov" in text and "verdict" in text
    assert len(table.rows) == 3
    with pytest.raises(ValueError, match=r"prediction must be a \(6, 6\)"):
        ld.compare(res, np.eye(3))


def test_diverged_trajectories_are_counted_and_excluded():
    prob = ld.LinearRegression.synthetic(jax.random.key(4), n=16, d=2, spectrum=(0.5, 1.0),
                                         noise_std=0.0)
    mu = np.asarray(prob.minimiser())
    hp = ld.Hyper(lr=2.6, batch_size=16)     # mean map unstable: |1 − 2.6·1| = 1.6 per step
    starts = np.tile(mu, (8, 1))
    starts[:4] += 1e10                        # these pass the 1.8e16 bound after ~30 steps
    starts[4:] += 1e-3                        # these need ~90 steps
    with pytest.warns(ld.StabilityWarning, match="outside the discrete stability region"):
        res = ld.simulate_sgd(prob, hp, KEY, n_traj=8, n_steps=60, theta0=starts,
                              record="linear", n_record=6, n_groups=2)
    assert res.n_alive[0] == 8
    assert res.n_alive[-1] == 4 and res.n_diverged[-1] == 4
    assert np.all(np.isfinite(res.mean)) and np.all(np.isfinite(res.cov))
    assert np.isfinite(res.stationary_cov).all()


def test_stability_precheck_warns_outside_and_near_the_edge():
    prob = ld.LinearRegression.synthetic(jax.random.key(4), n=64, d=4, spectrum=(0.2, 1.0))
    hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=16)
    edge = ld.theory.stability(prob, hp)["max_lr"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # well inside: no warning
        ld.simulate_sgd(prob, hp, KEY, n_traj=8, n_steps=5)
    with pytest.warns(ld.StabilityWarning, match=f"within 10% of the edge.*{edge:.4g}"):
        ld.simulate_sgd(prob, hp.replace(lr=0.95 * edge), KEY, n_traj=8, n_steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ld.simulate_sgd(prob, hp.replace(lr=0.95 * edge), KEY, n_traj=8, n_steps=5,
                        check_stability=False)


def test_every_trajectory_diverging_is_an_error_quoting_the_bound():
    prob = ld.LinearRegression.synthetic(jax.random.key(4), n=16, d=2, spectrum=(0.5, 1.0))
    hp = ld.Hyper(lr=2.6, batch_size=16)
    with pytest.warns(ld.StabilityWarning):
        with pytest.raises(ld.DivergenceError, match=r"all 8 trajectories diverged.*outside "
                           r"the discrete stability region.*largest stable lr .* ≈ 2"):
            ld.simulate_sgd(prob, hp, KEY, n_traj=8, n_steps=200, n_groups=2,
                            theta0=np.asarray(prob.minimiser()) + 1e-3)   # full batch: no noise


def test_a_run_whose_arrays_cannot_fit_is_refused_before_allocating(no_compilation):
    """98 GB of kept states: refused at once with the size and the limit (it used to hang)."""
    import limitdyn._memory as memory

    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=64, d=64)
    with pytest.raises(memory.AllocationError, match=r"would need .* more than") as err:
        ld.simulate_sgd(prob, ld.Hyper(lr=0.1, batch_size=8), jax.random.key(0), 100_000,
                        10**6, keep_trajectories=True, n_record=1000)
    assert "\n" not in str(err.value)
