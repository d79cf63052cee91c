"""B3: PRNG implementations — random numbers per second inside an ensemble kernel.

Sizes: K = 4096 trajectories, 16 normals (the SDE kernels) or 32 uint32 words (the
minibatch samplers, S = 32) per trajectory and step, 500 steps.

The kernel is what limitdyn's steps do: for K trajectories and step k, n numbers per
trajectory from ``fold_in(key_i, k)``, consumed by an update (a running sum or xor, so
nothing is optimised away), in a ``lax.fori_loop`` over steps. Normals: ``jax.random``
with each of threefry2x32, threefry4x32, philox2x32, philox4x32 (vmapped over trajectory
keys, as limitdyn's generic path does), and limitdyn's fused straight-line threefry2x32
(``limitdyn._prng.trajectory_normals``, bit-identical to the threefry2x32 row). Bits (what
the samplers draw): ``jax.random.bits`` vmapped, against ``limitdyn._prng.trajectory_bits``
(bit-identical).

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


def kernel(impl: str | None, n_traj: int, n: int, n_steps: int, bits: bool = False):
    """A jitted fori_loop drawing (K, n) normals (or uint32 words) per step; impl None =
    the fused path."""
    def draw(keys, k):
        if impl is None:
            if bits:
                return _prng.trajectory_bits(keys, k, n)
            return _prng.trajectory_normals(keys, k, n)
        sub = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, k)
        if bits:
            return jax.vmap(lambda key: jax.random.bits(key, (n,), jnp.uint32))(sub)
        return jax.vmap(lambda key: jax.random.normal(key, (n,)))(sub)

    dtype = jnp.uint32 if bits else jnp.float32

    @jax.jit
    def run(keys):
        def body(k, acc):
            return (acc ^ draw(keys, k)) if bits else (acc + draw(keys, k))
        return lax.fori_loop(0, n_steps, body, jnp.zeros((n_traj, n), dtype))

    key = jax.random.key(0, impl=impl or "threefry2x32")
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(n_traj))
    return run, keys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traj", type=int, default=4096)
    parser.add_argument("--normals", type=int, default=16, help="normals per trajectory-step")
    parser.add_argument("--words", type=int, default=32, help="uint32 words per trajectory-step")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.traj, args.steps, args.repeats = 256, 20, 1
    rows = {}
    contenders = [("fused_threefry2x32", None, False), *((i, i, False) for i in _prng.IMPLS),
                  ("fused_bits_threefry2x32", None, True), ("bits_threefry2x32", "threefry2x32",
                                                            True)]
    for name, impl, bits in contenders:
        per = args.words if bits else args.normals
        run, keys = kernel(impl, args.traj, per, args.steps, bits)
        t0 = time.perf_counter()
        compiled = run.lower(keys).compile()
        compile_s = time.perf_counter() - t0
        run_s = median_time(lambda c=compiled, k=keys: c(k), args.repeats)
        what = "words_per_second" if bits else "normals_per_second"
        rows[name] = {"compile_seconds": compile_s, "run_seconds": run_s,
                      what: args.traj * per * args.steps / run_s}
        print(f"  {name:<24} {rows[name][what]:.3g} {what.split('_')[0]}/s", flush=True)
    base = rows["threefry2x32"]["normals_per_second"]
    ratios = {f"{k} / threefry2x32": v["normals_per_second"] / base for k, v in rows.items()
              if "normals_per_second" in v}
    ratios["fused_bits_threefry2x32 / bits_threefry2x32"] = (
        rows["fused_bits_threefry2x32"]["words_per_second"]
        / rows["bits_threefry2x32"]["words_per_second"])
    print(table(["implementation", "numbers/s", "compile s"],
                [[k, v.get("normals_per_second", v.get("words_per_second")),
                  v["compile_seconds"]] for k, v in rows.items()]))
    print("\n".join(f"{k}: {v:.2f}" for k, v in ratios.items()))
    sizes = (f"K={args.traj}, {args.normals} normals or {args.words} uint32 words per "
             f"trajectory-step, {args.steps} steps")
    write("prng", {"benchmark": "B3 prng", "sizes": sizes, "params": vars(args),
                   "results": rows, "ratios": ratios}, args.out)


if __name__ == "__main__":
    main()
