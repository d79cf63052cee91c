"""``limitdyn`` command line.

    limitdyn list
    limitdyn run EXPERIMENT [--config FILE.toml] [--set key=value ...] [--out DIR]
                            [--seed N] [--quick] [--overwrite] [--quiet]
    limitdyn run --resume DIR [--quiet]
    limitdyn show DIR

Exit codes of ``run``: 0 success, 1 an experiment's verdict failed, 2 bad usage,
configuration or input (one line on stderr, never a traceback). ``show``: 0 complete,
1 partial (resumable), 2 corrupt or not a run directory.

Every simulation of a run is checkpointed after each chunk into ``DIR/checkpoints``; a
run killed at any point (even ``kill -9``) continues with ``limitdyn run --resume DIR``
and ends with the statistics of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from . import _meta
from . import config as config_mod
from ._prng import IMPLS as _PRNGS
from .checkpoint import CheckpointError
from .io import OutputError, RunDirectory, check_target, inspect


class UsageError(Exception):
    """Bad usage: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other usage error
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _config_keys() -> str:
    """Every experiment's configuration keys and defaults, for ``run --help``."""
    import dataclasses
    import textwrap

    from . import experiments

    parts = ["configuration keys (set with --set key=value or in --config FILE.toml):"]
    for exp in experiments.REGISTRY.values():
        keys = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(exp.config_cls))
        parts.append(textwrap.fill(f"{exp.name}: {keys}", width=92, initial_indent="  ",
                                   subsequent_indent="    "))
    return "\n".join(parts)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="limitdyn", description="SGD-with-momentum ensembles, their "
                     "Langevin limits, and exact theory. Exit codes: 0 success, 1 a verdict "
                     "failed, 2 bad usage or input.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the experiments with a one-line description")
    run = sub.add_parser("run", help="run an experiment and write its report",
                         description="Run a named experiment. Its configuration starts from "
                         "the defaults, then --quick, then --config, then --set.",
                         epilog=_config_keys(), formatter_class=argparse.RawTextHelpFormatter)
    run.add_argument("experiment", nargs="?", help="experiment name (see `limitdyn list`)")
    run.add_argument("--config", metavar="FILE.toml", help="configuration file (TOML)")
    run.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                     help="set one configuration key (repeatable)")
    run.add_argument("--out", metavar="DIR", help="output directory (default "
                     "limitdyn-runs/EXPERIMENT-TIMESTAMP)")
    run.add_argument("--seed", type=int, default=None, help="PRNG seed (default 0)")
    run.add_argument("--quick", action="store_true", help="small sizes (well under a minute)")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty --out DIR")
    run.add_argument("--quiet", action="store_true", help="no progress or tables on stdout")
    run.add_argument("--prng", choices=_PRNGS, default=None,
                     help="PRNG implementation (default threefry2x32: JAX's default, and the "
                     "fastest here with limitdyn's fused generator; see benchmarks/README.md)")
    dist = run.add_argument_group(
        "several processes (hosts)", "Start the same command in every process; trajectories are "
        "sharded over all their devices and only process 0 writes the run directory. Each flag "
        "defaults to the environment variable named.")
    dist.add_argument("--coordinator", metavar="HOST:PORT",
                      default=os.environ.get("LIMITDYN_COORDINATOR"),
                      help="address of process 0 (LIMITDYN_COORDINATOR)")
    dist.add_argument("--num-processes", metavar="N", type=int,
                      default=_env_int("LIMITDYN_NUM_PROCESSES"),
                      help="number of processes (LIMITDYN_NUM_PROCESSES)")
    dist.add_argument("--process-id", metavar="I", type=int,
                      default=_env_int("LIMITDYN_PROCESS_ID"),
                      help="this process, 0 … N−1 (LIMITDYN_PROCESS_ID)")
    run.add_argument("--resume", metavar="DIR", help="continue the partial run in DIR from its "
                     "checkpoints (its configuration and seed come from DIR/run.json)")
    show = sub.add_parser("show", help="summarise a run directory: complete, partial "
                          "(resumable) or corrupt")
    show.add_argument("dir", help="a run directory")
    return parser


def build_config(experiment, args) -> object:
    cfg = experiment.config_cls()
    if args.quick:
        cfg = config_mod.replace(cfg, experiment.quick)
    if args.config:
        cfg = config_mod.replace(cfg, config_mod.load_toml(args.config, experiment.name))
    if args.set:
        cfg = config_mod.replace(cfg, config_mod.parse_assignments(args.set), from_text=True)
    return cfg


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"limitdyn: environment variable {name}={value!r} is not an "
                         "integer") from None


