"""B2: SDE ensembles of the Ornstein–Uhlenbeck limit of SGD, side by side in one process.

Linear regression (N = 512, d = 16), η = 0.05, β = 0.9, S = 32, constant ``frozen`` noise,
K = 4096 trajectories, 1000 SGD steps with one integrator step per SGD step (dt = η).
Contenders:

* ``limitdyn_em``        — ``ld.simulate_sde(solver="em")``, underdamped Langevin, with its
                           default statistics (log-spaced records, window after burn-in);
* ``limitdyn_baoab``     — the same with ``solver="baoab"``;
* ``limitdyn_exact``     — ``solver="exact"`` (2d normals per step);
* ``limitdyn_sme_em``    — ``model="sme", solver="em"``, the first-order OU;
* ``diffrax_vmap_euler`` — what one writes with diffrax: ``jax.vmap`` over trajectories of a
                           ``diffeqsolve`` of the same underdamped system, ``Euler()``, an
                           ``UnsafeBrownianPath`` per trajectory, final state only. It computes
                           **no statistics**, which favours it;
* ``hand_em``            — a hand-written ``lax.scan`` Euler–Maruyama over (K, d) arrays, one
                           ``jax.random.normal((K, d))`` per step, no statistics;
* ``floor_no_rng``       — the same update with a fixed array in place of the normals: the
                           cost of the arithmetic itself.

Compile time and run time are separate. The contenders run in ``--repeats`` interleaved
rounds (each once per round, so load drifts on a shared machine hit all alike); run time is
the median over rounds and each ratio the median of same-round ratios. For limitdyn the run
time is the kernel's own ``metadata["run_seconds"]`` of warm calls (compile cached), which
excludes the host-side setup; the warm call's wall time is recorded as ``call_seconds``.
Writes ``benchmarks/results/sde_ou.json`` and prints a markdown table.

    python benchmarks/sde_ou.py            # full size
    python benchmarks/sde_ou.py --quick    # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import limitdyn as ld
from limitdyn import _meta
from limitdyn.sde import sde_params

NOISE = "frozen"
LIMITDYN = (("limitdyn_em", "langevin", "em"), ("limitdyn_baoab", "langevin", "baoab"),
            ("limitdyn_exact", "langevin", "exact"), ("limitdyn_sme_em", "sme", "em"))


def constants(prob, hp, dtype=jnp.float32):
    """The Langevin constants of limitdyn's EM kernel: a, 2γ, a√η, H + λI, μ, F (FFᵀ = C)."""
    _, p = sde_params(prob, hp, "langevin", "em", NOISE, sampling="iid", sigma2=None,
                      dt=hp.lr, dtype=dtype)
    return {"force": p["force"], "friction": p["friction"], "amp": p["noise_amp"],
            "curv": p["curvature"], "mu": p["mu"], "factor": p["noise"]["factor"],
            "dt": p["dt"]}


def em_update(c, theta, v, z):
    """One batched Euler–Maruyama step of the underdamped system; z (K, d) standard normals."""
    dt = c["dt"]
    force = (theta - c["mu"][None, :]) @ c["curv"]         # H + λI is symmetric
    kick = z @ c["factor"].T
    v_new = v - (c["friction"] * v + c["force"] * force) * dt + c["amp"] * jnp.sqrt(dt) * kick
    return theta + v * dt, v_new


def hand_em(c, n_traj, n_steps):
    @jax.jit
    def run(key, theta0):
        theta = jnp.broadcast_to(theta0, (n_traj, theta0.shape[0]))

        def body(carry, k):
            theta, v = carry
            z = jax.random.normal(jax.random.fold_in(key, k), theta.shape, theta.dtype)
            return em_update(c, theta, v, z), None

        return lax.scan(body, (theta, jnp.zeros_like(theta)), jnp.arange(n_steps))[0]

    return run


def floor_no_rng(c, n_traj, n_steps):
    @jax.jit
    def run(z, theta0):
        theta = jnp.broadcast_to(theta0, (n_traj, theta0.shape[0]))
        return lax.fori_loop(0, n_steps, lambda k, s: em_update(c, *s, z),
                             (theta, jnp.zeros_like(theta)))

    return run


