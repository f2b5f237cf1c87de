"""The DPO's page without a browser: sessions, CSRF, filing, the overview, through real HTTP (httpx).

The server is uvicorn on a loopback port in a thread of the test process; the workspace's store
and ledger are in memory (tests/fakes.py) and so are the tokens: no database, no torch training.
tests/service/test_dpo_browser.py drives a real `forget serve` process in Chromium.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from forget.erasure.requests import file_request, format_time
from forget.service.app import create_app
from forget.service.dpo import LOGIN_COOKIE, LOGIN_SECONDS, SESSION_COOKIE, SESSION_SECONDS, Session, SessionKeys
from forget.service.openapi import openapi_document
from forget.service.tokens import Scope, TokenRecord, create_token
from forget.workspace.core import Workspace

SUBJECT = "person-0003"


class MemoryTokens:
    """`forget.service.tokens.TokenStore` in a list."""

    def __init__(self) -> None:
        self.records: list[TokenRecord] = []

    def find(self, token_hash: str) -> TokenRecord | None:
        return next((r for r in self.records if r.token_hash == token_hash), None)

    def add(self, record: TokenRecord) -> None:
        self.records.append(record)

    def all(self) -> list[TokenRecord]:
        return list(self.records)

    def revoke(self, token_id: str, when: str) -> bool:
        for n, record in enumerate(self.records):
            if record.token_id == token_id and record.revoked_at is None:
                self.records[n] = replace(record, revoked_at=when)
                return True
        return False

    def any_active(self) -> bool:
        return any(r.revoked_at is None for r in self.records)


@dataclass
class Page:
    client: httpx.Client
    app: Starlette
    workspace: Workspace
    tokens: MemoryTokens
    secrets: dict[str, str]

    def login(self, name: str = "dpo") -> str:
        """Logs in through the form; returns the overview's CSRF field."""
        form = self.client.get("/dpo/login")
        response = self.client.post("/dpo/login", data={"token": self.secrets[name], "csrf": csrf_of(form.text)})
        assert response.status_code == 303 and response.headers["location"] == "/dpo", response.text
        return csrf_of(self.client.get("/dpo").text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


@pytest.fixture
def page(fake_workspace: Workspace) -> Iterator[Page]:
    tokens = MemoryTokens()
    now = format_time(datetime.now(UTC))
    secrets = {}
    for name, scopes in [
        ("dpo", {Scope.ADMIN}),
        ("trio", {Scope.REQUESTS_READ, Scope.REQUESTS_WRITE, Scope.CERTIFICATES_READ}),
        ("reader", {Scope.REQUESTS_READ}),
    ]:
        secrets[name], _ = create_token(tokens, name, frozenset(scopes), now)
    app = create_app(fake_workspace, tokens)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
            while not server.started:
                thread.join(0.01)
            yield Page(client, app, fake_workspace, tokens, secrets)
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()


# -- sessions, pure -------------------------------------------------------------------------------


def test_a_session_cookie_reads_back_until_it_expires_is_tampered_with_or_ended() -> None:
    clock = [1_000_000.0]
    keys = SessionKeys(b"k" * 32, clock=lambda: clock[0])
    cookie, session = keys.issue("tok_0123456789ab")
    assert keys.read(cookie) == session == Session("tok_0123456789ab", 1_000_000 + SESSION_SECONDS, session.nonce)
    token_id, expires, nonce, mac = cookie.split(".")
    assert keys.read(".".join(("tok_ffffffffffff", expires, nonce, mac))) is None
    assert keys.read(".".join((token_id, str(int(expires) + 3600), nonce, mac))) is None
    assert keys.read(cookie + "0") is None and keys.read("") is None and keys.read(None) is None
    assert SessionKeys(b"x" * 32, clock=lambda: clock[0]).read(cookie) is None  # another process's key
    assert keys.csrf_ok(session, keys.csrf(session)) and not keys.csrf_ok(session, None)
    assert not keys.csrf_ok(session, SessionKeys(b"x" * 32).csrf(session))
    clock[0] += SESSION_SECONDS
    assert keys.read(cookie) is None
    clock[0] -= 1
    keys.end(session)
    assert keys.read(cookie) is None


def test_a_login_form_field_matches_only_its_own_unexpired_cookie() -> None:
    clock = [1_000_000.0]
    keys = SessionKeys(b"k" * 32, clock=lambda: clock[0])
    cookie, field = keys.login_nonce()
    other, _ = keys.login_nonce()
    assert keys.login_ok(cookie, field)
    assert not keys.login_ok(other, field) and not keys.login_ok(None, field) and not keys.login_ok(cookie, None)
    clock[0] += LOGIN_SECONDS
    assert not keys.login_ok(cookie, field)


# -- through HTTP ---------------------------------------------------------------------------------


def test_without_a_session_every_page_redirects_to_the_login_and_nothing_is_filed(page: Page) -> None:
    for method, path in [("GET", "/dpo"), ("GET", "/dpo/certificates/req_0000000000000000"), ("POST", "/dpo/logout")]:
        response = page.client.request(method, path)
        assert response.status_code == 303 and response.headers["location"] == "/dpo/login", path
    response = page.client.post("/dpo/requests", data={"subject_id": SUBJECT, "csrf": "x"})
    assert response.status_code == 303 and response.headers["location"] == "/dpo/login"
    assert page.workspace.datastore.find_requests() == []
    page.client.cookies.set(SESSION_COOKIE, "tok_0123456789ab.9999999999.abc.00")
    forged = page.client.get("/dpo")
    assert forged.status_code == 303 and forged.headers["location"] == "/dpo/login?ended=session"


def test_a_wrong_token_a_token_without_the_scopes_and_an_expired_form_are_refused(page: Page) -> None:
    form = page.client.get("/dpo/login")
    wrong = page.client.post("/dpo/login", data={"token": "fgt_" + "A" * 43, "csrf": csrf_of(form.text)})
    assert wrong.status_code == 401 and "That token is not valid: unknown, revoked or mistyped." in wrong.text
    assert SESSION_COOKIE not in wrong.cookies
    # Every form it answers with carries a fresh login cookie and field.
    garbled = page.client.post("/dpo/login", data={"token": "not a token", "csrf": csrf_of(wrong.text)})
    assert garbled.status_code == 401
    reader = page.client.post("/dpo/login", data={"token": page.secrets["reader"], "csrf": csrf_of(garbled.text)})
    assert reader.status_code == 403
    assert "Token reader lacks requests:write, certificates:read: the DPO page needs admin" in reader.text
    page.client.cookies.clear()  # no login cookie: a form posted from another site
    forged = page.client.post("/dpo/login", data={"token": page.secrets["dpo"], "csrf": csrf_of(reader.text)})
    assert forged.status_code == 403 and "The login form has expired" in forged.text
    assert SESSION_COOKIE not in forged.cookies


def test_the_session_cookie_is_httponly_samesite_strict_and_secure_behind_tls(page: Page) -> None:
    form = page.client.get("/dpo/login")
    assert "SameSite=strict" in form.headers["set-cookie"] and "HttpOnly" in form.headers["set-cookie"]
    response = page.client.post("/dpo/login", data={"token": page.secrets["trio"], "csrf": csrf_of(form.text)})
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert {"HttpOnly", "SameSite=strict", "Path=/dpo", f"Max-Age={SESSION_SECONDS}"} <= {
        part.strip() for part in cookie.split(";")
    }
    assert "Secure" not in cookie
    assert page.secrets["trio"] not in cookie
    # Behind a TLS proxy on loopback (uvicorn trusts its X-Forwarded-Proto), or with --tls-cert.
    proxied = {"X-Forwarded-Proto": "https"}
    page.client.cookies.clear()
    form = page.client.get("/dpo/login", headers=proxied)
    data = {"token": page.secrets["trio"], "csrf": csrf_of(form.text)}
    cookie = f"{LOGIN_COOKIE}={form.cookies[LOGIN_COOKIE]}"  # a Secure cookie: the client keeps it for https
    response = page.client.post("/dpo/login", data=data, headers={**proxied, "Cookie": cookie})
    assert "Secure" in next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))


