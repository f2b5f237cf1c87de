"""Records in: reading files, the feature schema, encoding, placement, and re-deriving the schema after an erasure."""
