"""Run every benchmark (B1–B7), then write ``benchmarks/README.md`` from their JSON results.

    python benchmarks/run_all.py            # full sizes (~25–30 min on a 2-core CPU)
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


# Run on their own (not by this script: each compares with something outside one process
# or takes long); the report shows whatever results/ holds for them.
SEPARATE = [("B8", "sgd_network", "python benchmarks/sgd_network.py"),
            ("B9", "engine_regression", "python benchmarks/engine_regression.py --rev cc1415e"),
            ("B10", "checkpoint_overhead", "python benchmarks/checkpoint_overhead.py"),
            ("B10", "checkpoint_overhead_every0",
             "python benchmarks/checkpoint_overhead.py --every 0"),
            ("B11", "validate_wall", "python benchmarks/validate_wall.py --rev 0da6551"),
            ("B12", "short_call", "python benchmarks/short_call.py"),
            ("B13", "gpu", "python benchmarks/gpu.py")]


def _load(results: str, name: str) -> dict | None:
    path = os.path.join(results, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def _b1_parts(b1: dict | None) -> list[tuple[str, dict]]:
    """B1's measurements: (label, part) for one device and for the forced host devices."""
    if not b1:
        return []
    parts = [("1 device", b1)]
    if b1.get("forced_devices"):
        parts.append((f"{b1['forced_devices']['count']} devices", b1["forced_devices"]))
    return parts


def targets(results: str) -> list[list[str]]:
    """The issues' targets, each a ratio measured side by side in one process."""
    rows = []

    def add(what, value, target, ok, source):
        rows.append([what, "—" if value is None else f"{value:.2f}", target,
                     "—" if value is None else ("met" if ok(value) else "**missed**"), source])
    b1, b2, b3, b4, b5 = (_load(results, n) for n in ("sgd_linreg", "sde_ou", "prng",
                                                       "statistics_overhead", "memory"))
    for label, part in _b1_parts(b1):
        r1 = part.get("ratios", {})
        add(f"SGD (limitdyn defaults) vs the user's optax randint loop (speed-up), {label}",
            r1.get("user_randint / limitdyn_iid"), "≥ 1.8", lambda v: v >= 1.8, "B1")
        add(f"SGD vs the user's loop recording the same statistics (speed-up), {label}",
            r1.get("user_randint_stats / limitdyn_iid"), "≥ 1.5", lambda v: v >= 1.5, "B1")
        add(f"SGD (defaults) time / floor (its own bare step) time, {label}",
            r1.get("limitdyn_iid / floor"), "≤ 1.5", lambda v: v <= 1.5, "B1")
        add(f"iid sampling time / replacement time, {label}",
            r1.get("limitdyn_iid / limitdyn_replacement"), "≤ 1.15", lambda v: v <= 1.15, "B1")
        add(f"reshuffle time / iid time, {label}", r1.get("limitdyn_reshuffle / limitdyn_iid"),
            "≤ 1.3", lambda v: v <= 1.3, "B1")
    if b1:
        add("SGD vs vectorised numpy (speed-up), 1 device",
            b1.get("ratios", {}).get("numpy / limitdyn_iid"), "> 1", lambda v: v > 1, "B1")
    r8 = (_load(results, "sgd_network") or {}).get("ratios", {})
    add("SGD on the limiting MLP vs the user's optax loop (speed-up), 1 device",
        r8.get("limitdyn_vs_optax"), "≥ 1", lambda v: v >= 1, "B8")
    b10 = (_load(results, "checkpoint_overhead") or {}).get("results", {})
    if b10:
        worst = max(r["overhead"] for r in b10.values())
        add("checkpoint overhead at the experiments' defaults, interleaved wall times (worst "
            "case)", 1 + worst, "≤ 1.05", lambda v: v <= 1.05, "B10")
        if all("direct_overhead" in r for r in b10.values()):
            add("checkpoint overhead at the experiments' defaults, time inside the checkpoint "
                "code / run time (worst case)", 1 + max(r["direct_overhead"]
                                                         for r in b10.values()),
                "≤ 1.05", lambda v: v <= 1.05, "B10")
    r11 = (_load(results, "validate_wall") or {}).get("ratios", {})
    for k, v in r11.items():
        before, now = k.split(" / ", 1)
        add(f"`limitdyn run validate` at its defaults: speed-up over {before}, {now}", v,
            "≥ 1.5", lambda v: v >= 1.5, "B11")
    r12 = (_load(results, "short_call") or {}).get("ratios", {})
    add("a 50-step simulate_sgd call (d = 64), second call: wall / kernel time",
        r12.get("second call: wall / kernel"), "≤ 1.5", lambda v: v <= 1.5, "B12")
    r3 = (b3 or {}).get("ratios", {})
    add("fused bits vs jax.random.bits (the samplers' draw, speed-up)",
        r3.get("fused_bits_threefry2x32 / bits_threefry2x32"), "> 1", lambda v: v > 1, "B3")
    r2 = (b2 or {}).get("ratios", {})
    add("SDE Euler–Maruyama vs vmapped diffrax (speed-up)",
        r2.get("diffrax_vmap_euler / limitdyn_em"), "≥ 1.5", lambda v: v >= 1.5, "B2")
    add("BAOAB time / Euler–Maruyama time", r2.get("limitdyn_baoab / limitdyn_em"), "≤ 1.2",
        lambda v: v <= 1.2, "B2")
    r4 = (b4 or {}).get("ratios", {})
    for kind in ("sgd", "sde"):
        add(f"statistics overhead, {kind.upper()} (default / nothing)",
            r4.get(f"{kind}: default / nothing"), "≤ 1.10", lambda v: v <= 1.10, "B4")
    r5 = (b5 or {}).get("ratios", {})
    for key, value in r5.items():
        add(f"memory, {key}", value, "≤ 1.1", lambda v: v <= 1.1, "B5")
    return rows