def test_filing_needs_the_csrf_field_then_redirects_naming_the_request_never_the_subject(
    page: Page, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="forget.access")
    csrf = page.login()
    missing = page.client.post("/dpo/requests", data={"subject_id": SUBJECT, "note": "DSAR-17"})
    assert missing.status_code == 403 and "CSRF field is missing or wrong" in missing.text
    wrong = page.client.post("/dpo/requests", data={"subject_id": SUBJECT, "note": "DSAR-17", "csrf": csrf[::-1]})
    assert wrong.status_code == 403
    assert page.workspace.datastore.find_requests() == []

    filed = page.client.post("/dpo/requests", data={"subject_id": SUBJECT, "note": "DSAR-17", "csrf": csrf})
    assert filed.status_code == 303 and filed.headers["location"] == "/dpo", filed.text
    overview = page.client.get("/dpo")
    found = re.search(r"Filed request (req_[0-9a-f]{16}) \(ticket DSAR-17\)\. Its deadline is ", overview.text)
    assert found is not None, overview.text
    request_id = found.group(1)
    row = re.search(rf'<tr id="{request_id}" class="ontime">(.*?)</tr>', overview.text, re.S)
    assert row is not None and "DSAR-17" in row.group(1) and "days left" in row.group(1)
    assert "Filed request" not in page.client.get("/dpo").text  # the notice is shown once
    again = page.client.post("/dpo/requests", data={"subject_id": " PERSON-0003 ", "csrf": csrf})
    assert again.status_code == 303 and again.headers["location"] == "/dpo"
    assert f"already has an open request, {request_id} (ticket DSAR-17)" in page.client.get("/dpo").text
    assert len(page.workspace.datastore.find_requests()) == 1
    assert SUBJECT not in overview.text and SUBJECT not in str(filed.headers) and SUBJECT not in caplog.text
    assert "POST /dpo/requests 303 dpo" in caplog.text


