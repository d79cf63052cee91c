"""B1: SGD-with-momentum ensembles on linear regression, side by side in one process.

Contenders (N = 1024, d = 64, S = 32, K = 4096 by default), all with the same statistics
(mean and covariance of (θ, v) at log-spaced steps, the window covariance after burn-in):

* ``limitdyn``          — ``ld.simulate_sgd`` (iid batches without repeats, Floyd's algorithm);
* ``optax_choice``      — what one writes by hand: ``optax.chain(add_decayed_weights, sgd)``
                          vmapped over trajectories inside ``lax.scan``, batches from
                          ``jax.random.choice(..., replace=False)``;
* ``optax_floyd``       — the same optax loop with limitdyn's sampler, isolating the sampler;
* ``numpy``             — a vectorised numpy loop over the (K, d) state (batches drawn with
                          replacement by ``Generator.integers``, no statistics: favours it);
* ``floor``             — the bare batched gather-gradient step, no statistics, no optimiser
                          state beyond (θ, v): the cost of the arithmetic itself.

Compile time and run time are separate; run time is the median of ``--repeats`` runs.
Writes ``benchmarks/results/sgd_linreg.json`` and prints a markdown table.

    python benchmarks/sgd_linreg.py            # full size
    python benchmarks/sgd_linreg.py --quick    # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax
from jax import lax

import limitdyn as ld
from limitdyn import _meta, samplers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median_time as _time


def optax_loop(prob, hp, n_traj, n_steps, record_steps, window_steps, batch_fn):
    """A straightforward optax + vmap + scan ensemble computing the same statistics."""
    opt = optax.chain(optax.add_decayed_weights(hp.weight_decay),
                      optax.sgd(hp.lr, momentum=hp.momentum))
    X, y = prob.X, prob.y

    def loss(params, idx):
        return 0.5 * jnp.mean((X[idx] @ params - y[idx]) ** 2)

    def traj_step(params, opt_state, key):
        g = jax.grad(loss)(params, batch_fn(key))
        updates, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    is_record = jnp.zeros(n_steps + 1, bool).at[record_steps].set(True)
    slot_of = jnp.zeros(n_steps + 1, jnp.int32).at[record_steps].set(
        jnp.arange(len(record_steps), dtype=jnp.int32))
    in_window = jnp.zeros(n_steps + 1, bool).at[window_steps].set(True)
    dim2 = 2 * prob.dim

    def stats(params, opt_state):
        x = jnp.concatenate([params, -opt_state[1][0].trace], axis=-1)
        mean = x.mean(0)
        y_ = x - mean[None, :]
        return mean, y_.T @ y_ / (n_traj - 1)

    @jax.jit
    def run(key, theta0):
        params = jnp.broadcast_to(theta0, (n_traj, prob.dim))
        opt_state = jax.vmap(opt.init)(params)
        traj_keys = jax.random.split(key, n_traj)
        acc = (jnp.zeros((len(record_steps), dim2)), jnp.zeros((len(record_steps), dim2, dim2)),
               jnp.zeros((dim2, dim2)))

        def body(carry, k):
            params, opt_state, acc = carry
            keys = jax.vmap(jax.random.fold_in, (0, None))(traj_keys, k)
            params, opt_state = jax.vmap(traj_step)(params, opt_state, keys)

            def record(acc):
                mean, cov = stats(params, opt_state)
                return (acc[0].at[slot_of[k + 1]].set(mean), acc[1].at[slot_of[k + 1]].set(cov),
                        acc[2])

            def window(acc):
                return acc[0], acc[1], acc[2] + stats(params, opt_state)[1]

            acc = lax.cond(is_record[k + 1], record, lambda a: a, acc)
            acc = lax.cond(in_window[k + 1], window, lambda a: a, acc)
            return (params, opt_state, acc), None

        (params, opt_state, acc), _ = lax.scan(body, (params, opt_state, acc), jnp.arange(n_steps))
        return acc

    return run


def floor_loop(prob, hp, n_traj, n_steps, batch_fn):
    X, y = prob.X, prob.y

    @jax.jit
    def run(key, theta0):
        theta = jnp.broadcast_to(theta0, (n_traj, prob.dim))
        v = jnp.zeros_like(theta)
        traj_keys = jax.random.split(key, n_traj)

        def body(carry, k):
            theta, v = carry
            keys = jax.vmap(jax.random.fold_in, (0, None))(traj_keys, k)
            idx = jax.vmap(batch_fn)(keys)                       # (K, S)
            Xb = X[idx]                                          # (K, S, d)
            r = jnp.einsum("ksd,kd->ks", Xb, theta) - y[idx]
            g = jnp.einsum("ksd,ks->kd", Xb, r) / idx.shape[1]
            v = hp.momentum * v - g - hp.weight_decay * theta
            return (theta + hp.lr * v, v), None

        return lax.scan(body, (theta, v), jnp.arange(n_steps))[0]

    return run


def numpy_loop(prob, hp, n_traj, n_steps, seed=0):
    """Heavy-ball SGD over (K, d) numpy arrays, one vectorised gather-gradient per step."""
    import numpy as np

    X, y = np.asarray(prob.X), np.asarray(prob.y)
    n, d = X.shape
    rng = np.random.default_rng(seed)
    theta = np.broadcast_to(np.asarray(prob.minimiser(), X.dtype), (n_traj, d)).copy()
    v = np.zeros_like(theta)
    lr, beta, s = np.float32(hp.lr), np.float32(hp.momentum), hp.batch_size
    t0 = time.perf_counter()
    for _ in range(n_steps):
        idx = rng.integers(0, n, size=(n_traj, s))
        xb = X[idx]                                              # (K, S, d)
        resid = np.einsum("ksd,kd->ks", xb, theta) - y[idx]
        grad = np.einsum("ksd,ks->kd", xb, resid) / s
        v = beta * v - grad
        theta = theta + lr * v
    return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--traj", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--choice-steps", type=int, default=20,
                        help="steps for the slow jax.random.choice baseline (rates are per step)")
    parser.add_argument("--numpy-steps", type=int, default=20,
                        help="steps for the numpy loop (rates are per step)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "sgd_linreg.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.d, args.batch, args.traj = 128, 8, 16, 256
        args.steps, args.choice_steps, args.numpy_steps = 50, 10, 5
        args.repeats = 1

    key = jax.random.key(0)
    prob = ld.LinearRegression.synthetic(key, n=args.n, d=args.d)
    hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=args.batch)
    theta0 = jnp.asarray(prob.minimiser())
    floyd = samplers.iid(args.n, args.batch)
    floyd_fn = lambda k: floyd.next(k, (), 0)[0]  # noqa: E731
    choice_fn = lambda k: jax.random.choice(k, args.n, (args.batch,), replace=False)  # noqa: E731
    rows = {}

    def record(name, n_steps, compile_s, run_s):
        rows[name] = {"n_steps": n_steps, "compile_seconds": compile_s, "run_seconds": run_s,
                      "traj_steps_per_second": args.traj * n_steps / run_s,
                      "ms_per_step": 1e3 * run_s / n_steps}
        print(f"  {name:<14} compile {compile_s:6.2f} s   {rows[name]['ms_per_step']:8.2f} ms/step",
              flush=True)

    print(f"B1 sgd_linreg: N={args.n} d={args.d} S={args.batch} K={args.traj} on "
          f"{jax.devices()[0]}", flush=True)
    # limitdyn
    res = ld.simulate_sgd(prob, hp, key, n_traj=args.traj, n_steps=args.steps)
    runs = [ld.simulate_sgd(prob, hp, key, n_traj=args.traj, n_steps=args.steps).metadata[
        "run_seconds"] for _ in range(args.repeats)]
    record("limitdyn", args.steps, res.metadata["compile_seconds"], statistics.median(runs))
    record_steps = jnp.asarray(res.steps)
    window_steps = jnp.arange(args.steps // 2, args.steps + 1, res.config["window_every"])
    # the baselines
    for name, fn, n_steps in (("optax_floyd", floyd_fn, args.steps),
                              ("optax_choice", choice_fn, args.choice_steps)):
        rec = record_steps[record_steps <= n_steps]
        win = window_steps[window_steps <= n_steps]
        loop = optax_loop(prob, hp, args.traj, n_steps, rec, win, fn)
        t0 = time.perf_counter()
        compiled = loop.lower(key, theta0).compile()
        compile_s = time.perf_counter() - t0
        record(name, n_steps, compile_s, _time(lambda c=compiled: c(key, theta0), args.repeats))
    loop = floor_loop(prob, hp, args.traj, args.steps, floyd_fn)
    t0 = time.perf_counter()
    compiled = loop.lower(key, theta0).compile()
    record("floor", args.steps, time.perf_counter() - t0,
           _time(lambda: compiled(key, theta0), args.repeats))

    record("numpy", args.numpy_steps, 0.0,
           statistics.median(numpy_loop(prob, hp, args.traj, args.numpy_steps)
                             for _ in range(args.repeats)))

    rate = {k: v["traj_steps_per_second"] for k, v in rows.items()}
    ratios = {"limitdyn_vs_optax_choice": rate["limitdyn"] / rate["optax_choice"],
              "limitdyn_vs_optax_floyd": rate["limitdyn"] / rate["optax_floyd"],
              "limitdyn_vs_numpy": rate["limitdyn"] / rate["numpy"],
              "floor_vs_limitdyn": rate["floor"] / rate["limitdyn"]}
    out = {"benchmark": "B1 sgd_linreg", "params": vars(args) | {"lr": hp.lr,
                                                               "momentum": hp.momentum},
           "environment": _meta.environment(key), "results": rows, "ratios": ratios,
           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print("\n| contender | ms/step | traj-steps/s | compile s |\n|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['ms_per_step']:.2f} | {r['traj_steps_per_second']:.3g} | "
              f"{r['compile_seconds']:.2f} |")
    print("\n" + "\n".join(f"{k}: {v:.2f}x" for k, v in ratios.items()))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
