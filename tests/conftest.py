import jax
import pytest

# Catch accidental broadcasting between arrays of different rank (diffrax/equinox habit).
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run a test in float64 (for the deterministic, to-roundoff comparisons)."""
    with jax.enable_x64(True):
        yield
