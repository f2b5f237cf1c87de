"""`forget serve`'s settings: forget.toml's optional [service] table gives the defaults, options override them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from forget.choices import DeviceChoice
from forget.errors import WorkspaceError
from forget.service.settings import BUILT_IN, Listening, ServiceSettings, resolve
from forget.workspace.config import (
    CONFIG_NAME,
    SERVICE_DEVICES,
    ServiceDefaults,
    WorkspaceConfig,
    read_config,
    write_config,
)
from tests.helpers import cli, init_args

BASE: dict[str, Any] = {
    "format": 1,
    "workspace": {"shards": 2, "slices": 2, "seed": 1},
    "ledger": {"origin": "forget.local/test"},
}
SERVICE: dict[str, Any] = {
    "host": "0.0.0.0",
    "port": 9090,
    "device": "cpu",
    "tls_cert": "tls/chain.pem",
    "tls_key": "tls/key.pem",
    "request_rate": 2,
    "request_burst": 10,
    "run_after_request": False,
    "run_every": 3600,
}


def test_the_service_table_is_read_checked_and_kept_when_forget_rewrites_the_file(tmp_path: Path) -> None:
    config = WorkspaceConfig.from_toml({**BASE, "service": SERVICE})
    assert config.service == ServiceDefaults(**{**SERVICE, "request_rate": 2.0, "run_every": 3600.0})
    assert isinstance(config.service.request_rate, float)
    write_config(tmp_path / CONFIG_NAME, config)  # as `forget run` does after re-deriving the schema
    assert read_config(tmp_path / CONFIG_NAME).service == config.service
    # Only the keys that are set are written; no table at all when none is.
    partial = WorkspaceConfig.from_toml({**BASE, "service": {"port": 9090}})
    assert partial.to_toml()["service"] == {"port": 9090}
    assert "service" not in WorkspaceConfig.from_toml(BASE).to_toml()


@pytest.mark.parametrize(
    "table, message",
    [
        ({"port": "8080"}, "[service] port must be an integer from 0 to 65535 (got '8080')"),
        ({"port": 70000}, "[service] port must be an integer from 0 to 65535 (got 70000)"),
        ({"port": 8080.0}, "[service] port must be an integer from 0 to 65535 (got 8080.0)"),
        ({"run_after_request": "yes"}, "[service] run_after_request must be true or false (got 'yes')"),
        ({"request_rate": 0}, "[service] request_rate must be a number above 0"),
        ({"request_rate": float("nan")}, "[service] request_rate must be a number above 0"),
        ({"request_burst": True}, "[service] request_burst must be an integer of at least 1 (got True)"),
        ({"run_every": -1}, "[service] run_every must be a number of seconds, 0 or more"),
        ({"device": "tpu"}, "[service] device must be one of auto, cpu, cuda (got 'tpu')"),
        ({"host": "local host"}, "[service] host must be an address or a host name"),
        ({"tls_cert": ""}, "[service] tls_cert must be a file's path"),
        ({"run_evry": 60}, "[service] has no key 'run_evry' (keys: host, port, device,"),
    ],
)
def test_a_bad_service_value_is_refused_in_one_line_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkspaceError, match=r"^forget\.toml: " + re.escape(message)) as raised:
        WorkspaceConfig.from_toml({**BASE, "service": table})
    assert "\n" not in str(raised.value)


def test_a_service_key_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(WorkspaceError, match=r"^forget\.toml: \[service\] must be a table$"):
        WorkspaceConfig.from_toml({**BASE, "service": 8080})


def test_an_option_beats_the_table_which_beats_the_built_in_default(tmp_path: Path) -> None:
    configured = ServiceDefaults(port=9090, run_every=60.0, tls_cert="tls/chain.pem", tls_key="/etc/tls/key.pem")
    given = ServiceDefaults(port=7000, run_after_request=False, tls_key="here/key.pem")
    listening, settings = resolve(given, configured, tmp_path)
    assert listening == Listening("127.0.0.1", 7000, tmp_path / "tls/chain.pem", Path("here/key.pem"))
    assert settings == ServiceSettings(
        device="auto", request_rate=5.0, request_burst=50, run_every=60.0, run_after_request=False
    )
    listening, settings = resolve(ServiceDefaults(), ServiceDefaults(), tmp_path)
    assert (listening.host, listening.port, listening.tls_cert, listening.tls_key) == ("127.0.0.1", 8080, None, None)
    assert settings.run_after_request and settings.run_every is None and BUILT_IN.run_every == 0.0


def test_the_devices_are_the_commands_choices() -> None:
    assert tuple(choice.value for choice in DeviceChoice) == SERVICE_DEVICES


# -- through `forget serve` (the server itself replaced: these test the settings, not the HTTP) ------------


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_serve(workspace: Any, tokens: Any, host: str, port: int, settings: ServiceSettings,
                   tls_cert: Path | None = None, tls_key: Path | None = None) -> None:  # fmt: skip
        calls.append({"host": host, "port": port, "settings": settings, "tls_cert": tls_cert, "tls_key": tls_key})

    monkeypatch.setattr("forget.service.server.serve", fake_serve)
    cli(*init_args(tmp_path / "ws", "sqlite:///forget.db"))
    return calls


def _with_service(ws: Path, text: str) -> None:
    path = ws / CONFIG_NAME
    path.write_text(path.read_text() + "\n[service]\n" + text)


def test_forget_serve_takes_the_table_and_its_options_override_it(tmp_path: Path, served: list[dict[str, Any]]) -> None:
    ws = tmp_path / "ws"
    _with_service(ws, 'port = 9191\nrun_after_request = false\nrun_every = 600\ntls_cert = "tls/c.pem"\n'
                      'tls_key = "tls/k.pem"\nrequest_rate = 1.5\n')  # fmt: skip
    cli("-w", ws, "serve")
    first = served[-1]
    assert (first["host"], first["port"]) == ("127.0.0.1", 9191)
    assert (first["tls_cert"], first["tls_key"]) == (ws / "tls/c.pem", ws / "tls/k.pem")
    assert first["settings"] == ServiceSettings(
        device="auto", request_rate=1.5, request_burst=50, run_every=600.0, run_after_request=False
    )
    cli("-w", ws, "serve", "--port", "7070", "--run-after-request", "--run-every", "0", "--request-rate", "9")
    second = served[-1]
    assert second["port"] == 7070 and second["tls_cert"] == ws / "tls/c.pem"
    assert second["settings"] == ServiceSettings(
        device="auto", request_rate=9.0, request_burst=50, run_every=None, run_after_request=True
    )


def test_forget_serve_refuses_a_bad_value_in_one_line_and_exit_3(tmp_path: Path, served: list[dict[str, Any]]) -> None:
    ws = tmp_path / "ws"
    _with_service(ws, 'port = "8080"\n')
    result = cli("-w", ws, "serve", "--port", "7070", expect=3)
    assert result.stderr == "error: forget.toml: [service] port must be an integer from 0 to 65535 (got '8080')\n"
    assert served == []
