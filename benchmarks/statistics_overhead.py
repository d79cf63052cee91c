"""B4: the cost of statistics — recording at log-spaced steps against recording nothing.

Same kernel, same K, same steps; only the statistics schedule differs:

* ``nothing``  — one record at the last step, no window (burn_in = n_steps): the kernel
                 alone plus one final reduction;
* ``default``  — what ``simulate_sgd`` does by default: 50 log-spaced records, ~64 window
                 samples after burn-in with their lag-one pairs;
* ``dense``    — 200 log-spaced records and a window sample at every step of the last half.

Both for SGD (linear regression, N = 1024, d = 64, S = 32) and for the SDE (Euler–Maruyama,
frozen noise, d = 16: the cheapest step, where statistics weigh most). Run time is the
kernel's own ``run_seconds`` (warm, compile cached), median over interleaved repeats.

    python benchmarks/statistics_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import jax

import limitdyn as ld

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table, write

SCHEDULES = {
    "nothing": lambda n: {"record": [n], "burn_in": n},
    "default": lambda n: {},
    "dense": lambda n: {"n_record": 200, "window_every": 1},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traj", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.traj, args.steps, args.repeats = 128, 40, 1
    key = jax.random.key(0)
    sgd_prob = ld.LinearRegression.synthetic(key, n=1024, d=64)
    sde_prob = ld.LinearRegression.synthetic(key, n=512, d=16)
    hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
    kinds = {
        "sgd": lambda **kw: ld.simulate_sgd(sgd_prob, hp, key, args.traj, args.steps, **kw),
        "sde": lambda **kw: ld.simulate_sde(sde_prob, hp, key, args.traj, args.steps,
                                            noise="frozen", solver="em", dt=hp.lr, **kw),
    }
    rows, ratios = {}, {}
    for kind, simulate in kinds.items():
        times = {name: [] for name in SCHEDULES}
        compile_s = {}
        for name, schedule in SCHEDULES.items():
            compile_s[name] = simulate(**schedule(args.steps)).metadata["compile_seconds"]
        for _ in range(args.repeats):                 # interleaved: drifts hit all alike
            for name, schedule in SCHEDULES.items():
                times[name].append(simulate(**schedule(args.steps)).metadata["run_seconds"])
        for name in SCHEDULES:
            run_s = statistics.median(times[name])
            rows[f"{kind}_{name}"] = {"run_seconds": run_s, "compile_seconds": compile_s[name],
                                      "ms_per_step": 1e3 * run_s / args.steps}
        base = rows[f"{kind}_nothing"]["run_seconds"]
        for name in ("default", "dense"):
            ratios[f"{kind}: {name} / nothing"] = rows[f"{kind}_{name}"]["run_seconds"] / base
    print(table(["run", "ms/step", "compile s"],
                [[k, v["ms_per_step"], v["compile_seconds"]] for k, v in rows.items()]))
    print("\n".join(f"{k}: {v:.3f}" for k, v in ratios.items()))
    write("statistics_overhead", {"benchmark": "B4 statistics overhead", "params": vars(args),
                                  "results": rows, "ratios": ratios}, args.out)


if __name__ == "__main__":
    main()
