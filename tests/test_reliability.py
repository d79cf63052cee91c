"""Issue 17: one-line errors on every path, self-healing checkpoints, memory estimates.

Every bad input below gives exit code 2 and exactly one stderr line (<= 300 characters),
never a traceback, never a hang (a deadline per case), and leaves nothing at --out. A
damaged checkpoint is set aside and its simulation recomputed: a resume always finishes,
with the statistics of an uninterrupted run.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest

import limitdyn as ld
from limitdyn import _memory, cli, io
from limitdyn import checkpoint as ckpt
from limitdyn import config as config_mod

from ._guards import deadline, one_line

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _files(tmp_path):
    """Bad inputs written to disk for the cases below."""
    (tmp_path / "text.npz").write_text("just text, not an archive")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    os.mkfifo(tmp_path / "fifo.npz")
    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "ntraj.toml").write_text("n_traj = 9223372036854775807\n")
    (tmp_path / "nsteps.toml").write_text("n_steps = 100000000000000000000000\n")
    (tmp_path / "n.toml").write_text("n = 1000000000000\n")
    (tmp_path / "deep.toml").write_text("n_traj = " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "deep40.toml").write_text("spectrum = " + "[" * 40 + "1" + "]" * 40 + "\n")
    (tmp_path / "latin1.toml").write_bytes('data = "caf\xe9"\n'.encode("latin-1"))
    (tmp_path / "bom16.toml").write_bytes("n = 3\n".encode("utf-16"))
    (tmp_path / "huge.toml").write_text('data = "' + "x" * 10_000_000 + '"\n')
    (tmp_path / "long_value.toml").write_text('data = "' + "y" * 1_000_000 + '"\n')
    (tmp_path / "adir.toml").mkdir()
    (tmp_path / "afile").write_text("a file")
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o555)


CASES = [
    # --out: paths and places
    ("out-too-long-name", ["--out", "{tmp}/" + "a" * 300], "the limit is 255"),
    ("out-too-long-path", ["--out", "{tmp}/" + "/".join(["b" * 200] * 25)], "the limit is 4095"),
    ("out-in-proc", ["--out", "/proc/limitdyn-test/run"], "--out /proc/limitdyn-test/run"),
    ("out-in-proc-sys", ["--out", "/proc/sys/limitdyn-test"], "limitdyn-test"),
    ("out-in-sys", ["--out", "/sys/limitdyn-test"], "limitdyn-test"),
    ("out-read-only", ["--out", "{tmp}/readonly/run"], "readonly"),
    ("out-is-a-file", ["--out", "{tmp}/afile"], "not a directory"),
    ("out-empty", ["--out", ""], "--out must name a directory"),
    # files named by the configuration
    ("data-text-npz", ["--set", "data={tmp}/text.npz"], "not a readable .npz file"),
    ("data-broken-zip", ["--set", "data={tmp}/broken.npz"], "BadZipFile"),
    ("data-fifo", ["--set", "data={tmp}/fifo.npz"], "fifo.npz"),
    ("data-dev-zero", ["--set", "data=/dev/zero"], "data file not found"),
    # TOML: sizes, depth, encodings, special files
    ("toml-int64-max", ["--config", "{tmp}/ntraj.toml"], "more than 50%"),
    ("toml-beyond-int64", ["--config", "{tmp}/nsteps.toml"], "64-bit integer"),
    ("toml-58-TiB", ["--config", "{tmp}/n.toml"], "58.2 TiB"),
    ("toml-5000-deep", ["--config", "{tmp}/deep.toml"], "nested too deeply"),
    ("toml-40-deep", ["--config", "{tmp}/deep40.toml"], "nested more than 32 levels"),
    ("toml-invalid-utf8", ["--config", "{tmp}/latin1.toml"], "not valid UTF-8"),
    ("toml-utf16", ["--config", "{tmp}/bom16.toml"], "not valid UTF-8"),
    ("toml-dev-zero", ["--config", "/dev/zero"], "not a regular file"),
    ("toml-fifo", ["--config", "{tmp}/fifo.toml"], "not a regular file"),
    ("toml-directory", ["--config", "{tmp}/adir.toml"], "not a regular file"),
    ("toml-10-MB", ["--config", "{tmp}/huge.toml"], "the limit is 4194304"),
    ("toml-1-MB-value", ["--config", "{tmp}/long_value.toml"], "data file not found: yyy"),
    # --set values
    ("set-100-kB-value", ["--set", "data=" + "z" * 100_000], "data file not found: zzz"),
    ("set-100-kB-key", ["--set", "k" * 100_000 + "=1"], "unknown configuration key"),
    ("set-huge-int", ["--set", "n_traj=" + "9" * 5000], "n_traj must be an integer"),
    ("set-beyond-int32", ["--set", "n_steps=4611686018427387904"], "n_steps must be"),
    ("set-58-TiB", ["--set", "n=1000000000000"], "58.2 TiB"),
    ("set-oversize-sde-noise", ["--set", "sde_n_traj=1000000", "--set", "n=10000000"],
     "exact-noise draws"),
    ("set-unbalanced-list", ["--set", "spectrum=[0.1, 1"], "unbalanced brackets"),
    ("set-nested-list", ["--set", "spectrum=[[0.1], [1]]"], "spectrum must be a number"),
]


@pytest.mark.parametrize("name,argv,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(name, argv, message, tmp_path,
                                                          capsys):
    if name == "out-read-only" and IS_ROOT:
        pytest.skip("root writes into a mode-0555 directory (the /sys and /proc cases stand in)")
    _files(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    before = sorted(os.listdir(tmp_path))
    with deadline(60):
        code = cli.main(["run", "validate", "--quick", "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert one_line(err), (len(err), err[:400])
    assert message in err, err
    assert sorted(os.listdir(tmp_path)) == before            # nothing made, nothing removed


def test_list_values_accept_both_notations(tmp_path):
    import argparse

    from limitdyn import experiments

    validate = experiments.REGISTRY["validate"]
    for text in ("0.01,1", "[0.01, 1]", "[0.01,1]", " [ 0.01 , 1 ] "):
        args = argparse.Namespace(quick=False, config=None, set=[f"spectrum={text}"])
        assert cli.build_config(validate, args).spectrum == (0.01, 1.0), text
    limiting = experiments.REGISTRY["limiting"]
    for text in ('["cnn"]', "[cnn]", "cnn", "[]", ""):
        args = argparse.Namespace(quick=False, config=None, set=[f"extra_models={text}"])
        want = () if text in ("[]", "") else ("cnn",)
        assert cli.build_config(limiting, args).extra_models == want, text


def test_run_name_help_gives_meaning_type_default_and_range(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "validate", "--help"])
    assert exc.value.code == 0
    page = capsys.readouterr().out
    assert "configuration keys of validate" in page
    assert "n_traj (integer, default 4096; --quick 1024)" in page
    assert "SGD trajectories" in page                              # meaning
    assert "n_traj must be >= 64 (32 trajectory groups" in page    # range from validate()
    assert "spectrum (list of number, default [0.1, 1.0])" in page
    assert "spectrum must be two numbers 0 < low <= high" in page
    assert "diffusion" not in page.split("configuration keys of validate")[1]
    with pytest.raises(SystemExit):
        cli.main(["run", "--out", "x", "diffusion", "-h"])
    page = capsys.readouterr().out
    assert "configuration keys of diffusion" in page and "sweep_traj (integer" in page
    assert "n_traj and sweep_traj must be >= 8" in page
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    generic = capsys.readouterr().out
    assert "validate: n=512" in generic and "limitdyn run NAME --help" in generic


def test_every_key_of_every_experiment_is_described():
    from limitdyn import experiments

    for exp in experiments.REGISTRY.values():
        rows = config_mod.describe_fields(exp.config_cls)
        assert [r["name"] for r in rows] == list(exp.config_cls.__dataclass_fields__)
        for r in rows:
            assert r["type"] in {"integer", "number", "true/false", "string", "list of integer",
                                 "list of number", "list of string"}, r
        described = sum(bool(r["meaning"]) for r in rows)
        ranged = sum(bool(r["range"]) for r in rows)
        assert described >= 0.8 * len(rows), (exp.name, [r["name"] for r in rows
                                                          if not r["meaning"]])
        assert ranged >= 0.5 * len(rows), exp.name


def test_check_allocation_refuses_with_the_numbers(monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda: 8 << 30)
    _memory.check_allocation(3 << 30, "three GiB")                    # within half of 8 GiB
    with pytest.raises(_memory.AllocationError) as err:
        _memory.check_allocation(5 << 30, "the trajectories (n_traj × n_steps)")
    msg = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in msg
    assert "the trajectories (n_traj × n_steps) would need 5.0 GiB" in msg
    assert "50% of the 8.0 GiB" in msg and "(4.0 GiB)" in msg
    with pytest.raises(_memory.AllocationError):
        _memory.check_allocation(3 << 30, "x", fraction=0.25)
    with pytest.raises(ValueError, match="fraction"):
        _memory.check_allocation(1, "x", fraction=0)


def test_available_bytes_reads_meminfo():
    avail = _memory.available_bytes()
    assert isinstance(avail, int) and avail > 1 << 20
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as fh:
            line = next(ln for ln in fh if ln.startswith("MemAvailable:"))
        kib = int(line.split()[1])
        assert abs(avail - kib * 1024) <= 0.5 * kib * 1024        # moves, but not that much


# --- self-healing checkpoints ------------------------------------------------------------------

KEY = jax.random.key(11)


def _problem():
    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=128, d=4)
    return prob, ld.Hyper(lr=0.1, momentum=0.9, batch_size=16)


class _Crash(Exception):
    pass


def _flip(path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(where * (len(data) - 1))] ^= 0xFF
    path.write_bytes(bytes(data))


def _finished_but_stale(path) -> None:
    """Metadata edited to say 'finished' while the arrays are those of an earlier chunk."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["meta"] = arrays["meta"].copy()
    arrays["meta"][1] = arrays["meta"][2]
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


