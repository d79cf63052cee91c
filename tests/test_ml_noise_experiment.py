"""The ``ml-noise`` experiment end to end through the CLI."""

import json

import pytest

from limitdyn.cli import main

FIGURES = ("selection.png", "exponents.png", "convergence.png", "loss_law.png",
           "curvature.png", "regression.png")


def _check_outputs(out):
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == "ml-noise"
    for name in ("report.md", "data.npz", *FIGURES):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "Selection exponents" in report and "Stationary law of L" in report
    assert "Which minima each model selects" in report
    return summary


def test_tiny_run_writes_report(tmp_path):
    out = tmp_path / "tiny"
    code = main(["run", "ml-noise", "--quick", "--quiet", "--out", str(out),
                 "--set", "ks=8", "--set", "temperatures=0.5,1", "--set", "n_paths=64",
                 "--set", "horizon=3", "--set", "burn_in=1", "--set", "homogeneous_horizon=6",
                 "--set", "homogeneous_burn_in=2", "--set", "reg_paths=32",
                 "--set", "reg_steps=100", "--set", "curvature_horizon=3",
                 "--set", "n_boot=100"])
    summary = _check_outputs(out)
    # tiny sizes: the verdicts are not the point here, but the exit code must say them
    assert code == (0 if summary["passed"] else 1), summary["verdicts"]
    assert set(summary["verdicts"]) >= {"homogeneous_exponents", "ml_exponents_T_le_0.5",
                                        "t1_dt_convergence", "ml_loss_law"}
    m = summary["metrics"]
    assert m["exponent_ci_low_ml_k8_T0.5"] < m["exponent_ml_k8_T0.5"] < m[
        "exponent_ci_high_ml_k8_T0.5"]


@pytest.mark.slow
def test_quick_run_passes(quick_run):
    proc, out = quick_run("ml-noise")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = _check_outputs(out)
    assert summary["passed"] is True and summary["quick"] is True
    assert (out / "collapse.png").is_file()


@pytest.mark.parametrize("assignment", ["ks=2", "temperatures=0", "dt=1", "burn_in=100",
                                        "increments=sobol", "reg_batch=16", "alpha=0.9"])
def test_bad_configuration_is_a_usage_error(tmp_path, capsys, assignment):
    code = main(["run", "ml-noise", "--quick", "--set", assignment, "--out",
                 str(tmp_path / "bad"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("limitdyn: configuration error:") and err.count("\n") == 1
