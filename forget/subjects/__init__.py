"""Who a record belongs to: the canonical form of a subject id and its keyed pseudonym."""
