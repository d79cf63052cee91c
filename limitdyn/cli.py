"""``limitdyn`` command line.

    limitdyn list
    limitdyn run EXPERIMENT [--config FILE.toml] [--set key=value ...] [--out DIR]
                            [--seed N] [--quick] [--overwrite] [--quiet]
    limitdyn run --resume DIR [--quiet]
    limitdyn show DIR

Exit codes of ``run``: 0 success, 1 an experiment's verdict failed, 2 bad usage,
configuration or input (one line on stderr, at most 300 characters, never a traceback;
``LIMITDYN_DEBUG=1`` shows the traceback). ``show``: 0 complete, 1 partial (resumable),
2 corrupt or not a run directory.

Every simulation of a run is checkpointed after each chunk into ``DIR/checkpoints``; a
run killed at any point (even ``kill -9``) continues with ``limitdyn run --resume DIR``
and ends with the statistics of an uninterrupted run. A checkpoint that fails its
integrity check is set aside and its simulation recomputed. A run directory is locked by
the process writing it: a second ``limitdyn run`` on it is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
import zipfile

from . import _meta
from . import config as config_mod
from ._memory import AllocationError
from ._prng import IMPLS as _PRNGS
from .checkpoint import CheckpointError, CheckpointWarning
from .config import clip
from .io import CHECKPOINTS, OutputError, RunDirectory, check_target, inspect

ERROR_LINE = 300       # the most characters of the one-line error message


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

    parts = ["configuration keys (set with --set key=value, lists as a,b or [a, b], or in "
             "--config FILE.toml);", "`limitdyn run NAME --help` gives each key's meaning, "
             "type, default and allowed range:"]
    for exp in experiments.REGISTRY.values():
        keys = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(exp.config_cls))
        parts.append(textwrap.fill(f"{exp.name}: {keys}", width=92, initial_indent="  ",
                                   subsequent_indent="    "))
    return "\n".join(parts)


def _experiment_keys(exp) -> str:
    """One experiment's keys with meaning, type, default, --quick value and allowed range."""
    import textwrap

    intro = textwrap.fill(f"{exp.name}: {exp.description}.", width=92)
    return (f"{intro}\n\nconfiguration keys of {exp.name} (set with --set key=value, lists "
            f"as a,b or [a, b];\nor in --config FILE.toml, at the top level or under "
            f"[{exp.name}]):\n{config_mod.help_text(exp.config_cls, exp.quick)}")


# options of `run` that take a value (to find the experiment name before parsing)
_VALUED = {"--config", "--set", "--out", "--seed", "--prng", "--coordinator",
           "--num-processes", "--process-id", "--resume"}


def _help_target(argv: list[str]) -> str | None:
    """The experiment named in ``limitdyn run NAME ... --help`` (None otherwise)."""
    if len(argv) < 2 or argv[0] != "run" or not ({"-h", "--help"} & set(argv)):
        return None
    skip = False
    for token in argv[1:]:
        if skip:
            skip = False
        elif token in _VALUED:
            skip = True
        elif not token.startswith("-"):
            return token
    return None


def _parser(help_for: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="limitdyn", description="SGD-with-momentum ensembles, their "
                     "Langevin limits, and exact theory. Exit codes: 0 success, 1 a verdict "
                     "failed, 2 bad usage or input.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the experiments with a one-line description")
    exp = None
    if help_for is not None:
        from . import experiments

        exp = experiments.REGISTRY.get(help_for)
    run = sub.add_parser("run", help="run an experiment and write its report",
                         description="Run a named experiment. Its configuration starts from "
                         "the defaults, then --quick, then --config, then --set.",
                         epilog=_config_keys() if exp is None else _experiment_keys(exp),
                         formatter_class=argparse.RawTextHelpFormatter)
    run.add_argument("experiment", nargs="?", help="experiment name (see `limitdyn list`)")
    run.add_argument("--config", metavar="FILE.toml", help="configuration file (TOML)")
    run.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                     help="set one configuration key (repeatable)")
    run.add_argument("--out", metavar="DIR", help="output directory (default "
                     "limitdyn-runs/EXPERIMENT-TIMESTAMP)")
    run.add_argument("--seed", type=int, default=None, help="PRNG seed (default 0)")
    run.add_argument("--quick", action="store_true", help="small sizes (well under a minute)")
    run.add_argument("--overwrite", action="store_true", help="replace the limitdyn run in "
                     "--out DIR (only the files it lists in DIR/.limitdyn-run; a directory "
                     "without that marker is refused)")
    run.add_argument("--quiet", action="store_true", help="no progress or tables on stdout")
    run.add_argument("--checkpoint-every", metavar="SECONDS", type=float, default=None,
                     help="seconds between checkpoints of each simulation (default 60; 0: "
                          "after every chunk); SIGINT/SIGTERM always checkpoint before exiting")
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
                     "checkpoints (its configuration and seed come from DIR/run.json; other "
                     "flags are accepted when they agree with it)")
    show = sub.add_parser("show", help="summarise a run directory: complete, partial "
                          "(resumable) or corrupt")
    show.add_argument("dir", help="a run directory")
    return parser