def test_a_refused_filing_shows_why_records_nothing_and_does_not_echo_the_subject(page: Page) -> None:
    csrf = page.login()
    future = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    response = page.client.post(
        "/dpo/requests", data={"subject_id": SUBJECT, "note": "T-1", "received_at": future, "csrf": csrf}
    )
    assert response.status_code == 422
    assert re.search(r"Nothing was filed\. The received time \S+ is in the future", response.text), response.text
    assert SUBJECT not in response.text and 'value="T-1"' in response.text
    empty = page.client.post("/dpo/requests", data={"subject_id": "  ", "csrf": csrf})
    assert empty.status_code == 422 and "The subject id is empty." in empty.text
    bad_time = page.client.post("/dpo/requests", data={"subject_id": SUBJECT, "received_at": "soon", "csrf": csrf})
    assert bad_time.status_code == 422 and "is not an ISO 8601 date or time" in bad_time.text
    multipart = page.client.post("/dpo/requests", files={"subject_id": ("x", b"y")})
    assert multipart.status_code == 415
    assert page.workspace.datastore.find_requests() == []


def test_an_overdue_request_is_red_and_counted(page: Page) -> None:
    old, _ = file_request(page.workspace, "person-0004", datetime.now(UTC) - timedelta(days=40), "LATE-1")
    fresh, _ = file_request(page.workspace, "person-0005", None, "NEW-1")
    soon, _ = file_request(page.workspace, "person-0006", datetime.now(UTC) - timedelta(days=26), "SOON-1")
    page.login("trio")
    text = page.client.get("/dpo").text
    late = re.search(rf'<tr id="{old.request_id}" class="overdue">(.*?)</tr>', text, re.S)
    assert late is not None and re.search(r"overdue by \d+\.\d days", late.group(1))
    assert f'<tr id="{fresh.request_id}" class="ontime">' in text
    assert f'<tr id="{soon.request_id}" class="soon">' in text
    # The earliest deadline first.
    assert text.index(old.request_id) < text.index(soon.request_id) < text.index(fresh.request_id)
    assert "1 overdue" in text
    assert "tr.overdue td { color: var(--red)" in page.client.get("/dpo/style.css").text


