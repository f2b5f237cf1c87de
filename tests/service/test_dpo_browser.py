"""The DPO's page in a real headless Chromium (Playwright), against a real `forget serve` process.

Needs the system's Chromium (Debian: `apt-get install chromium`; or FORGET_TEST_CHROMIUM=/path)
and `pip install playwright` (its Python driver only: no `playwright install`, the browser is the
system's). Screenshots of every step go to $FORGET_TEST_SCREENSHOTS (default: the test's tmp dir)
for a person to look at. CI sets FORGET_TEST_REQUIRE_BROWSER=1, so that a missing browser fails
the run instead of skipping the test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import write_tabular_csv
from tests.helpers import cli, cli_json, init_args
from tests.service.test_server import COLUMNS, start_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("FORGET_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
RED = "rgb(179, 38, 30)"
"""--red in forget/service/templates/dpo.css.j2."""


@dataclass
class Served:
    url: str
    workspace: Path
    tokens: dict[str, str]
    token_ids: dict[str, str]
    shots: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("dpo")
    ws = tmp / "ws"
    write_tabular_csv(tmp / "data.csv", rows=160)
    cli(*init_args(ws, "sqlite:///forget.db"))
    cli("-w", ws, "ingest", tmp / "data.csv", *COLUMNS)
    cli("-w", ws, "train", "--device", "cpu")
    tokens, ids = {}, {}
    for name, scopes in [("dpo", ["admin"]), ("deputy", ["requests:read", "requests:write", "certificates:read"])]:
        created = cli_json("-w", ws, "token", "create", "--name", name, *[f"--scope={s}" for s in scopes])
        tokens[name], ids[name] = created["token"], created["token_id"]
    shots = Path(os.environ.get("FORGET_TEST_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    # No in-process runs: the test files, sees the request open, then runs `forget run` as cron would.
    process, url = start_server(ws, "--no-run-after-request")
    yield Served(url, ws, tokens, ids, shots)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert "person-" not in stderr, stderr  # no subject id in the access log
    assert "POST /dpo/requests 303 dpo" in stderr


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    required = os.environ.get("FORGET_TEST_REQUIRE_BROWSER") == "1"  # CI: a missing browser fails, not skips
    if CHROMIUM is None:
        (pytest.fail if required else pytest.skip)(
            "no Chromium: apt-get install chromium (or set FORGET_TEST_CHROMIUM)"
        )
    try:
        from playwright import sync_api
    except ImportError:
        (pytest.fail if required else pytest.skip)("no Playwright: pip install playwright (the driver; no browsers)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


def shot(page: Page, served: Served, name: str, full_page: bool = True) -> None:
    page.screenshot(path=served.shots / f"{name}.png", full_page=full_page)


def row(page: Page, request_id: str) -> str:
    return page.locator(f"tr#{request_id}").inner_text()


def ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_dpo_logs_in_files_sees_deadlines_and_downloads_certificates(browser: Browser, served: Served) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(served.url + "/dpo")
    assert page.url == served.url + "/dpo/login"
    shot(page, served, "01-login")

    page.fill("#token", "fgt_" + "A" * 43)
    page.click("button[type=submit]")
    assert "That token is not valid" in page.inner_text("p.error")
    shot(page, served, "02-login-wrong-token")

    page.fill("#token", served.tokens["dpo"])
    page.click("button[type=submit]")
    assert page.url == served.url + "/dpo"
    assert context.cookies()[0]["httpOnly"] and context.cookies()[0]["sameSite"] == "Strict"
    shot(page, served, "03-overview-empty")

    page.fill("#subject_id", "person-0042")
    page.fill("#note", "DSAR-2026-117")
    page.click("#file button[type=submit]")
    notice = page.inner_text("p.notice")
    found = re.search(r"Filed request (req_[0-9a-f]{16}) \(ticket DSAR-2026-117\)", notice)
    assert found is not None, notice
    filed = found.group(1)
    assert "person-0042" not in page.content() and "person-0042" not in page.url
    assert page.input_value("#subject_id") == ""
    assert re.search(r"\d\d\.\d days left", row(page, filed))
    shot(page, served, "04-filed")

    page.fill("#subject_id", "person-0099")
    page.fill("#note", "DSAR-2026-118")
    page.fill("#received_at", "2999-01-01T09:30")
    page.click("#file button[type=submit]")
    assert "is in the future" in page.inner_text("p.error")
    assert page.input_value("#subject_id") == "" and page.input_value("#note") == "DSAR-2026-118"
    assert "person-0099" not in page.content()
    shot(page, served, "04b-refused")

    late = cli_json("-w", served.workspace, "request", "--subject-id", "person-0007", "--received-at", ago(40),
                    "--note", "DSAR-2026-088")["request_id"]  # fmt: skip
    page.reload()
    assert (
        re.search(r"overdue by \d+\.\d days", row(page, late)) and page.locator("p.notice").count() == 0
    )  # the notice was shown once
    assert page.locator(f"tr#{late} td").first.evaluate("cell => getComputedStyle(cell).color") == RED
    assert page.locator(f"tr#{filed} td").first.evaluate("cell => getComputedStyle(cell).color") != RED
    shot(page, served, "05-overdue")

    cli("-w", served.workspace, "run", "--device", "cpu")
    still_open = cli_json("-w", served.workspace, "request", "--subject-id", "person-0011", "--received-at", ago(35),
                          "--note", "DSAR-2026-090")["request_id"]  # fmt: skip
    page.reload()
    completed = page.locator("#completed")
    assert filed in completed.inner_text() and late in completed.inner_text()
    assert (
        "erased" in row(page, filed)
        and "on time" in row(page, filed)
        and re.search(r"late by \d+\.\d days", row(page, late))
    )
    assert still_open in page.locator("#open").inner_text()
    assert page.inner_text("#ledger-size").isdigit()
    assert re.fullmatch(r"[0-9a-f]{64}", page.inner_text("#ledger-root"))
    shot(page, served, "06-completed")

    with context.expect_page() as opened:
        page.click(f"tr#{filed} a:text('HTML')")
    certificate = opened.value
    certificate.wait_for_load_state()
    assert filed in certificate.content()
    shot(certificate, served, "07-certificate-html", full_page=False)
    certificate.close()
    with page.expect_download() as download:
        page.click(f"tr#{filed} a:text('PDF')")
    assert download.value.suggested_filename == f"certificate-{filed}.pdf"
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")

    page.click("button:text('Log out')")
    assert "You are logged out." in page.inner_text("p.info")
    shot(page, served, "08-logged-out")
    page.goto(served.url + "/dpo")
    assert page.url == served.url + "/dpo/login"
    context.close()


def test_revoking_the_token_ends_its_browser_session(browser: Browser, served: Served) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(served.url + "/dpo/login")
    page.fill("#token", served.tokens["deputy"])
    page.click("button[type=submit]")
    assert page.url == served.url + "/dpo" and "deputy" in page.inner_text("header")
    cli("-w", served.workspace, "token", "revoke", served.token_ids["deputy"])
    page.reload()
    assert page.url == served.url + "/dpo/login?ended=session"
    assert "Your session has ended" in page.inner_text("p.info")
    shot(page, served, "09-revoked")
    context.close()
