"""Certificates checked from files, for `forget certificate verify` and `render`: no database, no torch.

An auditor holds files: the certificate, the operator's verifier key, perhaps a later head and
witness keys. Each function here reads them and verifies; none returns a verdict to check. A file
that cannot be read, or is no certificate at all, raises `CertificateFormatError`; a certificate
that does not check out raises `CertificateError` (`forget.errors.translated()` makes them bad
input and a failed verification). `forget-verify` (reports.verify_cli) is the same check for
installations without the application.

In a notebook, `verify_certificate_file(path, public_key=...)` takes the key as a file's path,
as its text (what `forget keys public` prints, or its last line alone: `KeySource`), or as a
`VerifierKey`. `reports.verify.verify_certificate(data, key)` stays strict: a `VerifierKey` only,
since a bare public key pins no log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from reports.errors import CertificateFormatError
from reports.verify import (
    DEFAULT_MAX_BYTES,
    VerifiedCertificate,
    VerifierKey,
    load_verifier_key,
    read_certificate,
    verify_certificate,
    verify_witness_cosignatures,
)
from reports.verify_summary import read_input, summary_line

if TYPE_CHECKING:
    from markupsafe import Markup

    from forget.workspace.core import Workspace
    from reports.render import CertificateView

__all__ = [
    "CertificatePage",
    "KeySource",
    "VerifiedCertificate",
    "as_verifier_key",
    "certificate_page",
    "read_head",
    "read_verifier_key",
    "read_witness_keys",
    "summary",
    "verify_certificate_file",
]


KeySource: TypeAlias = "str | os.PathLike[str] | bytes | VerifierKey"
"""The operator's verifier key: a `VerifierKey`; a key file's path (str or Path); or the key file's
contents as bytes, or as a str holding a PEM block or a note verifier key line."""

_KEY_LINE = re.compile(r"\s*[^\s+]+\+[0-9A-Fa-f]{8}\+[A-Za-z0-9+/=]+\s*")


def as_verifier_key(key: KeySource, origin: str | None = None) -> VerifierKey:
    """The `VerifierKey` that `key` gives (see `KeySource`), pinned to `origin` when one is named.

    A str is the key's text when it holds a PEM block or is a verifier key line
    (`origin+keyid+base64`), else a path. As with `forget certificate verify --public-key`, a bare
    PEM key names no log and needs `origin`. Raises `CertificateFormatError` (exit 2) for a file
    that cannot be read or holds no usable key, a bare PEM key without `origin`, or an `origin`
    that is not the key's.
    """
    if isinstance(key, VerifierKey):
        if origin is not None and origin != key.origin:
            raise CertificateFormatError(f"--origin {origin[:80]!r} is not the verifier key's name {key.origin!r}")
        return key
    if isinstance(key, bytes):
        return load_verifier_key(key, origin)
    if isinstance(key, str) and ("-----BEGIN" in key or _KEY_LINE.fullmatch(key)):
        return load_verifier_key(key.encode("utf-8"), origin)
    return read_verifier_key(key, origin)


def read_verifier_key(path: str | os.PathLike[str], origin: str | None = None) -> VerifierKey:
    """The operator's key from a file: a note verifier key, or a bare PEM key with the log's `origin`.

    Raises `CertificateFormatError` (exit 2) for a file that cannot be read or holds no usable key.
    """
    return load_verifier_key(read_input(Path(path), "public key"), origin)


def read_witness_keys(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Witness verifier keys, one a file (what `forget witness init` prints).

    Raises `CertificateFormatError` (exit 2) for a file that cannot be read.
    """
    return [read_input(Path(path), "witness key").decode("utf-8", "replace").strip() for path in paths]


def read_head(path: str | os.PathLike[str]) -> str:
    """A signed head saved earlier (`forget ledger head`), for `forget ledger verify --head`.

    Raises `CertificateFormatError` (exit 2) for a file that cannot be read.
    """
    return read_input(Path(path), "head").decode()


