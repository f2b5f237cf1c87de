"""Tokens and scopes of `forget serve`: pure logic, no server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forget.errors import InputError
from forget.service.tokens import (
    Scope,
    TokenRecord,
    check_name,
    new_token,
    parse_scopes,
    presented_token,
    token_hash,
)


def record(*scopes: Scope, revoked: str | None = None) -> TokenRecord:
    return TokenRecord("tok_1", "portal", frozenset(scopes), "0" * 64, "2026-11-29T00:00:00Z", revoked)


def test_a_new_token_is_recognised_in_a_bearer_header_and_hashes_to_its_record() -> None:
    token = new_token()
    assert presented_token(f"Bearer {token}") == token
    assert presented_token(f"bearer  {token} ") == token
    assert token_hash(token) != token_hash(new_token())
    assert len(token_hash(token)) == 64


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer fgt_short", "Bearer abc_" + "a" * 43, "Token x"]
)
def test_anything_but_a_bearer_token_of_the_right_shape_is_no_token(header: str | None) -> None:
    assert presented_token(header) is None


def test_a_scope_allows_itself_admin_allows_all_and_a_revoked_token_nothing() -> None:
    assert record(Scope.PREDICT).allows(Scope.PREDICT)
    assert not record(Scope.PREDICT).allows(Scope.REQUESTS_WRITE)
    assert all(record(Scope.ADMIN).allows(scope) for scope in Scope)
    assert not record(Scope.ADMIN, revoked="2026-11-29T01:00:00Z").allows(Scope.PREDICT)


def test_scopes_parse_repeated_and_comma_separated_and_refuse_unknown_ones() -> None:
    assert parse_scopes(["requests:write,requests:read", "predict"]) == {
        Scope.REQUESTS_WRITE,
        Scope.REQUESTS_READ,
        Scope.PREDICT,
    }
    with pytest.raises(InputError, match="unknown scope 'requests:delete'"):
        parse_scopes(["requests:delete"])
    with pytest.raises(InputError, match="at least one --scope"):
        parse_scopes([])


def test_token_names_are_short_plain_labels() -> None:
    assert check_name("dpo-portal.prod") == "dpo-portal.prod"
    for bad in ["", "-x", "a b", "x" * 65, "name\n"]:
        with pytest.raises(InputError, match="a token name"):
            check_name(bad)


@given(st.text())
def test_no_text_but_a_well_formed_token_is_accepted(text: str) -> None:
    token = presented_token(f"Bearer {text}")
    assert token is None or (token.startswith("fgt_") and len(token) == 47)
