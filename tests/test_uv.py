"""The uv model (theory.md §7): exact recursion and Hessian, and the thresholds it predicts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from limitdyn.theory import uv


def test_recursion_matches_gradient_descent_on_u_v():
    rng = np.random.default_rng(1)
    w, eta, x, y = 6, 0.3, 1.3, 0.4
    u, v = rng.standard_normal(w), rng.standard_normal(w)
    st = uv.UVState(u @ u, v @ v, u @ v)
    for _ in range(7):
        r = (v @ u) * x / np.sqrt(w) - y
        u, v = u - eta * r * x * v / np.sqrt(w), v - eta * r * x * u / np.sqrt(w)
        st = uv.uv_step(st, eta, w, x, y)
        np.testing.assert_allclose(st, (u @ u, v @ v, u @ v), rtol=1e-12)


def test_exact_sharpness_is_top_eigenvalue_of_dense_hessian(x64):
    rng = np.random.default_rng(2)
    for w, x, y in ((1, 1.0, 0.0), (3, 0.7, 1.5), (8, 1.0, 0.0), (8, -1.2, -2.0)):
        u, v = rng.standard_normal(w), rng.standard_normal(w)

        def loss(p, w=w, x=x, y=y):
            return 0.5 * ((p[w:] @ p[:w]) * x / jnp.sqrt(w) - y) ** 2

        h = np.asarray(jax.hessian(loss)(jnp.concatenate([u, v])))
        st = uv.UVState(u @ u, v @ v, u @ v)
        assert uv.uv_sharpness(st, w, x, y) == pytest.approx(np.linalg.eigvalsh(h)[-1],
                                                             rel=1e-12)
        assert uv.uv_ntk(st, w, x) == pytest.approx(x * x * (u @ u + v @ v) / w, rel=1e-12)


def test_large_width_c_loss_2_and_c_max_4():
    # Width 4096, 40 initialisations, c-grid step 0.01 (NTK units, the large-width statement).
    cs = np.round(np.concatenate([np.arange(1.8, 2.3, 0.01), np.arange(3.7, 4.3, 0.01)]), 6)
    th = uv.uv_thresholds(4096, cs, n_seeds=40, units="ntk", sharpness="ntk", n_steps=300)
    assert np.all(np.abs(th.c_loss - 2) <= 0.1), th.c_loss
    assert np.all(np.abs(th.c_max - 4) <= 0.1), th.c_max
    # At width 8 the same criteria are spread out (finite-width effect the test can see).
    th8 = uv.uv_thresholds(8, cs, n_seeds=40, units="ntk", sharpness="ntk", n_steps=300)
    assert np.nanmax(th8.c_loss) > 2.2


def test_sharpness_falls_at_c_1_at_width_8_but_not_at_large_width():
    out = {}
    for w in (8, 4096):
        st = uv.uv_init(w, 400, seed=3)
        run = uv.uv_run(st, 1.0 / uv.uv_sharpness(st, w), w, 10)
        ratio = run.hessian[:, -1] / run.hessian[:, 0]
        out[w] = (ratio.mean(), ratio.std(ddof=1) / np.sqrt(ratio.size))
        # No initialisation has a sharpness catapult at c = 1.
        assert np.all(run.hessian[:, 1:].max(axis=1) <= run.hessian[:, 0])
    mean8, se8 = out[8]
    assert mean8 + 4 * se8 < 0.95          # falls by more than 5% (k = 4 SE)
    assert out[4096][0] > 0.998            # essentially constant at large width


def test_hessian_sharpness_catapult_from_c_2_5():
    # First-step expansion at large width: λᴴ_1 > λᴴ_0 iff c > 5/2 (NTK falls by (c − 4)ηf²/w,
    # the residual term 3r²/(wλ) rises by 3f²c(c − 2)/(wλ)).
    cs = np.round(np.arange(2.0, 3.2, 0.01), 6)
    th = uv.uv_thresholds(4096, cs, n_seeds=40, units="hessian", sharpness="hessian",
                          n_steps=50)
    assert np.all(np.abs(th.c_sharp - 2.5) <= 0.05), th.c_sharp
    # Measured with the NTK there is no sharpness catapult below c_max.
    thn = uv.uv_thresholds(4096, cs, n_seeds=40, units="ntk", sharpness="ntk", n_steps=50)
    assert np.isnan(thn.c_sharp).all()


def test_bad_input():
    with pytest.raises(ValueError, match="c must be > 0"):
        uv.uv_thresholds(8, [1.0, -1.0])
    with pytest.raises(ValueError, match="width"):
        uv.uv_init(0, 3)
    with pytest.raises(ValueError, match="units"):
        uv.uv_thresholds(8, [1.0], units="lr")
