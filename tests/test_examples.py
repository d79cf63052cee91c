"""Every script in examples/ runs with tiny arguments and prints a result.

New scripts are picked up by the glob; each needs an entry in TINY (its small-size
arguments), otherwise its test fails.
"""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))

# Arguments that make each script finish in a few seconds; "{tmp}" is the test's tmp_path.
TINY = {
    "quickstart.py": ["--n-traj", "64", "--n-steps", "100"],
    "continuous_vs_discrete.py": ["--n-traj", "64", "--n-steps", "100"],
    "noise_models.py": ["--n-traj", "32", "--n-steps", "50"],
    "displacement.py": ["--n-traj", "32", "--n-steps", "60", "--dim", "16",
                        "--plot", "{tmp}/displacement.png"],
    "sweep_no_recompile.py": ["--n-traj", "32", "--n-steps", "50", "--lrs", "0.05", "0.2"],
    "long_runs.py": ["--n-traj", "64", "--n-steps", "200", "--dir", "{tmp}"],
    "own_problem.py": ["--n-traj", "32", "--n-steps", "100"],
}


def test_examples_found():
    assert len(SCRIPTS) >= 3
    assert not set(TINY) - set(SCRIPTS), "TINY names scripts that no longer exist"


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs(name, tmp_path, monkeypatch, capsys):
    if name not in TINY:
        pytest.fail(f"examples/{name} has no entry in TINY (tests/test_examples.py): add the "
                    "arguments that make it run in a few seconds")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in TINY[name]]
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *argv])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) >= 2, out
    if "--plot" in argv:
        assert Path(argv[argv.index("--plot") + 1]).stat().st_size > 0
    for line in EXPECTED.get(name, ()):
        assert line in out, out


# What a script must print (a demonstration that silently skips its point is a defect).
EXPECTED = {
    "long_runs.py": ["crashed at step", "resumed run equals the uninterrupted one bit for bit: "
                     "True"],
}
