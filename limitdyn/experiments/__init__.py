"""Named experiments: a typed configuration, a run function, a report.

An experiment is registered with :func:`register`; ``limitdyn run NAME`` builds its
configuration (defaults, then ``--quick`` overrides, then a TOML file, then ``--set``),
creates a :class:`Context` and calls ``run(config, ctx)``, which returns ``True`` when
every verdict passed. The context collects arrays (``data.npz``), figures, markdown
sections (``report.md``), metrics, verdicts and timings (``summary.json``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax

from .. import _accounting, _meta, _prng
from ..io import RunDirectory, markdown_table


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config_cls: type
    quick: dict[str, Any]
    run: Callable[[Any, Context], None]


REGISTRY: dict[str, Experiment] = {}


def register(name: str, description: str, config_cls: type, quick: dict[str, Any]):
    """Register ``fn(config, ctx)``; every simulation it runs is accounted in ``ctx``
    (compile and run time, diverged counts) without the experiment passing it along."""
    def wrap(fn):
        def run(cfg, ctx):
            with _accounting.collect(ctx.account):
                return fn(cfg, ctx)
        run.__wrapped__ = fn
        REGISTRY[name] = Experiment(name, description, config_cls, quick, run)
        return fn
    return wrap


class Context:
    """What an experiment needs besides its configuration, and where its outputs go."""

    def __init__(self, name: str, seed: int, out: RunDirectory, *, quick: bool,
                 progress: bool, say: Callable[..., None], prng: str | None = None):
        self.name, self.seed, self.out = name, seed, out
        self.quick, self.progress, self.say = quick, progress, say
        self.key = jax.random.key(seed, impl=_prng.check_impl(prng))
        self.sections: list[str] = []
        self.metrics: dict[str, Any] = {}
        self.verdicts: dict[str, dict[str, Any]] = {}
        self.timings: dict[str, float] = {"compile_seconds": 0.0, "run_seconds": 0.0}
        self._runs: list[dict[str, Any]] = []
        self._ids: list[int] = []
        self.started = time.perf_counter()

    def subkey(self, i: int) -> jax.Array:
        return jax.random.fold_in(self.key, i)

    def account(self, result) -> None:
        """Add a finished simulation (every ``simulate_*`` inside the experiment reports
        here): its compile and run time to the run's totals, its diverged-trajectory
        counts per recorded step to ``summary.json`` (``divergence``) and the report."""
        meta = getattr(result, "metadata", None) or {}
        compile_s = float(meta.get("compile_seconds", getattr(result, "compile_seconds", 0.0)))
        run_s = float(meta.get("run_seconds", getattr(result, "run_seconds", 0.0)))
        self.timings["compile_seconds"] += compile_s
        self.timings["run_seconds"] += run_s
        cfg = result.config
        if hasattr(result, "n_alive"):
            n_traj = int(result.n_traj)
            steps = [int(s) for s in result.steps]
            n_diverged = [int(n) for n in result.n_diverged]
            if result.alive is not None:     # found at a later event than the last record
                n_diverged[-1] = max(n_diverged[-1], int(n_traj - result.alive.sum()))
        else:                                # per-path results: the final count
            n_traj = int(result.n_paths)
            steps = [int(cfg.get("n_steps", 0))]
            n_diverged = [int(result.n_diverged)]
        first = next((s for s, n in zip(steps, n_diverged, strict=True) if n), None)
        kind = cfg.get("kind", "?")
        label = f"{kind} {cfg.get('solver') or cfg.get('sampling') or ''}".strip()
        self._runs.append({
            "simulation": len(self._runs), "label": label, "n_traj": n_traj,
            "steps": steps, "n_diverged": n_diverged, "n_diverged_final": n_diverged[-1],
            "first_recorded_step_with_divergence": first,
            "compile_seconds": compile_s, "run_seconds": run_s})
        self._ids.append(id(result))

    @property
    def divergence(self) -> list[dict[str, Any]]:
        """One record per simulation: label, sizes, diverged counts per recorded step."""
        return self._runs

    def timed(self, result, label: str | None = None):
        """Label an accounted simulation (accounting it first if it was not); returns it."""
        if id(result) in self._ids:
            rec = self._runs[self._ids.index(id(result))]
        else:
            self.account(result)
            rec = self._runs[-1]
        if label:
            rec["label"] = label
        return result

    def section(self, title: str, text: str) -> None:
        self.sections.append(f"## {title}\n\n{text.strip()}\n")
        self.say(f"\n{title}\n{text.strip()}")

    def table(self, title: str, header: list[str], rows: list[list[Any]],
              note: str = "") -> None:
        self.section(title, markdown_table(header, rows) + (f"\n\n{note}" if note else ""))

    def figure(self, fig, name: str, caption: str) -> None:
        self.out.save_figure(fig, name)
        self.sections.append(f"![{caption}]({name})\n\n*{caption}*\n")
        self.say(f"figure {name}: {caption}")

    def verdict(self, name: str, passed: bool, detail: str) -> None:
        self.verdicts[name] = {"passed": bool(passed), "detail": detail}
        self.say(f"[{'PASS' if passed else 'FAIL'}] {name}: {detail}")

    @property
    def passed(self) -> bool:
        return all(v["passed"] for v in self.verdicts.values())

    def report(self, title: str, intro: str) -> str:
        verdicts = "\n".join(f"- **{'PASS' if v['passed'] else 'FAIL'}** `{k}`: {v['detail']}"
                             for k, v in self.verdicts.items())
        return (f"# {title}\n\n{intro.strip()}\n\n## Verdicts\n\n{verdicts}\n\n"
                + "\n".join(self.sections) + self._divergence_section())

    def _divergence_section(self) -> str:
        if not self.divergence:
            return ""
        rows = [[r["simulation"], r["label"], r["n_traj"], r["n_diverged_final"],
                 "—" if r["first_recorded_step_with_divergence"] is None
                 else r["first_recorded_step_with_divergence"]] for r in self.divergence]
        total = sum(r["n_diverged_final"] for r in self.divergence)
        return ("\n## Diverged trajectories\n\n"
                + markdown_table(["simulation", "kind", "trajectories", "diverged (final)",
                                  "first recorded step with a divergence"], rows)
                + f"\n\n{total} trajectories diverged in all. A diverged trajectory leaves "
                "every statistic from the step it diverged; the counts at every recorded "
                "step are in summary.json (`divergence`).\n")

    def environment(self) -> dict[str, Any]:
        env = _meta.environment(self.key)
        env["jax_default_prng_impl"] = str(jax.config.jax_default_prng_impl)
        return env


def _load() -> None:
    """Import every public module of this package; each registers its experiments.

    Discovery instead of a fixed import list, so adding an experiment is adding a file.
    """
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_load()