def test_a_revoked_token_ends_its_session_at_once_and_logging_out_ends_the_cookie(page: Page) -> None:
    csrf = page.login("trio")
    cookie = page.client.cookies[SESSION_COOKIE]
    page.tokens.revoke(next(r.token_id for r in page.tokens.records if r.name == "trio"), "2026-11-29T00:00:00Z")
    refused = page.client.get("/dpo")
    assert refused.status_code == 303 and refused.headers["location"] == "/dpo/login?ended=session"
    assert "Your session has ended" in page.client.get("/dpo/login?ended=session").text

    csrf = page.login("dpo")
    cookie = page.client.cookies[SESSION_COOKIE]
    assert page.client.post("/dpo/logout", data={}).status_code == 403  # logging out needs the CSRF field too
    out = page.client.post("/dpo/logout", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/dpo/login?ended=logout"
    assert "You are logged out." in page.client.get(out.headers["location"]).text
    with httpx.Client(base_url=str(page.client.base_url), cookies={SESSION_COOKIE: cookie}) as elsewhere:
        replayed = elsewhere.get("/dpo", follow_redirects=False)  # a copy of the cookie kept elsewhere
    assert replayed.status_code == 303


def test_pages_carry_a_strict_content_security_policy_and_are_not_cached(page: Page) -> None:
    page.login()
    response = page.client.get("/dpo")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "form-action 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text


def test_a_certificate_that_does_not_exist_yet_is_a_404_page(page: Page) -> None:
    filed, _ = file_request(page.workspace, SUBJECT)
    page.login()
    missing = page.client.get(f"/dpo/certificates/{filed.request_id}?format=html")
    assert missing.status_code == 404 and "has no certificate yet (state pending)" in missing.text
    assert page.client.get("/dpo/certificates/req_0000000000000000").status_code == 404
    assert page.client.get(f"/dpo/certificates/{filed.request_id}?format=xml").status_code == 422


def test_every_route_of_the_server_is_in_the_openapi_document_with_the_statuses_it_answers(page: Page) -> None:
    paths = openapi_document()["paths"]
    app_routes = {
        (route.path, method.lower())
        for route in page.app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(path, method) for path, ops in paths.items() for method in ops}
    assert app_routes == documented
    # The statuses the pages answer in a session's life are documented ones.
    seen: dict[tuple[str, str], set[int]] = {}

    def call(method: str, path: str, route: str | None = None, **kwargs: object) -> str:
        response = page.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        seen.setdefault((route or path.split("?")[0], method.lower()), set()).add(response.status_code)
        return response.text

    call("GET", "/dpo")
    form = call("GET", "/dpo/login")
    form = call("POST", "/dpo/login", data={"token": "fgt_" + "A" * 43, "csrf": csrf_of(form)})
    form = call("POST", "/dpo/login", data={"token": page.secrets["reader"], "csrf": csrf_of(form)})
    form = call("POST", "/dpo/login", data={"token": page.secrets["dpo"], "csrf": "stale"})
    call("POST", "/dpo/login", data={"token": page.secrets["dpo"], "csrf": csrf_of(form)})
    call("GET", "/dpo/login")
    csrf = csrf_of(call("GET", "/dpo"))
    call("POST", "/dpo/requests", data={"subject_id": SUBJECT})
    call("POST", "/dpo/requests", data={"subject_id": " ", "csrf": csrf})
    call("POST", "/dpo/requests", data={"subject_id": SUBJECT, "csrf": csrf})
    call("GET", "/dpo/certificates/req_0000000000000000", route="/dpo/certificates/{request_id}")
    call("GET", "/dpo/certificates/req_0000000000000000?format=x", route="/dpo/certificates/{request_id}")
    call("GET", "/dpo/style.css")
    call("POST", "/dpo/logout", data={"csrf": "no"})
    call("POST", "/dpo/logout", data={"csrf": csrf})
    for (route, method), statuses in seen.items():
        assert {str(s) for s in statuses} <= set(paths[route][method]["responses"]), (route, method, statuses)


def test_the_templates_ship_with_the_package() -> None:
    import forget.service

    templates = Path(forget.service.__file__).parent / "templates"
    assert {p.name for p in templates.glob("*.j2")} >= {"overview.html.j2", "login.html.j2", "dpo.css.j2"}
