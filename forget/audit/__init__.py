"""What auditors and operators check: replay, ledger and certificate views, witnesses."""
