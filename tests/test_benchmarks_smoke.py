"""B2 (benchmarks/sde_ou.py) runs at tiny sizes and writes a well-formed result.

Timings are never asserted (design.md): only the structure of the output.
"""

import json
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONTENDERS = {"limitdyn_em", "limitdyn_baoab", "limitdyn_exact", "limitdyn_sme_em",
              "diffrax_vmap_euler", "hand_em", "floor_no_rng"}


def test_sde_ou_quick(tmp_path, monkeypatch, capsys):
    out = tmp_path / "b2.json"
    monkeypatch.setattr(sys, "argv", ["sde_ou.py", "--quick", "--out", str(out)])
    runpy.run_path(str(ROOT / "benchmarks" / "sde_ou.py"), run_name="__main__")
    assert "| limitdyn_em |" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["results"]) == CONTENDERS
    for row in result["results"].values():
        assert row["run_seconds"] > 0 and row["compile_seconds"] >= 0
        assert row["traj_steps_per_second"] > 0
    assert result["results"]["diffrax_vmap_euler"]["solver_steps"] == result["params"]["steps"]
    assert "diffrax_vmap_euler / limitdyn_em" in result["ratios"]
    env = result["environment"]
    assert env["prng_impl"] and env["jax_default_prng_impl"] and "versions" in env
