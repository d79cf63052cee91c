"""``limitdyn run phase-diagram --quick`` end to end, its helpers and its input checks."""

import json

import numpy as np
import pytest

from limitdyn.cli import main
from limitdyn.experiments import phase_diagram


def test_quick_run_writes_phase_diagram(tmp_path):
    out = tmp_path / "pd"
    code = main(["run", "phase-diagram", "--quick", "--out", str(out), "--quiet"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == "phase-diagram"
    assert code == 0, {k: v["detail"] for k, v in summary["verdicts"].items() if not v["passed"]}
    for name in ("report.md", "phase_diagram.png", "trajectories.png", "sharpness_reduction.png",
                 "data.npz"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "phase_diagram.png" in report and "Critical learning rates" in report
    assert "uv model (exact theory)" in report
    assert "The sharpness-reduction phase against d/w" in report
    assert "Published reference values" in report and "3.25" in report
    for v in ("uv_large_width_thresholds", "uv_sharpness_catapult_from_2.5",
              "uv_small_width_sharpness_falls_at_c1", "sharpness_reduction_grows_with_d_over_w",
              "c_loss_grows_with_inverse_width"):
        assert summary["verdicts"][v]["passed"], summary["verdicts"][v]
    # quick: depth 2 only, nothing diverges below c = 32 -> c_max censored everywhere: the
    # ordering is not tested (no verdict), and the report says so; c_max is a bound
    assert "ordering_c_loss_c_sharp_c_max" not in summary["verdicts"]
    assert "Ordering c_loss ≤ c_sharp ≤ c_max: not tested" in report
    assert "≥ 32" in report
    m = summary["metrics"]
    assert m["n_seeds_c_max_censored"] == 4
    assert m["sharpness_ratio_c1_w32_d2"] < m["sharpness_ratio_c1_w128_d2"] < 1
    with np.load(out / "data.npz") as data:
        assert data["w32_d2/loss"].shape == (2, 11, 11)
        assert data["w32_d2/sharpness"].shape == (2, 11, 11)


def test_c_grid():
    np.testing.assert_allclose(phase_diagram.c_grid(0.5, 2.0), [1, 2 ** 0.5, 2, 2 ** 1.5, 4])


@pytest.mark.parametrize("assignment", ["widths=0,8", "depths=0", "model=resnet",
                                        "dataset=cifar", "dx=0", "x_max=-1", "momentum=1",
                                        "parametrisation=foo"])
def test_bad_configuration_is_a_usage_error(tmp_path, capsys, assignment):
    code = main(["run", "phase-diagram", "--quick", "--set", assignment, "--out",
                 str(tmp_path / "bad"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("limitdyn: configuration error:") and err.count("\n") == 1


def _th(c_loss, c_sharp, c_max, above=False, below=False):
    from limitdyn.nn.train import Thresholds

    arr = lambda v: np.array([v], float)  # noqa: E731
    return Thresholds(c_loss=arr(c_loss), c_sharp=arr(c_sharp), c_barrier=arr(np.nan),
                      c_max=arr(c_max), n_diverged=np.array([0]),
                      max_below_grid=np.array([below]), max_above_grid=np.array([above]))


@pytest.mark.parametrize(("th", "chain", "pair"), [
    (_th(2.0, 4.0, 8.0), "holds", "holds"),
    (_th(4.0, 2.0, 8.0), "violated", "inverted"),
    (_th(2.0, np.nan, 8.0), "holds", "holds"),            # c_sharp > c_max >= c_loss
    (_th(np.nan, 4.0, 8.0), "violated", "inverted"),      # c_loss > c_max >= c_sharp
    (_th(np.nan, np.nan, 8.0), "holds", "unresolved"),    # straight to divergence
    (_th(32.0, 22.6, 32.0, above=True), "censored", "inverted"),
    (_th(2.0, 4.0, 32.0, above=True), "censored", "holds"),
    (_th(np.nan, np.nan, np.nan, below=True), "untestable", "unresolved"),
])
def test_order_status_treats_censored_values_as_bounds(th, chain, pair):
    cs = phase_diagram.c_grid(0.5, 5.0)
    v = phase_diagram.seed_values(th, cs, 0)
    assert phase_diagram.order_status(v) == (chain, pair)


def test_seed_values_and_bounds_in_the_tables():
    cs = phase_diagram.c_grid(0.5, 5.0)
    v = phase_diagram.seed_values(_th(np.nan, 4.0, 32.0, above=True), cs, 0)
    assert v["c_max"] == ("≥", 32.0) and v["c_loss"] == (">", 32.0)
    assert v["c_barrier"] == (">", 32.0) and v["c_sharp"] == ("=", 4.0)
    # a bound is never averaged in: the summary keeps it apart
    s = phase_diagram._summary([("=", 2.0), ("=", 4.0), (">", 22.6)])
    assert s.startswith("3 ± 1 [2, 4]") and "(2/3; 1 > 22.6)" in s
    assert phase_diagram._summary([("≥", 32.0)] * 3) == "≥ 32 (all 3)"
    assert phase_diagram._lower_mean([("=", 2.0), (">", 4.0)]) == (3.0, True)
    assert phase_diagram._upper_mean([("=", 2.0), (">", 4.0)]) == np.inf
