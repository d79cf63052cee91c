"""Validation of the continuous approximation against the exact discrete theory (theory.md §5)."""

import jax
import numpy as np
import pytest

import limitdyn as ld
from limitdyn import theory as th
from limitdyn.theory.approximation import TERMS, fit_order

LO = 0.005      # lrs = geomspace(LO, 10 LO, 6): far inside the stability region (η < ~1)


@pytest.fixture(scope="module")
def report():
    with jax.enable_x64(True):
        prob = ld.LinearRegression.synthetic(jax.random.key(0), n=512, d=16)
        hp = ld.Hyper(lr=0.01, momentum=0.9, batch_size=32)
        return th.continuous_error(prob, hp, np.geomspace(LO, 10 * LO, 6))


def test_error_of_exact_and_frozen_models_is_first_order_in_lr(report):
    assert report.stable.all()
    for name in ("exact", "frozen"):
        assert 0.8 <= report.slopes[name] <= 1.2, (name, report.slopes[name])
        assert report.slope_stderr[name] < 0.05
        assert np.all(np.diff(report.errors[name]) > 0)       # shrinks with η
    # the exact model is the better one at every lr
    assert np.all(report.errors["exact"] < report.errors["frozen"])


def test_paper_model_error_tends_to_a_constant(report):
    err = report.errors["paper"]
    assert abs(report.slopes["paper"]) < 0.2
    assert err.min() > 0.1                      # does not vanish as η → 0
    assert err[0] / err[-1] < 1.5
    # isotropic noise is the wrong shape altogether
    assert report.errors["isotropic"].min() > 0.3


def test_term_decomposition(report):
    terms = report.terms
    assert terms.shape == (6, 4) and np.all(np.isfinite(terms)) and np.all(terms >= 0)
    # telescoping chain: the terms bound the paper model's total error
    assert np.all(terms.sum(1) >= report.errors["paper"] * (1 - 1e-12))
    # noise shape and finite population are η-independent; the others are O(η)
    assert fit_order(report.lrs, terms[:, 2])[0] == pytest.approx(1.0, abs=0.2)
    assert fit_order(report.lrs, terms[:, 3])[0] == pytest.approx(1.0, abs=0.2)
    assert abs(fit_order(report.lrs, terms[:, 0])[0]) < 0.2
    assert set(report.dominant) <= set(TERMS)
    assert report.dominant[0] == "noise shape"
    # the last two terms are the frozen and exact models' own errors' ingredients
    assert np.all(terms[:, 2] + terms[:, 3] >= report.errors["exact"] * 0.5)


def test_report_table_and_dicts(report):
    text = str(report)
    assert "fitted order in η" in text and "dominant" in text
    for name in report.noises:
        assert name in text
    rows = report.to_dicts()
    assert len(rows) == 6
    assert rows[0]["lr"] == pytest.approx(LO)
    assert rows[0]["error[exact]"] == report.errors["exact"][0]
    assert rows[0]["dominant"] in TERMS
    assert {f"term[{t}]" for t in TERMS} <= set(rows[0])


def test_replacement_has_no_finite_population_term(x64):
    prob = ld.LinearRegression.synthetic(jax.random.key(1), n=64, d=4)
    hp = ld.Hyper(lr=0.01, momentum=0.5, batch_size=8)
    rep = th.continuous_error(prob, hp, [0.01, 0.02, 0.04], noises=("paper", "exact"),
                              sampling="replacement")
    assert np.all(rep.terms[:, 1] == 0)
    assert np.all(rep.terms[:, [0, 2, 3]] > 0)


def test_quadratic_and_sme(x64):
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    prob = ld.Quadratic(Q @ np.diag([1.0, 0.5, 0.2, 0.1]) @ Q.T, 0.1 * np.eye(4))
    hp = ld.Hyper(lr=0.01, momentum=0.5)
    rep = th.continuous_error(prob, hp, np.geomspace(0.01, 0.1, 5), noises=("frozen", "exact"))
    np.testing.assert_allclose(rep.errors["frozen"], rep.errors["exact"], rtol=1e-12)
    assert rep.slopes["exact"] == pytest.approx(1.0, abs=0.1)
    assert np.all(rep.terms[:, [1, 3]] == 0)
    sme = th.continuous_error(prob, hp, np.geomspace(0.01, 0.1, 5), noises=("exact",),
                              model="sme")
    # the first-order model's θθ block is O(η) accurate; its velocity is not
    assert fit_order(sme.lrs, sme.errors_theta["exact"])[0] == pytest.approx(1.0, abs=0.15)
    assert sme.errors_v["exact"].min() > 0.5


def test_unstable_lrs_are_skipped(x64):
    prob = ld.LinearRegression.synthetic(jax.random.key(2), n=40, d=3, spectrum=(0.3, 1.0))
    hp = ld.Hyper(lr=0.1, momentum=0.5, batch_size=4)
    edge = th.stability(prob, hp)["max_lr"]
    lrs = [0.01, 0.02, 0.04, 1.2 * edge, 5.0]
    rep = th.continuous_error(prob, hp, lrs)
    np.testing.assert_array_equal(rep.stable, [True, True, True, False, False])
    assert "stability region" in rep.skipped[3]
    assert np.isnan(rep.errors["exact"][3]) and rep.dominant[4] is None
    assert np.isfinite(rep.slopes["exact"])
    assert "skipped" in str(rep)


def test_bad_input():
    prob = ld.LinearRegression.synthetic(jax.random.key(2), n=40, d=3)
    hp = ld.Hyper(lr=0.1, momentum=0.5, batch_size=4)
    with pytest.raises(ValueError, match="noise must be one of 'paper', 'frozen', 'isotropic'"):
        th.continuous_error(prob, hp, [0.1], noises=("paper", "langevin"))
    with pytest.raises(ValueError, match="noise-factor function"):
        th.continuous_error(prob, hp, [0.1], noises=(lambda t: np.eye(3),))
    with pytest.raises(ValueError, match="model must be one of 'langevin', 'sme'"):
        th.continuous_error(prob, hp, [0.1], model="overdamped")
    with pytest.raises(ValueError, match="lrs must all be > 0"):
        th.continuous_error(prob, hp, [0.1, 0.0])
    with pytest.raises(ValueError, match="sampling"):
        th.continuous_error(prob, hp, [0.1], sampling="reshuffle")
    with pytest.raises(TypeError, match="noises must be a tuple"):
        th.continuous_error(prob, hp, [0.1], noises="paper")
    with pytest.raises(TypeError, match="hp must be"):
        th.continuous_error(prob, 0.1, [0.1])


def test_continuous_model_without_stationary_law_gets_nan(monkeypatch, x64):
    import limitdyn.theory.approximation as approx

    prob = ld.LinearRegression.synthetic(jax.random.key(2), n=40, d=3)
    hp = ld.Hyper(lr=0.1, momentum=0.5, batch_size=4)
    real = approx._ct.continuous_stationary_cov

    def fake(prob, hp, noise="paper", **kw):
        if isinstance(noise, str) and noise == "exact" and hp.lr > 0.015:
            raise th.UnstableError("continuous exact model unstable")
        return real(prob, hp, noise, **kw)

    monkeypatch.setattr(approx._ct, "continuous_stationary_cov", fake)
    rep = th.continuous_error(prob, hp, [0.01, 0.02], noises=("frozen", "exact"))
    assert rep.stable.all()
    assert np.isfinite(rep.errors["exact"][0]) and np.isnan(rep.errors["exact"][1])
    assert np.isfinite(rep.errors["frozen"]).all()
