"""The service's API in a test: the real application over real HTTP on an in-memory workspace.

uvicorn serves `create_app` on a loopback port in a thread of the test process; the workspace's
store and ledger are in memory (tests/fakes.py), and so are the tokens: no database, no training.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn

from forget.erasure.requests import format_time
from forget.service.app import create_app
from forget.service.tokens import Scope, create_token
from forget.workspace.core import Workspace
from tests.service.test_dpo import MemoryTokens


@dataclass
class Api:
    client: httpx.Client
    workspace: Workspace

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        response = self.client.get(path)
        assert "\n" not in response.text, response.text  # one line, always
        return response.status_code, response.json()


@pytest.fixture
def api(fake_workspace: Workspace) -> Iterator[Api]:
    tokens = MemoryTokens()
    token, _ = create_token(tokens, "ops", frozenset({Scope.ADMIN}), format_time(datetime.now(UTC)))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(fake_workspace, tokens), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            while not server.started:
                thread.join(0.01)
            yield Api(client, fake_workspace)
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()
