"""Witnesses for a workspace's heads, and the witness server's application side.

A workspace lists witnesses in forget.toml (`[[ledger.witnesses]]`: url and verifier key). After a
head is signed and anchored, each witness is asked to cosign every anchored head newer than the
last one it cosigned, in order, with a consistency proof from that one (c2sp.org/tlog-witness).
A cosignature is kept in the anchor, never in the database (whose heads table is append-only), and
`cosigned_note` puts the head's note and its cosignatures together for a certificate.

A witness that cannot be reached never blocks signing: its heads stay uncosigned (`uncosigned`),
and the next signing command or `forget ledger cosign` collects them. A witness that refuses a
head as inconsistent, or has cosigned more of this log than this workspace signed, is evidence of
a fork or a rollback: signing logs it, `forget ledger cosign` fails with exit 1.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forget.errors import InputError
from forget.workspace.config import WitnessSettings
from forget.workspace.core import Workspace
from ledger import store
from ledger.anchor import AnchorContents, AnchoredHead, cosignature_record
from ledger.cosignature import WitnessKey, cosignatures, parse_witness_key
from ledger.errors import LedgerError, VerificationError
from ledger.note import NoteError
from ledger.witness import (
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    Witness,
    WitnessUnavailable,
    make_server,
    submit_checkpoint,
)

logger = logging.getLogger("forget.audit.witness")


@dataclass(frozen=True)
class CosignOutcome:
    """What one witness did with this workspace's heads in one round."""

    witness: str
    cosigned: tuple[int, ...] = ()
    """Head sizes it cosigned in this round."""
    uncosigned: tuple[int, ...] = ()
    """Anchored head sizes that still lack its cosignature."""
    problem: str | None = None
    refused: bool = False
    """It refused a head as inconsistent, or is ahead of this log: evidence of a fork or a rollback."""

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready values (`forget ledger cosign --json`)."""
        return {
            "witness": self.witness,
            "cosigned": list(self.cosigned),
            "uncosigned": list(self.uncosigned),
            "problem": self.problem,
            "refused": self.refused,
        }


def _witness_key(settings: WitnessSettings) -> WitnessKey:
    try:
        return parse_witness_key(settings.key)
    except NoteError as error:
        raise InputError(f"forget.toml: the witness at {settings.url} has a bad key: {error}") from None


def _cosigned_by(key: WitnessKey, head: AnchoredHead, lines: Sequence[str]) -> str | None:
    """The first of `lines` that is a valid cosignature of `head` by `key`."""
    prefix = f"\u2014 {key.name} "
    for line in lines:
        if not line.startswith(prefix):
            continue
        try:
            if cosignatures(head.note + line + "\n", [key]):
                return line
        except VerificationError:
            logger.warning("the anchor holds a bad cosignature by %s on the head of size %d", key.name, head.size)
    return None


def cosigned_note(workspace: Workspace, size: int) -> str:
    """The anchored head of `size` as a signed note with the cosignatures of the configured witnesses.

    The note plus cosignature lines is still a valid signed note: verifiers that do not know a
    witness ignore its line. Raises `LedgerError` when no head of that size was anchored.
    """
    ledger = workspace.ledger
    contents = ledger.read_anchor()
    head = contents.head(size)
    if head is None:
        raise LedgerError(f"no head of size {size} is in the anchor {ledger.anchor.location if ledger.anchor else ''}")
    checkpoint = ledger.checkpoint(head.note)
    if (checkpoint.size, checkpoint.root_hash) != (head.size, head.root_hash):
        raise VerificationError(f"the anchored head of size {size} does not match its signed note")
    lines = contents.cosignatures.get(size, ())
    found = [_cosigned_by(_witness_key(w), head, lines) for w in workspace.config.witnesses]
    return head.note + "".join(line + "\n" for line in found if line is not None)


def uncosigned(workspace: Workspace) -> dict[str, list[int]]:
    """Per configured witness, the anchored head sizes it has not cosigned."""
    contents = workspace.ledger.read_anchor()
    result = {}
    for settings in workspace.config.witnesses:
        key = _witness_key(settings)
        result[key.name] = [h.size for h in contents.heads if _missing(key, h, contents)]
    return result


def _missing(key: WitnessKey, head: AnchoredHead, contents: AnchorContents) -> bool:
    return _cosigned_by(key, head, contents.cosignatures.get(head.size, ())) is None


@dataclass
class _Round:
    settings: WitnessSettings
    key: WitnessKey
    known: int
    """The size this witness last cosigned, as far as this workspace knows."""
    cosigned: list[int] = field(default_factory=list)


def collect_cosignatures(workspace: Workspace) -> list[CosignOutcome]:
    """Ask every configured witness to cosign the anchored heads it has not; keep what it returns.

    Never raises for a witness's answer or absence; each outcome says what happened (and a
    warning is logged), so that signing goes on without a witness that is down.
    """
    if not workspace.config.witnesses:
        return []
    ledger = workspace.ledger
    anchor = ledger.anchor
    if anchor is None:
        raise LedgerError("witnesses need an anchor ([ledger] anchor in forget.toml)")
    contents = ledger.read_anchor()
    outcomes = []
    for settings in workspace.config.witnesses:
        key = _witness_key(settings)
        done = [h.size for h in contents.heads if not _missing(key, h, contents)]
        round_ = _Round(settings, key, max(done, default=0))
        problem, refused = _cosign_heads(workspace, round_, contents)
        left = [h.size for h in contents.heads if h.size not in round_.cosigned and _missing(key, h, contents)]
        if problem is not None:
            logger.warning(
                "witness %s: %s; heads %s are not cosigned by it (run `forget ledger cosign` later)",
                key.name,
                problem,
                ", ".join(map(str, left)) or "none",
            )
        outcomes.append(CosignOutcome(key.name, tuple(round_.cosigned), tuple(left), problem, refused))
    return outcomes


def collect_pending(workspace: Workspace) -> list[CosignOutcome]:
    """`forget ledger cosign`: first copy to the anchor any signed head a crash left only in the
    database (after checking it), then collect the cosignatures that are missing."""
    ledger = workspace.ledger
    if ledger.anchor is not None:
        with workspace.datastore.snapshot() as tx:
            ledger.anchor_pending(tx)
    return collect_cosignatures(workspace)


def _proof(workspace: Workspace, old_size: int, size: int) -> list[bytes]:
    """A consistency proof read in a snapshot of its own: no transaction (on SQLite, no write lock)
    is held while a witness is asked; the hashes of an append-only log's complete subtrees never change."""
    if not old_size:
        return []
    with workspace.datastore.snapshot() as tx:
        return store.consistency_proof(tx, old_size, size)