def bounds(results: str) -> list[str]:
    """What limits each missed target, computed from the same measurements."""
    out = []
    b1, b2, b4 = (_load(results, n) for n in ("sgd_linreg", "sde_ou", "statistics_overhead"))
    for label, part in _b1_parts(b1):
        r, q = part["results"], part["ratios"]
        ms = {k: v["ms_per_step"] for k, v in r.items()}
        cpu = {k: v.get("cpu_ms_per_step") for k, v in r.items()}
        if q["user_randint / limitdyn_iid"] < 1.8 or q["user_randint_stats / limitdyn_iid"] < 1.5:
            text = (f"- **SGD vs the user's loop, {label}**: limitdyn {ms['limitdyn_iid']:.2f} "
                    f"ms/step with its default statistics ({ms['limitdyn_iid_nostats']:.2f} "
                    f"recording nothing; its bare step, the floor, {ms['floor']:.2f}), the "
                    f"user's randint loop {ms['user_randint']:.2f}.")
            if cpu.get("user_randint") and cpu.get("floor"):
                text += (f" CPU time per step (all threads): user {cpu['user_randint']:.2f} "
                         f"ms, floor {cpu['floor']:.2f} ms — the user's loop spreads its "
                         f"whole-batch gather and products over both cores through XLA's "
                         f"intra-op threads, while limitdyn's step walks its tiles of "
                         f"trajectories one after another (only each tile's row gather is "
                         f"split over the cores).")
            if label == "1 device" and len(_b1_parts(b1)) > 1:
                other = _b1_parts(b1)[1][1]["ratios"]
                text += (f" With one device per core (`ld.use_all_cores()`; the command line's "
                         f"default) each core runs its share of the tiles: "
                         f"{other['user_randint / limitdyn_iid']:.2f}× the user's loop, "
                         f"{other['user_randint_stats / limitdyn_iid']:.2f}× with the same "
                         f"statistics.")
            out.append(text)
        if q["limitdyn_iid / limitdyn_replacement"] > 1.15:
            out.append(
                f"- **iid / replacement, {label}**: Floyd's algorithm is S = 32 rounds of "
                f"comparisons over the (S, K) picks (int16, slot-major, 'taken' as an int8 "
                f"maximum); "
                f"{ms['limitdyn_iid'] - ms['limitdyn_replacement']:.2f} ms/step here against "
                f"a {ms['limitdyn_replacement']:.2f} ms step.")
        if q["limitdyn_reshuffle / limitdyn_iid"] > 1.3:
            out.append(
                f"- **reshuffle / iid, {label}**: on top of iid's Floyd draw, every step reads "
                f"2S entries of each trajectory's pool and writes S + S (K × N int16 = "
                f"{part.get('pool_mib', 8):.0f} MiB at these sizes: S = 32 random entries "
                f"touch nearly every cache line of a 2 KiB row, so the whole pool streams "
                f"through the caches each step); "
                f"{ms['limitdyn_reshuffle'] - ms['limitdyn_iid']:.2f} ms/step here.")
    if b2:
        r, steps = b2["results"], b2["params"]["steps"]
        em, baoab = (1e3 * r[k]["run_seconds"] / steps for k in ("limitdyn_em", "limitdyn_baoab"))
        if baoab / em > 1.2:
            out.append(
                f"- **BAOAB / Euler–Maruyama**: BAOAB draws the same normals and evaluates "
                f"the force once per step like EM (the end force is kept for the next step), "
                f"and adds one exact OU sub-step and a second half kick; at {em:.3f} ms/step "
                f"for EM the difference is {baoab - em:.3f} ms/step, at the edge of this "
                f"machine's run-to-run noise.")
    if b4 and b4.get("ratios", {}).get("sde: default / nothing", 0) > 1.10:
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
            f"for precision. Measured apart (K = 4096, D = 2d = 32): an event that observes "
            f"nothing costs ~0.085 ms (the time loop's break and the divergence check), a "
            f"window or lag event's statistics ~0.22 ms, of which the per-group outer "
            f"product Σ_g y_gᵀy_g (32 groups) is 0.13 ms — twice a plain (K, D)ᵀ(K, D) "
            f"product of the same size on XLA's CPU backend, in every layout tried "
            f"(batched einsum, materialised transpose, a loop over groups, halves). For SGD at "
            f"d = 64 the same events weigh "
            f"{r['sgd_default']['ms_per_step'] / r['sgd_nothing']['ms_per_step'] - 1:.0%}.")
    return out


