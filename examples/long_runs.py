"""Long runs: checkpoint and resume, several devices, and the PRNG as a setting.

    python examples/long_runs.py [--n-traj 4096] [--n-steps 4000] [--dir /tmp/limitdyn-ckpt]

1. A run with ``checkpoint=PATH`` saves its whole state every ``checkpoint_every`` seconds
   (default 60; here 0: after every chunk), at its end and on Ctrl-C/SIGTERM; we simulate
   a crash after a few chunks, call again, and get exactly the uninterrupted statistics.
2. ``devices=`` shards the trajectories over a device mesh (on a CPU try
   ``XLA_FLAGS=--xla_force_host_platform_device_count=4``); the statistics do not depend on
   the device count beyond float rounding.
3. ``prng=`` picks the random-number implementation; every one gives a correct ensemble.
"""

import argparse
import os
import tempfile

import jax
import numpy as np

import limitdyn as ld
from limitdyn import checkpoint


class Crash(Exception):
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-traj", type=int, default=4096)
    parser.add_argument("--n-steps", type=int, default=4000)
    parser.add_argument("--dir", default=None, help="where the checkpoint goes (default: temp)")
    args = parser.parse_args()
    prob = ld.LinearRegression.synthetic(jax.random.key(0), n=256, d=8)
    hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=16)
    key = jax.random.key(1)
    run = dict(n_traj=args.n_traj, n_steps=args.n_steps, n_chunks=10)

    reference = ld.simulate_sgd(prob, hp, key, **run)

    folder = args.dir or tempfile.mkdtemp(prefix="limitdyn-")
    path = os.path.join(folder, "run.npz")
    if os.path.exists(path):
        os.remove(path)
    save, calls = checkpoint.save, [0]

    def crashing_save(*a, **k):            # die right after the 3rd checkpoint write
        save(*a, **k)
        calls[0] += 1
        if calls[0] == 3:
            raise Crash
    checkpoint.save = crashing_save
    try:
        ld.simulate_sgd(prob, hp, key, checkpoint=path, checkpoint_every=0, **run)
    except Crash:
        print(f"crashed at step {checkpoint.peek(path)['step']} of {args.n_steps}; resuming")
    finally:
        checkpoint.save = save
    resumed = ld.simulate_sgd(prob, hp, key, checkpoint=path, **run)
    same = np.array_equal(resumed.stationary_cov, reference.stationary_cov)
    print(f"resumed run equals the uninterrupted one bit for bit: {same}")

    n_dev = len(jax.devices())
    sharded = ld.simulate_sgd(prob, hp, key, devices=n_dev, **run)
    diff = np.max(np.abs(sharded.stationary_cov - reference.stationary_cov))
    print(f"{n_dev} device(s): largest difference in the stationary covariance {diff:.2e} "
          f"(scale {np.max(np.abs(reference.stationary_cov)):.2e})")

    exact = ld.theory.discrete_stationary_cov(prob, hp)
    for prng in ("threefry2x32", "philox4x32"):
        res = ld.simulate_sgd(prob, hp, key, prng=prng, **run)
        z = np.max(np.abs((res.stationary_cov - exact) / res.stderr.stationary_cov))
        print(f"prng={prng}: largest |z| against the exact theory {z:.2f}")


if __name__ == "__main__":
    main()
