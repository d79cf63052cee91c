"""Run every benchmark (B1–B7), then write ``benchmarks/README.md`` from their JSON results.

    python benchmarks/run_all.py            # full sizes (~15–20 min on a 2-core CPU)
    python benchmarks/run_all.py --quick    # tiny sizes: checks that everything runs
    python benchmarks/run_all.py --report   # only rebuild README.md from results/*.json

Each benchmark runs in its own process (no caches shared between them) and writes
``benchmarks/results/NAME.json``; ``--quick`` writes to a temporary directory instead and
leaves the recorded results and the README alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
SCRIPTS = [("B1", "sgd_linreg"), ("B2", "sde_ou"), ("B3", "prng"), ("B4", "statistics_overhead"),
           ("B5", "memory"), ("B6", "scaling"), ("B7", "compile_validate")]


def _load(results: str, name: str) -> dict | None:
    path = os.path.join(results, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def targets(results: str) -> list[list[str]]:
    """The issue's targets, each a ratio measured side by side in one process."""
    rows = []

    def add(what, value, target, ok, source):
        rows.append([what, "—" if value is None else f"{value:.2f}", target,
                     "—" if value is None else ("met" if ok(value) else "**missed**"), source])
    b1, b2, b4, b5 = (_load(results, n) for n in ("sgd_linreg", "sde_ou", "statistics_overhead",
                                                   "memory"))
    r1 = (b1 or {}).get("ratios", {})
    add("SGD kernel vs the straightforward optax loop (speed-up)",
        r1.get("limitdyn_vs_optax_choice"), "≥ 1.5", lambda v: v >= 1.5, "B1")
    add("SGD kernel vs the optax loop with limitdyn's sampler (speed-up)",
        r1.get("limitdyn_vs_optax_floyd"), "≥ 1.5", lambda v: v >= 1.5, "B1")
    add("SGD kernel time / gather-gradient floor time", r1.get("floor_vs_limitdyn"), "≤ 1.5",
        lambda v: v <= 1.5, "B1")
    add("SGD kernel vs vectorised numpy (speed-up)", r1.get("limitdyn_vs_numpy"), "> 1",
        lambda v: v > 1, "B1")
    r2 = (b2 or {}).get("ratios", {})
    add("SDE Euler–Maruyama vs vmapped diffrax (speed-up)",
        r2.get("diffrax_vmap_euler / limitdyn_em"), "≥ 1.5", lambda v: v >= 1.5, "B2")
    add("BAOAB time / Euler–Maruyama time", r2.get("limitdyn_baoab / limitdyn_em"), "≤ 1.2",
        lambda v: v <= 1.2, "B2")
    r4 = (b4 or {}).get("ratios", {})
    for kind in ("sgd", "sde"):
        add(f"statistics overhead, {kind.upper()} (default / nothing)",
            r4.get(f"{kind}: default / nothing"), "≤ 1.15", lambda v: v <= 1.15, "B4")
    r5 = (b5 or {}).get("ratios", {})
    for key, value in r5.items():
        add(f"memory, {key}", value, "≤ 1.1", lambda v: v <= 1.1, "B5")
    return rows


