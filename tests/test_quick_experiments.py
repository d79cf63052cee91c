"""``limitdyn run NAME --quick`` exits 0 — every verdict holds — for every experiment and on
two seeds: a quick run's tolerances come from its own standard errors or its sizes meet
the default tolerances (issue 22), so a correct code passes whatever the seed."""

import json

import pytest

from limitdyn import experiments

NAMES = sorted(experiments.REGISTRY)


def test_every_experiment_is_covered():
    assert set(NAMES) == {"validate", "diffusion", "phase-diagram", "sharpness", "ml-noise",
                          "limiting"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", NAMES)
def test_quick_run_exits_0(name, seed, quick_run):
    proc, out = quick_run(name, seed)
    summary = json.loads((out / "summary.json").read_text())
    failed = {k: v["detail"] for k, v in summary["verdicts"].items() if not v["passed"]}
    assert proc.returncode == 0, (failed, proc.stderr[-2000:])
    assert summary["passed"] is True and summary["seed"] == seed
