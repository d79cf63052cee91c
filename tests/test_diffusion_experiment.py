"""The ``diffusion`` experiment: a --quick run end to end, and its numerical helpers."""

import json

import jax
import numpy as np
import pytest

import limitdyn as ld
from limitdyn import theory as th
from limitdyn.cli import main
from limitdyn.config import ConfigError
from limitdyn.experiments import diffusion

VERDICTS = ("exponent_matches_exact_theory", "exponent_falls_with_p",
            "displacement_curve_matches_exact_theory", "local_displacement_matches_exact_theory")


def test_quick_run_passes_and_writes_report(tmp_path):
    out = tmp_path / "d"
    assert main(["run", "diffusion", "--quick", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == "diffusion" and summary["quick"] is True
    for name in VERDICTS:
        assert summary["verdicts"][name]["passed"], summary["verdicts"][name]
    assert summary["passed"] is True
    for name in ("report.md", "displacement.png", "exponents.png", "local_displacement.png",
                 "local_displacement_ratio.png", "data.npz"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "Fitted exponents" in report and "Local displacement" in report
    # the verdict says what it tests (the finite-d window slope) and shows 1/p beside it
    detail = summary["verdicts"]["exponent_matches_exact_theory"]["detail"]
    assert "finite-d" in detail and "asymptote 1/p = 0.500" in detail
    m = summary["metrics"]
    for p in summary["config"]["powers"]:
        lo, hi = m[f"exponent_mc_ci_low_p{p:g}"], m[f"exponent_mc_ci_high_p{p:g}"]
        assert lo < m[f"exponent_mc_p{p:g}"] < hi
        assert 0.2 < m[f"exponent_exact_window_p{p:g}"] < 0.8
    with np.load(out / "data.npz") as data:
        assert "diffusion/steps" in data.files
        assert data["diffusion/displacement_mc_p2"].shape == data["diffusion/steps"].shape


@pytest.mark.parametrize("assignment", ["powers=0.5,2", "fit_stop=100000", "sampling=reshuffle",
                                        "n=8", "sweep_momenta=1.0"])
def test_bad_configuration_is_a_usage_error(tmp_path, capsys, assignment):
    code = main(["run", "diffusion", "--quick", "--set", assignment, "--out",
                 str(tmp_path / "bad"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("limitdyn: configuration error:") and err.count("\n") == 1


def test_unstable_learning_rate_is_a_usage_error(tmp_path, capsys):
    code = main(["run", "diffusion", "--quick", "--set", "lr=50", "--out",
                 str(tmp_path / "bad"), "--quiet"])
    assert code == 2
    assert "stability" in capsys.readouterr().err


def test_unstable_sweep_point_is_a_config_error():
    prob = ld.LinearRegression.synthetic(jax.random.key(3), n=64, d=8, spectrum=("power", 2.0))
    # Noise-feedback radius 1.008 here: the theory refuses, the experiment says why.
    hp = ld.Hyper(lr=0.2, momentum=0.9, batch_size=2)
    with pytest.raises(th.UnstableError):
        th.discrete_stationary_cov(prob, hp)
    with pytest.raises(ConfigError, match="stability region"):
        diffusion._stationary_cov(prob, hp, "iid", "test")


def test_per_mode_model_matches_exact_discrete_theory():
    h = 2.0 * np.arange(1, 7, dtype=np.float64) ** -1.5
    prob = ld.Quadratic(np.diag(h), np.diag(0.01 * h))
    # The theory reads the float64 values given (not the float32 simulation leaves).
    h = np.diag(prob.H64.array)
    s2 = np.diag(prob.noise_covariance64())
    lr, beta, lam = 0.3, 0.6, 0.01
    hp = ld.Hyper(lr=lr, momentum=beta, weight_decay=lam)
    steps = np.array([1, 2, 5, 17, 60])
    ref = th.discrete_displacement(prob, hp, steps)
    ours = diffusion._per_mode_displacement(h, lr, beta, lam, s2, steps)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_slopes_match_polyfit():
    rng = np.random.default_rng(0)
    x = np.log(np.arange(3, 40, 4.0))
    y = rng.standard_normal((5, x.size)) + 0.4 * x
    want = [np.polyfit(x, row, 1)[0] for row in y]
    np.testing.assert_allclose(diffusion._slopes(x, y), want, rtol=1e-12)
