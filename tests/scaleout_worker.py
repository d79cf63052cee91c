"""Worker for tests/test_scaleout.py: one ensemble run, sharded as the arguments say.

    python scaleout_worker.py OUT.npz [--processes N --process-id I --port P] [--devices D]
                              [--chunks C]

Process 0 writes the statistics to OUT.npz. Not collected by pytest (no ``test_`` prefix).
"""

import argparse

import jax

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--processes", type=int, default=1)
parser.add_argument("--process-id", type=int, default=0)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--devices", type=int, default=None)
parser.add_argument("--chunks", type=int, default=None)
parser.add_argument("--philox-check", action="store_true",
                    help="also check how philox keys meet several devices")
args = parser.parse_args()
if args.processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}",
                               num_processes=args.processes, process_id=args.process_id)

import numpy as np  # noqa: E402

import limitdyn as ld  # noqa: E402

prob = ld.LinearRegression.synthetic(jax.random.key(0), n=128, d=4)
hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=16)
common = dict(n_traj=64, n_steps=200, devices=args.devices, n_chunks=args.chunks)
sgd = ld.simulate_sgd(prob, hp, jax.random.key(1), sampling="reshuffle",
                      keep_trajectories=True, **common)
sde = ld.simulate_sde(prob, hp, jax.random.key(2), noise="exact", **common)
if jax.process_index() == 0:
    arrays = {}
    for name, res in (("sgd", sgd), ("sde", sde)):
        for field in ("mean", "cov", "displacement", "stationary_cov", "stationary_lag_cov",
                      "n_alive", "trajectories"):
            value = getattr(res, field)
            if value is not None:
                arrays[f"{name}/{field}"] = np.asarray(value)
        arrays[f"{name}/se_stationary_cov"] = res.stderr.stationary_cov
    arrays["n_devices"] = np.array(len(jax.devices()))
    if args.philox_check:
        import warnings

        try:
            ld.simulate_sgd(prob, hp, jax.random.key(1), 64, 10, devices=2, prng="philox4x32")
            arrays["philox_explicit_refused"] = np.array(False)
        except ValueError as err:
            arrays["philox_explicit_refused"] = np.array("philox" in str(err))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = ld.simulate_sgd(prob, hp, jax.random.key(1), 64, 10, prng="philox4x32")
        arrays["philox_default_warned"] = np.array(
            any("one device" in str(w.message) for w in caught))
        arrays["philox_default_finite"] = np.array(bool(np.isfinite(res.cov).all()))
    np.savez(args.out, **arrays)