DAMAGE = {
    "flipped byte": _flip,
    "flipped byte near the end": lambda p: _flip(p, 0.97),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "garbage": lambda p: p.write_bytes(b"not a checkpoint"),
    "finished but arrays disagree": _finished_but_stale,
}


def _partial_checkpoint(tmp_path, monkeypatch, simulate_args):
    """A checkpoint written mid-run by a run that then died."""
    real, count = ckpt.save, [0]

    def save(*a, **kw):
        real(*a, **kw)
        count[0] += 1
        if count[0] == 4:
            raise _Crash
    monkeypatch.setattr(ckpt, "save", save)
    # checkpoint_every=0: a save after every chunk (the default saves every 60 s and at
    # the end, so a 200-step run would save once and never reach the 4th save)
    with pytest.raises(_Crash), ckpt.auto_checkpoints(str(tmp_path / "ck")):
        ld.simulate_sgd(*simulate_args, n_chunks=10, checkpoint_every=0)
    monkeypatch.undo()
    path = tmp_path / "ck" / "run-000.npz"
    assert 0 < ckpt.peek(str(path))["next_event"] < ckpt.peek(str(path))["n_events"]
    return path


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_set_aside_and_its_simulation_recomputed(
        damage, tmp_path, monkeypatch):
    prob, hp = _problem()
    args = (prob, hp, KEY, 64, 200)
    reference = ld.simulate_sgd(*args, n_chunks=10)
    path = _partial_checkpoint(tmp_path, monkeypatch, args)
    DAMAGE[damage](path)
    with pytest.raises(ckpt.CheckpointError):       # an explicit path: the user decides
        ld.simulate_sgd(*args, n_chunks=10, checkpoint=path)
    reported = []
    with ckpt.auto_checkpoints(str(tmp_path / "ck"),
                               on_set_aside=lambda *r: reported.append(r)) as scope, \
            pytest.warns(ckpt.CheckpointWarning, match="set aside as run-000.npz.bad-1"):
        healed = ld.simulate_sgd(*args, n_chunks=10)
    for name in ("mean", "cov", "stationary_cov", "n_alive"):
        np.testing.assert_array_equal(getattr(healed, name), getattr(reference, name), name)
    assert (tmp_path / "ck" / "run-000.npz.bad-1").is_file()
    ckpt.peek(str(path))                    # a fresh, sound checkpoint in its place
    assert len(reported) == 1 and len(scope.set_aside) == 1
    assert reported[0][0] == str(path) and "\n" not in reported[0][2]
    progress = ckpt.progress_of(str(tmp_path / "ck"))
    assert [p.get("set_aside", False) for p in progress] == [False, True]