def _start_distributed(args) -> bool:
    """``jax.distributed.initialize`` from the flags; True when this run spans processes."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if all(v is None for v in given):
        return False
    if any(v is None for v in given):
        raise UsageError("limitdyn: a multi-process run needs --coordinator, --num-processes "
                         "and --process-id (or LIMITDYN_COORDINATOR, LIMITDYN_NUM_PROCESSES, "
                         "LIMITDYN_PROCESS_ID)")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
        raise UsageError(f"limitdyn: need --num-processes >= 1 and 0 <= --process-id < "
                         f"{args.num_processes}, got {args.num_processes} and {args.process_id}")
    if ":" not in args.coordinator:
        raise UsageError(f"limitdyn: --coordinator must be HOST:PORT, got {args.coordinator!r}")
    if args.resume is not None:
        raise UsageError("limitdyn: --resume is for single-process runs (multi-process runs "
                         "are not checkpointed)")
    import jax

    # CPU devices of different processes talk through gloo (GPUs use NCCL by themselves).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id)
    return True


def _experiment(name: str):
    from . import experiments

    if name not in experiments.REGISTRY:
        raise UsageError(f"limitdyn: unknown experiment {name!r}; choose from "
                         f"{', '.join(experiments.REGISTRY)}")
    return experiments.REGISTRY[name]


def _resume_plan(args):
    """Experiment, configuration, seed and quick flag of the partial run in ``args.resume``."""
    given = [flag for flag, value in (("--config", args.config), ("--set", args.set),
                                      ("--out", args.out), ("--seed", args.seed),
                                      ("--quick", args.quick), ("--overwrite", args.overwrite),
                                      ("--prng", args.prng))
             if value]
    if given:
        raise UsageError(f"limitdyn: --resume takes the configuration, seed and output "
                         f"directory from DIR/run.json; drop {', '.join(given)}")
    status = inspect(args.resume)
    if status.state == "corrupt":
        raise OutputError(f"cannot resume {args.resume}: corrupt ({status.detail})")
    manifest = status.manifest or {}
    name = manifest.get("experiment")
    if args.experiment is not None and args.experiment != name:
        raise UsageError(f"limitdyn: {args.resume} is a run of {name!r}, not "
                         f"{args.experiment!r}")
    exp = _experiment(name)
    cfg = config_mod.replace(exp.config_cls(), manifest.get("config", {}))
    prng = manifest.get("prng")
    return (exp, cfg, int(manifest.get("seed", 0)), bool(manifest.get("quick", False)),
            None if prng is None else str(prng), status)


def _run(args) -> int:
    from . import experiments
    from .checkpoint import auto_checkpoints

    distributed = _start_distributed(args)
    writer = not distributed or args.process_id == 0
    say = print if (writer and not args.quiet) else (lambda *a, **k: None)
    if args.resume is not None:
        exp, cfg, seed, quick, prng, status = _resume_plan(args)
        out = args.resume
        if status.state == "complete":
            say(f"{out} is already complete ({status.summary.get('experiment')}, verdict "
                f"{'PASS' if status.summary.get('passed') else 'FAIL'}); nothing to resume")
            return 0 if status.summary.get("passed") else 1
        say(f"limitdyn run {exp.name}: resuming {out} — {status.detail}")
        run_dir = RunDirectory(out, resume=True)
    else:
        if args.experiment is None:
            raise UsageError("limitdyn run: name an experiment (see `limitdyn list`) or give "
                             "--resume DIR")
        exp = _experiment(args.experiment)
        cfg = build_config(exp, args)
        seed = 0 if args.seed is None else args.seed
        quick, prng = args.quick, args.prng
        out = args.out or os.path.join("limitdyn-runs",
                                       f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        if writer:
            check_target(out, args.overwrite)
        else:   # the other processes compute the same run and write nowhere that matters
            import tempfile

            out = os.path.join(tempfile.mkdtemp(prefix="limitdyn-"), "run")
        say(f"limitdyn run {exp.name} (seed {seed}{', quick' if quick else ''}) -> {out}"
            + (f" [{args.num_processes} processes]" if distributed else ""))
        run_dir = RunDirectory(out, {"experiment": exp.name, "seed": seed, "quick": quick,
                                     "prng": prng,
                                     "config": config_mod.to_dict(cfg),
                                     "argv": sys.argv[1:], "versions": _meta.versions()})
    ctx = experiments.Context(exp.name, seed, run_dir, quick=quick,
                              progress=not args.quiet, say=say, prng=prng)
    try:
        if distributed:    # every process would need the whole state: no checkpoints
            title, intro = exp.run(cfg, ctx)
        else:
            with auto_checkpoints(run_dir.checkpoints):
                title, intro = exp.run(cfg, ctx)
    except BaseException as err:
        bad_input = isinstance(err, (UsageError, config_mod.ConfigError, OutputError))
        if bad_input or not os.listdir(run_dir.checkpoints):
            if args.resume is None:     # nothing worth resuming: leave no directory behind
                shutil.rmtree(run_dir.target, ignore_errors=True)
        else:
            print(f"limitdyn: the run stopped before finishing; `limitdyn run --resume {out}` "
                  "continues it from its checkpoints", file=sys.stderr)
        raise
    run_dir.write_text("report.md", ctx.report(title, intro))
    summary = {
        "experiment": exp.name, "description": exp.description, "seed": seed,
        "quick": quick, "config": config_mod.to_dict(cfg),
        "passed": ctx.passed, "verdicts": ctx.verdicts, "metrics": ctx.metrics,
        "divergence": ctx.divergence,
        "timings": dict(ctx.timings, wall_seconds=time.perf_counter() - ctx.started),
        "resumed": args.resume is not None,
        "processes": args.num_processes if distributed else 1,
        "environment": ctx.environment(),
    }
    path = run_dir.commit(summary)
    if not writer:
        shutil.rmtree(os.path.dirname(run_dir.target), ignore_errors=True)
    say(f"\n{exp.name}: {'PASS' if ctx.passed else 'FAIL'} "
        f"({time.perf_counter() - ctx.started:.1f} s); report: {os.path.join(path, 'report.md')}")
    return 0 if ctx.passed else 1


def _show(args) -> int:
    status = inspect(args.dir)
    print(f"status: {status.state} — {status.detail}")
    if status.state != "complete":
        m = status.manifest or {}
        if m:
            print(f"{m.get('experiment')}, seed {m.get('seed')}"
                  f"{' (quick)' if m.get('quick') else ''}, started {m.get('started_at', '?')}")
        for p in status.checkpoints:
            print(f"  {p['file']}: " + (p["error"] if "error" in p else
                                        f"step {p['step']}, event {p['next_event']}/"
                                        f"{p['n_events']}"))
        return 1 if status.state == "partial" else 2
    s = status.summary
    print(f"{s['experiment']} — {s.get('description', '')}")
    print(f"seed {s['seed']}{' (quick)' if s.get('quick') else ''}, completed "
          f"{s.get('completed_at', '?')}, verdict {'PASS' if s['passed'] else 'FAIL'}"
          f"{' (resumed)' if s.get('resumed') else ''}")
    t = s.get("timings", {})
    print(f"compile {t.get('compile_seconds', 0):.1f} s, run {t.get('run_seconds', 0):.1f} s, "
          f"wall {t.get('wall_seconds', 0):.1f} s")
    for name, v in s.get("verdicts", {}).items():
        print(f"  [{'PASS' if v['passed'] else 'FAIL'}] {name}: {v['detail']}")
    for name, value in s.get("metrics", {}).items():
        if isinstance(value, (int, float, str)):
            print(f"  {name} = {value:.6g}" if isinstance(value, float) else f"  {name} = {value}")
    diverged = [r for r in s.get("divergence", []) if r.get("n_diverged_final")]
    print(f"diverged trajectories: {sum(r['n_diverged_final'] for r in diverged)} in "
          f"{len(diverged)} of {len(s.get('divergence', []))} simulations")
    print("config: " + ", ".join(f"{k}={v}" for k, v in s.get("config", {}).items()))
    print("files: " + ", ".join(s.get("files", [])))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "list":
            from . import experiments

            for exp in experiments.REGISTRY.values():
                print(f"{exp.name:<12} {exp.description}")
            return 0
        if args.command == "show":
            return _show(args)
        return _run(args)
    except (UsageError, config_mod.ConfigError, OutputError, CheckpointError) as err:
        message = str(err)
        if isinstance(err, config_mod.ConfigError):
            message = f"limitdyn: configuration error: {message}"
        elif isinstance(err, (OutputError, CheckpointError)):
            message = f"limitdyn: {message}"
        print(message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("limitdyn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `limitdyn show DIR | head`: the reader left; not an error
        sys.stdout = open(os.devnull, "w")   # silence the flush at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
