"""``limitdyn`` command line.

    limitdyn list
    limitdyn run validate [--quick] [--seed N] [--n-traj K] [--out DIR] [--quiet]

Exit codes: 0 success, 1 a validation verdict failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

EXPERIMENTS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {}


def experiment(name: str, description: str):
    def register(fn):
        EXPERIMENTS[name] = (description, fn)
        return fn
    return register


@experiment("validate", "discrete SGD ensembles (iid, replacement) against the exact discrete "
                        "theory: stationary covariance and transient moments, with noise floors")
def run_validate(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    import limitdyn as ld

    n_traj = args.n_traj or (1024 if args.quick else 4096)
    n, d = (256, 8) if args.quick else (512, 16)
    n_steps = 600 if args.quick else 2000
    key = jax.random.key(args.seed)
    prob = ld.LinearRegression.synthetic(jax.random.fold_in(key, 0), n=n, d=d, spectrum=(0.2, 1.0))
    hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=32)
    say = (lambda *a: None) if args.quiet else print
    say(f"limitdyn {ld.__version__} validate: {prob!r}, {hp}, {n_traj} trajectories, "
        f"{n_steps} steps (seed {args.seed})")
    summary: dict[str, Any] = {"experiment": "validate", "seed": args.seed, "quick": args.quick,
                               "n_traj": n_traj, "n_steps": n_steps, "hyper": hp.to_dict(),
                               "n": n, "d": d, "tables": {}}
    passed = True
    for i, sampling in enumerate(("iid", "replacement")):
        res = ld.simulate_sgd(prob, hp, jax.random.fold_in(key, 1 + i), n_traj=n_traj,
                              n_steps=n_steps, sampling=sampling, progress=not args.quiet)
        table = ld.compare(res, ld.theory.discrete_stationary_cov(prob, hp, sampling=sampling))
        say(f"\nstationary covariance, sampling={sampling} "
            f"(compile {res.metadata['compile_seconds']:.1f} s, "
            f"run {res.metadata['run_seconds']:.1f} s)")
        say(table)
        summary["tables"][f"stationary_{sampling}"] = table.to_dicts()
        passed &= table.passed
    theta0 = np.asarray(prob.minimiser()) + 1.0 / np.sqrt(d)
    res = ld.simulate_sgd(prob, hp, jax.random.fold_in(key, 9), n_traj=n_traj, n_steps=200,
                          theta0=theta0, n_record=8, progress=not args.quiet)
    table = ld.compare(res, ld.theory.discrete_moments(prob, hp, res.steps, theta0))
    say("\ntransient mean and covariance from a displaced start, sampling=iid")
    say(table)
    summary["tables"]["transient_iid"] = table.to_dicts()
    passed &= table.passed
    summary["passed"] = bool(passed)
    summary["environment"] = res.metadata
    say(f"\nvalidate: {'PASS' if passed else 'FAIL'}")
    if args.out:
        _write_json(os.path.join(args.out, "summary.json"), summary)
        say(f"wrote {os.path.join(args.out, 'summary.json')}")
    return 0 if passed else 1


def _write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, default=str)
    os.replace(tmp, path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="limitdyn", description="SGD-with-momentum ensembles, "
                                     "their Langevin limits, and exact theory.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser("run", help="run an experiment")
    run.add_argument("experiment", help="experiment name (see `limitdyn list`)")
    run.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    run.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    run.add_argument("--n-traj", type=int, default=None, help="number of trajectories")
    run.add_argument("--out", default=None, help="directory for summary.json")
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        for name, (description, _) in EXPERIMENTS.items():
            print(f"{name:<12} {description}")
        return 0
    if args.experiment not in EXPERIMENTS:
        print(f"limitdyn: unknown experiment {args.experiment!r}; choose from "
              f"{', '.join(EXPERIMENTS)}", file=sys.stderr)
        return 2
    if args.n_traj is not None and args.n_traj < 2:
        print(f"limitdyn: --n-traj must be an integer >= 2, got {args.n_traj}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    code = EXPERIMENTS[args.experiment][1](args)
    if not args.quiet:
        print(f"({time.perf_counter() - t0:.1f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
