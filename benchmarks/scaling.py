"""B6: scaling in the number of trajectories K (10² … 10⁵) and in devices (1, 2, 4).

* In K: ``simulate_sgd`` (N = 1024, d = 64, S = 32) and ``simulate_sde`` (Euler–Maruyama,
  frozen noise, d = 16, dt = η) at K = 10², 10³, 10⁴, 10⁵ with about the same number of
  trajectory-steps per point (steps = budget / K, clipped to [20, 2000]); reports
  trajectory-steps per second — where it stops growing, the per-step overhead is amortised.
* In devices: the same SGD run with K = 4096 on 1, 2 and 4 host devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=4``, in a subprocess). On a CPU the
  forced devices share the same cores, so this measures the sharding overhead, not a
  speed-up; on a machine with several accelerators the same command measures the speed-up.

    python benchmarks/scaling.py [--quick] [--max-traj K]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import jax

import limitdyn as ld

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table, write

DEVICES_CHILD = """
import json, sys, jax, limitdyn as ld
traj, steps = int(sys.argv[1]), int(sys.argv[2])
prob = ld.LinearRegression.synthetic(jax.random.key(0), n=1024, d=64)
hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
out = {}
for devices in (1, 2, 4):
    ld.simulate_sgd(prob, hp, jax.random.key(1), traj, steps, devices=devices)   # compile
    res = ld.simulate_sgd(prob, hp, jax.random.key(1), traj, steps, devices=devices)
    out[devices] = {"run_seconds": res.metadata["run_seconds"],
                    "traj_steps_per_second": traj * steps / res.metadata["run_seconds"]}
print(json.dumps(out))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-traj", type=int, default=10**5)
    parser.add_argument("--budget", type=float, default=4e6, help="trajectory-steps per point")
    parser.add_argument("--device-traj", type=int, default=4096)
    parser.add_argument("--device-steps", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.max_traj, args.budget, args.device_traj, args.device_steps = 1000, 2e4, 64, 10
    key = jax.random.key(0)
    sgd_prob = ld.LinearRegression.synthetic(key, n=1024, d=64)
    sde_prob = ld.LinearRegression.synthetic(key, n=512, d=16)
    hp = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
    rows = {}
    k = 100
    while k <= args.max_traj:
        steps = int(min(max(20, args.budget // k), 2000))
        for kind, simulate in (
                ("sgd", lambda k, s: ld.simulate_sgd(sgd_prob, hp, key, k, s, progress=False)),
                ("sde", lambda k, s: ld.simulate_sde(sde_prob, hp, key, k, s, noise="frozen",
                                                     solver="em", dt=hp.lr, progress=False))):
            first = simulate(k, steps)
            res = simulate(k, steps)
            rows[f"{kind}_K{k}"] = {
                "kind": kind, "n_traj": k, "steps": steps,
                "compile_seconds": first.metadata["compile_seconds"],
                "run_seconds": res.metadata["run_seconds"],
                "traj_steps_per_second": k * steps / res.metadata["run_seconds"],
                "us_per_step": 1e6 * res.metadata["run_seconds"] / steps}
            print(f"  {kind} K={k}: {rows[f'{kind}_K{k}']['traj_steps_per_second']:.3g} "
                  "traj-steps/s", flush=True)
        k *= 10
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    run = subprocess.run([sys.executable, "-c", DEVICES_CHILD, str(args.device_traj),
                          str(args.device_steps)], capture_output=True, text=True, env=env,
                         check=True)
    devices = json.loads(run.stdout.strip().splitlines()[-1])
    print(table(["run", "K", "steps", "traj-steps/s", "µs/step"],
                [[k, v["n_traj"], v["steps"], v["traj_steps_per_second"], v["us_per_step"]]
                 for k, v in rows.items()]))
    print(table(["forced host devices", "traj-steps/s", "vs 1 device"],
                [[d, v["traj_steps_per_second"],
                  v["traj_steps_per_second"] / devices["1"]["traj_steps_per_second"]]
                 for d, v in devices.items()]))
    ratios = {f"{d} devices / 1 device": v["traj_steps_per_second"]
              / devices["1"]["traj_steps_per_second"] for d, v in devices.items()}
    write("scaling", {"benchmark": "B6 scaling", "params": vars(args), "results": rows,
                      "devices": devices, "ratios": ratios}, args.out)


if __name__ == "__main__":
    main()
