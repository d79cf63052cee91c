"""Long runs lose nothing: checkpoints, resume after SIGKILL, run-directory states, and
diverged-trajectory counts at every recorded step."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import limitdyn as ld
from limitdyn import checkpoint as ckpt
from limitdyn import cli, experiments, io

KEY = jax.random.key(11)


def _problem():
    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=128, d=4)
    return prob, ld.Hyper(lr=0.1, momentum=0.9, batch_size=16)


class _Crash(Exception):
    pass


def _crash_after(monkeypatch, n_saves):
    """Make the run die right after its n-th checkpoint write (as a kill would)."""
    real, count = ckpt.save, [0]

    def save(*args, **kwargs):
        real(*args, **kwargs)
        count[0] += 1
        if count[0] == n_saves:
            raise _Crash
    monkeypatch.setattr(ckpt, "save", save)


@pytest.mark.parametrize("simulate,kwargs", [
    (ld.simulate_sgd, {"sampling": "reshuffle"}),     # sampler state (a permutation) in carry
    (ld.simulate_sde, {"noise": "exact", "solver": "baoab"}),
])
def test_python_run_resumes_from_its_checkpoint_to_identical_statistics(
        simulate, kwargs, tmp_path, monkeypatch):
    prob, hp = _problem()
    args = (prob, hp, KEY, 64, 300)
    reference = simulate(*args, n_chunks=10, **kwargs)
    path = tmp_path / "run.npz"
    _crash_after(monkeypatch, 4)
    with pytest.raises(_Crash):     # a checkpoint after every chunk (checkpoint_every=0)
        simulate(*args, checkpoint=path, n_chunks=10, checkpoint_every=0, **kwargs)
    stored = ckpt.peek(str(path))
    assert 0 < stored["next_event"] < stored["n_events"] and 0 < stored["step"] < 300
    monkeypatch.undo()
    resumed = simulate(*args, checkpoint=path, n_chunks=10, **kwargs)
    for name in ("mean", "cov", "displacement", "stationary_cov", "stationary_lag_cov",
                 "n_alive"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(reference, name), name)
    np.testing.assert_array_equal(resumed.stderr.stationary_cov,
                                  reference.stderr.stationary_cov)
    again = simulate(*args, checkpoint=path, n_chunks=10, **kwargs)   # finished: no kernel
    assert again.metadata["compile_seconds"] == 0.0
    np.testing.assert_array_equal(again.cov, reference.cov)


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    prob, hp = _problem()
    path = tmp_path / "run.npz"
    ld.simulate_sgd(prob, hp, KEY, 16, 50, checkpoint=path)
    for change in ({"key": jax.random.key(12)}, {"hp": hp.replace(lr=0.11)},
                   {"n_traj": 17}, {"n_steps": 51}):
        call = {"prob": prob, "hp": hp, "key": KEY, "n_traj": 16, "n_steps": 50} | change
        with pytest.raises(ckpt.CheckpointError, match="written by a different run"):
            ld.simulate_sgd(**call, checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="unreadable"):
        ld.simulate_sgd(prob, hp, KEY, 16, 50, checkpoint=path)
    with pytest.raises(ValueError, match="does not exist"):
        ld.simulate_sgd(prob, hp, KEY, 16, 50, checkpoint=tmp_path / "no" / "x.npz")
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        ld.simulate_sgd(prob, hp, KEY, 16, 50, checkpoint=3)


def _arrays(path):
    with np.load(path / "data.npz") as data:
        return {k: data[k] for k in data.files}


def test_cli_run_killed_with_sigkill_resumes_to_the_statistics_of_an_uninterrupted_run(
        quick_validate, tmp_path, capsys):
    ref_run, ref = quick_validate
    assert ref_run.returncode == 0, ref_run.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "limitdyn.cli", "run", "validate",
                             "--quick", "--out", str(out), "--quiet", "--checkpoint-every", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_in = None
    deadline = time.monotonic() + 300
    try:
        while killed_in is None and proc.poll() is None and time.monotonic() < deadline:
            # Kill inside the second or a later simulation, between two of its chunks, so
            # the resume must both reuse finished simulations and continue a partial one.
            for path in sorted((out / "checkpoints").glob("run-*.npz"))[1:]:
                try:
                    stored = ckpt.peek(str(path))
                except ckpt.CheckpointError:
                    continue
                if 0 < stored["next_event"] < stored["n_events"]:
                    proc.send_signal(signal.SIGKILL)
                    killed_in = (path.name, stored["step"])
                    break
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert killed_in is not None, "the run ended before it could be killed mid-simulation"
    assert proc.returncode == -signal.SIGKILL
    status = io.inspect(str(out))
    assert status.state == "partial" and "resume" in status.detail
    assert not (out / "summary.json").exists() and not (out / "COMPLETE").exists()
    code = cli.main(["show", str(out)])
    assert code == 1 and "partial" in capsys.readouterr().out

    resumed = subprocess.run([sys.executable, "-m", "limitdyn.cli", "run", "--resume", str(out),
                              "--quiet"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert io.inspect(str(out)).state == "complete"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] is True
    assert summary["config"] == json.loads((ref / "summary.json").read_text())["config"]
    got, want = _arrays(out), _arrays(ref)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-12,
                                   err_msg=f"{name} (killed in {killed_in})")


def test_show_tells_complete_partial_and_corrupt_directories_apart(quick_validate, tmp_path,
                                                                  capsys):
    _, ref = quick_validate
    assert io.inspect(str(ref)).state == "complete"
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(ref), str(copy)], check=True)
    with open(copy / "report.md", "a") as fh:
        fh.write("edited\n")
    status = io.inspect(str(copy))
    assert status.state == "corrupt" and "report.md has changed" in status.detail
    assert cli.main(["show", str(copy)]) == 2
    (copy / "report.md").unlink()
    assert "report.md is missing" in io.inspect(str(copy)).detail
    (copy / "COMPLETE").unlink()
    (copy / "run.json").write_text("{not json")
    assert io.inspect(str(copy)).state == "corrupt"
    code = cli.main(["run", "--resume", str(copy)])
    assert code == 2 and "corrupt" in capsys.readouterr().err
    with pytest.raises(io.OutputError, match="not a limitdyn run directory"):
        io.inspect(str(tmp_path))
    code = cli.main(["run", "--resume", str(ref), "--quiet"])      # complete: nothing to do
    assert code == 0


@pytest.mark.parametrize("argv,message", [
    (["run", "--resume", "DIR", "--seed", "3"], "drop --seed"),
    (["run", "--resume", "DIR", "--set", "lr=0.05"], "drop --set"),
    (["run", "diffusion", "--resume", "DIR"], "is a run of 'validate', not 'diffusion'"),
])
def test_resume_usage_errors(argv, message, quick_validate, capsys):
    _, ref = quick_validate
    code = cli.main([str(ref) if a == "DIR" else a for a in argv])
    assert code == 2 and message in capsys.readouterr().err


def test_overwrite_replaces_only_run_directories(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("precious")
    code = cli.main(["run", "validate", "--quick", "--out", str(tmp_path), "--overwrite"])
    assert code == 2 and "not a limitdyn run directory" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "precious"


def _exact_divergence_steps(prob, hp, starts, limit):
    """First step at which each noise-free (full-batch) trajectory leaves ``limit``, in
    float64 — the heavy-ball recursion of theory.md §1 with S = N is deterministic."""
    X, y = np.asarray(prob.X, np.float64), np.asarray(prob.y, np.float64)
    H, b = X.T @ X / len(y), X.T @ y / len(y)
    first = []
    for theta in starts.astype(np.float64):
        v = np.zeros_like(theta)
        for k in range(1, 400):
            v = hp.momentum * v - (H @ theta - b)
            theta = theta + hp.lr * v
            if np.max(np.abs(theta)) >= limit or np.max(np.abs(v)) >= limit:
                first.append(k)
                break
        else:
            first.append(np.inf)
    return np.array(first)


def test_diverged_counts_at_every_recorded_step_and_in_the_run_summary(tmp_path):
    prob = ld.LinearRegression.synthetic(jax.random.key(4), n=16, d=2, spectrum=(0.5, 1.0),
                                         noise_std=0.0)
    hp = ld.Hyper(lr=2.6, batch_size=16)          # |1 − 2.6·1| = 1.6: the mean map is unstable
    mu = np.asarray(prob.minimiser())
    scales = np.array([1e12, 1e10, 1e8, 1e6, 1e4, 1e2, 1e-9, 0.0])
    starts = mu + scales[:, None] * np.array([1.0, -1.0])
    limit = 1e-3 * float(np.sqrt(np.finfo(np.float32).max))
    first = _exact_divergence_steps(prob, hp, starts, limit)
    # Within 90 steps the six displaced starts diverge (steps 22 … 71) and the two at the
    # minimiser (where float32 and float64 roundoff differ) do not. The recorded steps sit
    # midway between consecutive divergence steps, away from float32/float64 ties.
    n_steps = 90
    assert (first[:6] < 80).all() and (first[6:] > n_steps + 20).all()
    record = np.unique(np.concatenate([[0], (first[:5] + first[1:6]) // 2, [n_steps]]))
    with pytest.warns(ld.StabilityWarning):
        res = ld.simulate_sgd(prob, hp, KEY, n_traj=8, n_steps=n_steps, theta0=starts,
                              record=record, n_groups=2, burn_in=80)
    expected = np.array([(first <= s).sum() for s in res.steps])
    np.testing.assert_array_equal(res.n_diverged, expected)
    assert expected.tolist() == [0, 1, 2, 3, 4, 5, 6] and res.n_alive[-1] == 2
    assert np.isfinite(res.mean).all() and np.isfinite(res.cov).all()
    assert np.isfinite(res.stationary_cov).all()

    ctx = experiments.Context("t", 0, None, quick=True, progress=False,
                              say=lambda *a, **k: None)
    ctx.timed(res, "unstable SGD")
    (entry,) = ctx.divergence
    assert entry["n_diverged"] == expected.tolist() and entry["n_traj"] == 8
    assert entry["first_recorded_step_with_divergence"] == int(res.steps[expected > 0][0])
    report = ctx.report("t", "intro")
    assert "## Diverged trajectories" in report and "| unstable SGD | 8 |" in report
    json.dumps(ctx.divergence)                      # goes into summary.json as it is


def test_atomic_writes_leave_no_partial_file_behind(tmp_path, monkeypatch):
    run_dir = io.RunDirectory(str(tmp_path / "run"), {"experiment": "x"})
    run_dir.write_text("report.md", "first")

    def torn(fh):
        fh.write("half")
        raise OSError("disk full")
    with pytest.raises(OSError):
        io._atomic(run_dir.path("report.md"), torn)
    assert (tmp_path / "run" / "report.md").read_text() == "first"   # old content intact
    assert not [p for p in os.listdir(tmp_path / "run") if ".tmp-" in p]
    run_dir.path("data.npz")          # recorded before it is written, as commit() does
    run_dir.close()
    # A kill -9 leaves temporary files of its writer; resume removes those, and only those.
    writer = run_dir.ledger["writers"][0]
    (tmp_path / "run" / f"data.npz.tmp-{writer}").write_text("left by a kill -9")
    (tmp_path / "run" / f"report.md.tmp-{writer}").write_text("left by a kill -9")
    (tmp_path / "run" / "data.npz.tmp-99999999").write_text("not a writer of this run")
    (tmp_path / "run" / f"notes.txt.tmp-{writer}").write_text("the user's")
    resumed = io.RunDirectory(str(tmp_path / "run"), resume=True)      # cleans stale temps
    resumed.close()
    left = sorted(p for p in os.listdir(tmp_path / "run") if ".tmp-" in p)
    assert left == ["data.npz.tmp-99999999", f"notes.txt.tmp-{writer}"]


def test_sigterm_checkpoints_the_moment_it_arrives_and_resume_continues_from_there(
        quick_validate, tmp_path):
    """With the default 60 s between timed checkpoints a quick run writes none while it
    runs; SIGTERM makes it save its state after the kernel call in flight and exit, and
    --resume continues from that step to the uninterrupted run's data."""
    ref_run, ref = quick_validate
    assert ref_run.returncode == 0, ref_run.stderr
    # The signal has to arrive while the second simulation is compiling or running. That
    # simulation lasts about a second at the quick sizes, so no single delay after the
    # first one finished is sure to hit it on every machine: a few delays are tried, each
    # run must end with exit 143 whatever it hit, and one must have stopped mid-simulation.
    for attempt, delay in enumerate((0.3, 0.05, 0.8, 0.15, 1.5)):
        out = tmp_path / f"terminated-{attempt}"
        proc = subprocess.Popen([sys.executable, "-m", "limitdyn.cli", "run", "validate",
                                 "--quick", "--out", str(out), "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        try:
            # wait until the first simulation has finished (its file is written at its end)
            while proc.poll() is None and time.monotonic() - t0 < 300:
                if (out / "checkpoints" / "run-000.npz").exists():
                    time.sleep(delay)            # inside the second simulation, we hope
                    proc.send_signal(signal.SIGTERM)
                    break
                time.sleep(0.01)
            _, err = proc.communicate(timeout=300)
        finally:
            proc.kill()
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert time.monotonic() - t0 < 60      # no timed checkpoint could have been due
        second = out / "checkpoints" / "run-001.npz"
        if not second.exists():
            continue                           # stopped before its first kernel call
        stored = ckpt.peek(str(second))
        if stored["next_event"] < stored["n_events"]:
            break
    else:
        pytest.fail("no SIGTERM arrived inside the second simulation")
    # saved at the signal (after the kernel call in flight), mid-simulation
    assert 0 < stored["next_event"] < stored["n_events"]
    assert "--resume" in err
    show = subprocess.run([sys.executable, "-m", "limitdyn.cli", "show", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert show.returncode == 1 and "newest checkpoint written" in show.stdout, show.stdout
    resumed = subprocess.run([sys.executable, "-m", "limitdyn.cli", "run", "--resume", str(out),
                              "--quiet"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    got, want = _arrays(out), _arrays(ref)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-12, err_msg=name)


def test_growing_records_are_appended_to_a_side_file_not_rewritten(tmp_path, monkeypatch):
    """Issue 19: a save appends the slots recorded since the previous one (kept
    trajectories, traces, per-recorded-step statistics), the checkpoint itself holds only
    the rest of the carry, a kill between the append and the rename loses nothing, and the
    resumed run gives the same records bit for bit."""
    prob, hp = _problem()
    args = (prob, hp, KEY, 32, 400)
    steps = np.arange(0, 401, 10)
    run = {"n_chunks": 8, "record": steps, "keep_trajectories": True,
           "traces": {"loss": "loss"}, "trace_steps": steps}
    reference = ld.simulate_sgd(*args, **run)
    path = tmp_path / "run.npz"
    side = tmp_path / "run.npz.kept"
    real, sizes = ckpt.save, []

    def save(p, carry, *a, **kw):
        real(p, carry, *a, **kw)
        sizes.append((os.path.getsize(p), os.path.getsize(side)))
        if len(sizes) == 5:
            # the next save appends to the side file and is then killed before its rename
            with open(side, "ab") as fh:
                fh.write(b"\x00" * 4096)
            raise _Crash
    monkeypatch.setattr(ckpt, "save", save)
    with pytest.raises(_Crash):
        ld.simulate_sgd(*args, checkpoint=path, checkpoint_every=0, **run)
    monkeypatch.undo()
    # per recorded step: K·2d trajectory values, K loss values, and the statistics
    # (count, mean 2d, cov and fourth moments (2d)², four displacement moments), float32
    per_slot = 4 * (32 * 8 + 32 + 1 + 8 + 2 * 64 + 4)
    main_sizes = [m for m, _ in sizes]     # grows only by the list of appended blocks
    assert all(0 < b - a < 400 for a, b in itertools.pairwise(main_sizes)), main_sizes
    assert main_sizes[0] < 30000           # state, sampler state and window sums (K = 32, d = 4)
    with np.load(path) as stored_arrays:   # no record inside the checkpoint itself
        assert not [f for f in stored_arrays.files
                    if 41 in stored_arrays[f].shape or 64 in stored_arrays[f].shape]
    side_sizes = [k for _, k in sizes]
    slots = [ckpt.peek(str(path))["step"] // 10 + 1]
    assert all(b > a for a, b in itertools.pairwise(side_sizes))   # it grows, save by save
    assert side_sizes[-1] == slots[0] * per_slot
    assert os.path.getsize(side) == slots[0] * per_slot + 4096     # stray bytes past the end
    resumed = ld.simulate_sgd(*args, checkpoint=path, **run)
    assert os.path.getsize(side) == 41 * per_slot                  # … cut off
    np.testing.assert_array_equal(resumed.trajectories, reference.trajectories)
    np.testing.assert_array_equal(resumed.traces["loss"], reference.traces["loss"])
    for name in ("mean", "cov", "displacement", "stationary_cov", "stationary_lag_cov"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(reference, name), name)
    np.testing.assert_array_equal(resumed.stderr.cov, reference.stderr.cov)
    again = ld.simulate_sgd(*args, checkpoint=path, **run)          # finished: read back
    np.testing.assert_array_equal(again.trajectories, reference.trajectories)
    np.testing.assert_array_equal(again.cov, reference.cov)

    raw = bytearray(side.read_bytes())                              # a flipped byte is found
    raw[per_slot * 3 + 5] ^= 0xFF
    side.write_bytes(bytes(raw))
    with pytest.raises(ckpt.CheckpointError, match="fails its integrity check"):
        ld.simulate_sgd(*args, checkpoint=path, **run)
    side.write_bytes(bytes(raw[:per_slot * 7]))                     # so is a truncated one
    with pytest.raises(ckpt.CheckpointError, match="vouches for"):
        ld.simulate_sgd(*args, checkpoint=path, **run)
    side.unlink()                                                   # and a missing one
    with pytest.raises(ckpt.CheckpointError, match="missing"):
        ld.simulate_sgd(*args, checkpoint=path, **run)


def test_a_damaged_side_file_in_a_run_directory_is_set_aside_with_its_checkpoint(tmp_path):
    prob, hp = _problem()
    args = (prob, hp, KEY, 16, 100)
    run = {"record": np.arange(0, 101, 10), "keep_trajectories": True}
    reference = ld.simulate_sgd(*args, **run)
    with ckpt.auto_checkpoints(str(tmp_path)):
        ld.simulate_sgd(*args, **run)
    side = tmp_path / "run-000.npz.kept"
    side.write_bytes(b"\x01" + side.read_bytes()[1:])
    with ckpt.auto_checkpoints(str(tmp_path)) as scope, pytest.warns(ckpt.CheckpointWarning):
        healed = ld.simulate_sgd(*args, **run)
    assert len(scope.set_aside) == 1 and "integrity" in scope.set_aside[0]["reason"]
    assert (tmp_path / "run-000.npz.bad-1").exists()
    assert (tmp_path / "run-000.npz.kept.bad-1").exists()
    np.testing.assert_array_equal(healed.trajectories, reference.trajectories)
    np.testing.assert_array_equal(healed.cov, reference.cov)