def bounds(results: str) -> list[str]:
    """What limits each missed target, computed from the same measurements."""
    out = []
    b1, b2, b4 = (_load(results, n) for n in ("sgd_linreg", "sde_ou", "statistics_overhead"))
    if b1:
        r = b1["results"]
        opt, floor, ld_ = (r[k]["ms_per_step"] for k in ("optax_floyd", "floor", "limitdyn"))
        out.append(
            f"- **SGD vs the optax loop with limitdyn's own sampler**: that loop runs at "
            f"{opt:.2f} ms/step and the bare gather-gradient floor (no statistics, no "
            f"optimiser) at {floor:.2f}: even a kernel with zero overhead would be only "
            f"{opt / floor:.2f}× faster, so ≥ 1.5× is out of reach by construction; the target "
            f"is met against the loop one writes by hand (`jax.random.choice`, "
            f"{r['optax_choice']['ms_per_step']:.0f} ms/step). limitdyn itself is "
            f"{ld_ / floor:.2f}× the floor: per-trajectory `fold_in` keys (the price of "
            f"results independent of chunking and devices), the divergence check and the "
            f"statistics.")
    if b2:
        r, steps = b2["results"], b2["params"]["steps"]
        em, baoab = (1e3 * r[k]["run_seconds"] / steps for k in ("limitdyn_em", "limitdyn_baoab"))
        out.append(
            f"- **BAOAB / Euler–Maruyama**: BAOAB draws the same normals and adds one exact "
            f"OU sub-step and a second half kick; at {em:.3f} ms/step for EM the difference "
            f"is {baoab - em:.3f} ms/step, at the edge of this machine's run-to-run noise.")
    if b4:
        r, steps = b4["results"], b4["params"]["steps"]
        per = r["sde_nothing"]["ms_per_step"]
        events = 50 + 2 * 64 + 1        # records, window samples and their lag pairs
        cost = (r["sde_default"]["ms_per_step"] - per) * steps / events / per
        out.append(
            f"- **Statistics overhead of the SDE**: one Euler–Maruyama step at d = 16 costs "
            f"{per:.3f} ms. Every recorded step and every window sample with its lag-one "
            f"partner is an outer product over the ensemble, K(2d)² multiply-adds (records "
            f"add the fourth moments for the covariance's standard error); measured, one "
            f"such event costs {cost:.1f} EM steps. The default schedule has ~{events} events "
            f"whatever n_steps is, so the overhead is ~{events * cost / steps:.0%} at "
            f"{steps} steps and falls as 1/n_steps; `window_every` and `n_record` trade it "
            f"for precision. For SGD at d = 64 a step is a gather-bound ~8 ms and the same "
            f"events weigh "
            f"{r['sgd_default']['ms_per_step'] / r['sgd_nothing']['ms_per_step'] - 1:.0%}.")
    return out


def _md(header, rows):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def report(results: str) -> str:
    parts = ["# Benchmarks\n",
             "Every number below comes from `python benchmarks/run_all.py` (full sizes; the JSON "
             "files in `results/` hold versions, device, PRNG, compile and run times "
             "separately). Ratios are measured side by side in one process; absolute times "
             "vary with the load on the machine.\n"]
    env = (_load(results, "sgd_linreg") or {}).get("environment", {})
    if env:
        parts.append(f"Machine: {env.get('backend')} {env.get('devices')}, "
                     f"{os.cpu_count()} cores; jax {env['versions'].get('jax')}, "
                     f"PRNG {env.get('prng_impl')}.\n")
    parts += ["## Targets\n", _md(["ratio", "measured", "target", "", "benchmark"],
                                  targets(results)), "", "### What bounds the misses\n",
              *bounds(results), ""]
    for tag, name in SCRIPTS:
        data = _load(results, name)
        if data is None:
            parts.append(f"## {tag} {name}\n\nnot run yet\n")
            continue
        parts.append(f"## {data.get('benchmark', tag + ' ' + name)} (`benchmarks/{name}.py`, "
                     f"{data.get('time', '?')})\n")
        rows = data.get("results", {})
        keys = sorted({k for r in rows.values() for k in r if not isinstance(r[k], (dict, list))})
        parts.append(_md(["run", *keys], [[n, *(_fmt(r.get(k, "")) for k in keys)]
                                          for n, r in rows.items()]))
        if data.get("ratios"):
            parts.append("\n" + "\n".join(f"- {k}: **{v:.3f}**" for k, v in data["ratios"].items()))
        if data.get("devices"):
            parts.append("\nforced host devices: " + ", ".join(
                f"{d}: {v['traj_steps_per_second']:.3g} traj-steps/s"
                for d, v in data["devices"].items()))
        parts.append("")
    return "\n".join(parts) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--report", action="store_true", help="only rebuild README.md")
    parser.add_argument("--only", nargs="*", help="run only these (e.g. B1 B4)")
    args = parser.parse_args(argv)
    results = tempfile.mkdtemp(prefix="limitdyn-bench-") if args.quick else RESULTS
    if not args.report:
        for tag, name in SCRIPTS:
            if args.only and tag not in args.only:
                continue
            print(f"== {tag} {name}", flush=True)
            t0 = time.perf_counter()
            cmd = [sys.executable, os.path.join(HERE, f"{name}.py"),
                   "--out", os.path.join(results, f"{name}.json"),
                   *(["--quick"] if args.quick else [])]
            subprocess.run(cmd, check=True)
            print(f"   {tag} took {time.perf_counter() - t0:.0f} s", flush=True)
    text = report(results)
    if args.quick:
        print(text)
    else:
        with open(os.path.join(HERE, "README.md"), "w") as fh:
            fh.write(text)
        print(f"wrote {os.path.join(HERE, 'README.md')}")


if __name__ == "__main__":
    main()
