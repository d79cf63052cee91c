"""limitdyn.limiting: continuation kernel, checkpoints, measurements, predictions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from limitdyn import limiting as lim
from limitdyn import runner


@pytest.fixture(scope="module")
def small():
    net, theta = lim.make_network("digits", "fcn", width=8, depth=2, n_train=200, n_test=100)
    return net, theta


def test_kernel_matches_optax_step_for_step(small):
    """The continuation kernel is optax SGD + momentum + coupled weight decay, and
    v = −(optax's momentum buffer) (theory.md §1); exact up to float32 roundoff."""
    net, theta0 = small
    eta, beta, lam, S, T = 0.05, 0.9, 1e-3, 10, 12
    run = lim.continue_sgd(net, theta0, key=3, n_traj=2, n_steps=T, lr=eta, momentum=beta,
                           weight_decay=lam, batch_size=S, sampling="iid", eval_every=6)
    # replay trajectory 1's minibatches (same keys as the runner) through optax
    from limitdyn import samplers

    sampler = samplers.build("iid", net.n, S)
    tkey = jax.random.fold_in(jax.random.key(3), 1)
    opt = optax.chain(optax.add_decayed_weights(lam), optax.sgd(eta, momentum=beta))
    th = jnp.asarray(theta0)
    state = opt.init(th)
    ss = sampler.init(tkey)
    prev = th
    for t in range(T):
        idx, ss = sampler.next(jax.random.fold_in(tkey, t), ss, jnp.asarray(t))
        g = jax.grad(net.loss)(th, net.x[idx], net.y[idx])
        upd, state = opt.update(g, state, th)
        prev, th = th, optax.apply_updates(th, upd)
        np.testing.assert_allclose(run.global_disp[1, t], float(jnp.sum((th - theta0) ** 2)),
                                   rtol=2e-5, atol=1e-10)
        np.testing.assert_allclose(run.local_disp[1, t], float(jnp.sum((th - prev) ** 2)),
                                   rtol=2e-4, atol=1e-12)
    np.testing.assert_allclose(run.theta[1], np.asarray(th), rtol=1e-5, atol=1e-6)
    trace = state[1][0].trace                        # optax momentum buffer
    np.testing.assert_allclose(run.velocity[1], -np.asarray(trace), rtol=1e-4, atol=1e-6)


def test_sweep_reuses_compiled_kernel(small):
    net, theta0 = small
    kw = dict(key=0, n_traj=2, n_steps=12, batch_size=10, weight_decay=0.0, eval_every=6,
              sampling="iid")
    lim.continue_sgd(net, theta0, lr=0.01, momentum=0.5, **kw)
    n = len(runner._COMPILED)
    lim.continue_sgd(net, theta0, lr=0.02, momentum=0.9, **kw)
    lim.continue_sgd(net, theta0, lr=0.03, momentum=0.0, **dict(kw, weight_decay=1e-3))
    assert len(runner._COMPILED) == n


def test_per_example_covariance_matches_brute_force(small):
    net, theta0 = small
    G = lim.per_example_gradients(net, theta0)
    assert G.shape == (net.n, net.n_params)
    for i in (0, 17, net.n - 1):
        gi = jax.grad(net.loss)(jnp.asarray(theta0), net.x[i:i + 1], net.y[i:i + 1])
        np.testing.assert_allclose(G[i], np.asarray(gi), rtol=1e-4, atol=1e-7)
    V = np.linalg.qr(np.random.default_rng(0).standard_normal((net.n_params, 3)))[0].T
    noise = lim.gradient_noise(G, V)
    Gd = G.astype(np.float64)
    sigma = sum(np.outer(g, g) for g in Gd) / len(Gd) - np.outer(Gd.mean(0), Gd.mean(0))
    np.testing.assert_allclose(noise.trace, np.trace(sigma), rtol=1e-10)
    np.testing.assert_allclose(noise.restricted, V @ sigma @ V.T, rtol=1e-9, atol=1e-14)
    # the mean of per-example gradients is the full gradient
    full = jax.grad(net.loss)(jnp.asarray(theta0), net.x, net.y)
    np.testing.assert_allclose(noise.grad, np.asarray(full), rtol=1e-3, atol=1e-6)


def test_checkpoint_roundtrip_and_errors(tmp_path, small):
    net, theta0 = small
    path = lim.save_checkpoint(tmp_path / "c.npz", theta0, None, {"network": net.spec})
    ck = lim.load_checkpoint(path, net)
    np.testing.assert_array_equal(ck.theta, theta0)
    assert not ck.velocity.any()
    other, _ = lim.make_network("digits", "fcn", width=9, depth=2, n_train=200, n_test=100)
    with pytest.raises(ValueError, match="parameters"):
        lim.load_checkpoint(path, other)
    with pytest.raises(ValueError, match="does not exist"):
        lim.load_checkpoint(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="finite"):
        lim.save_checkpoint(tmp_path / "bad.npz", np.array([np.nan]))


def test_bad_input_before_compilation(small):
    net, theta0 = small
    n = len(runner._COMPILED)
    base = dict(key=0, n_traj=2, n_steps=4, lr=0.1, momentum=0.5, weight_decay=0.0,
                batch_size=10)
    for over, exc in [({"lr": -1.0}, ValueError), ({"momentum": 1.0}, ValueError),
                      ({"batch_size": 10**6}, ValueError), ({"sampling": "bogus"}, ValueError),
                      ({"key": "x"}, TypeError), ({"n_steps": 5, "eval_every": 2}, ValueError)]:
        with pytest.raises(exc):
            lim.continue_sgd(net, theta0, **(base | over))
    with pytest.raises(ValueError, match="theta0"):
        lim.continue_sgd(net, theta0[:-1], **base)
    with pytest.raises(TypeError):
        lim.continue_sgd("net", theta0, **base)
    assert len(runner._COMPILED) == n


def test_divergent_trajectories_are_counted_not_averaged(small):
    net, theta0 = small
    # At lr = 1e5 some trajectories' training loss leaves diverge_loss = 1e3 by the
    # evaluation at step 6; others lose every ReLU unit on the way and fall back to log 10
    # with huge but finite weights (no divergence by the rule). The rule, exactly: flagged
    # at step 6 iff the loss there exceeds the bound, and counted.
    run = lim.continue_sgd(net, theta0, key=0, n_traj=8, n_steps=12, lr=1e5, momentum=0.9,
                           weight_decay=0.0, batch_size=10, eval_every=6, sampling="iid",
                           diverge_loss=1e3)
    over = run.train_loss[:, 1] > 1e3
    assert over.any()
    np.testing.assert_array_equal(run.diverged, over)
    np.testing.assert_array_equal(run.diverged_at, np.where(over, 6, -1))
    assert run.n_diverged == int(over.sum())
    assert np.all(np.isfinite(run.theta))            # frozen at the last checked parameters
    i = int(np.argmax(over))
    assert np.isfinite(run.global_disp[i, 5])        # the step that diverged shows its value
    assert np.all(np.isnan(run.global_disp[i, 6:]))  # nothing after it
    assert np.all(np.isnan(run.train_loss[i, 2:]))


def _meas(h, sig_top, tr_sigma, tr_h, n=1000, d=50):
    h = np.asarray(h, float)
    return lim.Measurements(h, np.eye(len(h), d), np.zeros(len(h)), tr_h, 0.0, tr_sigma,
                            np.diag(sig_top), 0.0, 0.0, n, d)


def test_local_prediction_limits():
    """β-, η-, κ-scaling of the prediction (theory.md §6) and the discrete factor (§5)."""
    m = _meas([2.0], [0.3], 1.0, 2.0)
    eta, beta, S, N = 0.01, 0.9, 10, 1000
    kappa = (N - S) / (S * (N - 1))
    per = lim.predict_local_displacement(m, lr=eta, momentum=beta, weight_decay=0.0,
                                         batch_size=S, per_mode=True)
    np.testing.assert_allclose(per[0], eta ** 2 * kappa * 0.3 / ((1 - beta) * (1 + beta
                                                                 - eta * 2.0 / 2)))
    np.testing.assert_allclose(per[1], eta ** 2 * kappa * 0.7 / (1 - beta ** 2))  # flat bulk
    with pytest.raises(ValueError, match="stability"):
        lim.predict_local_displacement(m, lr=2.0, momentum=0.0, weight_decay=0.0, batch_size=S)


def test_reshuffle_correction_sums_to_zero_over_an_epoch():
    """β = 0, h = 0: v_{k+1} = −ξ_k, no lag terms, reshuffle = iid; β = 0.5: the lag sum
    against a direct evaluation of Σ_m (1 − m/E) 2 Σ_j r_j r_{j+m} with r_j = β^j."""
    m = _meas([0.0], [1.0], 1.0, 0.0, n=100, d=10)
    a = lim.predict_local_displacement(m, lr=0.1, momentum=0.0, weight_decay=0.0,
                                       batch_size=10, sampling="reshuffle")
    b = lim.predict_local_displacement(m, lr=0.1, momentum=0.0, weight_decay=0.0,
                                       batch_size=10, sampling="iid")
    np.testing.assert_allclose(a, b, rtol=1e-12)
    c = lim._reshuffle_correction(np.array([0.0]), 0.1, 0.5, 100, 10)
    r_c = np.array([np.sum(0.5 ** np.arange(200) * 0.5 ** np.arange(m_, 200 + m_))
                    for m_ in range(1, 10)])
    np.testing.assert_allclose(c, 2 * np.sum(r_c * (1 - np.arange(1, 10) / 10)), rtol=1e-9)


@pytest.mark.slow
def test_reshuffle_prediction_against_monte_carlo():
    """A pure-noise flat direction: v_{k+1} = βv_k − (ḡ_B − ḡ) with reshuffled batches of N
    fixed scalars; the phase-averaged E v² vs the prediction (4 SE, batch-means SE)."""
    rng = np.random.default_rng(1)
    N, S, beta, K, T = 64, 8, 0.8, 400, 800
    vals = rng.standard_normal(N)
    vals -= vals.mean()
    sig = np.mean(vals ** 2)
    m = _meas([0.0], [sig], sig, 0.0, n=N, d=4)
    pred = lim.predict_local_displacement(m, lr=1.0, momentum=beta, weight_decay=0.0,
                                          batch_size=S, sampling="reshuffle")
    v = np.zeros(K)
    acc = []
    E = N // S
    perm = None
    for t in range(T):
        if t % E == 0:
            perm = np.argsort(rng.random((K, N)), axis=1)
        batch = vals[perm[:, (t % E) * S:(t % E + 1) * S]].mean(1)
        v = beta * v - batch
        if t >= 100:
            acc.append(v * v)
    acc = np.array(acc)
    per = acc.mean(0)
    se = per.std(ddof=1) / np.sqrt(K)
    assert abs(per.mean() - pred) < 4 * se, (per.mean(), pred, se)
    iid = lim.predict_local_displacement(m, lr=1.0, momentum=beta, weight_decay=0.0,
                                         batch_size=S, sampling="iid")
    assert abs(per.mean() - iid) > 4 * se              # the correction is resolvable


def test_global_prediction_saturates_and_spectral_peak():
    m = _meas([1.0], [0.5], 0.5, 1.0)
    steps = np.array([1, 10, 100, 10000])
    lam = 1e-2
    out = lim.predict_global_displacement(m, steps, lr=0.05, momentum=0.9, weight_decay=lam,
                                          batch_size=10, start="minimum")
    assert np.all(np.diff(out) > 0)
    # far in time: Δ → 2 tr C_θθ (stationary, theory.md §6) with per-mode closed form
    from limitdyn.theory.discrete import additive_mode_stationary

    kappa = (1000 - 10) / (10 * 999)
    vt = additive_mode_stationary(np.array([1.0 + lam, lam]), 0.05, 0.9,
                                  kappa * np.array([0.5, 0.0]))[0]
    np.testing.assert_allclose(out[-1], vt.sum(), rtol=1e-3)
    with pytest.raises(ValueError):
        lim.predict_global_displacement(m, steps, lr=0.05, momentum=0.9, weight_decay=0.0,
                                        batch_size=10, start="bogus")
    # a strongly underdamped mode: the spectral peak sits near η ω
    w = lim.rotation_frequencies([1.0], lr=0.01, momentum=0.99, weight_decay=0.0)
    p = lim.predicted_spectral_peaks([1.0], lr=0.01, momentum=0.99, weight_decay=0.0)
    np.testing.assert_allclose(p, w, rtol=0.02)
    # and a simulated AR(2) oscillator's measured peak agrees with it
    rng = np.random.default_rng(0)
    K, T, eta, beta, h = 32, 4096, 0.01, 0.99, 1.0
    a, b = np.zeros(K), np.zeros(K)
    xs = np.empty((K, T, 1))
    for t in range(T):
        b = beta * b - h * a - rng.standard_normal(K)
        a = a + eta * b
        xs[:, t, 0] = a
    peak = lim.spectral_peaks(xs)[0]
    np.testing.assert_allclose(peak, p, rtol=0.05)


def test_measure_checkpoint_small(small):
    net, theta0 = small
    m = lim.measure_checkpoint(net, theta0, key=0, k=3, lanczos_iter=60,
                               hutchinson_samples=40)
    from limitdyn.hessian import dense_hessian

    H = np.asarray(dense_hessian(net.loss, jnp.asarray(theta0), net.x, net.y), np.float64)
    ev = np.linalg.eigvalsh(H)[::-1]
    np.testing.assert_allclose(m.eigvals, ev[:3], rtol=1e-3, atol=1e-5)
    assert abs(m.trace_h - np.trace(H)) < 4 * m.trace_h_se
    assert m.sigma_top.shape == (3, 3)
    assert np.trace(m.sigma_top) <= m.trace_sigma * (1 + 1e-9)
