"""Forgetting: requests, the batch job that rewinds and retrains, and the certificate it issues."""
