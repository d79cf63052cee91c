"""The discrete kernel: optax equivalence, deterministic limit, samplers, compilation."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import limitdyn as ld
from limitdyn import runner, samplers


def _problem(n=48, d=5, seed=0):
    return ld.LinearRegression.synthetic(jax.random.key(seed), n=n, d=d, spectrum=(0.2, 1.5))


@pytest.mark.parametrize("sampling", ["iid", "replacement", "reshuffle"])
def test_step_matches_optax_step_for_step(sampling, x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.3, momentum=0.8, weight_decay=0.03, batch_size=8)
    sampler = samplers.build(sampling, prob.n_examples, hp.batch_size)
    opt = optax.chain(optax.add_decayed_weights(hp.weight_decay),
                      optax.sgd(hp.lr, momentum=hp.momentum))
    theta0 = jnp.linspace(-1.0, 1.0, prob.dim)
    state = ld.sgd.init(theta0)
    params, opt_state = theta0, opt.init(theta0)
    aux = sampler.init(jax.random.key(0))
    step, next_batch = jax.jit(ld.sgd.step), jax.jit(sampler.next)
    minibatch_grad = jax.jit(jax.grad(lambda p, b: 0.5 * jnp.mean((prob.X[b] @ p - prob.y[b]) ** 2)))
    for k in range(60):
        batch, aux = next_batch(jax.random.key(k + 1), aux, k)
        state, info = step(jax.random.key(0), state, prob, hp, batch)
        g = minibatch_grad(params, batch)
        np.testing.assert_allclose(info.gradient, g, rtol=1e-13, atol=1e-15)
        updates, opt_state = opt.update(g, opt_state, params)
        params = optax.apply_updates(params, updates)
        buffer = opt_state[1][0].trace        # optax's momentum buffer
        np.testing.assert_allclose(state.theta, params, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(state.velocity, -buffer, rtol=1e-12, atol=1e-14)


def test_full_batch_is_deterministic_heavy_ball(x64):
    prob = _problem()
    hp = ld.Hyper(lr=0.4, momentum=0.9, weight_decay=0.01, batch_size=prob.n_examples)
    theta0 = np.linspace(1.0, -1.0, prob.dim)
    res = ld.simulate_sgd(prob, hp, jax.random.key(3), n_traj=6, n_steps=200, theta0=theta0,
                          record="linear", n_record=20, keep_trajectories=True)
    X, y = prob.numpy()
    theta, v = theta0.copy(), np.zeros(prob.dim)
    expected = {0: np.concatenate([theta, v])}
    for k in range(1, 201):
        v = hp.momentum * v - X.T @ (X @ theta - y) / len(y) - hp.weight_decay * theta
        theta = theta + hp.lr * v
        expected[k] = np.concatenate([theta, v])
    want = np.stack([expected[int(k)] for k in res.steps])
    np.testing.assert_allclose(res.mean, want, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(res.trajectories, np.broadcast_to(want[:, None], res.trajectories.shape),
                               rtol=1e-12, atol=1e-13)
    assert np.abs(res.cov).max() < 1e-25   # zero up to the roundoff of centring


def test_iid_batches_are_uniform_subsets():
    n, s, draws = 20, 6, 20000
    sampler = samplers.iid(n, s)
    keys = jax.random.split(jax.random.key(0), draws)
    batches = np.asarray(jax.jit(jax.vmap(lambda k: sampler.next(k, (), 0)[0]))(keys))
    assert all(len(set(b)) == s for b in batches[:2000])
    # inclusion frequencies: each index with probability S/N (binomial, 5 SE)
    counts = np.bincount(batches.ravel(), minlength=n)
    p = s / n
    se = np.sqrt(draws * p * (1 - p))
    assert np.all(np.abs(counts - draws * p) < 5 * se)
    # pair inclusion: P(i and j) = S(S−1)/(N(N−1)) for a uniform subset
    inc = np.zeros((draws, n))
    np.put_along_axis(inc, batches, 1.0, axis=1)
    pair = inc[:, 0] * inc[:, n - 1]          # Floyd's extreme indices
    q = s * (s - 1) / (n * (n - 1))
    assert abs(pair.mean() - q) < 5 * np.sqrt(q * (1 - q) / draws)


def test_reshuffle_visits_every_example_once_per_epoch():
    n, s = 23, 5   # 4 batches per epoch, 3 examples dropped each epoch
    sampler = samplers.reshuffle(n, s)
    aux = sampler.init(jax.random.key(0))
    nxt = jax.jit(sampler.next)
    epochs = []
    for e in range(3):
        seen = []
        for b in range(n // s):
            batch, aux = nxt(jax.random.key(100 * e + b), aux, e * (n // s) + b)
            seen.extend(np.asarray(batch).tolist())
        assert len(set(seen)) == len(seen) == s * (n // s)
        epochs.append(seen)
    assert epochs[0] != epochs[1]


def test_changing_lr_momentum_weight_decay_does_not_recompile(caplog):
    prob = _problem()
    key = jax.random.key(0)
    kwargs = dict(n_traj=8, n_steps=30, sampling="iid")
    ld.simulate_sgd(prob, ld.Hyper(lr=0.1, momentum=0.5, batch_size=8), key, **kwargs)
    cached = len(runner._COMPILED)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        caplog.clear()
        res = ld.simulate_sgd(prob, ld.Hyper(lr=0.2, momentum=0.9, weight_decay=0.1, batch_size=8),
                              key, **kwargs)
    compiles = [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]
    assert compiles == []
    assert len(runner._COMPILED) == cached
    assert res.metadata["compile_seconds"] == 0.0
