"""The documentation checks itself.

(a) The site (mkdocs + material + mkdocstrings, ``mkdocs.yml``) builds with warnings as
    errors, with the README on the home page, every example on the examples page and a
    stable anchor for every section of the theory.
(b) Every ```python block of README.md and of docs/*.md runs, in order per file as one
    session, in a temporary working directory, at small sizes: every call goes through
    :func:`shrunk_call`, which caps size arguments (``n_traj``, ``n_steps``, ``n_paths``,
    …, bound by name or position against the callee's signature) and scales ``burn_in``
    with ``n_steps`` — nothing depends on which block it is.
(c) Every "theory.md §N" citation (also chains such as "theory.md §2–§6") in limitdyn/,
    README.md, examples/, benchmarks/, tests/ and docs/ names a heading "## §N …" or
    "### §N.M …" of docs/theory.md.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
THEORY = DOCS / "theory.md"

# --- (a) the site ---------------------------------------------------------------------------


def test_docs_build_strict(tmp_path):
    """``mkdocs build --strict``: any warning (a broken link, a docstring mkdocstrings cannot
    parse, a citation of a missing section) fails the build (~5 s)."""
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                          str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stderr[-6000:]}"
    home = (site / "index.html").read_text(encoding="utf-8")
    readme_title = re.search(r"^# (.+)$", (ROOT / "README.md").read_text(encoding="utf-8"),
                             re.M).group(1)
    assert readme_title in home, "the README is not on the home page"
    examples = (site / "examples" / "index.html").read_text(encoding="utf-8")
    missing = [p.name for p in sorted((ROOT / "examples").glob("*.py")) if p.name not in examples]
    assert not missing, f"examples missing from the examples page: {missing}"
    theory = (site / "theory" / "index.html").read_text(encoding="utf-8")
    for section in theory_sections():
        assert f'id="s{section.replace(".", "-")}"' in theory, f"no anchor for §{section}"
    for page in ("api/index.html", "api/theory/index.html", "api/noise/index.html",
                 "api/hessian/index.html", "api/nn/index.html", "api/limiting/index.html",
                 "api/mlnoise/index.html"):
        assert 'class="doc doc-' in (site / page).read_text(encoding="utf-8"), \
            f"{page} has no rendered docstrings"


# --- (b) every Python block runs ------------------------------------------------------------

# Size arguments and the largest value a documentation block may use. Values below the cap
# are kept; only integers are capped ("auto" and other non-integers pass through).
SIZE_CAPS = {
    "n_traj": 64,       # trajectories (simulate_sgd, simulate_sde, continue_sgd)
    "n_paths": 32,      # ML-noise paths
    "n_steps": 200,     # steps (a multiple of common strides and record intervals)
    "n_seeds": 1,       # network seeds
    "width": 32,        # network width
    "n_samples": 64,    # Hutchinson probes
    "n_boot": 200,      # bootstrap resamples
    "n": 1024,          # examples
    "d": 32,            # parameters
}
# Arguments measured in steps (or time) that must shrink with n_steps in the same call.
SCALED_WITH_STEPS = ("burn_in", "t_end")
# Calls that must see the caller's own frame, so they are never wrapped.
UNWRAPPED = {"super", "locals", "globals", "vars", "dir", "eval", "exec"}
BLOCK_TIMEOUT_S = 120   # a guard against a block that does not shrink, not a benchmark


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shrink_arguments(arguments: dict) -> dict:
    """Cap the size arguments of one call (a name → value mapping) and scale the arguments
    that count steps by the factor n_steps shrank by."""
    out = dict(arguments)
    for name, cap in SIZE_CAPS.items():
        if _is_int(out.get(name)) and out[name] > cap:
            if name == "n_steps":
                ratio = cap / out[name]
                for other in SCALED_WITH_STEPS:
                    value = out.get(other)
                    if _is_int(value):
                        out[other] = int(value * ratio)
                    elif isinstance(value, float):
                        out[other] = value * ratio
            out[name] = cap
    return out


def shrunk_call(fn, *args, **kwargs):
    """Call ``fn`` with its size arguments capped, whether passed by name or by position."""
    try:
        sig = inspect.signature(fn)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):     # no signature, or a call the callee will reject
        return fn(*args, **shrink_arguments(kwargs))
    bound.arguments.update(shrink_arguments(bound.arguments))
    for name, param in sig.parameters.items():         # sizes passed on through **kwargs
        if param.kind is param.VAR_KEYWORD and name in bound.arguments:
            bound.arguments[name] = shrink_arguments(bound.arguments[name])
    return fn(*bound.args, **bound.kwargs)


class _WrapCalls(ast.NodeTransformer):
    """f(a, k=v) → __docs_call__(f, a, k=v), for every call in a block."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id in UNWRAPPED:
            return node
        return ast.copy_location(ast.Call(func=ast.Name("__docs_call__", ast.Load()),
                                          args=[node.func, *node.args],
                                          keywords=node.keywords), node)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown file as (first line number, dedented source), with
    ``--8<-- "file"`` lines expanded from the repository root as the site does."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    fence = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<body>.*?)^(?P=indent)```",
                       re.M | re.S)
    for m in fence.finditer(text):
        body = textwrap.dedent(m.group("body"))
        body = re.sub(r'^--8<-- "([^"]+)"\s*$',
                      lambda s: (ROOT / s.group(1)).read_text(encoding="utf-8"), body,
                      flags=re.M)
        blocks.append((text.count("\n", 0, m.start("body")) + 1, body))
    return blocks


