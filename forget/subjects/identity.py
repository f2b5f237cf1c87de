"""The one canonical form of a subject id: what ingest, requests and the re-ingest guard all hash.

A "no data held" answer is only as true as this function. A CSV cell `"alice "`, `José` typed in
decomposed Unicode, a Parquet id of `1.0` and an e-mail typed with capitals must all meet the id a
privacy team types, or the request finds nothing and a valid certificate says so. The form is:

1. Unicode NFC;
2. surrounding whitespace trimmed;
3. control characters (and line or paragraph separators) refused, never silently removed;
4. the case rule chosen at `forget init`: `insensitive` (the default: Unicode case folding),
   or `sensitive`, optionally with e-mail addresses' domain, or both parts, lower-cased;
5. numbers from typed columns as decimal integers (`1`, never `1.0`); other numbers refused.

Pure: imports only the standard library. The form is recorded in the ledger at init and stated
in every certificate (`IdentityForm.describe()`).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NewType

CanonicalId = NewType("CanonicalId", str)
"""A subject or record id in its canonical form: the only thing that is ever hashed."""

MAX_ID_LENGTH = 1024
"""Characters; an id longer than this is a wrong column, not a person."""

_REFUSED_CATEGORIES = {"Cc", "Zl", "Zp"}
"""Control characters, and the Unicode line and paragraph separators."""


class IdError(ValueError):
    """An id that has no canonical form; the message names the problem, never the id."""


class CaseRule(StrEnum):
    """Whether subject ids differing only in case name one person (`[identity] case`, fixed at init)."""

    INSENSITIVE = "insensitive"
    """`Alice` and `alice` are one person: erring towards erasing more is the safe side."""
    SENSITIVE = "sensitive"


class EmailRule(StrEnum):
    """For `case = "sensitive"`: how ids that are e-mail addresses are compared."""

    NONE = "none"
    DOMAIN = "domain"
    """The domain is lower-cased (RFC 5321: domains are case-insensitive, local parts may not be)."""
    BOTH = "both"


@dataclass(frozen=True)
class IdentityForm:
    """The canonical form of subject ids (`[identity]` in forget.toml), fixed at init since it keys every record.

    NFC and trimmed always; case folded unless `case` is sensitive, then e-mail parts lower-cased as
    `email` says. Raises `ValueError` for an `email` rule with the case-insensitive form (it folds both).
    """

    case: CaseRule = CaseRule.INSENSITIVE
    email: EmailRule = EmailRule.NONE

    def __post_init__(self) -> None:
        if self.case is CaseRule.INSENSITIVE and self.email is not EmailRule.NONE:
            raise ValueError('identity.email applies only with case = "sensitive" (insensitive already folds both)')

    def to_dict(self) -> dict[str, str]:
        """The form as the ledger and the pins record it (with the fixed NFC and trimming steps named)."""
        return {"normalization": "NFC", "whitespace": "trimmed", "case": self.case.value, "email": self.email.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdentityForm:
        """The form `to_dict` wrote; raises `ValueError` for an unknown case or e-mail rule."""
        return cls(CaseRule(data.get("case", CaseRule.INSENSITIVE.value)), EmailRule(data.get("email", "none")))

    def describe(self) -> str:
        """For people: the sentence a certificate states ("searched for the identifier in form ...")."""
        case = {
            CaseRule.INSENSITIVE: "case-insensitive (Unicode case folding)",
            CaseRule.SENSITIVE: "case-sensitive",
        }[self.case]
        email = {
            EmailRule.NONE: "",
            EmailRule.DOMAIN: ", e-mail domains lower-cased",
            EmailRule.BOTH: ", e-mail addresses lower-cased",
        }[self.email]
        return f"NFC, trimmed, {case}{email}"


def _from_number(value: int | float) -> str:
    if isinstance(value, bool):
        raise IdError("a boolean is not an id")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value) or not value.is_integer():
        raise IdError("a non-integral number is not an id")
    return str(int(value))


def canonical_text(value: str | int | float, form: IdentityForm, *, fold_case: bool = True) -> CanonicalId:
    """The canonical form of one id; raises `IdError` (whose message never holds the id).

    `fold_case=False` keeps case whatever the rule says: for record ids, which name rows, not people.
    """
    text = _from_number(value) if isinstance(value, int | float) else value
    if not isinstance(text, str):
        raise IdError(f"an id must be text or an integer, not {type(text).__name__}")
    # ASCII (most ids) is already NFC, and its only refused characters are the C0 controls and
    # DEL, exactly what str.isprintable() rejects: the same answer as the general path, in C.
    ascii_ = text.isascii()
    text = text.strip() if ascii_ else unicodedata.normalize("NFC", text).strip()
    if not text:
        raise IdError("the id is empty")
    if len(text) > MAX_ID_LENGTH:
        raise IdError(f"the id is longer than {MAX_ID_LENGTH} characters")
    refused = not text.isprintable() if ascii_ else any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in text)
    if refused:
        raise IdError("the id holds a control character, tab or line break")
    if fold_case:
        # For ASCII, casefold() is lower() and the result stays NFC.
        text = text.lower() if ascii_ and form.case is CaseRule.INSENSITIVE else _apply_case(text, form)
    return CanonicalId(text)


def _apply_case(text: str, form: IdentityForm) -> str:
    if form.case is CaseRule.INSENSITIVE:
        # Folding can leave a string that is no longer NFC (e.g. U+0130): normalise again.
        return unicodedata.normalize("NFC", text.casefold())
    if form.email is EmailRule.NONE or text.count("@") != 1:
        return text
    local, domain = text.split("@")
    if form.email is EmailRule.BOTH:
        local = unicodedata.normalize("NFC", local.casefold())
    return f"{local}@{unicodedata.normalize('NFC', domain.casefold())}"