def diffrax_vmap_euler(c, n_traj, n_steps):
    """vmap over trajectories of one diffeqsolve each, y = (θ, v) stacked into (2d,)."""
    d = c["mu"].shape[0]
    diff = jnp.concatenate([jnp.zeros((d, d), c["factor"].dtype), c["amp"] * c["factor"]])

    def drift(t, y, args):
        theta, v = y[:d], y[d:]
        return jnp.concatenate([v, -(c["friction"] * v + c["force"] * (c["curv"] @ (theta
                                                                                 - c["mu"])))])

    def diffusion(t, y, args):
        return diff                                        # (2d, d): noise on v only

    def solve(key, y0):
        path = diffrax.UnsafeBrownianPath(shape=(d,), key=key)
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, path))
        sol = diffrax.diffeqsolve(terms, diffrax.Euler(), t0=0.0, t1=n_steps * c["dt"],
                                  dt0=c["dt"], y0=y0, saveat=diffrax.SaveAt(t1=True),
                                  stepsize_controller=diffrax.ConstantStepSize(),
                                  adjoint=diffrax.ForwardMode(), max_steps=n_steps + 2)
        return sol.ys[0], sol.stats["num_steps"]

    @jax.jit
    def run(key, theta0):
        y0 = jnp.concatenate([theta0, jnp.zeros_like(theta0)])
        keys = jax.random.split(key, n_traj)
        return jax.vmap(solve, in_axes=(0, None))(keys, y0)

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--traj", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "sde_ou.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.traj, args.steps, args.repeats = 256, 100, 1

    key = jax.random.key(0)
    prob = ld.LinearRegression.synthetic(key, n=args.n, d=args.d)
    hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=args.batch)
    c = constants(prob, hp)
    theta0 = c["mu"]
    rows = {}

    def record(name, compile_s, run_s, **extra):
        rows[name] = {"n_steps": args.steps, "compile_seconds": compile_s, "run_seconds": run_s,
                      "ms_per_step": 1e3 * run_s / args.steps,
                      "traj_steps_per_second": args.traj * args.steps / run_s} | extra
        print(f"  {name:<18} compile {compile_s:6.2f} s   run {run_s:7.3f} s   "
              f"{rows[name]['ms_per_step']:7.3f} ms/step", flush=True)

    print(f"B2 sde_ou: N={args.n} d={args.d} S={args.batch} K={args.traj} steps={args.steps} "
          f"dt=η={hp.lr} noise={NOISE} on {jax.devices()[0]}", flush=True)
    # Compile (or warm) every contender first; each returns (run seconds, wall seconds).
    contenders, compile_s, extra = {}, {}, {}
    for name, model, solver in LIMITDYN:
        def call(model=model, solver=solver):
            t0 = time.perf_counter()
            res = ld.simulate_sde(prob, hp, key, n_traj=args.traj, n_steps=args.steps,
                                  noise=NOISE, solver=solver, dt=hp.lr, model=model)
            return res.metadata["run_seconds"], time.perf_counter() - t0, res
        _, _, res = call()
        assert res.config["substeps_per_step"] == 1, res.config
        compile_s[name] = res.metadata["compile_seconds"]
        extra[name] = {"n_record": len(res.steps),
                       "n_window_samples": res.config["n_window_samples"]}
        contenders[name] = lambda call=call: call()[:2]
    for name, build, arg0 in (("diffrax_vmap_euler", diffrax_vmap_euler, key),
                              ("hand_em", hand_em, key),
                              ("floor_no_rng", floor_no_rng,
                               jax.random.normal(key, (args.traj, args.d)))):
        t0 = time.perf_counter()
        compiled = build(c, args.traj, args.steps).lower(arg0, theta0).compile()
        compile_s[name] = time.perf_counter() - t0
        out = compiled(arg0, theta0)
        if name == "diffrax_vmap_euler":
            extra[name] = {"solver_steps": int(np.max(out[1]))}

        def timed(compiled=compiled, arg0=arg0):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(arg0, theta0))
            return (time.perf_counter() - t0,) * 2
        contenders[name] = timed
    # Interleaved rounds: every contender once per round, so load drifts hit all alike.
    times = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            times[name].append(fn())
    for name, ts in times.items():
        run = [t[0] for t in ts]
        record(name, compile_s[name], statistics.median(run), run_seconds_min=min(run),
               run_seconds_all=run, **extra.get(name, {}))
        if name.startswith("limitdyn"):
            rows[name]["call_seconds"] = statistics.median(t[1] for t in ts)

    def ratio(num, den):       # median over rounds of the same-round ratio of run seconds
        return statistics.median(n[0] / d[0] for n, d in zip(times[num], times[den], strict=True))

    pairs = (("diffrax_vmap_euler", "limitdyn_em"), ("limitdyn_baoab", "limitdyn_em"),
             ("limitdyn_exact", "limitdyn_em"), ("limitdyn_sme_em", "limitdyn_em"),
             ("limitdyn_em", "hand_em"), ("limitdyn_em", "floor_no_rng"),
             ("diffrax_vmap_euler", "hand_em"))
    ratios = {f"{num} / {den}": ratio(num, den) for num, den in pairs}
    targets = {"diffrax_vmap_euler / limitdyn_em": (">=", 1.3),
               "limitdyn_baoab / limitdyn_em": ("<=", 1.2)}
    met = {k: (ratios[k] >= t if op == ">=" else ratios[k] <= t)
           for k, (op, t) in targets.items()}
    env = _meta.environment(key) | {"jax_default_prng_impl":
                                    str(jax.config.jax_default_prng_impl),
                                    "jax_threefry_partitionable":
                                    bool(jax.config.jax_threefry_partitionable)}
    out = {"benchmark": "B2 sde_ou",
           "params": vars(args) | {"lr": hp.lr, "momentum": hp.momentum, "dt": hp.lr,
                                   "noise": NOISE},
           "environment": env, "results": rows, "ratios": ratios,
           "targets": {k: f"{op} {t}" for k, (op, t) in targets.items()}, "targets_met": met,
           "notes": "ratios are medians over interleaved rounds of same-round ratios of run "
                    "seconds (higher = the numerator is slower); "
                    "diffrax_vmap_euler, hand_em and floor_no_rng compute no statistics, "
                    "limitdyn_* do (log-spaced records + window after burn-in)",
           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print("\n| contender | compile s | run s | ms/step | traj-steps/s | statistics |\n"
          "|---|---:|---:|---:|---:|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['compile_seconds']:.2f} | {r['run_seconds']:.3f} | "
              f"{r['ms_per_step']:.3f} | {r['traj_steps_per_second']:.3g} | "
              f"{'yes' if name.startswith('limitdyn') else 'no'} |")
    print()
    for k, v in ratios.items():
        goal = f"  (target {targets[k][0]} {targets[k][1]}: " \
               f"{'met' if met[k] else 'MISSED'})" if k in targets else ""
        print(f"{k}: {v:.2f}{goal}")
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
