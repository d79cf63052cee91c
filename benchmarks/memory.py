"""B5: memory — peak resident set size of a run at 10³ against 10⁵ steps.

Each size runs in a fresh subprocess (peak RSS is per process), with the default
statistics (50 log-spaced records, window after burn-in): SGD on linear regression
(N = 1024, d = 64, S = 32) and the SDE (Euler–Maruyama, frozen noise, d = 64), K = 256.
Streaming statistics make the memory independent of the number of steps; the target is
peak(10⁵)/peak(10³) <= 1.1.

    python benchmarks/memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table, write

CHILD = """
import resource, sys, json, jax, limitdyn as ld
steps, traj, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
prob = ld.LinearRegression.synthetic(jax.random.key(0), n=1024, d=64 if kind == "sgd" else 16)
hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
if kind == "sgd":
    res = ld.simulate_sgd(prob, hp, jax.random.key(1), traj, steps, progress=False)
else:
    res = ld.simulate_sde(prob, hp, jax.random.key(1), traj, steps, noise="frozen",
                          solver="em", dt=hp.lr, progress=False)
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "run_seconds": res.metadata["run_seconds"]}))
"""


def measure(steps: int, traj: int, kind: str) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(traj), kind],
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traj", type=int, default=256)
    parser.add_argument("--short", type=int, default=10**3)
    parser.add_argument("--long", type=int, default=10**5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.traj, args.short, args.long = 64, 10, 100
    rows, ratios = {}, {}
    for kind in ("sgd", "sde"):
        for steps in (args.short, args.long):
            rows[f"{kind}_{steps}"] = measure(steps, args.traj, kind) | {"steps": steps}
            print(f"  {kind} {steps} steps: {rows[f'{kind}_{steps}']['peak_rss_mib']:.0f} MiB",
                  flush=True)
        peak = {s: rows[f"{kind}_{s}"]["peak_rss_mib"] for s in (args.short, args.long)}
        ratios[f"{kind}: peak RSS {args.long} / {args.short} steps"] = (
            peak[args.long] / peak[args.short])
    print(table(["run", "steps", "peak RSS MiB", "run s"],
                [[k, v["steps"], v["peak_rss_mib"], v["run_seconds"]] for k, v in rows.items()]))
    print("\n".join(f"{k}: {v:.3f}" for k, v in ratios.items()))
    write("memory", {"benchmark": "B5 memory", "params": vars(args), "results": rows,
                     "ratios": ratios}, args.out)


if __name__ == "__main__":
    main()
