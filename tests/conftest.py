import logging

import jax
import pytest

from limitdyn import runner

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
