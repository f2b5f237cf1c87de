"""The OpenAPI 3.1 document of `forget serve`, served at /openapi.json.

Written by hand rather than generated: the routes are few, and tests/service/test_server.py
checks that every route the server has is documented with its method, scope and every status
the tests see it answer. The error statuses are forget.service.problems' table: every API route
may answer 503 (the workspace cannot answer now: its database, a full disk, untrained shards) and
500 (a failed verification, or a bug).
"""

from __future__ import annotations

from typing import Any

import forget

_ERROR = {"$ref": "#/components/schemas/Error"}
_REQUEST = {"$ref": "#/components/schemas/Request"}
_REQUEST_LIST = {
    "type": "object",
    "required": ["requests", "overdue"],
    "properties": {"requests": {"type": "array", "items": _REQUEST}, "overdue": {"type": "integer"}},
}
_REQUEST_ID = {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "The body is not a JSON object.",
        401: "No valid bearer token.",
        403: "The token lacks the route's scope.",
        404: "No such request, or no certificate yet.",
        413: "The body or the batch is too large.",
        409: "Another job holds the workspace, or the subject's open request was filed at the same moment.",
        422: "A field or a query parameter is missing or invalid; nothing was recorded.",
        429: "Too many calls for this token; see Retry-After.",
        500: "Verification failed (the body says what did not check out), or an internal error.",
        503: "The workspace, its database or its models are not usable now.",
    }
    return {str(code): _json(_ERROR, reasons[code]) for code in codes}


_SERVER = (500, 503)
"""What any API route may answer besides its own statuses (forget.service.problems)."""


def _secured(scope: str) -> list[dict[str, list[str]]]:
    return [{"bearer": [scope]}]


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {}}}


def _see_other(where: str) -> dict[str, Any]:
    return {"description": f"303 See Other: {where}.", "headers": {"Location": {"schema": {"type": "string"}}}}


