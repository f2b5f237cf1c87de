"""The `forget` console script's first step, in the standard library alone.

`pip install forget` installs the offline verifier only; the training stack comes with
`pip install 'forget[train]'`. So before it imports typer (and, later, torch), the script checks
that the stack is there. Where it is not, `forget certificate verify ...` still works (it is
`forget-verify`), and any other command says, in one line, what to install, exiting 3 (the
installation cannot do this) rather than 70 with an ImportError's traceback.
"""

from __future__ import annotations

import importlib.util
import re
import sys

TRAINING_STACK = ("typer", "rich", "torch", "numpy", "sqlalchemy", "alembic", "jinja2", "pyarrow", "tomli_w")
"""Import names of the `train` extra's distributions (pyproject.toml); a test keeps the two in step."""

NOT_INSTALLED = 3
"""cli.errors.ExitCode.WORKSPACE: the workspace, or here the installation, cannot do this."""

_VERIFY = ["certificate", "verify"]


def missing_training_modules() -> list[str]:
    """The training stack's modules that are not installed (found without importing them)."""
    return [name for name in TRAINING_STACK if importlib.util.find_spec(name) is None]


def _usage(missing: list[str]) -> str:
    return (
        "forget: this installation holds the offline certificate verifier only"
        f" (not installed: {', '.join(missing)}).\n"
        "  forget certificate verify CERTIFICATE --public-key KEY [--json ...]   (the same as forget-verify)\n"
        "Every other command needs the training stack: pip install 'forget[train]'\n"
    )


def run() -> None:
    """The `forget` console script."""
    args = sys.argv[1:]
    missing = missing_training_modules()
    if not missing:
        from cli.main import console as run_forget  # exits fast once everything is durable

        run_forget()
        return
    if args[:2] == _VERIFY:
        from reports.verify_cli import main

        sys.exit(main(args[2:], prog="forget certificate verify"))
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(_usage(missing))
        sys.exit(0)
    # Only a command's name is echoed: an argument may be a subject id, which never reaches output.
    command = f"`forget {args[0]}`" if re.fullmatch(r"[a-z][a-z-]{0,30}", args[0]) else "this command"
    sys.stderr.write(
        f"error: {command} needs the training stack, which is not installed (missing:"
        f" {', '.join(missing)}): pip install 'forget[train]'. To verify a certificate: forget-verify --help\n"
    )
    sys.exit(NOT_INSTALLED)
