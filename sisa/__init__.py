"""SISA training: sharded, isolated, sliced, aggregated (Bourtoule et al., IEEE S&P 2021).

`placement`, `seeds`, `schedule` and `errors` are pure and import no torch; the trainer, models,
checkpoints and aggregation import torch when they are imported, never before.
"""
