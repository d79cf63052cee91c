"""``limitdyn run sharpness --quick`` end to end and the regime classifier."""

import json

import numpy as np

from limitdyn.cli import main
from limitdyn.experiments import sharpness


def test_quick_run_writes_regime_figure(tmp_path):
    out = tmp_path / "sh"
    code = main(["run", "sharpness", "--quick", "--out", str(out), "--quiet"])
    assert code in (0, 1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == "sharpness"
    for name in ("report.md", "regimes.png", "data.npz"):
        assert (out / name).is_file(), name
    assert "Regimes" in (out / "report.md").read_text()


def test_classifier_on_constructed_curve():
    # Fall (transient), plateau, rise, then pinned at 2/η: each regime where it was built.
    steps = np.concatenate([[0], np.unique(np.round(np.geomspace(1, 10000, 60)))])
    t = np.maximum(steps, 1.0)
    lam = np.where(t < 10, 4.0 / t ** 0.5, 4.0 / 10 ** 0.5)
    lam = np.where(t > 100, lam[t < 10 ** 2].min() * (t / 100) ** 0.5, lam)
    eta = 2.0 / (lam[t <= 1000].max() * 1.0)
    lam = np.minimum(lam, 2.0 / eta)
    lab = sharpness.classify_regimes(steps, lam, eta)
    names = [sharpness.REGIMES[i] for i in lab]
    assert names[0] == "early transient" and names[3] == "early transient"
    assert names[np.searchsorted(steps, 40)] == "intermediate saturation"
    assert names[np.searchsorted(steps, 300)] == "progressive sharpening"
    assert names[-1] == "edge of stability"
    # With momentum the threshold is (2 + 2β)/η: the same curve never reaches it.
    lab_m = sharpness.classify_regimes(steps, lam, eta, beta=0.9)
    assert 3 not in lab_m
    segs = sharpness.segments(steps, lab)
    assert [s[2] for s in segs] == list(sharpness.REGIMES)
