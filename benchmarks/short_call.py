"""B12: the cost outside the kernel of a short ``simulate_sgd`` call.

A 50-step call at d = 64 (N = 1024, S = 32, K = 4096, iid batches, the default statistics
and the default stability pre-check) is made three times; from the second call on the
kernel is compiled and the stability check cached, so the wall time should be close to the
kernel's own run time (``result.metadata["run_seconds"]``). Writes
``benchmarks/results/short_call.json``.

    python benchmarks/short_call.py            # the sizes above
    python benchmarks/short_call.py --quick    # K = 256 (a smoke test)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

import limitdyn as ld

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import table, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    n_traj = 256 if args.quick else 4096
    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=1024, d=args.d)
    hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
    calls = []
    for i in range(3):
        t0 = time.perf_counter()
        res = ld.simulate_sgd(prob, hp, jax.random.key(i), n_traj, args.steps, progress=False)
        jax.block_until_ready(res.cov)
        wall = time.perf_counter() - t0
        calls.append({"wall_seconds": wall, "run_seconds": res.metadata["run_seconds"],
                      "compile_seconds": res.metadata["compile_seconds"],
                      "wall / run": wall / res.metadata["run_seconds"]})
    print(table(["call", "wall s", "kernel run s", "compile s", "wall / kernel"],
                [[i + 1, c["wall_seconds"], c["run_seconds"], c["compile_seconds"],
                  c["wall / run"]] for i, c in enumerate(calls)]))
    write("short_call", {"benchmark": "B12 short_call", "n_traj": n_traj, "d": args.d,
                         "n_steps": args.steps, "calls": calls,
                         "ratios": {"second call: wall / kernel": calls[1]["wall / run"],
                                    "third call: wall / kernel": calls[2]["wall / run"]}},
          args.out)


if __name__ == "__main__":
    main()
