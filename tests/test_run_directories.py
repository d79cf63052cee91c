"""Run directories are used literally, locked, and only what limitdyn wrote is ever removed
(issues 21 and 17): names with glob characters, spaces and non-ASCII letters beside
bystander directories those names match as patterns; --overwrite of a user's directory;
two writers on one --out."""

import fnmatch
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from limitdyn import checkpoint as ckpt
from limitdyn import cli, io

# Names that expand as glob patterns (and a space, and letters outside ASCII).
HOSTILE = ["r[ab]", "r*", "r?x", "r[ab] *? é", "rün dir", "ü*?[x]"]
# Neighbours that some of those patterns match: each is a complete-looking run directory.
BYSTANDERS = ["ra", "rb", "rax", "r-other", "üax", "ra x é", "rb 12 é"]
TINY = ["--set", "n_traj=128", "--set", "sde_n_traj=64", "--set", "n_steps=300",
        "--set", "sde_n_steps=200", "--set", "transient_steps=50", "--set", "n_lrs=3",
        "--set", "d=4", "--set", "n=64"]


def _snapshot(root) -> dict[str, str]:
    """Every file and link under ``root`` with its SHA-256 (links: their target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = "link:" + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as fh:
                    out[rel] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _make_bystander(path) -> None:
    """A directory that looks like a run directory, with files named like limitdyn's."""
    (path / "checkpoints").mkdir(parents=True)
    ckpt.save(str(path / "checkpoints" / "run-000.npz"), (np.zeros(3),), 1, 1, 5, "other run")
    for name, text in [("run.json", '{"experiment": "validate"}'), ("summary.json", "{}"),
                       ("keep.tmp-42", "a file of another directory"),
                       (f"data.npz.tmp-{os.getpid()}", "not this run's"),
                       ("notes.txt", "precious")]:
        (path / name).write_text(text)
    (path / io.LEDGER).write_text(json.dumps({
        "limitdyn": "run-directory", "format": 1, "writers": [42, os.getpid()],
        "files": ["run.json", "summary.json", "keep", "data.npz", "checkpoints/run-000.npz"]}))
    (path / "checkpoints" / f"run-000.npz.tmp-{os.getpid()}").write_text("not this run's")


@pytest.fixture
def neighbourhood(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    for name in BYSTANDERS:
        _make_bystander(root / name)
    return root


def _bystanders(root) -> dict[str, str]:
    return {name: _snapshot(root / name) for name in BYSTANDERS}


@pytest.mark.parametrize("name", HOSTILE)
def test_every_run_directory_operation_takes_its_path_literally(neighbourhood, name):
    root = neighbourhood
    if any(c in name for c in "[]*?"):      # the neighbours really are matched by the name
        assert any(fnmatch.fnmatchcase(b, name) for b in BYSTANDERS), name
    before = _bystanders(root)
    target = str(root / name)

    run = io.RunDirectory(target, {"experiment": "validate", "seed": 0, "quick": True,
                                   "config": {}})
    with ckpt.auto_checkpoints(run.checkpoints, register=run.register) as scope:
        path = scope.next_path()
    ckpt.save(path, (np.ones(3),), 2, 2, 7, "this run")
    run.write_text("report.md", "partial")
    pid = run.ledger["writers"][0]
    (root / name / f"report.md.tmp-{pid}").write_text("left by a kill")
    (root / name / "checkpoints" / f"run-000.npz.tmp-{pid}").write_text("left by a kill")
    run.close()

    progress = ckpt.progress_of(os.path.join(target, "checkpoints"))
    assert [p["file"] for p in progress] == ["run-000.npz"] and progress[0]["step"] == 7
    status = io.inspect(target)
    assert status.state == "partial" and "1 simulation(s) finished" in status.detail
    resumed = io.RunDirectory(target, resume=True)          # removes its writers' temporaries
    resumed.close()
    assert not [f for f in os.listdir(target) if ".tmp-" in f]
    assert not [f for f in os.listdir(os.path.join(target, "checkpoints")) if ".tmp-" in f]
    again = io.RunDirectory(target, {"experiment": "validate"}, overwrite=True)
    assert sorted(os.listdir(target)) == sorted([io.LEDGER, io.LOCK, "run.json", "checkpoints"])
    again.discard()          # it did not make the directory: it leaves it, empty
    assert os.listdir(target) == []
    assert _bystanders(root) == before


def _kill_when_second_simulation_started(proc, out, deadline_s=300):
    """SIGKILL ``proc`` once its run directory holds checkpoints of two simulations."""
    deadline = time.monotonic() + deadline_s
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if os.path.exists(os.path.join(out, "checkpoints", "run-001.npz")):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode


def _data(path):
    with np.load(os.path.join(path, "data.npz")) as data:
        return {k: data[k] for k in data.files}


def _same_data(got, want, note=""):
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-12,
                                   err_msg=f"{key} {note}")