def compile_block(source: str, filename: str, first_line: int):
    """The block with every call wrapped; tracebacks point at the file's own lines."""
    tree = _WrapCalls().visit(ast.parse(source, filename))
    ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, first_line - 1)
    return compile(tree, filename, "exec")


@contextlib.contextmanager
def _time_limit(seconds: int, what: str):
    def expire(signum, frame):
        raise TimeoutError(f"{what} ran for more than {seconds} s at small sizes")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_blocks(path: Path, workdir: Path) -> list[tuple[int, float]]:
    """Run every Python block of ``path`` in order in one namespace inside ``workdir``;
    returns (line, seconds) per block, or fails naming the block and its error."""
    namespace = {"__name__": "__docs__", "__docs_call__": shrunk_call}
    timings = []
    old = Path.cwd()
    os.chdir(workdir)
    try:
        for i, (line, source) in enumerate(python_blocks(path), start=1):
            where = f"{path.relative_to(ROOT)}:{line} (Python block {i})"
            start = time.perf_counter()
            try:
                code = compile_block(source, str(path), line)
                # A user's default (the suite's conftest raises on rank promotion).
                with _time_limit(BLOCK_TIMEOUT_S, where), jax.numpy_rank_promotion("allow"):
                    exec(code, namespace)
            except Exception as err:
                tb = "".join(traceback.format_exception(err, limit=-3))
                pytest.fail(f"{where} failed: {type(err).__name__}: {err}\n{tb}")
            timings.append((line, time.perf_counter() - start))
    finally:
        os.chdir(old)
    return timings


DOC_FILES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_readme_has_python_blocks():
    assert len(python_blocks(ROOT / "README.md")) >= 2


# README.md's blocks took 27–43 s together on 2 busy cores (compilation, mostly the network
# grid), so that file is marked slow; the docs' own blocks take well under a second.
_SLOW_FILES = {ROOT / "README.md"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=[pytest.mark.slow] if p in _SLOW_FILES
                                               else [], id=str(p.relative_to(ROOT)))
                                  for p in DOC_FILES if python_blocks(p)])
def test_python_blocks_run(path, tmp_path):
    timings = run_blocks(path, tmp_path)
    print(", ".join(f"line {line}: {sec:.1f} s" for line, sec in timings))


