"""B13: throughput at large ensembles and the float32 accuracy check, for an accelerator.

Runs on whatever backend JAX picks (a GPU when a CUDA build of jax is installed); on the
CPU it is a smoke test (``--quick``). Two parts:

* **throughput** — ``simulate_sgd`` (linear regression, N = 1024, d = 64, S = 32, iid
  batches, default statistics) and ``simulate_sde`` (d = 16, Euler–Maruyama, frozen noise,
  default statistics) at K = 2¹⁶ … 2²⁰ trajectories: trajectory-steps per second, compile
  time apart;
* **accuracy** — the stationary covariance of SGD at K = 2¹⁶ against the exact discrete
  theory (relative Frobenius error and its noise floor from the batch-means standard
  errors), once with the backend's default matmul precision and once with
  ``jax_default_matmul_precision="highest"`` (GPUs use TF32 for float32 matmuls by
  default, ~1e-3 relative error per product; the error should then sit at the floor only
  with "highest").

Writes ``benchmarks/results/gpu.json``.

    pip install -U "jax[cuda12]"                  # once, on the GPU machine
    python benchmarks/gpu.py                       # K = 2^16 … 2^20 (a few minutes on one GPU)
    python benchmarks/gpu.py --quick               # K = 2^8 … 2^10 (a smoke test, any backend)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import jax
import numpy as np

import limitdyn as ld
from limitdyn import theory

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import table, write  # noqa: E402


def _throughput(kind: str, n_traj: int, steps: int) -> dict:
    key = jax.random.key(0)
    hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
    if kind == "sgd":
        prob = ld.LinearRegression.synthetic(key, n=1024, d=64)

        def call():
            return ld.simulate_sgd(prob, hp, key, n_traj, steps, progress=False,
                                   check_stability=False)
    else:
        prob = ld.LinearRegression.synthetic(key, n=512, d=16)

        def call():
            return ld.simulate_sde(prob, hp, key, n_traj, steps, noise="frozen", solver="em",
                                   dt=hp.lr, progress=False)
    first = call()                       # compiles
    t0 = time.perf_counter()
    res = call()
    jax.block_until_ready(res.cov)
    wall = time.perf_counter() - t0
    run = res.metadata["run_seconds"]
    return {"kind": kind, "n_traj": n_traj, "steps": steps, "wall_seconds": wall,
            "run_seconds": run, "compile_seconds": first.metadata["compile_seconds"],
            "traj_steps_per_second": n_traj * steps / run}


def _accuracy(n_traj: int, steps: int, precision: str | None) -> dict:
    key = jax.random.key(1)
    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=1024, d=8)
    hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
    scope = jax.default_matmul_precision(precision) if precision else contextlib.nullcontext()
    with scope:
        res = ld.simulate_sgd(prob, hp, key, n_traj, steps, progress=False)
    want = theory.discrete_stationary_cov(prob, hp, sampling="iid")
    got, se = res.window_function(lambda cov, lag: cov)
    scale = np.linalg.norm(want)
    return {"precision": precision or "default", "n_traj": n_traj, "steps": steps,
            "relative_error": float(np.linalg.norm(got - want) / scale),
            "noise_floor": float(np.linalg.norm(se) / scale)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    exponents = range(8, 11) if args.quick else range(16, 21)
    steps = 20 if args.quick else args.steps
    print(f"B13 on {jax.devices()}", flush=True)
    rows = []
    for kind in ("sgd", "sde"):
        for e in exponents:
            r = _throughput(kind, 2 ** e, steps)
            rows.append(r)
            print(f"  {kind} K=2^{e}: {r['traj_steps_per_second']:.3g} traj-steps/s "
                  f"(compile {r['compile_seconds']:.1f} s)", flush=True)
    acc_traj = 2 ** exponents[0]
    acc_steps = 400 if args.quick else 4000
    accuracy = [_accuracy(acc_traj, acc_steps, p) for p in (None, "highest")]
    print(table(["kind", "K", "traj-steps/s", "run s", "compile s"],
                [[r["kind"], r["n_traj"], r["traj_steps_per_second"], r["run_seconds"],
                  r["compile_seconds"]] for r in rows]))
    print(table(["matmul precision", "K", "steps", "relative error", "noise floor"],
                [[a["precision"], a["n_traj"], a["steps"], a["relative_error"],
                  a["noise_floor"]] for a in accuracy]))
    write("gpu", {"benchmark": "B13 gpu", "backend": jax.default_backend(),
                  "quick": args.quick, "throughput": rows, "accuracy": accuracy}, args.out)


if __name__ == "__main__":
    main()
