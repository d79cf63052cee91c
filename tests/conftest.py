import logging
import os
import subprocess
import sys

import jax
import pytest

from limitdyn import runner

# The suite runs on one CPU device on purpose (exact comparisons within one process);
# the once-per-process hint to use every core is for users.
os.environ.setdefault("LIMITDYN_NO_DEVICE_WARNING", "1")

# Catch accidental broadcasting between arrays of different rank (diffrax/equinox habit).
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run a test in float64 (for the deterministic, to-roundoff comparisons)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def no_compilation(caplog):
    """Fail if anything is compiled inside the test (bad input must be caught before)."""
    before = len(runner._COMPILED)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        caplog.clear()
        yield
        assert not [r for r in caplog.records if "ompil" in r.getMessage()]
    assert len(runner._COMPILED) == before


@pytest.fixture(scope="session")
def quick_validate(tmp_path_factory):
    """`limitdyn run validate --quick` through the console entry point, in a subprocess
    (shared: the CLI tests read it and the resume test compares a killed run with it)."""
    out = tmp_path_factory.mktemp("runs") / "validate"
    run = subprocess.run([sys.executable, "-m", "limitdyn.cli", "run", "validate", "--quick",
                          "--out", str(out), "--quiet"], capture_output=True, text=True,
                         timeout=600)
    return run, out


_QUICK_RUNS: dict = {}


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(name, seed=0)``: ``limitdyn run NAME --quick --seed SEED`` in a
    subprocess, once per session (the experiment tests, the two-seed check and the
    kill/resume tests share it): (CompletedProcess, out)."""
    def run(name, seed=0):
        if (name, seed) not in _QUICK_RUNS:
            out = tmp_path_factory.mktemp("quick") / f"{name}-{seed}"
            proc = subprocess.run([sys.executable, "-m", "limitdyn.cli", "run", name, "--quick",
                                   "--seed", str(seed), "--out", str(out), "--quiet"],
                                  capture_output=True, text=True, timeout=900)
            _QUICK_RUNS[name, seed] = (proc, out)
        return _QUICK_RUNS[name, seed]
    return run
