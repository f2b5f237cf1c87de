"""Bearer tokens with scopes: what a caller of `forget serve` may do.

A token is shown once, at creation, and only its sha256 is stored: a leaked database does not
leak a usable token. Tokens are 256 random bits, so a plain hash (no salt, no stretching) is
enough: there is no dictionary to attack, and a lookup by hash needs no per-row comparison.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from forget.errors import InputError

TOKEN_PREFIX = "fgt_"
_TOKEN_SHAPE = re.compile(r"^fgt_[A-Za-z0-9_-]{43}$")
_NAME_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Scope(StrEnum):
    REQUESTS_WRITE = "requests:write"
    REQUESTS_READ = "requests:read"
    PREDICT = "predict"
    CERTIFICATES_READ = "certificates:read"
    ADMIN = "admin"
    """Everything above, and the DPO page's actions."""


@dataclass(frozen=True)
class TokenRecord:
    """A stored token: never the token itself, only its hash."""

    token_id: str
    name: str
    scopes: frozenset[Scope]
    token_hash: str
    created_at: str
    revoked_at: str | None = None

    def allows(self, scope: Scope) -> bool:
        """Whether the token is active and holds `scope` (or `admin`); raises nothing."""
        return self.revoked_at is None and (scope in self.scopes or Scope.ADMIN in self.scopes)


def parse_scopes(values: list[str] | tuple[str, ...]) -> frozenset[Scope]:
    """`--scope` values (repeatable, or comma-separated); raises InputError naming an unknown one."""
    scopes: set[Scope] = set()
    for value in values:
        for part in value.split(","):
            part = part.strip()
            try:
                scopes.add(Scope(part))
            except ValueError:
                known = ", ".join(s.value for s in Scope)
                raise InputError(f"unknown scope {part!r}: use one of {known}") from None
    if not scopes:
        raise InputError("a token needs at least one --scope")
    return frozenset(scopes)


def check_name(name: str) -> str:
    """The name, if it has a token name's shape; raises `InputError` otherwise."""
    if not _NAME_SHAPE.fullmatch(name):
        raise InputError("a token name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def new_token() -> str:
    """A fresh secret: the prefix (so that secret scanners can find leaked ones) and 32 random bytes.

    Raises nothing.
    """
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The sha256 stored for a token (256 random bits need no salt); raises `UnicodeEncodeError` for non-ASCII."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def presented_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header, if it has a token's shape; raises nothing."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not _TOKEN_SHAPE.fullmatch(credentials):
        return None
    return credentials


class TokenStore(Protocol):
    """Where tokens live: the workspace's database, so every replica of the service sees them."""

    def find(self, token_hash: str) -> TokenRecord | None:
        """The token with this hash, revoked or not; None when there is none. Database errors propagate."""
        ...

    def add(self, record: TokenRecord) -> None:
        """Store a new token; database errors propagate."""
        ...

    def all(self) -> list[TokenRecord]:
        """Every token, revoked ones included; database errors propagate."""
        ...

    def revoke(self, token_id: str, when: str) -> bool:
        """Revoke an active token; False when no active token has this id. Database errors propagate."""
        ...

    def any_active(self) -> bool:
        """Whether an unrevoked token exists; database errors propagate."""
        ...


def create_token(store: TokenStore, name: str, scopes: frozenset[Scope], now: str) -> tuple[str, TokenRecord]:
    """A new token and its stored record; the token itself is returned once and kept nowhere.

    Raises `InputError` for a malformed name.
    """
    token = new_token()
    record = TokenRecord(f"tok_{secrets.token_hex(6)}", check_name(name), scopes, token_hash(token), now)
    store.add(record)
    return token, record
