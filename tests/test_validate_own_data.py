"""``limitdyn run validate`` on real data with no other setting: scikit-learn's diabetes
regression (N = 442, d = 10, Hessian condition number ≈ 470). The learning rate comes
from the top curvature and the run length from the slowest relaxation time; a budget too
short for stationarity is compared with the theory averaged over the same window."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

import limitdyn as ld
from limitdyn.cli import main


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    X, y = load_diabetes(return_X_y=True)
    path = tmp_path_factory.mktemp("data") / "diabetes.npz"
    np.savez(path, X=X, y=y)
    return path


def test_suggested_run_reaches_stationarity_of_the_slowest_mode(diabetes):
    with np.load(diabetes) as f:
        prob = ld.LinearRegression(f["X"], f["y"])
    plan = ld.suggest_run(prob)
    h = np.linalg.eigvalsh(ld.problems.hessian64(prob))
    assert plan.hp.lr == pytest.approx(0.1 / h[-1])
    assert plan.stationary and plan.burn_in >= 6 * plan.tau_max
    # the slowest relaxation is the flattest mode's, by far (condition number ~470)
    assert plan.relaxation_steps[0] == plan.tau_max > 10 * plan.relaxation_steps[-1]
    # at a learning rate a hundred times smaller the budget cannot reach stationarity
    small = ld.suggest_run(prob, plan.hp.replace(lr=plan.hp.lr / 100), max_steps=20_000)
    assert not small.stationary and small.n_steps == 20_000


def test_validate_on_diabetes_passes_with_a_short_budget(diabetes, tmp_path):
    out = tmp_path / "diabetes"
    code = main(["run", "validate", "--quick", "--quiet", "--out", str(out),
                 "--set", f"data={diabetes}", "--set", "n_traj=256", "--set", "sde_n_traj=128",
                 "--set", "max_steps=3000", "--set", "sde_max_steps=600",
                 "--set", "transient_steps=100"])
    summary = json.loads((out / "summary.json").read_text())
    failed = {k: v["detail"] for k, v in summary["verdicts"].items() if not v["passed"]}
    assert code == 0, failed
    report = (out / "report.md").read_text()
    assert "relaxation time of the mean, slowest mode" in report
    assert "averaged over the same window from the same start" in report
    assert summary["metrics"]["stationary"] is False
