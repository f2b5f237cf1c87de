"""`forget-verify`: the offline certificate verifier, for auditors who install no training stack.

`pip install forget` installs this command and what it needs (`cryptography`, `rfc8785`, the
standard library); `pip install 'forget[train]'` adds the `forget` command's training stack. It
takes what `forget certificate verify` takes, prints what it prints, and exits the same way:

    0  the certificate verifies;
    1  it is a certificate (or a later checkpoint) and it does not verify;
    2  bad usage, or an input that is not a certificate or a key at all;
    70 a bug: an unexpected exception, shown with its traceback.

Parsing is argparse, output is `print`: no typer, no rich, no database, no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ledger.errors import LedgerError, VerificationError
from reports.verify import DEFAULT_MAX_BYTES, load_verifier_key, read_certificate, verify_certificate
from reports.verify_summary import read_input, summary_line

__all__ = ["main", "parser", "run"]

OK, VERIFICATION_FAILED, BAD_INPUT, INTERNAL = 0, 1, 2, 70


def parser(prog: str = "forget-verify") -> argparse.ArgumentParser:
    """The options of `forget certificate verify`, under the same names."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Verify an erasure certificate offline: signature, every inclusion proof, the signed"
        " checkpoint, the claims. Exit 0 valid, 1 does not verify, 2 bad input.",
    )
    p.add_argument("certificate", type=Path, metavar="CERTIFICATE", help="The certificate (a DSSE envelope, JSON).")
    p.add_argument(
        "--public-key",
        type=Path,
        required=True,
        metavar="FILE",
        help="The operator's note verifier key (name+keyid+key): `forget keys public` output, or its last line."
        " A bare PEM key names no log and needs --origin.",
    )
    p.add_argument("--origin", help="The log's name (its checkpoints' origin), when --public-key is a bare PEM key.")
    p.add_argument(
        "--checkpoint",
        "--later-checkpoint",
        dest="checkpoint",
        type=Path,
        metavar="FILE",
        help="A later head from `forget ledger head --consistency-from SIZE`: proves the log only grew since.",
    )
    p.add_argument(
        "--max-bytes",
        type=_positive,
        metavar="N",
        help="Refuse a certificate larger than this, before reading it (default 16 MiB).",
    )
    p.add_argument(
        "--witness-key",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="A witness's verifier key (a file); its cosignature is required. Repeatable.",
    )
    p.add_argument(
        "--witness-threshold",
        type=_positive,
        metavar="N",
        help="How many of the --witness-key witnesses must cosign (default: all).",
    )
    p.add_argument("--json", action="store_true", dest="as_json", help="Machine-readable output.")
    p.add_argument("--verbose", action="store_true", help="Show tracebacks for errors.")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def run(args: argparse.Namespace) -> None:
    """Verify as `args` say and print the verdict; raises the verifier's errors."""
    key = load_verifier_key(read_input(args.public_key, "public key"), args.origin)
    limit = args.max_bytes or DEFAULT_MAX_BYTES
    later = read_certificate(args.checkpoint, limit, "later checkpoint") if args.checkpoint else None
    witnesses = [read_input(path, "witness key").decode("utf-8", "replace").strip() for path in args.witness_key]
    result = verify_certificate(
        read_certificate(args.certificate, limit),
        key,
        later,
        max_bytes=limit,
        witness_keys=witnesses,
        witness_threshold=args.witness_threshold,
    )
    if args.as_json:
        sys.stdout.write(json.dumps({"valid": True, **result.summary()}, indent=2, sort_keys=True) + "\n")
    else:
        print(summary_line(result))


def main(argv: Sequence[str] | None = None, prog: str = "forget-verify") -> int:
    """The console script; returns the exit status (argparse exits 2 itself on bad usage)."""
    p = parser(prog)
    args = p.parse_args(argv)
    if args.witness_threshold is not None and args.witness_threshold > len(args.witness_key):
        p.error("--witness-threshold must be between 1 and the number of --witness-key")
    try:
        run(args)
    except LedgerError as error:  # the root of every verifier error: a one-line message
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return VERIFICATION_FAILED if isinstance(error, VerificationError) else BAD_INPUT
    except Exception:
        import traceback

        traceback.print_exc()
        print(
            "error: internal error in forget-verify (a bug): please report it with the traceback above", file=sys.stderr
        )
        return INTERNAL
    return OK


def console() -> None:
    """The `forget-verify` entry point."""
    sys.exit(main())


if __name__ == "__main__":
    console()
