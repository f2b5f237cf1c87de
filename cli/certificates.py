"""Certificates: issue one, verify it offline, render it for people, and replay the erasure it certifies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import AsJson, emit_json, out, workspace, workspace_if_any
from cli.errors import reports_errors
from forget.choices import DeviceChoice

commands = typer.Typer()


certificate_app = typer.Typer(help="Erasure certificates: issue, verify offline, render.")
audit_app = typer.Typer(help="Re-derive an erasure's proof from the data (needs the workspace).")
commands.add_typer(certificate_app, name="certificate")
commands.add_typer(audit_app, name="audit")


PUBLIC_KEY_HELP = (
    "The operator's note verifier key (name+keyid+key): `forget keys public` output, or its last line."
    " A bare PEM key names no log and needs --origin."
)
ORIGIN_HELP = "The log's name (its checkpoints' origin), when --public-key is a bare PEM key."
MAX_BYTES_HELP = "Refuse a certificate larger than this, before reading it (default 16 MiB)."


@certificate_app.command("issue")
@reports_errors
def certificate_issue(
    request_id: Annotated[str, typer.Argument(help="A completed request.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the certificate (JSON).")],
) -> None:
    """(Re-)issue a completed request's certificate, signed and anchored in the latest tree head."""
    from forget.erasure.certify import build_certificate
    from forget.outputs import write_file

    write_file(output, build_certificate(workspace(signing=True), request_id))
    out.print(f"wrote {output}")


@certificate_app.command("verify")
@reports_errors
def certificate_verify(
    file: Annotated[Path, typer.Argument(help="The certificate (a DSSE envelope, JSON).")],
    public_key: Annotated[Path, typer.Option(help=PUBLIC_KEY_HELP)],
    checkpoint: Annotated[
        Path | None, typer.Option(help="A later head from `forget ledger head --consistency-from SIZE`.")
    ] = None,
    origin: Annotated[str | None, typer.Option(help=ORIGIN_HELP)] = None,
    max_bytes: Annotated[int | None, typer.Option(min=1, help=MAX_BYTES_HELP)] = None,
    witness_key: Annotated[
        list[Path] | None, typer.Option(help="A witness's verifier key (a file); its cosignature is required.")
    ] = None,
    witness_threshold: Annotated[
        int | None, typer.Option(help="How many of the --witness-key witnesses must cosign (default: all).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Verify a certificate offline: signature, every inclusion proof, the signed checkpoint, the claims."""
    from forget.audit.verify import summary, verify_certificate_file

    _check_threshold(witness_threshold, witness_key)
    result = verify_certificate_file(
        file,
        public_key,
        origin=origin,
        later_checkpoint=checkpoint,
        max_bytes=max_bytes,
        witness_keys=witness_key or (),
        witness_threshold=witness_threshold,
    )
    if as_json:
        emit_json({"valid": True, **result.summary()})
    else:
        out.print(summary(result))


def _check_threshold(threshold: int | None, witness_keys: list[Path] | None) -> None:
    if threshold is not None and not 1 <= threshold <= len(witness_keys or []):
        raise typer.BadParameter("must be between 1 and the number of --witness-key", param_hint="--witness-threshold")


@certificate_app.command("render")
@reports_errors
def certificate_render(
    file: Annotated[Path, typer.Argument(help="The certificate (JSON).")],
    public_key: Annotated[Path, typer.Option(help=PUBLIC_KEY_HELP + " Only a certificate that verifies is rendered.")],
    origin: Annotated[str | None, typer.Option(help=ORIGIN_HELP)] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML page here.")] = None,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Write a PDF here (needs the pdf extra).")] = None,
    evaluation: Annotated[
        Path | None, typer.Option(help="Attach `forget evaluate --json` output as supplementary evidence.")
    ] = None,
    witness_key: Annotated[
        list[Path] | None, typer.Option(help="A witness's verifier key (a file); its cosignature is required.")
    ] = None,
    witness_threshold: Annotated[
        int | None, typer.Option(help="How many of the --witness-key witnesses must cosign (default: all).")
    ] = None,
) -> None:
    """Render a certificate for people: HTML and PDF views of the same signed statement.

    Only a certificate that verifies is rendered. In its own workspace the page also names the
    organisation (forget.toml) and the DSAR ticket (the request's note); elsewhere it says they are
    not available offline.
    """
    from forget.audit.verify import certificate_page

    if html is None and pdf is None:
        raise typer.BadParameter("give --html OUT and/or --pdf OUT", param_hint="--html")
    _check_threshold(witness_threshold, witness_key)
    page = certificate_page(  # never render what does not verify
        file,
        public_key,
        origin=origin,
        workspace=workspace_if_any(),
        witness_keys=witness_key or (),
        witness_threshold=witness_threshold,
        evaluation=evaluation,
    )
    if html is not None:
        html.write_text(page.html())
        out.print(f"wrote {html}")
    if pdf is not None:
        pdf.write_bytes(page.pdf())
        out.print(f"wrote {pdf}")


@audit_app.command("replay")
@reports_errors
def audit_replay(
    request_id: Annotated[str, typer.Argument(help="A completed request of this workspace.")],
    device: Annotated[
        DeviceChoice, typer.Option(help="The kind of device the certificate's models were trained on.")
    ] = DeviceChoice.CPU,
    as_json: AsJson = False,
) -> None:
    """Retrain the request's shards from scratch on the retained records and compare with its certificate."""
    from forget.audit.replay import NotReproducedError, ReplayReport, replay

    def show(report: ReplayReport) -> None:
        if as_json:
            emit_json(report.to_dict())
        else:
            for line in report.lines():
                out.print(line)

    try:
        report = replay(workspace(), request_id, device)
    except NotReproducedError as failure:
        show(failure.report)  # what did not match, then the error line and exit 1
        raise
    show(report)
