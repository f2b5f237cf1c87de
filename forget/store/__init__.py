"""Where state lives: the relational store (records, placements, requests, checkpoints) and checkpoint files."""