def test_a_checkpoint_of_another_simulation_is_set_aside_in_a_run_directory(tmp_path):
    """Swapped checkpoints (run-000 and run-001 exchanged): both are set aside and both
    simulations recomputed to the uninterrupted statistics."""
    prob, hp = _problem()
    keys = [jax.random.key(1), jax.random.key(2)]
    with ckpt.auto_checkpoints(str(tmp_path / "ck")):
        first = [ld.simulate_sgd(prob, hp, k, 32, 100) for k in keys]
    a, b = tmp_path / "ck" / "run-000.npz", tmp_path / "ck" / "run-001.npz"
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ckpt.auto_checkpoints(str(tmp_path / "ck")) as scope:
            again = [ld.simulate_sgd(prob, hp, k, 32, 100) for k in keys]
    assert len(scope.set_aside) == 2 and all("different run" in r["reason"]
                                             for r in scope.set_aside)
    assert sum(issubclass(w.category, ckpt.CheckpointWarning) for w in caught) == 2
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x.cov, y.cov)


def _experiment_reference(experiment, request, tmp_path_factory):
    """The uninterrupted --quick run (shared with the other tests where the session has it)."""
    if experiment == "validate":
        run, ref = request.getfixturevalue("quick_validate")
        assert run.returncode == 0, run.stderr
        return ref
    try:
        run, ref = request.getfixturevalue("quick_run")(experiment)
        assert run.returncode == 0, run.stderr[-2000:]
        return ref
    except pytest.FixtureLookupError:
        ref = tmp_path_factory.mktemp("ref") / experiment
        assert cli.main(["run", experiment, "--quick", "--quiet", "--out", str(ref)]) == 0
        return ref


