"""Signed audit certificates (in-toto Statement in a DSSE envelope) and their renderings."""