def _dpo_paths() -> dict[str, Any]:
    """The DPO's HTML pages (forget/service/dpo.py): a browser session, not a bearer token.

    Documented here so that the document lists every route the server has; a page's answers
    are HTML, and a call without a session is redirected to the login page rather than a 401.
    """
    session: list[dict[str, list[str]]] = [{"dpoSession": []}]
    no_session = _see_other("to /dpo/login when there is no valid session (none, expired, ended or revoked)")
    form = {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "required": ["csrf"]}}},
    }
    csrf = _html("The form's CSRF field is missing or wrong.")
    server = {
        "500": _html("Verification failed, or an internal error."),
        "503": _html("The workspace, its database or its models are not usable now."),
    }
    return {
        "/dpo": {
            "get": {
                "summary": "The DPO's overview: open requests with deadlines, completed ones with certificates, the "
                "ledger head.",
                "security": session,
                "x-scope": "requests:read",
                "responses": {"200": _html("The page."), "303": no_session, **server},
            }
        },
        "/dpo/requests": {
            "post": {
                "summary": "File an erasure request from the page's form (subject_id, note, received_at).",
                "security": session,
                "x-scope": "requests:write",
                "requestBody": form,
                "responses": {
                    "303": _see_other(
                        "to /dpo, with a one-time cookie naming the request filed (or the subject's open one);"
                        " to /dpo/login without a session"
                    ),
                    "403": csrf,
                    "413": _html("The form is too large."),
                    "415": _html("Not a form."),
                    "422": _html("The overview again, with what was wrong; nothing was recorded."),
                    "429": _html("Too many requests for this token; see Retry-After."),
                    **server,
                },
            }
        },
        "/dpo/certificates/{request_id}": {
            "get": {
                "summary": "A completed request's certificate: HTML (inline), PDF or DSSE JSON (downloads).",
                "security": session,
                "x-scope": "certificates:read",
                "parameters": [
                    {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "format", "in": "query", "schema": {"enum": ["html", "pdf", "json"], "default": "html"}},
                ],
                "responses": {
                    "200": {
                        "description": "The certificate.",
                        "content": {"text/html": {}, "application/pdf": {}, "application/json": {}},
                    },
                    "303": no_session,
                    "404": _html("No such request, or no certificate yet."),
                    "422": _html("An unknown format."),
                    **server,
                },
            }
        },
        "/dpo/login": {
            "get": {
                "summary": "The login form (sets a short-lived login cookie for its CSRF check).",
                "responses": {"200": _html("The form."), "303": _see_other("to /dpo when already logged in")},
            },
            "post": {
                "summary": "Exchange a token (admin, or requests:read + requests:write + certificates:read) for a "
                "session cookie.",
                "requestBody": form,
                "responses": {
                    "303": _see_other("to /dpo, with the session cookie (HttpOnly, SameSite=Strict)"),
                    "401": _html("The form again: the token is unknown, revoked or mistyped."),
                    "403": _html("The form again: the token lacks a scope, or the login form expired."),
                    "413": _html("The form is too large."),
                    "415": _html("Not a form."),
                },
            },
        },
        "/dpo/logout": {
            "post": {
                "summary": "End the session (its cookie is refused from now on, in this process).",
                "security": session,
                "requestBody": form,
                "responses": {"303": _see_other("to /dpo/login"), "403": csrf},
            }
        },
        "/dpo/style.css": {
            "get": {
                "summary": "The pages' stylesheet.",
                "responses": {"200": {"description": "CSS.", "content": {"text/css": {}}}},
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The document; `x-scope` names the token scope each operation needs. Raises nothing."""
    auth = (401, 403)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "forget",
            "version": forget.__version__,
            "description": "Exact unlearning (GDPR Art. 17) with certificates an auditor verifies offline.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "dpoSession": {"type": "apiKey", "in": "cookie", "name": "forget_dpo_session"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string", "description": "One line; never a subject id."},
                        "hint": {"type": "string", "description": "What to do about it, when there is advice."},
                    },
                },
                "Request": {
                    "type": "object",
                    "required": ["request_id", "state", "received_at", "deadline", "overdue"],
                    "properties": {
                        "request_id": {"type": "string", "pattern": "^req_[0-9a-f]{16}$"},
                        "subject_key": {"type": "string", "description": "The keyed pseudonym, never the raw id."},
                        "state": {"enum": ["pending", "running", "completed"]},
                        "received_at": {"type": "string", "format": "date-time"},
                        "deadline": {"type": "string", "format": "date-time"},
                        "extended_months": {"type": "integer"},
                        "days_left": {"type": ["number", "null"]},
                        "overdue": {"type": "boolean"},
                        "completed_at": {"type": ["string", "null"], "format": "date-time"},
                        "outcome": {"enum": ["erased", "no_data", None]},
                        "records_erased": {"type": ["integer", "null"]},
                        "note": {"type": ["string", "null"]},
                        "extension_reason": {"type": ["string", "null"]},
                    },
                },
            },
        },
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness: the process answers.",
                    "responses": {"200": _json({"type": "object"}, "Alive.")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the database opens at the expected schema and the models load.",
                    "responses": {
                        "200": _json({"type": "object"}, "Ready."),
                        "503": _json({"type": "object"}, "Not ready, with the reason."),
                    },
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document.", "responses": {"200": _json({"type": "object"}, "The document.")}}
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics: pending, overdue, oldest pending age, ledger size, call latency.",
                    "security": _secured("requests:read"),
                    "x-scope": "requests:read",
                    "responses": {
                        "200": {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {}}},
                        **_errors(*auth, *_SERVER),
                    },
                }
            },
            "/v1/requests": {
                "post": {
                    "summary": "File an erasure request (Art. 17); durable when answered.",
                    "security": _secured("requests:write"),
                    "x-scope": "requests:write",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["subject_id"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "subject_id": {"type": "string"},
                                        "received_at": {"type": "string", "format": "date-time"},
                                        "note": {"type": "string", "maxLength": 2000},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json(_REQUEST, "Recorded: a new request."),
                        "200": _json(_REQUEST, "The subject's pending request, unchanged (idempotent)."),
                        **_errors(400, *auth, 409, 413, 422, 429, *_SERVER),
                    },
                },
                "get": {
                    "summary": "List requests by deadline, optionally of one state (as `forget status --json`).",
                    "security": _secured("requests:read"),
                    "x-scope": "requests:read",
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "description": "Only the requests in this state; another value is 422.",
                            "schema": {"enum": ["pending", "running", "completed"]},
                        }
                    ],
                    "responses": {
                        "200": _json(_REQUEST_LIST, "The requests, and how many of them are overdue."),
                        **_errors(*auth, 422, *_SERVER),
                    },
                },
            },
            "/v1/requests/{request_id}": {
                "get": {
                    "summary": "One request: state, deadline, outcome.",
                    "security": _secured("requests:read"),
                    "x-scope": "requests:read",
                    "parameters": [
                        {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": _json(_REQUEST, "The request."), **_errors(*auth, 404, *_SERVER)},
                }
            },
            "/v1/certificates/{request_id}": {
                "get": {
                    "summary": "The request's signed certificate (DSSE JSON), or its HTML/PDF rendering.",
                    "security": _secured("certificates:read"),
                    "x-scope": "certificates:read",
                    "parameters": [
                        {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "format", "in": "query", "schema": {"enum": ["json", "html", "pdf"]}},
                    ],
                    "responses": {
                        "200": {
                            "description": "The certificate.",
                            "content": {"application/json": {}, "text/html": {}, "application/pdf": {}},
                        },
                        **_errors(*auth, 404, 422, *_SERVER),
                    },
                }
            },
            "/v1/ledger/head": {
                "get": {
                    "summary": "The latest signed tree head (a C2SP tlog-checkpoint signed note).",
                    "security": _secured("certificates:read"),
                    "x-scope": "certificates:read",
                    "responses": {
                        "200": {"description": "The signed note.", "content": {"text/plain": {}}},
                        **_errors(*auth, *_SERVER),
                    },
                }
            },
            "/v1/predict": {
                "post": {
                    "summary": "The ensemble's answers for rows given as JSON objects (feature name -> value).",
                    "security": _secured("predict"),
                    "x-scope": "predict",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["rows"],
                                    "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "predictions": {"type": "array", "items": {"type": "string"}},
                                    "shards": {"type": "array", "items": {"type": "integer"}},
                                },
                            },
                            "One label per row, and the shards that answered.",
                        ),
                        **_errors(400, *auth, 413, 422, *_SERVER),
                    },
                }
            },
            **_dpo_paths(),
        },
    }
