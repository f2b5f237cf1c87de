"""The OpenAPI 3.1 document of `forget serve`, served at /openapi.json.

Written by hand rather than generated: the routes are few, and tests/service/test_server.py
checks that every route the server has is documented with its method, scope and every status
the tests see it answer.
"""

from __future__ import annotations

from typing import Any

import forget

_ERROR = {"$ref": "#/components/schemas/Error"}
_REQUEST = {"$ref": "#/components/schemas/Request"}
_REQUEST_LIST = {"type": "object", "properties": {"requests": {"type": "array", "items": _REQUEST}}}
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
        422: "A field is missing or invalid; nothing was recorded.",
        429: "Too many calls for this token; see Retry-After.",
        503: "The workspace, its database or its models are not usable now.",
    }
    return {str(code): _json(_ERROR, reasons[code]) for code in codes}


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
    return {
        "/dpo": {
            "get": {
                "summary": "The DPO's overview: open requests with deadlines, completed ones with certificates, the "
                "ledger head.",
                "security": session,
                "x-scope": "requests:read",
                "responses": {"200": _html("The page."), "303": no_session},
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
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
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
                        **_errors(*auth),
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
                        **_errors(400, *auth, 413, 422, 429),
                    },
                },
                "get": {
                    "summary": "List requests, optionally of one state.",
                    "security": _secured("requests:read"),
                    "x-scope": "requests:read",
                    "parameters": [
                        {"name": "state", "in": "query", "schema": {"enum": ["pending", "running", "completed"]}}
                    ],
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"requests": {"type": "array", "items": _REQUEST}}},
                            "The requests.",
                        ),
                        **_errors(*auth, 422),
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
                    "responses": {"200": _json(_REQUEST, "The request."), **_errors(*auth, 404)},
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
                        **_errors(*auth, 404, 422),
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
                        **_errors(*auth, 503),
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
                        **_errors(400, *auth, 413, 422, 503),
                    },
                }
            },
            **_dpo_paths(),
        },
    }
