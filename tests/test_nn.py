"""limitdyn.nn: datasets, models, losses, the vmapped c-grid trainer and the thresholds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from limitdyn import nn as lnn
from limitdyn import runner


def test_digits_standardised_one_hot():
    d = lnn.digits()
    assert d.x.shape == (1797, 64) and d.y.shape == (1797, 10) and d.n_classes == 10
    np.testing.assert_allclose(d.x.mean(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(d.x.std(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(d.y.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.argmax(d.y, axis=1), d.labels)


def test_teacher_student_is_deterministic_and_balanced_enough():
    a, b = lnn.teacher_student(3, n=500), lnn.teacher_student(3, n=500)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, lnn.teacher_student(4, n=500).labels)
    assert len(np.unique(a.labels)) >= 5 and a.image_shape == (8, 8, 1)
    assert lnn.load_dataset("teacher-student").n == 1024


def test_losses_normalisation():
    f = jnp.array([[1.0, 0.0], [0.0, 3.0]])
    y = jnp.array([[0.0, 1.0], [0.0, 1.0]])
    assert float(lnn.mse(f, y)) == pytest.approx(0.5 * (1 + 1 + 0 + 4) / 4)
    ce = -(jax.nn.log_softmax(f[0])[1] + jax.nn.log_softmax(f[1])[1]) / 2
    assert float(lnn.cross_entropy(f, y)) == pytest.approx(float(ce))


def test_parametrisations_same_function_at_init():
    x = jnp.asarray(lnn.digits(16).x)
    key = jax.random.key(0)
    outs = {}
    for p in ("standard", "ntk", "mup"):
        m = lnn.make_model("fcn", n_out=10, width=32, depth=3, parametrisation=p)
        outs[p] = m.apply({"params": lnn.init_params(m, key, x)}, x)
    np.testing.assert_allclose(outs["standard"], outs["ntk"], rtol=1e-5, atol=1e-6)
    # μP readout: multiplier 1/n instead of 1/√n (n = width).
    np.testing.assert_allclose(outs["mup"], outs["ntk"] / np.sqrt(32), rtol=1e-5, atol=1e-6)
    m = lnn.make_model("fcn", n_out=10, width=8, depth=2, zero_last=True)
    assert float(jnp.abs(m.apply({"params": lnn.init_params(m, key, x)}, x)).max()) == 0.0
    cnn = lnn.make_model("cnn", n_out=10, width=4)
    assert cnn.apply({"params": lnn.init_params(cnn, key, x)}, x).shape == (16, 10)
    uv = lnn.make_model("uv", n_out=1, width=5)
    p = lnn.init_params(uv, key, jnp.ones((1, 1)))
    want = p["u"][0] @ p["v"][:, 0] / np.sqrt(5)
    assert float(uv.apply({"params": p}, jnp.ones((1, 1)))[0, 0]) == pytest.approx(float(want),
                                                                                rel=1e-6)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(name="resnet"), ValueError, "model"),
    (dict(width=0), ValueError, "width"),
    (dict(depth=0), ValueError, "depth"),
    (dict(activation="gelu"), ValueError, "activation"),
    (dict(parametrisation="ntp"), ValueError, "parametrisation"),
    (dict(width=2.5), TypeError, "width"),
])
def test_bad_model_arguments(no_compilation, kw, exc, match):
    args = dict(name="fcn", n_out=10)
    args.update(kw)
    with pytest.raises(exc, match=match):
        lnn.make_model(args.pop("name"), **args)


def test_bad_dataset_name():
    with pytest.raises(ValueError, match="dataset"):
        lnn.load_dataset("cifar10")


def _tiny():
    data = lnn.digits(96)
    model = lnn.make_model("fcn", n_out=10, width=8, depth=2, activation="tanh")
    return data, model


@pytest.mark.parametrize("kw, match", [
    (dict(cs=[1.0, 0.0]), "c must be > 0"),
    (dict(cs=[-1.0]), "c must be > 0"),
    (dict(cs=[1.0], n_steps=10, measure_every=3), "multiple"),
    (dict(cs=[1.0], batch_size=1000), "batch_size"),
    (dict(cs=[1.0], momentum=1.0), "momentum"),
    (dict(cs=[1.0], loss="hinge"), "loss"),
])
def test_train_grid_bad_input_before_compiling(no_compilation, kw, match):
    data, model = _tiny()
    cs = kw.pop("cs")
    kw.setdefault("batch_size", 32)
    with pytest.raises(ValueError, match=match):
        lnn.train_grid(model, data, cs, measure_size=32, **kw)


def test_full_batch_run_matches_plain_optax_and_grid_does_not_recompile():
    data, model = _tiny()
    kw = dict(n_seeds=2, n_steps=4, batch_size=data.n, measure_size=32, lanczos_iter=6,
              lanczos_iter0=12, key=1, diverge_loss=10.0)
    res = lnn.train_grid(model, data, [0.5, 1.0, 64.0], **kw)
    compiled = len(runner._COMPILED)
    res2 = lnn.train_grid(model, data, [0.7, 1.3, 3.0], momentum=0.5, **kw)
    assert len(runner._COMPILED) == compiled, "a new c-grid or momentum recompiled the kernel"
    assert res2.loss.shape == (2, 3, 5)
    # Seed 1, c = 1: replay with a plain optax loop.
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    key = jax.random.split(jax.random.fold_in(jax.random.key(1), 1), 3)[0]
    params = lnn.init_params(model, key, x)

    def loss(p):
        return lnn.mse(model.apply({"params": p}, x), y)

    eta = res.eta[1, 1]
    assert eta == pytest.approx(1.0 / res.lam0[1], rel=1e-6)
    opt = optax.sgd(eta)
    state = opt.init(params)
    want = [float(loss(params))]
    for _ in range(4):
        upd, state = opt.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, upd)
        want.append(float(loss(params)))
    np.testing.assert_allclose(res.loss[1, 1], want, rtol=1e-4)
    # c = 64 diverges: counted, loss +inf afterwards, sharpness not measured after it.
    assert res.diverged[:, 2].all() and not res.diverged[:, :2].any()
    k = res.diverged_at[0, 2]
    assert k in range(1, 5) and np.isinf(res.loss[0, 2, k + 1:]).all()
    assert np.isnan(res.sharpness[0, 2, k:]).all()
    th = lnn.thresholds(res)
    np.testing.assert_array_equal(th.c_max, [1.0, 1.0])
    np.testing.assert_array_equal(th.n_diverged, [1, 1])


def test_thresholds_exact_on_constructed_grid():
    cs = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    n_c = len(cs)
    loss = np.ones((1, n_c, 3)) * np.array([1.0, 0.5, 0.4])
    loss[0, 2, 1] = 1.5            # loss catapult at c = 4 …
    loss[0, 3, 2] = 1.2            # … and at c = 8
    sharp = np.ones((1, n_c, 3)) * np.array([2.0, 1.9, 1.8])
    sharp[0, 3, 1] = 2.5           # sharpness catapult from c = 8
    div = np.array([[False, False, False, False, True]])
    barrier = np.zeros((1, n_c, 2))
    barrier[0, 3] = [0.5, 1.1]     # barrier from c = 8
    res = lnn.GridResult(cs=cs, lam0=np.array([2.0]), eta=cs[None] / 2, loss=loss,
                         sharp_steps=np.arange(3), sharpness=sharp, lanczos_residual=0 * sharp,
                         diverged=div, diverged_at=np.where(div, 2, -1), barrier_tau=np.ones(2),
                         barrier_loss=barrier, info={})
    th = lnn.thresholds(res)
    assert (th.c_loss[0], th.c_sharp[0], th.c_barrier[0], th.c_max[0]) == (4.0, 8.0, 8.0, 8.0)
    res_all = lnn.GridResult(**{**res.__dict__, "diverged": np.ones((1, n_c), bool)})
    th = lnn.thresholds(res_all)
    assert np.isnan(th.c_max[0]) and th.max_below_grid[0]
