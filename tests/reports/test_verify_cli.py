"""`forget-verify` (argparse, standard library) against `forget certificate verify` (typer).

An auditor who installs only the verifier must get the same verdicts, messages and exit codes
as one who runs the full CLI: every malformed certificate of tests/reports/test_verify.py is fed
to both. The installed console script itself is tested in a fresh virtual environment
(tests/reports/test_verifier_install.py); `cli.launch` (the `forget` script where only the
verifier is installed) is tested here with the training stack made to look absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cli import launch
from cli.main import app
from ledger.cosignature import cosign, witness_verifier_key
from ledger.note import split_note
from reports import verify_cli
from reports.errors import CertificateFormatError
from tests.reports.synthetic import KEY, ORIGIN, REQUEST, certify, resign, verifier_line
from tests.reports.test_verify import ALL

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verify-cli")
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    made = certify()
    witness = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    note = made.statement["predicate"]["log"]["checkpoint"]
    made.statement["predicate"]["log"]["checkpoint"] = note + cosign(
        split_note(note)[0], "w.test/1", witness, 1_700_000_000
    )
    paths = {
        "key": root / "operator.pub",
        "pem": root / "key.pem",
        "cert": root / "cert.json",
        "cosigned": root / "cosigned.json",
        "witness": root / "w1.vkey",
    }
    paths["key"].write_bytes(pem + verifier_line().encode() + b"\n")  # what `forget keys public` prints
    paths["pem"].write_bytes(pem)
    paths["cert"].write_bytes(made.envelope)
    paths["cosigned"].write_bytes(resign(made.statement))
    paths["witness"].write_text(witness_verifier_key("w.test/1", witness.public_key()) + "\n")
    return paths


def stdlib(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = verify_cli.main([str(a) for a in args])
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def typer_cli(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["certificate", "verify", *(str(a) for a in args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", list(ALL))
def test_each_malformed_certificate_gets_the_same_verdict_from_both(
    case: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, error, _ = ALL[case]
    (tmp_path / "bad.json").write_bytes(build())
    args = (tmp_path / "bad.json", "--public-key", files["key"])
    code, out, err = stdlib(capsys, *args)
    assert (code, out, err) == typer_cli(*args)
    assert code == (2 if error is CertificateFormatError else 1) and err.startswith("error: ") and err.count("\n") == 1


def test_a_valid_certificate_prints_the_same_line_and_json(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = stdlib(capsys, files["cert"], "--public-key", files["key"])
    assert code == 0 and err == "" and out.startswith(f"valid: request {REQUEST} (erased, 2 records)")
    assert (code, out, err) == typer_cli(files["cert"], "--public-key", files["key"])
    code, out, _ = stdlib(capsys, files["cert"], "--public-key", files["key"], "--json")
    assert code == 0 and json.loads(out)["valid"] is True and json.loads(out)["origin"] == ORIGIN
    assert out == typer_cli(files["cert"], "--public-key", files["key"], "--json")[1]


def test_the_options_of_certificate_verify(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    cert, key, pem = files["cert"], files["key"], files["pem"]
    code, _, err = stdlib(capsys, cert, "--public-key", pem)
    assert code == 2 and "bare PEM key, which names no log" in err
    assert stdlib(capsys, cert, "--public-key", pem, "--origin", ORIGIN)[0] == 0
    code, _, err = stdlib(capsys, cert, "--public-key", pem, "--origin", "forget.local/prod")
    assert code == 1 and "the verifier key is for 'forget.local/prod'" in err
    code, _, err = stdlib(capsys, cert, "--public-key", key, "--max-bytes", "100")
    assert code == 2 and "larger than 100 bytes" in err
    for flag in ("--checkpoint", "--later-checkpoint"):
        code, _, err = stdlib(capsys, cert, "--public-key", key, flag, cert)
        assert code == 2 and err.startswith("error: the later checkpoint lacks note"), err
    code, _, err = stdlib(capsys, files["cosigned"], "--public-key", key, "--witness-key", files["witness"])
    assert code == 0, err
    code, _, err = stdlib(capsys, cert, "--public-key", key, "--witness-key", files["witness"])
    assert code == 1 and "cosigned by 0 of the 1 witnesses given" in err and "missing: w.test/1" in err
    code, _, err = stdlib(
        capsys, cert, "--public-key", key, "--witness-key", files["witness"], "--witness-threshold", "2"
    )
    assert code == 2 and "--witness-threshold must be between 1 and the number of --witness-key" in err
    code, _, err = stdlib(capsys, cert, "--public-key", key.with_name("absent"))
    assert code == 2 and err.startswith("error: cannot read the public key")
    assert stdlib(capsys, cert)[0] == 2  # --public-key is required
    code, _, err = stdlib(capsys, cert, "--public-key", key, "--max-bytes", "0")
    assert code == 2 and "0 is not at least 1" in err


def test_an_unexpected_exception_is_a_bug_not_a_verdict(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(verify_cli, "verify_certificate", broken)
    code, _, err = stdlib(capsys, files["cert"], "--public-key", files["key"])
    assert code == 70 and "RuntimeError: boom" in err and "a bug" in err


def test_the_forget_script_without_the_training_stack(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch, "missing_training_modules", lambda: ["typer", "torch"])

    def forget(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["forget", *(str(a) for a in args)])
        with pytest.raises(SystemExit) as exit_:
            launch.run()
        out, err = capsys.readouterr()
        return int(exit_.value.code or 0), out, err

    code, out, _ = forget("certificate", "verify", files["cert"], "--public-key", files["key"])
    assert code == 0 and out.startswith("valid: request")
    assert forget("certificate", "verify", files["cert"], "--public-key", files["pem"])[0] == 2
    code, _, err = forget("train", "--device", "cpu")
    assert code == 3 and err == (
        "error: `forget train` needs the training stack, which is not installed (missing: typer, torch):"
        " pip install 'forget[train]'. To verify a certificate: forget-verify --help\n"
    )
    code, _, err = forget("request", "--subject-id", "alice@example.com")
    assert code == 3 and "alice" not in err
    code, out, _ = forget("--help")
    assert code == 0 and "forget certificate verify CERTIFICATE --public-key KEY" in out


def test_the_launcher_knows_the_train_extra() -> None:
    """cli.launch checks for the `train` extra's modules: the two lists must name the same packages."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {requirement.split(">")[0].split("=")[0].split("<")[0].replace("-", "_") for requirement in extras["train"]}
    assert names == set(launch.TRAINING_STACK)
    assert launch.missing_training_modules() == []  # this environment has everything


def test_the_verifier_runs_with_the_training_stack_blocked(files: dict[str, Path]) -> None:
    """In a process where importing any module of the `train` extra fails, verification still works."""
    code = (  # None in sys.modules: importing the name fails, and find_spec reports it missing
        f"import sys\nsys.modules.update(dict.fromkeys({launch.TRAINING_STACK!r}))\nfrom cli.launch import run\nrun()\n"
    )
    args = ["certificate", "verify", str(files["cert"]), "--public-key", str(files["key"])]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith(f"valid: request {REQUEST}"), result.stderr