def test_cli_run_kill_show_resume_overwrite_with_a_glob_name_touch_no_neighbour(
        neighbourhood, capsys):
    """Issue 21: `r[ab] *? é` beside `ra`, `rb`, `ra x é`, …: run (killed with -9), show,
    --resume, --overwrite and show again give the results of a plain name, and every
    bystander file stays byte-identical."""
    root = neighbourhood
    before = _bystanders(root)
    plain, hostile = str(root / "plain"), str(root / "r[ab] *? é")
    assert cli.main(["run", "validate", "--quick", "--quiet", "--out", plain, *TINY]) == 0
    reference = _data(plain)

    # The killed run finishes its first simulation in the subprocess: give it this
    # process's device count (the CLI would take one per core), so that the sums over
    # trajectories run in the same order as the in-process reference's.
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count="
                                     f"{jax.device_count()}")
    proc = subprocess.Popen([sys.executable, "-m", "limitdyn.cli", "run", "validate",
                             "--quick", "--quiet", "--out", hostile, *TINY,
                             "--checkpoint-every", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    assert _kill_when_second_simulation_started(proc, hostile) == -signal.SIGKILL
    assert _bystanders(root) == before
    capsys.readouterr()
    assert cli.main(["show", hostile]) == 1
    shown = capsys.readouterr().out
    assert "partial (resumable)" in shown and "run-000.npz: step" in shown
    assert "error" not in shown and "set aside" not in shown

    assert cli.main(["run", "--resume", hostile, "--quiet"]) == 0
    _same_data(_data(hostile), reference, "(resumed)")
    assert cli.main(["show", hostile]) == 0
    assert "status: complete" in capsys.readouterr().out
    assert _bystanders(root) == before

    assert cli.main(["run", "validate", "--quick", "--quiet", "--out", hostile, "--overwrite",
                     *TINY]) == 0
    _same_data(_data(hostile), reference, "(overwritten)")
    assert io.inspect(hostile).state == "complete"
    assert _bystanders(root) == before


def test_overwrite_never_removes_a_users_files(tmp_path, capsys):
    """Issue 17: a user's project directory that happens to hold a summary.json (and a
    run.json, a COMPLETE, a checkpoints/ folder): --overwrite refuses with one line and every
    file survives byte for byte."""
    project = tmp_path / "thesis"
    (project / "checkpoints").mkdir(parents=True)
    (project / "figures").mkdir()
    files = {"notes.txt": b"my notes\n", "thesis.tex": b"\\documentclass{article}\n",
             "summary.json": b'{"experiment": "validate", "passed": true}',
             "run.json": b'{"experiment": "validate", "seed": 0}', "COMPLETE": b"{}",
             "data.npz": b"not limitdyn's", "report.md": b"# my report",
             "checkpoints/run-000.npz": b"mine", "figures/fig1.png": b"\x89PNG",
             "data.npz.tmp-42": b"mine too"}
    for name, content in files.items():
        (project / name).write_bytes(content)
    os.symlink(project / "thesis.tex", project / "link.tex")
    before = _snapshot(project)
    for extra in ([], ["--quiet"]):
        code = cli.main(["run", "validate", "--quick", "--out", str(project), "--overwrite",
                         *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and len(err) <= 301, err
        assert "not a limitdyn run directory" in err and "Traceback" not in err
        assert _snapshot(project) == before
    # show and --resume read it, and refuse to write there
    assert cli.main(["run", "--resume", str(project)]) == 2
    assert "no limitdyn marker" in capsys.readouterr().err
    assert _snapshot(project) == before


def test_overwrite_of_a_run_removes_only_what_the_run_listed(tmp_path):
    out = tmp_path / "run"
    run = io.RunDirectory(str(out), {"experiment": "validate"})
    run.write_text("report.md", "old report")
    run.close()
    (out / "notes.txt").write_text("added by the user")
    (out / "checkpoints" / "mine.txt").write_text("added by the user")
    again = io.RunDirectory(str(out), {"experiment": "validate"}, overwrite=True)
    again.close()
    assert (out / "notes.txt").read_text() == "added by the user"
    assert (out / "checkpoints" / "mine.txt").read_text() == "added by the user"
    assert not (out / "report.md").exists()


@pytest.mark.parametrize("damage", ["listed file is a symlink", "checkpoints is a symlink",
                                    "listed file is a directory", "ledger lists ../x"])
def test_overwrite_refuses_a_run_directory_changed_into_something_else(tmp_path, damage):
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run-000.npz").write_text("precious")
    (elsewhere / "report.md").write_text("precious")
    (tmp_path / "x").write_text("precious")
    run = io.RunDirectory(str(out), {"experiment": "validate"})
    with ckpt.auto_checkpoints(run.checkpoints, register=run.register) as scope:
        scope.next_path()
    run.write_text("report.md", "old")
    run.close()
    if damage == "listed file is a symlink":
        (out / "report.md").unlink()
        os.symlink(elsewhere / "report.md", out / "report.md")
    elif damage == "checkpoints is a symlink":
        (out / "checkpoints").rmdir()
        os.symlink(elsewhere, out / "checkpoints")
    elif damage == "listed file is a directory":
        (out / "report.md").unlink()
        (out / "report.md").mkdir()
        (out / "report.md" / "inside.txt").write_text("precious")
    else:
        ledger = json.loads((out / io.LEDGER).read_text())
        ledger["files"].append("../x")
        (out / io.LEDGER).write_text(json.dumps(ledger))
    before = _snapshot(tmp_path)
    with pytest.raises(io.OutputError) as err:
        io.RunDirectory(str(out), {"experiment": "validate"}, overwrite=True)
    assert "\n" not in str(err.value) and str(out) in str(err.value)
    assert _snapshot(tmp_path) == before


def test_out_that_is_a_symlink_is_refused_with_and_without_overwrite(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep.txt").write_text("precious")
    os.symlink(real, tmp_path / "link")
    for extra in ([], ["--overwrite"]):
        code = cli.main(["run", "validate", "--quick", "--out", str(tmp_path / "link"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and "is a symbolic link" in err and err.count("\n") == 1
    assert os.listdir(real) == ["keep.txt"]


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    out = str(tmp_path / "run")
    first = io.RunDirectory(out, {"experiment": "validate"})
    with pytest.raises(io.BusyError, match=r"in use by another limitdyn process \(pid \d+\)"):
        io.RunDirectory(out, resume=True)
    with pytest.raises(io.BusyError):
        io.RunDirectory(out, {"experiment": "validate"}, overwrite=True)
    with pytest.raises(io.BusyError):
        io.check_target(out, overwrite=True)
    assert io.lock_holder(out) == os.getpid()
    first.close()
    assert io.lock_holder(out) is None
    io.RunDirectory(out, resume=True).close()


def test_the_lock_dies_with_its_process(tmp_path):
    out = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from limitdyn import io; "
        f"r = io.RunDirectory({out!r}, {{'experiment': 'validate'}}); "
        "print('locked', flush=True); time.sleep(120)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert io.lock_holder(out) == holder.pid
        with pytest.raises(io.BusyError, match=f"pid {holder.pid}"):
            io.RunDirectory(out, resume=True)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
        holder.wait()
    assert io.lock_holder(out) is None
    io.RunDirectory(out, resume=True).close()


def test_two_concurrent_runs_to_one_out(tmp_path, capsys):
    """Issue 17: two `limitdyn run` processes started together on one --out: one finishes
    complete, the other is refused with one line; show says complete, hashes verified."""
    out = str(tmp_path / "shared")
    argv = [sys.executable, "-m", "limitdyn.cli", "run", "validate", "--quick", "--quiet",
            "--out", out, *TINY]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for p in procs:
        _, stderr = p.communicate(timeout=600)
        results.append((p.returncode, stderr))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert refused.count("\n") == 1 and "Traceback" not in refused
    assert "in use by another limitdyn process" in refused, refused
    assert cli.main(["show", out]) == 0
    assert "complete (files verified" in capsys.readouterr().out
    status = io.inspect(out)
    assert status.state == "complete" and status.running is None
    assert not [f for f in os.listdir(out) if ".tmp-" in f]


def test_show_says_a_run_is_being_written(tmp_path, capsys):
    out = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from limitdyn import io; "
        f"r = io.RunDirectory({out!r}, {{'experiment': 'validate', 'seed': 0, 'quick': True, "
        "'config': {}}); print('locked', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli.main(["show", out]) == 1
        assert f"being written now by process {holder.pid}" in capsys.readouterr().out
        assert cli.main(["run", "--resume", out]) == 2
        err = capsys.readouterr().err
        assert "in use by another limitdyn process" in err and err.count("\n") == 1
    finally:
        holder.kill()
        holder.wait()


def test_resume_accepts_flags_that_agree_with_the_run(quick_validate, capsys):
    """Issue 16: `--resume DIR --seed N` with the run's own seed (and other agreeing flags)
    is accepted; only conflicting values are refused."""
    _, ref = quick_validate
    manifest = json.loads((ref / "run.json").read_text())
    agreeing = ["--seed", str(manifest["seed"]), "--quick", "--set",
                f"lr={manifest['config']['lr']}", "--set",
                "spectrum=[{}, {}]".format(*manifest["config"]["spectrum"]), "--out", str(ref)]
    assert cli.main(["run", "--resume", str(ref), *agreeing]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    for argv, message in [(["--seed", str(manifest["seed"] + 11)], "drop --seed"),
                          (["--set", "n_traj=2048"], "n_traj=2048 (the run has 1024)"),
                          (["--out", str(ref) + "-other"], "drop --out"),
                          (["--overwrite"], "give one of them")]:
        assert cli.main(["run", "--resume", str(ref), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
