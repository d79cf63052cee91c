"""The command line: experiments, outputs, and every class of usage error (exit code 2)."""

import argparse
import json

import numpy as np
import pytest

from limitdyn import cli, experiments
from limitdyn.config import ConfigError


def _main(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_and_help(capsys):
    code, out, _ = _main(capsys, "list")
    assert code == 0 and "validate" in out and "diffusion" in out
    for argv in (["--help"], ["run", "--help"], ["show", "--help"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 0
        assert "usage" in capsys.readouterr().out


def test_quick_validate_verdicts(quick_validate):
    run, out = quick_validate
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True
    verdicts = summary["verdicts"]
    assert verdicts["sgd_matches_discrete_theory"]["passed"]      # MC agrees with theory
    assert verdicts["continuous_error_is_first_order"]["passed"]
    assert 0.8 <= summary["metrics"]["continuous_error_slope_exact"] <= 1.2
    assert verdicts["exact_noise_beats_paper"]["passed"]
    env = summary["environment"]
    assert {"jax", "jaxlib", "diffrax", "optax", "flax", "limitdyn"} <= set(env["versions"])
    assert env["prng_impl"] and "x64" in env and "backend" in env
    assert summary["timings"]["compile_seconds"] > 0
    for name in ("report.md", "data.npz", "mean_trajectory.png", "displacement.png",
                 "phase_space.png", "error_vs_lr.png"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "![" in report and "phase_space.png" in report and "## Verdicts" in report
    with np.load(out / "data.npz") as data:
        assert "sgd_iid/stationary_cov" in data.files and "theory/approx_lrs" in data.files
    assert not any(".tmp-" in p.name for p in out.iterdir())              # no temp file left
    assert not (out / "checkpoints").exists() and (out / "COMPLETE").is_file()
    assert json.loads((out / "run.json").read_text())["config"] == summary["config"]


def test_show_and_refusal_to_overwrite(quick_validate, capsys):
    _, out = quick_validate
    code, text, _ = _main(capsys, "show", str(out))
    assert code == 0 and "PASS" in text and "sgd_matches_discrete_theory" in text
    code, _, err = _main(capsys, "run", "validate", "--quick", "--out", str(out))
    assert code == 2 and "not empty" in err and "--overwrite" in err


@pytest.mark.parametrize("argv,message", [
    (["run", "nonsense"], "unknown experiment"),
    (["run", "validate", "--set", "bogus=1"], "unknown configuration key 'bogus'"),
    (["run", "validate", "--set", "n_traj=abc"], "n_traj must be an integer"),
    (["run", "validate", "--set", "lr=nan"], "lr must be a finite number"),
    (["run", "validate", "--set", "n_traj=10"], "n_traj must be >= 64"),
    (["run", "validate", "--set", "noequals"], "--set expects key=value"),
    (["run", "validate", "--set", "data=/nonexistent/x.npz"], "data file not found"),
    (["run", "validate", "--config", "/nonexistent.toml"], "config file not found"),
    (["run", "validate", "--seed", "x"], "invalid int value"),
    (["run"], "name an experiment"),
    (["frobnicate"], "invalid choice"),
    (["show", "/nonexistent-dir"], "is not a directory"),
])
def test_usage_errors_exit_2_with_one_line(argv, message, capsys, tmp_path):
    code, _, err = _main(capsys, *argv, *(["--out", str(tmp_path / "o")]
                                         if argv[0] == "run" and len(argv) > 1 else []))
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_malformed_toml_and_bad_values(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("n_traj = [1, 2\n")
    code, _, err = _main(capsys, "run", "validate", "--config", str(bad))
    assert code == 2 and "malformed TOML" in err
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[validate]\nn_traj = "many"\n')
    code, _, err = _main(capsys, "run", "validate", "--config", str(wrong))
    assert code == 2 and "n_traj must be an integer" in err
    lr = tmp_path / "lr.toml"
    lr.write_text("lr = 100.0\n")
    code, _, err = _main(capsys, "run", "validate", "--config", str(lr), "--quick", "--out",
                         str(tmp_path / "o"))
    assert code == 2 and "stability region" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    (tmp_path / "notarun").mkdir()
    code, _, err = _main(capsys, "show", str(tmp_path / "notarun"))
    assert code == 2 and "not a limitdyn run directory" in err


def test_config_layers_defaults_quick_toml_set(tmp_path):
    exp = experiments.REGISTRY["validate"]
    toml = tmp_path / "c.toml"
    toml.write_text('[validate]\nlr = 0.05\nspectrum = [0.2, 2.0]\ndata = ""\n')
    args = argparse.Namespace(quick=True, config=str(toml), set=["n_traj=128", "momentum=0.5"])
    cfg = cli.build_config(exp, args)
    assert cfg.n_traj == 128 and cfg.lr == 0.05 and cfg.momentum == 0.5
    assert cfg.spectrum == (0.2, 2.0) and cfg.d == exp.quick["d"]
    with pytest.raises(ConfigError, match="spectrum must be"):
        cli.build_config(exp, argparse.Namespace(quick=False, config=None,
                                                 set=["spectrum=2,1"]))


def test_validate_on_user_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(128, 4))
    y = X @ np.array([1.0, -0.5, 0.2, 0.0]) + 0.3 * rng.normal(size=128)
    np.savez(tmp_path / "mine.npz", X=X, y=y)
    np.savez(tmp_path / "broken.npz", X=X)
    code, _, err = _main(capsys, "run", "validate", "--quick", "--set",
                         f"data={tmp_path / 'broken.npz'}", "--out", str(tmp_path / "b"))
    assert code == 2 and "must hold arrays 'X' and 'y'" in err
    code, _, err = _main(capsys, "run", "validate", "--quiet", "--out", str(tmp_path / "r"),
                         "--set", f"data={tmp_path / 'mine.npz'}", "--set", "n_traj=512",
                         "--set", "sde_n_traj=256", "--set", "n_steps=400",
                         "--set", "sde_n_steps=300", "--set", "transient_steps=60",
                         "--set", "n_lrs=4", "--set", "lr=0.2")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["config"]["data"].endswith("mine.npz")
    assert summary["verdicts"]["sgd_matches_discrete_theory"]["passed"], summary["verdicts"]
    assert code == (0 if summary["passed"] else 1), err
