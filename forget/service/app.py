"""The HTTP API of `forget serve` (Starlette on uvicorn): requests, certificates, the ledger, predictions.

Every route but the probes and the OpenAPI document needs a bearer token with the route's
scope (401 without a valid token, 403 with the wrong scope). Handlers are plain functions:
Starlette runs them in its thread pool, since the work they do (the database, torch) blocks.
No log line and no error body carries a raw subject id: a request is named by its id.

Errors leave by family: every handler runs inside `forget.errors.translated()`, and one table
(forget.service.problems) gives each family its status: bad input 422, an unknown request 404, a
held job lock 409, a workspace that cannot answer now 503, a failed verification 500 with a
"verification failed: ..." body; anything else is a bug, 500 with a generic body, and logged.

A filed request quarantines its subject's shards at once (forget.erasure.quarantine): the next
prediction answers without them. With in-process runs on (`--run-every`, `--run-after-request`),
a background thread (forget.service.runner) carries the requests out, in the erasure worker
process under `forget serve` (forget.service.worker), started and stopped with the application
(its lifespan).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from forget.erasure import requests as intake
from forget.erasure.requests import ErasureRequest, RequestState, file_request, get_request, parse_time
from forget.errors import ForgetError, InputError, VerificationFailedError, as_forget_error, one_line, translated
from forget.service.ensemble import ServedEnsemble
from forget.service.metrics import ServiceMetrics
from forget.service.openapi import openapi_document
from forget.service.problems import INTERNAL_MESSAGE, INTERNAL_STATUS, HTTPProblem, error_body, http_status, log_bug
from forget.service.ratelimit import RateLimiter
from forget.service.runner import ErasureRunner, RunsIn
from forget.service.settings import ServiceSettings
from forget.service.tokens import Scope, TokenRecord, TokenStore, presented_token, token_hash
from forget.workspace.core import Workspace

access_log = logging.getLogger("forget.access")

MAX_BODY = 1 << 20
"""1 MiB: a request is a few hundred bytes; a prediction batch of a few thousand rows fits."""
MAX_ROWS = 10_000


__all__ = ["HTTPProblem", "Service", "create_app"]

Handler = Callable[[Request, TokenRecord | None], Response]


class Service:
    """What the routes share: the workspace, the token store, the loaded models, the limits."""

    def __init__(
        self, workspace: Workspace, tokens: TokenStore, settings: ServiceSettings, runs_in: RunsIn = RunsIn.THREAD
    ) -> None:
        """Loads no model yet; raises `SisaError` for a device that is not there and `ValueError` for
        a rate limit or a run schedule out of range. `runs_in`: where in-process rounds run (forget.service.runner)."""
        self.workspace = workspace
        self.tokens = tokens
        self.settings = settings
        self.ensemble = ServedEnsemble(workspace, settings.device)
        self.limiter = RateLimiter(settings.request_rate, settings.request_burst)
        self.metrics = ServiceMetrics(workspace)
        self.runner = ErasureRunner(workspace, self.ensemble, self.metrics, settings, runs_in)
        self.started = time.time()

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """The in-process runs live as long as the application: started with it, stopped with it.

        Raises nothing of its own (the runner never raises).
        """
        from starlette.concurrency import run_in_threadpool

        self.runner.start()
        try:
            yield
        finally:
            await run_in_threadpool(self.runner.stop)

    def file_request(
        self, subject_id: str, received_at: datetime | None = None, note: str | None = None
    ) -> tuple[ErasureRequest, bool]:
        """File (and so quarantine) a request, then wake the in-process runs; what every intake calls.

        Raises what `forget.erasure.requests.file_request` raises (`InputError` for a malformed id,
        time or note).
        """
        filed, new = file_request(self.workspace, subject_id, received_at, note)
        if new:
            self.runner.request_filed()
        return filed, new

    # -- routes -------------------------------------------------------------------------

    def healthz(self, request: Request, token: TokenRecord | None) -> Response:
        """GET /healthz: the process answers (liveness); never fails."""
        return JSONResponse({"status": "ok"})

    def readyz(self, request: Request, token: TokenRecord | None) -> Response:
        """GET /readyz: the database and the models are usable; 503 with the reason when not.

        Any family makes it 503 here (a failed verification too: a replica that cannot trust its
        evidence must not take traffic); a bug still escapes as 500.
        """
        try:
            with translated():
                self.workspace.datastore.check_schema()
                self.ensemble.refresh()
        except ForgetError as error:
            return JSONResponse({"status": "not ready", "reason": error_body(error)["error"]}, status_code=503)
        return JSONResponse({"status": "ready"})

    def openapi(self, request: Request, token: TokenRecord | None) -> Response:
        """GET /openapi.json: the OpenAPI document (forget.service.openapi); never fails."""
        return JSONResponse(openapi_document())

    def metrics_text(self, request: Request, token: TokenRecord | None) -> Response:
        """GET /metrics: the Prometheus text format (the workspace gauges read from the database now)."""
        body, content_type = self.metrics.exposition()
        return Response(body, media_type=content_type)

    def create_request(self, request: Request, token: TokenRecord | None) -> Response:
        """POST /v1/requests: 201 with a new request (its shards quarantined), 200 with the subject's open one.

        429 past the token's rate limit, 400 for a body that is not a JSON object, 422 for a bad field.
        """
        assert token is not None
        wait = self.limiter.allow(token.token_id)
        if wait > 0:
            raise HTTPProblem(429, "too many requests for this token", {"Retry-After": str(max(1, round(wait)))})
        body = _json_body(request)
        subject_id = body.get("subject_id")
        if not isinstance(subject_id, str):
            raise HTTPProblem(422, "subject_id must be a string")
        request.state.subject_id = subject_id  # kept out of any error body (forget.service.problems)
        received_at = body.get("received_at")
        if received_at is not None and not isinstance(received_at, str):
            raise HTTPProblem(422, "received_at must be an RFC 3339 time")
        note = body.get("note")
        if note is not None and not isinstance(note, str):
            raise HTTPProblem(422, "note must be a string")
        unknown = sorted(set(body) - {"subject_id", "received_at", "note"})
        if unknown:
            raise HTTPProblem(422, f"unknown field {unknown[0]!r}")
        received = parse_time(received_at) if received_at is not None else None
        filed, new = self.file_request(subject_id, received, note)
        return JSONResponse(filed.to_dict(datetime.now(UTC)), status_code=201 if new else 200)

    def list_requests(self, request: Request, token: TokenRecord | None) -> Response:
        """GET /v1/requests[?state=]: the requests by deadline, as `forget status --json` lists them.

        The listing is the application's (`forget.erasure.requests.list_requests`, what `forget
        status` calls); `state` keeps one state. Raises `InputError` (422) for an unknown state.
        """
        state = _state_filter(request.query_params.getlist("state"))
        now = datetime.now(UTC)
        found = [r for r in intake.list_requests(self.workspace) if state is None or r.state is state]
        overdue = sum(r.state is not RequestState.COMPLETED and r.overdue(now) for r in found)
        return JSONResponse({"requests": [r.to_dict(now) for r in found], "overdue": overdue})

    def show_request(self, request: Request, token: TokenRecord | None) -> Response:
        """GET /v1/requests/{id}: one request; 404 for an unknown id."""
        found = get_request(self.workspace, request.path_params["request_id"])
        return JSONResponse(found.to_dict(datetime.now(UTC)))

    def certificate(self, request: Request, token: TokenRecord | None) -> Response:
        """GET /v1/certificates/{id}[?format=json|html|pdf]: 404 before it is issued, 422 for another format.

        The JSON is served as stored; a rendering verifies it first, and a stored certificate that
        does not verify is a `VerificationFailedError` (500), an unreadable public key 503.
        """
        from forget.erasure.certify import certificate_path

        request_id = request.path_params["request_id"]
        found = get_request(self.workspace, request_id)
        path = certificate_path(self.workspace, found.request_id)
        if not path.is_file():
            raise HTTPProblem(404, f"request {found.request_id} has no certificate yet (state {found.state.value})")
        data = path.read_bytes()
        kind = request.query_params.get("format", "json")
        if kind == "json":
            return Response(data, media_type="application/json")
        if kind not in ("html", "pdf"):
            raise HTTPProblem(422, "format must be json, html or pdf")
        from forget.audit.certificate_view import certificate_view
        from ledger.keys import load_public_key
        from reports.errors import CertificateError, CertificateFormatError
        from reports.render import render_html, render_pdf
        from reports.verify import VerifierKey

        key = VerifierKey(self.workspace.config.origin, load_public_key(self.workspace.keys_dir / "signing.pub.pem"))
        try:
            view = certificate_view(data, key, workspace=self.workspace)
        except (CertificateError, CertificateFormatError) as error:
            # The workspace's own file, not the caller's: one that does not verify is a failed
            # verification (500), never bad input (a CertificateFormatError alone would say 422).
            raise VerificationFailedError(
                f"the stored certificate of {found.request_id} does not verify: {one_line(str(error))}"
            ) from error
        if kind == "html":
            return Response(render_html(view), media_type="text/html; charset=utf-8")
        return Response(render_pdf(view), media_type="application/pdf")

    def ledger_head(self, request: Request, token: TokenRecord | None) -> Response:
        """GET /v1/ledger/head: the latest signed head as a signed note.

        Before the first head `latest_note` raises a `LedgerError`: a `WorkspaceError` once
        translated, so 503 with the ledger's own message.
        """
        from forget.audit.ledger_view import latest_note

        note = latest_note(self.workspace)
        return PlainTextResponse(note, media_type="text/plain; charset=utf-8")

    def predict(self, request: Request, token: TokenRecord | None) -> Response:
        """POST /v1/predict: a label per row from the shards that may answer (`shards` names them).

        413 past MAX_ROWS, 422 for rows the schema cannot encode, 503 when every shard is quarantined
        or none is trained.
        """
        body = _json_body(request)
        rows = body.get("rows")
        if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
            raise HTTPProblem(422, "rows must be a non-empty list of objects, one per row")
        if len(rows) > MAX_ROWS:
            raise HTTPProblem(413, f"at most {MAX_ROWS} rows per call")
        answer = self.ensemble.predict(rows)
        return JSONResponse({"predictions": answer.labels, "shards": answer.shards})


def _state_filter(values: list[str]) -> RequestState | None:
    """The `state` query parameter as a state (None without one); raises `InputError` for another value."""
    if not values:
        return None
    choices = ", ".join(s.value for s in RequestState)
    if len(values) > 1:
        raise InputError(f"give state at most once (one of {choices})")
    try:
        return RequestState(values[0])
    except ValueError:
        raise InputError(f"state must be one of {choices}") from None


def _json_body(request: Request) -> dict[str, Any]:
    raw: bytes = request.state.body
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HTTPProblem(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPProblem(400, "the body must be a JSON object")
    return body


def _route(
    service: Service, path: str, method: str, handler: Handler, scope: Scope | None, compute: bool = False
) -> Route:
    """The route's endpoint: the token check, the handler in a worker thread, the metrics and the log line.

    A `compute` handler (predictions: torch and numpy, no waiting on a disk or a database lock) runs
    at most one call per core at a time; the others wait in the event loop. Forty of them at once in
    the thread pool only fight over the GIL and the cores: with 50 clients on 2 cores (and one torch
    thread a call, server.py) 87 -> 105 calls/s and a p99 of 2.0 -> 1.0 s (docs/benchmarks.md).
    """
    import anyio.to_thread
    from starlette.concurrency import run_in_threadpool

    limiters: list[anyio.CapacityLimiter] = []  # made at the first call: anyio needs the running loop

    def translated_call(request: Request, token: TokenRecord | None) -> Response:
        with translated():
            return handler(request, token)

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        token_name = "-"
        try:
            token: TokenRecord | None = None
            if scope is not None:
                presented = presented_token(request.headers.get("authorization"))
                token = await run_in_threadpool(service.tokens.find, token_hash(presented)) if presented else None
                if token is None or token.revoked_at is not None:
                    raise HTTPProblem(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
                token_name = token.name
                if not token.allows(scope):
                    raise HTTPProblem(403, f"this token lacks the {scope.value} scope")
            if method == "POST":
                body = await request.body()
                if len(body) > MAX_BODY:
                    raise HTTPProblem(413, f"the body is larger than {MAX_BODY} bytes")
                request.state.body = body
            if compute:
                if not limiters:
                    limiters.append(anyio.CapacityLimiter(os.cpu_count() or 1))
                response = await anyio.to_thread.run_sync(translated_call, request, token, limiter=limiters[0])
            else:
                response = await run_in_threadpool(translated_call, request, token)
        except HTTPProblem as problem:
            response = JSONResponse({"error": str(problem)}, status_code=problem.status, headers=problem.headers)
        except Exception as error:
            response = _error_response(error, request, method, path)
        elapsed = time.perf_counter() - started
        service.metrics.observe_call(path, response.status_code, elapsed)
        # The path template, never the query or the body: neither may hold a subject id in a log.
        access_log.info("%s %s %d %s %.1fms", method, path, response.status_code, token_name, elapsed * 1000)
        return response

    return Route(path, endpoint, methods=[method])


def _error_response(error: Exception, request: Request, method: str, path: str) -> Response:
    """The answer to an exception a route raised: its family's status and one line, or a bug's 500.

    The token lookup runs outside `translated()`, so its storage failures are translated here too.
    Raises nothing.
    """
    secret = getattr(request.state, "subject_id", None)
    family = as_forget_error(error)
    if family is None:
        log_bug(error, method, path, secret)
        return JSONResponse({"error": INTERNAL_MESSAGE}, status_code=INTERNAL_STATUS)
    return JSONResponse(error_body(family, secret), status_code=http_status(family))


def create_app(
    workspace: Workspace, tokens: TokenStore, settings: ServiceSettings | None = None, runs_in: RunsIn = RunsIn.THREAD
) -> Starlette:
    """The ASGI application; its lifespan starts and stops the in-process runs.

    `forget serve` runs them in a worker process (`RunsIn.PROCESS`); the default, the server's own
    thread, is for an application embedded in a test, where a hook reaches the job. Raises
    `SisaError` for a device that is not there (`forget.errors.translated()` makes it a
    `WorkspaceError`).
    """
    service = Service(workspace, tokens, settings or ServiceSettings(), runs_in)
    routes = [
        _route(service, "/healthz", "GET", service.healthz, None),
        _route(service, "/readyz", "GET", service.readyz, None),
        _route(service, "/openapi.json", "GET", service.openapi, None),
        _route(service, "/metrics", "GET", service.metrics_text, Scope.REQUESTS_READ),
        _route(service, "/v1/requests", "POST", service.create_request, Scope.REQUESTS_WRITE),
        _route(service, "/v1/requests", "GET", service.list_requests, Scope.REQUESTS_READ),
        _route(service, "/v1/requests/{request_id}", "GET", service.show_request, Scope.REQUESTS_READ),
        _route(service, "/v1/certificates/{request_id}", "GET", service.certificate, Scope.CERTIFICATES_READ),
        _route(service, "/v1/ledger/head", "GET", service.ledger_head, Scope.CERTIFICATES_READ),
        _route(service, "/v1/predict", "POST", service.predict, Scope.PREDICT, compute=True),
    ]
    from forget.service.dpo import dpo_routes  # the DPO's pages: session cookies over the same tokens

    app = Starlette(routes=[*routes, *dpo_routes(service)], lifespan=service.lifespan)
    app.state.service = service
    return app
