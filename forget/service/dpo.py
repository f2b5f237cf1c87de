"""The DPO's page of `forget serve`: open requests and their deadlines, a form to file one, the
certificates of completed ones, the ledger head. Server-rendered (jinja2, autoescaped), no script.

A browser cannot send a bearer token with a link or a form, so the page trades one for a cookie:

1. `GET /dpo/login` shows a form and sets a short-lived login cookie (a random nonce); the form
   carries HMAC(key, nonce), so a login cannot be forged from another site (login CSRF).
2. `POST /dpo/login` takes an active token that holds requests:read, requests:write and
   certificates:read (admin holds them all) and answers with a session cookie
   `token_id.expires.nonce.mac`: HMAC-SHA256 under a key made at process start, HttpOnly,
   SameSite=Strict, Path=/dpo, Secure over TLS. The token itself never reaches the browser's storage.
3. Every page checks the cookie's MAC and expiry and then reads the token again from the store:
   revoking the token (`forget token revoke`) ends its sessions at the next click.
4. Every form POST needs the session's CSRF field, HMAC(key, nonce), besides SameSite=Strict.
   Logging out ends the session's nonce in this process, not only the cookie in this browser.
5. A subject id is only ever POSTed: the answer is a redirect naming the request id, and no page,
   URL or log line holds the id (the form is never filled in again).

Sessions end when the process restarts (the key lives in memory only): behind several replicas,
pin a DPO to one (sticky sessions) or expect to log in again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from forget.erasure.requests import REQUEST_ID, ErasureRequest, RequestState, get_request, parse_time
from forget.errors import ForgetError, as_forget_error, translated
from forget.service.problems import INTERNAL_MESSAGE, INTERNAL_STATUS, HTTPProblem, http_status, log_bug, redacted
from forget.service.tokens import Scope, TokenRecord, presented_token, token_hash

if TYPE_CHECKING:
    from forget.service.app import Service

access_log = logging.getLogger("forget.access")

SESSION_COOKIE = "forget_dpo_session"
LOGIN_COOKIE = "forget_dpo_login"
FLASH_COOKIE = "forget_dpo_flash"
"""`filed.<request id>` or `open.<request id>`: shown once by the next overview, then deleted."""
SESSION_SECONDS = 8 * 3600
"""A working day; then the DPO pastes the token again."""
LOGIN_SECONDS = 600
MAX_FORM = 16 * 1024
"""A filing form is a subject id, a ticket reference (at most 2,000 characters) and a time."""
MAX_COMPLETED = 200
"""The most recent completed requests shown; `forget status` and the API list them all."""
SOON_DAYS = 7
NEEDED = (Scope.REQUESTS_READ, Scope.REQUESTS_WRITE, Scope.CERTIFICATES_READ)

PAGE_SECURITY = {
    # No script anywhere; styles from /dpo/style.css only; forms post back to this origin only.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CERTIFICATE_SECURITY = {
    **PAGE_SECURITY,
    # The certificate rendering carries its own <style> and nothing else.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
}


class PageProblem(Exception):
    """An answer other than the page asked for, with a message fit to show the DPO."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True)
class Session:
    token_id: str
    expires: int
    nonce: str


