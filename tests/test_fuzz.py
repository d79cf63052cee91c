"""Fuzzed bad input: the public API raises ValueError/TypeError with a one-line message
before compiling anything; the CLI exits 2 with one line on stderr. Never a traceback
from inside JAX, never a hang (hypothesis deadlines bound every case; the cases that touch
files also run under a hard SIGALRM deadline), and nothing of the user's lost: run
directories with any name, binary and deeply nested TOML, oversize requests, damaged
checkpoints, several writers at once."""

import fnmatch
import hashlib
import math
import os
import threading
import warnings

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import limitdyn as ld
from limitdyn import checkpoint as ckpt
from limitdyn import cli, io

from ._guards import deadline, one_line

PROB = ld.LinearRegression.synthetic(jax.random.key(0), n=32, d=3)
HP = ld.Hyper(lr=0.1, momentum=0.9, batch_size=8)
KEY = jax.random.key(1)
FUZZ = settings(max_examples=120, deadline=3000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
FILES = settings(FUZZ, max_examples=60, deadline=10000)

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


@FILES
@given(content=st.one_of(
    st.binary(max_size=60),                                       # any bytes: bad encodings
    st.integers(1, 3000).map(lambda k: ("x = " + "[" * k + "]" * k).encode()),  # deep
    st.integers(0, 2000).map(lambda k: b"n_traj = " + b"9" * k),  # huge integers
    st.sampled_from([b"\xef\xbb\xbfn = 3", "n = 3".encode("utf-16"), b"\xff\xfe",
                     b"data = '\xe9'", b"[validate]\n" * 50, b"a = 1\r\nb = \x00"])))
def test_cli_toml_bytes(content, capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(content + b"\nlr = -1.0\n")
    with deadline(20):
        code = cli.main(["run", "validate", "--quick", "--config", str(path), "--out",
                         str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2, (content[:80], err)
    assert one_line(err), err[:400]
    assert not (tmp_path / "o").exists()


@FILES
@given(sizes=st.dictionaries(st.sampled_from(["n", "d", "n_traj", "sde_n_traj"]),
                             st.integers(10 ** 6, 2 ** 63 - 1), min_size=2, max_size=4)
       .filter(lambda d: ({"n", "d"} <= set(d) or {"n_traj", "d"} <= set(d)
                          or {"sde_n_traj", "n"} <= set(d))))
def test_cli_oversize_requests_are_refused_with_the_numbers(sizes, capsys, tmp_path):
    argv = [a for k, v in sizes.items() for a in ("--set", f"{k}={v}")]
    with deadline(20):
        code = cli.main(["run", "validate", "--quick", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and one_line(err), err
    assert "would need" in err and "of memory available" in err, err
    assert not (tmp_path / "o").exists()


NAME_CHARS = st.sampled_from([*"ab[]*?!{}- .é√ü\t\n\\'\"$~", "\u202e", "\u0301"])


def _tree(root) -> dict[str, str]:
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@FILES
@given(name=st.text(NAME_CHARS, min_size=1, max_size=12) | st.sampled_from(
    [".", "..", "a" * 256, "r[ab]", "*", "?", "[!x]", " ", "é" * 128]))
def test_run_directories_with_any_name_touch_only_themselves(name, tmp_path_factory):
    root = tmp_path_factory.mktemp("names")
    for neighbour in ("ra", "rb", "a", "x", "é"):
        (root / neighbour / "checkpoints").mkdir(parents=True)
        (root / neighbour / "keep.tmp-42").write_text("bystander")
        (root / neighbour / "checkpoints" / "run-000.npz").write_text("bystander")
        (root / neighbour / io.LEDGER).write_text('{"limitdyn": "run-directory", "files": '
                                                  '["keep"], "writers": [42]}')
    (root / "user.txt").write_text("precious")
    before = _tree(root)
    target = str(root / name)
    with deadline(20):
        try:
            run = io.RunDirectory(target, {"experiment": "validate", "seed": 0, "quick": True,
                                           "config": {}})
        except io.OutputError as err:
            assert "\n" not in str(err) and len(str(err)) <= 400
            assert _tree(root) == before
            return
        run.write_text("report.md", "x")
        with ckpt.auto_checkpoints(run.checkpoints, register=run.register) as scope:
            ckpt.save(scope.next_path(), (np.ones(2),), 1, 1, 1, "id")
        run.close()
        assert io.inspect(target).state == "partial"
        assert [p["file"] for p in ckpt.progress_of(os.path.join(target, "checkpoints"))] == [
            "run-000.npz"]
        io.RunDirectory(target, resume=True).close()
        io.RunDirectory(target, {"experiment": "validate"}, overwrite=True).discard()
    assert _tree(root) == before, name
    matched = [n for n in ("ra", "rb", "a", "x", "é") if fnmatch.fnmatchcase(n, name)]
    assert all(os.path.isdir(root / n) for n in matched)


_TEMPLATE = (np.arange(6.0).reshape(2, 3), np.arange(4, dtype=np.int32))


def _damage(data: bytes, kind: str, where: float, byte: int) -> bytes:
    i = min(int(where * len(data)), len(data) - 1)
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ (byte or 1)]) + data[i + 1:]
    if kind == "truncate":
        return data[:i]
    if kind == "insert":
        return data[:i] + bytes([byte]) + data[i:]
    return data[:i] + bytes([byte]) * 16 + data[i + 16:]          # overwrite a run


@FILES
@given(kind=st.sampled_from(["flip", "truncate", "insert", "overwrite"]),
       where=st.floats(0, 1), byte=st.integers(0, 255))
def test_damaged_checkpoints_are_never_silently_wrong(kind, where, byte, tmp_path_factory):
    """Any damage: inside a run directory the checkpoint is either read back exactly or set
    aside (never an exception, never wrong data); at an explicit path it is read back
    exactly or refused with CheckpointError."""
    import jax.numpy as jnp

    directory = tmp_path_factory.mktemp("ck")
    template = tuple(jnp.asarray(a) for a in _TEMPLATE)
    with ckpt.auto_checkpoints(str(directory)) as scope:
        path = scope.next_path()
        ckpt.save(path, template, 3, 5, 30, "run id")
        with open(path, "rb") as fh:
            good = fh.read()
        with open(path, "wb") as fh:
            fh.write(_damage(good, kind, where, byte))
        try:
            explicit = ckpt.load(path, template, "run id", heal=False)
        except ckpt.CheckpointError as err:
            assert "\n" not in str(err)
            explicit = None
        with deadline(20), warnings.catch_warnings():
            warnings.simplefilter("ignore", ckpt.CheckpointWarning)
            healed = ckpt.load(path, template, "run id")
    for loaded in (explicit, healed):
        if loaded is not None:
            carry, next_event = loaded
            assert next_event == 3
            for got, want in zip(carry, _TEMPLATE, strict=True):
                np.testing.assert_array_equal(np.asarray(got), want)
    if healed is None:
        assert len(scope.set_aside) == 1 and os.path.exists(path + ".bad-1")
        assert explicit is None


@FILES
@given(n=st.integers(2, 6), overwrite=st.booleans())
def test_several_writers_at_once_one_wins(n, overwrite, tmp_path_factory):
    target = str(tmp_path_factory.mktemp("writers") / "run")
    barrier, results = threading.Barrier(n), []

    def writer():
        barrier.wait()
        try:
            results.append(io.RunDirectory(target, {"experiment": "validate"},
                                           overwrite=overwrite))
        except io.OutputError as err:
            results.append(err)

    with deadline(20):
        threads = [threading.Thread(target=writer) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    winners = [r for r in results if isinstance(r, io.RunDirectory)]
    losers = [r for r in results if not isinstance(r, io.RunDirectory)]
    assert len(winners) == 1 and len(losers) == n - 1, results
    assert all(isinstance(e, io.BusyError) or "not empty" in str(e) for e in losers), losers
    winners[0].close()
    assert os.path.isfile(os.path.join(target, "run.json"))
    assert io.read_ledger(target)["writers"] == [os.getpid()]


JUNK = st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode),
                 st.sampled_from([b"{}", b"[]", b'{"sha256": {"x": "y"}}', b'{"sha256": 3}',
                                  b'{"experiment": "validate"}', b"null"]))


GLOB_NAMES = st.sampled_from(["damaged", "r[ab]", "r*", "r?", "r [a] é", "ü*"])


@FUZZ
@given(files=st.dictionaries(st.sampled_from(["run.json", "COMPLETE", "summary.json",
                                              "checkpoints/run-000.npz", io.LEDGER]), JUNK,
                             min_size=1),
       name=GLOB_NAMES)
def test_cli_show_and_resume_of_damaged_run_directories(files, name, capsys, tmp_path):
    """Garbage in a run directory's metadata: `show` says partial (1) or corrupt/not a run
    (2), `run --resume` refuses with exit 2 — one line, never a traceback; a neighbour that
    the directory's name matches as a glob pattern is never read or touched."""
    import shutil

    root = tmp_path / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "checkpoints").mkdir(parents=True)
    neighbour = tmp_path / "ra"
    if not neighbour.exists():
        (neighbour / "checkpoints").mkdir(parents=True)
        ckpt.save(str(neighbour / "checkpoints" / "run-000.npz"), (np.zeros(2),), 1, 1, 1, "x")
        (neighbour / "keep.tmp-42").write_text("bystander")
    before = _tree(neighbour)
    for fname, content in files.items():
        (root / fname).write_bytes(content)
    with deadline(20):
        code = cli.main(["show", str(root)])
    out, err = capsys.readouterr()
    assert code in (1, 2) and "Traceback" not in out + err
    assert "run-000.npz: step" not in out        # never the neighbour's checkpoint
    with deadline(20):
        code = cli.main(["run", "--resume", str(root), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert one_line(err), err
    assert _tree(neighbour) == before
