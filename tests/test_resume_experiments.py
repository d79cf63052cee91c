"""kill -9 in the middle of an experiment that trains networks or runs the ML-noise SDE,
then ``limitdyn run --resume``: the finished ``data.npz`` equals the uninterrupted run's.

Every simulation of these experiments goes through the one runner, so each is
checkpointed between chunks (``DIR/checkpoints/run-NNN.npz``); the kill lands inside a
simulation after at least one earlier one has finished, so the resume both reuses
finished simulations and continues a partial one.
"""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from limitdyn import checkpoint as ckpt
from limitdyn import io


def _arrays(path):
    with np.load(path / "data.npz") as data:
        return {k: data[k] for k in data.files}


def _kill_mid_simulation(out, argv, deadline_s=600):
    """Start the run, SIGKILL it once a checkpoint after the first shows a simulation
    between two of its chunks (fallback: any partial checkpoint); return where."""
    proc = subprocess.Popen([sys.executable, "-m", "limitdyn.cli", *argv, "--out", str(out),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_in = None
    deadline = time.monotonic() + deadline_s
    try:
        while killed_in is None and proc.poll() is None and time.monotonic() < deadline:
            paths = sorted((out / "checkpoints").glob("run-*.npz"))
            for path in paths[1:] or paths:
                try:
                    stored = ckpt.peek(str(path))
                except ckpt.CheckpointError:
                    continue
                if 0 < stored["next_event"] < stored["n_events"]:
                    proc.send_signal(signal.SIGKILL)
                    killed_in = (path.name, stored["step"])
                    break
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()
    return killed_in, proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize("name", ["phase-diagram", "ml-noise", "limiting"])
def test_killed_experiment_resumes_to_the_uninterrupted_data(name, quick_run, tmp_path):
    ref_run, ref = quick_run(name)
    assert ref_run.returncode == 0, ref_run.stderr[-2000:]
    out = tmp_path / name
    killed_in, code = _kill_mid_simulation(out, ["run", name, "--quick", "--checkpoint-every",
                                                 "0"])
    assert killed_in is not None, "the run ended before it could be killed mid-simulation"
    assert code == -signal.SIGKILL
    assert io.inspect(str(out)).state == "partial"
    resumed = subprocess.run([sys.executable, "-m", "limitdyn.cli", "run", "--resume",
                              str(out), "--quiet"], capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == ref_run.returncode, resumed.stderr[-2000:]
    assert io.inspect(str(out)).state == "complete"
    got, want = _arrays(out), _arrays(ref)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key} (killed in "
                                      f"{killed_in})")
