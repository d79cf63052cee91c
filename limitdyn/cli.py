"""``limitdyn`` command line.

    limitdyn list
    limitdyn run EXPERIMENT [--config FILE.toml] [--set key=value ...] [--out DIR]
                            [--seed N] [--quick] [--overwrite] [--quiet]
    limitdyn show DIR

Exit codes: 0 success, 1 an experiment's verdict failed, 2 bad usage, configuration or
input (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import config as config_mod
from .io import OutputError, RunDirectory, check_target, read_summary


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
    run.add_argument("experiment", help="experiment name (see `limitdyn list`)")
    run.add_argument("--config", metavar="FILE.toml", help="configuration file (TOML)")
    run.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                     help="set one configuration key (repeatable)")
    run.add_argument("--out", metavar="DIR", help="output directory (default "
                     "limitdyn-runs/EXPERIMENT-TIMESTAMP)")
    run.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    run.add_argument("--quick", action="store_true", help="small sizes (well under a minute)")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty --out DIR")
    run.add_argument("--quiet", action="store_true", help="no progress or tables on stdout")
    show = sub.add_parser("show", help="summarise a finished run directory")
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


def _run(args) -> int:
    from . import experiments

    if args.experiment not in experiments.REGISTRY:
        raise UsageError(f"limitdyn: unknown experiment {args.experiment!r}; choose from "
                         f"{', '.join(experiments.REGISTRY)}")
    exp = experiments.REGISTRY[args.experiment]
    cfg = build_config(exp, args)
    out = args.out or os.path.join("limitdyn-runs",
                                   f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_target(out, args.overwrite)
    say = (lambda *a, **k: None) if args.quiet else print
    say(f"limitdyn run {exp.name} (seed {args.seed}{', quick' if args.quick else ''}) -> {out}")
    run_dir = RunDirectory(out)
    ctx = experiments.Context(exp.name, args.seed, run_dir, quick=args.quick,
                              progress=not args.quiet, say=say)
    try:
        title, intro = exp.run(cfg, ctx)
        run_dir.write_text("report.md", ctx.report(title, intro))
        summary = {
            "experiment": exp.name, "description": exp.description, "seed": args.seed,
            "quick": args.quick, "config": config_mod.to_dict(cfg),
            "passed": ctx.passed, "verdicts": ctx.verdicts, "metrics": ctx.metrics,
            "timings": dict(ctx.timings, wall_seconds=time.perf_counter() - ctx.started),
            "environment": ctx.environment(),
        }
        path = run_dir.commit(summary)
    except BaseException:
        run_dir.abandon()
        raise
    say(f"\n{exp.name}: {'PASS' if ctx.passed else 'FAIL'} "
        f"({time.perf_counter() - ctx.started:.1f} s); report: {os.path.join(path, 'report.md')}")
    return 0 if ctx.passed else 1


def _show(args) -> int:
    s = read_summary(args.dir)
    print(f"{s['experiment']} — {s.get('description', '')}")
    print(f"seed {s['seed']}{' (quick)' if s.get('quick') else ''}, completed "
          f"{s.get('completed_at', '?')}, verdict {'PASS' if s['passed'] else 'FAIL'}")
    t = s.get("timings", {})
    print(f"compile {t.get('compile_seconds', 0):.1f} s, run {t.get('run_seconds', 0):.1f} s, "
          f"wall {t.get('wall_seconds', 0):.1f} s")
    for name, v in s.get("verdicts", {}).items():
        print(f"  [{'PASS' if v['passed'] else 'FAIL'}] {name}: {v['detail']}")
    for name, value in s.get("metrics", {}).items():
        if isinstance(value, (int, float, str)):
            print(f"  {name} = {value:.6g}" if isinstance(value, float) else f"  {name} = {value}")
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
    except (UsageError, config_mod.ConfigError, OutputError) as err:
        message = str(err)
        if isinstance(err, config_mod.ConfigError):
            message = f"limitdyn: configuration error: {message}"
        elif isinstance(err, OutputError):
            message = f"limitdyn: {message}"
        print(message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("limitdyn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