def build_config(experiment, args, base: object | None = None) -> object:
    """Defaults (or ``base``), then --quick, then --config, then --set."""
    cfg = experiment.config_cls() if base is None else base
    if args.quick and base is None:
        cfg = config_mod.replace(cfg, experiment.quick)
    if args.config:
        cfg = config_mod.replace(cfg, config_mod.load_toml(args.config, experiment.name))
    if args.set:
        cfg = config_mod.replace(cfg, config_mod.parse_assignments(args.set), from_text=True)
    return cfg


def _check_sizes(cfg) -> None:
    """Files the configuration names and the memory it asks for, before anything runs."""
    config_mod.check_files(cfg)
    config_mod.check_memory(cfg)


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
    """Experiment, configuration, seed and PRNG of the partial run in ``args.resume``.

    Flags given with --resume must agree with the run's ``run.json``: the same --seed,
    --prng, --quick, --out, and --config/--set values equal to the run's; anything that
    conflicts is refused (the run continues exactly as it was started).
    """
    where = clip(args.resume, 120)
    if args.overwrite:
        raise UsageError("limitdyn: --overwrite replaces a run and --resume continues one; "
                         "give one of them")
    if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
        raise UsageError(f"limitdyn: --out {clip(args.out, 80)} conflicts with --resume "
                         f"{where}: a resumed run stays in its directory; drop --out")
    status = inspect(args.resume)
    if not status.marked:
        raise OutputError(f"cannot resume {where}: it carries no limitdyn marker (.limitdyn-run)"
                          "; it was not written by this version of limitdyn")
    if status.state == "corrupt":
        raise OutputError(f"cannot resume {where}: corrupt ({status.detail})")
    manifest = status.manifest or {}
    name = manifest.get("experiment")
    if args.experiment is not None and args.experiment != name:
        raise UsageError(f"limitdyn: {where} is a run of {name!r}, not "
                         f"{clip(repr(args.experiment), 60)}")
    exp = _experiment(name)
    try:
        cfg = config_mod.replace(exp.config_cls(), manifest.get("config", {}))
    except config_mod.ConfigError as err:
        raise OutputError(f"cannot resume {where}: its run.json holds an invalid "
                          f"configuration ({err})") from None
    seed, quick = int(manifest.get("seed", 0)), bool(manifest.get("quick", False))
    prng = manifest.get("prng")
    prng = None if prng is None else str(prng)
    conflicts, flags = [], []
    if args.seed is not None and args.seed != seed:
        conflicts.append(f"--seed {args.seed} (the run's seed is {seed})")
        flags.append("--seed")
    if args.quick and not quick:
        conflicts.append("--quick (the run is not a --quick run)")
        flags.append("--quick")
    if args.prng is not None and args.prng != (prng or _PRNGS[0]):
        conflicts.append(f"--prng {args.prng} (the run's is {prng or _PRNGS[0]})")
        flags.append("--prng")
    if args.config or args.set:
        wanted = build_config(exp, args, base=cfg)
        changed = [k for k, v in config_mod.to_dict(wanted).items()
                   if v != config_mod.to_dict(cfg)[k]]
        if changed:
            conflicts.append(", ".join(f"{k}={clip(repr(getattr(wanted, k)), 40)} (the run "
                                       f"has {clip(repr(getattr(cfg, k)), 40)})"
                                       for k in changed[:3]))
            flags += [f for f, v in (("--config", args.config), ("--set", args.set)) if v]
    if conflicts:
        raise UsageError(f"limitdyn: {'; '.join(conflicts)} conflict(s) with the run in {where} "
                         f"(its run.json); drop {', '.join(flags)}: --resume continues the run "
                         "as it was started")
    _check_sizes(cfg)
    return exp, cfg, seed, quick, prng


