"""`forget certificate render` in and out of the certificate's workspace.

In its workspace the page names the organisation (forget.toml) and the DSAR ticket (the request's
row, shown only while its keyed digest matches the certified one); anywhere else it says what
only the workspace knows. Only a certificate that verifies is rendered.
"""

from __future__ import annotations

import re
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from forget.audit.certificate_view import TICKET_FROM_WORKSPACE, TICKET_MISMATCH
from forget.errors import WorkspaceError
from forget.workspace.config import read_config
from reports.render import ORGANISATION_OFFLINE, TICKET_OFFLINE
from tests.cli.test_certificates import PRESENT, make_workspace
from tests.helpers import cli, cli_json, init_args

slow = pytest.mark.slow  # the tests that use a trained workspace (about 5 s)
TICKET = "DSAR-2026-0042"


def shown(text: str) -> str:
    return str(escape(text))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("render")
    ws = make_workspace(root, "ws", "--organisation", "  Example Ltd  ")
    request_id = cli_json("-w", ws, "request", "--subject-id", PRESENT, "--note", TICKET)["request_id"]
    cli("-w", ws, "run", "--device", "cpu")
    (root / "operator.key").write_text(cli("-w", ws, "keys", "public").stdout)
    return {"root": root, "ws": ws, "cert": ws / "certificates" / f"{request_id}.json", "key": root / "operator.key"}


def render(rendered: dict[str, Any], out: Path, *before: object, expect: int = 0) -> str:
    cli(*before, "certificate", "render", rendered["cert"], "--public-key", rendered["key"], "--html", out,
        expect=expect)  # fmt: skip
    return out.read_text() if expect == 0 else ""


def test_init_records_the_organisation(tmp_path: Path) -> None:
    cli("init", tmp_path / "ws", "--organisation", "  Example Ltd  ")
    config_text = (tmp_path / "ws" / "forget.toml").read_text()
    assert tomllib.loads(config_text)["workspace"]["organisation"] == "Example Ltd"
    assert read_config(tmp_path / "ws" / "forget.toml").organisation == "Example Ltd"
    for bad in ("", "two\nlines", "x" * 201):
        result = cli(*init_args(tmp_path / "bad", "sqlite:///forget.db", "--organisation", bad), expect=2)
        message = re.sub(r"[\s│╭╮╰╯─]+", " ", result.stderr)  # typer draws a box around usage errors
        assert "organisation must be one line of 1 to 200 characters" in message
        assert not (tmp_path / "bad" / "forget.toml").exists()
    (tmp_path / "ws" / "forget.toml").write_text(config_text.replace('"Example Ltd"', '"A\\u0007B"'))
    with pytest.raises(WorkspaceError, match=r"organisation must be one line of 1 to 200 characters$"):
        read_config(tmp_path / "ws" / "forget.toml")
    (tmp_path / "ws" / "forget.toml").write_text(config_text.replace('organisation = "Example Ltd"\n', ""))
    assert read_config(tmp_path / "ws" / "forget.toml").organisation is None


@slow
def test_in_its_workspace_the_page_names_the_organisation_and_the_ticket(
    rendered: dict[str, Any], tmp_path: Path
) -> None:
    page = render(rendered, tmp_path / "c.html", "-w", rendered["ws"])
    first = page[: page.index('<section class="appendix">')]
    assert "<strong>Example Ltd</strong>" in first and f"<strong>{TICKET}</strong>" in first
    assert shown(TICKET_FROM_WORKSPACE) in first
    assert "Searched for the identifier in form NFC, trimmed, case-insensitive" in first


@slow
def test_elsewhere_the_page_says_what_only_the_workspace_knows(
    rendered: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORGET_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)  # no workspace here: an auditor's folder
    page = render(rendered, tmp_path / "offline.html")
    assert shown(ORGANISATION_OFFLINE) in page and shown(TICKET_OFFLINE) in page
    assert TICKET not in page and "Example Ltd" not in page
    # Another workspace (another log) contributes nothing either.
    cli(*init_args(tmp_path / "other", "sqlite:///forget.db", "--organisation", "Other Org"))
    page = render(rendered, tmp_path / "other.html", "-w", tmp_path / "other")
    assert shown(ORGANISATION_OFFLINE) in page and "Other Org" not in page and TICKET not in page


@slow
def test_a_ticket_edited_in_the_database_is_not_shown(rendered: dict[str, Any], tmp_path: Path) -> None:
    database = rendered["ws"] / "forget.db"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE requests SET note = 'DSAR-2026-9999' WHERE note = ?", (TICKET,))
    try:
        page = render(rendered, tmp_path / "edited.html", "-w", rendered["ws"])
        assert shown(TICKET_MISMATCH) in page and "DSAR-2026-9999" not in page and TICKET not in page
    finally:
        with sqlite3.connect(database) as connection:
            connection.execute("UPDATE requests SET note = ? WHERE note = 'DSAR-2026-9999'", (TICKET,))


@slow
def test_a_certificate_that_does_not_verify_is_not_rendered(rendered: dict[str, Any], tmp_path: Path) -> None:
    forged = rendered["cert"].read_bytes().replace(b'"sig": "', b'"sig": "AAAA', 1)
    (tmp_path / "forged.json").write_bytes(forged)
    result = cli("-w", rendered["ws"], "certificate", "render", tmp_path / "forged.json", "--public-key",
                 rendered["key"], "--html", tmp_path / "f.html", expect=1)  # fmt: skip
    assert result.stderr.startswith("error: ") and not (tmp_path / "f.html").exists()


@slow
def test_the_pdf_has_the_first_page_first(rendered: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("weasyprint")
    pypdf = pytest.importorskip("pypdf")
    cli("-w", rendered["ws"], "certificate", "render", rendered["cert"], "--public-key", rendered["key"],
        "--pdf", tmp_path / "c.pdf")  # fmt: skip
    reader = pypdf.PdfReader(tmp_path / "c.pdf")
    first = reader.pages[0].extract_text()
    assert "Example Ltd" in first and TICKET in first and "Check it yourself" in first
    assert "Appendix" not in first
