"""B3: PRNG implementations — standard normals per second inside an ensemble kernel.

The kernel is what limitdyn's SDE steps do: for K trajectories and step k, n normals per
trajectory from ``fold_in(key_i, k)``, consumed by an update (a running sum, so nothing is
optimised away), in a ``lax.fori_loop`` over steps. Contenders: ``jax.random`` with each of
threefry2x32, threefry4x32, philox2x32, philox4x32 (vmapped over trajectory keys, as
limitdyn's generic path does), and limitdyn's fused straight-line threefry2x32
(``limitdyn._prng.trajectory_normals``, bit-identical to the threefry2x32 row).

    python benchmarks/prng.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
from jax import lax

from limitdyn import _prng

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median_time, table, write


def kernel(impl: str | None, n_traj: int, n: int, n_steps: int):
    """A jitted fori_loop drawing (K, n) normals per step; impl None = the fused path."""
    def normals(keys, k):
        if impl is None:
            return _prng.trajectory_normals(keys, k, n)
        sub = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, k)
        return jax.vmap(lambda key: jax.random.normal(key, (n,)))(sub)

    @jax.jit
    def run(keys):
        def body(k, acc):
            return acc + normals(keys, k)
        return lax.fori_loop(0, n_steps, body, jnp.zeros((n_traj, n), jnp.float32))

    key = jax.random.key(0, impl=impl or "threefry2x32")
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(n_traj))
    return run, keys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traj", type=int, default=4096)
    parser.add_argument("--normals", type=int, default=16, help="normals per trajectory-step")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.traj, args.steps, args.repeats = 256, 20, 1
    rows = {}
    for name, impl in (("fused_threefry2x32", None), *((i, i) for i in _prng.IMPLS)):
        run, keys = kernel(impl, args.traj, args.normals, args.steps)
        t0 = time.perf_counter()
        compiled = run.lower(keys).compile()
        compile_s = time.perf_counter() - t0
        run_s = median_time(lambda c=compiled, k=keys: c(k), args.repeats)
        rows[name] = {"compile_seconds": compile_s, "run_seconds": run_s,
                      "normals_per_second": args.traj * args.normals * args.steps / run_s}
        print(f"  {name:<20} {rows[name]['normals_per_second']:.3g} normals/s", flush=True)
    base = rows["threefry2x32"]["normals_per_second"]
    ratios = {f"{k} / threefry2x32": v["normals_per_second"] / base for k, v in rows.items()}
    print(table(["implementation", "normals/s", "vs jax threefry2x32", "compile s"],
                [[k, v["normals_per_second"], v["normals_per_second"] / base,
                  v["compile_seconds"]] for k, v in rows.items()]))
    write("prng", {"benchmark": "B3 prng", "params": vars(args), "results": rows,
                   "ratios": ratios}, args.out)


if __name__ == "__main__":
    main()