class SessionKeys:
    """Signs and reads session cookies and CSRF fields under one key; remembers ended sessions.

    Pure apart from the clock (passed in): a cookie is `token_id.expires.nonce.mac`, and nothing in
    it is secret; the MAC makes it unforgeable and the expiry bounds a stolen one.
    """

    def __init__(self, key: bytes | None = None, clock: Callable[[], float] = time.time) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self._clock = clock
        self._ended: dict[str, int] = {}
        self._lock = threading.Lock()

    def _mac(self, purpose: bytes, *parts: str) -> str:
        message = purpose + b"\x00" + "\x00".join(parts).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, token_id: str) -> tuple[str, Session]:
        session = Session(token_id, int(self._clock()) + SESSION_SECONDS, secrets.token_urlsafe(16))
        fields = (session.token_id, str(session.expires), session.nonce)
        return ".".join((*fields, self._mac(b"session", *fields))), session

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie names, if its MAC is right, it has not expired and was not ended."""
        if not cookie or cookie.count(".") != 3:
            return None
        token_id, expires, nonce, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(b"session", token_id, expires, nonce)):
            return None
        if not expires.isdigit() or int(expires) <= self._clock():
            return None
        with self._lock:
            if nonce in self._ended:
                return None
        return Session(token_id, int(expires), nonce)

    def end(self, session: Session) -> None:
        """Logging out: this nonce is refused until its cookie would have expired anyway."""
        now = self._clock()
        with self._lock:
            self._ended = {nonce: until for nonce, until in self._ended.items() if until > now}
            self._ended[session.nonce] = session.expires

    def csrf(self, session: Session) -> str:
        return self._mac(b"csrf", session.nonce)

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf(session))

    def login_nonce(self) -> tuple[str, str]:
        """The login cookie (nonce and expiry) and the form field that must come back with it."""
        cookie = f"{secrets.token_urlsafe(16)}.{int(self._clock()) + LOGIN_SECONDS}"
        return cookie, self._mac(b"login", cookie)

    def login_ok(self, cookie: str | None, presented: str | None) -> bool:
        if not cookie or presented is None or cookie.count(".") != 1:
            return False
        expires = cookie.split(".")[1]
        if not hmac.compare_digest(presented, self._mac(b"login", cookie)):
            return False
        return expires.isdigit() and int(expires) > self._clock()


@dataclass(frozen=True)
class Visitor:
    """A logged-in DPO: the session and the token it was opened with, as the store has it now."""

    session: Session
    token: TokenRecord
    csrf: str


@dataclass(frozen=True)
class RequestLine:
    """One row of the overview, every value already a string for the page."""

    request_id: str
    state: str
    note: str | None
    received: str
    deadline: str
    overdue: bool
    due: str
    """'12.4 days left', 'overdue by 3.1 days', or for a completed one 'on time' / 'late by 3.1 days'."""
    completed: str | None = None
    outcome: str | None = None
    records_erased: int | None = None
    certificate: bool = False
    extended_months: int = 0
    soon: bool = False
    """Open, and due within SOON_DAYS: shown in amber."""


@dataclass(frozen=True)
class HeadView:
    size: int
    root_hash: str
    time: str
    note: str


def shown_time(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def table_time(moment: datetime) -> str:
    """In the tables, whose headers say UTC."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"


