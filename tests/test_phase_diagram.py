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
    assert code in (0, 1) and summary["experiment"] == "phase-diagram"
    for name in ("report.md", "phase_diagram.png", "trajectories.png", "data.npz"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "phase_diagram.png" in report and "Critical learning rates" in report
    assert "uv model (exact theory)" in report
    for v in ("uv_large_width_thresholds", "uv_sharpness_catapult_from_2.5",
              "uv_small_width_sharpness_falls_at_c1"):
        assert summary["verdicts"][v]["passed"], summary["verdicts"][v]
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
