"""B1: SGD-with-momentum ensembles on linear regression, side by side in one process.

Sizes (defaults): N = 1024 examples, d = 64, batch S = 32, K = 4096 trajectories,
η = 0.05, β = 0.9, 1000 steps for the limitdyn runs (so that the fixed cost of the default
statistics' ~180 events weighs as in a real run), float32, threefry2x32.

Contenders, run alternately (round-robin, ``--repeats`` rounds; the median of each is
reported with the process's CPU time per step (all threads) and the load average at the
start and the end):

* ``limitdyn_iid``          — ``ld.simulate_sgd`` with its defaults: iid batches (no repeats),
                              the default statistics (50 log-spaced records of the mean and
                              covariance of (θ, v) with standard errors, displacements, ~64
                              window samples with lag-one pairs);
* ``limitdyn_iid_nostats``  — the same kernel recording nothing but the last step;
* ``limitdyn_replacement``, ``limitdyn_reshuffle`` — the other samplers, default statistics;
* ``user_randint``          — what one writes by hand in 30 lines: ``optax.sgd(momentum)``
                              vmapped over trajectories inside ``lax.scan``, batches with
                              replacement from ``jax.random.randint`` with the keys
                              fold_in(key_i, k); no statistics;
* ``user_randint_stats``    — the same loop also recording the mean and covariance of
                              (θ, v) at limitdyn's recorded steps and the window covariance
                              (a subset of limitdyn's statistics);
* ``floor``                 — limitdyn's own step (sampler and tiled gather–gradient–update,
                              :meth:`limitdyn.dynamics.HeavyBall.batched_step`) in a bare
                              ``fori_loop``, sharded as limitdyn shards: no events, no
                              statistics, no divergence check;
* ``numpy``                 — a vectorised numpy loop (replacement batches, no statistics).

Footnote contender (few steps, slow): ``optax_choice``, the same optax loop with batches
from ``jax.random.choice(..., replace=False)`` (a sort per batch).

The whole comparison runs twice: in this process (one CPU device, the default) and in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` where limitdyn
shards the trajectories over both devices (its default there) while the user's loop runs
as written. Writes ``benchmarks/results/sgd_linreg.json`` and prints markdown tables.

    python benchmarks/sgd_linreg.py            # full size
    python benchmarks/sgd_linreg.py --quick    # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import limitdyn as ld
from limitdyn import sgd
from limitdyn.dynamics import HeavyBall

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import environment, table


def user_loop(prob, hp, n_traj, n_steps, batch_fn, record_steps=None, window_steps=None):
    """A straightforward optax + vmap + scan ensemble (optionally with statistics)."""
    opt = optax.chain(optax.add_decayed_weights(hp.weight_decay),
                      optax.sgd(hp.lr, momentum=hp.momentum))
    X, y = prob.X, prob.y
    stats = record_steps is not None

    def loss(params, idx):
        return 0.5 * jnp.mean((X[idx] @ params - y[idx]) ** 2)

    def traj_step(params, opt_state, key):
        g = jax.grad(loss)(params, batch_fn(key))
        updates, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    if stats:
        is_record = jnp.zeros(n_steps + 1, bool).at[record_steps].set(True)
        slot_of = jnp.zeros(n_steps + 1, jnp.int32).at[record_steps].set(
            jnp.arange(len(record_steps), dtype=jnp.int32))
        in_window = jnp.zeros(n_steps + 1, bool).at[window_steps].set(True)
    dim2 = 2 * prob.dim

    def moments(params, opt_state):
        x = jnp.concatenate([params, -opt_state[1][0].trace], axis=-1)
        mean = x.mean(0)
        c = x - mean[None, :]
        return mean, c.T @ c / (n_traj - 1)

    @jax.jit
    def run(key, theta0):
        params = jnp.broadcast_to(theta0, (n_traj, prob.dim))
        opt_state = jax.vmap(opt.init)(params)
        traj_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(n_traj))
        acc = ((jnp.zeros((len(record_steps), dim2)), jnp.zeros((len(record_steps), dim2, dim2)),
                jnp.zeros((dim2, dim2))) if stats else ())

        def body(carry, k):
            params, opt_state, acc = carry
            keys = jax.vmap(jax.random.fold_in, (0, None))(traj_keys, k)
            params, opt_state = jax.vmap(traj_step)(params, opt_state, keys)
            if stats:
                def record(acc):
                    mean, cov = moments(params, opt_state)
                    return (acc[0].at[slot_of[k + 1]].set(mean),
                            acc[1].at[slot_of[k + 1]].set(cov), acc[2])

                def window(acc):
                    return acc[0], acc[1], acc[2] + moments(params, opt_state)[1]

                acc = lax.cond(is_record[k + 1], record, lambda a: a, acc)
                acc = lax.cond(in_window[k + 1], window, lambda a: a, acc)
            return (params, opt_state, acc), None

        (params, opt_state, acc), _ = lax.scan(body, (params, opt_state, acc),
                                               jnp.arange(n_steps))
        return params, acc

    return run


def floor_loop(prob, hp, n_traj, n_steps):
    """limitdyn's step alone: HeavyBall.batched_step (iid) in a bare fori_loop, the
    trajectories sharded over every device as limitdyn shards them."""
    params = (prob, jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), hp))
    devices = jax.devices()
    along = None
    if len(devices) > 1 and n_traj % len(devices) == 0:
        along = NamedSharding(Mesh(np.array(devices), ("traj",)), P("traj"))
    dynamics = HeavyBall("iid", prob.n_examples, hp.batch_size,
                         devices=1 if along is None else len(devices))

    def run(traj_keys, theta):
        state = sgd.State(theta, jnp.zeros_like(theta))
        aux = jax.vmap(dynamics.init_aux)(traj_keys)

        def body(k, carry):
            return dynamics.batched_step(traj_keys, *carry, k, params)

        return lax.fori_loop(0, n_steps, body, (state, aux))[0]

    def arguments(key, theta0):
        traj_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(n_traj))
        theta = jnp.broadcast_to(theta0, (n_traj, prob.dim))
        if along is not None:
            traj_keys, theta = jax.device_put((traj_keys, theta), along)
        return traj_keys, theta

    return jax.jit(run), arguments


def numpy_loop(prob, hp, n_traj, n_steps, seed=0):
    """Heavy-ball SGD over (K, d) numpy arrays, one vectorised gather-gradient per step."""
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


def _sizes(args) -> str:
    return (f"N={args.n}, d={args.d}, S={args.batch}, K={args.traj}, lr=0.05, momentum=0.9, "
            f"{args.steps} steps (limitdyn, user loops, floor), float32")


def measure(args, with_extras: bool) -> dict:
    """Every contender, round-robin; returns rows (ms/step, run and compile seconds)."""
    key = jax.random.key(0)
    prob = ld.LinearRegression.synthetic(key, n=args.n, d=args.d)
    hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=args.batch)
    theta0 = jnp.asarray(prob.minimiser())
    run_key = jax.random.key(1)
    n, s, steps = args.n, args.batch, args.steps
    randint = lambda k: jax.random.randint(k, (s,), 0, n)  # noqa: E731
    choice = lambda k: jax.random.choice(k, n, (s,), replace=False)  # noqa: E731
    nothing = {"record": [steps], "burn_in": steps}

    def simulate(sampling, extra):
        def go():
            c0 = time.process_time()
            res = ld.simulate_sgd(prob, hp, run_key, args.traj, steps, sampling=sampling,
                                  check_stability=False, progress=False, **extra)
            cpu = time.process_time() - c0
            return res.metadata["run_seconds"], res.metadata["compile_seconds"], cpu
        return go

    reference = ld.simulate_sgd(prob, hp, run_key, args.traj, steps, check_stability=False,
                                progress=False)
    rec = jnp.asarray(reference.steps)
    window = jnp.arange(steps // 2, steps + 1, reference.config["window_every"])

    def compiled(fn, *a):
        t0 = time.perf_counter()
        exe = fn.lower(*a).compile()
        compile_s = time.perf_counter() - t0

        def go():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(exe(*a))
            return time.perf_counter() - t0, compile_s, time.process_time() - c0
        return go

    floor, floor_args = floor_loop(prob, hp, args.traj, steps)
    contenders = {
        "limitdyn_iid": (simulate("iid", {}), steps),
        "limitdyn_iid_nostats": (simulate("iid", nothing), steps),
        "limitdyn_replacement": (simulate("replacement", {}), steps),
        "limitdyn_reshuffle": (simulate("reshuffle", {}), steps),
        "user_randint": (compiled(user_loop(prob, hp, args.traj, steps, randint),
                                  run_key, theta0), steps),
        "user_randint_stats": (compiled(user_loop(prob, hp, args.traj, steps, randint, rec,
                                                  window), run_key, theta0), steps),
        "floor": (compiled(floor, *floor_args(run_key, theta0)), steps),
    }
    if with_extras:
        contenders["optax_choice"] = (compiled(user_loop(prob, hp, args.traj,
                                                         args.choice_steps, choice),
                                               run_key, theta0), args.choice_steps)
        def numpy_run():
            c0 = time.process_time()
            run_s = numpy_loop(prob, hp, args.traj, args.numpy_steps)
            return run_s, 0.0, time.process_time() - c0
        contenders["numpy"] = (numpy_run, args.numpy_steps)
    times = {name: [] for name in contenders}
    cpu = {name: [] for name in contenders}
    compile_s = {}
    for name, (go, _) in contenders.items():      # warm: compile and one run each
        compile_s[name] = go()[1]
    compile_s["limitdyn_iid"] = reference.metadata["compile_seconds"]
    load_start = os.getloadavg()
    for _ in range(args.repeats):
        for name, (go, _) in contenders.items():
            run_s, _, cpu_s = go()
            times[name].append(run_s)
            cpu[name].append(cpu_s)
    load_end = os.getloadavg()
    rows = {}
    for name, (_, n_steps) in contenders.items():
        run_s = statistics.median(times[name])
        rows[name] = {"n_steps": n_steps, "run_seconds": run_s, "run_seconds_min": min(times[name]),
                      "compile_seconds": compile_s[name], "ms_per_step": 1e3 * run_s / n_steps,
                      "cpu_ms_per_step": 1e3 * statistics.median(cpu[name]) / n_steps,
                      "traj_steps_per_second": args.traj * n_steps / run_s}
        print(f"  {name:<22} {rows[name]['ms_per_step']:8.2f} ms/step", flush=True)
    return {"results": rows, "ratios": ratios(rows), "load_start": load_start,
            "load_end": load_end, "devices": [str(d) for d in jax.devices()]}


def ratios(rows: dict) -> dict:
    ms = {k: v["ms_per_step"] for k, v in rows.items()}
    out = {"user_randint / limitdyn_iid": ms["user_randint"] / ms["limitdyn_iid"],
           "user_randint_stats / limitdyn_iid": ms["user_randint_stats"] / ms["limitdyn_iid"],
           "limitdyn_iid / floor": ms["limitdyn_iid"] / ms["floor"],
           "limitdyn_iid / limitdyn_replacement": ms["limitdyn_iid"] / ms["limitdyn_replacement"],
           "limitdyn_reshuffle / limitdyn_iid": ms["limitdyn_reshuffle"] / ms["limitdyn_iid"],
           "limitdyn_iid / limitdyn_iid_nostats": ms["limitdyn_iid"] / ms["limitdyn_iid_nostats"]}
    if "numpy" in ms:
        out["numpy / limitdyn_iid"] = ms["numpy"] / ms["limitdyn_iid"]
    if "optax_choice" in ms:
        out["optax_choice / limitdyn_iid"] = ms["optax_choice"] / ms["limitdyn_iid"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--traj", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--choice-steps", type=int, default=10,
                        help="steps for the slow jax.random.choice loop (rates are per step)")
    parser.add_argument("--numpy-steps", type=int, default=20,
                        help="steps for the numpy loop (rates are per step)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--devices", type=int, default=2,
                        help="also measure in a subprocess with this many forced host "
                             "devices (0: skip)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "sgd_linreg.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.d, args.batch, args.traj = 128, 8, 16, 256
        args.steps, args.choice_steps, args.numpy_steps, args.repeats = 60, 5, 5, 1
    if args.child:                                  # the forced-devices measurement
        data = measure(args, with_extras=False)
        with open(args.child, "w") as fh:
            json.dump(data, fh)
        return data

    print(f"B1 sgd_linreg: {_sizes(args)}; {jax.devices()}", flush=True)
    one = measure(args, with_extras=True)
    many = None
    if args.devices > 1:
        print(f"B1 with {args.devices} forced host devices (subprocess)", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "child.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--child", path,
                   *(f"--{k.replace('_', '-')}={v}" for k, v in
                     (("n", args.n), ("d", args.d), ("batch", args.batch),
                      ("traj", args.traj), ("steps", args.steps),
                      ("repeats", args.repeats)))]
            env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_"
                                              f"host_platform_device_count={args.devices}"))
            subprocess.run(cmd, check=True, env=env)
            with open(path) as fh:
                many = json.load(fh)
    out = {"benchmark": "B1 sgd_linreg", "sizes": _sizes(args), "params": vars(args),
           "results": one["results"], "ratios": one["ratios"],
           "load": {"start": one["load_start"], "end": one["load_end"]},
           "environment": environment(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if many is not None:
        out["forced_devices"] = {"count": args.devices, "devices": many["devices"],
                                 "results": many["results"], "ratios": many["ratios"],
                                 "load": {"start": many["load_start"], "end": many["load_end"]}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    for title, part in (("1 device", out), (f"{args.devices} devices", out.get("forced_devices"))):
        if part is None:
            continue
        print(f"\n{title}: {_sizes(args)}")
        print(table(["contender", "ms/step", "traj-steps/s", "compile s"],
                    [[k, r["ms_per_step"], r["traj_steps_per_second"], r["compile_seconds"]]
                     for k, r in part["results"].items()]))
        print("\n".join(f"{k}: {v:.2f}" for k, v in part["ratios"].items()))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