@pytest.mark.parametrize("experiment,seed", [("validate", 17),
                                             pytest.param("diffusion", 18,
                                                          marks=pytest.mark.slow)])
def test_kill_at_a_random_time_flip_a_byte_of_the_newest_checkpoint_then_resume(
        experiment, seed, request, tmp_path, tmp_path_factory, capsys):
    """Issue 17: `kill -9` at a random moment (drawn from a seeded generator within the
    reference run's wall time; the first checkpoint after it if none exists yet), one byte
    of the newest checkpoint flipped, then `--resume`: the run finishes, the damaged
    checkpoint is reported as set aside, and data.npz equals the uninterrupted run's."""
    ref = _experiment_reference(experiment, request, tmp_path_factory)
    wall = json.loads((ref / "summary.json").read_text())["timings"]["wall_seconds"]
    rng = random.Random(seed)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "limitdyn.cli", "run", experiment,
                             "--quick", "--quiet", "--out", str(out), "--checkpoint-every", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        limit = time.monotonic() + 300
        while not (out / "run.json").exists() and proc.poll() is None:
            assert time.monotonic() < limit
            time.sleep(0.01)
        kill_after = rng.uniform(0.2, 0.8) * wall
        until = time.monotonic() + kill_after
        # at the random moment, or at the first checkpoint after it (there is one to damage)
        while proc.poll() is None and (time.monotonic() < until or not any(
                (out / "checkpoints").glob("run-*.npz"))):
            assert time.monotonic() < limit
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    note = f"(seed {seed}, killed {kill_after:.1f} s after run.json)"
    checkpoints = sorted((out / "checkpoints").glob("run-*.npz"), key=lambda p: p.stat().st_mtime)
    flipped = None
    if checkpoints:
        flipped = checkpoints[-1]
        _flip(flipped, rng.uniform(0.25, 0.75))
    resumed = subprocess.run([sys.executable, "-m", "limitdyn.cli", "run", "--resume",
                              str(out), "--quiet"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr + note
    assert io.inspect(str(out)).state == "complete"
    summary = json.loads((out / "summary.json").read_text())
    if flipped is not None:
        healed = summary.get("checkpoints_set_aside", [])
        assert [h["file"] for h in healed] == [f"checkpoints/{flipped.name}"], note
        assert sum("set aside" in line for line in resumed.stderr.splitlines()) == 1
        capsys.readouterr()
        assert cli.main(["show", str(out)]) == 0
        assert f"set aside: checkpoints/{flipped.name}" in capsys.readouterr().out
    with np.load(out / "data.npz") as got, np.load(ref / "data.npz") as want:
        assert sorted(got.files) == sorted(want.files)
        for name in want.files:           # bit for bit: the same kernels on the same machine
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} {note}")
