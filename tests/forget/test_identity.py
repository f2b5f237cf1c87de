"""The canonical form of a subject id (forget.subjects.identity): one function, laws that hold for any text."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forget.subjects.identity import MAX_ID_LENGTH, CaseRule, EmailRule, IdentityForm, IdError, canonical_text
from forget.subjects.pseudonym import InvalidIdError, Pseudonymiser

INSENSITIVE = IdentityForm()
SENSITIVE = IdentityForm(CaseRule.SENSITIVE)


@pytest.mark.parametrize(
    ("raw", "form", "expected"),
    [
        ("alice ", INSENSITIVE, "alice"),
        ("\u00a0 alice\t", INSENSITIVE, "alice"),
        ("Jose\u0301", SENSITIVE, "Jos\u00e9"),  # NFD typed, NFC stored
        ("Applicant0999@Example.org", INSENSITIVE, "applicant0999@example.org"),
        ("Applicant0999@Example.org", SENSITIVE, "Applicant0999@Example.org"),
        ("Applicant0999@Example.org", IdentityForm(CaseRule.SENSITIVE, EmailRule.DOMAIN), "Applicant0999@example.org"),
        ("Applicant0999@Example.org", IdentityForm(CaseRule.SENSITIVE, EmailRule.BOTH), "applicant0999@example.org"),
        ("Stra\u00dfe", INSENSITIVE, "strasse"),  # full case folding, not lower()
        (1, INSENSITIVE, "1"),
        (1.0, INSENSITIVE, "1"),
        (-42, INSENSITIVE, "-42"),
        (12345678901234.0, INSENSITIVE, "12345678901234"),
    ],
)
def test_the_canonical_form(raw: str | int | float, form: IdentityForm, expected: str) -> None:
    assert canonical_text(raw, form) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("al\tice", "control character"),
        ("alice\nbob", "control character"),
        ("a\u2028b", "control character"),
        ("a\x00b", "control character"),
        (1.5, "non-integral"),
        (float("nan"), "non-integral"),
        (True, "boolean"),
        ("x" * 2000, "longer than"),
    ],
)
def test_ids_without_a_canonical_form_are_refused(raw: str | int | float, message: str) -> None:
    with pytest.raises(IdError, match=message):
        canonical_text(raw, INSENSITIVE)


def test_refusal_messages_never_hold_the_id() -> None:
    with pytest.raises(InvalidIdError) as caught:
        Pseudonymiser(bytes(32)).subject("victim\t@example.org")
    assert "victim" not in str(caught.value)


def test_email_rules_need_a_case_sensitive_form() -> None:
    with pytest.raises(ValueError, match="applies only with"):
        IdentityForm(CaseRule.INSENSITIVE, EmailRule.DOMAIN)


FORMS = st.sampled_from(
    [
        INSENSITIVE,
        SENSITIVE,
        IdentityForm(CaseRule.SENSITIVE, EmailRule.DOMAIN),
        IdentityForm(CaseRule.SENSITIVE, EmailRule.BOTH),
    ]
)
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs")), min_size=1, max_size=40).filter(
    lambda t: t.strip() != ""
)


@given(TEXT, FORMS)
def test_the_form_is_idempotent(text: str, form: IdentityForm) -> None:
    once = canonical_text(text, form)
    assert canonical_text(once, form) == once
    assert unicodedata.is_normalized("NFC", once)


@given(TEXT, FORMS, st.sampled_from(["", " ", "  ", "\u00a0", "\u3000"]), st.sampled_from(["NFC", "NFD"]))
def test_padding_and_normalisation_never_change_the_key(text: str, form: IdentityForm, pad: str, nf: str) -> None:
    pseudonymiser = Pseudonymiser(bytes(range(32)), form)
    assert pseudonymiser.subject(pad + unicodedata.normalize(nf, text) + pad) == pseudonymiser.subject(text)


@given(TEXT)
def test_an_insensitive_form_ignores_case(text: str) -> None:
    # Unicode folding is not upper() then lower() (Turkish dotless i): the law is about casefold().
    assert canonical_text(text.casefold(), INSENSITIVE) == canonical_text(text, INSENSITIVE)


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40))
def test_ascii_ids_match_in_any_case(text: str) -> None:
    assert canonical_text(text.upper(), INSENSITIVE) == canonical_text(text.lower(), INSENSITIVE)


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_an_integral_float_is_its_integer(value: int) -> None:
    assert canonical_text(float(value), INSENSITIVE) == canonical_text(value, INSENSITIVE) == str(value)


def _reference_canonical(value: str, form: IdentityForm) -> str:
    """The general path alone (NFC, strip, category check, case rule), without the ASCII fast path."""
    import unicodedata

    from forget.subjects.identity import _REFUSED_CATEGORIES, _apply_case

    text = unicodedata.normalize("NFC", value).strip()
    if not text or len(text) > MAX_ID_LENGTH or any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in text):
        raise IdError("refused")
    return _apply_case(text, form)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40), st.sampled_from(list(CaseRule)))
def test_the_ascii_fast_path_agrees_with_the_general_path(value: str, case: CaseRule) -> None:
    form = IdentityForm(case=case)
    try:
        expected: str | None = _reference_canonical(value, form)
    except IdError:
        expected = None
    try:
        found: str | None = canonical_text(value, form)
    except IdError:
        found = None
    assert found == expected
