"""Errors leave the service by family: one table (forget.service.problems) from family to HTTP status.

Each family is driven through the real application over real HTTP on an in-memory workspace (the
`api` fixture, tests/service/conftest.py). Library errors (`sisa`, `ledger`, `reports`) and a full
disk answered a bare 500 "Internal Server Error" before they were translated.
"""

from __future__ import annotations

import errno
import logging

import pytest

from forget.erasure.certify import certificate_path
from forget.erasure.reconcile import RequestMismatchError
from forget.erasure.requests import UnknownRequestError, file_request
from forget.errors import InputError, JobLockedError, NotTrainedError
from forget.service.openapi import openapi_document
from forget.service.problems import INTERNAL_MESSAGE, STATUS_BY_FAMILY, http_status
from forget.workspace.core import Workspace
from ledger.errors import KeyFileError, LedgerError, VerificationError
from reports.errors import CertificateFormatError
from sisa.errors import SisaError
from sisa.store import CheckpointDigestError
from tests.service.conftest import Api

SUBJECT = "person-0003"
UNKNOWN = "req_0123456789abcdef"


@pytest.mark.parametrize(
    "error, status, message",
    [
        # The libraries' errors, translated by forget.errors.translated(): a bare 500 before.
        (SisaError("no CUDA device on this machine"), 503, "no CUDA device on this machine"),
        (LedgerError("the witness at https://w.example is unreachable"), 503, "the witness at"),
        (KeyFileError("cannot read public key keys/signing.pub.pem"), 503, "cannot read public key"),
        (OSError(errno.ENOSPC, "No space left on device", "forget.db"), 503, "cannot write forget.db"),
        (CertificateFormatError("not a certificate"), 422, "not a certificate"),
        (VerificationError("inclusion proof does not verify"), 500, "verification failed: inclusion proof"),
        (CheckpointDigestError("checkpoint 3/4 is not its digest"), 500, "verification failed: checkpoint 3/4"),
        # The application's own families.
        (InputError("a bad value"), 422, "a bad value"),
        (UnknownRequestError("no erasure request with that id"), 404, "no erasure request with that id"),
        (JobLockedError("another forget run holds the workspace"), 409, "another forget run holds"),
        (NotTrainedError("no trained shard yet: run forget train"), 503, "no trained shard yet"),
        (RequestMismatchError("request row differs from the ledger"), 500, "verification failed: request row"),
    ],
)
def test_each_family_has_its_status_and_a_one_line_body(
    api: Api, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int, message: str
) -> None:
    def failing(workspace: Workspace, request_id: str) -> None:
        raise error

    monkeypatch.setattr("forget.service.app.get_request", failing)
    got, body = api.get(f"/v1/requests/{UNKNOWN}")
    assert got == status, body
    assert str(body["error"]).startswith(message), body


def test_a_bug_is_a_generic_500_and_logged_without_the_subject_id(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def buggy(*args: object) -> None:
        raise KeyError(f"lookup of {SUBJECT} failed")

    monkeypatch.setattr("forget.service.app.file_request", buggy)
    with caplog.at_level(logging.ERROR, logger="forget.service"):
        response = api.client.post("/v1/requests", json={"subject_id": SUBJECT})
    assert response.status_code == 500 and response.json() == {"error": INTERNAL_MESSAGE}
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "forget.service")
    assert "POST /v1/requests: unexpected error" in logged and "KeyError" in logged
    assert SUBJECT not in logged and "<subject id>" in logged


def test_no_error_body_echoes_the_subject_id(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def quoting(*args: object) -> None:
        raise InputError(f"subject id {SUBJECT.upper()} is not in the identity form")

    monkeypatch.setattr("forget.service.app.file_request", quoting)
    response = api.client.post("/v1/requests", json={"subject_id": f" {SUBJECT} "})
    assert response.status_code == 422
    assert response.json() == {"error": "subject id <subject id> is not in the identity form"}


def test_an_unreadable_public_key_is_503_and_a_stored_certificate_that_does_not_verify_500(api: Api) -> None:
    filed, _ = file_request(api.workspace, SUBJECT)
    stored = certificate_path(api.workspace, filed.request_id)
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(b'{"payloadType": "not a certificate"}')
    # The DSSE JSON is served as stored; the rendering verifies it first.
    assert api.client.get(f"/v1/certificates/{filed.request_id}").status_code == 200
    status, body = api.get(f"/v1/certificates/{filed.request_id}?format=html")
    assert status == 500
    assert str(body["error"]).startswith(f"verification failed: the stored certificate of {filed.request_id}")
    # A real ledger.errors.KeyFileError from the route's own call: a bare 500 before, 503 now.
    (api.workspace.keys_dir / "signing.pub.pem").unlink()
    status, body = api.get(f"/v1/certificates/{filed.request_id}?format=html")
    assert status == 503 and str(body["error"]).startswith("cannot read public key"), body


def test_a_dpo_page_answers_a_library_error_by_its_family(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from forget.service import dpo

    real = dpo.render

    def failing(template: str, **values: object) -> str:
        if template == "dpo.css.j2":
            raise LedgerError("the ledger's head cannot be read")
        return real(template, **values)

    monkeypatch.setattr(dpo, "render", failing)
    response = api.client.get("/dpo/style.css")
    assert response.status_code == 503 and "the ledger&#39;s head cannot be read" in response.text


def test_the_table_names_every_family_and_the_document_every_status_it_gives() -> None:
    from forget.errors import FAMILIES

    assert set(FAMILIES) <= set(STATUS_BY_FAMILY)
    assert http_status(UnknownRequestError("x")) == 404 and http_status(InputError("x")) == 422
    api_routes = {
        (path, method): op for path, ops in openapi_document()["paths"].items() if path.startswith("/v1/")
        for method, op in ops.items()
    }  # fmt: skip
    for (path, method), op in api_routes.items():
        assert {"500", "503"} <= set(op["responses"]), (path, method)
    assert "hint" in openapi_document()["components"]["schemas"]["Error"]["properties"]
