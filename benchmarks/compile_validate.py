"""B7: compile time of ``limitdyn run validate`` — how much of the main job is compilation.

Runs the CLI in a fresh subprocess (no warm caches) and reads the compile and run seconds
that every run directory records in ``summary.json`` (``timings``), next to the wall time.

    python benchmarks/compile_validate.py [--quick]    # --quick: `validate --quick`
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table, write


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="time `validate --quick`")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "validate")
        cmd = [sys.executable, "-m", "limitdyn.cli", "run", "validate", "--out", out, "--quiet",
               *(["--quick"] if args.quick else [])]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        process_seconds = time.perf_counter() - t0
        with open(os.path.join(out, "summary.json")) as fh:
            timings = json.load(fh)["timings"]
    row = dict(timings, process_seconds=process_seconds,
               compile_fraction=timings["compile_seconds"] / timings["wall_seconds"])
    print(table(["compile s", "kernel run s", "wall s (in process)", "process s",
                 "compile / wall"],
                [[row["compile_seconds"], row["run_seconds"], row["wall_seconds"],
                  process_seconds, row["compile_fraction"]]]))
    write("compile_validate", {"benchmark": "B7 compile time of limitdyn run validate",
                               "params": vars(args), "results": {"validate": row}}, args.out)


if __name__ == "__main__":
    main()
