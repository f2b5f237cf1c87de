"""Renderings of a certificate's statement for people: HTML (jinja2) and PDF (weasyprint).

Pure functions of the statement: no clock, no environment, autoescaped, undefined names fail.
They show the signed claims and say how to verify them; they never replace verification.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from reports.errors import CertificateFormatError

_environment = Environment(
    loader=PackageLoader("reports", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _entries(statement: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for item in statement["predicate"]["log"]["entries"]:
        entry = json.loads(base64.b64decode(item["canonical"]))
        rows.append(
            {
                "index": item["index"],
                "kind": item["kind"],
                "time": entry["time"],
                "leaf_hash": item["leaf_hash"],
                "proof_length": len(item["inclusion_proof"]),
                "payload": json.dumps(entry["payload"], sort_keys=True, indent=1),
            }
        )
    return rows


def render_html(statement: dict[str, Any], supplement: str | None = None) -> str:
    """A self-contained, printable page of the signed claims.

    `supplement` is extra evidence the operator attaches (an evaluation report:
    `reports.evaluation.render_evaluation_section(report)`), shown after "How to verify" under
    "Supplementary evidence (not part of the signed statement)". A `markupsafe.Markup` value is
    inserted as HTML (its maker escapes what it holds); a plain `str` is escaped and shown as text.
    Without it the page is byte-identical to the one rendered before supplements existed.
    """
    try:
        predicate = statement["predicate"]
        checkpoint_lines = predicate["log"]["checkpoint"].split("\n")
        return _environment.get_template("certificate.html.j2").render(
            statement=statement,
            predicate=predicate,
            request=predicate["request"],
            erasure=predicate["erasure"],
            log=predicate["log"],
            tree_size=checkpoint_lines[1],
            root_hash=base64.b64decode(checkpoint_lines[2]).hex(),
            entries=_entries(statement),
            supplement=supplement,
        )
    except (KeyError, IndexError, ValueError, TypeError) as error:
        raise CertificateFormatError(f"the certificate cannot be rendered: missing or malformed {error}") from error


def render_pdf(statement: dict[str, Any], supplement: str | None = None) -> bytes:
    """The same page as a PDF; weasyprint is an optional extra (pip install 'forget[pdf]')."""
    try:
        from weasyprint import HTML
    except ImportError as error:
        raise CertificateFormatError("PDF rendering needs weasyprint: pip install 'forget[pdf]'") from error
    pdf: bytes = HTML(string=render_html(statement, supplement)).write_pdf()
    return pdf
