"""Every code snippet in README.md and docs/*.md is checked, so the docs cannot drift.

The rules, for whoever adds a snippet:

* A ```python block is **type-checked with mypy** as a module of its own (non-strict, with
  ``check_untyped_defs`` and the pydantic plugin). It may use the names listed in
  ``tests/docs/prelude.py`` without defining them (``dsn``, ``spawner``, every public name of
  ``job``, ...); any other undefined name, a wrong import or a wrong call is an error reported
  as ``README.md:LINE``. Top-level ``await`` / ``async with`` is allowed (the block is then
  checked as the body of an ``async def``), and a line ``...`` stands for elided code.
* A ```python block that defines ``async def main(dsn)`` or ``async def test_...(dsn)`` is a
  **complete program**: it is also executed, that function called with a fresh test database.
* A ```sh block: every ``./path`` it runs must exist in the repository and be executable.
  Other commands are not checked.
* Other blocks (no language, ``mermaid``, output samples) are prose and are not checked.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.docs import prelude

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)\s*$")

MYPY_CONFIG = """\
[mypy]
python_version = 3.11
check_untyped_defs = True
warn_unused_ignores = False
plugins = pydantic.mypy
disable_error_code = top-level-await, no-redef

[mypy-opentelemetry.exporter.*]
ignore_missing_imports = True
"""


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # 1-based line of the first code line in the markdown file
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def snippets(lang: str) -> list[Snippet]:
    found = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            match = FENCE.match(lines[i])
            if not match:
                i += 1
                continue
            start = i + 1
            end = start
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if match.group(1) == lang:
                found.append(Snippet(path, start + 1, lang, "\n".join(lines[start:end]) + "\n"))
            i = end + 1
    return found


def needs_async_body(code: str) -> bool:
    """Whether the snippet awaits (await, async with, async for) outside any async def."""

    def awaits_at_top(node: ast.AST) -> bool:
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef | ast.Lambda):
            return False  # an await in there is that function's business
        if isinstance(node, ast.Await | ast.AsyncWith | ast.AsyncFor):
            return True
        return any(awaits_at_top(child) for child in ast.iter_child_nodes(node))

    tree = ast.parse(code)
    return any(awaits_at_top(node) for node in tree.body)


def free_prelude_names(code: str) -> list[str]:
    """Prelude names the snippet uses without defining or importing them itself."""
    tree = (
        ast.parse(code)
        if not needs_async_body(code)
        else ast.parse("async def _s():\n" + textwrap.indent(code, "    "))
    )
    used, defined = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    available = set(prelude.__all__) | set(dir(prelude)) - {"annotations", "Any"}
    return sorted(n for n in used - defined if n in available and not n.startswith("_"))


def as_module(snippet: Snippet) -> tuple[str, int]:
    """The module source to check, and how many lines precede the snippet's first line."""
    names = free_prelude_names(snippet.code)
    header = [f"from tests.docs.prelude import {', '.join(names)}"] if names else []
    if needs_async_body(snippet.code):
        header.append("async def _snippet() -> None:")
        body = textwrap.indent(snippet.code, "    ")
    else:
        body = snippet.code
    return "\n".join([*header, body]), len(header)


# Snippets known to fail the check, in docs owned by someone else, with the reason; each must
# still fail (so this list shrinks as they are fixed). Never add a snippet of your own here.
KNOWN_BROKEN: dict[str, str] = {}

PYTHON = snippets("python")
SHELL = snippets("sh")


def test_there_are_snippets_to_check():
    assert len(PYTHON) >= 10, [s.where for s in PYTHON]
    assert SHELL


def test_python_snippets_type_check(tmp_path):
    """All ```python blocks, in one mypy run; errors are reported at their markdown line."""
    (tmp_path / "mypy.ini").write_text(MYPY_CONFIG)
    files: dict[str, tuple[Snippet, int]] = {}
    for i, snippet in enumerate(PYTHON):
        source, offset = as_module(snippet)
        name = f"snippet_{i:03d}.py"
        (tmp_path / name).write_text(source)
        files[name] = (snippet, offset)
    env = {**os.environ, "MYPYPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "--no-error-summary",
            "--show-error-codes",
            *files,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    errors = []
    for line in result.stdout.splitlines():
        match = re.match(r"^(snippet_\d+\.py):(\d+): (error|note): (.*)$", line)
        if match and match.group(1) in files:
            snippet, offset = files[match.group(1)]
            doc_line = snippet.line + int(match.group(2)) - 1 - offset
            rel = snippet.path.relative_to(ROOT)
            errors.append(f"{rel}:{doc_line}: {match.group(3)}: {match.group(4)}")
        elif line.strip():
            errors.append(line)
    known = [e for e in errors if e.split(": ", 1)[0] in KNOWN_BROKEN]
    unexpected = [
        e
        for e in errors
        if e not in known and not e.startswith(tuple(f"{w}: note" for w in KNOWN_BROKEN))
    ]
    assert not unexpected, "\n".join(unexpected)
    assert {e.split(": ", 1)[0] for e in known} == set(KNOWN_BROKEN), (
        "a KNOWN_BROKEN snippet passes now: remove it from the list"
    )
    assert errors or result.returncode == 0, result.stderr


PROGRAMS = [s for s in PYTHON if re.search(r"^async def (main|test_\w+)\(dsn", s.code, re.M)]


@pytest.mark.parametrize("snippet", PROGRAMS, ids=[s.where for s in PROGRAMS])
async def test_program_snippets_run(snippet: Snippet, db_dsn, capsys):
    """Blocks that are complete programs run against a fresh database and succeed."""
    source, _ = as_module(snippet)
    namespace: dict[str, Any] = {"__name__": f"snippet:{snippet.where}"}
    exec(compile(source, snippet.where, "exec"), namespace)
    (entry,) = (namespace[n] for n in namespace if n == "main" or n.startswith("test_"))
    await entry(db_dsn)


def test_program_snippets_exist():
    """The Quickstart (README) and the manual-clock test (concepts.md) are run, not only
    type-checked."""
    wheres = {s.path.name for s in PROGRAMS}
    assert {"README.md", "concepts.md"} <= wheres, [s.where for s in PROGRAMS]


@pytest.mark.parametrize("snippet", SHELL, ids=[s.where for s in SHELL])
def test_shell_snippets_run_existing_scripts(snippet: Snippet):
    for line in snippet.code.splitlines():
        command = line.split("#", 1)[0].strip()
        if not command:
            continue
        for word in command.split():
            if word.startswith("./"):
                path = ROOT / word
                assert path.is_file(), f"{snippet.where}: {word} does not exist"
                assert os.access(path, os.X_OK), f"{snippet.where}: {word} is not executable"
