"""A signed, append-only, tamper-evident log (RFC 9162 Merkle tree) for data lineage.

The pure parts (`canonical`, `merkle`, `note`, `keys`, `errors`) import neither torch nor SQLAlchemy.
"""
