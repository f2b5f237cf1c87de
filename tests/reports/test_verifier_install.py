"""An auditor's install: `pip install forget` into a fresh virtual environment, then verify.

The verifier must install without the training stack (no torch, no SQLAlchemy, no numpy) and
verify a real certificate offline with `forget-verify`, and with `forget certificate verify`
(which the `forget` script hands to the verifier when the stack is absent). Needs the package
index for `cryptography` and `rfc8785` (PyPI, or the pip cache).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reports.synthetic import REQUEST, certify, verifier_line

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sisa", "ledger", "reports", "cli", "forget")


def _copy_source(target: Path) -> Path:
    """The repository's distribution files, without caches or the working tree's build outputs."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


@pytest.mark.slow
def test_pip_install_forget_is_a_verifier_without_the_training_stack(tmp_path: Path) -> None:
    source = _copy_source(tmp_path / "src")
    venv = tmp_path / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, bin_ = venv / "bin" / "python", venv / "bin"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    seconds = time.perf_counter() - started
    print(f"verifier venv: created and installed in {seconds:.1f} s, {_size_mib(venv):.0f} MiB")

    absent = "import importlib.util as u, sys; sys.exit(any(u.find_spec(n) for n in sys.argv[1:]))"
    stack = ["torch", "sqlalchemy", "numpy", "typer", "rich", "jinja2", "pyarrow", "alembic"]
    assert subprocess.run([str(python), "-c", absent, *stack]).returncode == 0, "the training stack was installed"
    listed = json.loads(subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True,
                                       text=True, check=True).stdout)  # fmt: skip
    names = {item["name"].lower() for item in listed}
    assert {"forget", "cryptography", "rfc8785"} <= names and not names & {"torch", "sqlalchemy", "numpy"}

    made = certify()
    (tmp_path / "cert.json").write_bytes(made.envelope)
    (tmp_path / "operator.key").write_text(verifier_line() + "\n")
    tampered = json.loads(made.envelope)
    tampered["signatures"][0]["sig"] = tampered["signatures"][0]["sig"][::-1]
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    run_dir = tmp_path / "elsewhere"  # away from the repository, so nothing is imported from it
    run_dir.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*args], capture_output=True, text=True, cwd=run_dir, timeout=60)

    key = ["--public-key", str(tmp_path / "operator.key")]
    ok = run(str(bin_ / "forget-verify"), str(tmp_path / "cert.json"), *key)
    assert ok.returncode == 0 and ok.stdout.startswith(f"valid: request {REQUEST}"), ok.stderr
    bad = run(str(bin_ / "forget-verify"), str(tmp_path / "tampered.json"), *key)
    assert bad.returncode == 1 and bad.stderr.startswith("error: "), bad.stderr
    as_json = run(str(bin_ / "forget"), "certificate", "verify", str(tmp_path / "cert.json"), *key, "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["valid"] is True, as_json.stderr
    assert run(str(bin_ / "forget"), "certificate", "verify", str(tmp_path / "tampered.json"), *key).returncode == 1
    train = run(str(bin_ / "forget"), "train")
    assert train.returncode == 3 and "pip install 'forget[train]'" in train.stderr
