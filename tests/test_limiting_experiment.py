"""The ``limiting`` experiment through the CLI, and its configuration checks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from limitdyn.cli import main

FIGURES = ("displacement.png", "local_displacement.png", "exponents.png", "spirals.png",
           "spectra.png", "training.png", "network_sde.png")


def _exit_code_matches_verdicts(code, out):
    summary = json.loads((out / "summary.json").read_text())
    assert code == (0 if summary["passed"] else 1), summary["verdicts"]
    return summary


@pytest.mark.slow
def test_quick_run_passes_and_its_checkpoint_is_reused(quick_run, tmp_path):
    proc, out = quick_run("limiting")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for name in ("report.md", "summary.json", "data.npz", "checkpoint.npz", *FIGURES):
        assert os.path.isfile(out / name), name
    report = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in report
    assert "trained in this run" in report
    # the report flags where the quadratic model misses and states the spectral resolution
    assert "## Where the quadratic model disagrees with the measurement" in report
    assert "quadratic model vs measurement" in report and "**Resolution**" in report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdicts"]["local_displacement_within_tolerance"]["passed"]
    assert summary["metrics"]["n_diverged"] == 0
    # reuse the saved checkpoint (small sweep): the measurements at it are the same
    again = tmp_path / "again"
    code = main(["run", "limiting", "--quick", "--out", str(again), "--quiet",
                 "--set", f"checkpoint={out / 'checkpoint.npz'}", "--set", "n_steps=400",
                 "--set", "burn_in=150", "--set", "fit_stop=400", "--set", "sde_n_traj=0",
                 "--set", "sweep_lrs=0.01", "--set", "sweep_batch_sizes=32",
                 "--set", "sweep_momenta=0.9", "--set", "compare_sampling=iid"])
    _exit_code_matches_verdicts(code, again)
    assert f"loaded from {out / 'checkpoint.npz'}" in (again / "report.md").read_text()
    s2 = json.loads((again / "summary.json").read_text())
    assert s2["metrics"]["trace_sigma"] == pytest.approx(summary["metrics"]["trace_sigma"],
                                                         rel=1e-6)


@pytest.mark.parametrize("setting", ["sampling=replacement", "momentum=1.0", "n_traj=2",
                                     "sigma_samples=1", "sde_n_traj=1",
                                     "checkpoint=/nonexistent.npz", "top_k=100",
                                     "burn_in=100000", "model=resnet"])
def test_bad_config_is_rejected(tmp_path, setting):
    code = main(["run", "limiting", "--quick", "--out", str(tmp_path / "x"), "--quiet",
                 "--set", setting])
    assert code == 2


def test_spectral_peaks_are_reported_with_their_resolution():
    from limitdyn.experiments import limiting as exp

    dw = 0.01
    assert exp._peak_cell(0.0, dw, model=True) == "0 (overdamped)"
    assert exp._peak_cell(0.02, dw, ok=False) == "0.0200 (unresolved)"
    assert exp._peak_cell(0.05, dw) == "0.0500"
    assert exp._peak_agreement(0.015, 0.02, dw, ok=False).startswith("no peak in either")
    assert exp._peak_agreement(0.0, 0.04, dw, ok=False).startswith("no peak in either")
    assert exp._peak_agreement(0.05, 0.02, dw, ok=False).startswith("no measured peak")
    assert exp._peak_agreement(0.0, 0.05, dw).startswith("measured peak where the model")
    assert exp._peak_agreement(0.052, 0.05, dw) == "agree (within 1 bin)"
    assert exp._peak_agreement(0.08, 0.05, dw) == "differ by 3.0 bins"
    # a peak must sit above the two lowest bins and rise above them by 3 SE (value/√K)
    freqs = dw * np.arange(50)
    flat = np.ones(50)
    bump = flat + 2.0 * np.exp(-0.5 * ((freqs - 0.2) / 0.02) ** 2)
    assert not exp.peak_resolved(flat, freqs, 0.02, 64)          # the second bin
    assert not exp.peak_resolved(flat * (1 + 0.05 * (freqs == 0.06)), freqs, 0.06, 64)
    assert exp.peak_resolved(bump, freqs, 0.2, 64)
    assert not exp.peak_resolved(bump, freqs, 0.2, 1)


def test_model_flags_need_three_standard_errors():
    from limitdyn.experiments import limiting as exp

    assert exp._model_flag(1.02, 0.01, 1.0) == "agrees (within 3 SE)"
    assert exp._model_flag(1.84, 0.02, 0.5) == "Δ underpredicted 1.84×"
    assert exp._model_flag(0.5, 0.02, -4.0) == "Δ overpredicted 2×; c overpredicted (-4.0 SE)"
