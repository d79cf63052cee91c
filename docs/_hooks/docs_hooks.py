"""MkDocs hooks of the limitdyn site (mkdocs.yml ``hooks:``); build-time only, not a page.

* ``--8<-- "README.md"`` in a page is replaced by the README (the repository's front page),
  with its relative links rewritten to resolve from docs/ (``docs/x.png`` → ``x.png``).
  Done here rather than by pymdownx.snippets because link validation sees the page after
  snippets are expanded, when the README's repository-relative paths would be broken.
* ``<!-- limitdyn:examples -->`` in a page is replaced by every script of examples/
  (sorted by name): its docstring's first paragraph as the introduction, then its whole
  source, so a new example is on the site without editing the page.
* Headings ``## §N …`` and ``### §N.M …`` of theory.md get the stable ids ``sN`` / ``sN-M``
  (kept out of the source so the file reads cleanly on a code host).
* Every citation ``theory.md §N`` (also chains such as ``theory.md §2–§6`` or
  ``theory.md §2, §5``) in the rendered HTML of every other page — README text and the
  docstrings of the API reference alike — becomes a link to that section. A citation of a
  section theory.md does not have is a build warning (an error under ``--strict``).
* On the API pages, the Sphinx roles of the docstrings (``:func:`x` ``) and the ``::``
  of literal blocks are tidied: Markdown would show them verbatim.
"""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.limitdyn")

THEORY = "theory.md"
HEADING = re.compile(r"^(#{2,3}) §(\d+)(?:\.(\d+))?(\s.*?)?\s*$")
INCLUDE = re.compile(r'^--8<-- "README\.md"\s*$', re.M)
EXAMPLES = re.compile(r"^<!-- limitdyn:examples -->\s*$", re.M)
CHAIN = re.compile(r"theory\.md\s+§\d+(?:\.\d+)?(?:\s*(?:–|-|,|and|&amp;)\s*§\d+(?:\.\d+)?)*")
NUMBER = re.compile(r"§(\d+)(?:\.(\d+))?")
MD_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))", re.S)
TAG = re.compile(r"(<[^>]+>)")
SKIP_TAGS = ("a", "pre", "code", "h1", "h2", "h3", "h4", "h5", "h6")

_sections: set[str] = set()


def anchor(major: str, minor: str | None) -> str:
    return f"s{major}" if minor is None else f"s{major}-{minor}"


def on_config(config, **kwargs):
    """Read the section numbers of theory.md once per build."""
    _sections.clear()
    text = (Path(config["docs_dir"]) / THEORY).read_text(encoding="utf-8")
    for line in _outside_fences(text.splitlines()):
        m = HEADING.match(line)
        if m:
            _sections.add(anchor(m.group(2), m.group(3)))
    return config


def _outside_fences(lines):
    fenced = False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def _readme(config) -> str:
    root = Path(config["config_file_path"]).parent
    text = (root / "README.md").read_text(encoding="utf-8")

    def fix(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"^[a-z]+:|^#", target):
            return m.group(0)
        if target.startswith("docs/"):
            return m.group(1) + target[len("docs/"):] + m.group(3)
        return m.group(0)

    # Links may span lines (long alt text): rewrite whole stretches between code fences.
    chunks = re.split(r"(^\s*```.*?^\s*```[^\n]*$)", text, flags=re.M | re.S)
    return "".join(c if i % 2 else MD_LINK.sub(fix, c) for i, c in enumerate(chunks))


def _examples(config) -> str:
    root = Path(config["config_file_path"]).parent
    out = []
    for path in sorted((root / "examples").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
        intro = doc.split("\n\n")[0].replace("\n", " ").strip()
        out += [f"## {path.name}", "", intro, ""]
        out += [f'```python title="examples/{path.name}"', source.rstrip("\n"), "```", ""]
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files, **kwargs):
    if INCLUDE.search(markdown):
        markdown = INCLUDE.sub(lambda _: _readme(config), markdown)
    if EXAMPLES.search(markdown):
        markdown = EXAMPLES.sub(lambda _: _examples(config), markdown)
    if page.file.src_uri != THEORY:
        return markdown
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else HEADING.match(line)
        if m and "{#" not in line:
            line = f"{line.rstrip()} {{#{anchor(m.group(2), m.group(3))}}}"
        out.append(line)
    return "\n".join(out) + "\n"


ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(?=<code>)")
TILDE = re.compile(r"<code>~(?:[\w]+\.)*([\w]+)</code>")
LITERAL = re.compile(r"::</p>")


def on_page_content(html, page, config, files, **kwargs):
    if page.file.src_uri.startswith("api/"):
        # Sphinx roles and literal-block markers of the docstrings, which Markdown shows
        # verbatim: ":func:`x`" → "`x`", "`~a.b.C`" → "`C`", "text::" → "text:".
        html = TILDE.sub(r"<code>\1</code>", ROLE.sub("", html))
        html = LITERAL.sub(":</p>", html)
    if page.file.src_uri == THEORY:
        return html
    theory = files.get_file_from_path(THEORY)
    if theory is None:
        return html
    base = theory.url_relative_to(page.file)

    def link_chain(m: re.Match) -> str:
        def link(n: re.Match, label: str | None = None) -> str:
            label = n.group(0) if label is None else label
            target = anchor(n.group(1), n.group(2))
            if target not in _sections:
                log.warning("%s cites %s, which is not a heading of docs/%s",
                            page.file.src_uri, n.group(0), THEORY)
                return label
            return f'<a href="{base}#{target}">{label}</a>'

        text = m.group(0)
        head = re.match(r"theory\.md\s+", text)
        first = NUMBER.match(text, head.end())
        return (link(first, text[: first.end()]) + NUMBER.sub(link, text[first.end():]))

    parts = TAG.split(html)
    depth = 0
    for i, part in enumerate(parts):
        if i % 2:                       # a tag
            m = re.match(r"<(/?)([a-zA-Z0-9]+)", part)
            if m and m.group(2).lower() in SKIP_TAGS and not part.endswith("/>"):
                depth += -1 if m.group(1) else 1
                depth = max(depth, 0)
        elif depth == 0 and "theory.md" in part:
            parts[i] = CHAIN.sub(link_chain, part)
    return "".join(parts)
