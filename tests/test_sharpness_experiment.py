"""``limitdyn run sharpness --quick`` end to end and the regime classifier."""

import json

import numpy as np

from limitdyn.cli import main
from limitdyn.experiments import sharpness


def test_quick_run_writes_regime_figure(tmp_path):
    out = tmp_path / "sh"
    code = main(["run", "sharpness", "--quick", "--out", str(out), "--quiet"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, {k: v["detail"] for k, v in summary["verdicts"].items() if not v["passed"]}
    assert summary["experiment"] == "sharpness"
    for name in ("report.md", "regimes.png", "data.npz"):
        assert (out / name).is_file(), name
    assert "Regimes" in (out / "report.md").read_text()
    # the early transient is measured at every step up to early_steps, then every 20 steps
    with np.load(out / "data.npz") as data:
        steps = data["beta0_c5/steps"]
    early = summary["config"]["early_steps"]
    assert np.array_equal(steps[:early + 1], np.arange(early + 1))
    assert np.all(np.diff(steps[early:]) == summary["config"]["measure_every"])


def test_a_catapult_above_the_threshold_is_transient_not_edge():
    # λᴴ starts 2.5× above 2/η, falls below it within a few steps, plateaus, and comes back
    # up to the threshold late: only the late part is the edge of stability.
    steps = np.concatenate([np.arange(0, 41), np.arange(60, 2001, 20)])
    t = np.maximum(steps, 1.0)
    eta = 1.0
    lam = np.where(t <= 10, 5.0 * t ** -0.5, 1.2)
    lam = np.where(t > 300, np.minimum(1.2 * (t / 300) ** 0.4, 2.0), lam)
    names = [sharpness.REGIMES[i] for i in sharpness.classify_regimes(steps, lam, eta)]
    assert set(names[:4]) == {"early transient"}          # λᴴη up to 5 > 2: a catapult
    assert names[np.searchsorted(steps, 100)] == "intermediate saturation"
    assert names[-1] == "edge of stability"


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