def _md(header, rows):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _sizes(data: dict) -> str:
    if data.get("sizes"):
        return data["sizes"]
    params = {k: v for k, v in data.get("params", {}).items()
              if k not in ("out", "quick", "child") and v is not None}
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _b1_section(data: dict) -> list[str]:
    parts = [f"## B1 sgd_linreg (`benchmarks/sgd_linreg.py`, {data.get('time', '?')})\n",
             f"Sizes: {data['sizes']}. Contenders alternate within each round; medians of "
             f"{data['params']['repeats']} rounds. `cpu_ms_per_step` is the process's CPU time "
             f"(all threads). The headline is the user's 30-line loop (optax, vmap, scan, "
             f"`jax.random.randint` batches), with and without the statistics limitdyn "
             f"records, and limitdyn's own bare step (the floor); the loop with "
             f"`jax.random.choice` batches is a footnote[^choice].\n"]
    for label, part in _b1_parts(data):
        load = part.get("load", {})
        results = {k: v for k, v in part["results"].items() if k != "optax_choice"}
        keys = ["ms_per_step", "cpu_ms_per_step", "traj_steps_per_second", "n_steps",
                "compile_seconds"]
        parts.append(f"**{label}** ({', '.join(part.get('devices', []) or ['cpu'])}; load "
                     f"average {load.get('start', ['?'])[0]:.2f} at the start, "
                     f"{load.get('end', ['?'])[0]:.2f} at the end):\n")
        parts.append(_md(["run", *keys], [[n, *(_fmt(r.get(k, "")) for k in keys)]
                                          for n, r in results.items()]))
        ratios = {k: v for k, v in part["ratios"].items() if not k.startswith("optax_choice")}
        parts.append("\n" + "\n".join(f"- {k}: **{v:.3f}**" for k, v in ratios.items()) + "\n")
    choice = data["results"].get("optax_choice")
    if choice:
        parts.append(f"[^choice]: The loop one might write first, batches from "
                     f"`jax.random.choice(key, N, (S,), replace=False)` (a sort of N per "
                     f"batch): {choice['ms_per_step']:.0f} ms/step over "
                     f"{choice['n_steps']} steps, "
                     f"{data['ratios']['optax_choice / limitdyn_iid']:.0f}× limitdyn on one "
                     f"device. It was B1's headline before issue 18.\n")
    return parts


