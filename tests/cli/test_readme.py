"""The README's command table says what `forget ... --help` says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import cli

README = Path(__file__).parents[2] / "README.md"


def readme_commands() -> list[tuple[str, str]]:
    text = README.read_text()
    block = text[text.index("<!-- commands:start") : text.index("<!-- commands:end -->")]
    return re.findall(r"^\| `forget ([a-z -]+)` \| (.+) \|$", block, flags=re.MULTILINE)


def normalised(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def cli_commands() -> set[str]:
    """Every command the real CLI has, as `group sub` paths (groups with a callback count too)."""
    import typer

    from cli.main import app

    found: set[str] = set()

    def walk(command: Any, path: str) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            if path and command.invoke_without_command:
                found.add(path)
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())
        else:
            found.add(path)

    walk(typer.main.get_command(app), "")
    return found


def test_the_table_lists_every_command() -> None:
    listed = {name for name, _ in readme_commands()}
    assert listed == cli_commands()


@pytest.mark.parametrize(("command", "summary"), readme_commands())
def test_each_summary_matches_the_help(command: str, summary: str) -> None:
    help_text = normalised(cli(*command.split(), "--help").stdout)
    assert normalised(summary.replace("\\|", "|")) in help_text
