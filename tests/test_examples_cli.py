"""Every example and the CLI run with tiny arguments (numpyro habit)."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,args", [
    ("examples/quickstart.py", ["--n-traj", "64", "--n-steps", "100"]),
    ("examples/continuous_vs_discrete.py", ["--n-traj", "64", "--n-steps", "100"]),
    ("benchmarks/sgd_linreg.py", ["--quick", "--out", "{tmp}/b1.json"]),
])
def test_scripts_run(script, args, tmp_path, monkeypatch, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(ROOT / script), run_name="__main__")
    assert capsys.readouterr().out


def test_cli_list_and_quick_validate(tmp_path):
    out = subprocess.run([sys.executable, "-m", "limitdyn.cli", "list"], capture_output=True,
                         text=True, check=True)
    assert "validate" in out.stdout
    run = subprocess.run([sys.executable, "-m", "limitdyn.cli", "run", "validate", "--quick",
                          "--n-traj", "512", "--out", str(tmp_path), "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] is True
    assert set(summary["tables"]) == {"stationary_iid", "stationary_replacement", "transient_iid"}


def test_cli_bad_usage_exits_2():
    bad = subprocess.run([sys.executable, "-m", "limitdyn.cli", "run", "nonsense"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown experiment" in bad.stderr
    assert "Traceback" not in bad.stderr
