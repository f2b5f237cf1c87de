"""The README's command table says what `forget ... --help` says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import cli

README = Path(__file__).parents[2] / "README.md"


def readme_commands() -> list[tuple[str, str]]:
    text = README.read_text()
    block = text[text.index("<!-- commands:start") : text.index("<!-- commands:end -->")]
    return re.findall(r"^\| `forget ([a-z -]+)` \| (.+) \|$", block, flags=re.MULTILINE)


def normalised(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_the_table_lists_every_command() -> None:
    listed = {name for name, _ in readme_commands()}
    assert len(listed) == 27 and {"init", "run", "certificate verify", "audit replay"} <= listed


@pytest.mark.parametrize(("command", "summary"), readme_commands())
def test_each_summary_matches_the_help(command: str, summary: str) -> None:
    help_text = normalised(cli(*command.split(), "--help").stdout)
    assert normalised(summary.replace("\\|", "|")) in help_text
