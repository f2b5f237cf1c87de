"""GET /v1/requests lists what `forget status` lists (forget.erasure.requests.list_requests), by state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forget.erasure import requests as intake
from forget.erasure.requests import RequestState, file_request
from forget.workspace.core import Workspace
from tests.service.conftest import Api


def _three_requests(workspace: Workspace) -> dict[str, str]:
    """One pending, one overdue pending, one completed (the state set in the store, as a run would)."""
    pending, _ = file_request(workspace, "person-0001")
    late, _ = file_request(workspace, "person-0002", datetime.now(UTC) - timedelta(days=40))
    done, _ = file_request(workspace, "person-0003")
    with workspace.datastore.transaction() as tx:
        workspace.datastore.update_request(tx, done.request_id, state=RequestState.COMPLETED.value)
    return {"pending": pending.request_id, "late": late.request_id, "done": done.request_id}


def test_the_listing_is_the_applications_in_its_order_with_the_overdue_count(api: Api) -> None:
    ids = _three_requests(api.workspace)
    status, body = api.get("/v1/requests")
    assert status == 200
    assert [r["request_id"] for r in body["requests"]] == [r.request_id for r in intake.list_requests(api.workspace)]
    assert {r["request_id"] for r in body["requests"]} == set(ids.values())
    assert body["overdue"] == 1


def test_the_route_calls_the_application_function(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Workspace] = []
    real = intake.list_requests

    def spy(workspace: Workspace) -> list[intake.ErasureRequest]:
        calls.append(workspace)
        return real(workspace)

    monkeypatch.setattr(intake, "list_requests", spy)
    assert api.get("/v1/requests")[0] == 200 and calls == [api.workspace]


@pytest.mark.parametrize(
    "state, expected", [("pending", {"pending", "late"}), ("completed", {"done"}), ("running", set())]
)
def test_a_state_keeps_only_its_requests(api: Api, state: str, expected: set[str]) -> None:
    ids = _three_requests(api.workspace)
    status, body = api.get(f"/v1/requests?state={state}")
    assert status == 200
    assert {r["request_id"] for r in body["requests"]} == {ids[name] for name in expected}
    assert all(r["state"] == state for r in body["requests"])
    assert body["overdue"] == (1 if state == "pending" else 0)


@pytest.mark.parametrize(
    "query, message",
    [
        ("state=overdue", "state must be one of pending, running, completed"),
        ("state=", "state must be one of pending, running, completed"),
        ("state=pending&state=completed", "give state at most once (one of pending, running, completed)"),
    ],
)
def test_an_unknown_state_is_422_in_one_line(api: Api, query: str, message: str) -> None:
    assert api.get(f"/v1/requests?{query}") == (422, {"error": message})
