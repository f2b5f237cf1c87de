"""One error root, caught once: every family ends a command with its documented exit code, library
errors are translated into the families, and anything else is a bug (exit 70)."""

from __future__ import annotations

import errno
import importlib
import pkgutil
import re
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import forget
from cli import errors as cli_errors
from cli.errors import ExitCode, reports_errors
from forget.errors import (
    FAMILIES,
    ForgetError,
    InputError,
    JobLockedError,
    MissingExtraError,
    NotTrainedError,
    StorageError,
    VerificationFailedError,
    WorkspaceError,
    as_forget_error,
    translated,
)
from ledger.errors import KeyFileError, LedgerError, VerificationError
from ledger.merkle import TreeRangeError
from reports.errors import CertificateError, CertificateFormatError
from reports.evaluation import EvaluationFormatError
from sisa.errors import DeviceError, DivergedError, SisaError
from sisa.store import CheckpointDigestError

runner = CliRunner()


def failing_app(error: BaseException) -> typer.Typer:
    """A one-command app whose command raises `error`, wrapped as every `forget` command is."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    @reports_errors
    def fail() -> None:
        raise error

    @app.command()
    def other() -> None:  # a second command, so that `fail` is a subcommand
        pass

    return app


def full_disk() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", "/ws/checkpoints/ab/x")


def readonly_database() -> Exception:
    class OperationalError(Exception):  # the name SQLAlchemy's wrapper has; `orig` is the driver's error
        orig = sqlite3.OperationalError("attempt to write a readonly database")

    return OperationalError("(sqlite3.OperationalError) attempt to write a readonly database")


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (VerificationFailedError("shard 1 slice 2: checkpoint abc is not the one the ledger records"), 1, None),
        (InputError("row 6, column 'x2': the value is beyond float32"), 2, None),
        (WorkspaceError("no forget workspace at /nowhere"), 3, None),
        (NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first"), 3, None),
        (MissingExtraError("the demo needs scikit-learn's bundled data: pip install 'forget[demo]'"), 3, None),
        (JobLockedError("another forget job holds this workspace's database; nothing was changed"), 5, None),
        # the libraries' errors, by the family they join
        (VerificationError("note signature by example.org/log does not verify"), 1, None),
        (CertificateError("the envelope signature does not verify"), 1, None),
        (CheckpointDigestError("checkpoint abc is corrupt: its bytes hash to def"), 1, None),
        (CertificateFormatError("cannot read the certificate c.json: No such file or directory"), 2, None),
        (EvaluationFormatError("attacks[0].conclusion is not one of ..."), 2, None),
        (DeviceError("--device cuda: this machine sees no CUDA device"), 3, None),
        (DivergedError("shard 0 slice 1: training diverged"), 3, None),
        (KeyFileError("the signing key needs a passphrase: set FORGET_KEY_PASSPHRASE"), 3, None),
        (TreeRangeError("index 9 is not below the tree size 4"), 3, None),
        (LedgerError("no anchored head of size 3"), 3, None),
        # the machine's state: a full disk, a read-only database
        (full_disk(), 3, "cannot write /ws/checkpoints/ab/x: No space left on device; nothing was half-written"),
        (readonly_database(), 3, "the database cannot be written (attempt to write a readonly database)"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_every_family_ends_a_command_with_its_exit_code(error: BaseException, code: int, line: str | None) -> None:
    result = runner.invoke(failing_app(error), ["fail"])
    assert result.exit_code == code
    assert result.stderr.startswith(f"error: {line or error}"), result.stderr
    assert result.stderr.count("\n") == 1, "one line, no traceback"


def test_the_exit_codes_are_the_documented_ones() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0, "VERIFICATION_FAILED": 1, "BAD_INPUT": 2, "WORKSPACE": 3, "OVERDUE": 4, "LOCKED": 5, "INTERNAL": 70,
    }  # fmt: skip
    assert [family.exit_code for family in FAMILIES] == [1, 2, 3, 5]


def _forget_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(forget.__path__, "forget."):
        if not info.name.startswith("forget.store.migrations"):  # Alembic scripts, not the application
            names.append(info.name)
    return names


def test_every_application_error_belongs_to_exactly_one_family() -> None:
    for name in _forget_modules():
        importlib.import_module(name)
    seen: set[type[ForgetError]] = set()
    pending = [ForgetError]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass.__module__.startswith("forget.") and subclass not in seen:
                seen.add(subclass)
                pending.append(subclass)
    assert len(seen) > len(FAMILIES)
    for subclass in seen:
        families = [family for family in FAMILIES if issubclass(subclass, family)]
        assert len(families) == 1, f"{subclass.__module__}.{subclass.__qualname__} is in {families}"


def test_an_unexpected_exception_is_a_bug_exit_70_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cli.main

    monkeypatch.setattr(cli.main, "app", failing_app(KeyError("not ours")))
    monkeypatch.setattr("sys.argv", ["forget", "fail"])
    with pytest.raises(SystemExit) as exited:
        cli.main.run()
    assert exited.value.code == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'not ours'" in err
    assert err.rstrip().endswith("error: internal error in forget (a bug): please report it with the traceback above")


def test_verbose_shows_the_library_error_behind_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_errors, "verbose", True)
    result = runner.invoke(failing_app(CertificateError("the envelope signature does not verify")), ["fail"])
    assert result.exit_code == 1
    assert "reports.errors.CertificateError: the envelope signature does not verify" in result.stderr
    assert "forget.errors.VerificationFailedError" in result.stderr
    assert result.stderr.rstrip().endswith("error: the envelope signature does not verify")


def test_diagnostics_is_one_line_and_an_optional_hint() -> None:
    assert InputError("bad\n  file").diagnostics() == "bad file"
    hinted = WorkspaceError("no forget workspace at /x", hint="forget init /x, or -w FOLDER")
    assert hinted.diagnostics() == "no forget workspace at /x\nhint: forget init /x, or -w FOLDER"
    result = runner.invoke(failing_app(hinted), ["fail"])
    assert result.exit_code == 3
    assert result.stderr == "error: no forget workspace at /x\nhint: forget init /x, or -w FOLDER\n"
    assert SisaError("a\nworker's\ntraceback").diagnostics() == "a worker's traceback"
    assert LedgerError("").diagnostics() == "LedgerError"


def test_translated_keeps_ours_translates_the_libraries_and_lets_bugs_through() -> None:
    ours = JobLockedError("another forget job holds this workspace")
    with pytest.raises(JobLockedError) as kept, translated():
        raise ours
    assert kept.value is ours
    library = CheckpointDigestError("checkpoint abc is corrupt")
    with pytest.raises(VerificationFailedError, match=r"^checkpoint abc is corrupt$") as caught, translated():
        raise library
    assert caught.value.__cause__ is library
    with pytest.raises(StorageError, match=r"^cannot write .*: No space left on device"), translated():
        raise full_disk()
    with pytest.raises(ZeroDivisionError), translated():
        raise ZeroDivisionError("a bug")
    assert as_forget_error(ValueError("a bug")) is None
    assert as_forget_error(OSError(errno.ENOENT, "No such file or directory")) is None  # not the disk's state


def test_replay_raises_when_it_does_not_reproduce(monkeypatch: pytest.MonkeyPatch) -> None:
    from forget.audit import replay

    report = replay.ReplayReport("req_1", shards=[2], mismatches=["shard 2 slice 4: replayed aa, certified bb"])
    monkeypatch.setattr(replay, "_replay", lambda *_: report)
    with pytest.raises(replay.NotReproducedError, match=r"^req_1 was not reproduced: 1 mismatch \(") as failed:
        replay.replay(object(), "req_1")  # type: ignore[arg-type]
    assert failed.value.report is report and failed.value.exit_code == ExitCode.VERIFICATION_FAILED
    reproduced = replay.ReplayReport("req_1", shards=[2], compared=5)
    monkeypatch.setattr(replay, "_replay", lambda *_: reproduced)
    assert replay.replay(object(), "req_1") is reproduced  # type: ignore[arg-type]


def test_the_choices_repeat_the_engines_values() -> None:
    from forget.choices import AggregationChoice, OptimizerChoice, as_aggregation
    from forget.workspace.config import AGGREGATIONS
    from sisa.aggregation import Aggregation
    from sisa.trainer import OptimizerKind

    assert [c.value for c in AggregationChoice] == [a.value for a in Aggregation] == list(AGGREGATIONS)
    assert [c.value for c in OptimizerChoice] == [o.value for o in OptimizerKind]
    assert as_aggregation(AggregationChoice.GEOMEAN) is Aggregation.GEOMEAN


def test_a_key_file_that_cannot_be_read_is_bad_input(tmp_path: Path) -> None:
    from tests.helpers import cli

    (tmp_path / "c.json").write_text("{}")
    result = cli("certificate", "verify", tmp_path / "c.json", "--public-key", tmp_path / "missing.pub", expect=2)
    assert re.match(r"error: cannot read the public key .*missing\.pub: No such file or directory\n$", result.stderr)
