"""The wall times the README quotes, measured: every experiment at its defaults and with
``--quick``, each in a fresh process through the command line a user types.

    python benchmarks/readme_times.py                 # all experiments (~15 min on 2 cores)
    python benchmarks/readme_times.py --only validate --quick-only

Writes ``benchmarks/results/readme_times.json`` (wall seconds, exit code, the run's own
compile/run split, machine load before each run) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import table, write  # noqa: E402

EXPERIMENTS = ("validate", "diffusion", "phase-diagram", "sharpness", "ml-noise", "limiting")


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def measure(name: str, quick: bool, workdir: str) -> dict:
    out = os.path.join(workdir, f"{name}{'-quick' if quick else ''}")
    cmd = [sys.executable, "-m", "limitdyn.cli", "run", name, "--out", out, "--quiet"]
    if quick:
        cmd.append("--quick")
    load = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    row = {"experiment": name, "quick": quick, "wall_seconds": wall, "exit_code": proc.returncode,
           "load_before": load}
    try:
        with open(os.path.join(out, "summary.json")) as fh:
            summary = json.load(fh)
        row.update({k: summary.get(k) for k in ("compile_seconds", "run_seconds")})
        row["passed"] = summary.get("passed")
    except (OSError, ValueError):
        row["stderr"] = proc.stderr[-2000:]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=list(EXPERIMENTS))
    parser.add_argument("--quick-only", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="write the runs under DIR and keep them (to look at the figures)")
    args = parser.parse_args(argv)
    rows = []
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    with (contextlib.nullcontext(args.keep) if args.keep
          else tempfile.TemporaryDirectory()) as workdir:
        for name in args.only:
            for quick in ((True,) if args.quick_only else (True, False)):
                rows.append(measure(name, quick, workdir))
                r = rows[-1]
                print(f"{name}{' --quick' if quick else ''}: {r['wall_seconds']:.0f} s, exit "
                      f"{r['exit_code']}", flush=True)
    print(table(["experiment", "--quick", "wall s", "exit", "load"],
                [[r["experiment"], r["quick"], r["wall_seconds"], r["exit_code"],
                  r["load_before"]] for r in rows]))
    write("readme_times", {"benchmark": "readme_times", "rows": rows}, args.out)
    return rows


if __name__ == "__main__":
    main()
