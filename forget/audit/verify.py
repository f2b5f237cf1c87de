"""Certificates checked from files, for `forget certificate verify` and `render`: no database, no torch.

An auditor holds files: the certificate, the operator's verifier key, perhaps a later head and
witness keys. Each function here reads them and verifies; none returns a verdict to check. A file
that cannot be read, or is no certificate at all, raises `CertificateFormatError`; a certificate
that does not check out raises `CertificateError` (`forget.errors.translated()` makes them bad
input and a failed verification). `forget-verify` (reports.verify_cli) is the same check for
installations without the application.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
    "VerifiedCertificate",
    "certificate_page",
    "read_head",
    "read_verifier_key",
    "read_witness_keys",
    "summary",
    "verify_certificate_file",
]


def read_verifier_key(path: Path, origin: str | None = None) -> VerifierKey:
    """The operator's key from a file: a note verifier key, or a bare PEM key with the log's `origin`."""
    return load_verifier_key(read_input(path, "public key"), origin)


def read_witness_keys(paths: Sequence[Path]) -> list[str]:
    """Witness verifier keys, one a file (what `forget witness init` prints)."""
    return [read_input(path, "witness key").decode("utf-8", "replace").strip() for path in paths]


def read_head(path: Path) -> str:
    """A signed head saved earlier (`forget ledger head`), for `forget ledger verify --head`."""
    return read_input(path, "head").decode()


def verify_certificate_file(
    path: Path,
    public_key: Path,
    *,
    origin: str | None = None,
    later_checkpoint: Path | None = None,
    max_bytes: int | None = None,
    witness_keys: Sequence[Path] = (),
    witness_threshold: int | None = None,
) -> VerifiedCertificate:
    """Verify a certificate file offline against the key file: signature, proofs, checkpoint, claims.

    With `later_checkpoint` (`forget ledger head --consistency-from SIZE`), also that the log only
    grew; with `witness_keys`, that `witness_threshold` of them (default: all) cosigned its head.
    No file larger than `max_bytes` (default 16 MiB) is read whole.
    """
    key = read_verifier_key(public_key, origin)
    limit = max_bytes or DEFAULT_MAX_BYTES
    later = read_certificate(later_checkpoint, limit, "later checkpoint") if later_checkpoint else None
    result = verify_certificate(read_certificate(path, limit), key, later, max_bytes=limit)
    if witness_keys:
        keys = read_witness_keys(witness_keys)
        verify_witness_cosignatures(result.predicate["log"]["checkpoint"], keys, witness_threshold)
    return result


def summary(result: VerifiedCertificate) -> str:
    """The one line `certificate verify` prints for a valid certificate (as `forget-verify` does)."""
    return summary_line(result)


@dataclass(frozen=True)
class CertificatePage:
    """A certificate that verified, ready to render for people; `supplement` is an evaluation's section."""

    view: CertificateView
    supplement: Markup | None = None

    def html(self) -> str:
        from reports.render import render_html

        return render_html(self.view, self.supplement)

    def pdf(self) -> bytes:
        """The same page as PDF; raises `CertificateFormatError` without the pdf extra."""
        from reports.render import render_pdf

        return render_pdf(self.view, self.supplement)


def certificate_page(
    path: Path,
    public_key: Path,
    *,
    origin: str | None = None,
    workspace: Workspace | None = None,
    witness_keys: Sequence[Path] = (),
    witness_threshold: int | None = None,
    evaluation: Path | None = None,
) -> CertificatePage:
    """Verify the certificate file, then gather its page; one that does not verify raises, unrendered.

    In its own `workspace` the page also names the organisation and the request's ticket;
    `evaluation` (`forget evaluate --json` output) is attached as supplementary evidence.
    """
    from forget.audit.certificate_view import certificate_view

    key = read_verifier_key(public_key, origin)
    witnesses = read_witness_keys(witness_keys)
    view = certificate_view(
        read_certificate(path),
        key,
        workspace=workspace,
        witness_keys=witnesses,
        witness_threshold=witness_threshold,
    )
    if evaluation is None:
        return CertificatePage(view)
    from reports.evaluation import read_evaluation, render_evaluation_section

    section = render_evaluation_section(read_evaluation(read_input(evaluation, "evaluation")), view.statement)
    return CertificatePage(view, section)
