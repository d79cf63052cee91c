"""B11: wall time of ``limitdyn run validate`` at its defaults, today against an earlier commit.

Each run is a fresh process through the command line a user types (install excluded), the
versions alternating A B A B …; the earlier package is taken from git (``git archive REV
limitdyn``) into a temporary directory and run from there. Today's version runs twice per
round: at the command line's default (one host device per core) and with
``LIMITDYN_HOST_DEVICES=1`` (one device, as the earlier commit ran), so that the gain of the
code and the gain of the second core are told apart. Writes
``benchmarks/results/validate_wall.json``.

    python benchmarks/validate_wall.py --rev 0da6551     # the last landed commit before issue 20
    python benchmarks/validate_wall.py --quick           # --quick runs of validate (a smoke test)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import package_at, table, write  # noqa: E402


def one_run(pythonpath: str | None, env_extra: dict, quick: bool, workdir: str,
            tag: str) -> dict:
    out = os.path.join(workdir, f"{tag}-{time.monotonic_ns()}")
    env = dict(os.environ, **env_extra)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "limitdyn.cli", "run", "validate", "--out", out, "--quiet"]
    if quick:
        cmd.append("--quick")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          cwd=pythonpath or workdir)
    wall = time.perf_counter() - t0
    return {"wall_seconds": wall, "exit_code": proc.returncode, "load_before": load,
            "stderr_tail": proc.stderr[-300:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="0da6551", help="the earlier commit")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "validate_wall.json"))
    args = parser.parse_args()
    old = package_at(args.rev)
    contenders = {f"{args.rev}": (old, {"LIMITDYN_HOST_DEVICES": "1"}),
                  "today, default (one device per core)": (None, {}),
                  "today, one device": (None, {"LIMITDYN_HOST_DEVICES": "1"})}
    runs: dict[str, list] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory() as work:
        for r in range(args.rounds):
            for name, (path, env) in contenders.items():
                res = one_run(path, env, args.quick, work, f"r{r}")
                runs[name].append(res)
                print(f"  round {r}: {name:40s} {res['wall_seconds']:7.1f} s "
                      f"(exit {res['exit_code']}, load {res['load_before']:.2f})", flush=True)
    results = {}
    for name, rs in runs.items():
        walls = [x["wall_seconds"] for x in rs]
        results[name] = {"wall_seconds": statistics.median(walls), "repeats": walls,
                         "exit_codes": [x["exit_code"] for x in rs],
                         "load_before": [x["load_before"] for x in rs]}
    base = results[args.rev]["wall_seconds"]
    ratios = {f"{args.rev} / {name}": base / results[name]["wall_seconds"]
              for name in results if name != args.rev}
    rows = [[n, f"{r['wall_seconds']:.1f}", " ".join(f"{w:.1f}" for w in r["repeats"]),
             ",".join(map(str, r["exit_codes"]))] for n, r in results.items()]
    print(table(["version", "median wall s", "each round", "exit codes"], rows))
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    write("validate_wall", {"benchmark": "B11 validate_wall", "rev": args.rev,
                            "quick": args.quick, "results": results, "ratios": ratios},
          args.out)


if __name__ == "__main__":
    main()