def _is_bad_input(err: BaseException) -> bool:
    return isinstance(err, (UsageError, config_mod.ConfigError, OutputError, AllocationError,
                            ValueError, MemoryError, zipfile.BadZipFile))


def _run(args) -> int:
    from . import experiments
    from .checkpoint import auto_checkpoints

    every = getattr(args, "checkpoint_every", None)
    if every is not None and not (every >= 0 and every != float("inf")):
        raise UsageError(f"limitdyn: --checkpoint-every must be a number of seconds >= 0, got "
                         f"{every}")
    distributed = _start_distributed(args)
    if not distributed:
        # every core: one XLA host device per core, unless the user chose (limitdyn._devices)
        from ._devices import configure_host_devices
        configure_host_devices()
    writer = not distributed or args.process_id == 0
    say = print if (writer and not args.quiet) else (lambda *a, **k: None)
    if args.resume is not None:
        exp, cfg, seed, quick, prng = _resume_plan(args)
        out = args.resume
        run_dir = RunDirectory(out, resume=True)          # the lock, or BusyError
        status = inspect(out)                             # again, now under the lock
        if status.state != "partial":
            run_dir.close()
            if status.state == "corrupt":
                raise OutputError(f"cannot resume {clip(out, 120)}: corrupt ({status.detail})")
            say(f"{out} is already complete ({status.summary.get('experiment')}, verdict "
                f"{'PASS' if status.summary.get('passed') else 'FAIL'}); nothing to resume")
            return 0 if status.summary.get("passed") else 1
        say(f"limitdyn run {exp.name}: resuming {out} — {status.detail}")
    else:
        if args.experiment is None:
            raise UsageError("limitdyn run: name an experiment (see `limitdyn list`) or give "
                             "--resume DIR")
        exp = _experiment(args.experiment)
        cfg = build_config(exp, args)
        _check_sizes(cfg)
        seed = 0 if args.seed is None else args.seed
        quick, prng = args.quick, args.prng
        out = args.out if args.out is not None else os.path.join(
            "limitdyn-runs", f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}")
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
                                     "argv": sys.argv[1:], "versions": _meta.versions()},
                               overwrite=args.overwrite and writer)
    try:
        return _execute(args, exp, cfg, seed, quick, prng, run_dir, distributed, writer, say,
                        experiments, auto_checkpoints)
    finally:
        run_dir.close()


def _execute(args, exp, cfg, seed, quick, prng, run_dir, distributed, writer, say,
             experiments, auto_checkpoints) -> int:
    from .checkpoint import StopRequest

    out = run_dir.target

    def set_aside(path: str, moved: str, reason: str) -> None:
        run_dir.note_set_aside(path, moved, reason)
        print(f"limitdyn: warning: {clip(reason, 160)}; set aside as "
              f"{CHECKPOINTS}/{os.path.basename(moved)}, that simulation is recomputed",
              file=sys.stderr)

    ctx = experiments.Context(exp.name, seed, run_dir, quick=quick,
                              progress=not args.quiet, say=say, prng=prng)
    try:
        if distributed:    # every process would need the whole state: no checkpoints
            title, intro = exp.run(cfg, ctx)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CheckpointWarning)    # reported above
                with auto_checkpoints(run_dir.checkpoints, register=run_dir.register,
                                      on_set_aside=set_aside, every=args.checkpoint_every), \
                        StopRequest():    # SIGTERM/SIGINT: checkpoint, then stop
                    title, intro = exp.run(cfg, ctx)
    except BaseException as err:
        kept = [f for f in run_dir.ledger.get("files", [])
                if f.startswith(CHECKPOINTS + "/") and os.path.isfile(os.path.join(out, f))]
        if args.resume is None and (_is_bad_input(err) or not kept):
            run_dir.discard()     # nothing worth resuming: only what this run wrote goes
        elif not _is_bad_input(err):
            print(f"limitdyn: the run stopped before finishing; `limitdyn run --resume "
                  f"{clip(out, 120)}` continues it from its checkpoints", file=sys.stderr)
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
        run_dir.discard()
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(run_dir.target))     # the empty mkdtemp directory
    say(f"\n{exp.name}: {'PASS' if ctx.passed else 'FAIL'} "
        f"({time.perf_counter() - ctx.started:.1f} s); report: {os.path.join(path, 'report.md')}")
    return 0 if ctx.passed else 1