def test_shrinking_is_by_name_and_position():
    def run(prob, hp, key, n_traj, n_steps, burn_in=None, *, width=8, mode="auto"):
        return n_traj, n_steps, burn_in, width, mode

    assert shrunk_call(run, 1, 2, 3, 4096, 2000, 1000, width=128) == (64, 200, 100, 32, "auto")
    assert shrunk_call(run, 1, 2, 3, n_traj=16, n_steps=50) == (16, 50, None, 8, "auto")
    assert shrunk_call(run, 1, 2, 3, 4096, n_steps="auto") == (64, "auto", None, 8, "auto")
    assert shrink_arguments({"n_steps": 10_000, "burn_in": 5.0}) == {"n_steps": 200,
                                                                      "burn_in": 0.1}
    assert shrunk_call(max, 3, 5000) == 5000           # builtins without a signature: as is
    assert shrunk_call(lambda **kw: kw, n_paths=1000, T=0.5) == {"n_paths": 32, "T": 0.5}
    code = compile_block("x = sum([1, 2])\ny = dict(n_traj=9999)\n", "<t>", 1)
    ns = {"__docs_call__": shrunk_call}
    exec(code, ns)
    assert ns["x"] == 3 and ns["y"] == {"n_traj": 64}


# --- (c) citations ---------------------------------------------------------------------------

HEADING = re.compile(r"^(##|###) §(\d+(?:\.\d+)?)\s+\S", re.M)
CITATION = re.compile(r"theory\.md\s+§\d+(?:\.\d+)?(?:\s*(?:–|-|,|and|&)\s*§\d+(?:\.\d+)?)*")


def theory_sections() -> list[str]:
    text = re.sub(r"^```.*?^```", "", THEORY.read_text(encoding="utf-8"), flags=re.M | re.S)
    return [m.group(2) for m in HEADING.finditer(text)]


def citations() -> list[tuple[str, int, str]]:
    """(file, line, section) for every section a "theory.md §…" citation names."""
    files = [*ROOT.joinpath("limitdyn").rglob("*.py"), ROOT / "README.md",
             *ROOT.joinpath("examples").rglob("*.py"), *ROOT.joinpath("benchmarks").rglob("*.py"),
             *ROOT.joinpath("benchmarks").rglob("*.md"), *ROOT.joinpath("tests").rglob("*.py"),
             *(p for p in DOCS.rglob("*.md") if p != THEORY)]
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for m in CITATION.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            for number in re.findall(r"§(\d+(?:\.\d+)?)", m.group(0)):
                out.append((str(path.relative_to(ROOT)), line, number))
    return out


def test_theory_sections_are_numbered_in_order():
    sections = theory_sections()
    majors = [s for s in sections if "." not in s]
    assert majors == [str(i) for i in range(1, len(majors) + 1)], majors
    assert len(majors) >= 10, "§9 (reshuffling) and §10 (networks) are reserved headings"
    for s in sections:
        if "." in s:
            major = s.split(".")[0]
            before = sections[:sections.index(s)]
            assert major in before, f"§{s} comes before §{major}"
    assert len(set(sections)) == len(sections), "a section number appears twice"


def test_every_citation_resolves():
    found = citations()
    assert len(found) >= 50, "the citation scan found almost nothing: is the pattern broken?"
    sections = set(theory_sections())
    bad = [f"{file}:{line}: §{number}" for file, line, number in found if number not in sections]
    assert not bad, "citations of sections docs/theory.md does not have:\n" + "\n".join(bad)


def test_citation_pattern_reads_chains():
    text = "see theory.md §2–§6 and theory.md §4, §5.2; not Kalra & Barkeshli §3"
    numbers = [n for m in CITATION.finditer(text) for n in re.findall(r"§(\d+(?:\.\d+)?)",
                                                                          m.group(0))]
    assert numbers == ["2", "6", "4", "5.2"]