def request_line(request: ErasureRequest, now: datetime, certificate: bool) -> RequestLine:
    overdue = request.overdue(now)
    if request.state is RequestState.COMPLETED:
        assert request.completed_at is not None
        late = (request.completed_at - request.deadline) / timedelta(days=1)
        due = f"late by {late:.1f} days" if overdue else "on time"
    else:
        days = request.days_left(now)
        due = f"overdue by {-days:.1f} days" if overdue else f"{days:.1f} days left"
    return RequestLine(
        request_id=request.request_id,
        state=request.state.value,
        note=request.note,
        received=table_time(request.received_at),
        deadline=table_time(request.deadline),
        overdue=overdue,
        due=due,
        completed=table_time(request.completed_at) if request.completed_at else None,
        outcome=request.outcome.value if request.outcome else None,
        records_erased=request.records_erased,
        certificate=certificate,
        extended_months=request.extended_months,
        soon=request.state is not RequestState.COMPLETED and not overdue and request.days_left(now) < SOON_DAYS,
    )


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("forget.service", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    """A page from its template: a pure function of the context (autoescaped, undefined names fail)."""
    return _environment().get_template(template).render(**context)


def _form(body: bytes, content_type: str | None) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (what an HTML form posts); the first value of each field."""
    if not body:
        return {}
    if (content_type or "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise PageProblem(415, "the form must be posted as application/x-www-form-urlencoded")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise PageProblem(400, "the form could not be read") from None
    return {name: values[0] for name, values in parsed.items()}


Page = Callable[[Request, dict[str, str], Visitor | None], Response]


class DPOPages:
    """The handlers; each runs in Starlette's thread pool (the store and the renderers block)."""

    def __init__(self, service: Service, keys: SessionKeys | None = None) -> None:
        self.service = service
        self.keys = keys or SessionKeys()

    # -- sessions -------------------------------------------------------------------------

    def visitor(self, request: Request) -> Visitor | None:
        session = self.keys.read(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        token = next((t for t in self.service.tokens.all() if t.token_id == session.token_id), None)
        if token is None or not all(token.allows(scope) for scope in NEEDED):
            return None  # revoked since the login: logged out at once
        return Visitor(session, token, self.keys.csrf(session))

    # -- pages ----------------------------------------------------------------------------

    def login_page(self, request: Request, form: dict[str, str], visitor: Visitor | None) -> Response:
        if self.visitor(request) is not None:
            return RedirectResponse("/dpo", status_code=303)
        ended = request.query_params.get("ended")
        message = {"logout": "You are logged out.", "session": "Your session has ended: log in again."}.get(ended or "")
        return self._login_form(request, 200, info=message)

    def login(self, request: Request, form: dict[str, str], visitor: Visitor | None) -> Response:
        if not self.keys.login_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
            return self._login_form(request, 403, error="The login form has expired: try again.")
        presented = presented_token("Bearer " + form.get("token", "").strip())
        token = self.service.tokens.find(token_hash(presented)) if presented else None
        if token is None or token.revoked_at is not None:
            return self._login_form(request, 401, error="That token is not valid: unknown, revoked or mistyped.")
        missing = [scope.value for scope in NEEDED if not token.allows(scope)]
        if missing:
            return self._login_form(
                request,
                403,
                error=f"Token {token.name} lacks {', '.join(missing)}: the DPO page needs admin, or"
                " requests:read, requests:write and certificates:read.",
            )
        cookie, _ = self.keys.issue(token.token_id)
        response = RedirectResponse("/dpo", status_code=303)
        self._set_cookie(response, request, SESSION_COOKIE, cookie, SESSION_SECONDS)
        response.delete_cookie(LOGIN_COOKIE, path="/dpo")
        return response

    def logout(self, request: Request, form: dict[str, str], visitor: Visitor | None) -> Response:
        assert visitor is not None
        self.keys.end(visitor.session)
        response = RedirectResponse("/dpo/login?ended=logout", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/dpo")
        return response

    def overview(self, request: Request, form: dict[str, str], visitor: Visitor | None) -> Response:
        response = self._overview(request, visitor, 200, notice=self._notice(request.cookies.get(FLASH_COOKIE)))
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path="/dpo")
        return response

    def file(self, request: Request, form: dict[str, str], visitor: Visitor | None) -> Response:
        assert visitor is not None
        wait = self.service.limiter.allow(visitor.token.token_id)
        if wait > 0:
            raise PageProblem(
                429,
                "Too many requests filed with this token: wait and try again.",
                {"Retry-After": str(max(1, round(wait)))},
            )
        kept = {"note": form.get("note", ""), "received_at": form.get("received_at", "")}
        subject_id = form.get("subject_id", "")
        try:
            if not subject_id.strip():
                raise PageProblem(422, "The subject id is empty.")
            received = kept["received_at"].strip()
            # The service's intake, as POST /v1/requests: the subject's shards are quarantined at once.
            with translated():
                filed, new = self.service.file_request(
                    subject_id, parse_time(received) if received else None, kept["note"]
                )
        except (PageProblem, ForgetError) as error:
            status = error.status if isinstance(error, PageProblem) else http_status(error)
            message = redacted(str(error), subject_id)
            return self._overview(request, visitor, status, error=_for_the_form(message), kept=kept)
        # Post/redirect/get: a reload does not file again, and the note is shown once, not kept in the URL.
        response = RedirectResponse("/dpo", status_code=303)
        self._set_cookie(response, request, FLASH_COOKIE, f"{'filed' if new else 'open'}.{filed.request_id}", 60)
        return response

    def certificate(self, request: Request, form: dict[str, str], visitor: Visitor | None) -> Response:
        assert visitor is not None
        kind = request.query_params.get("format", "html")
        if kind not in ("html", "pdf", "json"):
            raise PageProblem(422, "format must be html, pdf or json")
        # The API's handler, on the same request with the format made explicit (the API's default is json).
        asked = Request({**request.scope, "query_string": f"format={kind}".encode()}, request.receive)
        answer = self.service.certificate(asked, visitor.token)
        request_id = request.path_params["request_id"]
        if kind == "html":
            answer.headers.update(CERTIFICATE_SECURITY)
        else:
            suffix = "pdf" if kind == "pdf" else "dsse.json"
            answer.headers.update(PAGE_SECURITY)
            answer.headers["Content-Disposition"] = f'attachment; filename="certificate-{request_id}.{suffix}"'
        return answer

    def stylesheet(self, request: Request, form: dict[str, str], visitor: Visitor | None) -> Response:
        return Response(
            render("dpo.css.j2"),
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    # -- helpers --------------------------------------------------------------------------

    def _login_form(self, request: Request, status: int, error: str | None = None, info: str | None = None) -> Response:
        cookie, field = self.keys.login_nonce()
        page = render("login.html.j2", csrf=field, error=error, info=info, title=self._title())
        response = HTMLResponse(page, status_code=status, headers=PAGE_SECURITY)
        self._set_cookie(response, request, LOGIN_COOKIE, cookie, LOGIN_SECONDS)
        return response

    def _title(self) -> str:
        config = self.service.workspace.config
        return config.organisation or config.origin

    def _notice(self, flash: str | None) -> str | None:
        texts = {
            "filed": "Filed request {id}{ticket}. Its deadline is {deadline}.",
            "open": "The subject already has an open request, {id}{ticket}: nothing new was filed.",
        }
        kind, _, request_id = (flash or "").partition(".")
        if kind not in texts or not REQUEST_ID.fullmatch(request_id):
            return None
        try:
            found = get_request(self.service.workspace, request_id)
        except ForgetError:
            return None
        ticket = f" (ticket {found.note})" if found.note else ""
        return texts[kind].format(id=found.request_id, ticket=ticket, deadline=shown_time(found.deadline))

    def _overview(
        self,
        request: Request,
        visitor: Visitor | None,
        status: int,
        notice: str | None = None,
        error: str | None = None,
        kept: dict[str, str] | None = None,
    ) -> Response:
        from forget.erasure.certify import certificate_path

        assert visitor is not None
        workspace = self.service.workspace
        now = datetime.now(UTC)
        requests = [ErasureRequest.from_row(row) for row in workspace.datastore.find_requests()]
        open_ = sorted((r for r in requests if r.state is not RequestState.COMPLETED), key=lambda r: r.deadline)
        done = sorted(
            (r for r in requests if r.state is RequestState.COMPLETED),
            key=lambda r: r.completed_at or r.received_at,
            reverse=True,
        )
        with workspace.datastore.snapshot() as connection:
            stored = workspace.ledger.head(connection)
        head = (
            HeadView(stored.size, stored.root_hash.hex(), _head_time(stored.time), stored.note)
            if stored is not None
            else None
        )
        page = render(
            "overview.html.j2",
            title=self._title(),
            origin=workspace.config.origin,
            token=visitor.token,
            csrf=visitor.csrf,
            now=shown_time(now),
            open_requests=[request_line(r, now, False) for r in open_],
            completed=[
                request_line(r, now, certificate_path(workspace, r.request_id).is_file()) for r in done[:MAX_COMPLETED]
            ],
            completed_hidden=max(0, len(done) - MAX_COMPLETED),
            overdue=sum(r.overdue(now) for r in open_),
            head=head,
            notice=notice,
            error=error,
            kept=kept or {"note": "", "received_at": ""},
        )
        return HTMLResponse(page, status_code=status, headers=PAGE_SECURITY)

    @staticmethod
    def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/dpo",
            secure=request.url.scheme == "https",  # uvicorn sets https for TLS, and from a local proxy's header
            httponly=True,
            samesite="strict",
        )


_FIELDS = {"--received-at": "The received time", "--note": "The ticket reference"}


def _for_the_form(message: str) -> str:
    """A refusal of `file_request` (worded for the CLI) in the form's terms."""
    for option, field in _FIELDS.items():
        if message.startswith(option):
            message = field + message[len(option) :]
    return f"Nothing was filed. {message[:1].upper()}{message[1:]}"


def _head_time(text: str) -> str:
    try:
        return f"{parse_time(text).astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    except ForgetError:
        return text


def _error_page(problem: PageProblem | HTTPProblem | ForgetError, status: int) -> Response:
    headers = {**PAGE_SECURITY, **getattr(problem, "headers", {})}
    return HTMLResponse(
        render("error.html.j2", status=status, message=str(problem), title=None), status, headers=headers
    )


def _page(pages: DPOPages, path: str, method: str, handler: Page, session: bool) -> Route:
    """A route: the form read, the session checked (or a redirect to the login), CSRF on a session's
    POST, errors as pages, one access log line with the route template and the token's name."""

    def translated_call(request: Request, form: dict[str, str], visitor: Visitor | None) -> Response:
        with translated():
            return handler(request, form, visitor)

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        token_name = "-"
        form: dict[str, str] = {}
        try:
            form = _form(await _body(request), request.headers.get("content-type")) if method == "POST" else {}
            visitor = None
            if session:
                visitor = await run_in_threadpool(pages.visitor, request)
                if visitor is None:
                    target = "/dpo/login?ended=session" if SESSION_COOKIE in request.cookies else "/dpo/login"
                    response: Response = RedirectResponse(target, status_code=303)
                    response.delete_cookie(SESSION_COOKIE, path="/dpo")
                    return _logged(pages, method, path, response, token_name, started)
                token_name = visitor.token.name
                if method == "POST" and not pages.keys.csrf_ok(visitor.session, form.get("csrf")):
                    raise PageProblem(403, "The form's CSRF field is missing or wrong: reload the page and try again.")
            response = await run_in_threadpool(translated_call, request, form, visitor)
        except PageProblem as problem:
            response = _error_page(problem, problem.status)
        except HTTPProblem as problem:
            response = _error_page(problem, problem.status)
        except Exception as error:
            # The families by forget.service.problems' table, as the API answers them; a bug is 500.
            family = as_forget_error(error)
            if family is None:
                log_bug(error, method, path, form.get("subject_id") if method == "POST" else None)
                response = _error_page(HTTPProblem(INTERNAL_STATUS, INTERNAL_MESSAGE), INTERNAL_STATUS)
            else:
                response = _error_page(family, http_status(family))
        return _logged(pages, method, path, response, token_name, started)

    return Route(path, endpoint, methods=[method])


async def _body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise PageProblem(413, f"the form is larger than {MAX_FORM} bytes")
    return body


def _logged(pages: DPOPages, method: str, path: str, response: Response, token: str, started: float) -> Response:
    elapsed = time.perf_counter() - started
    pages.service.metrics.observe_call(path, response.status_code, elapsed)
    # The route template only: a query string or a form may hold what must not reach a log.
    access_log.info("%s %s %d %s %.1fms", method, path, response.status_code, token, elapsed * 1000)
    return response


def dpo_routes(service: Service, keys: SessionKeys | None = None) -> list[BaseRoute]:
    """The DPO's pages, to add to the API's routes (the same tokens, the same workspace)."""
    pages = DPOPages(service, keys)
    return [
        _page(pages, "/dpo", "GET", pages.overview, session=True),
        _page(pages, "/dpo/requests", "POST", pages.file, session=True),
        _page(pages, "/dpo/certificates/{request_id}", "GET", pages.certificate, session=True),
        _page(pages, "/dpo/logout", "POST", pages.logout, session=True),
        _page(pages, "/dpo/login", "GET", pages.login_page, session=False),
        _page(pages, "/dpo/login", "POST", pages.login, session=False),
        _page(pages, "/dpo/style.css", "GET", pages.stylesheet, session=False),
    ]
