"""Docs that cannot go stale: every `forget ...` command and flag they quote exists, every exit-code
table matches cli/errors.py, and every relative link (and its #anchor) leads somewhere."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from cli.errors import ExitCode
from cli.main import app

ROOT = Path(__file__).parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GLOBAL_FLAGS = {"--workspace", "-w", "--verbose", "--help"}


def _code_lines(text: str) -> list[str]:
    """Command lines from fenced code blocks and inline code spans, with continuations joined."""
    lines: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"`(forget [^`]+)`", text)
    return lines


def _invocations(line: str) -> list[list[str]]:
    """Each `forget ...` invocation on a shell line, as words, up to a pipe, redirect or comment."""
    found = []
    for match in re.finditer(r"(?:^|[\s;&|(])forget (?=[a-z-])", line):
        rest = line[match.end() :]
        rest = re.split(r"\s#\s|\s\|\s?|\s&&\s|\s>\s?|\s2>|\)|;", rest, maxsplit=1)[0]
        try:
            words = shlex.split(rest)
        except ValueError:
            words = rest.split()
        found.append(words)
    return found


def quoted_commands() -> list[tuple[str, tuple[str, ...]]]:
    seen: dict[tuple[str, ...], str] = {}
    for document in DOCUMENTS:
        for line in _code_lines(document.read_text()):
            if "──" in line:  # a diagram, not a command
                continue
            for words in _invocations(line):
                seen.setdefault(tuple(words), document.name)
    return [(name, words) for words, name in seen.items()]


def without_global_options(words: tuple[str, ...]) -> tuple[str, ...]:
    """`forget -w WS --verbose run` is `forget run`."""
    rest = list(words)
    while rest and rest[0] in GLOBAL_FLAGS | {"..."}:
        option = rest.pop(0)
        if option in ("-w", "--workspace") and rest:
            rest.pop(0)
    return tuple(rest)


@functools.cache
def root() -> Any:
    return typer.main.get_command(app)


def command_path(words: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    """The deepest command the words name (`ledger verify`, not `ledger`), and its path."""
    command: Any = root()
    path: tuple[str, ...] = ()
    for word in words:
        subcommands = getattr(command, "commands", {})  # typer vendors its own click: no isinstance
        if word not in subcommands:
            break
        command, path = subcommands[word], (*path, word)
    return command, path


def options(command: Any) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}


@pytest.mark.parametrize(
    ("document", "words"), quoted_commands(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else v
)
def test_every_quoted_command_and_flag_exists(document: str, words: tuple[str, ...]) -> None:
    words = without_global_options(words)
    if not words or re.fullmatch(r"[a-z][a-z-]*", words[0]) is None:
        return  # the top level (`forget --help`), a placeholder (`forget COMMAND`) or prose (`forget status:`)
    command, path = command_path(words)
    assert path, f"{document}: `forget {' '.join(words)}` names no command"
    known = options(command) | GLOBAL_FLAGS
    for word in words[len(path) :]:
        flag = word.split("=", 1)[0]
        if re.fullmatch(r"--?[a-zA-Z][\w-]*", flag):
            assert flag in known, f"{document}: `forget {' '.join(path)}` has no option {flag}"


def _exit_tables() -> list[tuple[str, dict[int, str]]]:
    tables = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in re.finditer(r"^\| code \| meaning \|\n\|[- |]+\|\n((?:\|.*\|\n)+)", text, flags=re.MULTILINE):
            rows = re.findall(r"^\| (\d+) \| (.+) \|$", match.group(1), flags=re.MULTILINE)
            tables.append((document.name, {int(code): meaning for code, meaning in rows}))
    return tables


def test_exit_code_tables_match_the_code() -> None:
    tables = _exit_tables()
    assert {name for name, _ in tables} >= {"README.md", "operations.md"}
    for name, table in tables:
        assert set(table) == {int(code) for code in ExitCode}, f"{name}'s exit-code table differs from cli/errors.py"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_relative_link_resolves(document: Path) -> None:
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        path = (document.parent / file_part).resolve() if file_part else document
        assert path.exists(), f"{document.name}: the link {target} leads nowhere"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{document.name}: {path.name} has no heading #{anchor}"