def _show_set_aside(status) -> None:
    for entry in status.set_aside:
        print(f"  set aside: {entry.get('file')} -> {entry.get('moved_to')}: "
              f"{clip(str(entry.get('reason')), 200)} (recomputed)")


def _show(args) -> int:
    status = inspect(args.dir)
    print(f"status: {status.state} — {status.detail}")
    if status.state != "complete":
        m = status.manifest or {}
        if m:
            print(f"{m.get('experiment')}, seed {m.get('seed')}"
                  f"{' (quick)' if m.get('quick') else ''}, started {m.get('started_at', '?')}")
        for p in status.checkpoints:
            if p.get("set_aside"):
                continue
            print(f"  {p['file']}: " + (f"{p['error']} (set aside and recomputed on --resume)"
                                        if "error" in p else
                                        f"step {p['step']}, event {p['next_event']}/"
                                        f"{p['n_events']}"))
        _show_set_aside(status)
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
    _show_set_aside(status)
    print("config: " + ", ".join(f"{k}={v}" for k, v in s.get("config", {}).items()))
    print("files: " + ", ".join(s.get("files", [])))
    return 0


def error_line(err: BaseException) -> str | None:
    """The one-line message for an exception caused by bad input (None: not one of those)."""
    if isinstance(err, UsageError):
        msg = str(err)
    elif isinstance(err, config_mod.ConfigError):
        msg = f"limitdyn: configuration error: {err}"
    elif isinstance(err, (OutputError, CheckpointError, AllocationError)):
        msg = f"limitdyn: {err}"
    elif isinstance(err, MemoryError):
        msg = f"limitdyn: out of memory ({err or 'MemoryError'}); reduce the sizes"
    elif isinstance(err, RecursionError):
        msg = "limitdyn: input nested too deeply"
    elif isinstance(err, UnicodeError):
        msg = f"limitdyn: invalid text encoding: {err}"
    elif isinstance(err, zipfile.BadZipFile):
        msg = f"limitdyn: not a valid .npz (zip) file: {err}"
    elif isinstance(err, OSError):
        msg = f"limitdyn: {err.strerror or err}" + (
            f": {clip(os.fsdecode(err.filename), 120)}" if err.filename else "")
    elif isinstance(err, (ValueError, OverflowError)):   # the API refusing a value
        msg = f"limitdyn: {err}"
    elif "RESOURCE_EXHAUSTED" in str(err)[:2000]:         # XLA out of device memory
        msg = f"limitdyn: the device ran out of memory: {str(err).splitlines()[0]}"
    else:
        return None
    return clip(msg, ERROR_LINE)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parser(_help_target(argv)).parse_args(argv)
        if args.command == "list":
            from . import experiments

            for exp in experiments.REGISTRY.values():
                print(f"{exp.name:<12} {exp.description}")
            return 0
        if args.command == "show":
            return _show(args)
        return _run(args)
    except KeyboardInterrupt:
        print("limitdyn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `limitdyn show DIR | head`: the reader left; not an error
        sys.stdout = open(os.devnull, "w")   # silence the flush at exit
        return 0
    except Exception as err:
        line = error_line(err)
        if line is None or os.environ.get("LIMITDYN_DEBUG"):
            raise
        print(line, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