def _cosign_heads(workspace: Workspace, round_: _Round, contents: AnchorContents) -> tuple[str | None, bool]:
    """Submit the heads after `round_.known` in order; returns (problem, refused)."""
    anchor = workspace.ledger.anchor
    assert anchor is not None
    latest = contents.last.size if contents.last else 0
    for head in contents.heads:
        if head.size <= round_.known:
            continue
        retried = False
        while True:
            proof = _proof(workspace, round_.known, head.size)
            request = AddCheckpoint(round_.known, tuple(proof), head.note)
            try:
                answer = submit_checkpoint(round_.settings.url, request, workspace.config.witness_timeout)
            except WitnessUnavailable as error:
                return str(error), False
            if answer.status == 409 and answer.content_type == SIZE_CONTENT_TYPE and not retried:
                theirs = _size_of(answer.text)
                if theirs is None:
                    return "answered 409 without a size", False
                if theirs > latest:
                    return (
                        f"it has cosigned size {theirs} of this log, more than the {latest} this workspace anchored:"
                        " the log was rolled back or forked",
                        True,
                    )
                if theirs > head.size:  # it moved past this head (cosigned for another client): skip it
                    round_.known = theirs
                    break
                round_.known, retried = theirs, True
                continue
            if answer.status == 422:
                return (
                    f"it refused the head of size {head.size} as inconsistent with what it cosigned before:"
                    " this log was rolled back or forked",
                    True,
                )
            if answer.status != 200:
                return f"answered {answer.status} for the head of size {head.size}: {answer.text.strip()[:200]}", False
            lines = [line for line in answer.text.splitlines() if line]
            kept = _cosigned_by(round_.key, head, lines)
            if kept is None:
                return f"answered without a valid cosignature by {round_.key.name} for size {head.size}", False
            anchor.append([cosignature_record(head.size, kept)])
            round_.cosigned.append(head.size)
            round_.known = head.size
            break
    return None, False


def _size_of(text: str) -> int | None:
    value = text.strip()
    return int(value) if value.isdigit() and len(value) <= 20 else None


# --- the witness server's application side ----------------------------------------------------


def init_witness(folder: str | os.PathLike[str], name: str) -> str:
    """Create a witness in `folder` (str or Path: its key, config and state); returns its verifier key.

    Raises `InputError` (exit 2) for a name that is no valid key name, and `WitnessError` (a
    `LedgerError`) for a folder that already holds a witness.
    """
    try:
        return Witness.create(Path(folder), name).vkey
    except NoteError as error:
        raise InputError(str(error)) from None


def add_witnessed_log(folder: str | os.PathLike[str], vkey: str, origin: str | None = None) -> str:
    """Let the witness in `folder` cosign the log whose note verifier key is `vkey`; returns its origin.

    Raises `InputError` (exit 2) for a `vkey` that is not a log's note verifier key, and
    `WitnessError` (a `LedgerError`) for a folder without a witness.
    """
    try:
        return Witness(Path(folder)).add_log(vkey, origin)
    except NoteError as error:
        raise InputError(f"not a log's note verifier key: {error}") from None


def serve_witness(
    folder: str | os.PathLike[str],
    host: str,
    port: int,
    allow_remote: bool,
    ready: Callable[[str, str], None] | None = None,
) -> None:
    """Run the witness in `folder` over HTTP until interrupted; `ready(url, vkey)` once it listens.

    Raises `ledger.witness.WitnessError` (a `LedgerError`) for a folder without a witness, a
    non-loopback `host` without `allow_remote`, or a port that cannot be bound.
    """
    witness = Witness(Path(folder))
    server = make_server(witness, host, port, allow_remote)
    bound_host, bound_port = server.server_address[:2]
    if ready is not None:
        ready(f"http://{bound_host!s}:{bound_port}", witness.vkey)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
