"""B10: what checkpointing costs — the simulations of ``validate``, ``diffusion`` and
``limiting`` at their default sizes, with the default checkpointing (a save every 60 s,
at the end, and on a signal) against none, interleaved in one process.

Each contender is the same ``simulate_*`` call with ``checkpoint=PATH`` (a fresh file each
time, so nothing is resumed) or without; the wall time of the whole call is compared (the
kernel is compiled first, so both sides measure running and, for one, saving). Also
recorded: the size of the checkpoint and of its side files (kept trajectories, appended),
the number of saves and the bytes all saves of one run wrote together, and the time spent
inside the checkpoint code itself (fingerprint, load, every save: ``direct_overhead`` is
that over the unchecked run's time) — on this shared 2-core machine the interleaved wall
times scatter by ±10 % from run to run, more than a 1 MB save costs.

    python benchmarks/checkpoint_overhead.py [--quick] [--every SECONDS]

``--every 0`` (a save after every one of the 20 chunks, the worst case) writes
``results/checkpoint_overhead_every0.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

import limitdyn as ld
from limitdyn import checkpoint as ck

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import table, write  # noqa: E402


def cases(quick: bool):
    scale = 8 if quick else 1
    val = ld.LinearRegression.synthetic(jax.random.key(0), n=512, d=16)
    diff = ld.LinearRegression.synthetic(jax.random.key(0), n=2048, d=128,
                                         spectrum=("power", 2.0))
    hp = ld.Hyper(lr=0.1, momentum=0.9, batch_size=32)
    hp_d = ld.Hyper(lr=0.05, momentum=0.9, batch_size=32)
    from limitdyn import limiting as lim

    net, theta = lim.make_network("digits", "fcn", width=32, depth=2)
    hp_n = ld.Hyper(lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=32)
    key = jax.random.key(3)
    return {
        "validate: SGD iid, K=4096, 2000 steps, kept trajectories":
            lambda **kw: ld.simulate_sgd(val, hp, key, 4096 // scale, 2000, progress=False,
                                         keep_trajectories=True, **kw),
        "validate: SDE exact noise BAOAB, K=1024, 1000 steps":
            lambda **kw: ld.simulate_sde(val, hp, key, 1024 // scale, 1000, noise="exact",
                                         solver="baoab", progress=False, **kw),
        "diffusion: SGD d=128, K=2048, 2000 steps":
            lambda **kw: ld.simulate_sgd(diff, hp_d, key, 2048 // scale, 2000, progress=False,
                                         check_stability=False, **kw),
        "limiting: network continuations, K=64, 4000 steps":
            lambda **kw: ld.simulate_sgd(net.problem, hp_n, key, 64 // min(scale, 4),
                                         4000 // scale, theta0=theta, progress=False, **kw),
    }


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=float, default=None,
                        help="seconds between timed checkpoints (default: the library's)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    runs = cases(args.quick)
    tmp = tempfile.mkdtemp(prefix="ckpt-bench-")
    counter, written = [0], {"bytes": 0, "saves": 0, "seconds": 0.0}
    real_save = ck.save
    real = {name: getattr(ck, name) for name in ("fingerprint", "load")}

    def timed(fn):                      # the checkpoint code's own time, measured directly
        def call(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                written["seconds"] += time.perf_counter() - t0
        return call
    for name, fn in real.items():
        setattr(ck, name, timed(fn))

    def files_of(path):
        return [f for f in (os.path.join(tmp, n) for n in os.listdir(tmp)) if f.startswith(path)]

    def counting_save(path, *a, **kw):        # bytes this save wrote: the file + appended
        before = {f: os.path.getsize(f) for f in files_of(path) if f.endswith(".kept")}
        t0 = time.perf_counter()
        real_save(path, *a, **kw)
        written["seconds"] += time.perf_counter() - t0
        after = {f: os.path.getsize(f) for f in files_of(path) if f.endswith(".kept")}
        written["bytes"] += os.path.getsize(path) + sum(
            max(0, n - before.get(f, 0)) for f, n in after.items())
        written["saves"] += 1
    ck.save = counting_save

    def with_checkpoint(fn):
        counter[0] += 1
        path = os.path.join(tmp, f"c{counter[0]}.npz")
        written.update(bytes=0, saves=0, seconds=0.0)
        t0 = time.perf_counter()
        fn(checkpoint=path, checkpoint_every=args.every)
        wall = time.perf_counter() - t0
        size = {"checkpoint": os.path.getsize(path),
                "side_files": sum(os.path.getsize(f) for f in files_of(path) if f != path),
                "written": written["bytes"], "saves": written["saves"],
                "seconds": written["seconds"]}
        for f in files_of(path):
            os.remove(f)
        return wall, size

    def without(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0, 0

    for fn in runs.values():          # compile both variants first
        without(fn)
        with_checkpoint(fn)
    results, rows = {}, []
    for name, fn in runs.items():
        plain, ckpt, sizes, inside = [], [], [], []
        for _ in range(args.repeats):
            plain.append(without(fn)[0])
            wall, size = with_checkpoint(fn)
            ckpt.append(wall)
            sizes.append(size)
            inside.append(size["seconds"])
        a, b = statistics.median(plain), statistics.median(ckpt)
        size = sizes[-1]
        direct = statistics.median(inside) / a
        results[name] = {"without_seconds": a, "with_seconds": b, "overhead": b / a - 1,
                         "checkpoint_code_seconds": statistics.median(inside),
                         "direct_overhead": direct,
                         "checkpoint_bytes": size["checkpoint"],
                         "side_file_bytes": size["side_files"], "saves": size["saves"],
                         "written_bytes": size["written"],
                         "repeats": {"without": plain, "with": ckpt}}
        rows.append([name, a, b, f"{100 * (b / a - 1):+.1f}%", f"{100 * direct:.1f}%",
                     f"{size['checkpoint'] / 1e6:.2f} + {size['side_files'] / 1e6:.1f} MB",
                     size["saves"], f"{size['written'] / 1e6:.1f} MB"])
    print(table(["simulation", "no checkpoint s", "checkpointed s", "overhead",
                 "in checkpoint code",
                 "checkpoint + side files", "saves", "written in all"], rows))
    name = "checkpoint_overhead" if args.every is None else \
        f"checkpoint_overhead_every{args.every:g}"
    write(name, {"benchmark": "B10 checkpoint_overhead", "every": args.every,
                 "results": results, "load": os.getloadavg()[0], "quick": args.quick},
          args.out)
    return results


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
