"""The `api_tokens` table: hashes of the service's bearer tokens, their names and scopes."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from forget.errors import WorkspaceError
from forget.service.tokens import Scope, TokenRecord
from forget.store.datastore import READ_ONLY, DataStore
from forget.store.interface import Store

_metadata = sa.MetaData()
api_tokens = sa.Table(
    "api_tokens",
    _metadata,
    sa.Column("token_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("revoked_at", sa.String(32), nullable=True),
)


def _record(row: sa.Row[tuple[str, str, str, str, str, str | None]]) -> TokenRecord:
    m = row._mapping
    scopes = frozenset(Scope(s) for s in m["scopes"].split())
    return TokenRecord(m["token_id"], m["name"], scopes, m["token_hash"], m["created_at"], m["revoked_at"])


class SQLTokenStore:
    """`forget.service.tokens.TokenStore` on the workspace's database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find(self, token_hash: str) -> TokenRecord | None:
        """The token whose hash is `token_hash`, revoked or not; None when there is none."""
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            row = connection.execute(sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash)).first()
        return _record(row) if row is not None else None

    def add(self, record: TokenRecord) -> None:
        """Store a new token's record in its own transaction; a repeated id or hash raises `IntegrityError`."""
        with self.engine.begin() as connection:
            connection.execute(
                api_tokens.insert().values(
                    token_id=record.token_id,
                    name=record.name,
                    scopes=" ".join(sorted(s.value for s in record.scopes)),
                    token_hash=record.token_hash,
                    created_at=record.created_at,
                    revoked_at=record.revoked_at,
                )
            )

    def all(self) -> list[TokenRecord]:
        """Every token, oldest first (hashes, never tokens)."""
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            rows = connection.execute(sa.select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.token_id))
            return [_record(row) for row in rows]

    def revoke(self, token_id: str, when: str) -> bool:
        """Revoke the token at `when`; False when there is no such token or it was revoked already."""
        with self.engine.begin() as connection:
            done = connection.execute(
                api_tokens.update()
                .where(api_tokens.c.token_id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=when)
            )
        return bool(done.rowcount)

    def any_active(self) -> bool:
        """Whether any token is not revoked (until one is, the service listens on loopback only)."""
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            query = sa.select(sa.func.count()).select_from(api_tokens).where(api_tokens.c.revoked_at.is_(None))
            return bool(connection.execute(query).scalar_one())


def token_store(store: Store) -> SQLTokenStore:
    """The tokens of the workspace whose data store this is (the SQL store keeps them in its database).

    Raises `WorkspaceError` (exit 3) for a store that is not the SQL one (the tests' in-memory fake).
    """
    if not isinstance(store, DataStore):
        raise WorkspaceError("API tokens need the workspace's SQL database")
    return SQLTokenStore(store.engine)
