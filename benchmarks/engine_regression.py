"""B9: today's engine against the engine of an earlier commit, interleaved in one process.

The earlier package is taken from git (``git archive REV limitdyn``) into a temporary
directory and imported as ``limitdyn_pre``; its core modules import each other relatively,
so both versions live side by side. The kernels of B1 (SGD, iid batches, N = 1024, d = 64,
S = 32, K = 4096), B2 (SDE Euler–Maruyama and BAOAB, d = 16, K = 4096, dt = η) and B4
(SGD and SDE with the default statistics and with none) run alternately A B A B …; the
median run time of each is compared (compile time is excluded: warm kernels).
Writes ``benchmarks/results/engine_regression.json``.

    python benchmarks/engine_regression.py --rev cc1415e       # the engine before issue 14
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys

import jax

import limitdyn as ld

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import package_at, table, write  # noqa: E402


def load_previous(rev: str):
    """The limitdyn package at git revision ``rev``, imported as ``limitdyn_pre``."""
    tmp = package_at(rev, "limitdyn-pre-")
    os.rename(os.path.join(tmp, "limitdyn"), os.path.join(tmp, "limitdyn_pre"))
    sys.path.insert(0, tmp)
    return importlib.import_module("limitdyn_pre")


def cases(pkg, quick: bool):
    K = 256 if quick else 4096
    steps_sgd, steps_sde = (50, 100) if quick else (200, 1000)
    sgd_prob = pkg.LinearRegression.synthetic(jax.random.key(0), n=1024, d=64)
    sde_prob = pkg.LinearRegression.synthetic(jax.random.key(0), n=512, d=16)
    hp = pkg.Hyper(lr=0.05, momentum=0.9, batch_size=32)
    key = jax.random.key(1)
    nothing_sgd = {"record": [steps_sgd], "burn_in": steps_sgd, "progress": False}
    nothing_sde = {"record": [steps_sde], "burn_in": steps_sde, "progress": False}
    return {
        "B1 sgd iid": lambda: pkg.simulate_sgd(sgd_prob, hp, key, K, steps_sgd,
                                               check_stability=False, progress=False),
        "B2 sde em": lambda: pkg.simulate_sde(sde_prob, hp, key, K, steps_sde, noise="frozen",
                                              solver="em", dt=hp.lr, progress=False),
        "B2 sde baoab": lambda: pkg.simulate_sde(sde_prob, hp, key, K, steps_sde,
                                                 noise="frozen", solver="baoab", dt=hp.lr,
                                                 progress=False),
        "B4 sgd nothing": lambda: pkg.simulate_sgd(sgd_prob, hp, key, K, steps_sgd,
                                                   check_stability=False, **nothing_sgd),
        "B4 sde nothing": lambda: pkg.simulate_sde(sde_prob, hp, key, K, steps_sde,
                                                   noise="frozen", solver="em", dt=hp.lr,
                                                   **nothing_sde),
    }


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--rev", default="cc1415e")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    pre = load_previous(args.rev)
    old, new = cases(pre, args.quick), cases(ld, args.quick)
    for fn in (*old.values(), *new.values()):        # compile everything first
        fn()
    times = {name: {"previous": [], "now": []} for name in new}
    for _ in range(args.repeats):
        for name in new:
            times[name]["previous"].append(old[name]().metadata["run_seconds"])
            times[name]["now"].append(new[name]().metadata["run_seconds"])
    rows, results = [], {}
    for name, t in times.items():
        a, b = statistics.median(t["previous"]), statistics.median(t["now"])
        results[name] = {"previous_seconds": a, "now_seconds": b, "now_over_previous": b / a,
                         "repeats": t}
        rows.append([name, a, b, b / a])
    print(table(["kernel", f"{args.rev} s", "now s", "now / previous"], rows))
    write("engine_regression", {"benchmark": "B9 engine_regression", "rev": args.rev,
                                "results": results, "quick": args.quick}, args.out)
    return results


if __name__ == "__main__":
    main()
