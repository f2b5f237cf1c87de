"""The application layer of `forget`: workspaces, ingestion, training, erasure.

It sits between the `cli` and the three libraries (`sisa`, `ledger`, `reports`). Modules that
need torch import it inside functions, so commands that never train start fast.
"""

__version__ = "0.1.0"
