"""Fuzzed bad input: the public API raises ValueError/TypeError with a one-line message
before compiling anything; the CLI exits 2 with one line on stderr. Never a traceback
from inside JAX, never a hang (hypothesis deadlines bound every case)."""

import math

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import limitdyn as ld
from limitdyn import cli

PROB = ld.LinearRegression.synthetic(jax.random.key(0), n=32, d=3)
HP = ld.Hyper(lr=0.1, momentum=0.9, batch_size=8)
KEY = jax.random.key(1)
FUZZ = settings(max_examples=120, deadline=3000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

BAD_SCALARS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1, -1e300, 0, 1e300, 2**63, -0.5]),
    st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=3),
    st.complex_numbers(allow_nan=False, max_magnitude=10).filter(lambda z: z.imag != 0),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.just(object()))
BAD_ARRAYS = st.one_of(
    st.sampled_from([np.full(3, np.nan), np.full(3, np.inf), np.zeros(4), np.zeros((2, 2)),
                     np.zeros((5, 3)), np.array(["a", "b", "c"]), np.zeros(0), np.zeros((1, 1, 3)),
                     np.array([1 + 1j, 0, 0])]),
    st.text(max_size=3), st.just(object()))


def _is_clean(err: Exception) -> bool:
    """A ValueError/TypeError raised by limitdyn itself, with a one-line message."""
    tb = err.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    raised_by = frames[-1] if frames else ""
    return ("\n" not in str(err) and str(err) != "" and "/jax/" not in raised_by
            and "/jaxlib/" not in raised_by)


def _expect_clean_error(fn):
    with pytest.raises((ValueError, TypeError)) as exc:
        fn()
    assert _is_clean(exc.value), f"{type(exc.value).__name__}: {exc.value}"


@FUZZ
@given(name=st.sampled_from(["n_traj", "n_steps", "burn_in", "n_record", "n_groups",
                             "n_chunks", "window_every", "sampling", "record", "progress"]),
       value=BAD_SCALARS)
def test_simulate_sgd_scalar_arguments(name, value):
    if name == "burn_in" and isinstance(value, int) and 0 <= value <= 10:
        return                                   # a valid burn-in
    if value is None and name in ("progress", "window_every", "n_chunks", "burn_in", "n_groups"):
        return                                   # None means the default
    if name in ("window_every", "n_chunks") and value in (1e300, 2**63):
        return                                   # huge but valid (integral)
    kwargs = {"n_traj": 8, "n_steps": 10, name: value}
    _expect_clean_error(lambda: ld.simulate_sgd(PROB, HP, KEY, **kwargs))


@FUZZ
@given(name=st.sampled_from(["theta0", "v0"]), value=BAD_ARRAYS)
def test_simulate_sgd_start_arrays(name, value):
    _expect_clean_error(lambda: ld.simulate_sgd(PROB, HP, KEY, 8, 10, **{name: value}))


@FUZZ
@given(name=st.sampled_from(["lr", "momentum", "weight_decay", "batch_size"]),
       value=BAD_SCALARS)
def test_hyper_fields(name, value):
    real = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)
    valid = {"lr": real and value > 0, "momentum": real and 0 <= value < 1,
             "weight_decay": real and value >= 0,
             "batch_size": value is None or (real and float(value).is_integer()
                                             and value >= 1)}[name]
    if valid:
        return
    _expect_clean_error(lambda: ld.Hyper(**{"lr": 0.1, name: value}))


@FUZZ
@given(name=st.sampled_from(["noise", "solver", "model", "dt", "sampling", "sigma2",
                             "diffrax_solver"]), value=BAD_SCALARS)
def test_simulate_sde_arguments(name, value):
    if value is None and name in ("dt", "sigma2", "diffrax_solver"):
        return                                   # None means the default
    if name == "sigma2" and value in (0, 1e300, 2**63):
        return                                   # a (possibly silly) valid noise level
    if name == "sigma2":
        kwargs = {"noise": "paper", "sigma2": value}
    elif name == "diffrax_solver":
        kwargs = {"solver": "diffrax", "diffrax_solver": value}
    else:
        kwargs = {name: value}
    _expect_clean_error(lambda: ld.simulate_sde(PROB, HP, KEY, 8, 10, **kwargs))


@FUZZ
@given(X=BAD_ARRAYS, y_kind=st.sampled_from(["ok", "short", "nan", "2d"]))
def test_problem_constructors(X, y_kind):
    y = {"ok": np.zeros(3), "short": np.zeros(1), "nan": np.full(3, np.nan),
         "2d": np.zeros((3, 1))}[y_kind]
    _expect_clean_error(lambda: ld.LinearRegression(X, y))
    _expect_clean_error(lambda: ld.Quadratic(X, np.eye(3)))


@FUZZ
@given(key=st.sampled_from(["n_traj", "lr", "momentum", "spectrum", "data", "n_lrs", "d",
                            "bogus", "", "batch_size", "lr_span"]),
       value=st.one_of(st.sampled_from(["nan", "inf", "-1", "0", "abc", "1e999", "", "1,2,3",
                                        "true", "[1]", "/no/such/file.npz"]),
                       st.text(max_size=6)))
def test_cli_set_values(key, value, capsys, tmp_path):
    argv = ["run", "validate", "--quick", "--out", str(tmp_path / "o"), "--set",
            f"{key}={value}"]
    code = cli.main([*argv, "--set", "lr=-1"])   # invalid even when the fuzzed value is not
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and "Traceback" not in err


@FUZZ
@given(text=st.text(max_size=40))
def test_cli_toml_files(text, capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(text + "\nlr = -1.0\n")     # invalid even when the rest parses
    code = cli.main(["run", "validate", "--quick", "--config", str(path), "--out",
                     str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2, (text, err)
    assert err.count("\n") == 1 and "Traceback" not in err


JUNK = st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode),
                 st.sampled_from([b"{}", b"[]", b'{"sha256": {"x": "y"}}', b'{"sha256": 3}',
                                  b'{"experiment": "validate"}', b"null"]))


@FUZZ
@given(files=st.dictionaries(st.sampled_from(["run.json", "COMPLETE", "summary.json",
                                              "checkpoints/run-000.npz"]), JUNK, min_size=1))
def test_cli_show_and_resume_of_damaged_run_directories(files, capsys, tmp_path):
    """Garbage in a run directory's metadata: `show` says partial (1) or corrupt/not a run
    (2), `run --resume` refuses with exit 2 — one line, never a traceback."""
    import shutil

    root = tmp_path / "damaged"
    shutil.rmtree(root, ignore_errors=True)
    (root / "checkpoints").mkdir(parents=True)
    for name, content in files.items():
        (root / name).write_bytes(content)
    code = cli.main(["show", str(root)])
    out, err = capsys.readouterr()
    assert code in (1, 2) and "Traceback" not in out + err
    code = cli.main(["run", "--resume", str(root), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
