"""Benchmark scripts run at tiny sizes (examples: tests/test_examples.py; CLI: test_cli.py)."""

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,args", [
    ("benchmarks/sgd_linreg.py", ["--quick", "--out", "{tmp}/b1.json"]),
    ("benchmarks/short_call.py", ["--quick", "--out", "{tmp}/b12.json"]),
    ("benchmarks/gpu.py", ["--quick", "--out", "{tmp}/b13.json"]),
    pytest.param("benchmarks/validate_wall.py",
                 ["--quick", "--rounds", "1", "--rev", "HEAD", "--out", "{tmp}/b11.json"],
                 marks=pytest.mark.slow),
])
def test_scripts_run(script, args, tmp_path, monkeypatch, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(ROOT / script), run_name="__main__")
    assert capsys.readouterr().out