def _separate_sections(results: str) -> list[str]:
    parts = []
    for tag, name, command in SEPARATE:
        data = _load(results, name)
        if name == "gpu":
            parts += _gpu_section(data, command)
            continue
        if data is None:
            parts.append(f"## {tag} {name}\n\nnot run yet (`{command}`)\n")
            continue
        parts.append(f"## {data.get('benchmark', tag + ' ' + name)} (`{command}`, "
                     f"{data.get('time', '?')})\n")
        rows = data.get("results") or {}
        if isinstance(rows, dict) and rows:
            keys = sorted({k for r in rows.values() if isinstance(r, dict) for k in r
                           if not isinstance(r[k], (dict, list))})
            parts.append(_md(["run", *keys], [[n, *(_fmt(r.get(k, "")) for k in keys)]
                                              for n, r in rows.items()]))
        if data.get("calls"):
            keys = list(data["calls"][0])
            parts.append(_md(["call", *keys], [[i + 1, *(_fmt(c[k]) for k in keys)]
                                               for i, c in enumerate(data["calls"])]))
        if data.get("ratios"):
            parts.append("\n" + "\n".join(f"- {k}: **{v:.3f}**"
                                            for k, v in data["ratios"].items()))
        parts.append("")
    return parts


def _gpu_section(data: dict | None, command: str) -> list[str]:
    parts = ["## B13 on a GPU\n",
             "No GPU in this project's machines; when one is at hand (one NVIDIA GPU, CUDA 12):\n",
             "```bash\npip install -e \".[test]\" && pip install -U \"jax[cuda12]\"\n"
             f"{command}                 # K = 2^16 … 2^20, SGD d = 64 and SDE d = 16\n"
             "python benchmarks/run_all.py --report   # this page, with its numbers\n```\n",
             "It measures trajectory-steps per second for `simulate_sgd` (N = 1024, d = 64, "
             "S = 32, iid) and `simulate_sde` (d = 16, Euler–Maruyama) at K = 2¹⁶ … 2²⁰, and "
             "checks float32 accuracy: the SGD stationary covariance at K = 2¹⁶ against the "
             "exact discrete theory with the backend's default matmul precision and with "
             "`jax_default_matmul_precision=\"highest\"` (TF32 on GPUs), each with its noise "
             "floor.\n"]
    if data is None or data.get("quick") or data.get("backend") == "cpu":
        parts.append("Not measured on a GPU yet.\n")
        return parts
    parts.append(f"Measured {data.get('time', '?')} on {data.get('environment', {})}:\n")
    parts.append(_md(["kind", "K", "traj-steps/s", "run s", "compile s"],
                     [[r["kind"], r["n_traj"], _fmt(r["traj_steps_per_second"]),
                       _fmt(r["run_seconds"]), _fmt(r["compile_seconds"])]
                      for r in data["throughput"]]))
    parts.append("")
    parts.append(_md(["matmul precision", "K", "steps", "relative error", "noise floor"],
                     [[a["precision"], a["n_traj"], a["steps"], _fmt(a["relative_error"]),
                       _fmt(a["noise_floor"])] for a in data["accuracy"]]))
    parts.append("")
    return parts


def report(results: str) -> str:
    parts = ["# Benchmarks\n",
             "Every number below comes from `python benchmarks/run_all.py` (the JSON files in "
             "`results/` hold versions, device, PRNG, compile and run times separately). "
             "Ratios are measured side by side in one process, contenders alternating; "
             "absolute times vary with the load on the machine (a 2-core machine shared with "
             "other work: B1 states the load average during its runs).\n"]
    env = (_load(results, "sgd_linreg") or {}).get("environment", {})
    if env:
        parts.append(f"Machine: {env.get('backend')} {env.get('devices')}, "
                     f"{os.cpu_count()} cores; jax {env['versions'].get('jax')}, "
                     f"PRNG {env.get('prng_impl')}.\n")
    parts += ["## Targets\n", _md(["ratio", "measured", "target", "", "benchmark"],
                                  targets(results)), "", "### What bounds the misses\n",
              *(bounds(results) or ["none"]), ""]
    for tag, name in SCRIPTS:
        data = _load(results, name)
        if data is None:
            parts.append(f"## {tag} {name}\n\nnot run yet\n")
            continue
        if name == "sgd_linreg" and "sizes" in data:
            parts += _b1_section(data)
            continue
        parts.append(f"## {data.get('benchmark', tag + ' ' + name)} (`benchmarks/{name}.py`, "
                     f"{data.get('time', '?')})\n")
        parts.append(f"Sizes: {_sizes(data)}.\n")
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
    parts += _separate_sections(results)
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
