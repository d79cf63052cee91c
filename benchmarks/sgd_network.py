"""B8: SGD-with-momentum continuations of the ``limiting`` MLP, side by side in one process.

The network of ``limitdyn run limiting`` (digits, FCN width 32, depth 2, 2368 parameters,
cross-entropy, N = 1347 training examples), K continuations of η = 0.01, β = 0.9,
λ = 5e-4, S = 32 from one point. Contenders:

* ``limitdyn``        — ``ld.simulate_sgd`` on ``ld.nn.FlaxProblem`` (iid batches, the
                        default statistics: for d > 256 the mean, displacements and window
                        averages, no covariance);
* ``limitdyn_repl``   — the same with ``sampling="replacement"`` (the batches a user's
                        ``randint`` loop draws);
* ``limitdyn_repl_nostats`` — the same kernel recording only the last step (what the
                        user's loop records);
* ``optax``           — what one writes by hand: ``optax.chain(add_decayed_weights, sgd)``
                        vmapped over K trajectories inside ``lax.scan``, batches from
                        ``jax.random.randint``, on the flax pytree, recording nothing.

Repeats are interleaved (A B C A B C …) and the median is taken; compile time separately.
Writes ``benchmarks/results/sgd_network.json``.

    python benchmarks/sgd_network.py            # K = 256, 2000 steps
    python benchmarks/sgd_network.py --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import limitdyn as ld
from limitdyn import limiting as lim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table, write


def optax_loop(net, n_traj, n_steps, lr, momentum, weight_decay, batch_size):
    """A straightforward optax + vmap + scan ensemble on the flax parameter pytree."""
    opt = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum))
    x, y, n = net.x, net.y, net.n

    def loss(params, idx):
        out = net.model.apply({"params": params}, x[idx])
        return -jnp.mean(jnp.sum(y[idx] * jax.nn.log_softmax(out), axis=-1))

    def traj_step(params, state, key):
        idx = jax.random.randint(key, (batch_size,), 0, n)
        g = jax.grad(loss)(params, idx)
        upd, state = opt.update(g, state, params)
        return optax.apply_updates(params, upd), state

    @jax.jit
    def run(key, params0):
        params = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_traj, *a.shape)), params0)
        state = jax.vmap(opt.init)(params)
        keys = jax.random.split(key, n_traj)

        def body(carry, k):
            params, state = carry
            ks = jax.vmap(jax.random.fold_in, (0, None))(keys, k)
            return jax.vmap(traj_step)(params, state, ks), None

        return lax.scan(body, (params, state), jnp.arange(n_steps))[0][0]

    return run


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-traj", type=int, default=256)
    # 2000 steps: the default statistics have ~180 events whatever the length (50 records,
    # 64 window samples and their lag partners), so a short run overstates their share
    # (the limiting experiment runs 4000 steps)
    parser.add_argument("--n-steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_traj, args.n_steps, args.repeats = 16, 40, 1
    K, T = args.n_traj, args.n_steps
    net, theta0 = lim.make_network("digits", "fcn", width=32, depth=2)
    hp = ld.Hyper(lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=32)
    key = jax.random.key(0)

    def limitdyn(sampling, **kw):
        def run():
            res = ld.simulate_sgd(net.problem, hp, key, K, T, sampling=sampling, theta0=theta0,
                                  check_stability=False, progress=False, **kw)
            return res.metadata
        return run

    user = optax_loop(net, K, T, hp.lr, hp.momentum, hp.weight_decay, hp.batch_size)
    params0 = net.unravel(jnp.asarray(theta0))
    t0 = time.perf_counter()
    jax.block_until_ready(user(key, params0))
    user_compile = time.perf_counter() - t0

    contenders = {"limitdyn": limitdyn("iid"), "limitdyn_repl": limitdyn("replacement"),
                  "limitdyn_repl_nostats": limitdyn("replacement", record=[T], burn_in=T)}
    compile_s = {}
    for name, fn in contenders.items():
        compile_s[name] = fn()["compile_seconds"]           # first call: compile + run
    compile_s["optax"] = user_compile
    times = {name: [] for name in (*contenders, "optax")}
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            times[name].append(fn()["run_seconds"])
        t0 = time.perf_counter()
        jax.block_until_ready(user(key, params0))
        times["optax"].append(time.perf_counter() - t0)
    results = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        results[name] = {"seconds": med, "traj_steps_per_second": K * T / med,
                         "ms_per_step": 1e3 * med / T, "compile_seconds": compile_s[name],
                         "repeats": ts}
    ratios = {"limitdyn_vs_optax": results["optax"]["seconds"] / results["limitdyn"]["seconds"],
              "limitdyn_replacement_vs_optax": results["optax"]["seconds"]
              / results["limitdyn_repl"]["seconds"],
              "limitdyn_replacement_nostats_vs_optax": results["optax"]["seconds"]
              / results["limitdyn_repl_nostats"]["seconds"]}
    rows = [[name, r["ms_per_step"], r["traj_steps_per_second"], r["compile_seconds"]]
            for name, r in results.items()]
    print(table(["contender", "ms/step", "traj-steps/s", "compile s"], rows))
    print({k: round(v, 3) for k, v in ratios.items()})
    write("sgd_network", {"benchmark": "B8 sgd_network", "n_traj": K, "n_steps": T,
                          "n_params": net.n_params, "n_train": net.n,
                          "hyper": hp.to_dict(), "results": results, "ratios": ratios,
                          "quick": args.quick}, args.out)
    return results, ratios


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