def verify_certificate_file(
    path: str | os.PathLike[str],
    public_key: KeySource,
    *,
    origin: str | None = None,
    later_checkpoint: str | os.PathLike[str] | None = None,
    max_bytes: int | None = None,
    witness_keys: Sequence[str | os.PathLike[str]] = (),
    witness_threshold: int | None = None,
) -> VerifiedCertificate:
    """Verify a certificate file offline against the operator's key: signature, proofs, checkpoint, claims.

    `path` is a str or a Path; `public_key` a key file's path, its text or a `VerifierKey`
    (`KeySource`, read by `as_verifier_key`). With `later_checkpoint` (`forget ledger head
    --consistency-from SIZE`), also that the log only grew; with `witness_keys` (files), that
    `witness_threshold` of them (default: all) cosigned its head. No file larger than `max_bytes`
    (default 16 MiB) is read whole. Returns the verified certificate; it never returns a verdict
    to check.

    Raises `reports.errors.CertificateError` (exit 1) when the certificate does not verify, and
    `CertificateFormatError` (exit 2) for a file that cannot be read or is no certificate or key
    at all (`forget.errors.translated()` maps them to `VerificationFailedError` and `InputError`).
    """
    key = as_verifier_key(public_key, origin)
    limit = max_bytes or DEFAULT_MAX_BYTES
    later = read_certificate(Path(later_checkpoint), limit, "later checkpoint") if later_checkpoint else None
    result = verify_certificate(read_certificate(Path(path), limit), key, later, max_bytes=limit)
    if witness_keys:
        keys = read_witness_keys(witness_keys)
        verify_witness_cosignatures(result.predicate["log"]["checkpoint"], keys, witness_threshold)
    return result


def summary(result: VerifiedCertificate) -> str:
    """The one line `certificate verify` prints for a valid certificate (as `forget-verify` does); raises nothing."""
    return summary_line(result)


@dataclass(frozen=True)
class CertificatePage:
    """A certificate that verified, ready to render for people; `supplement` is an evaluation's section."""

    view: CertificateView
    supplement: Markup | None = None

    def html(self) -> str:
        """The page as one HTML document (escaped, no external resources); raises nothing for a verified view."""
        from reports.render import render_html

        return render_html(self.view, self.supplement)

    def pdf(self) -> bytes:
        """The same page as PDF; raises `CertificateFormatError` without the pdf extra."""
        from reports.render import render_pdf

        return render_pdf(self.view, self.supplement)


def certificate_page(
    path: str | os.PathLike[str],
    public_key: KeySource,
    *,
    origin: str | None = None,
    workspace: Workspace | None = None,
    witness_keys: Sequence[str | os.PathLike[str]] = (),
    witness_threshold: int | None = None,
    evaluation: str | os.PathLike[str] | None = None,
) -> CertificatePage:
    """Verify the certificate file, then gather its page; one that does not verify raises, unrendered.

    `public_key` is a `KeySource`, as for `verify_certificate_file`. In its own `workspace` the page
    also names the organisation and the request's ticket; `evaluation` (`forget evaluate --json`
    output) is attached as supplementary evidence. Raises what `verify_certificate_file` raises,
    and `CertificateFormatError` (exit 2) for an evaluation file that is not one.
    """
    from forget.audit.certificate_view import certificate_view

    key = as_verifier_key(public_key, origin)
    witnesses = read_witness_keys(witness_keys)
    view = certificate_view(
        read_certificate(Path(path)),
        key,
        workspace=workspace,
        witness_keys=witnesses,
        witness_threshold=witness_threshold,
    )
    if evaluation is None:
        return CertificatePage(view)
    from reports.evaluation import read_evaluation, render_evaluation_section

    section = render_evaluation_section(read_evaluation(read_input(Path(evaluation), "evaluation")), view.statement)
    return CertificatePage(view, section)
